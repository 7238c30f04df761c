//! `safeedit general`: general performance of a method's model (KQA, CSum, the knowledge proxy);
//! flags in, [`safeedit_pipeline::general`] out, the score printed.

use std::path::PathBuf;

use clap::Args;
use safeedit_core::general::GeneralTask;
use safeedit_pipeline::general::{self, GeneralPlan};

use super::args::{DbArgs, MethodArg, MethodModelArgs};
use super::eval::report_published;
use super::progress::Bars;

/// Arguments of `safeedit general`.
#[derive(Args, Debug)]
pub struct GeneralArgs {
    /// Task: `csum` (XSum; shipped sample), `kqa` (TriviaQA; needs --data), `knowledge` (the
    /// offline KQA proxy on SafeEdit's knowledge-constrain questions).
    #[arg(long)]
    pub task: GeneralTask,
    /// The method whose model is measured.
    #[arg(long, value_enum)]
    pub method: MethodArg,
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
    /// The model, prompt format, DINM and baseline settings.
    #[command(flatten)]
    pub model: MethodModelArgs,
    /// Most new tokens per item [default: the task's].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Items generated together.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// The runs database (an eval folder's stored run gets the new score).
    #[command(flatten)]
    pub db: DbArgs,
}

impl GeneralArgs {
    /// The plan.
    pub fn plan(&self) -> GeneralPlan {
        GeneralPlan {
            task: self.task,
            method: self.method.into(),
            data: self.data.clone(),
            limit: self.limit,
            out: self.out.clone(),
            edit_instance: self.edit_instance,
            edit_data: self.edit_data.clone(),
            model: self.model.choice(),
            max_new_tokens: self.max_new_tokens,
            batch_size: self.batch_size,
            database: self.db.database(),
        }
    }
}

/// Runs the command.
pub fn run(args: GeneralArgs) -> anyhow::Result<()> {
    let summary = general::run(&args.plan(), &mut Bars::new())?;
    println!(
        "{} ({}, {}): {:.2} over {} items",
        summary.task.metric(),
        summary.method.name(),
        summary.model_name,
        summary.score,
        summary.n
    );
    report_published(&summary.published, "evals");
    Ok(())
}
