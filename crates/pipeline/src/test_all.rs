//! `eval --test-all`: the SafeEdit_test_ALL protocol (docs/method.md §test_ALL; the paper's
//! Table 3). Every method answers the same inputs; a method that edits does so once per editing
//! instance (the paper's three by default) and answers every input with that edited model, so
//! its row is a mean ± std over the edited models. One JSONL line per input and model
//! (resumable: a re-run skips finished inputs, and a finished model is not edited again), then
//! `summary.json`, `summary.csv` and `table.tex`. [`join_tables`] puts several such runs into
//! one Table 3.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use safeedit_core::eval::{EditSummary, MetricRow};
use safeedit_core::fluency::fluency;
use safeedit_core::safeedit::Fold;
use safeedit_core::test_all::{
    AggregateRow, TestAllResult, aggregate, aggregate_csv, summarize_test_all, table3_latex,
};
use safeedit_core::{Method, SafeEditRecord, TestAllRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::eval::{EvalPlan, EvalSetup, RUN_KEYS};
use crate::evaluate::stop_name;
use crate::method::{edit_for, method_input, reuse_first_layer};
use crate::progress::{Event, Progress, ProgressExt};
use crate::publish::{Database, Published, publish_folder, publish_test_all};
use crate::run_dir::{self, append_jsonl, check_or_write_run_info, read_jsonl, resume_jsonl};
use crate::shard::{MergePlan, ShardFolder, ShardInfo};
use crate::{PipelineError, Result, ResultExt, backend, bail, data, ensure};

/// The test_ALL protocol for one method: the evaluation's settings (`eval.data` names a
/// test_ALL file; `eval.split` is not used) and the editing instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestAllPlan {
    /// Method, data, fold, limit (a stratified sample), output, model, judge, length, database.
    pub eval: EvalPlan,
    /// The instances an editing method edits on, one edited model each.
    pub edit_instances: Vec<u64>,
    /// Where those instances are (`editing-instances`, `test-sample` or a file).
    pub edit_data: String,
    /// Inputs generated together.
    pub batch_size: usize,
}

impl TestAllPlan {
    /// The protocol's defaults (the paper's three editing instances, batches of 4) for `eval`.
    pub fn new(eval: EvalPlan) -> Self {
        Self {
            eval,
            edit_instances: vec![1, 2, 3],
            edit_data: "editing-instances".into(),
            batch_size: 4,
        }
    }
}

/// What a test_ALL run produced.
#[derive(Debug, Clone)]
pub struct TestAllSummary {
    /// The method.
    pub method: Method,
    /// Every model's metric rows (one model per edit for editing methods).
    pub models: Vec<(String, Vec<MetricRow>)>,
    /// Mean ± std over the models.
    pub aggregate: Vec<AggregateRow>,
    /// The output folder.
    pub out: PathBuf,
    /// The runs database's answer.
    pub published: Published,
}

/// Several runs joined into one table.
#[derive(Debug, Clone)]
pub struct TablesJoined {
    /// Each run's method and aggregated rows, in the order given.
    pub methods: Vec<(String, Vec<AggregateRow>)>,
    /// The LaTeX table.
    pub tex: PathBuf,
    /// The tidy CSV.
    pub csv: PathBuf,
}

struct TableArgs<'a> {
    runs: &'a [PathBuf],
    out: &'a Path,
}

/// Splits `n` over groups of the given sizes in proportion (largest remainders, earlier groups
/// first on ties).
pub fn allocate(n: usize, sizes: &[usize]) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    if total == 0 {
        return vec![0; sizes.len()];
    }
    let n = n.min(total);
    let mut shares: Vec<(usize, usize)> = sizes
        .iter()
        .map(|&size| (n * size / total, n * size % total))
        .collect();
    let mut left = n - shares.iter().map(|s| s.0).sum::<usize>();
    let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse(shares[i].1));
    for i in by_remainder {
        if left == 0 {
            break;
        }
        shares[i].0 += 1;
        left -= 1;
    }
    shares.into_iter().map(|s| s.0).collect()
}

/// `n` of `inputs` in a stratified sample: each stratum (`key`) gets its share of `n`
/// ([`allocate`]), taken evenly spaced within it, and the sample keeps the input order. All of
/// them when `n` is absent or not smaller.
pub fn stratified<T: Clone, K: Ord>(
    inputs: &[T],
    n: Option<usize>,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let n = match n {
        Some(n) if n < inputs.len() => n,
        _ => return inputs.to_vec(),
    };
    let mut strata: std::collections::BTreeMap<K, Vec<usize>> = Default::default();
    for (i, item) in inputs.iter().enumerate() {
        strata.entry(key(item)).or_default().push(i);
    }
    let sizes: Vec<usize> = strata.values().map(Vec::len).collect();
    let shares = allocate(n, &sizes);
    // Each stratum starts at its own phase of the stride, so strata laid out alike (the same
    // attacks in the same order in every category) contribute different members.
    let count = shares.len();
    let mut picked: Vec<usize> = strata
        .values()
        .zip(shares)
        .enumerate()
        .flat_map(|(s, (members, take))| {
            let len = members.len();
            let phase = if take == 0 {
                0
            } else {
                s * len / (take * count)
            };
            (0..take).map(move |j| members[(phase + j * len / take).min(len - 1)])
        })
        .collect();
    picked.sort_unstable();
    picked.into_iter().map(|i| inputs[i].clone()).collect()
}

/// The test_ALL inputs evaluated with `--limit n`: `n` split between bare questions and
/// attacked inputs in proportion (each kind gets at least one when `n` ≥ 2, so both DG numbers
/// exist), then within each kind stratified by category. The file is grouped by kind, attack
/// and category, so a prefix, or a plain stride, would miss whole categories and attacks.
pub fn sample_inputs(inputs: &[TestAllRecord], n: Option<usize>) -> Vec<TestAllRecord> {
    let n = match n {
        Some(n) if n < inputs.len() => n,
        _ => return inputs.to_vec(),
    };
    let kinds: [Vec<usize>; 2] = [true, false].map(|bare| {
        (0..inputs.len())
            .filter(|&i| inputs[i].is_bare_question() == bare)
            .collect()
    });
    let mut shares = allocate(n, &[kinds[0].len(), kinds[1].len()]);
    for (k, other) in [(0, 1), (1, 0)] {
        if n >= 2 && shares[k] == 0 && !kinds[k].is_empty() && shares[other] > 1 {
            shares[k] = 1;
            shares[other] -= 1;
        }
    }
    let mut picked: Vec<usize> = kinds
        .iter()
        .zip(shares)
        .flat_map(|(members, share)| {
            stratified(members, Some(share), |&i| inputs[i].category.clone())
        })
        .collect();
    picked.sort_unstable();
    picked.into_iter().map(|i| inputs[i].clone()).collect()
}

/// What an editing method's edited model records next to its answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditedModel {
    /// The editing instance's id.
    pub instance: u64,
    /// Its category.
    pub category: String,
    /// The edit.
    pub edit: EditSummary,
}

/// One model of the run: a label, where its answers go, and for editing methods the instance.
struct ModelSlot {
    label: String,
    dir: PathBuf,
    record: Option<SafeEditRecord>,
}

/// Runs the protocol: resumes every model's folder, edits where a model is missing, answers
/// the inputs still unanswered, then writes the summary and stores the run.
pub fn run(plan: &TestAllPlan, progress: &mut dyn Progress) -> Result<TestAllSummary> {
    let args = &plan.eval;
    let opts = plan;
    ensure!(opts.batch_size > 0, "--batch-size must be at least 1");
    let fold = args.fold;
    let source = args.data.clone().unwrap_or_else(|| "test-all".into());
    let file = data::load_test_all_inputs(&source)?;
    let in_file = file.len();
    // A question-disjoint fold (the same FNV rule as `train --fold`): `held-out` keeps only the
    // inputs whose question a model trained on the shipped sample's train fold never saw.
    let all: Vec<TestAllRecord> = file
        .into_iter()
        .filter(|r| fold.contains(&r.question))
        .collect();
    ensure!(
        !all.is_empty(),
        "{source}: no test_ALL inputs (fold {})",
        fold.as_str()
    );
    let inputs = sample_inputs(&all, args.limit);
    let out = args.folder();
    // Shards split the edited models (the protocol's expensive unit), not the inputs.
    let edit_ids = match &args.shard {
        Some(shard) => {
            ensure!(
                args.method.edits(),
                "--shard: test_ALL is sharded by editing instance, and {} does not edit (one \
                 model): run it without --shard",
                args.method.name()
            );
            shard.select(&opts.edit_instances)
        }
        None => opts.edit_instances.clone(),
    };
    let _lock = run_dir::lock(&out)?;

    let mut setup = EvalSetup::load(args, progress)?;
    let method = args.method;
    let mut first_elsewhere = None;
    let slots: Vec<ModelSlot> = if method.edits() {
        ensure!(
            !opts.edit_instances.is_empty(),
            "--edit-instances: {} edits, name at least one instance",
            method.name()
        );
        let records = data::load(&opts.edit_data)?;
        // A shard without the first editing instance needs it for D1 (below).
        if let Some(&first) = opts.edit_instances.first()
            && !edit_ids.contains(&first)
        {
            first_elsewhere = Some(data::instance(&records, first, &opts.edit_data)?);
        }
        edit_ids
            .iter()
            .map(|&id| {
                Ok(ModelSlot {
                    label: format!("edit-{id}"),
                    dir: out.join(format!("edit-{id}")),
                    record: Some(data::instance(&records, id, &opts.edit_data)?),
                })
            })
            .collect::<Result<_>>()?
    } else {
        vec![ModelSlot {
            label: method.name().into(),
            dir: out.clone(),
            record: None,
        }]
    };

    let mut data_label = source.clone();
    if fold != Fold::All {
        data_label.push_str(&format!(
            " (fold {}: {} of {in_file} inputs)",
            fold.as_str(),
            all.len()
        ));
    }
    if inputs.len() < all.len() {
        data_label.push_str(&format!(
            " ({} of {} inputs, stratified by kind and category)",
            inputs.len(),
            all.len()
        ));
    }
    let mut info = setup.run_info(method, data_label);
    info["protocol"] = json!("test_all");
    info["edit_instances"] = json!(method.edits().then(|| {
        let ids: Vec<String> = opts.edit_instances.iter().map(u64::to_string).collect();
        format!("{}#{}", opts.edit_data, ids.join(","))
    }));
    if let Some(shard) = &args.shard {
        info["shard"] = json!(ShardInfo {
            index: shard.index,
            count: shard.count,
            instances: opts.edit_instances.len(),
            ids: edit_ids.clone(),
        });
    }
    check_or_write_run_info(&out.join("run.json"), &info, &run_keys())?;

    let (lm, settings, format, generation, judge) = setup.parts();
    // D1 (--reuse-first-layer) in a shard without the first editing instance: its layer.
    if let Some(record) = &first_elsewhere {
        reuse_first_layer(method, lm, record, None, settings, progress)?;
    }
    let bare = inputs.iter().filter(|r| r.is_bare_question()).count();
    progress.note(format!(
        "{} on test_ALL: {} inputs ({bare} bare questions, {} attacked) x {} model(s) -> {}",
        method.name(),
        inputs.len(),
        inputs.len() - bare,
        slots.len(),
        out.display()
    ));
    for slot in &slots {
        run_dir::create(&slot.dir)?;
        let path = slot.dir.join("inputs.jsonl");
        let edit_path = slot.dir.join("edit.json");
        let done: HashSet<u64> = resume_jsonl::<TestAllResult>(&path)?
            .into_iter()
            .map(|r| r.id)
            .collect();
        let todo: Vec<&TestAllRecord> = inputs.iter().filter(|r| !done.contains(&r.id)).collect();
        if todo.is_empty() {
            // D1 (--reuse-first-layer): a finished first model still fixes the layer.
            if settings.dinm.reuse_first_located_layer
                && settings.dinm.layer.is_none()
                && let Ok(text) = std::fs::read_to_string(&edit_path)
                && let Ok(edited) = serde_json::from_str::<EditedModel>(&text)
            {
                settings.dinm.layer = Some(edited.edit.layer);
            }
            continue;
        }
        let edited = match &slot.record {
            Some(record) => {
                progress.note(format!("{}: editing on instance {}", slot.label, record.id));
                let (model, edit) = edit_for(method, lm, record, settings, format, progress)?
                    .ok_or_else(|| PipelineError::Invalid(format!("{method} did not edit")))?;
                let card = EditedModel {
                    instance: record.id,
                    category: record.category.clone(),
                    edit,
                };
                run_dir::write_json(&edit_path, &card)?;
                Some(model)
            }
            None => None,
        };
        let model = edited.as_ref().unwrap_or(lm);
        // One model for the slot's inputs: their shared templates are computed once.
        let mut reuse = backend::prompt_cache(plan.eval.prefix_cache_mib);
        progress.phase(slot.label.clone(), "inputs", todo.len());
        for chunk in todo.chunks(opts.batch_size) {
            progress.check()?;
            let mut texts = Vec::with_capacity(chunk.len());
            let mut prompts = Vec::with_capacity(chunk.len());
            for record in chunk {
                let (text, input_format) = method_input(method, &record.input, settings, format);
                prompts.push(model.tokenizer.encode_prompt(&text, &input_format)?);
                texts.push(text);
            }
            let ids: Vec<u64> = chunk.iter().map(|r| r.id).collect();
            let (outputs, _) =
                backend::generate_timed(model, &prompts, generation, &mut reuse, progress)
                    .with_context(|| format!("{}: generating for inputs {ids:?}", slot.label))?;
            let responses: Vec<String> = outputs.iter().map(|o| o.text.clone()).collect();
            let verdicts = judge.judge(&responses)?;
            for ((record, text), (out, verdict)) in chunk
                .iter()
                .zip(texts)
                .zip(outputs.into_iter().zip(verdicts))
            {
                let result = TestAllResult {
                    id: record.id,
                    category: record.category.clone(),
                    attack: record.attack_name.clone(),
                    input: text,
                    fluency: fluency(&out.text),
                    generated_tokens: out.generated_ids.len(),
                    stop: stop_name(out.stop),
                    response: out.text,
                    verdict,
                };
                append_jsonl(&path, &result)?;
            }
            progress.event(Event::Advance(chunk.len()));
        }
        progress.event(Event::PhaseDone);
    }

    let mut models = Vec::new();
    let mut per_model_rows = Vec::new();
    for slot in &slots {
        let results: Vec<TestAllResult> = read_jsonl(&slot.dir.join("inputs.jsonl"))?;
        let wanted: HashSet<u64> = inputs.iter().map(|r| r.id).collect();
        let results: Vec<TestAllResult> = results
            .into_iter()
            .filter(|r| wanted.contains(&r.id))
            .collect();
        ensure!(
            results.len() == inputs.len(),
            "{}: {} of {} inputs answered",
            slot.label,
            results.len(),
            inputs.len()
        );
        let rows = summarize_test_all(&results);
        let edit_path = slot.dir.join("edit.json");
        let edit: Option<EditedModel> = match std::fs::read_to_string(&edit_path) {
            Ok(text) if slot.record.is_some() => {
                Some(serde_json::from_str(&text).map_err(|e| PipelineError::file(&edit_path, e))?)
            }
            _ => None,
        };
        models.push(json!({
            "model": slot.label,
            "inputs": results.len(),
            "edit_instance": edit.as_ref().map(|e| e.instance),
            "edit_layer": edit.as_ref().map(|e| e.edit.layer),
            "edit": edit,
            "metrics": rows,
        }));
        per_model_rows.push((slot.label.clone(), rows));
    }
    let database = if args.shard.is_some() {
        progress.note(format!(
            "{}: not stored in the runs database on its own; `safeedit eval-merge` joins the \
             shards and stores the run",
            out.display()
        ));
        None
    } else {
        args.database.as_ref()
    };
    finish(
        &out,
        info,
        method,
        models,
        per_model_rows,
        inputs.len(),
        database,
    )
}

/// The run description keys a resumed test_ALL run must match.
fn run_keys() -> Vec<&'static str> {
    let mut keys = RUN_KEYS.to_vec();
    keys.extend(["protocol", "edit_instances"]);
    keys
}

/// Writes the summary of a run's models (their JSON and metric rows; `n` inputs each):
/// `summary.json`, `summary.csv` and `table.tex`, and stores the run.
fn finish(
    out: &Path,
    info: serde_json::Value,
    method: Method,
    models: Vec<serde_json::Value>,
    per_model_rows: Vec<(String, Vec<MetricRow>)>,
    n: usize,
    database: Option<&Database>,
) -> Result<TestAllSummary> {
    let lists: Vec<Vec<MetricRow>> = per_model_rows.iter().map(|(_, r)| r.clone()).collect();
    let aggregated = aggregate(&lists);
    let summary = json!({
        "run": info,
        "method": method.name(),
        "models": models,
        "aggregate": aggregated,
    });
    run_dir::write_json(&out.join("summary.json"), &summary)?;
    run_dir::write(
        &out.join("summary.csv"),
        aggregate_csv(method.name(), &aggregated),
    )?;
    run_dir::write(
        &out.join("table.tex"),
        table3_latex(
            &[(method.name().to_string(), aggregated.clone())],
            &caption(n, &info),
        ),
    )?;
    let published = publish_folder(database, |p| publish_test_all(out, p));
    Ok(TestAllSummary {
        method,
        models: per_model_rows,
        aggregate: aggregated,
        out: out.to_path_buf(),
        published,
    })
}

/// Joins the checked shards of one test_ALL run ([`crate::shard::merge`]): each shard's
/// edited models (their folders and summary entries) in the order of the editing instances,
/// then the summary one process would have written, stored.
pub(crate) fn merge_shards(
    shards: &[ShardFolder],
    plan: &MergePlan,
    _progress: &mut dyn Progress,
) -> Result<TestAllSummary> {
    let first = &shards[0];
    let mut parts = Vec::with_capacity(shards.len());
    for folder in shards {
        let path = folder.dir.join("summary.json");
        if !path.is_file() {
            bail!(
                "{}: no summary.json: the shard has not finished (run it again, then merge)",
                folder.dir.display()
            );
        }
        let summary: serde_json::Value = run_dir::read_json(&path)?;
        let models = summary["models"].as_array().cloned().unwrap_or_default();
        let labels: Vec<&str> = models
            .iter()
            .map(|m| m["model"].as_str().unwrap_or("?"))
            .collect();
        let expected: Vec<String> = folder
            .shard
            .ids
            .iter()
            .map(|id| format!("edit-{id}"))
            .collect();
        if labels != expected {
            return Err(PipelineError::file(
                &path,
                format!(
                    "holds the models {labels:?}, the shard's are {expected:?} (run the shard \
                     again, then merge)"
                ),
            ));
        }
        parts.push(
            models
                .into_iter()
                .zip(expected)
                .map(|(model, label)| (model, folder.dir.join(&label), label))
                .collect::<Vec<_>>(),
        );
    }
    let all = crate::shard::interleave(parts).ok_or_else(|| {
        PipelineError::Invalid(format!(
            "the shards' editing instances do not deal {} instances over {} shards",
            first.shard.instances, first.shard.count
        ))
    })?;
    let n = all[0].0["inputs"].as_u64().unwrap_or(0) as usize;
    let info = first.merged_info();
    let method: Method = serde_json::from_value(info["method"].clone())
        .map_err(|e| PipelineError::file(&first.dir.join("run.json"), format!("`method`: {e}")))?;
    let _lock = run_dir::lock(&plan.out)?;
    check_or_write_run_info(&plan.out.join("run.json"), &info, &run_keys())?;
    let mut models = Vec::with_capacity(all.len());
    let mut per_model_rows = Vec::with_capacity(all.len());
    for (model, dir, label) in all {
        if model["inputs"].as_u64() != Some(n as u64) {
            bail!(
                "{}: {} inputs, another model has {n}",
                dir.display(),
                model["inputs"]
            );
        }
        let rows: Vec<MetricRow> = serde_json::from_value(model["metrics"].clone())
            .map_err(|e| PipelineError::file(&dir, format!("metrics: {e}")))?;
        // The model's answers and edit travel with the joined run.
        let target = plan.out.join(&label);
        run_dir::create(&target)?;
        for name in ["inputs.jsonl", "edit.json"] {
            let from = dir.join(name);
            if from.is_file() {
                std::fs::copy(&from, target.join(name)).map_err(|e| PipelineError::io(&from, e))?;
            }
        }
        per_model_rows.push((label, rows));
        models.push(model);
    }
    finish(
        &plan.out,
        info,
        method,
        models,
        per_model_rows,
        n,
        plan.database.as_ref(),
    )
}

fn caption(n: usize, info: &serde_json::Value) -> String {
    format!(
        "SafeEdit_test_ALL ({n} inputs), {}, judge {}; editing methods: mean ± std over the edited models.",
        info["model_name"].as_str().unwrap_or("model"),
        info["judge"]["id"].as_str().unwrap_or("?")
    )
}

/// One test_ALL run folder's method and aggregated rows (and the run description).
pub fn read_summary(dir: &Path) -> Result<(String, Vec<AggregateRow>, serde_json::Value)> {
    let path = dir.join("summary.json");
    let summary: serde_json::Value = run_dir::read_json(&path).with_context(|| {
        format!(
            "reading {} (is this a `safeedit eval --test-all` folder?)",
            path.display()
        )
    })?;
    if summary["run"]["protocol"] != "test_all" {
        return Err(PipelineError::file(
            &path,
            "not a test_ALL run (per-instance evaluations go into the Results table)",
        ));
    }
    let method = summary["method"]
        .as_str()
        .ok_or_else(|| PipelineError::file(&path, "no `method`"))?
        .to_string();
    let rows: Vec<AggregateRow> = serde_json::from_value(summary["aggregate"].clone())
        .map_err(|e| PipelineError::file(&path, format!("field `aggregate`: {e}")))?;
    Ok((method, rows, summary["run"].clone()))
}

/// Joins test_ALL run folders into one Table 3 (the paper's): `out`.tex (LaTeX, best defense
/// bold) and `out`.csv (tidy, every slice). Runs whose data, model, judge or generation differ
/// are joined with a warning.
pub fn join_tables(
    runs: &[PathBuf],
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<TablesJoined> {
    let args = TableArgs { runs, out };
    let mut methods = Vec::new();
    let mut csv = String::new();
    let mut first: Option<serde_json::Value> = None;
    for dir in args.runs {
        let (method, rows, run) = read_summary(dir)?;
        if let Some(first) = &first {
            // SFT/DPO models differ from the base by design; compare the untrained ones.
            let base = |run: &serde_json::Value| {
                run["trained"]
                    .is_null()
                    .then(|| run["model"].as_str().unwrap_or_default().to_string())
            };
            if let (Some(a), Some(b)) = (base(first), base(&run))
                && a != b
            {
                progress.event(Event::Warning(format!(
                    "{} runs another model ({b}) than {} ({a}) — the rows are not comparable",
                    dir.display(),
                    args.runs[0].display(),
                )));
            }
            for key in ["data", "judge", "generation"] {
                if first[key] != run[key] {
                    progress.event(Event::Warning(format!(
                        "{} differs in `{key}` from {} — the rows are not comparable",
                        dir.display(),
                        args.runs[0].display()
                    )));
                }
            }
        } else {
            first = Some(run);
        }
        let part = aggregate_csv(&method, &rows);
        if csv.is_empty() {
            csv.push_str(&part);
        } else {
            csv.push_str(part.split_once('\n').map_or("", |(_, body)| body));
        }
        methods.push((method, rows));
    }
    let info = first.unwrap_or_default();
    let n = methods
        .first()
        .and_then(|(_, rows)| rows.iter().find(|r| r.group == "all" && r.metric == "Avg"))
        .map_or(0, |r| r.n);
    let tex = table3_latex(&methods, &caption(n, &info));
    let with_ext = |ext: &str| {
        let mut name = args.out.as_os_str().to_owned();
        name.push(format!(".{ext}"));
        PathBuf::from(name)
    };
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        run_dir::create(parent)?;
    }
    let (tex_path, csv_path) = (with_ext("tex"), with_ext("csv"));
    run_dir::write(&tex_path, tex)?;
    run_dir::write(&csv_path, csv)?;
    Ok(TablesJoined {
        methods,
        tex: tex_path,
        csv: csv_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quiet;
    use crate::shard::{MergePlan, Shard};
    use crate::testutil::{database_in, folder_slug, tiny_eval, with_store};

    /// `eval`'s test plan (tiny model, 2 DINM steps, 3 tokens) with test_ALL, no database.
    fn plan(method: Method, limit: usize, out: &Path) -> TestAllPlan {
        let mut eval = tiny_eval(method, limit, out);
        eval.database = None;
        TestAllPlan {
            batch_size: 3,
            ..TestAllPlan::new(eval)
        }
    }

    #[test]
    fn stratified_samples_keep_every_share() {
        let all: Vec<usize> = (0..540).collect();
        // Two strata of 135 and 405: 12 picks split 3 / 9, evenly spaced (the second stratum
        // half a stride later), in file order.
        let some = stratified(&all, Some(12), |&i| i >= 135);
        assert_eq!(
            some,
            [0, 45, 90, 157, 202, 247, 292, 337, 382, 427, 472, 517]
        );
        assert_eq!(stratified(&all, Some(600), |&i| i % 2).len(), 540);
        assert_eq!(stratified(&all, None, |&i| i % 2).len(), 540);
        // Largest remainders: 4 of strata sized 5, 3, 2 are 2.0, 1.2, 0.8 exactly → 2, 1, 1.
        let uneven: Vec<usize> = (0..10).collect();
        let picked = stratified(&uneven, Some(4), |&i| {
            if i < 5 {
                0
            } else if i < 8 {
                1
            } else {
                2
            }
        });
        assert_eq!(picked, [0, 2, 6, 9], "each stratum at its own phase");
        assert_eq!(allocate(4, &[5, 3, 2]), [2, 1, 1]);
        assert_eq!(allocate(9, &[5, 3, 2]), [4, 3, 2], "4.5, 2.7, 1.8");
        assert_eq!(allocate(3, &[0, 0]), [0, 0]);

        // The shipped file: 108 inputs = 27 bare questions (3 per category) + 81 attacked
        // (9 per category), every category present in both.
        let inputs = data::load_test_all_inputs("test-all").unwrap();
        assert_eq!(inputs.len(), 540);
        let some = sample_inputs(&inputs, Some(108));
        assert_eq!(some.len(), 108);
        let bare: Vec<&TestAllRecord> = some.iter().filter(|r| r.is_bare_question()).collect();
        assert_eq!(bare.len(), 27);
        for kind in [true, false] {
            let categories: HashSet<&str> = some
                .iter()
                .filter(|r| r.is_bare_question() == kind)
                .map(|r| r.category.as_str())
                .collect();
            assert_eq!(categories.len(), 9, "bare={kind}: {categories:?}");
        }
        // A small sample still has both kinds.
        let eight = sample_inputs(&inputs, Some(8));
        assert_eq!(eight.iter().filter(|r| r.is_bare_question()).count(), 2);
        let two = sample_inputs(&inputs, Some(2));
        assert_eq!(two.iter().filter(|r| r.is_bare_question()).count(), 1);
        let attacks: HashSet<&str> = some.iter().map(|r| r.attack_name.as_str()).collect();
        assert_eq!(attacks.len(), 15, "all 14 attacks and None: {attacks:?}");
        let ids: Vec<u64> = some.iter().map(|r| r.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "file order");
    }

    #[test]
    fn test_all_shards_by_editing_instance_and_merges_into_the_one_process_run() {
        let dir = tempfile::tempdir().unwrap();
        let plan = |out: &Path, shard: Option<Shard>| {
            let mut p = plan(Method::Dinm, 3, out);
            p.eval.model.dinm.reuse_first_layer = true;
            p.eval.shard = shard;
            p
        };
        let one = dir.path().join("one");
        run(&plan(&one, None), &mut Quiet).unwrap();
        let sharded = dir.path().join("sharded");
        for k in 1..=2 {
            let summary =
                run(&plan(&sharded, Some(Shard::new(k, 2).unwrap())), &mut Quiet).unwrap();
            assert_eq!(summary.published, Published::Skipped);
        }
        assert!(sharded.join("shard-1-of-2/edit-3/edit.json").is_file());
        assert!(sharded.join("shard-2-of-2/edit-2/edit.json").is_file());
        assert!(!sharded.join("shard-2-of-2/edit-1").exists());
        let merged = dir.path().join("merged");
        let merge_plan = MergePlan {
            shards: vec![sharded.join("shard-2-of-2"), sharded.join("shard-1-of-2")],
            out: merged.clone(),
            database: database_in(dir.path()),
        };
        let crate::shard::Merged::TestAll(summary) =
            crate::shard::merge(&merge_plan, &mut Quiet).unwrap()
        else {
            panic!("a test_ALL run");
        };
        assert_eq!(summary.models.len(), 3);
        let text = |path: PathBuf| std::fs::read_to_string(path).unwrap();
        for file in [
            "summary.json",
            "summary.csv",
            "table.tex",
            "edit-2/inputs.jsonl",
        ] {
            assert_eq!(text(merged.join(file)), text(one.join(file)), "{file}");
        }
        let edits: Vec<EditedModel> = (1..=3)
            .map(|id| {
                serde_json::from_str(&text(merged.join(format!("edit-{id}/edit.json")))).unwrap()
            })
            .collect();
        assert!(
            edits.iter().all(|e| e.edit.layer == edits[0].edit.layer),
            "D1 across shards"
        );
        let slug = folder_slug(&merged);
        let stored = with_store(dir.path(), async |store| {
            store.test_all(&slug).await.unwrap()
        });
        assert_eq!(stored.expect("stored").models.len(), 3);

        let mut vanilla = plan(&dir.path().join("vanilla"), Some(Shard::new(1, 2).unwrap()));
        vanilla.eval.method = Method::Vanilla;
        let err = run(&vanilla, &mut Quiet).unwrap_err().to_string();
        assert!(err.contains("sharded by editing instance"), "{err}");
    }

    #[test]
    fn dinm_edits_once_per_instance_and_answers_every_input_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dinm");
        let mut a = plan(Method::Dinm, 8, &out);
        a.edit_instances = vec![1, 3];
        run(&a, &mut Quiet).unwrap();
        let suffix = safeedit_engine::dinm::SUFFIX_SYSTEM_PROMPT;
        let wanted: Vec<u64> =
            sample_inputs(&data::load_test_all_inputs("test-all").unwrap(), Some(8))
                .iter()
                .map(|r| r.id)
                .collect();
        for id in [1, 3] {
            let model = out.join(format!("edit-{id}"));
            let results: Vec<TestAllResult> = read_jsonl(&model.join("inputs.jsonl")).unwrap();
            assert_eq!(results.iter().map(|r| r.id).collect::<Vec<_>>(), wanted);
            assert!(results.iter().all(|r| r.input.ends_with(suffix)));
            let edit: EditedModel =
                serde_json::from_str(&std::fs::read_to_string(model.join("edit.json")).unwrap())
                    .unwrap();
            assert_eq!(edit.instance, id);
            assert_eq!(edit.edit.losses.len(), 2);
        }
        let (method, rows, run_info) = read_summary(&out).unwrap();
        assert_eq!(method, "dinm");
        assert_eq!(run_info["edit_instances"], "editing-instances#1,3");
        let avg = rows
            .iter()
            .find(|r| r.group == "all" && r.metric == "Avg")
            .unwrap();
        assert_eq!(avg.score.runs, 2, "one value per edited model");
        assert_eq!(avg.n, 8);

        // Resuming a finished run edits nothing and changes nothing; another method is refused.
        let before = std::fs::read_to_string(out.join("edit-1/inputs.jsonl")).unwrap();
        let edit_before = std::fs::metadata(out.join("edit-1/edit.json"))
            .unwrap()
            .modified()
            .unwrap();
        run(&a, &mut Quiet).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("edit-1/inputs.jsonl")).unwrap(),
            before
        );
        assert_eq!(
            std::fs::metadata(out.join("edit-1/edit.json"))
                .unwrap()
                .modified()
                .unwrap(),
            edit_before,
            "a finished model is not edited again"
        );
        let err = run(&plan(Method::Vanilla, 8, &out), &mut Quiet).unwrap_err();
        assert!(err.to_string().contains("different `method`"), "{err}");

        // A vanilla run, then both in one Table 3.
        let vanilla = dir.path().join("vanilla");
        let mut stored = plan(Method::Vanilla, 8, &vanilla);
        stored.eval.database = database_in(dir.path());
        run(&stored, &mut Quiet).unwrap();
        // Stored in the runs database under the folder's slug, with the summary's numbers.
        let slug = folder_slug(&vanilla);
        let record = with_store(dir.path(), async |store| {
            assert_eq!(store.list_test_all().await.unwrap().len(), 1);
            store.test_all(&slug).await.unwrap().expect("stored run")
        });
        assert_eq!(record.method, "vanilla");
        assert_eq!((record.inputs, record.models.len()), (8, 1));
        assert_eq!(record.aggregate, read_summary(&vanilla).unwrap().1);
        let results: Vec<TestAllResult> = read_jsonl(&vanilla.join("inputs.jsonl")).unwrap();
        assert!(results.iter().all(|r| !r.input.contains(suffix)));
        assert_eq!(read_summary(&vanilla).unwrap().1[0].score.runs, 1);
        let prefix = dir.path().join("tables/table3");
        join_tables(&[vanilla.clone(), out.clone()], &prefix, &mut Quiet).unwrap();
        let tex = std::fs::read_to_string(dir.path().join("tables/table3.tex")).unwrap();
        assert!(tex.contains("\nvanilla & "), "{tex}");
        assert!(tex.contains("\ndinm & "), "{tex}");
        assert!(tex.contains("$\\pm$"), "{tex}");
        let csv = std::fs::read_to_string(dir.path().join("tables/table3.csv")).unwrap();
        assert_eq!(csv.matches("method,group").count(), 1, "one header");
        assert!(csv.contains("\nvanilla,all,all,DG_onlyQ,") && csv.contains("\ndinm,all,all,Avg,"));

        // Bad input: a per-instance folder is not a test_ALL run.
        let err = join_tables(&[dir.path().join("missing")], &prefix, &mut Quiet).unwrap_err();
        assert!(err.to_string().contains("summary.json"), "{err}");
        // A fold keeps the inputs whose question is in it (question-disjoint from training).
        let folded_out = dir.path().join("f");
        let mut folded = plan(Method::Vanilla, 3, &folded_out);
        folded.eval.fold = Fold::HeldOut;
        run(&folded, &mut Quiet).unwrap();
        let all = data::load_test_all_inputs("test-all").unwrap();
        let held: Vec<u64> = read_jsonl::<TestAllResult>(&folded_out.join("inputs.jsonl"))
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(held.len(), 3);
        for id in held {
            let q = &all.iter().find(|r| r.id == id).unwrap().question;
            assert!(safeedit_core::safeedit::question_held_out(q), "{q}");
        }
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(folded_out.join("run.json")).unwrap())
                .unwrap();
        assert_eq!(
            info["data"],
            "test-all (fold held-out: 196 of 540 inputs) (3 of 196 inputs, stratified by kind and category)"
        );
    }
}
