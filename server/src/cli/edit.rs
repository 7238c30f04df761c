//! `safeedit edit`: DINM on one SafeEdit instance, with the vanilla and edited generations of its
//! evaluation inputs side by side; flags in, [`safeedit_pipeline::edit`] out.

use std::path::PathBuf;

use clap::Args;
use safeedit_pipeline::edit::{self, EditPlan};

use super::args::{DinmArgs, DtypeArg, FormatArg, InstanceArgs, ModelArg};
use super::print_instance;
use super::progress::Bars;

/// Arguments of `safeedit edit`.
#[derive(Args, Debug)]
pub struct EditArgs {
    /// The instance.
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// The model.
    #[command(flatten)]
    pub model: ModelArg,
    /// The weights' precision.
    #[command(flatten)]
    pub dtype: DtypeArg,
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

impl EditArgs {
    /// The plan.
    pub fn plan(&self) -> EditPlan {
        EditPlan {
            data: self.instance.data.clone(),
            instance: self.instance.instance,
            model: self.model.model.clone(),
            dinm: self.dinm.options(),
            max_new_tokens: self.max_new_tokens,
            prompt_format: FormatArg::format(self.prompt_format),
            save_delta: self.save_delta.clone(),
            no_generate: self.no_generate,
            judge_dir: self.judge_dir.clone(),
            dtype: self.dtype.dtype,
        }
    }
}

/// Runs the command.
pub fn run(args: EditArgs) -> anyhow::Result<()> {
    let report = edit::run(&args.plan(), &mut Bars::shown(!args.json))?;
    if args.json {
        let json = report.to_json(args.save_delta.as_deref());
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    let edit = &report.edit;
    print_instance(&report.record);
    println!(
        "edited {} ({} format, preset {})",
        edit.delta.tensor_name(),
        report.format.label(),
        report.config.preset
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
    if let Some(info) = &report.judge {
        println!(
            "judge: {} ({}) - {}",
            info.id, info.version, info.description
        );
    }
    for c in &report.comparisons {
        println!("\n== {} ==", c.kind);
        println!(
            "-- vanilla [{}]:\n{}",
            serde_json::to_value(c.vanilla_verdict)?,
            c.vanilla
        );
        println!(
            "-- edited, with suffix [{}]:\n{}",
            serde_json::to_value(c.edited_verdict)?,
            c.edited
        );
    }
    Ok(())
}
