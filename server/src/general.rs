//! `safeedit general`: general performance of a (possibly edited) model (dinm_spec.md §3.6):
//! KQA (TriviaQA accuracy), CSum (XSum ROUGE-1 F) or the offline knowledge proxy. As in the
//! paper (§C.4), a method is measured once on one edited model: for DINM the model edited on
//! one editing instance (id 2 of the three, the paper's Case 19, by default). One JSONL line per
//! item (resumable), then `general_<task>.json` with the score, which `safeedit eval` adds to
//! its table when both write to the same folder.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use safeedit_core::PromptFormat;
use safeedit_core::general::{GeneralItemResult, GeneralTask, task_score};
use safeedit_engine::{GenerationConfig, LanguageModel};
use serde_json::json;

use crate::edit::DinmArgs;
use crate::eval::{BaselineArgs, Method, MethodModel, edit_for, method_input};
use crate::generate::FormatArg;
use crate::publish::{DbArgs, publish};
use crate::{backend, data, runs};

/// Arguments of `safeedit general`.
#[derive(Args, Debug)]
pub struct GeneralArgs {
    /// Task: `csum` (XSum; shipped sample), `kqa` (TriviaQA; needs --data), `knowledge` (the
    /// offline KQA proxy on SafeEdit's knowledge-constrain questions).
    #[arg(long)]
    pub task: GeneralTask,
    /// The method whose model is measured.
    #[arg(long, value_enum)]
    pub method: Method,
    /// The task's data file instead of the shipped sample.
    #[arg(long)]
    pub data: Option<String>,
    /// Only the first N items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output folder (may be an `eval` folder of the same method).
    #[arg(long)]
    pub out: PathBuf,
    /// For DINM: the instance the model is edited on.
    #[arg(long, default_value_t = 2)]
    pub edit_instance: u64,
    /// For DINM: where that instance is (`editing-instances`, `test-sample` or a file).
    #[arg(long, default_value = "editing-instances")]
    pub edit_data: String,
    /// Model: a .gguf file, a Hugging Face directory, or `tiny` [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
    /// Most new tokens per item [default: the task's].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Items generated together.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Prompt format [default: the model's preset].
    #[arg(long, value_enum)]
    pub prompt_format: Option<FormatArg>,
    /// DINM settings (also the suffix prompt of `--method prompt`).
    #[command(flatten)]
    pub dinm: DinmArgs,
    /// FT-L and ablation settings.
    #[command(flatten)]
    pub baselines: BaselineArgs,
    /// The runs database (an eval folder's stored run gets the new score).
    #[command(flatten)]
    pub db: DbArgs,
}

/// The file names of a task's results in an output folder.
pub fn summary_path(out: &Path, task: GeneralTask) -> PathBuf {
    out.join(format!("general_{}.json", task.name()))
}

/// Runs the command.
pub fn run(args: GeneralArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let task = args.task;
    let mut items = data::general_items(task, args.data.as_deref())?;
    if let Some(limit) = args.limit {
        items.truncate(limit);
    }
    anyhow::ensure!(!items.is_empty(), "no {} items to evaluate", task.name());
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let MethodModel {
        model_path,
        trained,
        lm,
        mut settings,
        format,
    } = MethodModel::load(
        args.method,
        args.model.clone(),
        &args.dinm,
        &args.baselines,
        args.prompt_format,
    )?;
    let generation =
        GenerationConfig::greedy(args.max_new_tokens.unwrap_or(task.default_max_new_tokens()));
    // The suffix is the `prompt` method itself, the wrapper Self-Reminder itself; an edited
    // model is measured on the task's own prompts, as OpenCompass does with a saved model.
    let method = args.method;
    let wraps = matches!(method, Method::Prompt | Method::SelfReminder);
    let suffix = (method == Method::Prompt).then(|| settings.dinm.suffix_system_prompt.clone());
    let described = settings.describe(method);
    let run_info = json!({
        "task": task.name(),
        "method": args.method.name(),
        "data": args.data.clone().unwrap_or_else(|| "shipped".into()),
        "model": model_path.display().to_string(),
        "model_name": lm.name,
        "trained": trained,
        "backend": backend::NAME,
        "prompt_format": format,
        "generation": generation,
        "suffix": suffix,
        "dinm": method.edits().then(|| described["dinm"].clone()),
        "ftl": described["ftl"],
        "seed": described["seed"],
        "self_reminder": described["self_reminder"],
        "edit_instance": method.edits()
            .then(|| format!("{}#{}", args.edit_data, args.edit_instance)),
        "version": env!("CARGO_PKG_VERSION"),
    });
    runs::check_or_write_run_info(
        &args.out.join(format!("general_{}_run.json", task.name())),
        &run_info,
        &[
            "task",
            "method",
            "data",
            "model",
            "prompt_format",
            "generation",
            "suffix",
            "dinm",
            "ftl",
            "seed",
            "self_reminder",
            "edit_instance",
        ],
    )?;

    let results_path = args.out.join(format!("general_{}.jsonl", task.name()));
    let done: HashSet<String> = runs::resume_jsonl::<GeneralItemResult>(&results_path)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let todo: Vec<_> = items.iter().filter(|i| !done.contains(&i.id)).collect();
    eprintln!(
        "{} / {}: {} items ({} already done) -> {}",
        task.name(),
        args.method.name(),
        items.len(),
        items.len() - todo.len(),
        args.out.display()
    );

    let mut edit_summary = None;
    let edited;
    let model: &LanguageModel<backend::Backend> = if method.edits() && !todo.is_empty() {
        let records = data::load(&args.edit_data)?;
        let record = data::instance(&records, args.edit_instance, &args.edit_data)?;
        eprintln!("editing on instance {} ...", record.id);
        let (model, summary) = edit_for(method, &lm, &record, &mut settings, &format)?
            .expect("an editing method edits");
        eprintln!(
            "edited layer {} (delta norm {:.4})",
            summary.layer, summary.delta_norm
        );
        edit_summary = Some(summary);
        edited = model;
        &edited
    } else {
        &lm
    };

    let bar = runs::progress(todo.len(), task.name(), "items");
    let started = Instant::now();
    for batch in todo.chunks(args.batch_size) {
        let prompts = batch
            .iter()
            .map(|item| {
                let user = task.prompt(item);
                let (user, input_format) = if wraps {
                    method_input(method, &user, &settings, &format)
                } else {
                    (user, format.clone())
                };
                encode(model, &user, task.answer_prefix(), &input_format)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (outputs, _) = model.generate(&prompts, &generation)?;
        for (item, out) in batch.iter().zip(outputs) {
            let scored = task.score(&out.text, item);
            let result = GeneralItemResult {
                id: item.id.clone(),
                response: out.text,
                prediction: scored.prediction,
                score: scored.score,
            };
            runs::append_jsonl(&results_path, &result)?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let results: Vec<GeneralItemResult> = runs::read_jsonl(&results_path)?;
    let wanted: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let results: Vec<GeneralItemResult> = results
        .into_iter()
        .filter(|r| wanted.contains(r.id.as_str()))
        .collect();
    let score = task_score(&results).context("no results")?;
    let summary = json!({
        "run": run_info,
        "task": task.name(),
        "metric": task.metric(),
        "score": score,
        "n": results.len(),
        "edit": edit_summary,
        "seconds_this_run": started.elapsed().as_secs_f64(),
    });
    std::fs::write(
        summary_path(&args.out, task),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    println!(
        "{} ({}, {}): {:.2} over {} items",
        task.metric(),
        args.method.name(),
        lm.name,
        score,
        results.len()
    );
    match publish(&args.out, &args.db) {
        Ok(Some(slug)) => eprintln!("stored in the runs database: /evals/{slug}"),
        Ok(None) => {}
        Err(e) => eprintln!("warning: not stored in the runs database: {e:#}"),
    }
    Ok(())
}

/// The task prompt in the model's format, with the model's turn opened by `prefix` (OpenCompass's
/// BOT prompt, e.g. `A:` for TriviaQA).
fn encode(
    lm: &LanguageModel<backend::Backend>,
    user: &str,
    prefix: Option<&str>,
    format: &PromptFormat,
) -> anyhow::Result<Vec<u32>> {
    Ok(match (format, prefix) {
        (PromptFormat::Plain, Some(prefix)) => lm
            .tokenizer
            .encode_prompt(&format!("{user}\n{prefix}"), format)?,
        (_, None) => lm.tokenizer.encode_prompt(user, format)?,
        (PromptFormat::Chat { .. }, Some(prefix)) => {
            let mut ids = lm.tokenizer.encode_prompt(user, format)?;
            ids.extend(lm.tokenizer.encode(prefix, false)?);
            ids
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::tests::TempDir;

    fn args(task: GeneralTask, method: Method, limit: usize, out: &Path) -> GeneralArgs {
        GeneralArgs {
            task,
            method,
            data: None,
            limit: Some(limit),
            out: out.to_path_buf(),
            edit_instance: 2,
            edit_data: "editing-instances".into(),
            model: Some("tiny".into()),
            max_new_tokens: Some(3),
            batch_size: 2,
            prompt_format: None,
            dinm: DinmArgs {
                preset: None,
                lr: None,
                steps: Some(1),
                layer: None,
                padding: None,
                constraint_grad: false,
                reuse_first_layer: false,
            },
            baselines: BaselineArgs::default(),
            db: DbArgs {
                no_db: true,
                ..DbArgs::default()
            },
        }
    }

    #[test]
    fn dinm_csum_scores_items_and_resumes() {
        let dir = TempDir::new("general");
        run(args(GeneralTask::Csum, Method::Dinm, 2, dir.path())).unwrap();
        run(args(GeneralTask::Csum, Method::Dinm, 3, dir.path())).unwrap();
        let lines: Vec<GeneralItemResult> =
            runs::read_jsonl(&dir.path().join("general_csum.jsonl")).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|r| (0.0..=1.0).contains(&r.score)));
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(summary_path(dir.path(), GeneralTask::Csum)).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["n"], 3);
        assert_eq!(summary["metric"], "CSum");
        assert_eq!(summary["run"]["edit_instance"], "editing-instances#2");
        let err = run(args(GeneralTask::Csum, Method::Vanilla, 3, dir.path())).unwrap_err();
        assert!(format!("{err:#}").contains("different `method`"), "{err:#}");
    }

    #[test]
    fn kqa_without_data_says_what_to_pass() {
        let dir = TempDir::new("kqa");
        let err = run(args(GeneralTask::Kqa, Method::Vanilla, 2, dir.path())).unwrap_err();
        assert!(format!("{err:#}").contains("trivia-dev.qa.csv"), "{err:#}");
    }
}
