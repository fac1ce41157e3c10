//! The known-answer self-test on the Hailo path (HailoRT test double): text files that
//! belong to the encoders pass it, and the same files with the text projection transposed,
//! a classic export mistake that the warm-up inference cannot see, fail it.
//!
//! The double's encoders are not CLIP, so the test makes a projection under which they give
//! the right answers: it reads the double's image embeddings of the self-test photos (E) and
//! text states of the labels (H, through an identity projection), then solves for P so that
//! each expected label's embedding is the dual vector of its photo (e_p · t_q = δ_pq) and
//! the distractor points away from every photo.
use std::path::Path;

use crate::common::hailo::*;
use crate::common::scratch;
use hailo_clip::backends::{self, Encoders};
use hailo_clip::config::{Config, TextEncoderChoice};
use hailo_clip::preprocess::{decode_rgb, resize_square};
use hailo_clip::service::selftest::{SelfTestOutcome, SelfTestSet};
use hailo_clip::service::Service;
use ndarray::Array2;

/// Solves A X = B (A n×n) by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let n = a.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap();
        a.swap(col, pivot);
        b.swap(col, pivot);
        assert!(a[col][col].abs() > 1e-12, "singular system");
        for row in 0..n {
            if row != col {
                let f = a[row][col] / a[col][col];
                for k in 0..n {
                    a[row][k] -= f * a[col][k];
                }
                for k in 0..b[row].len() {
                    b[row][k] -= f * b[col][k];
                }
            }
        }
    }
    (0..n)
        .map(|i| b[i].iter().map(|v| v / a[i][i]).collect())
        .collect()
}

fn gram(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|x| {
            rows.iter()
                .map(|y| x.iter().zip(y).map(|(a, b)| a * b).sum())
                .collect()
        })
        .collect()
}

fn rows_of(m: &Array2<f32>) -> Vec<Vec<f64>> {
    m.rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect()
}

fn write_projection(resources: &Path, p: &Array2<f32>) {
    ndarray_npy::write_npy(resources.join("text_projection.npy"), p).unwrap();
}

fn load(config: &Config) -> Encoders {
    backends::load(config).unwrap_or_else(|e| panic!("load failed: {e}"))
}

async fn selftest_of(config: &Config) -> SelfTestOutcome {
    let e = load(config);
    let service = Service::start(e.image, e.text, e.tokenizer, e.model, config).unwrap();
    service.warm_up().await.unwrap();
    let outcome = service.selftest();
    service.shutdown();
    outcome
}

#[tokio::test]
async fn hailo_selftest_passes_with_the_right_projection_and_fails_with_it_transposed() {
    let dir = scratch();
    image_hef(dir.path(), IMAGE_OUT_FLOAT, "");
    text_hef_causal_mean(dir.path());
    let resources = dir.path().join("resources");
    std::fs::create_dir(&resources).unwrap();
    for file in ["clip_tokenizer.json", "token_embedding_lut.npy"] {
        std::fs::copy(text_assets().join(file), resources.join(file)).unwrap();
    }
    write_projection(&resources, &Array2::eye(DIM));
    let mut config = config(dir.path());
    config.hailo.resources_dir = resources.clone();
    config.hailo.text_encoder = TextEncoderChoice::Hailo;
    config.selftest.enforce = true;

    // E: the double's image embeddings of the self-test photos, prepared as the service does.
    let set = SelfTestSet::bundled();
    let probe = load(&config);
    let images: Vec<_> = set
        .photos
        .iter()
        .map(|p| {
            let rgb = decode_rgb(&p.bytes, 40_000_000).unwrap();
            resize_square(&rgb, probe.image.input_size(), probe.image.resize_mode()).unwrap()
        })
        .collect();
    let e = rows_of(&probe.image.encode_images(&images).unwrap());
    // H: the text states of the templated labels (identity projection).
    let ids: Vec<Vec<u32>> = set
        .labels
        .iter()
        .map(|l| {
            probe
                .tokenizer
                .encode(&set.template.replace("{}", l))
                .unwrap()
        })
        .collect();
    let h = rows_of(&probe.text.encode_texts(&ids).unwrap());
    drop(probe);

    // Targets: each photo's expected label gets the photo's dual vector, the distractor
    // minus their sum (so every photo's cosine with it is negative).
    let dual = solve(gram(&e), e.clone());
    let targets: Vec<Vec<f64>> = set
        .labels
        .iter()
        .map(
            |label| match set.photos.iter().position(|p| &p.expected == label) {
                Some(i) => dual[i].clone(),
                None => (0..DIM)
                    .map(|k| -dual.iter().map(|d| d[k]).sum::<f64>())
                    .collect(),
            },
        )
        .collect();
    // P = Hᵀ (H Hᵀ)⁻¹ T, so H P = T.
    let y = solve(gram(&h), targets);
    let projection = Array2::from_shape_fn((DIM, DIM), |(i, j)| {
        h.iter().zip(&y).map(|(hr, yr)| hr[i] * yr[j]).sum::<f64>() as f32
    });

    write_projection(&resources, &projection);
    let SelfTestOutcome::Ran(report) = selftest_of(&config).await else {
        panic!("the self-test did not run for a model without random weights");
    };
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.results.len(), 4);
    for r in &report.results {
        assert_eq!(r.got, r.expected, "{report:?}");
    }
    assert!(report.smallest_margin() >= 0.2, "{report:?}");

    write_projection(
        &resources,
        &projection.t().as_standard_layout().into_owned(),
    );
    let SelfTestOutcome::Ran(report) = selftest_of(&config).await else {
        panic!("the self-test did not run");
    };
    assert!(
        !report.passed(),
        "a transposed projection passed: {report:?}"
    );
    let detail = report.failure_detail();
    assert!(
        detail.starts_with("self-test failed: the model's answers are wrong (")
            && detail.contains(".jpg was classified as"),
        "{detail}"
    );
}
