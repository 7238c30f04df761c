//! `safeedit edit`: DINM on one SafeEdit instance, with the vanilla and edited generations of its
//! evaluation inputs side by side (dinm_spec.md §2, §3.1).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use safeedit_core::SafeEditRecord;
use safeedit_core::run::Comparison;
use safeedit_core::safeedit::EVAL_INPUT_KINDS;
use safeedit_engine::dinm::{DinmConfig, DinmEvent, dinm_edit};
use safeedit_engine::judge::SafetyJudge;
use safeedit_engine::weights::{SaveDtype, write_safetensors};
use safeedit_engine::{GenerationConfig, LanguageModel, PromptFormat};
use serde_json::json;

use crate::generate::FormatArg;
use crate::locate::PaddingArg;
use crate::{backend, data, paths};

/// DINM hyperparameters on the command line (a preset plus overrides).
#[derive(Args, Debug, Clone)]
pub struct DinmArgs {
    /// Hyperparameter preset: llama-2-7b-chat, mistral-7b, smollm2-135m [default: by model].
    #[arg(long)]
    pub preset: Option<String>,
    /// Override the preset's learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Override the number of steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Edit this layer instead of locating one.
    #[arg(long)]
    pub layer: Option<usize>,
    /// Padding for location [default: the preset's].
    #[arg(long, value_enum)]
    pub padding: Option<PaddingArg>,
    /// Let the KL constraint carry a gradient (the paper's intent; D2).
    #[arg(long)]
    pub constraint_grad: bool,
    /// Reuse the first instance's located layer for all later ones, as the release does (D1;
    /// evaluation loops only).
    #[arg(long)]
    pub reuse_first_layer: bool,
}

impl DinmArgs {
    /// The preset (by name, or the one fitting the model) with the overrides applied.
    pub fn config(&self, lm: &LanguageModel<backend::Backend>) -> anyhow::Result<DinmConfig> {
        let mut config = match &self.preset {
            Some(name) => DinmConfig::preset_named(name).with_context(|| {
                format!("unknown preset `{name}` (llama-2-7b-chat, mistral-7b, smollm2-135m)")
            })?,
            None => DinmConfig::preset_for(&lm.name, &lm.architecture),
        };
        if let Some(lr) = self.lr {
            config.lr = lr;
            config.preset = format!("{} (lr {lr})", config.preset);
        }
        if let Some(steps) = self.steps {
            config.num_steps = steps;
        }
        if self.layer.is_some() {
            config.layer = self.layer;
        }
        if let Some(padding) = self.padding {
            config.padding_side = padding.into();
        }
        config.constraint_has_grad |= self.constraint_grad;
        config.reuse_first_located_layer |= self.reuse_first_layer;
        Ok(config)
    }
}

/// Arguments of `safeedit edit`.
#[derive(Args, Debug)]
pub struct EditArgs {
    /// SafeEdit records: `test-sample`, `editing-instances`, or a JSON file.
    #[arg(long, default_value = "test-sample", env = "SAFEEDIT_DATA")]
    pub data: String,
    /// Instance id.
    #[arg(long)]
    pub instance: u64,
    /// Model: a .gguf file, a Hugging Face directory, or `tiny` [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
    /// DINM settings.
    #[command(flatten)]
    pub dinm: DinmArgs,
    /// Most new tokens per evaluation input [default: the preset's max_output_length].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Prompt format [default: the model's preset].
    #[arg(long, value_enum)]
    pub prompt_format: Option<FormatArg>,
    /// Write the delta as safetensors (one tensor, named by its HF path).
    #[arg(long)]
    pub save_delta: Option<PathBuf>,
    /// Skip the before/after generations.
    #[arg(long)]
    pub no_generate: bool,
    /// Judge with the paper's classifier in this directory [default: the built-in judge].
    #[arg(long, env = "SAFEEDIT_JUDGE_DIR")]
    pub judge_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: EditArgs) -> anyhow::Result<()> {
    let records = data::load(&args.data)?;
    let record = data::instance(&records, args.instance, &args.data)?;
    let model_path = paths::model_or_default(args.model.clone())?;
    let lm = backend::load(&model_path, !args.json)?;
    let mut config = args.dinm.config(&lm)?;
    if let Some(n) = args.max_new_tokens {
        config.max_output_length = n;
    }
    let format = FormatArg::resolve(args.prompt_format, &lm.prompt_format);

    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(config.num_steps as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("locating the toxic layer");
    let edit =
        dinm_edit::<backend::TrainBackend>(
            &lm,
            &record,
            &config,
            &format,
            &mut |event| match event {
                DinmEvent::Located(found) => {
                    bar.set_message(format!("layer {}: tuning down_proj", found.layer))
                }
                DinmEvent::Step(step) => {
                    bar.set_message(format!("step {} loss {:.4}", step.step, step.loss));
                    bar.inc(1);
                }
            },
        )
        .with_context(|| format!("editing instance {}", record.id))?;
    bar.finish_and_clear();

    if let Some(path) = &args.save_delta {
        let metadata = [
            ("instance".to_string(), record.id.to_string()),
            ("model".to_string(), lm.name.clone()),
            ("dinm_config".to_string(), serde_json::to_string(&config)?),
        ]
        .into_iter()
        .collect();
        write_safetensors(
            path,
            &[(edit.delta.tensor_name(), edit.delta.delta_raw())],
            SaveDtype::F32,
            Some(metadata),
        )?;
    }

    let mut generations = Vec::new();
    let mut generate_s = 0.0;
    let mut judge_info = None;
    if !args.no_generate {
        let started = Instant::now();
        let generation =
            GenerationConfig::greedy(args.max_new_tokens.unwrap_or(config.max_output_length));
        let judge = crate::judge::load_judge(args.judge_dir.as_deref())?;
        let edited_lm = edit.delta.apply(&lm);
        let comparisons = compare(
            &lm,
            &edited_lm,
            &record,
            &config,
            &format,
            &generation,
            judge.as_ref(),
            &mut || {},
        )?;
        generate_s = started.elapsed().as_secs_f64();
        judge_info = Some(judge.info());
        for c in comparisons {
            generations.push(json!({
                "input": c.kind, "text": c.input,
                "vanilla": c.vanilla, "vanilla_verdict": c.vanilla_verdict,
                "edited": c.edited, "edited_verdict": c.edited_verdict,
            }));
        }
    }

    let report = json!({
        "model": model_path.display().to_string(),
        "backend": backend::NAME,
        "instance": record.id,
        "category": record.category,
        "attack": record.attack_name,
        "prompt_format": format,
        "config": config,
        "layer": edit.delta.layer,
        "edited_tensor": edit.delta.tensor_name(),
        "distances": edit.located.as_ref().map(|l| &l.distances),
        "steps": edit.steps,
        "stopped_early": edit.stopped_early,
        "delta_norm": edit.delta.norm,
        "delta_file": args.save_delta.as_ref().map(|p| p.display().to_string()),
        "judge": judge_info,
        "generations": generations,
        "seconds": {"locate": edit.seconds.locate, "tune": edit.seconds.tune, "generate": generate_s},
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "instance {} ({}, attack {}): {}",
        record.id, record.category, record.attack_name, record.question
    );
    println!(
        "edited {} ({} format, preset {})",
        edit.delta.tensor_name(),
        format.label(),
        config.preset
    );
    for s in &edit.steps {
        println!(
            "  step {:>2}  loss {:.5}  (edit NLL {:.5}, constraint KL {:.2e})",
            s.step, s.loss, s.edit, s.constraint
        );
    }
    println!(
        "delta Frobenius norm {:.4}; locate {:.2} s, tune {:.2} s",
        edit.delta.norm, edit.seconds.locate, edit.seconds.tune
    );
    if let Some(path) = &args.save_delta {
        println!("delta written to {}", path.display());
    }
    if let Some(info) = &judge_info {
        println!(
            "judge: {} ({}) - {}",
            info.id, info.version, info.description
        );
    }
    for g in &generations {
        println!("\n== {} ==", g["input"].as_str().unwrap_or_default());
        println!(
            "-- vanilla [{}]:\n{}",
            g["vanilla_verdict"],
            g["vanilla"].as_str().unwrap_or_default()
        );
        println!(
            "-- edited, with suffix [{}]:\n{}",
            g["edited_verdict"],
            g["edited"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// DS and the DG inputs of `record` answered by the unedited model (raw inputs) and the edited
/// one (each input + " " + the suffix prompt, §3.1), then judged; `on_judging` is called between.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    lm: &LanguageModel<backend::Backend>,
    edited: &LanguageModel<backend::Backend>,
    record: &SafeEditRecord,
    config: &DinmConfig,
    format: &PromptFormat,
    generation: &GenerationConfig,
    judge: &dyn SafetyJudge,
    on_judging: &mut dyn FnMut(),
) -> anyhow::Result<Vec<Comparison>> {
    let inputs = record.eval_inputs();
    let encode = |text: String| lm.tokenizer.encode_prompt(&text, format);
    let vanilla_prompts = inputs
        .iter()
        .map(|i| encode(i.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let edited_prompts = inputs
        .iter()
        .map(|i| encode(format!("{i} {}", config.suffix_system_prompt)))
        .collect::<Result<Vec<_>, _>>()?;
    let (vanilla, _) = lm.generate(&vanilla_prompts, generation)?;
    let (after, _) = edited.generate(&edited_prompts, generation)?;
    on_judging();
    let texts: Vec<String> = vanilla
        .iter()
        .chain(&after)
        .map(|g| g.text.clone())
        .collect();
    let verdicts = judge.judge(&texts)?;
    let (before_v, after_v) = verdicts.split_at(vanilla.len());
    Ok(EVAL_INPUT_KINDS
        .iter()
        .zip(&inputs)
        .enumerate()
        .map(|(i, (kind, input))| Comparison {
            kind: kind.to_string(),
            input: input.to_string(),
            vanilla: vanilla[i].text.clone(),
            vanilla_verdict: before_v[i],
            edited: after[i].text.clone(),
            edited_verdict: after_v[i],
        })
        .collect())
}
