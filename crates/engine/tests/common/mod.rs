//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

pub mod gguf_writer;

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use safeedit_engine::weights::RawTensor;
use safeedit_engine::{Llama, LlamaConfig, WeightId};

/// CPU by default; CUDA with `--features test-cuda`.
#[cfg(not(feature = "test-cuda"))]
pub type TestBackend = burn::backend::Flex;
#[cfg(feature = "test-cuda")]
pub type TestBackend = burn::backend::Cuda;

/// max |a - b| / max |b|: the "relative" tolerance.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// A tensor's values on the host.
pub fn values<const D: usize>(t: Tensor<TestBackend, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Every weight of a model in HF layout, by HF name.
pub fn export_all(model: &Llama<TestBackend>, config: &LlamaConfig) -> Vec<(String, RawTensor)> {
    WeightId::all(config)
        .into_iter()
        .map(|id| {
            (
                id.hf_name(),
                model.export(id).expect("every listed weight exists"),
            )
        })
        .collect()
}

/// The `tiny` config as a Hugging Face `config.json`.
pub fn tiny_config_json() -> serde_json::Value {
    let c = LlamaConfig::tiny();
    serde_json::json!({
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "intermediate_size": c.d_ff,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "bos_token_id": 257,
        "eos_token_id": 258
    })
}

/// Writes `config.json` and `tokenizer.json` of the tiny model into `dir`.
pub fn write_tiny_dir_meta(dir: &Path, config: &serde_json::Value) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
    safeedit_engine::TextTokenizer::byte_level()
        .save_json(&dir.join("tokenizer.json"))
        .unwrap();
}

fn cache_dir() -> PathBuf {
    std::env::var_os("SAFEEDIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/safeedit")
        })
}

/// The built-in judge's encoder folder (scripts/fetch-judge.sh puts it there).
pub fn minilm_dir() -> PathBuf {
    let dir = cache_dir().join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the judge encoder is missing at {}: run scripts/fetch-judge.sh (the README's test \
         command does)",
        dir.display()
    );
    dir
}

/// Where the default model is (the setup script puts it there).
pub fn default_gguf() -> PathBuf {
    if let Some(p) = std::env::var_os("SAFEEDIT_MODEL") {
        return PathBuf::from(p);
    }
    let path = cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "the default model is missing at {}: run scripts/fetch-model.sh (the README's test \
         command does)",
        path.display()
    );
    path
}
