//! From a path to a ready model: config, weights, tokenizer and prompt format, for a GGUF file
//! (the default small model) or a Hugging Face directory (`config.json`, `tokenizer.json`,
//! `*.safetensors`).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::config::{HfLlamaConfig, LlamaConfig};
use crate::dinm::ModelFamily;
use crate::error::{EngineError, Result};
use crate::generate::{
    Generated, GenerationConfig, GenerationStep, GenerationTimings, generate_ids_reusing,
};
use crate::model::Llama;
use crate::model_dir::{TrainedModelCard, save_model_dir};
use crate::names::WeightId;
use crate::prefix_cache::PrefixCache;
use crate::tokenizer::TextTokenizer;
use crate::weights::{
    GgufFile, GgufStore, RandomInit, SafetensorsStore, StoreSource, TensorStore, WeightDtype,
    WithDtype,
};
use safeedit_core::{ModelSummary, PromptFormat};

/// How the weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// A llama.cpp GGUF file.
    Gguf,
    /// A Hugging Face directory with safetensors weights.
    Safetensors,
    /// The seeded random `tiny` model.
    Random,
}

impl ModelFormat {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Gguf => "gguf",
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Random => "random",
        }
    }
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A `.gguf` file.
    Gguf(PathBuf),
    /// A Hugging Face model directory.
    HfDir(PathBuf),
    /// The built-in seeded `tiny` model (for tests and demos).
    Tiny,
}

impl ModelSource {
    /// `tiny`, a `.gguf` file, or a directory.
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.as_os_str() == "tiny" {
            return Ok(ModelSource::Tiny);
        }
        if path.is_dir() {
            return Ok(ModelSource::HfDir(path.to_path_buf()));
        }
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            if !path.is_file() {
                return Err(EngineError::MissingFile {
                    path: path.to_path_buf(),
                    what: "GGUF model",
                });
            }
            return Ok(ModelSource::Gguf(path.to_path_buf()));
        }
        Err(EngineError::MissingFile {
            path: path.to_path_buf(),
            what: "model (a .gguf file, a Hugging Face model directory, or `tiny`)",
        })
    }
}

/// A model with its tokenizer, ready to run.
#[derive(Debug)]
pub struct LanguageModel<B: Backend> {
    /// The decoder.
    pub model: Llama<B>,
    /// Its validated config.
    pub config: LlamaConfig,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// Display name: the checkpoint's file stem or directory name.
    pub name: String,
    /// Architecture name (`llama`, `mistral`).
    pub architecture: String,
    /// Where it was loaded from.
    pub source: PathBuf,
    /// How the weights were stored.
    pub format: ModelFormat,
    /// The prompt format its preset uses: the chat template for GGUF chat models (SmolLM2
    /// answers plain text with an immediate end-of-turn), plain text for Hugging Face
    /// directories (EasyEdit's setting for Llama-2-chat and Mistral).
    pub prompt_format: PromptFormat,
    /// The device it lives on.
    pub device: B::Device,
    /// What the loader had to guess or could not find (shown to the user as warnings).
    pub warnings: Vec<String>,
}

impl<B: Backend> LanguageModel<B> {
    /// Loads a model from a path (see [`ModelSource::from_path`]).
    pub fn load(path: &Path, device: &B::Device) -> Result<Self> {
        Self::load_with_progress(path, device, &mut |_, _| {})
    }

    /// Loads a model, calling `progress(done, total)` after each tensor.
    pub fn load_with_progress(
        path: &Path,
        device: &B::Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        Self::load_as(path, device, WeightDtype::F32, progress)
    }

    /// Loads a model keeping its matrices as `dtype` (see [`WeightDtype`]), calling
    /// `progress(done, total)` after each tensor.
    pub fn load_as(
        path: &Path,
        device: &B::Device,
        dtype: WeightDtype,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        match ModelSource::from_path(path)? {
            ModelSource::Tiny => {
                let mut lm = Self::tiny(device);
                if dtype != WeightDtype::F32 {
                    // The same seeded weights as `tiny`, rounded to `dtype`.
                    lm.model = lm.config.build(&mut WithDtype {
                        inner: RandomInit::new(0, 0.1, device),
                        dtype,
                    })?;
                }
                Ok(lm)
            }
            ModelSource::Gguf(file) => Self::load_gguf(&file, device, dtype, progress),
            ModelSource::HfDir(dir) => Self::load_hf_dir(&dir, device, dtype, progress),
        }
    }

    /// The seeded random `tiny` model with the built-in byte-level tokenizer.
    pub fn tiny(device: &B::Device) -> Self {
        let config = LlamaConfig::tiny();
        Self {
            model: config.init(device),
            config,
            tokenizer: TextTokenizer::byte_level(),
            name: "tiny (random init, seed 0)".into(),
            architecture: "llama".into(),
            source: PathBuf::from("tiny"),
            format: ModelFormat::Random,
            prompt_format: PromptFormat::chat(),
            device: device.clone(),
            warnings: Vec::new(),
        }
    }

    fn load_gguf(
        path: &Path,
        device: &B::Device,
        dtype: WeightDtype,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let config = file.llama_config()?;
        let tokenizer = TextTokenizer::from_gguf(&file)?;
        let store = GgufStore::new(&file, &config);
        let model = build(&config, &store, device, dtype, progress)?;
        // The file name is what users recognise (`general.name` is often a training-run label).
        let name = file_stem(path);
        let prompt_format = if tokenizer.chat_template.is_some() {
            PromptFormat::chat()
        } else {
            PromptFormat::Plain
        };
        Ok(Self {
            model,
            config,
            tokenizer,
            name,
            architecture: file
                .get_str("general.architecture")
                .unwrap_or("llama")
                .to_string(),
            source: path.to_path_buf(),
            format: ModelFormat::Gguf,
            prompt_format,
            device: device.clone(),
            warnings: Vec::new(),
        })
    }

    fn load_hf_dir(
        dir: &Path,
        device: &B::Device,
        dtype: WeightDtype,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let config_path = dir.join("config.json");
        let hf = HfLlamaConfig::from_file(&config_path)?;
        let architecture = hf.model_type.clone();
        let eos = hf.eos_token_id.as_ref().map(|e| e.to_vec());
        let config = hf.into_config(&config_path)?;
        let tokenizer = TextTokenizer::from_hf_dir(dir, eos)?;
        let store = SafetensorsStore::open(dir)?;
        let model = build(&config, &store, device, dtype, progress)?;
        // Models trained here carry the format they were trained in. Otherwise the family's
        // presets decide: SmolLM2 prompts in its chat template (as from GGUF; it answers plain
        // text with an immediate end-of-turn), the LLaMA-2 and Mistral presets in plain text
        // (EasyEdit's setting).
        let mut warnings = Vec::new();
        let name = file_stem(dir);
        let prompt_format = match TrainedModelCard::read(dir)? {
            Some(card) => card.prompt_format,
            None if ModelFamily::of(&name, &architecture) == ModelFamily::SmolLm2 => {
                if tokenizer.chat_template.is_some() {
                    PromptFormat::chat()
                } else {
                    warnings.push(format!(
                        "{name}: SmolLM2's presets prompt in the chat format, but the model has no \
                         chat template{}; using plain text, to which chat models often answer \
                         nothing",
                        tokenizer.template_places()
                    ));
                    PromptFormat::Plain
                }
            }
            None => PromptFormat::Plain,
        };
        Ok(Self {
            model,
            config,
            tokenizer,
            name,
            architecture,
            source: dir.to_path_buf(),
            format: ModelFormat::Safetensors,
            prompt_format,
            device: device.clone(),
            warnings,
        })
    }

    /// How the model keeps its matrices (that of the token embedding; an edited layer's
    /// `down_proj` is f32 whatever this says).
    pub fn weight_dtype(&self) -> WeightDtype {
        WeightDtype::of(self.model.embed_tokens.val().dtype()).unwrap_or_default()
    }

    /// The same model description and tokenizer around different weights (an edited copy).
    pub fn with_model(&self, model: Llama<B>) -> Self {
        Self {
            model,
            config: self.config.clone(),
            tokenizer: self.tokenizer.clone(),
            name: self.name.clone(),
            architecture: self.architecture.clone(),
            source: self.source.clone(),
            format: self.format,
            prompt_format: self.prompt_format.clone(),
            device: self.device.clone(),
            warnings: self.warnings.clone(),
        }
    }

    /// Writes the model as a Hugging Face directory (see [`save_model_dir`]), with the card of a
    /// trained model.
    pub fn save_dir(&self, dir: &Path, card: Option<&TrainedModelCard>) -> Result<()> {
        save_model_dir(
            &self.model,
            &self.config,
            &self.architecture,
            &self.tokenizer,
            dir,
            card,
        )
    }

    /// Longest sequence the model accepts (context length, or Mistral's sliding window).
    pub fn max_len(&self) -> usize {
        match self.config.sliding_window {
            Some(w) => w.min(self.config.max_seq_len),
            None => self.config.max_seq_len,
        }
    }

    /// What the app shows about the model.
    pub fn summary(&self, backend: &str) -> ModelSummary {
        ModelSummary {
            name: self.name.clone(),
            source: self.source.display().to_string(),
            format: self.format.as_str().into(),
            architecture: self.architecture.clone(),
            n_params: self.model.num_params() as u64,
            n_layers: self.config.n_layers,
            d_model: self.config.d_model,
            n_heads: self.config.n_heads,
            n_kv_heads: self.config.n_kv_heads,
            vocab_size: self.config.vocab_size,
            prompt_format: self.prompt_format.clone(),
            backend: backend.to_string(),
            weights: self.weight_dtype().as_str().into(),
            preset: None,
        }
    }

    /// Generates from token-id prompts.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        config: &GenerationConfig,
    ) -> Result<(Vec<Generated>, GenerationTimings)> {
        self.generate_observed(prompts, config, &mut |_| true)
    }

    /// Generates from token-id prompts, showing `observe` what has been generated after every
    /// step; it stops generation by answering `false` ([`EngineError::Interrupted`]).
    pub fn generate_observed(
        &self,
        prompts: &[Vec<u32>],
        config: &GenerationConfig,
        observe: &mut dyn FnMut(GenerationStep<'_>) -> bool,
    ) -> Result<(Vec<Generated>, GenerationTimings)> {
        self.generate_reusing(prompts, config, &mut PrefixCache::unbounded(), observe)
    }

    /// [`Self::generate_observed`], taking prompt beginnings from `reuse` and keeping these
    /// prompts in it. `reuse` must only ever see this model (not an edited copy of it).
    pub fn generate_reusing(
        &self,
        prompts: &[Vec<u32>],
        config: &GenerationConfig,
        reuse: &mut PrefixCache<B>,
        observe: &mut dyn FnMut(GenerationStep<'_>) -> bool,
    ) -> Result<(Vec<Generated>, GenerationTimings)> {
        let special = &self.tokenizer.special;
        let (rows, timings) = generate_ids_reusing(
            &self.model,
            prompts,
            special.pad_id(),
            &special.eos,
            self.max_len(),
            config,
            &self.device,
            reuse,
            observe,
        )?;
        let outputs = prompts
            .iter()
            .zip(rows)
            .map(|(prompt, (ids, stop))| {
                Ok(Generated {
                    prompt_ids: prompt.clone(),
                    text: self.tokenizer.decode(&ids, true)?,
                    generated_ids: ids,
                    stop,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((outputs, timings))
    }

    /// Generates from user texts in the given prompt format.
    pub fn generate_text(
        &self,
        texts: &[String],
        format: &PromptFormat,
        config: &GenerationConfig,
    ) -> Result<Vec<Generated>> {
        let prompts = texts
            .iter()
            .map(|t| self.tokenizer.encode_prompt(t, format))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.generate(&prompts, config)?.0)
    }
}

fn build<B: Backend>(
    config: &LlamaConfig,
    store: &dyn TensorStore,
    device: &B::Device,
    dtype: WeightDtype,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Llama<B>> {
    let total = WeightId::all(config).len();
    let mut done = 0;
    let mut tick = |_: WeightId| {
        done += 1;
        progress(done, total);
    };
    config.build(&mut WithDtype {
        inner: StoreSource::new(store, device).with_progress(&mut tick),
        dtype,
    })
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .or(path.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
