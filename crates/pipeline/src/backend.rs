//! The one place a burn backend is chosen: CPU (burn-flex) by default, CUDA with the `cuda`
//! feature (which the server's `cuda` feature turns on).

use std::path::Path;

use safeedit_engine::LanguageModel;

use crate::progress::{Event, Progress, ProgressExt};
use crate::{Result, ResultExt};

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

/// A loaded model on this build's backend.
pub type Model = LanguageModel<Backend>;

/// The device models run on.
pub fn device() -> burn::tensor::Device<Backend> {
    Default::default()
}

/// Loads a model (a `.gguf` file, a Hugging Face folder or `tiny`), reporting the tensors read.
pub fn load(path: &Path, progress: &mut dyn Progress) -> Result<Model> {
    let mut started = false;
    let lm = Model::load_with_progress(path, &device(), &mut |_done, total| {
        if !started {
            progress.phase(format!("loading {}", path.display()), "tensors", total);
            started = true;
        }
        progress.event(Event::Advance(1));
    })
    .with_context(|| format!("loading model {}", path.display()))?;
    if started {
        progress.event(Event::PhaseDone);
    }
    Ok(lm)
}
