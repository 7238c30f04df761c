//! Checkpoints: the current weights as a loadable model directory (with the card), the
//! optimiser's moments and `trainer.json` (step, order, reference log-probs, log), and resuming
//! from them to the weights an uninterrupted run reaches.

use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::optimizer::{CountParams, FullOptimizer, trainable};
use super::{StepLog, TrainConfig, TrainExample, Trainer};
use crate::baselines::lora::{ADAPTER_DIR, LoraAdapters};
use crate::error::{EngineError, Result};
use crate::loader::LanguageModel;
use crate::model_dir::{TrainedModelCard, rename, write_atomic};
use crate::weights::{SaveDtype, write_safetensors};

/// Resumable state besides weights and optimiser moments (`trainer.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TrainerState {
    pub(super) config: TrainConfig,
    pub(super) step: usize,
    pub(super) adam_t: usize,
    pub(super) order: Vec<usize>,
    /// Example ids and lengths, to refuse resuming on other data.
    pub(super) fingerprint: Vec<(u64, usize, usize, usize)>,
    /// DPO: the reference log-probs of (chosen, rejected) per example.
    pub(super) reference: Vec<[f64; 2]>,
    pub(super) log: Vec<StepLog>,
}

pub(super) const TRAINER_FILE: &str = "trainer.json";
pub(super) const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Example ids and lengths, to refuse resuming on other data.
pub(super) fn fingerprint(examples: &[TrainExample]) -> Vec<(u64, usize, usize, usize)> {
    examples
        .iter()
        .map(|e| (e.id, e.prompt.len(), e.chosen.len(), e.rejected.len()))
        .collect()
}

impl<AD: AutodiffBackend> Trainer<AD> {
    /// Resumes from a checkpoint directory written by [`Trainer::save`]; `lm` is that directory
    /// loaded as a model, `examples` the same pairs as before.
    pub fn resume(
        lm: &LanguageModel<AD::InnerBackend>,
        dir: &Path,
        examples: Vec<TrainExample>,
    ) -> Result<Self> {
        let path = dir.join(TRAINER_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
        let state: TrainerState = serde_json::from_str(&text).map_err(|e| EngineError::Json {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if state.fingerprint != fingerprint(&examples) {
            return Err(EngineError::InvalidInput(format!(
                "{}: the checkpoint was trained on other data ({} pairs) than given now ({} \
                 pairs); resume with the same --data, --fold and format",
                path.display(),
                state.fingerprint.len(),
                examples.len()
            )));
        }
        let mut optimizer = FullOptimizer::new(state.config.optimizer, state.config.weight_decay);
        optimizer.t = state.adam_t;
        let finished = state.step >= state.order.len().div_ceil(state.config.batch_size);
        let lora = match &state.config.lora {
            Some(config) => Some(LoraAdapters::load(
                &dir.join(ADAPTER_DIR),
                &lm.model,
                config.clone(),
                &lm.device,
            )?),
            None => None,
        };
        if state.step > 0 && !finished {
            let count = match &lora {
                Some(lora) => 2 * lora.adapters.len(),
                None => {
                    let mut count = CountParams(0);
                    lm.model.visit(&mut count);
                    count.0
                }
            };
            optimizer.load(&dir.join(OPTIMIZER_FILE), count, &lm.device)?;
        }
        Ok(Self {
            model: match lora {
                Some(_) => lm.model.clone().train::<AD>(),
                None => trainable::<AD>(&lm.model),
            },
            lora,
            optimizer,
            examples,
            pad_id: lm.tokenizer.special.pad_id(),
            device: lm.device.clone(),
            state,
        })
    }

    /// Writes the current weights as a Hugging Face directory (see [`LanguageModel::save_dir`]) with the
    /// card, plus the optimiser state and `trainer.json` unless `final_model` (then any earlier
    /// optimiser state is removed: the directory is just the trained model).
    pub fn save(
        &self,
        lm: &LanguageModel<AD::InnerBackend>,
        dir: &Path,
        card: &TrainedModelCard,
        final_model: bool,
    ) -> Result<()> {
        let trained = lm.with_model(self.model());
        trained.save_dir(dir, Some(card))?;
        if let Some(lora) = &self.lora {
            lora.save(&dir.join(ADAPTER_DIR), &card.base_source)?;
        }
        let optimizer = dir.join(OPTIMIZER_FILE);
        if final_model {
            if optimizer.exists() {
                std::fs::remove_file(&optimizer).map_err(|e| EngineError::io(&optimizer, e))?;
            }
        } else {
            let partial = dir.join(format!("{OPTIMIZER_FILE}.partial"));
            write_safetensors(&partial, &self.optimizer.tensors(), SaveDtype::F32, None)?;
            rename(&partial, &optimizer)?;
        }
        let state = serde_json::to_string(&self.state).expect("state serialises");
        write_atomic(&dir.join(TRAINER_FILE), state.as_bytes())
    }
}
