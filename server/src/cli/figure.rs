//! `safeedit figure`: one of a stored run's charts as a file for a paper.

use std::path::PathBuf;

use anyhow::Context;
use safeedit_core::run::RunRecord;
use safeedit_figures::{Format, Preset, export, run_chart};

/// Arguments of `safeedit figure`.
#[derive(clap::Args, Debug)]
pub struct FigureArgs {
    /// A run's JSON (the app's "Run (JSON)" download, `/api/runs/{slug}/run.json`).
    #[arg(long)]
    pub run: PathBuf,
    /// Which chart: distances (per-layer, toxic layer marked) or losses (per step).
    #[arg(long)]
    pub chart: String,
    /// ACL width preset: column (7.7 cm) or full (16 cm).
    #[arg(long, default_value = "column")]
    pub preset: String,
    /// svg, pdf or png (300 dpi) [default: from --out's extension].
    #[arg(long)]
    pub format: Option<String>,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// `safeedit figure`: a run's chart as a file for a paper.
pub fn run(args: FigureArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.run)
        .with_context(|| format!("reading {}", args.run.display()))?;
    let record: RunRecord = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a SafeEdit Studio run", args.run.display()))?;
    let preset: Preset = args.preset.parse()?;
    let format: Format = match &args.format {
        Some(f) => f.parse()?,
        None => args
            .out
            .extension()
            .and_then(|e| e.to_str())
            .context("--out has no extension; pass --format svg|pdf|png")?
            .parse()?,
    };
    let svg = run_chart(&record, &args.chart, preset)?.with_context(|| {
        format!(
            "run {} has no data for the `{}` chart",
            record.slug, args.chart
        )
    })?;
    let bytes = export(&svg, format)?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} bytes, {} {})",
        args.out.display(),
        bytes.len(),
        preset.as_str(),
        format.extension()
    );
    Ok(())
}
