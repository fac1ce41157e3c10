//! Large JPEGs as Immich sends them (1440-px previews, quality 80, 4:4:4, an ICC profile;
//! progressive, grayscale and EXIF-rotated variants) through the full decode → preprocess →
//! encode path on both CPU engines:
//! - with the DCT-scaled decode (performance.jpeg_scaled_decode, the default) and without it,
//!   each embedding stays within cosine 0.995 of transformers' CLIPImageProcessor on PIL's
//!   full decode (tests/fixtures/golden/preview_embeds.npy, scripts/make_previews.py);
//! - `resize: immich` stays within Immich's duplicate threshold (cosine distance 0.01) of the
//!   embedding made with Immich's own preprocessing (preview_immich_embeds.npy), and so does
//!   the default path; each distance is printed.

mod common;

use common::*;
use hailo_clip::backends::cpu::CpuImageEncoder;
use hailo_clip::encoder::ImageEncoder;
use hailo_clip::model::ModelDir;
use hailo_clip::preprocess::{
    decode_rgb, decode_rgb_at_least, jpeg_scale_denominator, Interpolation, ResizeMode,
    SquareInput, JPEG_SCALE_MARGIN,
};
use ndarray::Array2;

/// Immich's duplicate detection treats photos closer than this cosine distance as the same
/// (immich `server/src/config.ts`: `machineLearning.duplicateDetection.maxDistance`, 0.01).
const IMMICH_DUPLICATE_DISTANCE: f32 = 0.01;

struct Preview {
    file: String,
    bytes: Vec<u8>,
    immich_comparable: bool,
}

fn previews() -> Vec<Preview> {
    golden_json("previews.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap().to_string();
            Preview {
                bytes: std::fs::read(fixture(&format!("previews/{file}"))).unwrap(),
                immich_comparable: e["immich_comparable"].as_bool().unwrap(),
                file,
            }
        })
        .collect()
}

fn embed(encoder: &CpuImageEncoder, previews: &[Preview], input: SquareInput) -> Array2<f32> {
    let images: Vec<_> = previews
        .iter()
        .map(|p| {
            input
                .resize(&input.decode(&p.bytes, 100_000_000).unwrap())
                .unwrap()
        })
        .collect();
    encoder.encode_images(&images).unwrap()
}

#[test]
fn previews_decode_at_half_size_and_keep_their_content() {
    let input = SquareInput {
        size: 224,
        mode: ResizeMode::ShortestEdgeCenterCrop,
        interpolation: Interpolation::Bicubic,
        jpeg_scaled_decode: true,
    };
    for p in previews() {
        let full = decode_rgb(&p.bytes, 100_000_000).unwrap();
        let scaled = input.decode(&p.bytes, 100_000_000).unwrap();
        // 1440 px on the shorter side: 1/2 gives 720 (>= 2 x 224), 1/4 would give 360.
        assert_eq!(
            jpeg_scale_denominator(full.width(), full.height(), 224 * JPEG_SCALE_MARGIN),
            2,
            "{}",
            p.file
        );
        assert_eq!(
            scaled.dimensions(),
            (full.width().div_ceil(2), full.height().div_ceil(2)),
            "{}: EXIF orientation is applied to the scaled image as to the full one",
            p.file
        );
        // The scaled image is the full one averaged over 2x2 blocks, near enough.
        let mut diff = 0u64;
        for (x, y, px) in scaled.enumerate_pixels() {
            let (fx, fy) = (
                (x * 2 + 1).min(full.width() - 1),
                (y * 2 + 1).min(full.height() - 1),
            );
            let fp = full.get_pixel(fx, fy);
            diff += (0..3)
                .map(|c| u64::from(px[c].abs_diff(fp[c])))
                .sum::<u64>();
        }
        let mean = diff as f64 / f64::from(scaled.width() * scaled.height() * 3);
        println!(
            "{}: scaled {:?}, mean level difference from the full decode's pixel {mean:.2}",
            p.file,
            scaled.dimensions()
        );
        assert!(mean < 8.0, "{}: mean difference {mean}", p.file);
        // Without the option, or with resize: immich, the preview is decoded whole.
        for whole in [
            SquareInput {
                jpeg_scaled_decode: false,
                ..input
            },
            SquareInput {
                mode: ResizeMode::Immich,
                ..input
            },
        ] {
            assert_eq!(
                whole.decode(&p.bytes, 100_000_000).unwrap().dimensions(),
                full.dimensions()
            );
        }
    }
}

#[test]
fn small_or_unscalable_jpegs_decode_whole() {
    // rocket.jpg is 427 px on its shorter side: no scale keeps 224 with 1/2 (214).
    let bytes = std::fs::read(fixture("images/rocket.jpg")).unwrap();
    let full = decode_rgb(&bytes, 100_000_000).unwrap();
    assert_eq!(full.height(), 427);
    assert_eq!(
        decode_rgb_at_least(&bytes, 100_000_000, Some(224)).unwrap(),
        full
    );
    // Its 1/2 scale does keep 200.
    assert_eq!(
        decode_rgb_at_least(&bytes, 100_000_000, Some(200))
            .unwrap()
            .height(),
        214
    );
    // A CMYK JPEG, which libjpeg-turbo cannot make RGB, is decoded whole as before.
    let cmyk = cmyk_jpeg(900, 600);
    let whole = decode_rgb(&cmyk, 100_000_000).unwrap();
    assert_eq!(whole.dimensions(), (900, 600));
    assert_eq!(
        decode_rgb_at_least(&cmyk, 100_000_000, Some(224)).unwrap(),
        whole
    );
    // The pixel limit is checked from the header whatever the scale.
    let preview = std::fs::read(fixture("previews/chelsea_preview.jpg")).unwrap();
    assert!(decode_rgb_at_least(&preview, 1_000_000, Some(224)).is_err());
    // A truncated preview: the lenient whole-image decoder takes over.
    let cut = &preview[..preview.len() / 2];
    let whole = decode_rgb(cut, 100_000_000).map(|i| i.dimensions());
    assert_eq!(
        decode_rgb_at_least(cut, 100_000_000, Some(224)).map(|i| i.dimensions()),
        whole
    );
}

/// A CMYK JPEG (libjpeg-turbo writes it as YCCK, as Photoshop does).
fn cmyk_jpeg(width: usize, height: usize) -> Vec<u8> {
    let pixels: Vec<u8> = (0..width * height)
        .flat_map(|i| [(i % 251) as u8, (i / width % 200) as u8, 30, 10])
        .collect();
    let image = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width,
        pitch: width * 4,
        height,
        format: turbojpeg::PixelFormat::CMYK,
    };
    turbojpeg::compress(image, 85, turbojpeg::Subsamp::None)
        .unwrap()
        .to_vec()
}

#[test]
fn preview_embeddings_match_transformers_and_immich() {
    let previews = previews();
    let reference = golden_f32("preview_embeds.npy");
    let immich = golden_f32("preview_immich_embeds.npy");
    assert_eq!(reference.nrows(), previews.len());
    let dir = ModelDir::open(&tiny_model_dir()).unwrap();
    let size = dir.manifest.image_size;
    let input = |mode, jpeg_scaled_decode| SquareInput {
        size,
        mode,
        interpolation: Interpolation::Bicubic,
        jpeg_scaled_decode,
    };
    let mut smallest = f32::MAX;
    for (name, engine) in cpu_engines() {
        let encoder = CpuImageEncoder::load(&dir, &engine).unwrap();
        for (label, square) in [
            (
                "scaled decode",
                input(ResizeMode::ShortestEdgeCenterCrop, true),
            ),
            (
                "full decode",
                input(ResizeMode::ShortestEdgeCenterCrop, false),
            ),
            ("resize: immich", input(ResizeMode::Immich, true)),
        ] {
            let ours = embed(&encoder, &previews, square);
            for (i, p) in previews.iter().enumerate() {
                let to_reference = cosine(ours.row(i), reference.row(i));
                let to_immich = p
                    .immich_comparable
                    .then(|| 1.0 - cosine(ours.row(i), immich.row(i)));
                println!(
                    "{name}, {label}: {}: cosine to transformers {to_reference:.6}, cosine distance to Immich's preprocessing {}",
                    p.file,
                    to_immich.map_or("n/a (Immich does not apply EXIF orientation)".into(), |d| format!("{d:.6}"))
                );
                smallest = smallest.min(to_reference);
                assert!(
                    to_reference >= 0.995,
                    "{name}, {label}: {}: cosine {to_reference}",
                    p.file
                );
                if let Some(distance) = to_immich {
                    assert!(
                        distance < IMMICH_DUPLICATE_DISTANCE,
                        "{name}, {label}: {}: distance {distance}",
                        p.file
                    );
                }
            }
        }
    }
    println!("smallest cosine to transformers over engines and modes: {smallest:.6}");
    // Distinct previews are far apart, so the bounds above have teeth.
    assert!(cosine(reference.row(0), reference.row(1)) < 0.95);
}
