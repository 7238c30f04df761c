//! SFT and DPO, the paper's training-set baselines (docs/method.md §Baselines): full fine-tuning of
//! every parameter on SafeEdit pairs, the way eric-mitchell/direct-preference-optimization (the
//! code SafeEdit.md points to) does it.
//!
//! - Examples: the prompt X (the adversarial prompt in the model's prompt format), the chosen
//!   response Y_safe and the rejected Y_unsafe, each response tokenised on its own and closed by
//!   the end-of-sequence token. Too long a pair is cut as the reference does: the prompt to
//!   `max_prompt_length` (keeping its **end**, where SafeEdit puts the question and the chat
//!   template its assistant header; the reference keeps the start for non-`hh` data), then the
//!   responses to `max_length − prompt`.
//! - SFT loss: −Σ_t log π(y_t | X, y_<t) over the chosen response, averaged over the batch
//!   (`average_log_prob=False`, as the reference).
//! - DPO loss: −log σ(β [(log π(Y_c) − log π_ref(Y_c)) − (log π(Y_r) − log π_ref(Y_r))]), the
//!   reference model being the starting checkpoint (the SFT model), its log-probs computed once.
//! - Optimiser: RMSprop (the reference's; PyTorch semantics, α 0.99, ε 1e-8) or AdamW, linear
//!   warm-up `min(1, (step + 1) / (warmup + 1))`, gradients accumulated over `batch_size`
//!   examples (one sequence pair at a time) and clipped to a global norm.
//!
//! - LoRA ([`super::lora`], `TrainConfig::lora`): the same objectives and update, applied to
//!   low-rank adapters of chosen projections instead of every parameter.
//!
//! A [`Trainer`] steps, saves a checkpoint that is a loadable Hugging Face directory plus the
//! optimiser state, and resumes from it to the same weights an uninterrupted run reaches.

mod checkpoint;
mod config;
mod examples;
mod optimizer;
#[cfg(test)]
mod tests;

use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use self::checkpoint::{TrainerState, fingerprint};
use self::optimizer::{Accumulate, Apply, FullOptimizer, trainable};
use super::lora::LoraAdapters;
use crate::error::{EngineError, Result};
use crate::loader::LanguageModel;
use crate::model::Llama;
use crate::optim::scalar;

pub use self::config::{Objective, OptimizerKind, TrainConfig};
pub use self::examples::{TrainExample, response_logps, train_examples};
pub use crate::model_dir::TrainedModelCard;

/// DPO's per-pair numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PreferenceStats {
    /// Mean β (log π − log π_ref) of the chosen responses.
    pub chosen_reward: f64,
    /// Mean β (log π − log π_ref) of the rejected responses.
    pub rejected_reward: f64,
    /// Share of pairs whose chosen reward exceeds the rejected one.
    pub accuracy: f64,
}

/// One optimiser step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// 0-based optimiser step.
    pub step: usize,
    /// Epoch the step's first example belongs to (0-based).
    pub epoch: usize,
    /// Mean loss over the step's examples.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Examples in the step.
    pub examples: usize,
    /// Wall time of the step.
    pub seconds: f64,
    /// DPO only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preference: Option<PreferenceStats>,
}

/// Full fine-tuning of a model with SFT or DPO.
pub struct Trainer<AD: AutodiffBackend> {
    /// Every parameter trained; with LoRA the frozen base (no gradient tracked).
    model: Llama<AD>,
    /// The LoRA adapters, when training them instead of the model.
    lora: Option<LoraAdapters<AD::InnerBackend>>,
    optimizer: FullOptimizer<AD::InnerBackend>,
    examples: Vec<TrainExample>,
    state: TrainerState,
    pad_id: u32,
    device: AD::Device,
}

impl<AD: AutodiffBackend> Trainer<AD> {
    /// Starts training `lm`'s weights (copied; `lm` is untouched). DPO computes the reference
    /// log-probs with `lm` first (one forward per pair), calling `on_reference(done, total)`.
    pub fn new(
        lm: &LanguageModel<AD::InnerBackend>,
        examples: Vec<TrainExample>,
        config: TrainConfig,
        on_reference: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        config.validate()?;
        if examples.is_empty() {
            return Err(EngineError::InvalidInput("no training examples".into()));
        }
        let device = lm.device.clone();
        let pad_id = lm.tokenizer.special.pad_id();
        let reference = match config.objective {
            Objective::Sft => Vec::new(),
            Objective::Dpo => examples
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let logps = response_logps(
                        &lm.model,
                        &e.prompt,
                        &[&e.chosen, &e.rejected],
                        pad_id,
                        &device,
                    );
                    let v: Vec<f32> = logps.to_data().convert::<f32>().to_vec().expect("f32");
                    on_reference(i + 1, examples.len());
                    [v[0] as f64, v[1] as f64]
                })
                .collect(),
        };
        let mut order = Vec::with_capacity(examples.len() * config.epochs);
        let mut rng = StdRng::seed_from_u64(config.seed);
        for _ in 0..config.epochs {
            let mut epoch: Vec<usize> = (0..examples.len()).collect();
            epoch.shuffle(&mut rng);
            order.extend(epoch);
        }
        let lora = match &config.lora {
            Some(lora) => Some(LoraAdapters::init(&lm.model, lora.clone(), &device)?),
            None => None,
        };
        Ok(Self {
            model: match lora {
                Some(_) => lm.model.clone().train::<AD>(),
                None => trainable::<AD>(&lm.model),
            },
            lora,
            optimizer: FullOptimizer::new(config.optimizer, config.weight_decay),
            state: TrainerState {
                fingerprint: fingerprint(&examples),
                config,
                step: 0,
                adam_t: 0,
                order,
                reference,
                log: Vec::new(),
            },
            examples,
            pad_id,
            device,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &TrainConfig {
        &self.state.config
    }

    /// Optimiser steps done.
    pub fn steps_done(&self) -> usize {
        self.state.step
    }

    /// Optimiser steps in the whole run.
    pub fn total_steps(&self) -> usize {
        self.state
            .order
            .len()
            .div_ceil(self.state.config.batch_size)
    }

    /// Whether every step is done.
    pub fn finished(&self) -> bool {
        self.steps_done() >= self.total_steps()
    }

    /// The log of every step so far.
    pub fn log(&self) -> &[StepLog] {
        &self.state.log
    }

    /// The order examples are consumed in (indices into [`Trainer::examples`], all epochs).
    pub fn order(&self) -> &[usize] {
        &self.state.order
    }

    /// DPO's reference log-probs (chosen, rejected) per example; empty for SFT.
    pub fn reference_logps(&self) -> &[[f64; 2]] {
        &self.state.reference
    }

    /// The examples.
    pub fn examples(&self) -> &[TrainExample] {
        &self.examples
    }

    /// The current weights, off the autodiff graph (LoRA: merged into the base).
    pub fn model(&self) -> Llama<AD::InnerBackend> {
        match &self.lora {
            Some(lora) => lora.merged(&self.model.valid()),
            None => self.model.valid(),
        }
    }

    /// The LoRA adapters, when training them.
    pub fn lora(&self) -> Option<&LoraAdapters<AD::InnerBackend>> {
        self.lora.as_ref()
    }

    /// Numbers the optimiser updates.
    pub fn trained_params(&self) -> usize {
        match &self.lora {
            Some(lora) => lora.num_params(),
            None => self.model.num_params(),
        }
    }

    /// With LoRA: the model whose targeted weights are `W + (α / r) B A` on the autodiff
    /// graph, and the A / B leaves (optimiser order) to read the gradients from.
    fn lora_forward_model(
        &self,
        lora: &LoraAdapters<AD::InnerBackend>,
    ) -> (Llama<AD>, Vec<Tensor<AD, 2>>) {
        let leaves: Vec<Tensor<AD, 2>> = lora
            .tensors()
            .into_iter()
            .map(|t| Tensor::from_inner(t).require_grad())
            .collect();
        let scale = lora.config.scale();
        let mut model = self.model.clone();
        for (n, adapter) in lora.adapters.iter().enumerate() {
            let w = self
                .model
                .matrix_f32(adapter.id)
                .expect("adapter targets a matrix");
            let delta = leaves[2 * n + 1].clone().matmul(leaves[2 * n].clone()) * scale;
            model = model.with_matrix(adapter.id, w + delta);
        }
        (model, leaves)
    }

    /// Loss of one example (DPO: also the two policy log-probs).
    fn example_loss(&self, model: &Llama<AD>, index: usize) -> (Tensor<AD, 1>, Option<[f64; 2]>) {
        let e = &self.examples[index];
        match self.state.config.objective {
            Objective::Sft => {
                let logp =
                    response_logps(model, &e.prompt, &[&e.chosen], self.pad_id, &self.device);
                (logp.neg(), None)
            }
            Objective::Dpo => {
                let logps = response_logps(
                    model,
                    &e.prompt,
                    &[&e.chosen, &e.rejected],
                    self.pad_id,
                    &self.device,
                );
                let [ref_c, ref_r] = self.state.reference[index];
                let chosen = logps.clone().narrow(0, 0, 1);
                let rejected = logps.narrow(0, 1, 1);
                let policy = [
                    scalar(chosen.clone().inner()),
                    scalar(rejected.clone().inner()),
                ];
                let margin = (chosen - rejected) - (ref_c - ref_r);
                let loss = log_sigmoid(margin * self.state.config.beta).neg();
                (loss, Some(policy))
            }
        }
    }

    /// One optimiser step over the next `batch_size` examples.
    pub fn step(&mut self) -> Result<StepLog> {
        if self.finished() {
            return Err(EngineError::InvalidInput("training is finished".into()));
        }
        let started = Instant::now();
        let config = self.state.config.clone();
        let step = self.state.step;
        let from = step * config.batch_size;
        let to = (from + config.batch_size).min(self.state.order.len());
        let indices: Vec<usize> = self.state.order[from..to].to_vec();
        let k = indices.len() as f64;
        let mut acc = Vec::new();
        let mut loss_sum = 0.0;
        let (mut reward_c, mut reward_r, mut wins) = (0.0, 0.0, 0.0);
        for &i in &indices {
            let (model, leaves) = match &self.lora {
                Some(lora) => {
                    let (model, leaves) = self.lora_forward_model(lora);
                    (model, Some(leaves))
                }
                None => (self.model.clone(), None),
            };
            let (loss, policy) = self.example_loss(&model, i);
            let value = scalar(loss.clone().inner());
            if !value.is_finite() {
                return Err(EngineError::InvalidInput(format!(
                    "loss became {value} at step {step} (example id {})",
                    self.examples[i].id
                )));
            }
            loss_sum += value;
            if let Some([c, r]) = policy {
                let [ref_c, ref_r] = self.state.reference[i];
                let rc = config.beta * (c - ref_c);
                let rr = config.beta * (r - ref_r);
                reward_c += rc;
                reward_r += rr;
                wins += f64::from(u8::from(rc > rr));
            }
            let mut grads = (loss / k).backward();
            match leaves {
                Some(leaves) => {
                    for (j, leaf) in leaves.iter().enumerate() {
                        let n = leaf.shape().num_elements();
                        let grad = leaf
                            .grad_remove(&mut grads)
                            .map(|g| g.reshape([n]))
                            .unwrap_or_else(|| Tensor::zeros([n], &self.device));
                        if j == acc.len() {
                            acc.push(grad);
                        } else {
                            acc[j] = acc[j].clone() + grad;
                        }
                    }
                }
                None => self.model.visit(&mut Accumulate::<AD> {
                    grads: &mut grads,
                    acc: &mut acc,
                    index: 0,
                }),
            }
        }
        let norm = acc
            .iter()
            .map(|g| scalar(g.clone().square().sum()))
            .sum::<f64>()
            .sqrt();
        // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when above.
        let scale = if norm > config.max_grad_norm {
            config.max_grad_norm / (norm + 1e-6)
        } else {
            1.0
        };
        let lr = config.lr_at(step);
        self.optimizer.t += 1;
        if let Some(lora) = &mut self.lora {
            let updated = lora
                .tensors()
                .into_iter()
                .enumerate()
                .map(|(j, t)| {
                    let dims = t.dims();
                    let w = t.reshape([dims[0] * dims[1]]);
                    let g = acc[j].clone() * scale;
                    self.optimizer.update(j, w, g, lr).reshape(dims)
                })
                .collect();
            lora.set_tensors(updated);
        } else {
            let model = self.model.clone();
            self.model = model.map(&mut Apply::<AD> {
                grads: &acc,
                optimizer: &mut self.optimizer,
                scale,
                lr,
                index: 0,
            });
        }
        self.state.adam_t = self.optimizer.t;
        self.state.step += 1;
        let log = StepLog {
            step,
            epoch: from / self.examples.len(),
            loss: loss_sum / k,
            lr,
            grad_norm: norm,
            examples: indices.len(),
            seconds: started.elapsed().as_secs_f64(),
            preference: (config.objective == Objective::Dpo).then(|| PreferenceStats {
                chosen_reward: reward_c / k,
                rejected_reward: reward_r / k,
                accuracy: wins / k,
            }),
        };
        self.state.log.push(log.clone());
        Ok(log)
    }
}
