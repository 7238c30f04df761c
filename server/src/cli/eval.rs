//! `safeedit eval`: a method on SafeEdit instances, or with `--test-all` the SafeEdit_test_ALL
//! protocol; flags in, [`safeedit_pipeline::eval`] / [`safeedit_pipeline::test_all`] out, the
//! metric table printed.

use std::collections::HashSet;
use std::path::PathBuf;

use clap::Args;
use safeedit_core::eval::MetricRow;
use safeedit_core::eval::SAFEEDIT_METRICS;
use safeedit_core::general::GeneralTask;
use safeedit_pipeline::eval::{self, EvalPlan};
use safeedit_pipeline::publish::Published;
use safeedit_pipeline::shard::{self, MergePlan, Merged, Shard};
use safeedit_pipeline::test_all::{self, TestAllPlan};

use super::args::{DbArgs, FoldArg, MethodArg, MethodModelArgs};
use super::progress::Bars;

/// Arguments of `safeedit eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The method.
    #[arg(long, value_enum)]
    pub method: MethodArg,
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
    pub fold: FoldArg,
    /// Evaluate only the first N instances (with --test-all: N inputs spread evenly over the
    /// file, so every category and attack keeps its share).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output folder: instances.jsonl, run.json, summary.json, summary.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// The model, prompt format, DINM and baseline settings.
    #[command(flatten)]
    pub model: MethodModelArgs,
    /// Judge with the paper's classifier in this directory [default: the built-in judge].
    #[arg(long, env = "SAFEEDIT_JUDGE_DIR")]
    pub judge_dir: Option<PathBuf>,
    /// Most new tokens per input [default: the preset's max_output_length].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// The runs database the results are stored in (shown by the web app).
    #[command(flatten)]
    pub db: DbArgs,
    /// Evaluate only shard K of N (every N-th instance from the K-th) in OUT/shard-K-of-N, for
    /// `safeedit eval-merge`; `auto` takes K and N from a Slurm array task, `auto/N` takes K
    /// from Slurm or a Kubernetes indexed job (JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "K/N|auto|auto/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Memory (MiB) for prompts kept across instances by methods that do not edit, so a
    /// jailbreak template many instances share is computed once; the answers are the same
    /// either way [default: 2048; 0 keeps none].
    #[arg(long, value_name = "MIB")]
    pub prefix_cache_mib: Option<usize>,
    /// Instances a method that does not edit answers in one generation, their rows decoded
    /// together; on the CPU the answers are the same either way [default: 4; 1: one at a time,
    /// for a 7B model on a GPU with less than ~25 GiB to spare for keys and values].
    #[arg(long, value_name = "N")]
    pub instances_together: Option<usize>,
    /// The SafeEdit_test_ALL protocol instead of per-instance evaluation.
    #[command(flatten)]
    pub test_all: TestAllArgs,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    Shard::parse(text).map_err(|e| e.to_string())
}

/// Arguments of `safeedit eval-merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shards' folders (shard-K-of-N), or the --out the shards were given (its shard
    /// folders are found).
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// The joined run's folder.
    #[arg(long)]
    pub out: PathBuf,
    /// The runs database the joined run is stored in.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Runs `safeedit eval-merge`.
pub fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let plan = MergePlan {
        shards: args.shards,
        out: args.out,
        database: args.db.database(),
    };
    match shard::merge(&plan, &mut Bars::new())? {
        Merged::Eval(summary) => {
            print_table(summary.method.name(), &summary.rows);
            report_published(&summary.published, "evals");
        }
        Merged::TestAll(summary) => {
            super::test_all::print_models(&summary.models);
            super::test_all::print_methods(&[(
                summary.method.name().to_string(),
                summary.aggregate,
            )]);
            report_published(&summary.published, "test-all");
        }
    }
    Ok(())
}

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

impl EvalArgs {
    /// The evaluation plan.
    pub fn plan(&self) -> EvalPlan {
        EvalPlan {
            method: self.method.into(),
            split: self.split.clone(),
            data: self.data.clone(),
            fold: self.fold.into(),
            limit: self.limit,
            out: self.out.clone(),
            model: self.model.choice(),
            judge_dir: self.judge_dir.clone(),
            max_new_tokens: self.max_new_tokens,
            database: self.db.database(),
            shard: self.shard,
            prefix_cache_mib: self.prefix_cache_mib,
            instances_together: self.instances_together,
        }
    }

    /// The test_ALL plan.
    pub fn test_all_plan(&self) -> TestAllPlan {
        TestAllPlan {
            eval: self.plan(),
            edit_instances: self.test_all.edit_instances.clone(),
            edit_data: self.test_all.edit_data.clone(),
            batch_size: self.test_all.batch_size,
        }
    }
}

/// Runs the command.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let mut bars = Bars::new();
    if args.test_all.test_all {
        let summary = test_all::run(&args.test_all_plan(), &mut bars)?;
        super::test_all::print_models(&summary.models);
        super::test_all::print_methods(&[(summary.method.name().to_string(), summary.aggregate)]);
        eprintln!(
            "written: {}/{{summary.json,summary.csv,table.tex}} (`safeedit test-all-table` joins \
             several runs into one Table 3)",
            summary.out.display()
        );
        report_published(&summary.published, "test-all");
        return Ok(());
    }
    let summary = eval::run(&args.plan(), &mut bars)?;
    print_table(summary.method.name(), &summary.rows);
    report_published(&summary.published, "evals");
    Ok(summary.check()?)
}

/// Says where the results are stored (`page`: the app's page family), or why not.
pub fn report_published(published: &Published, page: &str) {
    match published {
        Published::Stored(slug) => eprintln!("stored in the runs database: /{page}/{slug}"),
        Published::Skipped => {}
        // The files are written; a database problem must not hide the results.
        Published::Failed(e) => eprintln!("warning: not stored in the runs database: {e}"),
    }
}

/// The SafeEdit metric table, overall and per category.
pub fn print_table(method: &str, rows: &[MetricRow]) {
    let mut metrics = SAFEEDIT_METRICS.to_vec();
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
