//! Hailo's Model Zoo: the compiled HEFs that are an Immich model's twins, per chip and Model
//! Zoo version, at `BASE/VERSION/ARCH/NAME.hef` (BASE is install.sh's
//! `https://hailo-model-zoo.s3.eu-west-2.amazonaws.com/ModelZoo/Compiled`, or
//! `HAILO_CLIP_ZOO_URL`), checked by size and by S3's ETag where it is a plain MD5.
//!
//! What is published where comes from the Model Zoo's own docs, read per tag in
//! hailo-ai/hailo_model_zoo (`docs/public_models/HAILO10H/HAILO10H_zero_shot_classification.rst`,
//! `..._text_image_retrieval.rst`, and HAILO8/HAILO8L on the v2.x tags):
//! * hailo10h v5.0.0: the docs link only hailo15h files, so no hailo10h twin is claimed;
//! * hailo10h v5.1.0: image encoders only (the text encoders' links point at hailo15h);
//! * hailo10h v5.2.0: image and text encoders;
//! * hailo8/hailo8l pair HailoRT 4.x with the Model Zoo's v2.x line (its README's
//!   compatibility notice; v2.16 is HailoRT 4.22, v2.17 and v2.18 are 4.23): v2.16 names
//!   files differently (`clip_vit_b_32.hef`, `clip_text_encoder_vitb_32.hef`).
//!
//! The twins, by what each HEF was compiled from (the network YAMLs' `source`):
//! ViT-B-32__openai, ViT-B-16__openai, RN50__openai, RN50x4__openai (OpenAI's checkpoints),
//! ViT-L-14__laion2b-s32b-b82k (laion/CLIP-ViT-L-14-laion2B-s32B-b82K), and
//! ViT-L-14-336__openai, image only: the Zoo's clip_vit_l_14_text_encoder comes from the 224-px
//! openai/clip-vit-large-patch14, a different checkpoint, so its text runs on the CPU.
//!
//! SigLIP: ViT-B-32-SigLIP2-256__webli (google/siglip2-base-patch32-256: hailo10h image from
//! v5.1.0, text from v5.2.0; hailo8/hailo8l both in v2.18.0), ViT-B-16-SigLIP__webli
//! (google/siglip-base-patch16-224: hailo10h v5.2.0, hailo8/hailo8l v2.18.0) and
//! ViT-L-16-SigLIP-256__webli (google/siglip-large-patch16-256: hailo10h v5.2.0). The Zoo's
//! siglip2_b_16 and siglip2_l_16_256 publish text encoders only: they are not twins, since
//! the image encoder is what runs per photo (and the text path caches prompts), so a model
//! whose images stay on the CPU gains nothing from its text on the device.

use std::time::Duration;

use super::transfer::{Check, Expect, Http};
use super::FetchError;

pub const DEFAULT_ZOO_URL: &str =
    "https://hailo-model-zoo.s3.eu-west-2.amazonaws.com/ModelZoo/Compiled";

/// A Hailo chip, as the Model Zoo names its folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Hailo10h,
    Hailo8,
    Hailo8l,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Arch> {
        match s.to_ascii_lowercase().as_str() {
            "hailo10h" => Some(Arch::Hailo10h),
            "hailo8" => Some(Arch::Hailo8),
            "hailo8l" => Some(Arch::Hailo8l),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Hailo10h => "hailo10h",
            Arch::Hailo8 => "hailo8",
            Arch::Hailo8l => "hailo8l",
        }
    }
}

/// The Model Zoo version that matches a HailoRT version ("5.2.0" → v5.2.0, "4.23.0" → v2.18.0).
pub fn zoo_version_for_hailort(hailort: &str) -> Option<&'static str> {
    let mut parts = hailort.trim().trim_start_matches('v').split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(match (major, minor) {
        (5, 2) => "v5.2.0",
        (5, 1) => "v5.1.0",
        (5, 0) => "v5.0.0",
        (4, 23) => "v2.18.0",
        (4, 22) => "v2.16.0",
        _ => return None,
    })
}

/// An Immich model and the Model Zoo's names for its two encoders, by naming scheme.
struct Twin {
    immich: &'static str,
    /// v2.17 and later, v5.x: `<base>_image_encoder`, `<base>_text_encoder`.
    base: &'static str,
    /// v2.16's names for the image and text HEF, where it has them.
    v2_16: (Option<&'static str>, Option<&'static str>),
    /// Whether the Zoo's text encoder of `base` is this model's text tower.
    text_twin: bool,
}

impl Twin {
    /// The image and text HEF names in Model Zoo `version` (v2.16.0 names them its own way).
    fn hef_names(&self, version: &str) -> (Option<String>, Option<String>) {
        if version == "v2.16.0" {
            (
                self.v2_16.0.map(str::to_string),
                self.v2_16.1.map(str::to_string),
            )
        } else {
            (
                Some(format!("{}_image_encoder", self.base)),
                Some(format!("{}_text_encoder", self.base)),
            )
        }
    }
}

const TWINS: &[Twin] = &[
    Twin {
        immich: "ViT-B-32__openai",
        base: "clip_vit_b_32",
        v2_16: (Some("clip_vit_b_32"), Some("clip_text_encoder_vitb_32")),
        text_twin: true,
    },
    Twin {
        immich: "ViT-B-16__openai",
        base: "clip_vit_b_16",
        v2_16: (Some("clip_vit_b_16"), Some("clip_text_encoder_vitb_16")),
        text_twin: true,
    },
    Twin {
        immich: "RN50__openai",
        base: "clip_resnet_50",
        v2_16: (Some("clip_resnet_50"), None),
        text_twin: true,
    },
    Twin {
        immich: "RN50x4__openai",
        base: "clip_resnet_50x4",
        v2_16: (
            Some("clip_resnet_50x4"),
            Some("clip_text_encoder_resnet50x4"),
        ),
        text_twin: true,
    },
    Twin {
        immich: "ViT-L-14__laion2b-s32b-b82k",
        base: "clip_vit_l_14_laion2B",
        v2_16: (None, None),
        text_twin: true,
    },
    Twin {
        immich: "ViT-L-14-336__openai",
        base: "clip_vit_l_14_336",
        v2_16: (None, None),
        text_twin: false,
    },
    Twin {
        immich: "ViT-B-32-SigLIP2-256__webli",
        base: "siglip2_b_32_256",
        v2_16: (None, None),
        text_twin: true,
    },
    Twin {
        immich: "ViT-B-16-SigLIP__webli",
        base: "siglip_b_16",
        v2_16: (None, None),
        text_twin: true,
    },
    Twin {
        immich: "ViT-L-16-SigLIP-256__webli",
        base: "siglip_l_16_256",
        v2_16: (None, None),
        text_twin: true,
    },
];

/// hailo10h's image encoders, in v5.1.0 and v5.2.0 alike (v5.2.0 adds SigLIP's below).
const HAILO10H_IMAGE: &[&str] = &[
    "clip_resnet_50_image_encoder",
    "clip_resnet_50x4_image_encoder",
    "clip_vit_b_16_image_encoder",
    "clip_vit_b_32_image_encoder",
    "clip_vit_l_14_336_image_encoder",
    "clip_vit_l_14_laion2B_image_encoder",
    "siglip2_b_32_256_image_encoder",
];
const HAILO10H_SIGLIP_V5_2: &[&str] = &[
    "siglip_b_16_image_encoder",
    "siglip_l_16_256_image_encoder",
    "siglip2_b_16_text_encoder",
    "siglip2_b_32_256_text_encoder",
    "siglip2_l_16_256_text_encoder",
    "siglip_b_16_text_encoder",
    "siglip_l_16_256_text_encoder",
];
const HAILO10H_TEXT_V5_2: &[&str] = &[
    "clip_resnet_50_text_encoder",
    "clip_resnet_50x4_text_encoder",
    "clip_vit_b_16_text_encoder",
    "clip_vit_b_32_text_encoder",
    "clip_vit_l_14_laion2B_text_encoder",
    "clip_vit_l_14_text_encoder",
];
/// hailo8 and hailo8l's image encoders from v2.17.0.
const HAILO8_IMAGE: &[&str] = &[
    "clip_resnet_50_image_encoder",
    "clip_resnet_50x4_image_encoder",
    "clip_vit_b_16_image_encoder",
    "clip_vit_b_32_image_encoder",
];

/// The HEF files published for (arch, version), as the docs of that tag link them.
fn published(arch: Arch, version: &str) -> Option<Vec<&'static str>> {
    use Arch::*;
    let parts: &[&[&str]] = match (arch, version) {
        (Hailo10h, "v5.0.0") => &[],
        (Hailo10h, "v5.1.0") => &[HAILO10H_IMAGE],
        (Hailo10h, "v5.2.0") => &[HAILO10H_IMAGE, HAILO10H_TEXT_V5_2, HAILO10H_SIGLIP_V5_2],
        (Hailo8, "v2.16.0") => &[&[
            "clip_resnet_50",
            "clip_vit_b_16",
            "clip_vit_b_32",
            "clip_text_encoder_vitb_16",
            "clip_text_encoder_vitb_32",
        ]],
        (Hailo8l, "v2.16.0") => &[&[
            "clip_resnet_50",
            "clip_text_encoder_resnet50x4",
            "clip_text_encoder_vitb_32",
        ]],
        (Hailo8 | Hailo8l, "v2.17.0") => &[
            HAILO8_IMAGE,
            &[
                "clip_resnet_50x4_text_encoder",
                "clip_vit_b_16_text_encoder",
                "clip_vit_b_32_text_encoder",
            ],
        ],
        (Hailo8 | Hailo8l, "v2.18.0") => &[
            HAILO8_IMAGE,
            &[
                "clip_resnet_50_text_encoder",
                "clip_resnet_50x4_text_encoder",
                "clip_vit_b_16_text_encoder",
                "clip_vit_b_32_text_encoder",
                "siglip2_b_32_256_image_encoder",
                "siglip2_b_32_256_text_encoder",
                "siglip_b_16_image_encoder",
                "siglip_b_16_text_encoder",
            ],
        ],
        _ => return None,
    };
    Some(parts.concat())
}

/// The versions this build knows the contents of, per chip.
pub fn known_versions(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Hailo10h => &["v5.0.0", "v5.1.0", "v5.2.0"],
        Arch::Hailo8 | Arch::Hailo8l => &["v2.16.0", "v2.17.0", "v2.18.0"],
    }
}

/// The HEFs of a model's twin: the image encoder's, and the text encoder's where published.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinHefs {
    pub image: String,
    pub text: Option<String>,
}

/// Why a model has no HEFs to fetch.
pub fn twin(name: &str, arch: Arch, version: &str) -> Result<TwinHefs, FetchError> {
    let Some(files) = published(arch, version) else {
        return Err(FetchError::Refused(format!(
            "Model Zoo {version} for {} is not one this build knows (known: {})",
            arch.as_str(),
            known_versions(arch).join(", ")
        )));
    };
    let Some(t) = TWINS.iter().find(|t| t.immich == name) else {
        let names: Vec<&str> = TWINS.iter().map(|t| t.immich).collect();
        return Err(FetchError::Refused(format!(
            "{name} has no twin in Hailo's Model Zoo; the models that have one: {}",
            names.join(", ")
        )));
    };
    let (image, text) = t.hef_names(version);
    let image = image
        .filter(|i| files.contains(&i.as_str()))
        .ok_or_else(|| {
            let have: Vec<&str> = TWINS
                .iter()
                .filter(|t| {
                    t.hef_names(version)
                        .0
                        .is_some_and(|n| files.contains(&n.as_str()))
                })
                .map(|t| t.immich)
                .collect();
            FetchError::Refused(format!(
                "Model Zoo {version} publishes no {} image encoder for {name}{}",
                arch.as_str(),
                if have.is_empty() {
                    " (it publishes none of these models for this chip)".to_string()
                } else {
                    format!("; it has one for: {}", have.join(", "))
                }
            ))
        })?;
    let text = text
        .filter(|_| t.text_twin)
        .filter(|n| files.contains(&n.as_str()));
    Ok(TwinHefs { image, text })
}

pub struct Zoo {
    pub base: String,
    pub http: Http,
}

impl Zoo {
    pub fn new(base: &str) -> Zoo {
        Zoo {
            base: base.trim_end_matches('/').to_string(),
            http: Http::new(None, None),
        }
    }

    pub fn url(&self, version: &str, arch: Arch, hef: &str) -> String {
        format!("{}/{version}/{}/{hef}.hef", self.base, arch.as_str())
    }

    fn unreachable(&self, url: &str, message: String) -> FetchError {
        FetchError::Unreachable {
            what: "Hailo's Model Zoo",
            url: url.to_string(),
            message,
            hint: " (set by HAILO_CLIP_ZOO_URL)".into(),
        }
    }

    /// What the bucket says of a HEF before it is fetched: its size, and its MD5 where the
    /// ETag is one (a multipart upload's ETag has a `-N` suffix and is no content hash).
    pub fn expect(&self, version: &str, arch: Arch, hef: &str) -> Result<Expect, FetchError> {
        let url = self.url(version, arch, hef);
        let mut reply = self
            .http
            .get(
                &url,
                &[("Range", "bytes=0-0".into())],
                Duration::from_secs(30),
            )
            .map_err(|e| self.unreachable(&url, e.to_string()))?;
        let status = reply.status();
        if status == 403 || status == 404 {
            // S3 answers a missing key 403 AccessDenied when the bucket cannot be listed,
            // 404 NoSuchKey when it can.
            let body = reply
                .response
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .unwrap_or_default();
            let code = body
                .split("<Code>")
                .nth(1)
                .and_then(|r| r.split("</Code>").next())
                .unwrap_or(if status == 403 {
                    "AccessDenied"
                } else {
                    "NoSuchKey"
                });
            return Err(FetchError::Refused(format!(
                "{hef}.hef is not in Model Zoo {version} for {} ({url}: HTTP {status} {code})",
                arch.as_str()
            )));
        }
        if status >= 400 {
            return Err(FetchError::Http {
                url,
                status,
                detail: String::new(),
            });
        }
        let size = if status == 206 {
            reply
                .header("content-range")
                .and_then(|r| r.rsplit('/').next().and_then(|t| t.parse().ok()))
        } else {
            reply.header("content-length").and_then(|l| l.parse().ok())
        };
        let etag = reply
            .header("etag")
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string());
        let check = match etag {
            Some(e) if e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit()) => Check::Md5(e),
            _ => Check::SizeOnly,
        };
        Ok(Expect {
            name: format!("{hef}.hef"),
            size,
            check,
        })
    }

    pub fn unreachable_fn(&self) -> impl Fn(String) -> FetchError + '_ {
        move |message| self.unreachable(&self.base, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_per_chip_and_version() {
        let b32 = twin("ViT-B-32__openai", Arch::Hailo10h, "v5.2.0").unwrap();
        assert_eq!(b32.image, "clip_vit_b_32_image_encoder");
        assert_eq!(b32.text.as_deref(), Some("clip_vit_b_32_text_encoder"));
        // Before v5.2.0 the hailo10h text encoder is not published: image only.
        let b32 = twin("ViT-B-32__openai", Arch::Hailo10h, "v5.1.0").unwrap();
        assert_eq!(b32.text, None);
        // v2.16's own names.
        let h8 = twin("ViT-B-32__openai", Arch::Hailo8, "v2.16.0").unwrap();
        assert_eq!(h8.image, "clip_vit_b_32");
        assert_eq!(h8.text.as_deref(), Some("clip_text_encoder_vitb_32"));
        // Image only where the Zoo's text encoder is another checkpoint.
        let l336 = twin("ViT-L-14-336__openai", Arch::Hailo10h, "v5.2.0").unwrap();
        assert_eq!(l336.text, None);
        let err = twin("ViT-B-32__openai", Arch::Hailo8l, "v2.16.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("RN50__openai"), "{err}");
        let err = twin("ViT-H-14__laion2b-s32b-b79k", Arch::Hailo10h, "v5.2.0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no twin") && err.contains("ViT-B-32__openai"),
            "{err}"
        );
        let err = twin("ViT-B-32__openai", Arch::Hailo10h, "v5.0.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("none of these models"), "{err}");
        assert_eq!(zoo_version_for_hailort("4.23.0"), Some("v2.18.0"));
        assert_eq!(zoo_version_for_hailort("5.1.1"), Some("v5.1.0"));
    }

    #[test]
    fn siglip_twins_where_each_tag_publishes_them() {
        let both = |name: &str, arch: Arch, version: &str, base: &str| {
            let t = twin(name, arch, version).unwrap();
            assert_eq!(t.image, format!("{base}_image_encoder"), "{name} {version}");
            assert_eq!(
                t.text,
                Some(format!("{base}_text_encoder")),
                "{name} {version}"
            );
        };
        let siglip2 = "ViT-B-32-SigLIP2-256__webli";
        both(siglip2, Arch::Hailo10h, "v5.2.0", "siglip2_b_32_256");
        both(siglip2, Arch::Hailo8, "v2.18.0", "siglip2_b_32_256");
        both(siglip2, Arch::Hailo8l, "v2.18.0", "siglip2_b_32_256");
        both(
            "ViT-B-16-SigLIP__webli",
            Arch::Hailo10h,
            "v5.2.0",
            "siglip_b_16",
        );
        both(
            "ViT-B-16-SigLIP__webli",
            Arch::Hailo8l,
            "v2.18.0",
            "siglip_b_16",
        );
        both(
            "ViT-L-16-SigLIP-256__webli",
            Arch::Hailo10h,
            "v5.2.0",
            "siglip_l_16_256",
        );
        // v5.1.0 links hailo10h's SigLIP2 image encoder, its text encoder only for hailo15h.
        let t = twin(siglip2, Arch::Hailo10h, "v5.1.0").unwrap();
        assert_eq!(t.text, None);
        // Not in v5.1.0 at all, nor for Hailo-8 before v2.18.0, nor the large one on Hailo-8.
        assert!(twin("ViT-B-16-SigLIP__webli", Arch::Hailo10h, "v5.1.0").is_err());
        assert!(twin(siglip2, Arch::Hailo8, "v2.17.0").is_err());
        assert!(twin("ViT-L-16-SigLIP-256__webli", Arch::Hailo8, "v2.18.0").is_err());
        // The Zoo's text-only SigLIP2 networks are no twins.
        let err = twin("ViT-B-16-SigLIP2__webli", Arch::Hailo10h, "v5.2.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no twin"), "{err}");
    }
}
