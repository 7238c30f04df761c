//! Training pairs as token ids (the reference's cutting rule) and the teacher-forced
//! log-probability of responses, which both objectives score.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::error::{EngineError, Result};
use crate::loader::LanguageModel;
use crate::model::{Batch, ForwardOptions, Llama, Logits, PaddingSide};
use safeedit_core::{PromptFormat, SafeEditRecord};

/// One training pair, as token ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainExample {
    /// SafeEdit instance id.
    pub id: u64,
    /// The prompt (format applied, possibly cut).
    pub prompt: Vec<u32>,
    /// Y_safe + end of sequence.
    pub chosen: Vec<u32>,
    /// Y_unsafe + end of sequence.
    pub rejected: Vec<u32>,
}

/// Tokenises the records as training pairs (see the module docs for the cutting rule).
pub fn train_examples<B: Backend>(
    lm: &LanguageModel<B>,
    records: &[SafeEditRecord],
    format: &PromptFormat,
    config: &TrainConfig,
) -> Result<Vec<TrainExample>> {
    config.validate()?;
    let tok = &lm.tokenizer;
    let eos = tok.special.eos.first().copied();
    let response = |text: &str| -> Result<Vec<u32>> {
        let mut ids = tok.encode(text, false)?;
        ids.extend(eos);
        Ok(ids)
    };
    records
        .iter()
        .map(|r| {
            let mut prompt = tok.encode_prompt(&r.adversarial_prompt, format)?;
            let mut chosen = response(&r.safe_generation)?;
            let mut rejected = response(&r.unsafe_generation)?;
            if chosen.len() <= 1 {
                return Err(EngineError::InvalidInput(format!(
                    "instance {}: `safe generation` is empty",
                    r.id
                )));
            }
            if prompt.len() + chosen.len().max(rejected.len()) > config.max_length {
                if prompt.len() > config.max_prompt_length {
                    prompt.drain(..prompt.len() - config.max_prompt_length);
                }
                let room = config.max_length - prompt.len();
                chosen.truncate(room);
                rejected.truncate(room);
            }
            Ok(TrainExample {
                id: r.id,
                prompt,
                chosen,
                rejected,
            })
        })
        .collect()
}

/// Σ_t log p(response_t | prompt, response_<t) for each response after the shared prompt, `[n]`.
/// The responses are right-padded into one batch.
pub fn response_logps<B: Backend>(
    model: &Llama<B>,
    prompt: &[u32],
    responses: &[&[u32]],
    pad_id: u32,
    device: &B::Device,
) -> Tensor<B, 1> {
    let rows: Vec<Vec<u32>> = responses
        .iter()
        .map(|r| prompt.iter().chain(r.iter()).copied().collect())
        .collect();
    let n = rows.len();
    let p = prompt.len();
    let longest = responses.iter().map(|r| r.len()).max().unwrap_or(0);
    let batch = Batch::padded(&rows, pad_id, PaddingSide::Right, device);
    let out = model.forward(
        &batch,
        None,
        &ForwardOptions {
            logits: Logits::Skip,
            hidden_states: true,
            mlp_activation: None,
        },
    );
    let last = out
        .hidden_states
        .last()
        .expect("final hidden state")
        .clone();
    // Position p - 1 + t predicts response token t.
    let logits = model.head(last.narrow(1, p - 1, longest));
    let mut targets = Vec::with_capacity(n * longest);
    let mut mask = Vec::with_capacity(n * longest);
    for r in responses {
        for t in 0..longest {
            targets.push(r.get(t).copied().unwrap_or(0) as i64);
            mask.push(if t < r.len() { 1f32 } else { 0.0 });
        }
    }
    let targets = Tensor::<B, 3, Int>::from_data(TensorData::new(targets, [n, longest, 1]), device);
    let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [n, longest]), device);
    let logp = log_softmax(logits, 2)
        .gather(2, targets)
        .reshape([n, longest]);
    (logp * mask).sum_dim(1).reshape([n])
}
