//! `safeedit generate`: one prompt in, one continuation out (text, or JSON for scripts).

use std::time::Instant;

use anyhow::Context;
use clap::Args;
use safeedit_engine::{GenerationConfig, PromptFormat, Sampling};
use serde_json::json;

use safeedit_pipeline::{Quiet, backend, paths};

use super::args::{DtypeArg, FormatArg, ModelArg};
use super::progress::Bars;

/// Arguments of `safeedit generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArg,
    /// The user text.
    #[arg(long)]
    pub prompt: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Greedy decoding (the default when no temperature is given).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "seed"])]
    pub greedy: bool,
    /// Sample with this temperature instead of greedy decoding.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus mass kept when sampling.
    #[arg(long, requires = "temperature", default_value_t = 1.0)]
    pub top_p: f32,
    /// Sampling seed.
    #[arg(long, requires = "temperature", default_value_t = 0)]
    pub seed: u64,
    /// Prompt format [default: the model's preset].
    #[arg(long, value_enum)]
    pub prompt_format: Option<FormatArg>,
    /// System message for the chat format.
    #[arg(long)]
    pub system: Option<String>,
    /// Print one JSON object instead of the text.
    #[arg(long)]
    pub json: bool,
    /// The weights' precision.
    #[command(flatten)]
    pub dtype: DtypeArg,
}

/// Runs the command.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let model_path = paths::model_or_default(args.model.model)?;
    let started = Instant::now();
    let lm = if args.json {
        backend::load_as(&model_path, args.dtype.dtype, &mut Quiet)?
    } else {
        backend::load_as(&model_path, args.dtype.dtype, &mut Bars::new())?
    };
    let load_s = started.elapsed().as_secs_f64();

    let format = match (args.prompt_format, &args.system) {
        (Some(FormatArg::Plain), Some(_)) => anyhow::bail!("--system needs the chat prompt format"),
        (Some(FormatArg::Plain), None) => PromptFormat::Plain,
        (Some(FormatArg::Chat), system) => PromptFormat::Chat {
            system: system.clone(),
        },
        (None, Some(system)) => PromptFormat::Chat {
            system: Some(system.clone()),
        },
        (None, None) => lm.prompt_format.clone(),
    };
    let sampling = match args.temperature {
        Some(temperature) => Sampling::TopP {
            temperature,
            top_p: args.top_p,
            seed: args.seed,
        },
        None => Sampling::Greedy,
    };
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        sampling,
    };
    let prompt_ids = lm
        .tokenizer
        .encode_prompt(&args.prompt, &format)
        .context("encoding the prompt")?;
    let (mut outputs, timings) = lm.generate(&[prompt_ids], &config)?;
    let out = outputs.pop().expect("one prompt, one output");

    if args.json {
        let report = json!({
            "model": model_path.display().to_string(),
            "model_name": lm.name,
            "backend": backend::NAME,
            "dtype": args.dtype.dtype.as_str(),
            "prompt": args.prompt,
            "prompt_format": format,
            "generation": config,
            "prompt_ids": out.prompt_ids,
            "generated_ids": out.generated_ids,
            "text": out.text,
            "stop": out.stop,
            "timings": {
                "load_s": load_s,
                "prefill_s": timings.prefill_s,
                "decode_s": timings.decode_s,
                "prompt_tokens": timings.prompt_tokens,
                "generated_tokens": timings.generated_tokens,
                "prefill_tokens_per_s": timings.prefill_tokens_per_s(),
                "decode_tokens_per_s": timings.decode_tokens_per_s(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", out.text);
        eprintln!(
            "[{} prompt tokens, {} generated, stop: {:?}; prefill {:.1} tok/s, decode {:.1} tok/s; {}]",
            timings.prompt_tokens,
            out.generated_ids.len(),
            out.stop,
            timings.prefill_tokens_per_s(),
            timings.decode_tokens_per_s(),
            format.label(),
        );
    }
    Ok(())
}
