//! SFT/DPO hyperparameters: the objective, the optimiser and the named presets.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::baselines::lora::LoraConfig;
use crate::error::{EngineError, Result};

/// What is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Supervised fine-tuning on X → Y_safe.
    Sft,
    /// Direct preference optimisation on (X, Y_safe ≻ Y_unsafe).
    Dpo,
}

impl Objective {
    /// `sft` or `dpo`.
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Sft => "sft",
            Objective::Dpo => "dpo",
        }
    }
}

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.RMSprop` (α 0.99, ε 1e-8, no momentum): the reference's choice.
    RmsProp,
    /// `torch.optim.AdamW` (β 0.9/0.999, ε 1e-8, decoupled weight decay).
    AdamW,
}

/// SFT/DPO hyperparameters, stored with every trained model.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Name of the preset these values came from.
    #[config(default = "String::from(\"custom\")")]
    pub preset: String,
    /// SFT or DPO.
    pub objective: Objective,
    /// Optimiser.
    #[config(default = "OptimizerKind::RmsProp")]
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    #[config(default = 5e-7)]
    pub lr: f64,
    /// Linear warm-up steps.
    #[config(default = 150)]
    pub warmup_steps: usize,
    /// Examples per optimiser step (accumulated one pair at a time).
    #[config(default = 64)]
    pub batch_size: usize,
    /// Passes over the data.
    #[config(default = 1)]
    pub epochs: usize,
    /// Longest prompt + response, in tokens.
    #[config(default = 512)]
    pub max_length: usize,
    /// Longest prompt when a pair must be cut.
    #[config(default = 256)]
    pub max_prompt_length: usize,
    /// Global gradient-norm clip.
    #[config(default = 10.0)]
    pub max_grad_norm: f64,
    /// DPO's β.
    #[config(default = 0.1)]
    pub beta: f64,
    /// Weight decay (L2 for RMSprop, decoupled for AdamW).
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Seed of the example order.
    #[config(default = 0)]
    pub seed: u64,
    /// Train LoRA adapters instead of every parameter (see [`crate::baselines::lora`]).
    #[config(default = "None")]
    pub lora: Option<LoraConfig>,
}

impl TrainConfig {
    /// The reference repository's defaults (`config/config.yaml`, README examples): RMSprop,
    /// lr 5e-7, 150 warm-up steps, batch 64, one epoch, 512/256 tokens, clip 10, β 0.1. Sized for
    /// the 4,050 SafeEdit train pairs and 7B models.
    pub fn reference(objective: Objective) -> Self {
        TrainConfig::new(objective).with_preset("reference".into())
    }

    /// The default small model on the shipped data (about a hundred pairs): the reference's
    /// optimiser and lengths, with a step count that makes a difference on so little data —
    /// batch 8, 2 epochs, 4 warm-up steps, lr 1e-5 (SFT) / 2e-6 (DPO).
    pub fn smollm2_135m(objective: Objective) -> Self {
        let lr = match objective {
            Objective::Sft => 1e-5,
            Objective::Dpo => 2e-6,
        };
        TrainConfig::new(objective)
            .with_preset("smollm2-135m".into())
            .with_lr(lr)
            .with_warmup_steps(4)
            .with_batch_size(8)
            .with_epochs(2)
    }

    /// A preset by name.
    pub fn preset_named(name: &str, objective: Objective) -> Option<Self> {
        match name {
            "reference" => Some(Self::reference(objective)),
            "smollm2-135m" => Some(Self::smollm2_135m(objective)),
            _ => None,
        }
    }

    /// The preset for a model: the small-data preset for models under 1B parameters, the
    /// reference otherwise.
    pub fn preset_for(n_params: usize, objective: Objective) -> Self {
        if n_params < 1_000_000_000 {
            Self::smollm2_135m(objective)
        } else {
            Self::reference(objective)
        }
    }

    /// Rejects settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidInput(m));
        if self.batch_size == 0 || self.epochs == 0 {
            return bad("batch_size and epochs must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if self.max_prompt_length == 0 || self.max_prompt_length >= self.max_length {
            return bad(format!(
                "max_prompt_length ({}) must be in 1..max_length ({})",
                self.max_prompt_length, self.max_length
            ));
        }
        if self.beta.is_nan() || self.beta <= 0.0 {
            return bad(format!("beta must be positive, got {}", self.beta));
        }
        Ok(())
    }

    /// The learning rate of optimiser step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        self.lr * ((step + 1) as f64 / (self.warmup_steps + 1) as f64).min(1.0)
    }
}
