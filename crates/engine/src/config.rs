//! Model configuration in two layers: [`HfLlamaConfig`] mirrors a Hugging Face `config.json`
//! field for field; [`HfLlamaConfig::into_config`] validates it into the [`LlamaConfig`] the
//! model is built from. Named presets ([`LlamaConfig::tiny`], [`LlamaConfig::smollm2_135m`]) are
//! constructors.

use std::path::Path;

use burn::config::Config;
use serde::Deserialize;

use crate::error::{EngineError, Result};

/// Model types that share the LLaMA decoder implemented in [`crate::model`].
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama", "mistral"];

/// A LLaMA-family decoder's hyperparameters, validated.
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Number of rows of the token embedding (and of the LM head).
    pub vocab_size: usize,
    /// Width of the residual stream (`hidden_size`).
    pub d_model: usize,
    /// Width of the SwiGLU MLP (`intermediate_size`).
    pub d_ff: usize,
    /// Number of decoder layers (`num_hidden_layers`).
    pub n_layers: usize,
    /// Number of query heads (`num_attention_heads`).
    pub n_heads: usize,
    /// Number of key/value heads (`num_key_value_heads`); equal to `n_heads` without GQA.
    pub n_kv_heads: usize,
    /// Width of one attention head (`head_dim`, default `d_model / n_heads`).
    pub head_dim: usize,
    /// Longest sequence the rotary tables are built for (`max_position_embeddings`).
    pub max_seq_len: usize,
    /// Epsilon of every RMSNorm (`rms_norm_eps`).
    #[config(default = 1e-5)]
    pub rms_norm_eps: f64,
    /// Base of the rotary frequencies (`rope_theta`).
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// Linear rotary scaling factor (`rope_scaling = {type: linear, factor}`); 1.0 = none.
    #[config(default = 1.0)]
    pub rope_linear_factor: f64,
    /// Whether the LM head reuses the token embedding matrix (`tie_word_embeddings`).
    #[config(default = false)]
    pub tie_embeddings: bool,
    /// Mistral's sliding attention window; sequences longer than it are rejected.
    #[config(default = "None")]
    pub sliding_window: Option<usize>,
}

impl LlamaConfig {
    /// A seeded random-init model for unit tests: 2 layers, d=64, 4 heads / 2 KV heads (GQA),
    /// vocab 259 (the built-in byte-level tokenizer), 8192 positions (SafeEdit's adversarial
    /// prompts are over 1,000 bytes). Runs in milliseconds on CPU.
    pub fn tiny() -> Self {
        LlamaConfig::new(259, 64, 128, 2, 4, 2, 16, 8192).with_rope_theta(10000.0)
    }

    /// SmolLM2-135M(-Instruct): 30 layers, d=576, 9 heads / 3 KV heads, tied embeddings.
    pub fn smollm2_135m() -> Self {
        LlamaConfig::new(49152, 576, 1536, 30, 9, 3, 64, 8192)
            .with_rope_theta(100000.0)
            .with_tie_embeddings(true)
    }

    /// Checks the relations between fields; `source` names the file in the error.
    pub fn validate(&self, source: &Path) -> Result<()> {
        let err = |field: &str, message: String| EngineError::Config {
            path: source.to_path_buf(),
            field: field.to_string(),
            message,
        };
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.d_model),
            ("intermediate_size", self.d_ff),
            ("num_hidden_layers", self.n_layers),
            ("num_attention_heads", self.n_heads),
            ("num_key_value_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_seq_len),
        ] {
            if value == 0 {
                return Err(err(field, "must be positive".into()));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(err(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads = {}",
                    self.n_kv_heads, self.n_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(err(
                "head_dim",
                format!("{} is odd; rotary needs pairs", self.head_dim),
            ));
        }
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps <= 0.0 {
            return Err(err(
                "rms_norm_eps",
                format!("{} is not positive", self.rms_norm_eps),
            ));
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return Err(err(
                "rope_theta",
                format!("{} is not positive", self.rope_theta),
            ));
        }
        Ok(())
    }

    /// Queries per key/value head.
    pub fn kv_groups(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

/// `eos_token_id` is an integer in most configs and a list in some.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids (any of them stops generation).
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a vector.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// Hugging Face `config.json` of a LLaMA-family checkpoint, field for field (unknown fields are
/// ignored, optional ones have HF's defaults applied in [`HfLlamaConfig::into_config`]).
#[derive(Debug, Clone, Deserialize)]
pub struct HfLlamaConfig {
    /// `llama`, `mistral`, ...
    pub model_type: String,
    /// e.g. `["LlamaForCausalLM"]`.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (defaults to `num_attention_heads`).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Head width (defaults to `hidden_size / num_attention_heads`).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// MLP activation; only `silu` is supported.
    #[serde(default)]
    pub hidden_act: Option<String>,
    /// Context length.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base (default 10000).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Rotary scaling; only `null` and `{"type": "linear"}` are supported.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// transformers >= 5 writes the rotary settings here instead:
    /// `{"rope_theta": .., "rope_type": "default" | "linear", "factor": ..}`.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// Tied LM head (default false for LLaMA).
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    /// Biases on q/k/v/o; not supported when true.
    #[serde(default)]
    pub attention_bias: Option<bool>,
    /// Biases on the MLP; not supported when true.
    #[serde(default)]
    pub mlp_bias: Option<bool>,
    /// Mistral's sliding window.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id(s).
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Storage dtype of the checkpoint (informational).
    #[serde(default)]
    pub torch_dtype: Option<String>,
}

fn default_max_positions() -> usize {
    2048
}

fn default_rms_eps() -> f64 {
    1e-6
}

impl HfLlamaConfig {
    /// Reads and parses `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::MissingFile {
                path: path.to_path_buf(),
                what: "model config",
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| EngineError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Validates the mirror into the internal config; `source` names the file in errors.
    pub fn into_config(self, source: &Path) -> Result<LlamaConfig> {
        let err = |field: &str, message: String| EngineError::Config {
            path: source.to_path_buf(),
            field: field.to_string(),
            message,
        };
        if !SUPPORTED_MODEL_TYPES.contains(&self.model_type.as_str()) {
            return Err(EngineError::UnsupportedModel {
                path: source.to_path_buf(),
                model_type: self.model_type,
            });
        }
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return Err(err(
                "hidden_act",
                format!("`{act}` is not supported (only silu)"),
            ));
        }
        if self.attention_bias == Some(true) {
            return Err(err(
                "attention_bias",
                "biased attention projections are not supported".into(),
            ));
        }
        if self.mlp_bias == Some(true) {
            return Err(err(
                "mlp_bias",
                "biased MLP projections are not supported".into(),
            ));
        }
        let parameters = self.rope_parameters.as_ref().filter(|v| !v.is_null());
        let scaling = match &self.rope_scaling {
            None | Some(serde_json::Value::Null) => parameters,
            Some(value) => Some(value),
        };
        let rope_theta = match (self.rope_theta, parameters) {
            (Some(theta), _) => theta,
            (None, Some(p)) => match p.get("rope_theta") {
                None => 10000.0,
                Some(v) => v.as_f64().ok_or_else(|| {
                    err(
                        "rope_parameters.rope_theta",
                        format!("`{v}` is not a number"),
                    )
                })?,
            },
            (None, None) => 10000.0,
        };
        let rope_linear_factor = match scaling {
            None => 1.0,
            Some(value) => {
                let kind = value
                    .get("rope_type")
                    .or_else(|| value.get("type"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("?");
                let factor = value.get("factor").and_then(|v| v.as_f64());
                match (kind, factor) {
                    ("linear", Some(f)) if f > 0.0 => f,
                    ("default", _) => 1.0,
                    _ => {
                        return Err(err(
                            "rope_scaling",
                            format!("`{value}` is not supported (only linear scaling)"),
                        ));
                    }
                }
            }
        };
        if self.num_attention_heads == 0 {
            return Err(err("num_attention_heads", "must be positive".into()));
        }
        let head_dim = self
            .head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads);
        let config = LlamaConfig::new(
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim,
            self.max_position_embeddings,
        )
        .with_rms_norm_eps(self.rms_norm_eps)
        .with_rope_theta(rope_theta)
        .with_rope_linear_factor(rope_linear_factor)
        .with_tie_embeddings(self.tie_word_embeddings.unwrap_or(false))
        .with_sliding_window(self.sliding_window);
        config.validate(source)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<LlamaConfig> {
        let hf: HfLlamaConfig = serde_json::from_str(json).unwrap();
        hf.into_config(Path::new("config.json"))
    }

    #[test]
    fn llama2_config_gets_hf_defaults() {
        let c = parse(
            r#"{"model_type":"llama","vocab_size":32000,"hidden_size":4096,
            "intermediate_size":11008,"num_hidden_layers":32,"num_attention_heads":32,
            "max_position_embeddings":4096,"rms_norm_eps":1e-5,"torch_dtype":"float16"}"#,
        )
        .unwrap();
        assert_eq!(c.n_kv_heads, 32);
        assert_eq!(c.head_dim, 128);
        assert_eq!(c.rope_theta, 10000.0);
        assert!(!c.tie_embeddings);
    }

    #[test]
    fn mistral_config_keeps_gqa_and_window() {
        let c = parse(
            r#"{"model_type":"mistral","vocab_size":32000,"hidden_size":4096,
            "intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,
            "num_key_value_heads":8,"sliding_window":4096,"rope_theta":10000.0}"#,
        )
        .unwrap();
        assert_eq!(c.kv_groups(), 4);
        assert_eq!(c.sliding_window, Some(4096));
    }

    #[test]
    fn unsupported_model_type_names_file_and_value() {
        let e = parse(
            r#"{"model_type":"gpt2","vocab_size":1,"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":1}"#,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("config.json") && msg.contains("`gpt2`"),
            "{msg}"
        );
    }

    #[test]
    fn bad_head_ratio_names_field() {
        let e = parse(
            r#"{"model_type":"llama","vocab_size":10,"hidden_size":64,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("num_key_value_heads"), "{e}");
    }

    #[test]
    fn transformers_5_rope_parameters_are_read() {
        // transformers >= 5 writes SmolLM2's rotary base here, not as `rope_theta`.
        let base = r#""model_type":"llama","vocab_size":49152,"hidden_size":576,
            "intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,
            "num_key_value_heads":3"#;
        let c = parse(&format!(
            r#"{{{base},"rope_parameters":{{"rope_theta":100000.0,"rope_type":"default"}}}}"#
        ))
        .unwrap();
        assert_eq!(c.rope_theta, 100000.0);
        assert_eq!(c.rope_linear_factor, 1.0);
        let c = parse(&format!(
            r#"{{{base},"rope_parameters":{{"rope_theta":5e5,"rope_type":"linear","factor":2.0}}}}"#
        ))
        .unwrap();
        assert_eq!((c.rope_theta, c.rope_linear_factor), (5e5, 2.0));
        let e = parse(&format!(
            r#"{{{base},"rope_parameters":{{"rope_theta":5e5,"rope_type":"yarn","factor":4.0}}}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("rope_scaling"), "{e}");
        let e = parse(&format!(
            r#"{{{base},"rope_parameters":{{"rope_theta":"big"}}}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("rope_parameters.rope_theta"), "{e}");
    }

    #[test]
    fn presets_validate() {
        LlamaConfig::tiny().validate(Path::new("tiny")).unwrap();
        LlamaConfig::smollm2_135m()
            .validate(Path::new("smollm2"))
            .unwrap();
    }
}
