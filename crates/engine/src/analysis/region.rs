//! Toxic regions and their toxicity (docs/method.md §Mechanisms, D10). The region is `W^V_ℓ`, the
//! `down_proj.weight` of the toxic layer ℓ, `[d_model, d_ff]`; its column j is the value vector
//! that MLP neuron j writes into the residual stream. Toxicity of a column = its cosine with the
//! probe direction; of the region = the mean over all columns, and over the top-k columns ranked
//! on the vanilla model (k = 128, closer to Lee et al.'s toxic vectors).

use serde::{Deserialize, Serialize};

use super::norm;

/// Cosine of every column of a row-major `[rows, cols]` matrix with `probe` (`rows` long).
/// A zero column has cosine 0.
pub fn column_cosines(matrix: &[f32], rows: usize, cols: usize, probe: &[f32]) -> Vec<f32> {
    assert_eq!(matrix.len(), rows * cols, "matrix is rows × cols");
    assert_eq!(probe.len(), rows, "one probe entry per row");
    let probe_norm = norm(probe);
    let mut dots = vec![0.0f64; cols];
    let mut squares = vec![0.0f64; cols];
    for (row, &p) in matrix.chunks_exact(cols).zip(probe) {
        for (j, &w) in row.iter().enumerate() {
            dots[j] += w as f64 * p as f64;
            squares[j] += (w as f64).powi(2);
        }
    }
    dots.iter()
        .zip(&squares)
        .map(|(dot, sq)| {
            let denom = sq.sqrt() * probe_norm;
            if denom == 0.0 {
                0.0
            } else {
                (dot / denom) as f32
            }
        })
        .collect()
}

/// The `k` columns with the highest cosine, best first (ties by index).
pub fn top_columns(cosines: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cosines.len()).collect();
    order.sort_by(|&a, &b| cosines[b].total_cmp(&cosines[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// The toxicity of one region of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionToxicity {
    /// Mean cosine over all columns (the primary measure).
    pub all_columns: f64,
    /// Mean cosine over the given top columns (ranked on the vanilla model).
    pub top_columns: f64,
    /// How many top columns.
    pub top_k: usize,
}

/// The toxicity of a region from its column cosines and the vanilla model's top columns.
pub fn region_toxicity(cosines: &[f32], top: &[usize]) -> RegionToxicity {
    let mean = |values: &mut dyn Iterator<Item = f32>, n: usize| {
        if n == 0 {
            0.0
        } else {
            values.map(|v| v as f64).sum::<f64>() / n as f64
        }
    };
    RegionToxicity {
        all_columns: mean(&mut cosines.iter().copied(), cosines.len()),
        top_columns: mean(&mut top.iter().map(|&j| cosines[j]), top.len()),
        top_k: top.len(),
    }
}

/// `(vanilla − method) / |vanilla| × 100`: positive when the method made the region less toxic.
/// `None` when the vanilla toxicity is exactly 0.
pub fn reduction_rate(vanilla: f64, method: f64) -> Option<f64> {
    (vanilla != 0.0).then(|| (vanilla - method) / vanilla.abs() * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosines_of_known_columns() {
        // Columns: (1,0) ∥ probe, (0,2) ⟂ probe, (-3,0) anti-parallel, (1,1) at 45°, (0,0).
        let m = [
            1.0, 0.0, -3.0, 1.0, 0.0, /* row 2 */ 0.0, 2.0, 0.0, 1.0, 0.0,
        ];
        let c = column_cosines(&m, 2, 5, &[2.0, 0.0]);
        let expected = [1.0, 0.0, -1.0, std::f32::consts::FRAC_1_SQRT_2, 0.0];
        for (a, b) in c.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{c:?}");
        }
        assert_eq!(top_columns(&c, 2), [0, 3]);
        assert_eq!(top_columns(&c, 9), [0, 3, 1, 4, 2]);
        let tox = region_toxicity(&c, &[0, 3]);
        assert!((tox.all_columns - (1.0 - 1.0 + 0.5f64.sqrt()) / 5.0).abs() < 1e-6);
        assert!((tox.top_columns - (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-6);
        assert_eq!(tox.top_k, 2);
    }

    #[test]
    fn reduction_rate_signs() {
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
        assert!(close(reduction_rate(0.02, 0.01), 50.0));
        assert!(close(reduction_rate(-0.02, -0.03), 50.0));
        assert!(close(reduction_rate(0.02, 0.03), -50.0));
        assert_eq!(reduction_rate(0.0, 0.1), None);
    }
}
