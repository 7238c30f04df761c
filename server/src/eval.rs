//! `safeedit eval`: a method over SafeEdit instances (dinm_spec.md §3): the five inputs per
//! instance, generation, the judge's verdicts, fluency; one JSONL line per instance (resumable:
//! a re-run skips finished ids), then the metric table as JSON and CSV, overall and per category
//! and attack.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use safeedit_core::eval::{EditSummary, InputResult, InstanceResult, MetricRow, summarize, to_csv};
use safeedit_core::fluency::mean_fluency;
use safeedit_core::general::GeneralTask;
use safeedit_core::safeedit::EVAL_INPUT_KINDS;
use safeedit_core::{PromptFormat, SafeEditRecord};
use safeedit_engine::baselines::{
    FtlConfig, SELF_REMINDER_SUFFIX, SELF_REMINDER_SYSTEM, ftl_edit, self_reminder,
};
use safeedit_engine::dinm::{DinmConfig, dinm_edit, random_layer, with_suffix};
use safeedit_engine::{GenerationConfig, LanguageModel};
use serde_json::json;

use crate::edit::DinmArgs;
use crate::generate::FormatArg;
use crate::publish::{DbArgs, publish};
use crate::{backend, data, general, judge, paths, runs};

/// The evaluated method (dinm_spec.md §4 and the ablations of §6.2). None of the baselines gets
/// the suffix prompt; DINM and its ablations are evaluated with it (except wo/SyPrompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// The unedited model on the raw inputs.
    Vanilla,
    /// DINM per instance, evaluated with the suffix prompt on the edited model.
    Dinm,
    /// The suffix prompt only, no edit (the paper's wo/Tune ablation).
    Prompt,
    /// Self-Reminder: a safety system prompt and a reminder around every input, no edit.
    SelfReminder,
    /// FT-L: one fixed layer's `down_proj` tuned on the instance (`prompt_last`), no suffix.
    Ftl,
    /// DINM at a seeded random layer instead of the located one (wo/Location).
    DinmRandomLayer,
    /// DINM without the suffix prompt, in the edit and in evaluation (wo/SyPrompt).
    DinmNoSuffix,
    /// A model fine-tuned by `safeedit train sft` (pass it with --model), on the raw inputs.
    Sft,
    /// A model trained by `safeedit train dpo` (pass it with --model), on the raw inputs.
    Dpo,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Vanilla => "vanilla",
            Method::Dinm => "dinm",
            Method::Prompt => "prompt",
            Method::SelfReminder => "self-reminder",
            Method::Ftl => "ftl",
            Method::DinmRandomLayer => "dinm-random-layer",
            Method::DinmNoSuffix => "dinm-no-suffix",
            Method::Sft => "sft",
            Method::Dpo => "dpo",
        }
    }

    /// Whether the method changes the model per instance.
    pub fn edits(self) -> bool {
        matches!(
            self,
            Method::Dinm | Method::Ftl | Method::DinmRandomLayer | Method::DinmNoSuffix
        )
    }

    /// Whether the method runs DINM (and so depends on its settings).
    pub fn uses_dinm(self) -> bool {
        matches!(
            self,
            Method::Dinm | Method::Prompt | Method::DinmRandomLayer | Method::DinmNoSuffix
        )
    }
}

/// Settings of the baselines on the command line.
#[derive(Args, Debug, Clone, Default)]
pub struct BaselineArgs {
    /// FT-L: the tuned layer [default: the preset's, 21 for 7B models, 20 for SmolLM2].
    #[arg(long)]
    pub ftl_layer: Option<usize>,
    /// FT-L: optimisation steps [default: 25].
    #[arg(long)]
    pub ftl_steps: Option<usize>,
    /// FT-L: learning rate [default: 5e-4].
    #[arg(long)]
    pub ftl_lr: Option<f64>,
    /// Seed of dinm-random-layer's layer draws (a pure function of the seed and instance id).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl BaselineArgs {
    /// The FT-L preset fitting the model, with the overrides applied.
    pub fn ftl_config(&self, lm: &LanguageModel<backend::Backend>) -> anyhow::Result<FtlConfig> {
        let mut config = FtlConfig::preset_for(&lm.name, &lm.architecture, lm.config.n_layers);
        if let Some(layer) = self.ftl_layer {
            anyhow::ensure!(
                layer < lm.config.n_layers,
                "--ftl-layer {layer}: the model has {} layers",
                lm.config.n_layers
            );
            config.layer = layer;
        }
        if let Some(steps) = self.ftl_steps {
            config.num_steps = steps;
        }
        if let Some(lr) = self.ftl_lr {
            config.lr = lr;
        }
        Ok(config)
    }
}

/// Everything a method may need besides the model and the instance.
#[derive(Debug, Clone)]
pub struct MethodSettings {
    /// DINM (and its ablations, and the suffix of `prompt`).
    pub dinm: DinmConfig,
    /// FT-L.
    pub ftl: FtlConfig,
    /// Seed of the random-layer ablation.
    pub seed: u64,
}

impl MethodSettings {
    /// The settings a method's results depend on, for run records.
    pub fn describe(&self, method: Method) -> serde_json::Value {
        json!({
            "dinm": method.uses_dinm().then_some(&self.dinm),
            "ftl": (method == Method::Ftl).then_some(&self.ftl),
            "seed": (method == Method::DinmRandomLayer).then_some(self.seed),
            "self_reminder": (method == Method::SelfReminder)
                .then(|| json!({"system": SELF_REMINDER_SYSTEM, "suffix": SELF_REMINDER_SUFFIX})),
        })
    }
}

/// For `sft` / `dpo`, the card of the trained model at `model` (refusing any other model);
/// `None` for the other methods.
pub fn trained_card(
    method: Method,
    model: &Path,
) -> anyhow::Result<Option<safeedit_engine::baselines::TrainedModelCard>> {
    use safeedit_engine::baselines::Objective;
    let objective = match method {
        Method::Sft => Objective::Sft,
        Method::Dpo => Objective::Dpo,
        _ => return Ok(None),
    };
    crate::train::trained_card(model, objective).map(Some)
}

/// The text and format `method` gives the model for an input.
pub fn method_input(
    method: Method,
    text: &str,
    settings: &MethodSettings,
    format: &PromptFormat,
) -> (String, PromptFormat) {
    match method {
        Method::Vanilla | Method::Ftl | Method::DinmNoSuffix | Method::Sft | Method::Dpo => {
            (text.to_string(), format.clone())
        }
        Method::Dinm | Method::Prompt | Method::DinmRandomLayer => (
            with_suffix(text, &settings.dinm.suffix_system_prompt),
            format.clone(),
        ),
        Method::SelfReminder => self_reminder(text, format),
    }
}

/// Edits the model on `record` for an editing method (`None` for the others). DINM with
/// `reuse_first_located_layer` fixes the first located layer in `settings` (D1).
pub fn edit_for(
    method: Method,
    lm: &LanguageModel<backend::Backend>,
    record: &SafeEditRecord,
    settings: &mut MethodSettings,
    format: &PromptFormat,
) -> anyhow::Result<Option<(LanguageModel<backend::Backend>, EditSummary)>> {
    let dinm = |config: &DinmConfig| {
        dinm_edit::<backend::TrainBackend>(lm, record, config, format, &mut |_| {})
    };
    let edit = match method {
        Method::Vanilla | Method::Prompt | Method::SelfReminder | Method::Sft | Method::Dpo => {
            return Ok(None);
        }
        Method::Dinm => {
            let edit = dinm(&settings.dinm)?;
            if settings.dinm.reuse_first_located_layer && settings.dinm.layer.is_none() {
                // D1: the released code keeps the first instance's layer for every later one.
                settings.dinm.layer = Some(edit.delta.layer);
            }
            edit
        }
        Method::DinmRandomLayer => {
            let layer = random_layer(settings.seed, record.id, lm.config.n_layers);
            dinm(&settings.dinm.clone().with_layer(Some(layer)))?
        }
        Method::DinmNoSuffix => dinm(
            &settings
                .dinm
                .clone()
                .with_suffix_system_prompt(String::new()),
        )?,
        Method::Ftl => {
            let edit = ftl_edit::<backend::TrainBackend>(
                lm,
                record,
                &settings.ftl,
                format,
                &mut |_, _| {},
            )?;
            let summary = EditSummary {
                layer: edit.delta.layer,
                distances: None,
                losses: edit.losses.clone(),
                delta_norm: edit.delta.norm,
            };
            return Ok(Some((edit.delta.apply(lm), summary)));
        }
    };
    let summary = EditSummary {
        layer: edit.delta.layer,
        distances: edit.located.as_ref().map(|l| l.distances.clone()),
        losses: edit.steps.iter().map(|s| s.loss).collect(),
        delta_norm: edit.delta.norm,
    };
    Ok(Some((edit.delta.apply(lm), summary)))
}

/// Arguments of `safeedit eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The method.
    #[arg(long, value_enum)]
    pub method: Method,
    /// Split: `test` (the shipped test sample, or --data) or `editing` (the three instances).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// A SafeEdit JSON file to use instead of the shipped records (e.g. the full test split);
    /// with --test-all, a SafeEdit_test_ALL file (hub or NLPCC format).
    #[arg(long, env = "SAFEEDIT_DATA")]
    pub data: Option<String>,
    /// Which records: `all`, or a question-disjoint fold (`held-out` for models trained on
    /// the shipped sample's `train` fold); with --test-all, the inputs whose question is in it.
    #[arg(long, value_enum, default_value = "all")]
    pub fold: crate::train::FoldArg,
    /// Evaluate only the first N instances (with --test-all: N inputs spread evenly over the
    /// file, so every category and attack keeps its share).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output folder: instances.jsonl, run.json, summary.json, summary.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// Model: a .gguf file, a Hugging Face directory, or `tiny` [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
    /// Judge with the paper's classifier in this directory [default: the built-in judge].
    #[arg(long, env = "SAFEEDIT_JUDGE_DIR")]
    pub judge_dir: Option<PathBuf>,
    /// Most new tokens per input [default: the preset's max_output_length].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Prompt format [default: the model's preset].
    #[arg(long, value_enum)]
    pub prompt_format: Option<FormatArg>,
    /// DINM settings (also the suffix prompt of `--method prompt`).
    #[command(flatten)]
    pub dinm: DinmArgs,
    /// FT-L and ablation settings.
    #[command(flatten)]
    pub baselines: BaselineArgs,
    /// The runs database the results are stored in (shown by the web app).
    #[command(flatten)]
    pub db: DbArgs,
    /// The SafeEdit_test_ALL protocol instead of per-instance evaluation.
    #[command(flatten)]
    pub test_all: crate::test_all::TestAllArgs,
}

/// The model a method is measured on, with the method's settings and the prompt format
/// (what `eval` and `general` both load).
pub struct MethodModel {
    /// Where the model came from.
    pub model_path: PathBuf,
    /// The training card of an SFT/DPO model.
    pub trained: Option<safeedit_engine::baselines::TrainedModelCard>,
    /// The model.
    pub lm: LanguageModel<backend::Backend>,
    /// DINM, FT-L and ablation settings.
    pub settings: MethodSettings,
    /// How inputs reach the model.
    pub format: PromptFormat,
}

impl MethodModel {
    /// Loads the model (refusing a non-trained one for `sft` / `dpo`) and its settings.
    pub fn load(
        method: Method,
        model: Option<PathBuf>,
        dinm: &DinmArgs,
        baselines: &BaselineArgs,
        prompt_format: Option<FormatArg>,
    ) -> anyhow::Result<Self> {
        let model_path = paths::model_or_default(model)?;
        let trained = trained_card(method, &model_path)?;
        let lm = backend::load(&model_path, true)?;
        let settings = MethodSettings {
            dinm: dinm.config(&lm)?,
            ftl: baselines.ftl_config(&lm)?,
            seed: baselines.seed,
        };
        let format = FormatArg::resolve(prompt_format, &lm.prompt_format);
        Ok(Self {
            model_path,
            trained,
            lm,
            settings,
            format,
        })
    }
}

/// What every evaluation protocol loads before generating: the model, the method's settings,
/// the prompt format, generation settings and the judge.
pub struct EvalSetup {
    /// The model, its training card, the method's settings and the prompt format.
    pub model: MethodModel,
    /// Greedy decoding, the preset's (or the user's) length.
    pub generation: GenerationConfig,
    /// The safety judge.
    pub judge: Box<dyn safeedit_engine::judge::SafetyJudge>,
}

impl EvalSetup {
    /// Loads everything `args` names.
    pub fn load(args: &EvalArgs) -> anyhow::Result<Self> {
        let model = MethodModel::load(
            args.method,
            args.model.clone(),
            &args.dinm,
            &args.baselines,
            args.prompt_format,
        )?;
        let generation = GenerationConfig::greedy(
            args.max_new_tokens
                .unwrap_or(model.settings.dinm.max_output_length),
        );
        let judge = judge::load_judge(args.judge_dir.as_deref())?;
        Ok(Self {
            model,
            generation,
            judge,
        })
    }

    /// The run description shared by the protocols (`data` and the method name added by them).
    pub fn run_info(&self, method: Method, data: String) -> serde_json::Value {
        let m = &self.model;
        let described = m.settings.describe(method);
        json!({
            "method": method.name(),
            "data": data,
            "model": m.model_path.display().to_string(),
            "trained": m.trained,
            "model_name": m.lm.name,
            "backend": backend::NAME,
            "prompt_format": m.format,
            "generation": self.generation,
            "dinm": described["dinm"],
            "ftl": described["ftl"],
            "seed": described["seed"],
            "self_reminder": described["self_reminder"],
            "judge": self.judge.info(),
            "version": env!("CARGO_PKG_VERSION"),
        })
    }
}

/// The run description keys a resumed run must match.
pub const RUN_KEYS: [&str; 10] = [
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
];

/// Runs the command.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.test_all.test_all {
        return crate::test_all::run(&args);
    }
    let source = match (&args.data, args.split.as_str()) {
        (Some(path), _) => path.clone(),
        (None, "test") => "test-sample".into(),
        (None, "editing") => "editing-instances".into(),
        (None, other) => {
            anyhow::bail!("unknown split `{other}` (test, editing; or pass --data FILE)")
        }
    };
    let fold = args.fold.fold();
    let mut records = fold.select(data::load(&source)?);
    if let Some(limit) = args.limit {
        records.truncate(limit);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let setup = EvalSetup::load(&args)?;
    let data = if fold == safeedit_core::safeedit::Fold::All {
        source.clone()
    } else {
        format!("{source} (fold {})", fold.as_str())
    };
    let run_info = setup.run_info(args.method, data);
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
    runs::check_or_write_run_info(&args.out.join("run.json"), &run_info, &RUN_KEYS)?;

    let results_path = args.out.join("instances.jsonl");
    let done = finished_ids(&results_path)?;
    let todo: Vec<&SafeEditRecord> = records.iter().filter(|r| !done.contains(&r.id)).collect();
    eprintln!(
        "{}: {} instances ({} already done) -> {}",
        args.method.name(),
        records.len(),
        records.len() - todo.len(),
        args.out.display()
    );
    let bar = runs::progress(todo.len(), args.method.name(), "instances");
    let mut failures = 0;
    for record in todo {
        let started = Instant::now();
        match evaluate(
            args.method,
            &lm,
            record,
            &mut settings,
            &format,
            &generation,
            judge.as_ref(),
        ) {
            Ok((inputs, edit)) => {
                let responses: Vec<&str> = inputs.iter().map(|i| i.response.as_str()).collect();
                let result = InstanceResult {
                    id: record.id,
                    category: record.category.clone(),
                    attack: record.attack_name.clone(),
                    method: args.method.name().into(),
                    fluency: mean_fluency(&responses).unwrap_or(0.0),
                    inputs,
                    edit,
                    seconds: started.elapsed().as_secs_f64(),
                };
                runs::append_jsonl(&results_path, &result)?;
            }
            Err(e) => {
                failures += 1;
                bar.println(format!("instance {}: {e:#}", record.id));
                runs::append_jsonl(
                    &args.out.join("errors.jsonl"),
                    &json!({"id": record.id, "error": format!("{e:#}")}),
                )?;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let results = read_results(&results_path)?;
    let mut rows = summarize(&results);
    rows.extend(general_rows(&args.out, args.method.name())?);
    let summary = json!({"run": run_info, "instances": results.len(), "metrics": rows});
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    std::fs::write(
        args.out.join("summary.csv"),
        to_csv(args.method.name(), &rows),
    )?;
    print_table(args.method.name(), &rows);
    match publish(&args.out, &args.db) {
        Ok(Some(slug)) => eprintln!("stored in the runs database: /evals/{slug}"),
        Ok(None) => {}
        // The files are written; a database problem must not hide the results.
        Err(e) => eprintln!("warning: not stored in the runs database: {e:#}"),
    }
    anyhow::ensure!(
        failures == 0,
        "{failures} instance(s) failed (the summary covers the others); see {}",
        args.out.join("errors.jsonl").display()
    );
    Ok(())
}

pub type Evaluated = (Vec<InputResult>, Option<EditSummary>);

/// Generates and judges one instance's five inputs with `method` (editing methods edit first).
pub fn evaluate(
    method: Method,
    lm: &LanguageModel<backend::Backend>,
    record: &SafeEditRecord,
    settings: &mut MethodSettings,
    format: &PromptFormat,
    generation: &GenerationConfig,
    judge: &dyn safeedit_engine::judge::SafetyJudge,
) -> anyhow::Result<Evaluated> {
    let (edited, edit) = match edit_for(method, lm, record, settings, format)? {
        Some((model, summary)) => (Some(model), Some(summary)),
        None => (None, None),
    };
    let model = edited.as_ref().unwrap_or(lm);
    let mut texts = Vec::new();
    let mut prompts = Vec::new();
    for raw in record.eval_inputs() {
        let (text, input_format) = method_input(method, raw, settings, format);
        prompts.push(model.tokenizer.encode_prompt(&text, &input_format)?);
        texts.push(text);
    }
    let (outputs, _) = model.generate(&prompts, generation)?;
    let responses: Vec<String> = outputs.iter().map(|o| o.text.clone()).collect();
    let verdicts = judge.judge(&responses)?;
    let inputs = EVAL_INPUT_KINDS
        .iter()
        .zip(texts)
        .zip(outputs.into_iter().zip(verdicts))
        .map(|((kind, input), (out, verdict))| InputResult {
            kind: kind.to_string(),
            input,
            generated_tokens: out.generated_ids.len(),
            stop: stop_name(out.stop),
            response: out.text,
            verdict,
        })
        .collect();
    Ok((inputs, edit))
}

/// Why generation stopped, as recorded in result files (`eos`, `max_new_tokens`, ...).
pub fn stop_name(stop: safeedit_engine::StopReason) -> String {
    serde_json::to_value(stop)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn finished_ids(path: &Path) -> anyhow::Result<HashSet<u64>> {
    Ok(runs::resume_jsonl::<InstanceResult>(path)?
        .into_iter()
        .map(|r| r.id)
        .collect())
}

pub fn read_results(path: &Path) -> anyhow::Result<Vec<InstanceResult>> {
    runs::read_jsonl(path)
}

/// The general-performance scores (`general_*.json`) of `method` in an eval folder.
pub fn general_rows(out: &Path, method: &str) -> anyhow::Result<Vec<MetricRow>> {
    let mut rows = Vec::new();
    for task in GeneralTask::ALL {
        let path = general::summary_path(out, task);
        if !path.is_file() {
            continue;
        }
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        if summary["run"]["method"] != method {
            continue;
        }
        let (Some(score), Some(n)) = (summary["score"].as_f64(), summary["n"].as_u64()) else {
            anyhow::bail!("{}: missing `score` or `n`", path.display());
        };
        rows.push(MetricRow {
            group: "all".into(),
            value: "all".into(),
            metric: task.metric().into(),
            score,
            n: n as usize,
        });
    }
    Ok(rows)
}

fn print_table(method: &str, rows: &[MetricRow]) {
    let mut metrics = vec![
        "DS",
        "DG_onlyQ",
        "DG_otherA",
        "DG_otherQ",
        "DG_otherAQ",
        "DG-Avg",
        "Fluency",
    ];
    for task in GeneralTask::ALL {
        if rows.iter().any(|r| r.metric == task.metric()) {
            metrics.push(task.metric());
        }
    }
    let value = |group: &str, name: &str, metric: &str| {
        rows.iter()
            .find(|r| r.group == group && r.value == name && r.metric == metric)
            .map_or("-".to_string(), |r| format!("{:.2}", r.score))
    };
    println!("\n{method}: SafeEdit metrics (defense %, fluency bits)");
    print!("{:<26}", "");
    for m in &metrics {
        print!("{m:>11}");
    }
    println!("{:>6}", "n");
    let mut groups: Vec<(&str, &str)> = vec![("all", "all")];
    let mut seen = HashSet::new();
    for r in rows.iter().filter(|r| r.group == "category") {
        if seen.insert(r.value.as_str()) {
            groups.push(("category", r.value.as_str()));
        }
    }
    for (group, name) in groups {
        let label = if group == "all" {
            "all".to_string()
        } else {
            format!("  {name}")
        };
        print!("{label:<26}");
        for m in &metrics {
            print!("{:>11}", value(group, name, m));
        }
        let n = rows
            .iter()
            .find(|r| r.group == group && r.value == name && r.metric == "DS")
            .map_or(0, |r| r.n);
        println!("{n:>6}");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runs::tests::TempDir;

    /// A small evaluation on the tiny model (2 DINM steps, 3 tokens), stored in `out/db`.
    pub(crate) fn args(method: Method, limit: usize, out: &Path) -> EvalArgs {
        EvalArgs {
            method,
            split: "test".into(),
            data: None,
            fold: crate::train::FoldArg::All,
            limit: Some(limit),
            out: out.to_path_buf(),
            model: Some("tiny".into()),
            judge_dir: None,
            max_new_tokens: Some(3),
            prompt_format: None,
            dinm: DinmArgs {
                preset: None,
                lr: None,
                steps: Some(2),
                layer: None,
                padding: None,
                constraint_grad: false,
                reuse_first_layer: false,
            },
            baselines: BaselineArgs::default(),
            // The folder's own database, so tests never touch the user's.
            db: DbArgs {
                data_dir: Some(out.join("db")),
                database_url: None,
                no_db: false,
            },
            test_all: Default::default(),
        }
    }

    #[test]
    fn baselines_and_ablations_give_their_inputs_and_edits() {
        let suffix = safeedit_engine::dinm::SUFFIX_SYSTEM_PROMPT;
        let dir = TempDir::new("baselines");
        let results = |method: Method| {
            let out = dir.path().join(method.name());
            let mut a = args(method, 2, &out);
            a.baselines.seed = 7;
            a.baselines.ftl_steps = Some(2);
            run(a).unwrap();
            let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
            assert!(
                csv.contains(&format!("{},all,all,DS,", method.name())),
                "{csv}"
            );
            read_results(&out.join("instances.jsonl")).unwrap()
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
    fn dinm_eval_writes_results_resumes_and_refuses_a_different_run() {
        let dir = TempDir::new("dinm");
        run(args(Method::Dinm, 2, dir.path())).unwrap();
        let first = read_results(&dir.path().join("instances.jsonl")).unwrap();
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
        run(args(Method::Dinm, 3, dir.path())).unwrap();
        let resumed = read_results(&jsonl).unwrap();
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
        let slug = std::fs::read_to_string(dir.path().join("slug.txt")).unwrap();
        let slug = slug.lines().next().unwrap().to_string();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (stored, instances) = rt.block_on(async {
            let store = safeedit_store::Store::open(None, &dir.path().join("db"))
                .await
                .unwrap();
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

        let err = run(args(Method::Vanilla, 3, dir.path())).unwrap_err();
        assert!(format!("{err:#}").contains("different `method`"), "{err:#}");
    }

    #[test]
    fn sft_evaluates_a_trained_model_on_the_held_out_fold_and_refuses_others() {
        let dir = TempDir::new("eval-sft");
        let sft = dir.path().join("sft");
        crate::train::run(crate::train::TrainArgs {
            objective: crate::train::ObjectiveArg::Sft,
            out: sft.clone(),
            resume: false,
            model: Some("tiny".into()),
            data: "test-sample".into(),
            fold: None,
            limit: Some(2),
            prompt_format: None,
            preset: None,
            lr: Some(1e-3),
            batch_size: Some(2),
            epochs: Some(1),
            warmup_steps: None,
            optimizer: None,
            beta: None,
            seed: None,
            lora_rank: None,
            lora_alpha: None,
            lora_targets: None,
            save_every: 10,
        })
        .unwrap();
        let out = dir.path().join("eval");
        let mut a = args(Method::Sft, 2, &out);
        a.model = Some(sft.clone());
        a.fold = crate::train::FoldArg::HeldOut;
        run(a).unwrap();
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
        assert_eq!(info["trained"]["method"], "sft");
        assert_eq!(info["data"], "test-sample (fold held-out)");
        let results = read_results(&out.join("instances.jsonl")).unwrap();
        let records =
            safeedit_core::safeedit::Fold::HeldOut.select(data::load("test-sample").unwrap());
        assert_eq!(
            results.iter().map(|r| r.id).collect::<Vec<_>>(),
            records.iter().take(2).map(|r| r.id).collect::<Vec<_>>()
        );
        assert!(results.iter().all(|r| r.edit.is_none()));
        let err = run(args(Method::Sft, 1, &dir.path().join("tiny"))).unwrap_err();
        assert!(format!("{err:#}").contains("safeedit train sft"), "{err:#}");
    }
}
