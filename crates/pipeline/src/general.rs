//! `general`: general performance of a (possibly edited) model (docs/method.md §General
//! performance): KQA (TriviaQA accuracy), CSum (XSum ROUGE-1 F) or the offline knowledge proxy.
//! As in the paper, a method is measured once on one edited model: for DINM the model edited on
//! one editing instance (id 2 of the three, the paper's Case 19, by default). One JSONL line per
//! item (resumable), then `general_<task>.json` with the score, which `eval` adds to its table
//! when both write to the same folder.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use safeedit_core::general::{GeneralItemResult, GeneralTask, task_score};
use safeedit_core::{Method, PromptFormat};
use safeedit_engine::GenerationConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backend::{self, Model};
use crate::method::{MethodModel, ModelChoice, edit_for, method_input};
use crate::progress::{Event, Progress, ProgressExt};
use crate::publish::{Database, Published, publish_eval, publish_folder};
use crate::run_dir::{
    self, append_jsonl, check_or_write_run_info, general_summary_path, read_jsonl, resume_jsonl,
};
use crate::{PipelineError, Result, data, ensure, limits, provenance};

/// General performance of one method's model on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneralPlan {
    /// `csum` (XSum; shipped sample), `kqa` (TriviaQA; needs `data`), `knowledge` (the offline
    /// KQA proxy on SafeEdit's knowledge-constrain questions).
    pub task: GeneralTask,
    /// The method whose model is measured.
    pub method: Method,
    /// The task's data file instead of the shipped sample.
    pub data: Option<String>,
    /// Only the first N items.
    pub limit: Option<usize>,
    /// Output folder (may be an `eval` folder of the same method).
    pub out: PathBuf,
    /// For editing methods: the instance the model is edited on.
    pub edit_instance: u64,
    /// For editing methods: where that instance is (`editing-instances`, `test-sample`, a file).
    pub edit_data: String,
    /// The model, its prompt format and the methods' settings.
    pub model: ModelChoice,
    /// Most new tokens per item [default: the task's].
    pub max_new_tokens: Option<usize>,
    /// Items generated together.
    pub batch_size: usize,
    /// Where the score is stored (an eval folder's stored run gets it; `None`: files only).
    pub database: Option<Database>,
}

/// What a general-performance run produced.
#[derive(Debug, Clone)]
pub struct GeneralSummary {
    /// The task.
    pub task: GeneralTask,
    /// The method.
    pub method: Method,
    /// The measured model's name.
    pub model_name: String,
    /// The task's score.
    pub score: f64,
    /// Items scored.
    pub n: usize,
    /// The runs database's answer.
    pub published: Published,
}

/// Runs the plan: resumes the folder, generates and scores the missing items, writes the score.
pub fn run(plan: &GeneralPlan, progress: &mut dyn Progress) -> Result<GeneralSummary> {
    ensure!(plan.batch_size > 0, "--batch-size must be at least 1");
    limits::max_new_tokens_opt(plan.max_new_tokens)?;
    plan.model.check()?;
    let task = plan.task;
    let mut items = data::general_items(task, plan.data.as_deref())?;
    if let Some(limit) = plan.limit {
        items.truncate(limit);
    }
    ensure!(!items.is_empty(), "no {} items to evaluate", task.name());
    let _lock = run_dir::lock(&plan.out)?;

    let MethodModel {
        model_path,
        trained,
        lm,
        mut settings,
        format,
    } = MethodModel::load(plan.method, &plan.model, progress)?;
    let generation =
        GenerationConfig::greedy(plan.max_new_tokens.unwrap_or(task.default_max_new_tokens()));
    // The suffix is the `prompt` method itself, the wrapper Self-Reminder itself; an edited
    // model is measured on the task's own prompts, as OpenCompass does with a saved model.
    let method = plan.method;
    let wraps = matches!(method, Method::Prompt | Method::SelfReminder);
    let suffix = (method == Method::Prompt).then(|| settings.dinm.suffix_system_prompt.clone());
    let described = settings.describe(method);
    let run_info = json!({
        "task": task.name(),
        "method": plan.method.name(),
        "data": plan.data.clone().unwrap_or_else(|| "shipped".into()),
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
            .then(|| format!("{}#{}", plan.edit_data, plan.edit_instance)),
        "model_checksum": provenance::model_checksum(&model_path),
        "version": provenance::VERSION,
        "git_commit": provenance::GIT_COMMIT,
    });
    check_or_write_run_info(
        &plan.out.join(format!("general_{}_run.json", task.name())),
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

    let results_path = plan.out.join(format!("general_{}.jsonl", task.name()));
    let done: HashSet<String> = resume_jsonl::<GeneralItemResult>(&results_path)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let todo: Vec<_> = items.iter().filter(|i| !done.contains(&i.id)).collect();
    progress.note(format!(
        "{} / {}: {} items ({} already done) -> {}",
        task.name(),
        plan.method.name(),
        items.len(),
        items.len() - todo.len(),
        plan.out.display()
    ));

    let mut edit_summary = None;
    let edited;
    let model: &Model = if method.edits() && !todo.is_empty() {
        let records = data::load(&plan.edit_data)?;
        let record = data::instance(&records, plan.edit_instance, &plan.edit_data)?;
        progress.note(format!("editing on instance {} ...", record.id));
        let (model, summary) = edit_for(method, &lm, &record, &mut settings, &format, progress)?
            .ok_or_else(|| PipelineError::Invalid(format!("{method} did not edit")))?;
        progress.note(format!(
            "edited layer {} (delta norm {:.4})",
            summary.layer, summary.delta_norm
        ));
        edit_summary = Some(summary);
        edited = model;
        &edited
    } else {
        &lm
    };

    progress.phase(task.name(), "items", todo.len());
    let started = Instant::now();
    // One model for every item: a shared instruction or few-shot beginning is computed once.
    let mut reuse = backend::prompt_cache(None);
    for batch in todo.chunks(plan.batch_size) {
        progress.check()?;
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
            .collect::<Result<Vec<_>>>()?;
        let (outputs, _) =
            backend::generate_timed(model, &prompts, &generation, &mut reuse, progress)?;
        for (item, out) in batch.iter().zip(outputs) {
            let scored = task.score(&out.text, item);
            let result = GeneralItemResult {
                id: item.id.clone(),
                response: out.text,
                prediction: scored.prediction,
                score: scored.score,
            };
            append_jsonl(&results_path, &result)?;
            progress.event(Event::Advance(1));
        }
    }
    progress.event(Event::PhaseDone);

    let results: Vec<GeneralItemResult> = read_jsonl(&results_path)?;
    let wanted: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let results: Vec<GeneralItemResult> = results
        .into_iter()
        .filter(|r| wanted.contains(r.id.as_str()))
        .collect();
    let score = task_score(&results)
        .ok_or_else(|| PipelineError::Invalid(format!("no {} results", task.name())))?;
    let summary = json!({
        "run": run_info,
        "task": task.name(),
        "metric": task.metric(),
        "score": score,
        "n": results.len(),
        "edit": edit_summary,
        "seconds_this_run": started.elapsed().as_secs_f64(),
    });
    run_dir::write_json(&general_summary_path(&plan.out, task), &summary)?;
    let published = publish_folder(plan.database.as_ref(), |p| publish_eval(&plan.out, p));
    Ok(GeneralSummary {
        task,
        method,
        model_name: lm.name.clone(),
        score,
        n: results.len(),
        published,
    })
}

/// The task prompt in the model's format, with the model's turn opened by `prefix` (OpenCompass's
/// BOT prompt, e.g. `A:` for TriviaQA).
fn encode(lm: &Model, user: &str, prefix: Option<&str>, format: &PromptFormat) -> Result<Vec<u32>> {
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
    use crate::Quiet;
    use crate::testutil::tiny_model;

    /// The tiny model (1 DINM step), 3 tokens, batches of 2, files only.
    fn plan(task: GeneralTask, method: Method, limit: usize, out: &std::path::Path) -> GeneralPlan {
        let mut model = tiny_model();
        model.dinm.steps = Some(1);
        GeneralPlan {
            task,
            method,
            data: None,
            limit: Some(limit),
            out: out.to_path_buf(),
            edit_instance: 2,
            edit_data: "editing-instances".into(),
            model,
            max_new_tokens: Some(3),
            batch_size: 2,
            database: None,
        }
    }

    #[test]
    fn dinm_csum_scores_items_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        run(
            &plan(GeneralTask::Csum, Method::Dinm, 2, dir.path()),
            &mut Quiet,
        )
        .unwrap();
        run(
            &plan(GeneralTask::Csum, Method::Dinm, 3, dir.path()),
            &mut Quiet,
        )
        .unwrap();
        let lines: Vec<GeneralItemResult> =
            read_jsonl(&dir.path().join("general_csum.jsonl")).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|r| (0.0..=1.0).contains(&r.score)));
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(general_summary_path(dir.path(), GeneralTask::Csum)).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["n"], 3);
        assert_eq!(summary["metric"], "CSum");
        assert_eq!(summary["run"]["edit_instance"], "editing-instances#2");
        let err = run(
            &plan(GeneralTask::Csum, Method::Vanilla, 3, dir.path()),
            &mut Quiet,
        )
        .unwrap_err();
        assert!(err.to_string().contains("different `method`"), "{err}");
    }

    #[test]
    fn kqa_without_data_says_what_to_pass() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            &plan(GeneralTask::Kqa, Method::Vanilla, 2, dir.path()),
            &mut Quiet,
        )
        .unwrap_err();
        assert!(err.to_string().contains("trivia-dev.qa.csv"), "{err}");
    }
}
