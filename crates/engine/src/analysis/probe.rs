//! The toxicity probe (docs/method.md §Mechanisms): `P(toxic | h) = σ(w·h̄_L + b)`, a logistic
//! regression (L2, C = 1, as scikit-learn's default in Lee et al.'s probe code) on the last
//! hidden state after the final norm (`hidden_states[-1]`), mean-pooled over the text's tokens.
//!
//! Deviations from the paper, which trains on Jigsaw (not obtainable offline): the examples are
//! the project's labelled safe / unsafe responses (SafeEdit's safe and unsafe generations plus
//! AlpacaEval answers as safe), split by question with the judge's fixed held-out rule; pooling
//! covers the text's real tokens (the first `max_tokens`), not padded positions.

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::judge::logistic::{Confusion, LogisticRegression};
use crate::loader::LanguageModel;
use crate::model::{Batch, ForwardOptions, Logits};

/// One labelled text for the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeExample {
    /// The text, scored alone (no prompt, no chat template).
    pub text: String,
    /// True for toxic / unsafe.
    pub toxic: bool,
    /// True when the example belongs to the held-out split.
    pub held_out: bool,
}

/// The fitted probe direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToxicityProbe {
    /// `w`, one weight per residual dimension (`d_model`).
    pub weights: Vec<f32>,
    /// `b`.
    pub bias: f64,
    /// Tokens pooled per text.
    pub max_tokens: usize,
}

impl ToxicityProbe {
    /// `P(toxic)` of a pooled state.
    pub fn probability(&self, pooled: &[f32]) -> f64 {
        let z: f64 = pooled
            .iter()
            .zip(&self.weights)
            .map(|(h, w)| *h as f64 * *w as f64)
            .sum::<f64>()
            + self.bias;
        1.0 / (1.0 + (-z).exp())
    }
}

/// A probe and how well it separates held-out texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The probe.
    pub probe: ToxicityProbe,
    /// Inverse L2 penalty.
    pub c: f64,
    /// Training examples `[non-toxic, toxic]`.
    pub train_counts: [usize; 2],
    /// Held-out examples `[non-toxic, toxic]`.
    pub held_out_counts: [usize; 2],
    /// Decisions on the training split.
    pub train: Confusion,
    /// Decisions on the held-out split (positive = toxic).
    pub held_out: Confusion,
}

/// The last hidden state after the final norm, mean-pooled over each text's first `max_tokens`
/// tokens (texts run one at a time, so no padding enters the mean).
///
/// # Shapes
/// - output: one `d_model` vector per text
pub fn pooled_final_states<B: Backend>(
    lm: &LanguageModel<B>,
    texts: &[String],
    max_tokens: usize,
) -> Result<Vec<Vec<f32>>> {
    let options = ForwardOptions {
        logits: Logits::Skip,
        hidden_states: true,
        mlp_activation: None,
    };
    texts
        .iter()
        .map(|text| {
            let mut ids = lm.tokenizer.encode(text, true)?;
            ids.truncate(max_tokens.min(lm.max_len()));
            if ids.is_empty() {
                return Err(EngineError::InvalidInput(format!(
                    "probe text {text:?} has no tokens"
                )));
            }
            let batch = Batch::single(&ids, &lm.device);
            let out = lm.model.forward(&batch, None, &options);
            let last = out
                .hidden_states
                .into_iter()
                .last()
                .expect("hidden states were requested");
            let [_, _, d] = last.dims();
            Ok(last
                .mean_dim(1)
                .reshape([d])
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 states"))
        })
        .collect()
}

/// Fits the probe on the training split of pooled states and measures it on the held-out split.
pub fn train_probe(
    pooled: &[Vec<f32>],
    examples: &[ProbeExample],
    c: f64,
    max_tokens: usize,
) -> Result<ProbeReport> {
    assert_eq!(pooled.len(), examples.len(), "one pooled state per example");
    let (train, held): (Vec<usize>, Vec<usize>) =
        (0..examples.len()).partition(|&i| !examples[i].held_out);
    for (name, split) in [("training", &train), ("held-out", &held)] {
        let toxic = split.iter().filter(|&&i| examples[i].toxic).count();
        if toxic == 0 || toxic == split.len() {
            return Err(EngineError::InvalidInput(format!(
                "the probe's {name} split needs toxic and non-toxic examples ({toxic} of {})",
                split.len()
            )));
        }
    }
    let x: Vec<Vec<f32>> = train.iter().map(|&i| pooled[i].clone()).collect();
    let y: Vec<bool> = train.iter().map(|&i| examples[i].toxic).collect();
    let model = LogisticRegression::fit(&x, &y, c, 100);
    let probe = ToxicityProbe {
        weights: model.weights.iter().map(|&w| w as f32).collect(),
        bias: model.bias,
        max_tokens,
    };
    let confusion = |idx: &[usize]| {
        Confusion::from_pairs(
            idx.iter()
                .map(|&i| (probe.probability(&pooled[i]) >= 0.5, examples[i].toxic)),
        )
    };
    let counts = |idx: &[usize]| {
        let toxic = idx.iter().filter(|&&i| examples[i].toxic).count();
        [idx.len() - toxic, toxic]
    };
    Ok(ProbeReport {
        c,
        train_counts: counts(&train),
        held_out_counts: counts(&held),
        train: confusion(&train),
        held_out: confusion(&held),
        probe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn probe_separates_a_known_direction() {
        // Pooled states whose first coordinate carries the label; the rest is noise.
        let mut state = 7u64;
        let mut noise = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let mut pooled = Vec::new();
        let mut examples = Vec::new();
        for i in 0..80 {
            let toxic = i % 2 == 0;
            let sign = if toxic { 1.0 } else { -1.0 };
            pooled.push(vec![sign * 2.0 + noise() * 0.5, noise(), noise()]);
            examples.push(ProbeExample {
                text: String::new(),
                toxic,
                held_out: i % 5 == 0 || i % 5 == 1,
            });
        }
        let report = train_probe(&pooled, &examples, 1.0, 128).unwrap();
        assert_eq!(report.held_out.accuracy(), 1.0);
        assert_eq!(report.held_out_counts, [16, 16]);
        let w = &report.probe.weights;
        assert!(w[0] > 5.0 * w[1].abs() && w[0] > 5.0 * w[2].abs(), "{w:?}");
        assert!(report.probe.probability(&[2.0, 0.0, 0.0]) > 0.9);
    }

    #[test]
    fn a_split_without_both_labels_is_an_error() {
        let pooled = vec![vec![1.0], vec![2.0], vec![3.0]];
        let examples: Vec<ProbeExample> = (0..3)
            .map(|i| ProbeExample {
                text: String::new(),
                toxic: i == 0,
                held_out: i == 2,
            })
            .collect();
        let err = train_probe(&pooled, &examples, 1.0, 128).unwrap_err();
        assert!(err.to_string().contains("held-out split"), "{err}");
    }

    #[test]
    fn pooled_states_are_the_mean_of_the_final_normed_states() {
        let lm = LanguageModel::<TestBackend>::tiny(&Default::default());
        let text = "hello world".to_string();
        let pooled = pooled_final_states(&lm, std::slice::from_ref(&text), 128).unwrap();
        let ids = lm.tokenizer.encode(&text, true).unwrap();
        let out = lm.model.forward(
            &Batch::single(&ids, &lm.device),
            None,
            &ForwardOptions {
                logits: Logits::Skip,
                hidden_states: true,
                mlp_activation: None,
            },
        );
        let last: Vec<f32> = out
            .hidden_states
            .last()
            .unwrap()
            .to_data()
            .to_vec()
            .unwrap();
        let d = pooled[0].len();
        let n = ids.len();
        for k in 0..d {
            let mean = (0..n).map(|t| last[t * d + k]).sum::<f32>() / n as f32;
            assert!((pooled[0][k] - mean).abs() < 1e-5);
        }
        // Truncation keeps the first tokens.
        let one = pooled_final_states(&lm, &[text], 1).unwrap();
        assert!((0..d).any(|k| (one[0][k] - pooled[0][k]).abs() > 1e-6));
    }
}
