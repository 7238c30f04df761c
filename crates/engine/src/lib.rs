//! SafeEdit Studio engine: LLaMA-family language models in [burn], generic over the backend.
//!
//! - [`config`]: Hugging Face `config.json` mirror and the validated [`LlamaConfig`].
//! - [`model`]: the decoder ([`Llama`]), batches with padding, KV cache, activation taps.
//! - [`names`]: the one table mapping every tensor to its HF and GGUF names.
//! - [`weights`]: GGUF (Q4_0/Q4_1/Q8_0/F16/BF16/F32) and safetensors (single, sharded) loaders.
//! - [`tokenizer`]: `tokenizer.json` or GGUF vocabularies, BOS/EOS rules, chat templates.
//! - [`generate`]: greedy and seeded top-p sampling, batched with left padding.
//! - [`loader`]: one call from a path to a ready [`LanguageModel`].
//! - [`model_dir`]: a model as a Hugging Face directory, with the card of trained models.
//! - [`delta`], [`optim`]: what the edits and trainers share (a layer's change, Adam).
//! - [`dinm`]: DINM's toxic-layer location and edit (arXiv 2403.14472).
//! - [`baselines`]: FT-L and Self-Reminder (the paper's instance-level baselines).
//! - [`analysis`]: the mechanism analysis: toxicity probe, toxic regions, activation shift.
//! - [`threads`]: running the engine's work on rayon's pool.
//! - [`judge`]: safety judges (the paper's RoBERTa classifier, the built-in MiniLM proxy).
//!
//! The engine never picks a backend: the `server` binary does, by Cargo feature.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use safeedit_engine::{GenerationConfig, LanguageModel, PromptFormat};
//!
//! let device = Default::default();
//! let lm = LanguageModel::<Flex>::load("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), &device)?;
//! let out = lm.generate_text(&["What is the capital of France?".to_string()],
//!     &PromptFormat::chat(), &GenerationConfig::greedy(20))?;
//! println!("{}", out[0].text);
//! # Ok::<(), safeedit_engine::EngineError>(())
//! ```

pub mod analysis;
pub mod baselines;
pub mod config;
pub mod delta;
pub mod dinm;
pub mod error;
pub mod generate;
pub mod judge;
pub mod loader;
pub mod model;
pub mod model_dir;
pub mod names;
pub mod optim;
pub mod prefix_cache;
pub mod threads;
pub mod tokenizer;
pub mod weights;

pub use config::{HfLlamaConfig, LlamaConfig};
pub use error::{EngineError, Result};
pub use generate::{
    Generated, GenerationConfig, GenerationStep, GenerationTimings, Sampling, StopReason,
};
pub use loader::{LanguageModel, ModelFormat, ModelSource};
pub use model::{Batch, ForwardOptions, ForwardOutput, KvCache, Llama, Logits, PaddingSide};
pub use names::{LayerParam, WeightId};
pub use prefix_cache::PrefixCache;
pub use safeedit_core::PromptFormat;
pub use tokenizer::{SpecialTokens, TextTokenizer};
pub use weights::WeightDtype;

/// The backend the engine's own tests run on: CPU by default, CUDA with `--features test-cuda`.
#[cfg(all(test, not(feature = "test-cuda")))]
pub(crate) type TestBackend = burn::backend::Flex;
#[cfg(all(test, feature = "test-cuda"))]
pub(crate) type TestBackend = burn::backend::Cuda;
/// The autodiff version of [`TestBackend`].
#[cfg(test)]
pub(crate) type TestAutodiffBackend = burn::backend::Autodiff<TestBackend>;
