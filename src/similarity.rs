//! Embedding arithmetic: L2 normalization, prompt-ensemble averaging, cosine similarity,
//! and CLIP's softmax over `logit_scale × cosine`.

use ndarray::{Array1, ArrayView1, ArrayView2};

/// An embedding that cannot be normalized: the encoder's output is unusable.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("embedding has norm {norm}; the encoder output is unusable")]
pub struct UnusableEmbedding {
    pub norm: f32,
}

/// Scales `v` to unit length. A zero or non-finite vector is an encoder failure, not
/// something to hide, so it is reported instead of divided by.
pub fn l2_normalize(v: &mut [f32]) -> Result<(), UnusableEmbedding> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm <= f32::EPSILON {
        return Err(UnusableEmbedding { norm });
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Ok(())
}

/// Mean of unit vectors, renormalized: CLIP's prompt ensembling over templates.
pub fn ensemble(vectors: &[&[f32]]) -> Result<Vec<f32>, UnusableEmbedding> {
    let dim = vectors.first().map_or(0, |v| v.len());
    let mut mean = vec![0.0f32; dim];
    for v in vectors {
        mean.iter_mut().zip(v.iter()).for_each(|(m, x)| *m += x);
    }
    l2_normalize(&mut mean)?;
    Ok(mean)
}

/// Cosine similarities of one unit image embedding against unit text embeddings (rows).
pub fn cosine(texts: ArrayView2<f32>, image: ArrayView1<f32>) -> Array1<f32> {
    texts.dot(&image)
}

/// Numerically stable softmax of `scale × x`.
pub fn softmax_scaled(x: &[f32], scale: f32) -> Vec<f32> {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
    let exps: Vec<f32> = x.iter().map(|&v| (v * scale - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// SigLIP's score of each similarity on its own: sigmoid(scale × x + bias).
pub fn sigmoid_scaled(x: &[f32], scale: f32, bias: f32) -> Vec<f32> {
    x.iter()
        .map(|&v| 1.0 / (1.0 + (-(v * scale + bias)).exp()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn normalize_gives_unit_length_and_refuses_zero() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v).unwrap();
        assert_eq!(v, vec![0.6, 0.8]);
        assert!(l2_normalize(&mut [0.0, 0.0]).is_err());
        assert!(l2_normalize(&mut [f32::NAN, 1.0]).is_err());
    }

    #[test]
    fn ensemble_averages_then_renormalizes() {
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        let e = ensemble(&[&a, &b]).unwrap();
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((e[0] - h).abs() < 1e-6 && (e[1] - h).abs() < 1e-6);
    }

    #[test]
    fn softmax_matches_closed_form() {
        // logits 100*[0.3, 0.2] -> softmax [1/(1+e^-10), e^-10/(1+e^-10)]
        let p = softmax_scaled(&[0.3, 0.2], 100.0);
        let expected0 = 1.0 / (1.0 + (-10.0f32).exp());
        assert!((p[0] - expected0).abs() < 1e-6, "{p:?}");
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
        // Large logits do not overflow.
        let p = softmax_scaled(&[1000.0, 999.0], 100.0);
        assert!(p.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn cosine_is_a_matrix_vector_product() {
        let texts = array![[1.0f32, 0.0], [0.6, 0.8]];
        let image = array![0.6f32, 0.8];
        assert_eq!(cosine(texts.view(), image.view()).to_vec(), vec![0.6, 1.0]);
    }
}
