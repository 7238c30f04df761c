//! `safeedit analyze`: the mechanism analysis; flags in, [`safeedit_pipeline::analyze`] out, the
//! comparison printed.

use std::path::PathBuf;

use clap::Args;
use safeedit_core::mechanism::MechanismReport;
use safeedit_pipeline::analyze::{self, AnalyzePlan};

use super::args::{BaselineArgs, DbArgs, DinmArgs, DtypeArg, FoldArg, ModelArg};
use super::eval::report_published;
use super::progress::Bars;

/// Arguments of `safeedit analyze`.
#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Methods compared with vanilla: editing methods (dinm, ftl, dinm-random-layer,
    /// dinm-no-suffix; one model per edit instance) and `NAME=PATH` for a model fine-tuned
    /// elsewhere with the same architecture (e.g. `sft=out/sft`).
    #[arg(long, value_delimiter = ',', default_value = "vanilla,dinm,ftl")]
    pub methods: Vec<String>,
    /// Where the edit instances come from: `editing` (the three editing instances), `test`, or a
    /// SafeEdit JSON file.
    #[arg(long, default_value = "editing")]
    pub edit_split: String,
    /// Edit only the first N instances.
    #[arg(long)]
    pub edits: Option<usize>,
    /// Adversarial inputs (shipped test prompts) for the activation means [default: all].
    #[arg(long)]
    pub inputs: Option<usize>,
    /// Which test prompts feed the activation means: `all`, or `held-out` when a compared model
    /// was trained on the shipped sample's `train` fold.
    #[arg(long, value_enum, default_value = "all")]
    pub fold: FoldArg,
    /// Inputs in the projection view (the paper's Fig. 8 uses 30).
    #[arg(long, default_value_t = 30)]
    pub projection_inputs: usize,
    /// The analysis layer [default: the layer most DINM edits chose, else located on the first
    /// edit instance].
    #[arg(long)]
    pub region_layer: Option<usize>,
    /// Columns in the top-k toxicity measure.
    #[arg(long, default_value_t = 128)]
    pub top_k: usize,
    /// Value vectors in the logit lens.
    #[arg(long, default_value_t = 5)]
    pub lens_vectors: usize,
    /// Tokens per value vector in the logit lens.
    #[arg(long, default_value_t = 8)]
    pub lens_tokens: usize,
    /// Tokens pooled per probe text.
    #[arg(long, default_value_t = 128)]
    pub probe_tokens: usize,
    /// The model.
    #[command(flatten)]
    pub model: ModelArg,
    /// The weights' precision (also of every `NAME=PATH` model).
    #[command(flatten)]
    pub dtype: DtypeArg,
    /// Output folder: analysis.json, analysis.csv, figures/*.svg.
    #[arg(long)]
    pub out: PathBuf,
    /// DINM settings of the editing methods.
    #[command(flatten)]
    pub dinm: DinmArgs,
    /// FT-L and ablation settings.
    #[command(flatten)]
    pub baselines: BaselineArgs,
    /// The runs database the analysis is stored in (the web app's Mechanisms page).
    #[command(flatten)]
    pub db: DbArgs,
}

impl AnalyzeArgs {
    /// The plan.
    pub fn plan(&self) -> AnalyzePlan {
        AnalyzePlan {
            methods: self.methods.clone(),
            edit_split: self.edit_split.clone(),
            edits: self.edits,
            inputs: self.inputs,
            fold: self.fold.into(),
            projection_inputs: self.projection_inputs,
            region_layer: self.region_layer,
            top_k: self.top_k,
            lens_vectors: self.lens_vectors,
            lens_tokens: self.lens_tokens,
            probe_tokens: self.probe_tokens,
            model: self.model.model.clone(),
            dtype: self.dtype.dtype,
            out: self.out.clone(),
            dinm: self.dinm.options(),
            baselines: self.baselines.options(),
            database: self.db.database(),
        }
    }
}

/// Runs the command.
pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let summary = analyze::run(&args.plan(), &mut Bars::new())?;
    print_summary(&summary.report);
    eprintln!("wrote {}", summary.out.display());
    report_published(&summary.published, "mechanisms");
    Ok(())
}

fn print_summary(report: &MechanismReport) {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!(
        "\nmechanisms of {} at layer {} ({}); probe held-out accuracy {:.1}%",
        report.model,
        report.layer,
        report.layer_source,
        report.probe.held_out_accuracy * 100.0
    );
    println!(
        "{:<20}{:>6}{:>16}{:>16}{:>16}{:>16}",
        "method", "n", "tox red. all %", "tox red. top %", "shift mean %", "shift last %"
    );
    for m in &report.methods {
        println!(
            "{:<20}{:>6}{:>16}{:>16}{:>16}{:>16}",
            m.method,
            m.models.len(),
            pct(m.reduction_all),
            pct(m.reduction_top),
            pct(m.shift_token_mean),
            pct(m.shift_last_token)
        );
    }
}
