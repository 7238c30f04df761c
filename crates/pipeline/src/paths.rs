//! Default locations: the cache the setup script fills, the default small model and judge
//! encoder in it, and the runs database's folder.

use std::path::PathBuf;

use crate::{PipelineError, Result};

/// File name of the default model inside the cache's `models/` folder.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$SAFEEDIT_CACHE`, else `~/.cache/safeedit`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SAFEEDIT_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    home.join(".cache").join("safeedit")
}

/// The runs database's folder unless one is given: `~/.cache/safeedit/data`.
pub fn default_data_dir() -> PathBuf {
    cache_dir().join("data")
}

/// The default small model, SmolLM2-135M-Instruct (fetched by `scripts/fetch-model.sh`).
pub fn default_model() -> PathBuf {
    cache_dir().join("models").join(DEFAULT_MODEL_FILE)
}

/// The given model, or the default one if it has been fetched.
pub fn model_or_default(model: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = model {
        return Ok(path);
    }
    let path = default_model();
    if !path.is_file() {
        return Err(PipelineError::Invalid(format!(
            "the default model is not at {}; run scripts/fetch-model.sh (or scripts/setup.sh), \
             or pass --model <file.gguf | hf-dir | tiny>",
            path.display()
        )));
    }
    Ok(path)
}

/// The built-in judge's encoder, all-MiniLM-L6-v2 (fetched by `scripts/fetch-judge.sh`).
pub fn default_judge_encoder() -> PathBuf {
    cache_dir().join("models").join("all-MiniLM-L6-v2")
}
