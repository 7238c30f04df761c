//! `safeedit bench`: speed measurements recorded in BENCHMARKS.md.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use safeedit_engine::{GenerationConfig, PromptFormat, WeightDtype};
use serde_json::json;

use safeedit_pipeline::{Quiet, backend, data, paths};

use super::args::DtypeArg;

/// Benchmarks.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Prompt processing and greedy decoding speed on one prompt.
    Generate(BenchGenerateArgs),
    /// DINM edit time per instance (locate + steps), with and without the docs/method.md §The edit
    /// prefix cache.
    Edit(BenchEditArgs),
    /// SFT / DPO training speed: seconds per optimiser step and per pair, peak memory; writes
    /// the exact token ids and order for the PyTorch side (scripts/bench/hf_train.py).
    Train(BenchTrainArgs),
    /// One forward pass on given token ids: writes the logits and every hidden state as raw
    /// little-endian f32 for a parity check against another backend or PyTorch
    /// (scripts/gpu/parity.py).
    Logits(BenchLogitsArgs),
}

/// Arguments of `safeedit bench logits`.
#[derive(Args, Debug)]
pub struct BenchLogitsArgs {
    /// Model [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
    /// Comma-separated token ids (one unpadded row).
    #[arg(long, value_delimiter = ',', required_unless_present = "prompt_file")]
    pub ids: Vec<u32>,
    /// Or a text file, tokenised as plain text (the ids used go into `meta.json`).
    #[arg(long, conflicts_with = "ids")]
    pub prompt_file: Option<PathBuf>,
    /// Folder for `logits.f32` (`[seq, vocab]`), `hidden.f32` (`[n_layers + 1, seq, d_model]`,
    /// transformers' `output_hidden_states` order) and `meta.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// The weights' precision.
    #[command(flatten)]
    pub dtype: DtypeArg,
}

/// Arguments of `safeedit bench train`.
#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    /// Model [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
    /// `sft` or `dpo`.
    #[arg(long, default_value = "sft")]
    pub objective: String,
    /// Training pairs (the first of the shipped sample's train fold).
    #[arg(long, default_value_t = 8)]
    pub pairs: usize,
    /// Pairs per optimiser step.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Timed optimiser steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 2)]
    pub steps: usize,
    /// Write the pairs' token ids, their order and the settings here for the PyTorch side.
    #[arg(long)]
    pub examples_out: Option<PathBuf>,
}

/// Arguments of `safeedit bench edit`.
#[derive(Args, Debug)]
pub struct BenchEditArgs {
    /// Model [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
    /// SafeEdit records: `test-sample`, `editing-instances`, or a JSON file.
    #[arg(long, default_value = "editing-instances")]
    pub data: String,
    /// Comma-separated instance ids.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub instances: Vec<u64>,
    /// Timed repetitions per instance (the median is reported).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Also time the edit without the prefix cache (full forward every step).
    #[arg(long)]
    pub compare_full_forward: bool,
    /// The weights' precision.
    #[command(flatten)]
    pub dtype: DtypeArg,
}

/// Arguments of `safeedit bench generate`.
#[derive(Args, Debug)]
pub struct BenchGenerateArgs {
    /// Model [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
    /// The prompt (plain text, fed as is; its token count is reported).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Read the prompt from a file instead.
    #[arg(long, conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,
    /// Tokens to generate (the run ignores EOS so every repetition decodes the same count).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// The weights' precision.
    #[command(flatten)]
    pub dtype: DtypeArg,
}

/// Runs a benchmark and prints one JSON object.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Generate(args) => generate(args),
        BenchCommand::Edit(args) => edit(args),
        BenchCommand::Train(args) => train(args),
        BenchCommand::Logits(args) => logits(args),
    }
}

/// Loads the model, timing it (reading, converting to `dtype` and moving to the device).
fn load_timed(path: &std::path::Path, dtype: WeightDtype) -> anyhow::Result<(backend::Model, f64)> {
    let started = Instant::now();
    let lm = backend::load_as(path, dtype, &mut Quiet)?;
    Ok((lm, started.elapsed().as_secs_f64()))
}

/// Peak resident memory of this process (VmHWM), in MiB; `None` off Linux.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn train(args: BenchTrainArgs) -> anyhow::Result<()> {
    use safeedit_core::safeedit::Fold;
    use safeedit_engine::baselines::{Objective, TrainConfig, Trainer, train_examples};
    let objective = match args.objective.as_str() {
        "sft" => Objective::Sft,
        "dpo" => Objective::Dpo,
        other => anyhow::bail!("--objective {other}: sft or dpo"),
    };
    anyhow::ensure!(
        args.pairs > 0 && args.batch_size > 0 && args.steps > 0,
        "--pairs, --batch-size and --steps must be at least 1"
    );
    let model_path = paths::model_or_default(args.model)?;
    let (lm, load_s) = load_timed(&model_path, WeightDtype::F32)?;
    let mut records = Fold::Train.select(data::load("test-sample")?);
    records.truncate(args.pairs);
    // One warm-up step and the timed ones, in one epoch; no warm-up of the learning rate so
    // every timed step does the same work as in a long run.
    let needed = args.batch_size * (args.steps + 1);
    let epochs = needed.div_ceil(records.len());
    let config = TrainConfig::smollm2_135m(objective)
        .with_batch_size(args.batch_size)
        .with_epochs(epochs)
        .with_warmup_steps(0);
    let format = lm.prompt_format.clone();
    let examples = train_examples(&lm, &records, &format, &config)?;
    let started = Instant::now();
    let mut trainer =
        Trainer::<backend::TrainBackend>::new(&lm, examples, config.clone(), &mut |_, _| {})?;
    let reference_s = started.elapsed().as_secs_f64();
    let mut steps = Vec::new();
    for i in 0..=args.steps {
        let log = trainer.step()?;
        if i > 0 {
            steps.push(
                json!({"seconds": log.seconds, "loss": log.loss, "grad_norm": log.grad_norm}),
            );
        }
    }
    let used: Vec<usize> = trainer.order()[..args.batch_size * (args.steps + 1)].to_vec();
    let tokens = |i: &usize| {
        let e = &trainer.examples()[*i];
        match objective {
            Objective::Sft => e.prompt.len() + e.chosen.len(),
            Objective::Dpo => 2 * (e.prompt.len() + e.chosen.len().max(e.rejected.len())),
        }
    };
    let timed = &used[args.batch_size..];
    let timed_tokens: usize = timed.iter().map(tokens).sum();
    let step_s: Vec<f64> = steps
        .iter()
        .map(|s| s["seconds"].as_f64().unwrap_or(0.0))
        .collect();
    let total: f64 = step_s.iter().sum();
    if let Some(path) = &args.examples_out {
        let examples: Vec<_> = trainer.examples().iter().collect();
        let file = json!({
            "objective": objective.as_str(),
            "config": config,
            "order": used,
            "examples": examples,
            "reference_logps": trainer.reference_logps(),
            "pad_id": lm.tokenizer.special.pad_id(),
        });
        std::fs::write(path, serde_json::to_string(&file)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let report = json!({
        "model": model_path.display().to_string(),
        "backend": backend::NAME,
        "dtype": WeightDtype::F32.as_str(),
        "load_s": load_s,
        "rayon_threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "objective": objective.as_str(),
        "pairs": records.len(),
        "batch_size": args.batch_size,
        "timed_steps": args.steps,
        "reference_logps_s": (objective == Objective::Dpo).then_some(reference_s),
        "seconds_per_step": total / args.steps as f64,
        "seconds_per_pair": total / timed.len() as f64,
        "tokens_per_s": timed_tokens as f64 / total,
        "timed_tokens": timed_tokens,
        "peak_rss_mib": peak_rss_mib(),
        "steps": steps,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn generate(args: BenchGenerateArgs) -> anyhow::Result<()> {
    let model_path = paths::model_or_default(args.model)?;
    let (mut lm, load_s) = load_timed(&model_path, args.dtype.dtype)?;
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)?.trim_end().to_string(),
        (None, None) => DEFAULT_PROMPT.trim_end().to_string(),
    };
    let ids = lm.tokenizer.encode_prompt(&prompt, &PromptFormat::Plain)?;
    // Decode a fixed number of tokens: no stop token.
    lm.tokenizer.special.eos.clear();
    let config = GenerationConfig::greedy(args.new_tokens);
    let mut runs = Vec::new();
    for i in 0..=args.repeat {
        let started = Instant::now();
        let (_, t) = lm.generate(std::slice::from_ref(&ids), &config)?;
        let total = started.elapsed().as_secs_f64();
        if i > 0 {
            runs.push((t, total));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let prefill = median(runs.iter().map(|(t, _)| t.prefill_tokens_per_s()).collect());
    let decode = median(runs.iter().map(|(t, _)| t.decode_tokens_per_s()).collect());
    let report = json!({
        "model": model_path.display().to_string(),
        "backend": backend::NAME,
        "dtype": args.dtype.dtype.as_str(),
        "load_s": load_s,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "rayon_threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "prompt_tokens": ids.len(),
        "new_tokens": args.new_tokens,
        "repeat": args.repeat,
        "prefill_tokens_per_s": prefill,
        "decode_tokens_per_s": decode,
        "runs": runs.iter().map(|(t, total)| json!({
            "prefill_s": t.prefill_s, "decode_s": t.decode_s, "total_s": total,
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn edit(args: BenchEditArgs) -> anyhow::Result<()> {
    use safeedit_engine::dinm::{DinmConfig, dinm_edit};
    let model_path = paths::model_or_default(args.model)?;
    let (lm, load_s) = load_timed(&model_path, args.dtype.dtype)?;
    let records = data::load(&args.data)?;
    let format = lm.prompt_format.clone();
    let base = DinmConfig::preset_for(&lm.name, &lm.architecture);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut rows = Vec::new();
    for id in &args.instances {
        let record = data::instance(&records, *id, &args.data)?;
        let mut variants = vec![("cached_prefix", base.clone())];
        if args.compare_full_forward {
            variants.push(("full_forward", base.clone().with_cache_prefix(false)));
        }
        let mut row = json!({"instance": id});
        for (name, config) in variants {
            let (mut locate, mut tune) = (Vec::new(), Vec::new());
            let mut layer = 0;
            let mut tokens = 0;
            let mut last = None;
            for _ in 0..args.repeat.max(1) {
                let e = dinm_edit::<backend::TrainBackend>(
                    &lm,
                    &record,
                    &config,
                    &format,
                    &mut |_| {},
                )?;
                locate.push(e.seconds.locate);
                tune.push(e.seconds.tune);
                layer = e.delta.layer;
                tokens = e.tokens.edit_input.len();
                last = Some((e.tokens, e.steps));
            }
            // The exact ids and losses, so a reference on other hardware runs the same edit
            // (scripts/gpu/dinm_torch.py).
            if let Some((ids, losses)) = last.filter(|_| name == "cached_prefix") {
                row["tokens"] = json!(ids);
                row["steps"] = json!(losses);
            }
            row["layer"] = json!(layer);
            row["edit_tokens"] = json!(tokens);
            // Every run too: the first in a process pays for kernel compilation and autotuning on
            // a GPU backend.
            let runs: Vec<_> = locate
                .iter()
                .zip(&tune)
                .map(|(l, t)| json!({"locate_s": l, "tune_s": t}))
                .collect();
            row[name] = json!({"locate_s": median(locate), "tune_s": median(tune), "runs": runs});
        }
        rows.push(row);
    }
    let report = json!({
        "model": model_path.display().to_string(),
        "backend": backend::NAME,
        "dtype": args.dtype.dtype.as_str(),
        "load_s": load_s,
        "rayon_threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "preset": base,
        "prompt_format": format,
        "instances": rows,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn logits(args: BenchLogitsArgs) -> anyhow::Result<()> {
    use safeedit_engine::model::{Batch, ForwardOptions};
    let model_path = paths::model_or_default(args.model)?;
    let (lm, load_s) = load_timed(&model_path, args.dtype.dtype)?;
    let vocab = lm.config.vocab_size;
    let ids = match &args.prompt_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            lm.tokenizer
                .encode_prompt(text.trim_end(), &PromptFormat::Plain)?
        }
        None => args.ids.clone(),
    };
    anyhow::ensure!(!ids.is_empty(), "no token ids to run");
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        anyhow::bail!("--ids: token id {bad} is outside the vocabulary (size {vocab})");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let batch = Batch::single(&ids, &lm.device);
    let options = ForwardOptions {
        hidden_states: true,
        ..ForwardOptions::default()
    };
    let started = Instant::now();
    let out = lm.model.forward(&batch, None, &options);
    let logits: Vec<f32> = out
        .logits
        .context("the forward pass returned no logits")?
        .into_data()
        .convert::<f32>()
        .into_vec()
        .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
    let mut hidden: Vec<f32> = Vec::new();
    for state in &out.hidden_states {
        hidden.extend(
            state
                .clone()
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("reading hidden states: {e:?}"))?,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    for (name, values) in [("logits.f32", &logits), ("hidden.f32", &hidden)] {
        let path = args.out.join(name);
        std::fs::write(&path, bytes(values))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let meta = json!({
        "model": model_path.display().to_string(),
        "backend": backend::NAME,
        "dtype": args.dtype.dtype.as_str(),
        "load_s": load_s,
        "seq": ids.len(),
        "ids": ids,
        "vocab": vocab,
        "d_model": lm.config.d_model,
        "n_layers": lm.config.n_layers,
        "seconds": seconds,
    });
    let text = serde_json::to_string_pretty(&meta)?;
    std::fs::write(args.out.join("meta.json"), &text)?;
    println!("{text}");
    Ok(())
}

/// The benchmark prompt (~120 tokens of English), shared with scripts/bench/hf_generate.py.
const DEFAULT_PROMPT: &str = include_str!("../../bench/prompt.txt");
