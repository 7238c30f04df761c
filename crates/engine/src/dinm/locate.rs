//! Toxic-layer location (docs/method.md §Location, EasyEdit `SafetyEditor._locate_toxic_layer`).
//!
//! The safe and the unsafe response (no prompt) are tokenised as one padded batch (BOS as the
//! tokenizer's rule says, pad = EOS) and run once with hidden states. For every candidate
//! l = 1..L the distance is the Frobenius norm of `hs[l][safe] - hs[l][unsafe]` over all
//! positions, padding included; `hs[L]` is the final-normed output (transformers'
//! `output_hidden_states`). The toxic layer is `argmax_l d_l - 1` (ties keep the lowest).
//! Positions are `0..T` on both rows, as a plain transformers forward without `position_ids`.
//!
//! With right padding (the default, D4's choice for LLaMA-architecture models) every position,
//! padding included, matches transformers exactly (tested against PyTorch on the real model).
//! With left padding (EasyEdit's Mistral setting) the leading pad positions see no real key; as
//! in transformers' default SDPA attention on current PyTorch, their attention output is zero,
//! so their states (which enter the distance) are the embedding carried through the MLPs, and
//! the distances match transformers too (tested against PyTorch with SDPA on the real model).

use burn::tensor::ElementConversion;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::loader::LanguageModel;
use crate::model::{Batch, ForwardOptions, Logits, PaddingSide};

/// The located layer and the evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocateResult {
    /// 0-based decoder layer whose `mlp.down_proj.weight` DINM edits.
    pub layer: usize,
    /// `distances[i]`: ‖h_safe − h_unsafe‖_F at the output of decoder layer `i` (the last one
    /// after the final RMSNorm); one per decoder layer.
    pub distances: Vec<f32>,
    /// Padding used for the two responses (docs/method.md D4).
    pub padding_side: PaddingSide,
    /// Token counts of the safe and the unsafe response.
    pub lengths: [usize; 2],
}

impl LocateResult {
    /// The runner-up layer and its distance relative to the winner's (1.0 = a tie).
    pub fn runner_up(&self) -> Option<(usize, f32)> {
        let best = self.distances[self.layer];
        self.distances
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != self.layer)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, &d)| (i, if best > 0.0 { d / best } else { 1.0 }))
    }
}

/// Locates the toxic layer for one instance from its safe and unsafe responses.
pub fn locate_toxic_layer<B: Backend>(
    lm: &LanguageModel<B>,
    safe_response: &str,
    unsafe_response: &str,
    padding_side: PaddingSide,
) -> Result<LocateResult> {
    let tok = &lm.tokenizer;
    let safe = tok.encode(safe_response, true)?;
    let unsafe_ = tok.encode(unsafe_response, true)?;
    if safe.is_empty() || unsafe_.is_empty() {
        return Err(EngineError::InvalidInput(
            "a response to compare is empty".into(),
        ));
    }
    let longest = safe.len().max(unsafe_.len());
    if longest > lm.max_len() {
        return Err(EngineError::InvalidInput(format!(
            "a response has {longest} tokens, more than the model's context of {}",
            lm.max_len()
        )));
    }
    // EasyEdit sets pad = EOS.
    let pad = tok
        .special
        .eos
        .first()
        .copied()
        .unwrap_or_else(|| tok.special.pad_id());
    let lengths = [safe.len(), unsafe_.len()];
    let batch = Batch::<B>::padded(&[safe, unsafe_], pad, padding_side, &lm.device)
        .with_absolute_positions();
    let options = ForwardOptions {
        logits: Logits::Skip,
        hidden_states: true,
        mlp_activation: None,
    };
    let hidden = lm.model.forward(&batch, None, &options).hidden_states;
    let distances = hidden[1..]
        .iter()
        .map(|h| {
            let diff = h.clone().narrow(0, 0, 1) - h.clone().narrow(0, 1, 1);
            let sq: f64 = diff.square().sum().into_scalar().elem();
            sq.sqrt() as f32
        })
        .collect::<Vec<f32>>();
    let mut layer = 0;
    for (i, &d) in distances.iter().enumerate() {
        if d > distances[layer] {
            layer = i;
        }
    }
    Ok(LocateResult {
        layer,
        distances,
        padding_side,
        lengths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn identical_responses_are_at_distance_zero() {
        let lm = LanguageModel::<TestBackend>::tiny(&Default::default());
        let found = locate_toxic_layer(&lm, "I cannot help.", "I cannot help.", PaddingSide::Right)
            .unwrap();
        assert_eq!(found.distances.len(), lm.config.n_layers);
        assert!(found.distances.iter().all(|&d| d == 0.0));
        assert_eq!(found.layer, 0, "ties keep the lowest layer");
    }

    #[test]
    fn padding_positions_enter_the_distance() {
        let lm = LanguageModel::<TestBackend>::tiny(&Default::default());
        let short = locate_toxic_layer(&lm, "No.", "Sure, here", PaddingSide::Right).unwrap();
        assert_eq!(short.lengths, [3, 10]);
        assert!(short.distances.iter().all(|&d| d > 0.0));
        let (runner, ratio) = short.runner_up().unwrap();
        assert_ne!(runner, short.layer);
        assert!(ratio <= 1.0);
    }

    #[test]
    fn empty_response_is_rejected() {
        let lm = LanguageModel::<TestBackend>::tiny(&Default::default());
        assert!(locate_toxic_layer(&lm, "", "x", PaddingSide::Right).is_err());
    }
}
