//! Autoregressive generation with a key/value cache: greedy or seeded temperature + top-p
//! sampling, stopping at EOS or `max_new_tokens`. Prompts are processed one by one (no padding is
//! computed) and decoded together over a left-padded cache.

use std::time::Instant;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::model::{Batch, ForwardOptions, KvCache, Llama, Logits, check_tokens};
use crate::prefix_cache::PrefixCache;

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sampling {
    /// The most likely token (ties go to the lowest id, as `torch.argmax`).
    Greedy,
    /// Nucleus sampling: softmax(logits / temperature), keep the smallest set of most likely
    /// tokens whose probability reaches `top_p`, sample. Row `i` of a batch uses the RNG seeded
    /// with `seed + i`, so a prompt's output does not depend on what it is batched with.
    TopP {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Probability mass kept (0 < top_p ≤ 1).
        top_p: f32,
        /// RNG seed.
        seed: u64,
    },
}

/// Generation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// Upper bound on generated tokens per row.
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: Sampling,
}

impl GenerationConfig {
    /// Greedy decoding of at most `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            sampling: Sampling::Greedy,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if let Sampling::TopP {
            temperature, top_p, ..
        } = self.sampling
        {
            if !(temperature > 0.0 && temperature.is_finite()) {
                return Err(EngineError::InvalidInput(format!(
                    "temperature must be positive, got {temperature}"
                )));
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(EngineError::InvalidInput(format!(
                    "top_p must be in (0, 1], got {top_p}"
                )));
            }
        }
        Ok(())
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-sequence token was produced (it is not part of the output).
    Eos,
    /// `max_new_tokens` was reached.
    MaxNewTokens,
    /// The model's context length was reached.
    ContextLength,
}

/// One row's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    /// The prompt as token ids.
    pub prompt_ids: Vec<u32>,
    /// The generated ids, without the stopping EOS.
    pub generated_ids: Vec<u32>,
    /// The generated ids decoded (special tokens skipped).
    pub text: String,
    /// Why generation stopped.
    pub stop: StopReason,
}

/// Wall-clock figures of one [`generate_ids`] call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationTimings {
    /// Prompt processing (the first forward pass), seconds.
    pub prefill_s: f64,
    /// Every later step, seconds.
    pub decode_s: f64,
    /// Prompt tokens over all rows (padding excluded).
    pub prompt_tokens: usize,
    /// Of those, tokens not computed: the beginning a prompt shares with an earlier one (of the
    /// same call, or kept from an earlier call) was taken from that prompt's cache.
    #[serde(default)]
    pub shared_prompt_tokens: usize,
    /// Generated tokens over all rows (EOS included).
    pub generated_tokens: usize,
    /// Of those, the tokens sampled from decode steps (all but each row's first).
    pub decode_tokens: usize,
    /// Decode steps run.
    pub steps: usize,
    /// Each prompt's processing, seconds (they are processed one by one).
    #[serde(default)]
    pub prompt_s: Vec<f64>,
    /// Each prompt's tokens taken from an earlier prompt's cache.
    #[serde(default)]
    pub prompt_shared: Vec<usize>,
}

impl GenerationTimings {
    /// Prompt tokens per second.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_s.max(1e-12)
    }

    /// Tokens per second over the decode steps (one token per active row per step).
    pub fn decode_tokens_per_s(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_s.max(1e-12)
    }
}

/// Row results as token ids with the reason each stopped.
pub type IdRows = Vec<(Vec<u32>, StopReason)>;

/// Generates continuations of token-id prompts: each prompt is processed alone, the decoding
/// steps run for all rows at once.
pub fn generate_ids<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    pad_id: u32,
    stop_ids: &[u32],
    max_len: usize,
    config: &GenerationConfig,
    device: &B::Device,
) -> Result<(IdRows, GenerationTimings)> {
    generate_ids_reusing(
        model,
        prompts,
        pad_id,
        stop_ids,
        max_len,
        config,
        device,
        &mut PrefixCache::unbounded(),
        &mut |_| true,
    )
}

/// What an observer of generation sees after every decoding step (and between prompts while
/// they are processed, with nothing generated yet).
#[derive(Debug, Clone, Copy)]
pub struct GenerationStep<'a> {
    /// Tokens generated so far over every row (end-of-sequence tokens included).
    pub generated_tokens: usize,
    /// Each row's generated ids so far (without the end-of-sequence token).
    pub rows: &'a [Vec<u32>],
}

/// [`generate_ids`], taking the beginnings of prompts from `reuse` (prompts kept by earlier
/// calls on this same model) and keeping this call's prompts in it, and showing `observe` after
/// every step what the rows have generated so far; when it answers `false` generation stops
/// with [`EngineError::Interrupted`] before the next step (a cancelled job stops within one
/// token).
#[allow(clippy::too_many_arguments)]
pub fn generate_ids_reusing<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    pad_id: u32,
    stop_ids: &[u32],
    max_len: usize,
    config: &GenerationConfig,
    device: &B::Device,
    reuse: &mut PrefixCache<B>,
    observe: &mut dyn FnMut(GenerationStep<'_>) -> bool,
) -> Result<(IdRows, GenerationTimings)> {
    config.validate()?;
    if prompts.is_empty() {
        return Ok((Vec::new(), GenerationTimings::default()));
    }
    let vocab = model.embed_tokens.dims()[0];
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(EngineError::InvalidInput(format!("prompt {i} is empty")));
        }
        if p.len() > max_len {
            return Err(EngineError::InvalidInput(format!(
                "prompt {i} has {} tokens, more than the model's context of {max_len}",
                p.len()
            )));
        }
        check_tokens(p, vocab)?;
    }
    let n = prompts.len();
    let mut rngs: Vec<Option<StdRng>> = (0..n)
        .map(|i| match config.sampling {
            Sampling::Greedy => None,
            Sampling::TopP { seed, .. } => Some(StdRng::seed_from_u64(seed.wrapping_add(i as u64))),
        })
        .collect();
    let mut timings = GenerationTimings {
        prompt_tokens: prompts.iter().map(Vec::len).sum(),
        ..Default::default()
    };
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut stops: Vec<Option<StopReason>> = vec![None; n];
    if config.max_new_tokens == 0 {
        return Ok((
            outputs
                .into_iter()
                .map(|o| (o, StopReason::MaxNewTokens))
                .collect(),
            timings,
        ));
    }

    let start = Instant::now();
    let Prefilled {
        mut logits,
        mut cache,
        mut key_mask,
        shared,
        seconds,
    } = prefill(
        model,
        prompts,
        config.max_new_tokens,
        device,
        reuse,
        &mut || {
            observe(GenerationStep {
                generated_tokens: 0,
                rows: &outputs,
            })
        },
    )?;
    timings.shared_prompt_tokens = shared.iter().sum();
    timings.prompt_shared = shared;
    timings.prompt_s = seconds;
    let options = ForwardOptions {
        logits: Logits::Last,
        ..Default::default()
    };
    let mut next_pos: Vec<usize> = prompts.iter().map(Vec::len).collect();

    let mut step_start = start;
    let mut first = true;
    loop {
        let values = logits
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| EngineError::InvalidInput(format!("reading logits: {e:?}")))?;
        if first {
            timings.prefill_s = start.elapsed().as_secs_f64();
            step_start = Instant::now();
            first = false;
        }
        let mut step_tokens = vec![pad_id; n];
        for row in 0..n {
            if stops[row].is_some() {
                continue;
            }
            let row_logits = &values[row * vocab..(row + 1) * vocab];
            let token = match (&config.sampling, rngs[row].as_mut()) {
                (
                    Sampling::TopP {
                        temperature, top_p, ..
                    },
                    Some(rng),
                ) => sample_top_p(row_logits, *temperature, *top_p, rng),
                _ => argmax(row_logits),
            };
            timings.generated_tokens += 1;
            if timings.steps > 0 {
                timings.decode_tokens += 1;
            }
            if stop_ids.contains(&token) {
                stops[row] = Some(StopReason::Eos);
                continue;
            }
            outputs[row].push(token);
            step_tokens[row] = token;
            if outputs[row].len() >= config.max_new_tokens {
                stops[row] = Some(StopReason::MaxNewTokens);
            } else if next_pos[row] + 1 >= max_len {
                stops[row] = Some(StopReason::ContextLength);
            }
        }
        let step = GenerationStep {
            generated_tokens: timings.generated_tokens,
            rows: &outputs,
        };
        if stops.iter().all(Option::is_some) {
            observe(step);
            break;
        }
        if !observe(step) {
            return Err(EngineError::Interrupted {
                done: timings.generated_tokens,
                unit: "tokens",
            });
        }
        for (row, mask) in key_mask.iter_mut().enumerate() {
            // A finished row keeps feeding padding that nothing attends to.
            mask.push(stops[row].is_none());
        }
        let positions = next_pos.clone();
        for p in &mut next_pos {
            *p += 1;
        }
        let step = Batch::<B>::step(&step_tokens, positions, key_mask.clone(), device);
        logits = model
            .forward(&step, Some(&mut cache), &options)
            .logits
            .expect("Logits::Last computes logits");
        timings.steps += 1;
    }
    timings.decode_s = step_start.elapsed().as_secs_f64();
    let rows = outputs
        .into_iter()
        .zip(stops)
        .map(|(o, s)| (o, s.expect("loop ends when every row stopped")))
        .collect();
    Ok((rows, timings))
}

/// What prompt processing leaves for the decoding steps.
struct Prefilled<B: Backend> {
    /// Each row's next-token logits, `[rows, 1, vocab]`.
    logits: Tensor<B, 3>,
    /// Every row's keys and values, left-padded to the longest prompt.
    cache: KvCache<B>,
    /// Which cached keys are real tokens, per row.
    key_mask: Vec<Vec<bool>>,
    /// Each prompt's tokens taken from an earlier prompt's cache.
    shared: Vec<usize>,
    /// Each prompt's processing, seconds.
    seconds: Vec<f64>,
}

/// Processes every prompt on its own, so no padding is computed (a batch of prompts from 12 to
/// 960 tokens would otherwise cost five times the longest), and stacks their caches left-padded
/// for the batched decoding steps, with room for `room` steps (written in place). A prompt that
/// begins like an earlier one of this call, or like one `reuse` kept from earlier calls (the
/// same system prompt, the same jailbreak template), continues that prompt's cache over the shared tokens instead of computing them
/// again: causal attention makes their keys and values the same. Each row's numbers are those of
/// the prompt alone, so a row generates what it would generate by itself. Between prompts
/// `between()` is asked whether to go on (a cancel waits for one prompt at most).
fn prefill<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    room: usize,
    device: &B::Device,
    reuse: &mut PrefixCache<B>,
    between: &mut dyn FnMut() -> bool,
) -> Result<Prefilled<B>> {
    let options = ForwardOptions {
        logits: Logits::Last,
        ..Default::default()
    };
    let mut logits = Vec::with_capacity(prompts.len());
    let mut caches: Vec<KvCache<B>> = Vec::with_capacity(prompts.len());
    let mut shared_tokens = Vec::with_capacity(prompts.len());
    let mut seconds = Vec::with_capacity(prompts.len());
    // This call's prompts, whatever `reuse` has room for.
    let mut this_call = PrefixCache::unbounded();
    for (i, prompt) in prompts.iter().enumerate() {
        if i > 0 && !between() {
            return Err(EngineError::Interrupted {
                done: 0,
                unit: "tokens",
            });
        }
        let started = Instant::now();
        let (mut cache, shared) = this_call
            .take_prefix_either(reuse, prompt)
            .unwrap_or_else(|| (KvCache::new(model.n_layers()), 0));
        shared_tokens.push(shared);
        let batch = Batch::continuing(&prompt[shared..], shared, device);
        let out = model.forward(&batch, Some(&mut cache), &options);
        logits.push(out.logits.expect("Logits::Last computes logits"));
        this_call.keep(prompt, &cache);
        reuse.keep(prompt, &cache);
        caches.push(cache);
        seconds.push(started.elapsed().as_secs_f64());
    }
    let (cache, key_mask) = KvCache::stack_left_padded(caches, room);
    Ok(Prefilled {
        logits: Tensor::cat(logits, 0),
        cache,
        key_mask,
        shared: shared_tokens,
        seconds,
    })
}

/// Index of the largest value; the first one on ties.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Samples from the nucleus of softmax(logits / temperature).
pub fn sample_top_p(logits: &[f32], temperature: f32, top_p: f32, rng: &mut StdRng) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((l - max) / temperature).exp()))
        .collect();
    let total: f32 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0;
    let mut mass = 0.0;
    for &(_, p) in &probs {
        kept += 1;
        mass += p / total;
        if mass >= top_p {
            break;
        }
    }
    probs.truncate(kept);
    let kept_total: f32 = probs.iter().map(|p| p.1).sum();
    let mut u = rng.random::<f32>() * kept_total;
    for &(id, p) in &probs {
        if u < p {
            return id;
        }
        u -= p;
    }
    probs.last().expect("at least one token kept").0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let logits = [10.0, 9.0, -10.0, -10.0];
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let t = sample_top_p(&logits, 1.0, 0.5, &mut rng);
            assert_eq!(t, 0, "p(token 0) ≈ 0.73 ≥ 0.5, so only it is kept");
        }
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[sample_top_p(&logits, 1.0, 0.99, &mut rng) as usize] += 1;
        }
        assert!(seen[0] > 1200 && seen[1] > 400, "{seen:?}");
        assert_eq!(seen[2] + seen[3], 0);
    }

    #[test]
    fn same_seed_same_samples() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| sample_top_p(&logits, 0.8, 0.9, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn an_observer_sees_every_step_and_can_stop_generation() {
        use crate::loader::LanguageModel;
        let lm = LanguageModel::<crate::TestBackend>::tiny(&Default::default());
        let prompts = vec![vec![1, 2, 3], vec![4, 5]];
        let config = GenerationConfig::greedy(6);
        let (full, _) = lm.generate(&prompts, &config).unwrap();
        let mut seen = Vec::new();
        let (observed, timings) = lm
            .generate_observed(&prompts, &config, &mut |step| {
                seen.push(step.generated_tokens);
                assert!(step.rows.iter().map(Vec::len).sum::<usize>() <= step.generated_tokens);
                true
            })
            .unwrap();
        assert_eq!(observed, full, "observing changes nothing");
        // Between the two prompts while they are processed (nothing generated yet), then after
        // every decoding step.
        assert_eq!(seen[0], 0, "{seen:?}");
        let steps = &seen[1..];
        assert_eq!(steps.last(), Some(&timings.generated_tokens));
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(steps[0] > 0, "{seen:?}");
        // Stopping between the prompts: nothing is generated.
        let err = lm
            .generate_observed(&prompts, &config, &mut |_| false)
            .unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::Interrupted {
                    done: 0,
                    unit: "tokens"
                }
            ),
            "{err}"
        );
        // Stopping after the second step: no third step runs.
        let mut steps_seen = 0;
        let err = lm
            .generate_observed(&prompts, &config, &mut |step| {
                if step.generated_tokens > 0 {
                    steps_seen += 1;
                }
                steps_seen < 2
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::Interrupted {
                    done: 4,
                    unit: "tokens"
                }
            ),
            "{err}"
        );
        assert_eq!(steps_seen, 2);
    }

    #[test]
    fn invalid_sampling_is_rejected() {
        let bad = GenerationConfig {
            max_new_tokens: 4,
            sampling: Sampling::TopP {
                temperature: 0.0,
                top_p: 0.9,
                seed: 0,
            },
        };
        assert!(bad.validate().is_err());
        let bad = GenerationConfig {
            max_new_tokens: 4,
            sampling: Sampling::TopP {
                temperature: 1.0,
                top_p: 1.5,
                seed: 0,
            },
        };
        assert!(bad.validate().is_err());
    }
}
