//! A model as a Hugging Face directory: `config.json` for a [`LlamaConfig`], the weights as one
//! f32 safetensors file, the tokenizer files, and for trained models the card
//! (`safeedit_model.json`) whose prompt format the loader honours. Every file is written beside
//! its final name and renamed into place, so an interrupted save leaves the old file whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::baselines::train::{Objective, TrainConfig};
use crate::config::LlamaConfig;
use crate::error::{EngineError, Result};
use crate::model::Llama;
use crate::names::WeightId;
use crate::tokenizer::TextTokenizer;
use crate::weights::{RawTensor, SaveDtype, write_safetensors};
use safeedit_core::PromptFormat;

/// What `safeedit_model.json` says about a trained model; the loader reads its prompt format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedModelCard {
    /// `sft` or `dpo`.
    pub method: Objective,
    /// The model training started from (name and path).
    pub base_model: String,
    /// Its path as given.
    pub base_source: String,
    /// The prompt format the examples were rendered in (and evaluation must use).
    pub prompt_format: PromptFormat,
    /// The hyperparameters.
    pub config: TrainConfig,
    /// The training data, as the user named it (file and fold).
    pub data: String,
    /// Number of training pairs.
    pub n_examples: usize,
    /// Optimiser steps done.
    pub steps_done: usize,
    /// Optimiser steps planned.
    pub total_steps: usize,
    /// Mean loss of the last step.
    pub final_loss: Option<f64>,
}

impl TrainedModelCard {
    /// The card's file inside a model directory.
    pub const FILE: &'static str = "safeedit_model.json";

    /// Reads the card of a model directory (`None` when it has none).
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(Self::FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EngineError::Json {
                path,
                message: e.to_string(),
            })
    }

    /// Whether every planned step was done.
    pub fn finished(&self) -> bool {
        self.steps_done >= self.total_steps
    }
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| EngineError::io(to, e))
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    std::fs::write(&partial, bytes).map_err(|e| EngineError::io(&partial, e))?;
    rename(&partial, path)
}

/// Hugging Face `config.json` for a model.
pub fn hf_config_json(
    config: &LlamaConfig,
    architecture: &str,
    bos: Option<u32>,
    eos: &[u32],
    pad: Option<u32>,
) -> serde_json::Value {
    let class = if architecture == "mistral" {
        "MistralForCausalLM"
    } else {
        "LlamaForCausalLM"
    };
    json!({
        "architectures": [class],
        "model_type": architecture,
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": (config.rope_linear_factor != 1.0)
            .then(|| json!({"type": "linear", "factor": config.rope_linear_factor})),
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": false,
        "mlp_bias": false,
        "sliding_window": config.sliding_window,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "torch_dtype": "float32",
    })
}

/// Writes a model as a Hugging Face directory the loader (and transformers) reads back:
/// `config.json`, `model.safetensors` (f32), `tokenizer.json`, `tokenizer_config.json` (special
/// tokens and chat template) and, for trained models, the card `safeedit_model.json`.
/// [`LanguageModel::save_dir`](crate::LanguageModel::save_dir) calls it with a loaded model's parts.
pub fn save_model_dir<B: Backend>(
    model: &Llama<B>,
    config: &LlamaConfig,
    architecture: &str,
    tokenizer: &TextTokenizer,
    dir: &Path,
    card: Option<&TrainedModelCard>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let special = &tokenizer.special;
    let hf_config = hf_config_json(config, architecture, special.bos, &special.eos, special.pad);
    write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&hf_config)
            .expect("json")
            .as_bytes(),
    )?;
    let tensors: Vec<(String, RawTensor)> = WeightId::all(config)
        .into_iter()
        .filter_map(|id| model.export(id).map(|t| (id.hf_name(), t)))
        .collect();
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    let partial = dir.join("model.safetensors.partial");
    write_safetensors(&partial, &tensors, SaveDtype::F32, Some(metadata))?;
    rename(&partial, &dir.join("model.safetensors"))?;
    tokenizer.save_hf_dir(dir)?;
    if let Some(card) = card {
        let text = serde_json::to_string_pretty(card).expect("card serialises");
        write_atomic(&dir.join(TrainedModelCard::FILE), text.as_bytes())?;
    }
    Ok(())
}
