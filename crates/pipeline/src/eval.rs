//! `eval`: a method over SafeEdit instances (docs/method.md §Evaluation): the five inputs per
//! instance, generation, the judge's verdicts, fluency; one JSONL line per instance (resumable:
//! a re-run skips finished ids), then the metric table as JSON and CSV, overall and per category
//! and attack, and the run in the runs database.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use safeedit_core::eval::{InstanceResult, MetricRow, summarize, to_csv};
use safeedit_core::safeedit::Fold;
use safeedit_core::{Method, PromptFormat, SafeEditRecord};
use safeedit_engine::GenerationConfig;
use safeedit_engine::judge::SafetyJudge;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backend::{self, Model};
use crate::evaluate::{evaluate, evaluate_together, instance_result};
use crate::method::{MethodModel, MethodSettings, ModelChoice, reuse_first_layer};
use crate::progress::{Event, Progress, ProgressExt};
use crate::publish::{Database, Published, publish_eval, publish_folder};
use crate::run_dir::{
    self, append_jsonl, check_or_write_run_info, general_rows, read_jsonl, resume_jsonl,
};
use crate::shard::{self, MergePlan, Shard, ShardFolder, ShardInfo};
use crate::{PipelineError, Result, bail, data, judge, limits, provenance};

/// An evaluation of one method on SafeEdit instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPlan {
    /// The method.
    pub method: Method,
    /// Split: `test` (the shipped test sample, or `data`) or `editing` (the three instances).
    pub split: String,
    /// A SafeEdit JSON file instead of the shipped records.
    pub data: Option<String>,
    /// Which records: all, or a question-disjoint fold.
    pub fold: Fold,
    /// Only the first N instances.
    pub limit: Option<usize>,
    /// Output folder: run.json, instances.jsonl, errors.jsonl, summary.json, summary.csv.
    pub out: PathBuf,
    /// The model, its prompt format and the methods' settings.
    pub model: ModelChoice,
    /// The paper's classifier in this folder [default: the built-in judge].
    pub judge_dir: Option<PathBuf>,
    /// Most new tokens per input [default: the DINM preset's max_output_length].
    pub max_new_tokens: Option<usize>,
    /// Where the run is stored (`None`: files only).
    pub database: Option<Database>,
    /// Only this shard of the instances, in `out/shard-K-of-N` (joined by [`merge`]).
    #[serde(default)]
    pub shard: Option<Shard>,
    /// Memory in MiB for prompts kept across instances by methods that do not edit, so that a
    /// jailbreak template shared by many instances is computed once [default:
    /// [`backend::DEFAULT_PREFIX_CACHE_MIB`]; 0 keeps nothing]. Answers are the same either way.
    #[serde(default)]
    pub prefix_cache_mib: Option<usize>,
    /// Instances a method that does not edit answers in one generation, their rows decoded
    /// together (a decoding step then reads the weights once for all of them) [default:
    /// [`DEFAULT_INSTANCES_TOGETHER`]; 1: one at a time]. On the CPU backend the answers are
    /// the same either way; on a GPU the products' rounding may depend on how many rows are
    /// multiplied together, as it already does for an instance's five rows.
    #[serde(default)]
    pub instances_together: Option<usize>,
}

/// Instances answered in one generation unless a plan says otherwise: 20 rows, for which a
/// decoding step of a small model on a CPU reads the weights once. Every row keeps keys and
/// values for the group's longest prompt plus the new tokens: for a 7B model (f32 cache, about
/// 1 MiB per position and row) SafeEdit's longest inputs (~1,100 tokens) and the preset's 600 new
/// tokens take about 33 GiB, so a GPU with less memory to spare wants `--instances-together 1`
/// (5 rows, as before).
pub const DEFAULT_INSTANCES_TOGETHER: usize = 4;

impl EvalPlan {
    /// A plan with the defaults of `safeedit eval` for `method`, writing to `out`.
    pub fn new(method: Method, out: impl Into<PathBuf>) -> Self {
        Self {
            method,
            split: "test".into(),
            data: None,
            fold: Fold::All,
            limit: None,
            out: out.into(),
            model: ModelChoice::default(),
            judge_dir: None,
            max_new_tokens: None,
            database: Some(Database::default()),
            shard: None,
            prefix_cache_mib: None,
            instances_together: None,
        }
    }

    /// The folder this plan writes: `out`, or its shard's folder under it.
    pub fn folder(&self) -> PathBuf {
        match &self.shard {
            Some(shard) => shard.folder(&self.out),
            None => self.out.clone(),
        }
    }
}

/// What an evaluation produced.
#[derive(Debug, Clone)]
pub struct EvalSummary {
    /// The method.
    pub method: Method,
    /// The metric rows (overall, per category, per attack, and general-task scores).
    pub rows: Vec<MetricRow>,
    /// Instances in the summary.
    pub instances: usize,
    /// Instances that failed this time (listed in `errors.jsonl`).
    pub failures: usize,
    /// The output folder.
    pub out: PathBuf,
    /// The runs database's answer.
    pub published: Published,
}

impl EvalSummary {
    /// `Err` when some instances failed (their errors are in `errors.jsonl`).
    pub fn check(&self) -> Result<()> {
        if self.failures > 0 {
            return Err(PipelineError::InstancesFailed {
                failures: self.failures,
                errors: self.out.join("errors.jsonl"),
            });
        }
        Ok(())
    }
}

/// What every evaluation protocol loads before generating: the model, the method's settings,
/// the prompt format, generation settings and the judge.
pub struct EvalSetup {
    /// The model, its training card, the method's settings and the prompt format.
    pub model: MethodModel,
    /// Greedy decoding, the preset's (or the plan's) length.
    pub generation: GenerationConfig,
    /// The safety judge.
    pub judge: Box<dyn SafetyJudge>,
}

impl EvalSetup {
    /// Loads everything `plan` names.
    pub fn load(plan: &EvalPlan, progress: &mut dyn Progress) -> Result<Self> {
        limits::max_new_tokens_opt(plan.max_new_tokens)?;
        let model = MethodModel::load(plan.method, &plan.model, progress)?;
        let generation = GenerationConfig::greedy(
            plan.max_new_tokens
                .unwrap_or(model.settings.dinm.max_output_length),
        );
        let judge = judge::load_judge(plan.judge_dir.as_deref())?;
        Ok(Self {
            model,
            generation,
            judge,
        })
    }

    /// The model, the method's settings (which an edit may update, D1), the prompt format, the
    /// generation settings and the judge, borrowed at once.
    pub fn parts(
        &mut self,
    ) -> (
        &Model,
        &mut MethodSettings,
        &PromptFormat,
        &GenerationConfig,
        &dyn SafetyJudge,
    ) {
        let model = &mut self.model;
        (
            &model.lm,
            &mut model.settings,
            &model.format,
            &self.generation,
            self.judge.as_ref(),
        )
    }

    /// The run description shared by the protocols.
    pub fn run_info(&self, method: Method, data: String) -> serde_json::Value {
        let m = &self.model;
        let described = m.settings.describe(method);
        let origin = provenance::provenance(&m.model_path, None, &m.lm, self.judge.info());
        let mut info = json!({
            "method": method.name(),
            "data": data,
            "trained": m.trained,
            "prompt_format": m.format,
            "generation": self.generation,
            "dinm": described["dinm"],
            "ftl": described["ftl"],
            "seed": described["seed"],
            "self_reminder": described["self_reminder"],
        });
        for (key, value) in origin.run_fields().as_object().into_iter().flatten() {
            info[key] = value.clone();
        }
        // Only when not f32, so runs from before `--dtype` resume as they did.
        let dtype = m.lm.weight_dtype();
        if !dtype.is_f32() {
            info["weights"] = json!(dtype);
        }
        info
    }
}

/// The run description keys a resumed run must match.
pub const RUN_KEYS: [&str; 12] = [
    "method",
    "data",
    "model",
    "prompt_format",
    "generation",
    "dinm",
    "ftl",
    "seed",
    "self_reminder",
    "judge",
    "shard",
    "weights",
];

/// The records a plan evaluates and how its run names them.
fn records(plan: &EvalPlan) -> Result<(Vec<SafeEditRecord>, String)> {
    let source = match (&plan.data, plan.split.as_str()) {
        (Some(path), _) => path.clone(),
        (None, "test") => "test-sample".into(),
        (None, "editing") => "editing-instances".into(),
        (None, other) => bail!("unknown split `{other}` (test, editing; or pass --data FILE)"),
    };
    let mut records = plan.fold.select(data::load(&source)?);
    if let Some(limit) = plan.limit {
        records.truncate(limit);
    }
    let label = if plan.fold == Fold::All {
        source
    } else {
        format!("{source} (fold {})", plan.fold.as_str())
    };
    Ok((records, label))
}

/// Runs the evaluation: resumes the folder, evaluates what is missing, writes the summary and
/// stores the run. Instances that fail are logged in `errors.jsonl` and counted in the summary
/// ([`EvalSummary::check`]); a cancelled run stops between instances.
pub fn run(plan: &EvalPlan, progress: &mut dyn Progress) -> Result<EvalSummary> {
    // Settings out of range are refused before the data, the folder or the model is touched.
    limits::max_new_tokens_opt(plan.max_new_tokens)?;
    let together = match plan.method.edits() {
        // An editing method answers each instance with its own edited model.
        true => 1,
        false => limits::instances_together(
            plan.instances_together
                .unwrap_or(DEFAULT_INSTANCES_TOGETHER),
        )?,
    };
    plan.model.check()?;
    let (records, data_label) = records(plan)?;
    let out = plan.folder();
    let mine = match &plan.shard {
        Some(shard) => shard.select(&records),
        None => records.clone(),
    };
    let _lock = run_dir::lock(&out)?;

    let mut setup = EvalSetup::load(plan, progress)?;
    let mut run_info = setup.run_info(plan.method, data_label);
    if let Some(shard) = &plan.shard {
        run_info["shard"] = json!(ShardInfo {
            index: shard.index,
            count: shard.count,
            instances: records.len(),
            ids: mine.iter().map(|r| r.id).collect(),
        });
    }
    let (lm, settings, format, generation, judge) = setup.parts();
    check_or_write_run_info(&out.join("run.json"), &run_info, &RUN_KEYS)?;

    let results_path = out.join("instances.jsonl");
    let done = resume_jsonl::<InstanceResult>(&results_path)?;
    let done_ids: HashSet<u64> = done.iter().map(|r| r.id).collect();
    let todo: Vec<&SafeEditRecord> = mine.iter().filter(|r| !done_ids.contains(&r.id)).collect();
    let method = plan.method;
    let shard_note = plan
        .shard
        .map(|s| format!(" (shard {s} of {} instances)", records.len()))
        .unwrap_or_default();
    progress.note(format!(
        "{}: {} instances{shard_note} ({} already done) -> {}",
        method.name(),
        mine.len(),
        mine.len() - todo.len(),
        out.display()
    ));
    // D1 (--reuse-first-layer) when this process does not edit on the dataset's first instance
    // (a resumed run, or a shard without it): the layer its edit located, as one run has it.
    if let Some(first) = records.first()
        && !todo.is_empty()
        && !todo.iter().any(|r| r.id == first.id)
    {
        let edit = done
            .iter()
            .find(|r| r.id == first.id)
            .and_then(|r| r.edit.as_ref());
        reuse_first_layer(method, lm, first, edit, settings, progress)?;
    }
    progress.phase(method.name(), "instances", todo.len());
    let mut failures = 0;
    let mut reuse = backend::prompt_cache(plan.prefix_cache_mib);
    for group in todo.chunks(together) {
        progress.check()?;
        let started = Instant::now();
        let answered = if group.len() == 1 {
            evaluate(
                method, lm, group[0], settings, format, generation, judge, &mut reuse, progress,
            )
            .map(|one| vec![one])
        } else {
            evaluate_together(
                method, lm, group, settings, format, generation, judge, &mut reuse, progress,
            )
        };
        let results = match answered {
            Ok(evaluated) => {
                // The group's wall time, shared out as each instance's own phases weigh.
                let wall = started.elapsed().as_secs_f64();
                let own: Vec<f64> = evaluated.iter().map(|e| e.timings.seconds()).collect();
                let total: f64 = own.iter().sum();
                evaluated
                    .into_iter()
                    .zip(own)
                    .map(|(e, own)| {
                        let share = if total > 0.0 {
                            own / total
                        } else {
                            1.0 / group.len() as f64
                        };
                        Ok((e, wall * share))
                    })
                    .collect::<Vec<Result<_>>>()
            }
            Err(PipelineError::Cancelled) => return Err(PipelineError::Cancelled),
            // One failing input fails its generation: answer the group's instances one by one,
            // so that the error is the instance's own and the others are answered.
            Err(_) if group.len() > 1 => group
                .iter()
                .map(|record| {
                    let started = Instant::now();
                    evaluate(
                        method, lm, record, settings, format, generation, judge, &mut reuse,
                        progress,
                    )
                    .map(|e| (e, started.elapsed().as_secs_f64()))
                })
                .collect(),
            Err(e) => vec![Err(e)],
        };
        for (record, result) in group.iter().zip(results) {
            match result {
                Ok((evaluated, seconds)) => {
                    let result = instance_result(method, record, evaluated, seconds);
                    append_jsonl(&results_path, &result)?;
                }
                Err(PipelineError::Cancelled) => return Err(PipelineError::Cancelled),
                Err(e) => {
                    failures += 1;
                    progress.event(Event::Warning(format!("instance {}: {e}", record.id)));
                    append_jsonl(
                        &out.join("errors.jsonl"),
                        &json!({"id": record.id, "error": e.to_string()}),
                    )?;
                }
            }
            progress.event(Event::Advance(1));
        }
    }
    progress.event(Event::PhaseDone);
    if !reuse.is_empty() {
        progress.note(format!(
            "prompts kept across instances: {} ({:.0} MiB)",
            reuse.len(),
            reuse.bytes() as f64 / (1 << 20) as f64
        ));
    }

    let results: Vec<InstanceResult> = read_jsonl(&results_path)?;
    let rows = write_summary(&out, method, &run_info, &results)?;
    let published = if let Some(shard) = &plan.shard {
        progress.note(format!(
            "shard {shard}: not stored in the runs database on its own; `safeedit eval-merge` \
             joins the shards and stores the run"
        ));
        Published::Skipped
    } else {
        publish_folder(plan.database.as_ref(), |p| publish_eval(&out, p))
    };
    Ok(EvalSummary {
        method,
        rows,
        instances: results.len(),
        failures,
        out,
        published,
    })
}

/// Writes `summary.json` and `summary.csv` for `results` (with the folder's general-task
/// scores) and returns the metric rows.
fn write_summary(
    out: &Path,
    method: Method,
    run_info: &serde_json::Value,
    results: &[InstanceResult],
) -> Result<Vec<MetricRow>> {
    let mut rows = summarize(results);
    rows.extend(general_rows(out, method.name())?);
    let summary = json!({"run": run_info, "instances": results.len(), "metrics": rows});
    run_dir::write_json(&out.join("summary.json"), &summary)?;
    run_dir::write(&out.join("summary.csv"), to_csv(method.name(), &rows))?;
    Ok(rows)
}

/// Joins the checked shards of one evaluation ([`shard::merge`]) into the run one process
/// would have written: every instance exactly once, `instances.jsonl` in dataset order, the
/// summary, stored.
pub(crate) fn merge_shards(
    shards: &[ShardFolder],
    plan: &MergePlan,
    progress: &mut dyn Progress,
) -> Result<EvalSummary> {
    let first = &shards[0];
    let count = first.shard.count;
    let mut parts = Vec::with_capacity(count);
    for folder in shards {
        let mut results: Vec<InstanceResult> = read_jsonl(&folder.dir.join("instances.jsonl"))?;
        let mut by_id: std::collections::HashMap<u64, InstanceResult> = Default::default();
        for r in results.drain(..) {
            if by_id.contains_key(&r.id) {
                bail!(
                    "{}: instance {} appears twice in instances.jsonl",
                    folder.dir.display(),
                    r.id
                );
            }
            by_id.insert(r.id, r);
        }
        let mut ordered = Vec::with_capacity(folder.shard.ids.len());
        for id in &folder.shard.ids {
            match by_id.remove(id) {
                Some(r) => ordered.push(r),
                None => bail!(
                    "{}: instance {id} has no result (it failed or the shard has not finished: \
                     see its errors.jsonl, re-run the shard, then merge)",
                    folder.dir.display()
                ),
            }
        }
        if let Some(extra) = by_id.keys().min() {
            bail!(
                "{}: instance {extra} is not one of this shard's instances",
                folder.dir.display()
            );
        }
        parts.push(ordered);
    }
    let results = shard::interleave(parts).ok_or_else(|| {
        PipelineError::Invalid(format!(
            "the shards' instance lists do not deal {} instances over {count} shards",
            first.shard.instances
        ))
    })?;
    let mut seen = HashSet::new();
    if let Some(twice) = results.iter().find(|r| !seen.insert(r.id)) {
        bail!("instance {} appears in two shards", twice.id);
    }
    if results.len() != first.shard.instances {
        bail!(
            "the shards hold {} instances, the run has {}",
            results.len(),
            first.shard.instances
        );
    }

    let method: Method = serde_json::from_value(first.info["method"].clone())
        .map_err(|e| PipelineError::file(&first.dir.join("run.json"), format!("`method`: {e}")))?;
    let run_info = first.merged_info();
    let _lock = run_dir::lock(&plan.out)?;
    check_or_write_run_info(&plan.out.join("run.json"), &run_info, &RUN_KEYS)?;
    let mut text = String::new();
    for r in &results {
        text.push_str(&serde_json::to_string(r).expect("records serialise to JSON"));
        text.push('\n');
    }
    run_dir::write(&plan.out.join("instances.jsonl"), text)?;
    let rows = write_summary(&plan.out, method, &run_info, &results)?;
    progress.note(format!(
        "merged {count} shards: {} instances -> {}",
        results.len(),
        plan.out.display()
    ));
    let published = publish_folder(plan.database.as_ref(), |p| publish_eval(&plan.out, p));
    Ok(EvalSummary {
        method,
        rows,
        instances: results.len(),
        failures: 0,
        out: plan.out.clone(),
        published,
    })
}

/// The instances an evaluation folder holds.
pub fn read_results(out: &Path) -> Result<Vec<InstanceResult>> {
    read_jsonl(&out.join("instances.jsonl"))
}

#[cfg(test)]
mod tests {
    use safeedit_engine::WeightDtype;
    use safeedit_engine::baselines::{Objective, SELF_REMINDER_SUFFIX};
    use safeedit_engine::dinm::random_layer;

    use super::*;
    use crate::Quiet;
    use crate::shard::merge;
    use crate::testutil::{database_in, folder_slug, tiny_eval, tiny_train, with_store};

    #[test]
    fn baselines_and_ablations_give_their_inputs_and_edits() {
        let suffix = safeedit_engine::dinm::SUFFIX_SYSTEM_PROMPT;
        let dir = tempfile::tempdir().unwrap();
        let results = |method: Method| {
            let out = dir.path().join(method.name());
            let mut plan = tiny_eval(method, 2, &out);
            plan.model.baselines.seed = 7;
            plan.model.baselines.ftl_steps = Some(2);
            run(&plan, &mut Quiet).unwrap();
            let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
            assert!(
                csv.contains(&format!("{},all,all,DS,", method.name())),
                "{csv}"
            );
            read_results(&out).unwrap()
        };

        for r in results(Method::SelfReminder) {
            assert!(r.edit.is_none());
            assert!(
                r.inputs
                    .iter()
                    .all(|i| i.input.ends_with(SELF_REMINDER_SUFFIX))
            );
        }
        for r in results(Method::Ftl) {
            let edit = r.edit.unwrap();
            assert_eq!(
                edit.layer, 1,
                "FT-L's preset layer, moved inside the tiny model"
            );
            assert!(edit.distances.is_none(), "FT-L does not locate");
            assert_eq!(edit.losses.len(), 2);
            assert!(edit.delta_norm > 0.0);
            assert!(
                r.inputs.iter().all(|i| !i.input.contains(suffix)),
                "no suffix"
            );
        }
        for r in results(Method::DinmRandomLayer) {
            let edit = r.edit.unwrap();
            assert_eq!(edit.layer, random_layer(7, r.id, 2));
            assert!(edit.distances.is_none(), "the layer is drawn, not located");
            assert!(r.inputs.iter().all(|i| i.input.ends_with(suffix)));
        }
        for r in results(Method::DinmNoSuffix) {
            assert!(r.edit.unwrap().distances.is_some(), "still located");
            assert!(r.inputs.iter().all(|i| !i.input.contains(suffix)));
        }
        let info: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("ftl/run.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(info["ftl"]["num_steps"], 2);
        assert!(info["dinm"].is_null());
    }

    #[test]
    fn an_eval_stored_unlisted_is_left_off_the_lists() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = tiny_eval(Method::Vanilla, 1, dir.path());
        if let Some(db) = plan.database.as_mut() {
            db.unlisted = true;
        }
        run(&plan, &mut Quiet).unwrap();
        let slug = crate::testutil::folder_slug(dir.path());
        crate::testutil::with_store(dir.path(), async |store| {
            assert!(store.unlisted().await.unwrap().contains(&slug));
            let evals = store.list_evals().await.unwrap();
            assert_eq!(
                store
                    .listed(evals, |e| Some(e.slug.as_str()), &[])
                    .await
                    .unwrap(),
                []
            );
            assert!(
                store.eval(&slug).await.unwrap().is_some(),
                "stored, reachable by slug"
            );
        });
    }

    /// Vanilla evaluation answering three instances in one generation gives each the answers
    /// it gets alone, records each instance's own prompt processing, and refuses a group size
    /// out of range naming it.
    #[test]
    fn instances_answered_together_get_the_answers_they_get_alone() {
        let dir = tempfile::tempdir().unwrap();
        let answered = |together: usize| {
            let out = dir.path().join(format!("together-{together}"));
            let plan = EvalPlan {
                database: None,
                instances_together: Some(together),
                max_new_tokens: Some(6),
                ..tiny_eval(Method::Vanilla, 3, &out)
            };
            run(&plan, &mut Quiet).unwrap();
            read_results(&out).unwrap()
        };
        let (alone, together) = (answered(1), answered(3));
        assert_eq!(alone.len(), 3);
        for (a, t) in alone.iter().zip(&together) {
            assert_eq!(a.id, t.id);
            let answers = |r: &InstanceResult| {
                r.inputs
                    .iter()
                    .map(|i| (i.response.clone(), i.generated_tokens, i.stop.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(answers(a), answers(t), "instance {}", a.id);
            let (ta, tt) = (a.timings.as_ref().unwrap(), t.timings.as_ref().unwrap());
            assert_eq!(ta.prompt_tokens, tt.prompt_tokens);
            assert_eq!(ta.shared_prompt_tokens, tt.shared_prompt_tokens);
            assert_eq!(ta.decode_tokens, tt.decode_tokens);
            assert!(tt.prefill_s > 0.0 && tt.decode_s >= 0.0 && t.seconds > 0.0);
        }
        let plan = EvalPlan {
            database: None,
            instances_together: Some(0),
            ..tiny_eval(Method::Vanilla, 3, &dir.path().join("zero"))
        };
        let err = run(&plan, &mut Quiet).unwrap_err().to_string();
        assert!(
            err.contains("instances_together must be 1..=64, got 0"),
            "{err}"
        );
    }

    /// The three editing instances have no generalisation test (one input each): together
    /// they are answered as one at a time, each with its own one input.
    #[test]
    fn instances_with_one_input_are_answered_together_as_alone() {
        let dir = tempfile::tempdir().unwrap();
        let answered = |together: usize| {
            let out = dir.path().join(format!("editing-{together}"));
            let plan = EvalPlan {
                database: None,
                split: "editing".into(),
                instances_together: Some(together),
                ..tiny_eval(Method::Vanilla, 3, &out)
            };
            run(&plan, &mut Quiet).unwrap();
            read_results(&out).unwrap()
        };
        let (together, alone) = (answered(3), answered(1));
        assert_eq!(together.len(), 3);
        for (t, a) in together.iter().zip(&alone) {
            assert_eq!(t.inputs.len(), 1, "instance {}", t.id);
            assert_eq!(t.inputs[0].input, a.inputs[0].input);
            assert_eq!(t.inputs[0].response, a.inputs[0].response);
            let (tt, ta) = (t.timings.as_ref().unwrap(), a.timings.as_ref().unwrap());
            assert_eq!(tt.prompt_tokens, ta.prompt_tokens);
        }
    }

    /// An input too long for the model fails its group's generation: the group's other
    /// instances are answered one by one (as they are alone), and only that instance is an error.
    #[test]
    fn an_instance_that_fails_in_a_group_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut records: Vec<serde_json::Value> = serde_json::from_str(include_str!(
            "../../../data/safeedit/SafeEdit_test_sample.json"
        ))
        .unwrap();
        records.truncate(3);
        let long = records[1]["adversarial prompt"]
            .as_str()
            .unwrap()
            .repeat(20);
        records[1]["adversarial prompt"] = json!(long);
        let data = dir.path().join("three.json");
        std::fs::write(&data, serde_json::to_string(&records).unwrap()).unwrap();
        let answered = |together: usize| {
            let out = dir.path().join(format!("together-{together}"));
            let plan = EvalPlan {
                database: None,
                data: Some(data.display().to_string()),
                instances_together: Some(together),
                ..tiny_eval(Method::Vanilla, 3, &out)
            };
            let summary = run(&plan, &mut Quiet).unwrap();
            assert_eq!(summary.failures, 1);
            let errors = std::fs::read_to_string(out.join("errors.jsonl")).unwrap();
            let id = records[1]["id"].as_u64().unwrap();
            assert!(errors.contains(&format!("\"id\":{id}")), "{errors}");
            assert!(errors.contains("more than the model's context"), "{errors}");
            read_results(&out)
                .unwrap()
                .into_iter()
                .map(|r| {
                    (
                        r.id,
                        r.inputs.into_iter().map(|i| i.response).collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let (together, alone) = (answered(3), answered(1));
        assert_eq!(together.len(), 2);
        assert_eq!(together, alone);
    }

    /// Record 2 of the sample uses jailbreak templates record 1 or 0 used: vanilla evaluation
    /// takes them from the prompts it kept, DINM (another model per instance) does not, and no
    /// answer changes.
    #[test]
    fn prompts_kept_across_instances_save_work_and_change_no_answer() {
        let dir = tempfile::tempdir().unwrap();
        let shared = |method: Method, mib: Option<usize>| {
            let out = dir.path().join(format!("{method}-{mib:?}"));
            // One instance per generation: prompts of one generation share their beginnings
            // whatever is kept across them.
            let plan = EvalPlan {
                database: None,
                prefix_cache_mib: mib,
                instances_together: Some(1),
                ..tiny_eval(method, 3, &out)
            };
            run(&plan, &mut Quiet).unwrap();
            let results = read_results(&out).unwrap();
            let answers: Vec<Vec<String>> = results
                .iter()
                .map(|r| r.inputs.iter().map(|i| i.response.clone()).collect())
                .collect();
            let shared: Vec<usize> = results
                .iter()
                .map(|r| r.timings.as_ref().unwrap().shared_prompt_tokens)
                .collect();
            (answers, shared)
        };
        let (kept, with) = shared(Method::Vanilla, None);
        let (alone, without) = shared(Method::Vanilla, Some(0));
        assert_eq!(kept, alone);
        assert_eq!(
            with[0], without[0],
            "the first instance has nothing kept before it"
        );
        assert!(with[2] > without[2] + 500, "{with:?} vs {without:?}");
        let (kept, with) = shared(Method::Dinm, None);
        let (alone, without) = shared(Method::Dinm, Some(0));
        assert_eq!(kept, alone);
        assert_eq!(
            with, without,
            "an edited model keeps nothing across instances"
        );
    }

    #[test]
    fn dinm_eval_writes_results_resumes_and_refuses_a_different_run() {
        let dir = tempfile::tempdir().unwrap();
        run(&tiny_eval(Method::Dinm, 2, dir.path()), &mut Quiet).unwrap();
        let first = read_results(dir.path()).unwrap();
        assert_eq!(first.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1]);
        for r in &first {
            assert_eq!(r.inputs.len(), 5);
            let edit = r.edit.as_ref().expect("DINM records its edit");
            assert_eq!(edit.losses.len(), 2);
            assert!(edit.delta_norm > 0.0);
            let distances = edit.distances.as_ref().unwrap();
            assert_eq!(
                distances.len(),
                2,
                "one distance per layer of the tiny model"
            );
            assert!(edit.layer < 2);
            assert!(r.inputs.iter().all(|i| {
                i.input
                    .ends_with(safeedit_engine::dinm::SUFFIX_SYSTEM_PROMPT)
            }));
        }

        // An interrupted run leaves a cut-off line; the resumed run skips done ids only.
        let jsonl = dir.path().join("instances.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&jsonl)
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"id\": 2, \"categ").unwrap();
        drop(f);
        run(&tiny_eval(Method::Dinm, 3, dir.path()), &mut Quiet).unwrap();
        let resumed = read_results(dir.path()).unwrap();
        assert_eq!(resumed.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(
            resumed[0].seconds, first[0].seconds,
            "finished instances are kept"
        );

        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["instances"], 3);
        let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
        assert!(csv.starts_with("method,group,value,metric,score,n\n"));
        assert!(csv.contains("dinm,all,all,DS,"));

        // Stored in the runs database under the folder's slug; the resumed run updated it.
        let slug = folder_slug(dir.path());
        let (stored, instances) = with_store(dir.path(), async |store| {
            (
                store.eval(&slug).await.unwrap().expect("stored evaluation"),
                store.eval_instances(&slug).await.unwrap(),
            )
        });
        assert_eq!(stored.method, "dinm");
        assert_eq!(stored.instances, 3);
        assert_eq!(
            instances, resumed,
            "the database holds exactly the JSONL's instances"
        );
        assert_eq!(
            serde_json::to_value(&stored.metrics).unwrap(),
            summary["metrics"],
            "the stored metrics are the summary's"
        );

        // The run names the code and weights it came from, as the web app's runs do.
        let info: serde_json::Value = run_dir::read_json(&dir.path().join("run.json")).unwrap();
        assert_eq!(info["git_commit"], provenance::GIT_COMMIT);
        assert_eq!(info["model_checksum"], "none", "the tiny model has no file");
        assert_eq!(stored.run["git_commit"], provenance::GIT_COMMIT);

        let err = run(&tiny_eval(Method::Vanilla, 3, dir.path()), &mut Quiet).unwrap_err();
        assert!(err.to_string().contains("different `method`"), "{err}");
    }

    #[test]
    fn a_bf16_run_says_so_and_is_not_resumed_in_f32() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = tiny_eval(Method::Dinm, 1, dir.path());
        plan.model.dtype = WeightDtype::Bf16;
        run(&plan, &mut Quiet).unwrap();
        let results = read_results(dir.path()).unwrap();
        assert_eq!(results.len(), 1);
        assert!(results[0].edit.as_ref().unwrap().delta_norm > 0.0);
        let info: serde_json::Value = run_dir::read_json(&dir.path().join("run.json")).unwrap();
        assert_eq!(info["backend"], format!("{}, bf16 weights", backend::NAME));
        assert_eq!(info["weights"], "bf16");
        let err = run(&tiny_eval(Method::Dinm, 2, dir.path()), &mut Quiet).unwrap_err();
        assert!(err.to_string().contains("different `weights`"), "{err}");
    }

    #[test]
    fn settings_out_of_range_and_a_folder_in_use_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("eval");
        for (change, needle) in [
            (
                (|p: &mut EvalPlan| p.max_new_tokens = Some(0)) as fn(&mut EvalPlan),
                "max_new_tokens must be 1..=2048, got 0",
            ),
            (
                |p| p.model.dinm.steps = Some(0),
                "steps must be 1..=100, got 0",
            ),
            (
                |p| p.model.dinm.lr = Some(-1.0),
                "lr must be positive, got -1",
            ),
            (
                |p| p.model.baselines.ftl_steps = Some(0),
                "ftl_steps must be 1..=100",
            ),
        ] {
            let mut plan = tiny_eval(Method::Dinm, 1, &out);
            change(&mut plan);
            let err = run(&plan, &mut Quiet).unwrap_err();
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
            assert!(!out.exists(), "{needle}: nothing is written");
        }
        // Another writer holds the folder (a second `safeedit eval --out` on it): refused, and
        // its files are left alone.
        let held = run_dir::lock(&out).unwrap();
        let err = run(&tiny_eval(Method::Vanilla, 1, &out), &mut Quiet).unwrap_err();
        assert!(
            err.to_string().contains("is in use by another run"),
            "{err}"
        );
        assert!(!out.join("instances.jsonl").exists());
        drop(held);
        run(&tiny_eval(Method::Vanilla, 1, &out), &mut Quiet).unwrap();
        assert_eq!(read_results(&out).unwrap().len(), 1);
    }

    #[test]
    fn sft_evaluates_a_trained_model_on_the_held_out_fold_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let sft = dir.path().join("sft");
        crate::train::run(&tiny_train(Objective::Sft, 2, &sft), &mut Quiet).unwrap();
        let out = dir.path().join("eval");
        let mut plan = tiny_eval(Method::Sft, 2, &out);
        plan.model.model = Some(sft.clone());
        plan.fold = Fold::HeldOut;
        run(&plan, &mut Quiet).unwrap();
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
        assert_eq!(info["trained"]["method"], "sft");
        assert_eq!(info["data"], "test-sample (fold held-out)");
        let results = read_results(&out).unwrap();
        let records = Fold::HeldOut.select(data::load("test-sample").unwrap());
        assert_eq!(
            results.iter().map(|r| r.id).collect::<Vec<_>>(),
            records.iter().take(2).map(|r| r.id).collect::<Vec<_>>()
        );
        assert!(results.iter().all(|r| r.edit.is_none()));
        let err = run(
            &tiny_eval(Method::Sft, 1, &dir.path().join("tiny")),
            &mut Quiet,
        )
        .unwrap_err();
        assert!(err.to_string().contains("safeedit train sft"), "{err}");
    }

    #[test]
    fn shards_merge_into_the_run_one_process_writes_and_bad_sets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        // DINM with D1 (--reuse-first-layer): the second shard never edits on the first
        // instance, yet must use its layer as one process does.
        let plan = |out: &Path, shard: Option<Shard>| {
            let mut plan = tiny_eval(Method::Dinm, 3, out);
            plan.model.dinm.reuse_first_layer = true;
            plan.database = None;
            plan.shard = shard;
            plan
        };
        let one = dir.path().join("one");
        run(&plan(&one, None), &mut Quiet).unwrap();
        let sharded = dir.path().join("sharded");
        for k in 1..=2 {
            let summary =
                run(&plan(&sharded, Some(Shard::new(k, 2).unwrap())), &mut Quiet).unwrap();
            assert_eq!(
                summary.published,
                Published::Skipped,
                "a shard is not stored alone"
            );
            assert_eq!(summary.out, sharded.join(format!("shard-{k}-of-2")));
        }
        let ids = |out: &Path| {
            read_results(out)
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&sharded.join("shard-1-of-2")), [0, 2]);
        assert_eq!(ids(&sharded.join("shard-2-of-2")), [1]);

        let merged = dir.path().join("merged");
        let merge_plan = |shards: Vec<PathBuf>| MergePlan {
            shards,
            out: merged.clone(),
            database: database_in(dir.path()),
        };
        let summary = merge(&merge_plan(vec![sharded.clone()]), &mut Quiet).unwrap();
        let shard::Merged::Eval(summary) = summary else {
            panic!("an evaluation")
        };
        assert_eq!(summary.instances, 3);
        let text = |path: PathBuf| std::fs::read_to_string(path).unwrap();
        assert_eq!(
            text(merged.join("summary.json")),
            text(one.join("summary.json")),
            "the merged summary is the one-process run's"
        );
        assert_eq!(
            text(merged.join("summary.csv")),
            text(one.join("summary.csv"))
        );
        let strip = |out: &Path| {
            read_results(out)
                .unwrap()
                .into_iter()
                .map(|r| InstanceResult {
                    seconds: 0.0,
                    timings: None,
                    ..r
                })
                .collect::<Vec<_>>()
        };
        let merged_results = strip(&merged);
        assert_eq!(
            merged_results,
            strip(&one),
            "every instance as one process has it"
        );
        let layers: Vec<usize> = merged_results
            .iter()
            .map(|r| r.edit.as_ref().unwrap().layer)
            .collect();
        assert!(
            layers.iter().all(|&l| l == layers[0]),
            "D1: one layer, {layers:?}"
        );
        let slug = folder_slug(&merged);
        let stored = with_store(dir.path(), async |store| store.eval(&slug).await.unwrap());
        assert_eq!(stored.expect("the merged run is stored").instances, 3);

        // What is refused, each naming the problem.
        let refused = |shards: Vec<PathBuf>| {
            merge(&merge_plan(shards), &mut Quiet)
                .unwrap_err()
                .to_string()
        };
        let err = refused(vec![sharded.join("shard-1-of-2")]);
        assert!(err.contains("shard(s) 2/2 missing"), "{err}");
        let err = refused(vec![
            sharded.join("shard-1-of-2"),
            sharded.join("shard-1-of-2"),
        ]);
        assert!(err.contains("shard 1/2 is given twice"), "{err}");
        let err = refused(vec![one.clone()]);
        assert!(err.contains("not a shard's run"), "{err}");
        let other = dir.path().join("other");
        let mut longer = plan(&other, Some(Shard::new(2, 2).unwrap()));
        longer.max_new_tokens = Some(4);
        run(&longer, &mut Quiet).unwrap();
        let err = refused(vec![
            sharded.join("shard-1-of-2"),
            other.join("shard-2-of-2"),
        ]);
        assert!(err.contains("`generation` differs"), "{err}");
        // A shard that has not finished (its instance missing).
        std::fs::write(sharded.join("shard-2-of-2/instances.jsonl"), "").unwrap();
        let err = refused(vec![sharded.clone()]);
        assert!(err.contains("instance 1 has no result"), "{err}");
        // Resuming the shard finishes it, and the merge goes through again.
        run(&plan(&sharded, Some(Shard::new(2, 2).unwrap())), &mut Quiet).unwrap();
        merge(&merge_plan(vec![sharded.clone()]), &mut Quiet).unwrap();
        assert_eq!(strip(&merged), merged_results);
    }

    /// Cancels once `after` instances are done.
    struct CancelAfter {
        events: crate::progress::tests::Recorder,
        after: usize,
    }

    impl Progress for CancelAfter {
        fn event(&mut self, event: Event) {
            self.events.event(event);
        }
        fn cancelled(&self) -> bool {
            let done = self
                .events
                .0
                .iter()
                .filter(|e| **e == Event::Advance(1))
                .count();
            done >= self.after
        }
    }

    #[test]
    fn progress_reports_the_edit_and_a_cancelled_run_stops_between_instances() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = tiny_eval(Method::Dinm, 3, dir.path());
        plan.database = None;
        let mut progress = CancelAfter {
            events: Default::default(),
            after: 1,
        };
        let err = run(&plan, &mut progress).unwrap_err();
        assert!(matches!(err, PipelineError::Cancelled), "{err}");
        assert_eq!(
            read_results(dir.path()).unwrap().len(),
            1,
            "one instance, kept"
        );
        let events = &progress.events.0;
        assert!(events.contains(&Event::Phase {
            label: "dinm".into(),
            unit: "instances",
            total: 3
        }));
        let steps = events
            .iter()
            .filter(|e| matches!(e, Event::Step { .. }))
            .count();
        assert_eq!(steps, 2, "the first instance's two DINM steps");
        assert!(events.iter().any(|e| matches!(e, Event::Located { .. })));
        assert!(events.contains(&Event::Generating { responses: 5 }));
        // Resuming without cancelling finishes the other two.
        let summary = run(&plan, &mut Quiet).unwrap();
        assert_eq!(summary.instances, 3);
        assert_eq!(summary.published, Published::Skipped);
        summary.check().unwrap();
    }
}
