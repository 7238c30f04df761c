//! `safeedit train sft|dpo`: fine-tuning on SafeEdit pairs with progress (step, loss, ETA);
//! flags in, [`safeedit_pipeline::train`] out.

use std::path::PathBuf;

use clap::Args;
use safeedit_pipeline::train::{self, TrainPlan};

use super::args::{DtypeArg, FoldArg, FormatArg, ModelArg, ObjectiveArg, OptimizerArg};
use super::progress::Bars;

/// Arguments of `safeedit train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// SFT, or DPO (start it from the SFT model with --model).
    #[arg(value_enum)]
    pub objective: ObjectiveArg,
    /// Output model directory (also the checkpoint).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run checkpointed in --out.
    #[arg(long)]
    pub resume: bool,
    /// The starting model.
    #[command(flatten)]
    pub model: ModelArg,
    /// Training data: `test-sample` (the shipped 144 records; use --fold train) or a SafeEdit
    /// JSON file such as SafeEdit_train.json.
    #[arg(long, default_value = "test-sample")]
    pub data: String,
    /// Which records of --data [default: `train` for test-sample, else `all`].
    #[arg(long, value_enum)]
    pub fold: Option<FoldArg>,
    /// Use only the first N pairs (after --fold).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Prompt format [default: the model's preset].
    #[arg(long, value_enum)]
    pub prompt_format: Option<FormatArg>,
    /// Hyperparameter preset: `reference` (the DPO repository's defaults) or `smollm2-135m`
    /// [default: smollm2-135m below 1B parameters, else reference].
    #[arg(long)]
    pub preset: Option<String>,
    /// Peak learning rate [default: the preset's].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Examples per step [default: the preset's].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Passes over the data [default: the preset's].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Warm-up steps [default: the preset's].
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Optimiser [default: rmsprop].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// DPO's β [default: 0.1].
    #[arg(long)]
    pub beta: Option<f64>,
    /// Seed of the example order [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train LoRA adapters of this rank instead of every parameter (for 7B models on a GPU;
    /// the output is still a merged model directory, with PEFT's adapter files in `adapter/`).
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA α (the update is scaled by α / r) [default: 16].
    #[arg(long, requires = "lora_rank")]
    pub lora_alpha: Option<f64>,
    /// LoRA target projections [default: q_proj,v_proj, PEFT's for LLaMA-family models].
    #[arg(long, value_delimiter = ',', requires = "lora_rank")]
    pub lora_targets: Option<Vec<String>>,
    /// Checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 10)]
    pub save_every: usize,
    /// The base model's precision: f32, or with `--lora-rank` also bf16/f16 (the frozen base
    /// in half the memory; adapters and optimiser state stay f32).
    #[command(flatten)]
    pub dtype: DtypeArg,
}

impl TrainArgs {
    /// The plan.
    pub fn plan(&self) -> TrainPlan {
        TrainPlan {
            objective: self.objective.into(),
            out: self.out.clone(),
            resume: self.resume,
            model: self.model.model.clone(),
            data: self.data.clone(),
            fold: self.fold.map(Into::into),
            limit: self.limit,
            prompt_format: FormatArg::format(self.prompt_format),
            preset: self.preset.clone(),
            lr: self.lr,
            batch_size: self.batch_size,
            epochs: self.epochs,
            warmup_steps: self.warmup_steps,
            optimizer: self.optimizer.map(Into::into),
            beta: self.beta,
            seed: self.seed,
            lora_rank: self.lora_rank,
            lora_alpha: self.lora_alpha,
            lora_targets: self.lora_targets.clone(),
            save_every: self.save_every,
            dtype: self.dtype.dtype,
        }
    }
}

/// Runs the command.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let summary = train::run(&args.plan(), &mut Bars::new())?;
    // Batches differ in length, so a step's summed loss is noisy: compare epochs.
    let means: Vec<String> = summary
        .epoch_means
        .iter()
        .map(|m| format!("{m:.4}"))
        .collect();
    eprintln!(
        "{}: mean loss per epoch {}, {} steps, {:.0} s; model in {}",
        summary.objective.as_str(),
        means.join(" -> "),
        summary.steps,
        summary.seconds,
        summary.out.display()
    );
    Ok(())
}
