//! What the app and every stored result say about a model and how prompts were given to it.

use serde::{Deserialize, Serialize};

/// How a user text becomes the model's input. Every result records the format it used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptFormat {
    /// The text as is, with the tokenizer's BOS rule (what EasyEdit does for Llama-2-chat and
    /// Mistral).
    Plain,
    /// The model's chat template with one user turn and the generation prompt.
    Chat {
        /// A system message; `None` keeps the template's default (if it has one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
    },
}

impl PromptFormat {
    /// The chat template with its default system prompt.
    pub fn chat() -> Self {
        PromptFormat::Chat { system: None }
    }

    /// A short human-readable name.
    pub fn label(&self) -> String {
        match self {
            PromptFormat::Plain => "plain text".into(),
            PromptFormat::Chat { system: None } => "chat template".into(),
            PromptFormat::Chat { system: Some(_) } => "chat template + system prompt".into(),
        }
    }
}

/// A loaded model as the app shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Display name (the checkpoint file stem or directory name).
    pub name: String,
    /// The weights file or directory it was loaded from.
    pub source: String,
    /// `gguf`, `safetensors` or `random`.
    pub format: String,
    /// Architecture (`llama`, `mistral`).
    pub architecture: String,
    /// Number of parameters (tied matrices counted once).
    pub n_params: u64,
    /// Number of decoder layers.
    pub n_layers: usize,
    /// Residual width.
    pub d_model: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// The prompt format the model's preset uses.
    pub prompt_format: PromptFormat,
    /// The burn backend running it (e.g. `flex (CPU)`).
    pub backend: String,
    /// The precision its matrices are kept in (`f32`, `bf16`, `f16`; `--dtype`). Summaries
    /// written before the option have none, and were f32.
    #[serde(default = "f32_weights")]
    pub weights: String,
    /// The DINM preset the server edits it with (what empty form fields mean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<EditPreset>,
}

/// The values of a model's DINM preset that the forms offer to override.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditPreset {
    /// The preset's name (`smollm2-135m`, `llama-2-7b-chat`, …).
    pub name: String,
    /// Learning rate.
    pub lr: f64,
    /// Optimisation steps.
    pub steps: usize,
    /// Most new tokens per response.
    pub max_new_tokens: usize,
}

/// The precision of a summary written before `--dtype`.
fn f32_weights() -> String {
    "f32".into()
}

impl ModelSummary {
    /// Parameter count in millions or billions, e.g. `134.5M`.
    pub fn params_human(&self) -> String {
        let n = self.n_params as f64;
        if n >= 1e9 {
            format!("{:.2}B", n / 1e9)
        } else {
            format!("{:.1}M", n / 1e6)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_format_json_is_tagged() {
        let plain = serde_json::to_value(PromptFormat::Plain).unwrap();
        assert_eq!(plain, serde_json::json!({"kind": "plain"}));
        let chat = serde_json::to_value(PromptFormat::Chat {
            system: Some("Be safe.".into()),
        })
        .unwrap();
        assert_eq!(
            chat,
            serde_json::json!({"kind": "chat", "system": "Be safe."})
        );
        let parsed: PromptFormat = serde_json::from_str(r#"{"kind":"chat"}"#).unwrap();
        assert_eq!(parsed, PromptFormat::chat());
    }

    #[test]
    fn params_human_switches_units() {
        let mut s = ModelSummary {
            name: "m".into(),
            source: "m.gguf".into(),
            format: "gguf".into(),
            architecture: "llama".into(),
            n_params: 134_515_008,
            n_layers: 30,
            d_model: 576,
            n_heads: 9,
            n_kv_heads: 3,
            vocab_size: 49152,
            prompt_format: PromptFormat::chat(),
            backend: "flex (CPU)".into(),
            weights: "f32".into(),
            preset: None,
        };
        assert_eq!(s.params_human(), "134.5M");
        s.n_params = 6_738_415_616;
        assert_eq!(s.params_human(), "6.74B");
    }
}

/// A model trained by a `train` job (or by `safeedit train` into the server's models folder),
/// as `GET /api/models` and the model pages show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedModel {
    /// Its name (the folder's name; what jobs and pickers use).
    pub name: String,
    /// `sft` or `dpo`.
    pub objective: String,
    /// The model training started from, by its model name.
    pub base_model: String,
    /// That model's name among the server's trained models, when it is one (DPO from SFT).
    pub base: Option<String>,
    /// The training data (file, fold, limit).
    pub data: String,
    /// Training pairs.
    pub n_examples: usize,
    /// Optimiser steps done.
    pub steps_done: usize,
    /// Optimiser steps planned.
    pub total_steps: usize,
    /// Loss of the last step.
    pub final_loss: Option<f64>,
    /// LoRA rank, when adapters were trained instead of every parameter.
    pub lora_rank: Option<usize>,
    /// The prompt format it was trained (and is evaluated) in.
    pub prompt_format: PromptFormat,
    /// The hyperparameters, as stored with the model.
    pub settings: serde_json::Value,
    /// When its card was last written (RFC 3339).
    #[serde(default)]
    pub trained_at: String,
}

impl TrainedModel {
    /// Trained to the last planned step.
    pub fn finished(&self) -> bool {
        self.total_steps > 0 && self.steps_done >= self.total_steps
    }

    /// `SFT, 2 pairs, 2/2 steps` (or `… stopped at step 1/2`).
    pub fn line(&self) -> String {
        let state = if self.finished() {
            format!("{} steps", self.total_steps)
        } else {
            format!("stopped at step {}/{}", self.steps_done, self.total_steps)
        };
        let lora = self
            .lora_rank
            .map(|r| format!(", LoRA rank {r}"))
            .unwrap_or_default();
        format!(
            "{}, {} pairs, {state}{lora}",
            self.objective.to_uppercase(),
            self.n_examples
        )
    }
}

/// One optimiser step of a training run (the model page's loss curve).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainPoint {
    /// 0-based step.
    pub step: usize,
    /// 0-based epoch.
    pub epoch: usize,
    /// The step's loss.
    pub loss: f64,
}

/// `GET /api/models`: the loaded model and every trained model, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// The model the server loaded (what `vanilla` and the editing methods run on).
    pub loaded: ModelSummary,
    /// Models trained here.
    pub trained: Vec<TrainedModel>,
}

/// A trained model's page: its card and every step's loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedModelPage {
    /// The card.
    pub model: TrainedModel,
    /// The training log.
    pub steps: Vec<TrainPoint>,
}
