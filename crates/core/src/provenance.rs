//! Where a result came from: the model (path, name, checksum), the backend, the judge, and the
//! project version and git commit. Every stored run and evaluation records it, so a number can
//! be traced to the exact weights, judge and code that produced it.

use serde::{Deserialize, Serialize};

use crate::judge::JudgeInfo;

/// The origin of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The model file or folder as given (`tiny` for the test model).
    pub model_path: String,
    /// The model's name (from its metadata).
    pub model_name: String,
    /// SHA-256 (first 16 hex digits) of the model file, or of `config.json` in a model folder.
    pub model_checksum: String,
    /// The burn backend (`flex (CPU)`, `cuda`).
    pub backend: String,
    /// The safety judge.
    pub judge: JudgeInfo,
    /// SafeEdit Studio's version.
    pub version: String,
    /// The git commit the binary was built from (`unknown` outside a checkout).
    pub git_commit: String,
}

impl Provenance {
    /// The fields an evaluation's run description (`run.json`) carries, by their names there.
    pub fn run_fields(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.model_path,
            "model_name": self.model_name,
            "model_checksum": self.model_checksum,
            "backend": self.backend,
            "judge": self.judge,
            "version": self.version,
            "git_commit": self.git_commit,
        })
    }
}
