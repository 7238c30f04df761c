//! Where results come from: one [`Provenance`] per loaded model and judge, written into every
//! record here and nowhere else.

use std::path::Path;

use safeedit_core::{JudgeInfo, Provenance};
use sha2::{Digest, Sha256};

use crate::backend::{self, Model};

/// The git commit this library was built from (`unknown` outside a checkout).
pub const GIT_COMMIT: &str = env!("SAFEEDIT_GIT_COMMIT");

/// SafeEdit Studio's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// SHA-256 (first 16 hex digits) of a model file, or of `config.json` in a model folder;
/// `none` when there is no file (the `tiny` test model).
pub fn model_checksum(path: &Path) -> String {
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    let Ok(mut reader) = std::fs::File::open(&file) else {
        return "none".into();
    };
    let mut hasher = Sha256::new();
    match std::io::copy(&mut reader, &mut hasher) {
        Ok(_) => hasher
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect(),
        Err(_) => "none".into(),
    }
}

/// The provenance of results from `lm` (loaded from `model_path`, whose checksum is given when
/// already known) judged by `judge`.
pub fn provenance(
    model_path: &Path,
    checksum: Option<&str>,
    lm: &Model,
    judge: JudgeInfo,
) -> Provenance {
    Provenance {
        model_path: model_path.display().to_string(),
        model_name: lm.name.clone(),
        model_checksum: checksum.map_or_else(|| model_checksum(model_path), str::to_string),
        backend: backend::described(lm),
        judge,
        version: VERSION.into(),
        git_commit: GIT_COMMIT.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_name_the_file_or_say_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"abc").unwrap();
        // SHA-256("abc") = ba7816bf8f01cfea...
        assert_eq!(model_checksum(&file), "ba7816bf8f01cfea");
        std::fs::write(dir.path().join("config.json"), b"abc").unwrap();
        assert_eq!(model_checksum(dir.path()), "ba7816bf8f01cfea");
        assert_eq!(model_checksum(Path::new("tiny")), "none");
    }
}
