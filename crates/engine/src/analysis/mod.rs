//! The mechanism analysis (docs/method.md §Mechanisms; the paper's §4.3, App. E): does a
//! detoxifying method
//! change the toxic region's parameters (DINM) or the activations flowing into it (SFT, DPO)?
//!
//! - [`probe`]: the toxicity probe `P(toxic | h_L) = σ(w·h̄_L + b)` on mean-pooled final-layer
//!   states (docs/method.md §Mechanisms).
//! - [`region`]: per-column cosine of a layer's `down_proj` with the probe, the toxicity of the
//!   region over all columns and over the top-k ranked on the vanilla model, and the reduction
//!   rate (docs/method.md §Mechanisms, D10).
//! - [`activation`]: the mean activation entering `down_proj` at the toxic layer over adversarial
//!   inputs (token-mean and last-token pooling), the shift rate against vanilla (docs/method.md
//!   §Mechanisms), the mid-layer residuals and their projection on the shift direction and the
//!   first principal component (the paper's Fig. 8).
//! - [`lens`]: the top tokens of value vectors through the unembedding (Lee et al. 2024).

pub mod activation;
pub mod lens;
pub mod probe;
pub mod region;

pub use activation::{
    ActivationMeans, ShiftProjection, mean_activations, shift_projection, shift_rate,
};
pub use lens::{TokenScore, top_tokens};
pub use probe::{ProbeExample, ProbeReport, ToxicityProbe, pooled_final_states, train_probe};
pub use region::{RegionToxicity, column_cosines, reduction_rate, region_toxicity, top_columns};

/// Euclidean norm.
pub(crate) fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}
