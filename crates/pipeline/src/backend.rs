//! The one place a burn backend is chosen: CPU (burn-flex) by default, CUDA with the `cuda`
//! feature (which the server's `cuda` feature turns on).

use std::path::Path;

use safeedit_engine::{
    EngineError, Generated, GenerationConfig, GenerationTimings, LanguageModel, PrefixCache,
    WeightDtype,
};

use crate::progress::{Event, Progress, ProgressExt};
use crate::{PipelineError, Result, ResultExt};

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

/// The backend recorded with results: [`NAME`], and the weights' precision when it is not f32
/// (`flex (CPU), bf16 weights`).
pub fn described(lm: &Model) -> String {
    match lm.weight_dtype() {
        WeightDtype::F32 => NAME.to_string(),
        other => format!("{NAME}, {other} weights"),
    }
}

/// The backend that records gradients (DINM, fine-tuning).
pub type TrainBackend = burn::backend::Autodiff<Backend>;

/// A loaded model on this build's backend.
pub type Model = LanguageModel<Backend>;

/// Prompts kept across generation calls on one model (see [`PrefixCache`]).
pub type PromptCache = PrefixCache<Backend>;

/// Memory for prompts kept across instances or batches when a plan does not say, in MiB.
pub const DEFAULT_PREFIX_CACHE_MIB: usize = 2048;

/// A prompt cache of `mib` MiB (the default when `None`; 0 keeps nothing).
pub fn prompt_cache(mib: Option<usize>) -> PromptCache {
    PrefixCache::new(
        mib.unwrap_or(DEFAULT_PREFIX_CACHE_MIB)
            .saturating_mul(1 << 20),
    )
}

/// The device models run on.
pub fn device() -> burn::tensor::Device<Backend> {
    Default::default()
}

/// Loads a model (a `.gguf` file, a Hugging Face folder or `tiny`), reporting the tensors read.
pub fn load(path: &Path, progress: &mut dyn Progress) -> Result<Model> {
    load_as(path, WeightDtype::F32, progress)
}

/// [`load`], keeping the model's matrices as `dtype` (bf16 halves their memory; the model
/// computes in f32, see [`WeightDtype`]).
pub fn load_as(path: &Path, dtype: WeightDtype, progress: &mut dyn Progress) -> Result<Model> {
    let mut started = false;
    let lm = Model::load_as(path, &device(), dtype, &mut |_done, total| {
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
    for warning in &lm.warnings {
        progress.event(Event::Warning(warning.clone()));
    }
    Ok(lm)
}

/// Generates from token-id prompts, reporting the tokens after every decoding step and stopping
/// within one token when the progress asks to (`Err(Cancelled)`).
pub fn generate(
    lm: &Model,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    progress: &mut dyn Progress,
) -> Result<Vec<Generated>> {
    generate_timed(lm, prompts, config, &mut PrefixCache::unbounded(), progress)
        .map(|(outputs, _)| outputs)
}

/// [`generate`], taking prompt beginnings from `reuse` (which must only ever see `lm`) and
/// keeping these prompts in it, with where the time went.
pub fn generate_timed(
    lm: &Model,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    reuse: &mut PromptCache,
    progress: &mut dyn Progress,
) -> Result<(Vec<Generated>, GenerationTimings)> {
    progress.check()?;
    let limit = prompts.len() * config.max_new_tokens;
    let result = lm.generate_reusing(prompts, config, reuse, &mut |step| {
        progress.event(Event::Tokens {
            done: step.generated_tokens,
            limit,
        });
        !progress.cancelled()
    });
    match result {
        Ok(done) => Ok(done),
        Err(EngineError::Interrupted { .. }) => Err(PipelineError::Cancelled),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts token reports and asks to stop after the first.
    struct StopAfterFirstToken(usize);

    impl Progress for StopAfterFirstToken {
        fn event(&mut self, event: Event) {
            if matches!(event, Event::Tokens { .. }) {
                self.0 += 1;
            }
        }

        fn cancelled(&self) -> bool {
            self.0 > 0
        }
    }

    #[test]
    fn a_cancel_stops_generation_within_one_token() {
        let lm = load(Path::new("tiny"), &mut crate::Quiet).unwrap();
        let prompts = vec![vec![1, 2, 3]];
        let config = GenerationConfig::greedy(50);
        let full = generate(&lm, &prompts, &config, &mut crate::Quiet).unwrap();
        assert!(full[0].generated_ids.len() > 1, "the tiny model talks on");
        let mut stop = StopAfterFirstToken(0);
        let err = generate(&lm, &prompts, &config, &mut stop).unwrap_err();
        assert!(matches!(err, PipelineError::Cancelled), "{err}");
        assert_eq!(stop.0, 1, "one token, then the stop");
    }
}
