//! The known-answer self-test: proof that the model's answers are right, not just that an
//! inference ran. A few real photos with unambiguous content (assets/selftest/, compiled in)
//! are classified against a fixed label set through the same path as every request; each
//! must come out top-1, ahead of the runner-up by a margin. A transposed text projection,
//! wrong quantization or preprocessing, or a text HEF that does not belong to the tokenizer
//! all fail it, where the warm-up inference alone would pass.

use serde::{Deserialize, Serialize};

/// One photo of the set and the label it must get.
#[derive(Debug, Clone)]
pub struct SelfTestPhoto {
    pub name: String,
    pub bytes: Vec<u8>,
    pub expected: String,
}

/// Photos, labels and the template the labels are put in.
#[derive(Debug, Clone)]
pub struct SelfTestSet {
    pub template: String,
    pub labels: Vec<String>,
    pub photos: Vec<SelfTestPhoto>,
}

#[derive(Deserialize)]
struct Manifest {
    template: String,
    labels: Vec<String>,
    photos: Vec<ManifestPhoto>,
}

#[derive(Deserialize)]
struct ManifestPhoto {
    file: String,
    expected: String,
}

/// The bundled photos, by the file names `selftest.json` uses.
const BUNDLED_PHOTOS: &[(&str, &[u8])] = &[
    ("cat.jpg", include_bytes!("../../assets/selftest/cat.jpg")),
    (
        "coffee.jpg",
        include_bytes!("../../assets/selftest/coffee.jpg"),
    ),
    (
        "rocket.jpg",
        include_bytes!("../../assets/selftest/rocket.jpg"),
    ),
    (
        "astronaut.jpg",
        include_bytes!("../../assets/selftest/astronaut.jpg"),
    ),
];

impl SelfTestSet {
    /// The set compiled into the binary from assets/selftest/.
    pub fn bundled() -> SelfTestSet {
        let manifest: Manifest =
            serde_json::from_str(include_str!("../../assets/selftest/selftest.json"))
                .expect("assets/selftest/selftest.json is valid (checked by a unit test)");
        let photos = manifest
            .photos
            .into_iter()
            .map(|p| {
                let bytes = BUNDLED_PHOTOS
                    .iter()
                    .find(|(name, _)| *name == p.file)
                    .unwrap_or_else(|| panic!("assets/selftest/{} is not compiled in", p.file))
                    .1
                    .to_vec();
                SelfTestPhoto {
                    name: p.file,
                    bytes,
                    expected: p.expected,
                }
            })
            .collect();
        SelfTestSet {
            template: manifest.template,
            labels: manifest.labels,
            photos,
        }
    }
}

/// How one photo came out.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhotoResult {
    pub photo: String,
    pub expected: String,
    /// The top-1 label.
    pub got: String,
    /// The top-1 label's score.
    pub score: f32,
    /// The expected label's score minus the best other label's (negative when wrong).
    pub margin: f32,
    pub passed: bool,
}

/// Every photo's result, against the margin required.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SelfTestReport {
    pub results: Vec<PhotoResult>,
    pub min_margin: f32,
    /// The text encoder ran on the Hailo device, fed by the Hailo text files: the failure
    /// points at those. Otherwise at the model directory.
    pub text_on_hailo: bool,
}

impl SelfTestReport {
    pub fn passed(&self) -> bool {
        !self.results.is_empty() && self.results.iter().all(|r| r.passed)
    }

    pub fn smallest_margin(&self) -> f32 {
        self.results
            .iter()
            .map(|r| r.margin)
            .fold(f32::INFINITY, f32::min)
    }

    /// What went wrong, naming each failed photo: what it was classified as, with what
    /// score, and what was expected.
    pub fn failure_detail(&self) -> String {
        let failures: Vec<String> = self
            .results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| {
                if r.got == r.expected {
                    format!(
                        "{} was classified as {:?} as expected, but only {:.3} ahead of the runner-up (selftest.min_margin {})",
                        r.photo, r.got, r.margin, self.min_margin
                    )
                } else {
                    format!(
                        "{} was classified as {:?} (score {:.3}), expected {:?}",
                        r.photo, r.got, r.score, r.expected
                    )
                }
            })
            .collect();
        let check = if self.text_on_hailo {
            "check that the Hailo text files (text_projection.npy, token_embedding_lut.npy, \
             clip_tokenizer.json) come from the same CLIP model as the HEFs"
        } else {
            "check that the model directory's image and text graphs and tokenizer are one \
             model's, unchanged (a re-pull repairs a pulled one: hailo-clip pull NAME)"
        };
        format!(
            "self-test failed: the model's answers are wrong ({}); {check}",
            failures.join("; ")
        )
    }
}

/// What the service knows of its self-test.
#[derive(Debug, Clone, PartialEq)]
pub enum SelfTestOutcome {
    NotRun,
    /// Not run, and why (a model with random weights has no right answers).
    Skipped(&'static str),
    Ran(SelfTestReport),
}

impl SelfTestOutcome {
    /// The /health word for it.
    pub fn summary(&self, enforced: bool) -> String {
        match self {
            SelfTestOutcome::NotRun => "not run".into(),
            SelfTestOutcome::Skipped(why) => format!("skipped ({why})"),
            SelfTestOutcome::Ran(r) if r.passed() => "passed".into(),
            SelfTestOutcome::Ran(_) if enforced => "failed".into(),
            SelfTestOutcome::Ran(_) => "failed (not enforced)".into(),
        }
    }

    /// Whether the answers may be served: passed, skipped, or failed with enforcement off.
    pub fn allows_serving(&self, enforced: bool) -> bool {
        match self {
            SelfTestOutcome::NotRun => false,
            SelfTestOutcome::Skipped(_) => true,
            SelfTestOutcome::Ran(r) => r.passed() || !enforced,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_set_is_complete() {
        let set = SelfTestSet::bundled();
        assert_eq!(set.photos.len(), 4);
        assert!(set.template.contains("{}"));
        for photo in &set.photos {
            assert!(set.labels.contains(&photo.expected), "{}", photo.expected);
            assert!(
                image::load_from_memory(&photo.bytes).is_ok(),
                "{}",
                photo.name
            );
        }
    }

    fn result(photo: &str, expected: &str, got: &str, margin: f32, passed: bool) -> PhotoResult {
        PhotoResult {
            photo: photo.into(),
            expected: expected.into(),
            got: got.into(),
            score: 0.6,
            margin,
            passed,
        }
    }

    #[test]
    fn outcome_words_and_serving() {
        let pass = SelfTestReport {
            results: vec![result("cat.jpg", "cat", "cat", 0.5, true)],
            min_margin: 0.2,
            text_on_hailo: false,
        };
        let fail = SelfTestReport {
            results: vec![
                result("cat.jpg", "cat", "dog", -0.3, false),
                result("rocket.jpg", "rocket", "rocket", 0.1, false),
            ],
            min_margin: 0.2,
            text_on_hailo: false,
        };
        assert_eq!(SelfTestOutcome::Ran(pass.clone()).summary(true), "passed");
        assert!(SelfTestOutcome::Ran(pass).allows_serving(true));
        assert_eq!(SelfTestOutcome::Ran(fail.clone()).summary(true), "failed");
        assert!(!SelfTestOutcome::Ran(fail.clone()).allows_serving(true));
        assert!(SelfTestOutcome::Ran(fail.clone()).allows_serving(false));
        assert!(!SelfTestOutcome::NotRun.allows_serving(false));
        assert_eq!(
            SelfTestOutcome::Skipped("random weights").summary(true),
            "skipped (random weights)"
        );
        assert_eq!(
            fail.failure_detail(),
            "self-test failed: the model's answers are wrong (cat.jpg was classified as \"dog\" (score 0.600), expected \"cat\"; \
             rocket.jpg was classified as \"rocket\" as expected, but only 0.100 ahead of the runner-up (selftest.min_margin 0.2)); \
             check that the model directory's image and text graphs and tokenizer are one model's, unchanged (a re-pull repairs a pulled one: hailo-clip pull NAME)"
        );
        let on_hailo = SelfTestReport {
            text_on_hailo: true,
            ..fail
        };
        assert!(on_hailo
            .failure_detail()
            .ends_with("check that the Hailo text files (text_projection.npy, token_embedding_lut.npy, clip_tokenizer.json) come from the same CLIP model as the HEFs"));
    }
}
