//! The one place a burn backend is chosen.

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use safeedit_engine::LanguageModel;

/// CPU backend (burn-flex: SIMD + multi-threaded gemm).
#[cfg(not(feature = "cuda"))]
pub type Backend = burn::backend::Flex;
/// Human-readable backend name, recorded with every result.
#[cfg(not(feature = "cuda"))]
pub const NAME: &str = "flex (CPU)";

/// NVIDIA GPU backend.
#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;
/// Human-readable backend name, recorded with every result.
#[cfg(feature = "cuda")]
pub const NAME: &str = "cuda";

/// The backend that records gradients (DINM, fine-tuning).
pub type TrainBackend = burn::backend::Autodiff<Backend>;

/// The device models run on.
pub fn device() -> burn::tensor::Device<Backend> {
    Default::default()
}

/// Loads a model, with a progress bar on stderr when `progress` is set.
pub fn load(path: &Path, progress: bool) -> anyhow::Result<LanguageModel<Backend>> {
    let bar = if progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} tensors")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(path.display().to_string());
    let lm = LanguageModel::<Backend>::load_with_progress(path, &device(), &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("loading model {}", path.display()))?;
    bar.finish_and_clear();
    Ok(lm)
}
