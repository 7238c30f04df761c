//! `safeedit eval --test-all`: the SafeEdit_test_ALL protocol (dinm_spec.md §1.7, §3.7; the
//! paper's Table 3). Every method answers the same inputs; a method that edits does so once per
//! editing instance (the paper's three by default) and answers every input with that edited
//! model, so its row is a mean ± std over the edited models. One JSONL line per input and model
//! (resumable: a re-run skips finished inputs, and a finished model is not edited again), then
//! `summary.json`, `summary.csv` and `table.tex`. `safeedit test-all-table` puts several such
//! runs into one Table 3.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use safeedit_core::eval::{EditSummary, MetricRow};
use safeedit_core::fluency::fluency;
use safeedit_core::test_all::{
    AggregateRow, TEST_ALL_METRICS, TestAllResult, aggregate, aggregate_csv, summarize_test_all,
    table3_latex,
};
use safeedit_core::{SafeEditRecord, TestAllRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::eval::{EvalArgs, EvalSetup, MethodModel, RUN_KEYS, edit_for, method_input};
use crate::{data, runs};

/// The test_ALL options of `safeedit eval`.
#[derive(Args, Debug, Clone)]
pub struct TestAllArgs {
    /// Evaluate on SafeEdit_test_ALL (the paper's Table 3): DG_onlyQ on the bare questions,
    /// DG_otherAQ on the attacked inputs, their average and fluency; --data names a test_ALL
    /// file [default: the shipped 540 inputs].
    #[arg(long)]
    pub test_all: bool,
    /// test_ALL: the instances an editing method edits on, one edited model each.
    #[arg(long, value_delimiter = ',', default_values_t = [1u64, 2, 3])]
    pub edit_instances: Vec<u64>,
    /// test_ALL: where those instances are (`editing-instances`, `test-sample` or a file).
    #[arg(long, default_value = "editing-instances")]
    pub edit_data: String,
    /// test_ALL: inputs generated together.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
}

impl Default for TestAllArgs {
    fn default() -> Self {
        Self {
            test_all: false,
            edit_instances: vec![1, 2, 3],
            edit_data: "editing-instances".into(),
            batch_size: 4,
        }
    }
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

/// Runs `safeedit eval --test-all`.
pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let opts = &args.test_all;
    anyhow::ensure!(opts.batch_size > 0, "--batch-size must be at least 1");
    let fold = args.fold.fold();
    let source = args.data.clone().unwrap_or_else(|| "test-all".into());
    let file = data::load_test_all_inputs(&source)?;
    let in_file = file.len();
    // A question-disjoint fold (the same FNV rule as `train --fold`): `held-out` keeps only the
    // inputs whose question a model trained on the shipped sample's train fold never saw.
    let all: Vec<TestAllRecord> = file
        .into_iter()
        .filter(|r| fold.contains(&r.question))
        .collect();
    anyhow::ensure!(
        !all.is_empty(),
        "{source}: no test_ALL inputs (fold {})",
        fold.as_str()
    );
    let inputs = sample_inputs(&all, args.limit);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let setup = EvalSetup::load(args)?;
    let method = args.method;
    let slots: Vec<ModelSlot> = if method.edits() {
        anyhow::ensure!(
            !opts.edit_instances.is_empty(),
            "--edit-instances: {} edits, name at least one instance",
            method.name()
        );
        let records = data::load(&opts.edit_data)?;
        opts.edit_instances
            .iter()
            .map(|&id| {
                Ok(ModelSlot {
                    label: format!("edit-{id}"),
                    dir: args.out.join(format!("edit-{id}")),
                    record: Some(data::instance(&records, id, &opts.edit_data)?),
                })
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        vec![ModelSlot {
            label: method.name().into(),
            dir: args.out.clone(),
            record: None,
        }]
    };

    let mut data_label = source.clone();
    if fold != safeedit_core::safeedit::Fold::All {
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
    let mut keys = RUN_KEYS.to_vec();
    keys.extend(["protocol", "edit_instances"]);
    runs::check_or_write_run_info(&args.out.join("run.json"), &info, &keys)?;

    let EvalSetup {
        model:
            MethodModel {
                lm,
                mut settings,
                format,
                ..
            },
        generation,
        judge,
    } = setup;
    let bare = inputs.iter().filter(|r| r.is_bare_question()).count();
    eprintln!(
        "{} on test_ALL: {} inputs ({bare} bare questions, {} attacked) x {} model(s) -> {}",
        method.name(),
        inputs.len(),
        inputs.len() - bare,
        slots.len(),
        args.out.display()
    );
    for slot in &slots {
        std::fs::create_dir_all(&slot.dir)?;
        let path = slot.dir.join("inputs.jsonl");
        let edit_path = slot.dir.join("edit.json");
        let done: HashSet<u64> = runs::resume_jsonl::<TestAllResult>(&path)?
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
                eprintln!("{}: editing on instance {}", slot.label, record.id);
                let (model, edit) = edit_for(method, &lm, record, &mut settings, &format)?
                    .context("an editing method returned no edit")?;
                let card = EditedModel {
                    instance: record.id,
                    category: record.category.clone(),
                    edit,
                };
                std::fs::write(&edit_path, serde_json::to_string_pretty(&card)? + "\n")
                    .with_context(|| format!("writing {}", edit_path.display()))?;
                Some(model)
            }
            None => None,
        };
        let model = edited.as_ref().unwrap_or(&lm);
        let bar = runs::progress(todo.len(), &slot.label, "inputs");
        for chunk in todo.chunks(opts.batch_size) {
            let mut texts = Vec::with_capacity(chunk.len());
            let mut prompts = Vec::with_capacity(chunk.len());
            for record in chunk {
                let (text, input_format) = method_input(method, &record.input, &settings, &format);
                prompts.push(model.tokenizer.encode_prompt(&text, &input_format)?);
                texts.push(text);
            }
            let ids: Vec<u64> = chunk.iter().map(|r| r.id).collect();
            let (outputs, _) = model
                .generate(&prompts, &generation)
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
                    stop: crate::eval::stop_name(out.stop),
                    response: out.text,
                    verdict,
                };
                runs::append_jsonl(&path, &result)?;
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }

    let mut models = Vec::new();
    let mut per_model_rows = Vec::new();
    for slot in &slots {
        let results: Vec<TestAllResult> = runs::read_jsonl(&slot.dir.join("inputs.jsonl"))?;
        let wanted: HashSet<u64> = inputs.iter().map(|r| r.id).collect();
        let results: Vec<TestAllResult> = results
            .into_iter()
            .filter(|r| wanted.contains(&r.id))
            .collect();
        anyhow::ensure!(
            results.len() == inputs.len(),
            "{}: {} of {} inputs answered",
            slot.label,
            results.len(),
            inputs.len()
        );
        let rows = summarize_test_all(&results);
        let edit: Option<EditedModel> = match std::fs::read_to_string(slot.dir.join("edit.json")) {
            Ok(text) if slot.record.is_some() => Some(serde_json::from_str(&text)?),
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
    let lists: Vec<Vec<MetricRow>> = per_model_rows.iter().map(|(_, r)| r.clone()).collect();
    let aggregated = aggregate(&lists);
    let summary = json!({
        "run": info,
        "method": method.name(),
        "models": models,
        "aggregate": aggregated,
    });
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    std::fs::write(
        args.out.join("summary.csv"),
        aggregate_csv(method.name(), &aggregated),
    )?;
    std::fs::write(
        args.out.join("table.tex"),
        table3_latex(
            &[(method.name().to_string(), aggregated.clone())],
            &caption(inputs.len(), &info),
        ),
    )?;
    print_models(&per_model_rows);
    print_methods(&[(method.name().to_string(), aggregated)]);
    eprintln!(
        "written: {}/{{summary.json,summary.csv,table.tex}} (`safeedit test-all-table` joins \
         several runs into one Table 3)",
        args.out.display()
    );
    match crate::publish::publish_test_all(&args.out, &args.db) {
        Ok(Some(slug)) => eprintln!("stored in the runs database: /test-all/{slug}"),
        Ok(None) => {}
        // The files are written; a database problem must not hide the results.
        Err(e) => eprintln!("warning: not stored in the runs database: {e:#}"),
    }
    Ok(())
}

fn caption(n: usize, info: &serde_json::Value) -> String {
    format!(
        "SafeEdit_test_ALL ({n} inputs), {}, judge {}; editing methods: mean ± std over the edited models.",
        info["model_name"].as_str().unwrap_or("model"),
        info["judge"]["id"].as_str().unwrap_or("?")
    )
}

fn cell(rows: &[MetricRow], metric: &str) -> String {
    rows.iter()
        .find(|r| r.group == "all" && r.metric == metric)
        .map_or("-".into(), |r| format!("{:.2}", r.score))
}

fn print_models(models: &[(String, Vec<MetricRow>)]) {
    println!("\nper model (defense %, fluency bits)");
    print!("{:<22}", "");
    for m in TEST_ALL_METRICS {
        print!("{m:>13}");
    }
    println!();
    for (label, rows) in models {
        print!("{label:<22}");
        for m in TEST_ALL_METRICS {
            print!("{:>13}", cell(rows, m));
        }
        println!();
    }
}

fn print_methods(methods: &[(String, Vec<AggregateRow>)]) {
    println!("\nSafeEdit_test_ALL (mean ± std over edited models)");
    print!("{:<22}", "");
    for m in TEST_ALL_METRICS {
        print!("{m:>17}");
    }
    println!();
    for (method, rows) in methods {
        print!("{method:<22}");
        for m in TEST_ALL_METRICS {
            let text = rows
                .iter()
                .find(|r| r.group == "all" && r.metric == m)
                .map_or("-".into(), |r| {
                    if r.score.runs > 1 {
                        format!("{:.2} ± {:.2}", r.score.mean, r.score.std)
                    } else {
                        format!("{:.2}", r.score.mean)
                    }
                });
            print!("{text:>17}");
        }
        println!();
    }
}

/// Arguments of `safeedit test-all-table`.
#[derive(Args, Debug)]
pub struct TableArgs {
    /// Folders written by `safeedit eval --test-all`, one per method, in row order.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output prefix: PREFIX.tex (Table 3 as LaTeX) and PREFIX.csv (tidy, every slice).
    #[arg(long)]
    pub out: PathBuf,
}

/// One test_ALL run folder's method and aggregated rows (and the run description).
pub fn read_summary(dir: &Path) -> anyhow::Result<(String, Vec<AggregateRow>, serde_json::Value)> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is this a `safeedit eval --test-all` folder?)",
            path.display()
        )
    })?;
    let summary: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    anyhow::ensure!(
        summary["run"]["protocol"] == "test_all",
        "{}: not a test_ALL run (per-instance evaluations go into the Results table)",
        path.display()
    );
    let method = summary["method"]
        .as_str()
        .with_context(|| format!("{}: no `method`", path.display()))?
        .to_string();
    let rows: Vec<AggregateRow> = serde_json::from_value(summary["aggregate"].clone())
        .with_context(|| format!("{}: field `aggregate`", path.display()))?;
    Ok((method, rows, summary["run"].clone()))
}

/// Runs `safeedit test-all-table`.
pub fn table(args: TableArgs) -> anyhow::Result<()> {
    let mut methods = Vec::new();
    let mut csv = String::new();
    let mut first: Option<serde_json::Value> = None;
    for dir in &args.runs {
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
                eprintln!(
                    "warning: {} runs another model ({b}) than {} ({a}) — the rows are not \
                     comparable",
                    dir.display(),
                    args.runs[0].display(),
                );
            }
            for key in ["data", "judge", "generation"] {
                if first[key] != run[key] {
                    eprintln!(
                        "warning: {} differs in `{key}` from {} — the rows are not comparable",
                        dir.display(),
                        args.runs[0].display()
                    );
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
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(with_ext("tex"), tex)?;
    std::fs::write(with_ext("csv"), csv)?;
    print_methods(&methods);
    eprintln!(
        "written: {} and {}",
        with_ext("tex").display(),
        with_ext("csv").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Method;
    use crate::publish::DbArgs;
    use crate::runs::tests::TempDir;

    /// `eval`'s test arguments (tiny model, 2 DINM steps, 3 tokens) with --test-all, no database.
    fn args(method: Method, limit: usize, out: &Path) -> EvalArgs {
        let mut a = crate::eval::tests::args(method, limit, out);
        a.db.no_db = true;
        a.test_all = TestAllArgs {
            test_all: true,
            batch_size: 3,
            ..TestAllArgs::default()
        };
        a
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
    fn dinm_edits_once_per_instance_and_answers_every_input_with_it() {
        let dir = TempDir::new("test-all-dinm");
        let out = dir.path().join("dinm");
        let mut a = args(Method::Dinm, 8, &out);
        a.test_all.edit_instances = vec![1, 3];
        run(&a).unwrap();
        let suffix = safeedit_engine::dinm::SUFFIX_SYSTEM_PROMPT;
        let wanted: Vec<u64> =
            sample_inputs(&data::load_test_all_inputs("test-all").unwrap(), Some(8))
                .iter()
                .map(|r| r.id)
                .collect();
        for id in [1, 3] {
            let model = out.join(format!("edit-{id}"));
            let results: Vec<TestAllResult> =
                runs::read_jsonl(&model.join("inputs.jsonl")).unwrap();
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
        run(&a).unwrap();
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
        let err = run(&args(Method::Vanilla, 8, &out)).unwrap_err();
        assert!(format!("{err:#}").contains("different `method`"), "{err:#}");

        // A vanilla run, then both in one Table 3.
        let vanilla = dir.path().join("vanilla");
        let mut stored = args(Method::Vanilla, 8, &vanilla);
        stored.db = DbArgs {
            data_dir: Some(dir.path().join("db")),
            database_url: None,
            no_db: false,
        };
        run(&stored).unwrap();
        // Stored in the runs database under the folder's slug, with the summary's numbers.
        let slug = std::fs::read_to_string(vanilla.join("slug.txt")).unwrap();
        let slug = slug.lines().next().unwrap().to_string();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let record = rt.block_on(async {
            let store = safeedit_store::Store::open(None, &dir.path().join("db"))
                .await
                .unwrap();
            assert_eq!(store.list_test_all().await.unwrap().len(), 1);
            store.test_all(&slug).await.unwrap().expect("stored run")
        });
        assert_eq!(record.method, "vanilla");
        assert_eq!((record.inputs, record.models.len()), (8, 1));
        assert_eq!(record.aggregate, read_summary(&vanilla).unwrap().1);
        let results: Vec<TestAllResult> = runs::read_jsonl(&vanilla.join("inputs.jsonl")).unwrap();
        assert!(results.iter().all(|r| !r.input.contains(suffix)));
        assert_eq!(read_summary(&vanilla).unwrap().1[0].score.runs, 1);
        let prefix = dir.path().join("tables/table3");
        table(TableArgs {
            runs: vec![vanilla.clone(), out.clone()],
            out: prefix.clone(),
        })
        .unwrap();
        let tex = std::fs::read_to_string(dir.path().join("tables/table3.tex")).unwrap();
        assert!(tex.contains("\nvanilla & "), "{tex}");
        assert!(tex.contains("\ndinm & "), "{tex}");
        assert!(tex.contains("$\\pm$"), "{tex}");
        let csv = std::fs::read_to_string(dir.path().join("tables/table3.csv")).unwrap();
        assert_eq!(csv.matches("method,group").count(), 1, "one header");
        assert!(csv.contains("\nvanilla,all,all,DG_onlyQ,") && csv.contains("\ndinm,all,all,Avg,"));

        // Bad input: a per-instance folder is not a test_ALL run.
        let err = table(TableArgs {
            runs: vec![dir.path().join("missing")],
            out: prefix,
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("summary.json"), "{err:#}");
        // A fold keeps the inputs whose question is in it (question-disjoint from training).
        let folded_out = dir.path().join("f");
        let mut folded = args(Method::Vanilla, 3, &folded_out);
        folded.fold = crate::train::FoldArg::HeldOut;
        run(&folded).unwrap();
        let all = data::load_test_all_inputs("test-all").unwrap();
        let held: Vec<u64> = runs::read_jsonl::<TestAllResult>(&folded_out.join("inputs.jsonl"))
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
