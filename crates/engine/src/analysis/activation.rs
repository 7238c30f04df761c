//! Activation shift (docs/method.md §Mechanisms, D10): the activation entering `down_proj` at the
//! toxic layer ℓ (`act(gate) ⊙ up`, d_ff wide), pooled per input over its tokens (mean) and at its
//! last token, averaged over the adversarial inputs; a method's shift rate is `‖μ_method −
//! μ_vanilla‖₂ / ‖μ_vanilla‖₂ × 100`. The inputs are teacher-forced (the same token ids for every
//! model), so DINM, which changes only layer ℓ's `down_proj`, shifts nothing at ℓ by construction.
//!
//! For the paper's Fig. 8, the residual after layer ℓ's attention (`resid_mid`) at each input's
//! last token, projected on the shift direction δ = mean over methods and inputs of
//! `h_method − h_vanilla` and on the first principal component of all points with δ removed.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::norm;
use crate::error::{EngineError, Result};
use crate::model::{Batch, Llama};

/// What one model's layer ℓ saw over a set of inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationMeans {
    /// The layer.
    pub layer: usize,
    /// Inputs averaged.
    pub inputs: usize,
    /// Mean over inputs of each input's token-mean activation (`d_ff`).
    pub token_mean: Vec<f32>,
    /// Mean over inputs of each input's last-token activation (`d_ff`).
    pub last_token: Vec<f32>,
    /// Each input's `resid_mid` at its last token (`d_model`), for the projection view.
    pub mid_last: Vec<Vec<f32>>,
    /// Each input's last-token activation (`d_ff`), e.g. to tell which inputs fire the region.
    pub last_by_input: Vec<Vec<f32>>,
}

/// Runs every prompt (one at a time, so no padding) up to layer ℓ's `down_proj` and pools.
pub fn mean_activations<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    layer: usize,
    device: &B::Device,
    on_input: &mut dyn FnMut(usize),
) -> Result<ActivationMeans> {
    if layer >= model.n_layers() {
        return Err(EngineError::InvalidInput(format!(
            "layer {layer} does not exist (the model has {})",
            model.n_layers()
        )));
    }
    if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
        return Err(EngineError::InvalidInput(
            "the activation inputs must be non-empty".into(),
        ));
    }
    let mut token_sum: Vec<f64> = Vec::new();
    let mut last_sum: Vec<f64> = Vec::new();
    let mut mid_last = Vec::with_capacity(prompts.len());
    let mut last_by_input = Vec::with_capacity(prompts.len());
    for (i, ids) in prompts.iter().enumerate() {
        let (mid, act) = model.split_at_down_proj(&Batch::single(ids, device), layer);
        let n = ids.len();
        let [_, _, d_ff] = act.dims();
        let [_, _, d_model] = mid.dims();
        let mean = host(act.clone().mean_dim(1).reshape([d_ff]));
        let last = host(act.narrow(1, n - 1, 1).reshape([d_ff]));
        mid_last.push(host(mid.narrow(1, n - 1, 1).reshape([d_model])));
        if token_sum.is_empty() {
            token_sum = vec![0.0; d_ff];
            last_sum = vec![0.0; d_ff];
        }
        for (s, v) in token_sum.iter_mut().zip(&mean) {
            *s += *v as f64;
        }
        for (s, v) in last_sum.iter_mut().zip(&last) {
            *s += *v as f64;
        }
        last_by_input.push(last);
        on_input(i);
    }
    let k = prompts.len() as f64;
    let average = |sums: Vec<f64>| sums.into_iter().map(|s| (s / k) as f32).collect();
    Ok(ActivationMeans {
        layer,
        inputs: prompts.len(),
        token_mean: average(token_sum),
        last_token: average(last_sum),
        mid_last,
        last_by_input,
    })
}

fn host<B: Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 activations")
}

/// `‖method − vanilla‖₂ / ‖vanilla‖₂ × 100` (`None` when the vanilla mean is zero).
pub fn shift_rate(vanilla: &[f32], method: &[f32]) -> Option<f64> {
    assert_eq!(vanilla.len(), method.len(), "same width");
    let base = norm(vanilla);
    let diff = vanilla
        .iter()
        .zip(method)
        .map(|(v, m)| (*m as f64 - *v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    (base > 0.0).then(|| diff / base * 100.0)
}

/// The Fig. 8 coordinates: for each model (vanilla first) and each input, the projection on the
/// shift direction (x) and on the first principal component orthogonal to it (y).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftProjection {
    /// `x[model][input]`.
    pub x: Vec<Vec<f64>>,
    /// `y[model][input]`.
    pub y: Vec<Vec<f64>>,
    /// ‖δ‖: zero when no model moved the residuals (then every x is 0).
    pub shift_norm: f64,
    /// Fraction of the (δ-removed) variance the first component explains.
    pub explained: f64,
}

/// Projects every model's points (`models[0]` is vanilla; each model has the same inputs in the
/// same order) on δ and on the first principal component of all points with δ projected out.
pub fn shift_projection(models: &[Vec<Vec<f32>>]) -> ShiftProjection {
    assert!(!models.is_empty(), "at least the vanilla model");
    let n = models[0].len();
    assert!(models.iter().all(|m| m.len() == n), "same inputs per model");
    let d = models[0].first().map_or(0, Vec::len);
    let vanilla = &models[0];
    let mut delta = vec![0.0f64; d];
    let pairs = (models.len() - 1) * n;
    for model in &models[1..] {
        for (h, v) in model.iter().zip(vanilla) {
            for k in 0..d {
                delta[k] += (h[k] as f64 - v[k] as f64) / pairs.max(1) as f64;
            }
        }
    }
    let shift_norm = delta.iter().map(|x| x * x).sum::<f64>().sqrt();
    let direction: Option<Vec<f64>> =
        (shift_norm > 0.0).then(|| delta.iter().map(|x| x / shift_norm).collect());

    let points: Vec<&Vec<f32>> = models.iter().flatten().collect();
    let mut center = vec![0.0f64; d];
    for p in &points {
        for k in 0..d {
            center[k] += p[k] as f64 / points.len() as f64;
        }
    }
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let centered: Vec<Vec<f64>> = points
        .iter()
        .map(|p| {
            let mut c: Vec<f64> = (0..d).map(|k| p[k] as f64 - center[k]).collect();
            if let Some(dir) = &direction {
                let along = dot(&c, dir);
                for k in 0..d {
                    c[k] -= along * dir[k];
                }
            }
            c
        })
        .collect();
    // Power iteration on the covariance, from a fixed start.
    let mut pc = vec![1.0 / (d.max(1) as f64).sqrt(); d];
    let mut eigen = 0.0;
    for _ in 0..200 {
        let mut next = vec![0.0f64; d];
        for c in &centered {
            let s = dot(c, &pc);
            for k in 0..d {
                next[k] += s * c[k];
            }
        }
        let len = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        if len == 0.0 {
            break;
        }
        eigen = len;
        pc = next.into_iter().map(|x| x / len).collect();
    }
    let total: f64 = centered.iter().map(|c| dot(c, c)).sum();
    let explained = if total > 0.0 { eigen / total } else { 0.0 };
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (m, model) in models.iter().enumerate() {
        let mut xs = Vec::with_capacity(n);
        let mut ys = Vec::with_capacity(n);
        for (i, p) in model.iter().enumerate() {
            let c: Vec<f64> = (0..d).map(|k| p[k] as f64 - center[k]).collect();
            xs.push(direction.as_ref().map_or(0.0, |dir| dot(&c, dir)));
            ys.push(dot(&centered[m * n + i], &pc));
        }
        x.push(xs);
        y.push(ys);
    }
    ShiftProjection {
        x,
        y,
        shift_norm,
        explained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::loader::LanguageModel;
    use crate::names::{LayerParam, WeightId};

    #[test]
    fn shift_rate_is_relative_distance() {
        assert_eq!(shift_rate(&[3.0, 4.0], &[3.0, 4.0]), Some(0.0));
        assert!((shift_rate(&[3.0, 4.0], &[0.0, 0.0]).unwrap() - 100.0).abs() < 1e-9);
        assert!((shift_rate(&[3.0, 4.0], &[3.0, 4.5]).unwrap() - 10.0).abs() < 1e-6);
        assert_eq!(shift_rate(&[0.0], &[1.0]), None);
    }

    #[test]
    fn projection_finds_the_shift_and_the_spread() {
        // Vanilla points spread along axis 1; the method moves every point by +2 on axis 0.
        let vanilla: Vec<Vec<f32>> = (0..5).map(|i| vec![0.0, i as f32 - 2.0, 0.0]).collect();
        let shifted: Vec<Vec<f32>> = vanilla.iter().map(|p| vec![2.0, p[1], 0.0]).collect();
        let proj = shift_projection(&[vanilla, shifted]);
        assert!((proj.shift_norm - 2.0).abs() < 1e-9);
        for i in 0..5 {
            assert!((proj.x[1][i] - proj.x[0][i] - 2.0).abs() < 1e-9);
            assert!((proj.y[0][i].abs() - (i as f64 - 2.0).abs()).abs() < 1e-6);
            assert!((proj.y[0][i] - proj.y[1][i]).abs() < 1e-9);
        }
        assert!((proj.explained - 1.0).abs() < 1e-9);
    }

    #[test]
    fn editing_down_proj_at_the_layer_shifts_nothing_there() {
        // DINM's "zero activation shift" (docs/method.md §Mechanisms): only layer ℓ's down_proj
        // changes, so the activation entering it, and everything before, is bit-identical on fixed
        // inputs.
        let lm = LanguageModel::<TestBackend>::tiny(&Default::default());
        let layer = 1;
        let w = lm
            .model
            .matrix(WeightId::layer(layer, LayerParam::DownProj))
            .unwrap();
        let edited = lm
            .model
            .with_down_proj(layer, w.clone() + w.ones_like() * 0.5);
        let prompts = vec![
            lm.tokenizer.encode("how do I pick a lock", true).unwrap(),
            lm.tokenizer.encode("tell me a story", true).unwrap(),
        ];
        let run = |model: &Llama<TestBackend>, layer| {
            mean_activations(model, &prompts, layer, &lm.device, &mut |_| {}).unwrap()
        };
        let (v, e) = (run(&lm.model, layer), run(&edited, layer));
        assert_eq!(v, e);
        assert_eq!(shift_rate(&v.token_mean, &e.token_mean), Some(0.0));
        // An edit below the measured layer does shift it.
        let below = lm.model.with_down_proj(0, {
            let w0 = lm
                .model
                .matrix(WeightId::layer(0, LayerParam::DownProj))
                .unwrap();
            w0.clone() + w0.ones_like() * 0.5
        });
        let b = run(&below, layer);
        assert!(shift_rate(&v.token_mean, &b.token_mean).unwrap() > 0.0);
        assert_eq!(v.inputs, 2);
        assert_eq!(v.mid_last.len(), 2);
    }
}
