//! Rotary position embeddings in the Hugging Face `rotate_half` convention: the first and second
//! halves of each head are the two coordinates of a rotation, and the angle table is
//! `cat(freqs, freqs)`. Angles are computed on the host in f32 exactly as `LlamaRotaryEmbedding`
//! does, for the positions of the current batch only.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// Cosine and sine of every (row, position, head, channel) of one forward pass, materialised for
/// each head count used (queries and keys differ under GQA) so that the products are contiguous.
#[derive(Debug, Clone)]
pub struct Rotary<B: Backend> {
    /// `(heads, cos, signed sin)` with tensors `[batch, seq, heads, head_dim]`; the first half of
    /// the signed sine is negated so that `rotate_half(x) * sin = swap_halves(x) * signed_sin`.
    tables: Vec<(usize, Tensor<B, 4>, Tensor<B, 4>)>,
}

/// The frequencies of a rotary embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct RotarySpec {
    /// Width of a head.
    pub head_dim: usize,
    /// `rope_theta`.
    pub theta: f64,
    /// Linear position scaling (positions are divided by it).
    pub linear_factor: f64,
}

impl RotarySpec {
    /// `1 / theta^(2i / head_dim)` for i < head_dim / 2, in f32 like transformers.
    pub fn inv_freq(&self) -> Vec<f32> {
        let dim = self.head_dim as f32;
        let theta = self.theta as f32;
        (0..self.head_dim / 2)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / dim) / self.linear_factor as f32)
            .collect()
    }

    /// Angle tables for a batch of position rows (all rows the same length), for inputs with
    /// each of `head_counts` heads.
    pub fn tables<B: Backend>(
        &self,
        positions: &[Vec<usize>],
        head_counts: &[usize],
        device: &B::Device,
    ) -> Rotary<B> {
        let batch = positions.len();
        let seq = positions.first().map_or(0, Vec::len);
        let inv_freq = self.inv_freq();
        // Per (row, position): cos and signed sin over head_dim.
        let mut cos_rows = Vec::with_capacity(batch * seq);
        let mut sin_rows = Vec::with_capacity(batch * seq);
        for row in positions {
            assert_eq!(row.len(), seq, "position rows must have equal length");
            for &p in row {
                let angles: Vec<f32> = inv_freq.iter().map(|f| p as f32 * f).collect();
                let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
                let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
                cos_rows.push([cos.as_slice(), cos.as_slice()].concat());
                sin_rows.push(
                    sin.iter()
                        .map(|s| -s)
                        .chain(sin.iter().copied())
                        .collect::<Vec<_>>(),
                );
            }
        }
        let mut tables = Vec::new();
        for &heads in head_counts {
            if tables.iter().any(|(h, _, _)| *h == heads) {
                continue;
            }
            let repeat = |rows: &[Vec<f32>]| -> Vec<f32> {
                rows.iter()
                    .flat_map(|r| std::iter::repeat_n(r.as_slice(), heads).flatten())
                    .copied()
                    .collect()
            };
            let shape = [batch, seq, heads, self.head_dim];
            let cos = Tensor::from_data(TensorData::new(repeat(&cos_rows), shape), device);
            let sin = Tensor::from_data(TensorData::new(repeat(&sin_rows), shape), device);
            tables.push((heads, cos, sin));
        }
        Rotary { tables }
    }
}

impl<B: Backend> Rotary<B> {
    /// Rotates queries or keys: `x * cos + rotate_half(x) * sin`.
    ///
    /// # Shapes
    /// - x: `[batch, seq, heads, head_dim]` (heads must be one of the table's head counts)
    /// - output: `[batch, seq, heads, head_dim]`
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, heads, dim] = x.dims();
        let (_, cos, sin) = self
            .tables
            .iter()
            .find(|(h, _, _)| *h == heads)
            .expect("rotary tables are built for every head count of the model");
        let half = dim / 2;
        let swapped = Tensor::cat(
            vec![
                x.clone().narrow(3, half, half),
                x.clone().narrow(3, 0, half),
            ],
            3,
        );
        x * cos.clone() + swapped * sin.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn position_zero_is_identity_and_norm_is_preserved() {
        let device = Default::default();
        let spec = RotarySpec {
            head_dim: 8,
            theta: 10000.0,
            linear_factor: 1.0,
        };
        let x = Tensor::<TestBackend, 4>::from_data(
            TensorData::new(
                (0..16).map(|v| v as f32 - 7.5).collect::<Vec<_>>(),
                [1, 2, 1, 8],
            ),
            &device,
        );
        let rot = spec.tables::<TestBackend>(&[vec![0, 5]], &[1], &device);
        let y = rot.apply(x.clone());
        let xv = x.to_data().to_vec::<f32>().unwrap();
        let yv = y.to_data().to_vec::<f32>().unwrap();
        // Position 0: unchanged.
        for i in 0..8 {
            assert!((xv[i] - yv[i]).abs() < 1e-6);
        }
        // Position 5: each (i, i + 4) pair is rotated, so its norm is unchanged.
        for i in 0..4 {
            let (a, b) = (xv[8 + i], xv[8 + i + 4]);
            let (c, d) = (yv[8 + i], yv[8 + i + 4]);
            assert!(((a * a + b * b) - (c * c + d * d)).abs() < 1e-4);
        }
    }

    #[test]
    fn rotation_matches_closed_form() {
        // One pair, position p: (a, b) -> (a cos - b sin, b cos + a sin) with angle p * 1.
        let device = Default::default();
        let spec = RotarySpec {
            head_dim: 2,
            theta: 10000.0,
            linear_factor: 1.0,
        };
        let x = Tensor::<TestBackend, 4>::from_data(
            TensorData::new(vec![0.3f32, -1.2], [1, 1, 1, 2]),
            &device,
        );
        let p = 3usize;
        let y = spec
            .tables::<TestBackend>(&[vec![p]], &[1], &device)
            .apply(x);
        let y = y.to_data().to_vec::<f32>().unwrap();
        let (s, c) = (p as f32).sin_cos();
        assert!((y[0] - (0.3 * c - -1.2 * s)).abs() < 1e-6);
        assert!((y[1] - (-1.2 * c + 0.3 * s)).abs() < 1e-6);
    }

    #[test]
    fn inv_freq_follows_theta() {
        let spec = RotarySpec {
            head_dim: 64,
            theta: 100000.0,
            linear_factor: 1.0,
        };
        let f = spec.inv_freq();
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0);
        assert!((f[31] - 100000f32.powf(-62.0 / 64.0)).abs() < 1e-9);
        let scaled = RotarySpec {
            linear_factor: 2.0,
            ..spec
        };
        assert!((scaled.inv_freq()[0] - 0.5).abs() < 1e-9);
    }
}
