//! The flag groups several subcommands share, and the command line's mirror of the library's
//! enums (with their `--help` texts). Each converts into the pipeline's plain types once, here.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use safeedit_core::safeedit::Fold;
use safeedit_core::{Method, PromptFormat};
use safeedit_engine::baselines::{Objective, OptimizerKind};
use safeedit_engine::{PaddingSide, WeightDtype};
use safeedit_pipeline::method::{BaselineOptions, DinmOptions, ModelChoice};
use safeedit_pipeline::publish::Database;

/// The evaluated method (the paper's baselines and ablations, docs/method.md §Baselines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
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

impl From<MethodArg> for Method {
    fn from(arg: MethodArg) -> Self {
        match arg {
            MethodArg::Vanilla => Method::Vanilla,
            MethodArg::Dinm => Method::Dinm,
            MethodArg::Prompt => Method::Prompt,
            MethodArg::SelfReminder => Method::SelfReminder,
            MethodArg::Ftl => Method::Ftl,
            MethodArg::DinmRandomLayer => Method::DinmRandomLayer,
            MethodArg::DinmNoSuffix => Method::DinmNoSuffix,
            MethodArg::Sft => Method::Sft,
            MethodArg::Dpo => Method::Dpo,
        }
    }
}

/// How the prompt is given to the model (`--prompt-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// The text as is (with the tokenizer's BOS rule).
    Plain,
    /// The model's chat template, one user turn.
    Chat,
}

impl FormatArg {
    /// The chosen format, if any.
    pub fn format(arg: Option<FormatArg>) -> Option<PromptFormat> {
        arg.map(|f| match f {
            FormatArg::Plain => PromptFormat::Plain,
            FormatArg::Chat => PromptFormat::chat(),
        })
    }
}

/// `--padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PaddingArg {
    /// Pad after the text (the default; matches transformers exactly).
    Right,
    /// Pad before the text (EasyEdit's setting for Mistral).
    Left,
}

impl From<PaddingArg> for PaddingSide {
    fn from(arg: PaddingArg) -> Self {
        match arg {
            PaddingArg::Right => PaddingSide::Right,
            PaddingArg::Left => PaddingSide::Left,
        }
    }
}

/// `--fold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FoldArg {
    /// Every record.
    All,
    /// The question-disjoint training two thirds.
    Train,
    /// The held-out third (evaluate trained models here).
    HeldOut,
}

impl From<FoldArg> for Fold {
    fn from(arg: FoldArg) -> Self {
        match arg {
            FoldArg::All => Fold::All,
            FoldArg::Train => Fold::Train,
            FoldArg::HeldOut => Fold::HeldOut,
        }
    }
}

/// SFT or DPO on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    /// Supervised fine-tuning on (adversarial prompt → safe generation).
    Sft,
    /// DPO on (prompt, safe ≻ unsafe generation), from an SFT model (β 0.1).
    Dpo,
}

impl From<ObjectiveArg> for Objective {
    fn from(arg: ObjectiveArg) -> Self {
        match arg {
            ObjectiveArg::Sft => Objective::Sft,
            ObjectiveArg::Dpo => Objective::Dpo,
        }
    }
}

/// The optimiser on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// RMSprop (the reference's).
    Rmsprop,
    /// AdamW.
    Adamw,
}

impl From<OptimizerArg> for OptimizerKind {
    fn from(arg: OptimizerArg) -> Self {
        match arg {
            OptimizerArg::Rmsprop => OptimizerKind::RmsProp,
            OptimizerArg::Adamw => OptimizerKind::AdamW,
        }
    }
}

/// The instance `edit` and `locate` work on.
#[derive(Args, Debug, Clone)]
pub struct InstanceArgs {
    /// SafeEdit records: `test-sample`, `editing-instances`, or a JSON file.
    #[arg(long, default_value = "test-sample", env = "SAFEEDIT_DATA")]
    pub data: String,
    /// Instance id.
    #[arg(long)]
    pub instance: u64,
}

/// `--model`.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArg {
    /// Model: a .gguf file, a Hugging Face directory, or `tiny` [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
}

/// DINM hyperparameters on the command line (a preset plus overrides).
#[derive(Args, Debug, Clone, Default)]
pub struct DinmArgs {
    /// Hyperparameter preset: llama-2-7b-chat, mistral-7b, smollm2-135m [default: by model].
    #[arg(long)]
    pub preset: Option<String>,
    /// Override the preset's learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Override the number of steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Edit this layer instead of locating one.
    #[arg(long)]
    pub layer: Option<usize>,
    /// Padding for location [default: the preset's].
    #[arg(long, value_enum)]
    pub padding: Option<PaddingArg>,
    /// Let the KL constraint carry a gradient (the paper's intent; D2).
    #[arg(long)]
    pub constraint_grad: bool,
    /// Reuse the first instance's located layer for all later ones, as the release does (D1;
    /// evaluation loops only).
    #[arg(long)]
    pub reuse_first_layer: bool,
}

impl DinmArgs {
    /// The pipeline's options.
    pub fn options(&self) -> DinmOptions {
        DinmOptions {
            preset: self.preset.clone(),
            lr: self.lr,
            steps: self.steps,
            layer: self.layer,
            padding: self.padding.map(Into::into),
            constraint_grad: self.constraint_grad,
            reuse_first_layer: self.reuse_first_layer,
        }
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
    /// The pipeline's options.
    pub fn options(&self) -> BaselineOptions {
        BaselineOptions {
            ftl_layer: self.ftl_layer,
            ftl_steps: self.ftl_steps,
            ftl_lr: self.ftl_lr,
            seed: self.seed,
        }
    }
}

/// How the model's matrices are kept in memory.
#[derive(Args, Debug, Clone, Default)]
pub struct DtypeArg {
    /// Keep the model's matrices as f32, bf16 or f16: bf16 halves their memory (a 7B model in
    /// 14 GB) and computes in f32 from the rounded weights; a DINM edit trains its layer in f32.
    #[arg(long, default_value_t = WeightDtype::F32)]
    pub dtype: WeightDtype,
}

/// The model a method runs on, how inputs reach it, and the methods' settings (what `eval` and
/// `general` share).
#[derive(Args, Debug, Clone, Default)]
pub struct MethodModelArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArg,
    /// Prompt format [default: the model's preset].
    #[arg(long, value_enum)]
    pub prompt_format: Option<FormatArg>,
    /// The weights' precision.
    #[command(flatten)]
    pub dtype: DtypeArg,
    /// DINM settings (also the suffix prompt of `--method prompt`).
    #[command(flatten)]
    pub dinm: DinmArgs,
    /// FT-L and ablation settings.
    #[command(flatten)]
    pub baselines: BaselineArgs,
}

impl MethodModelArgs {
    /// The pipeline's model choice.
    pub fn choice(&self) -> ModelChoice {
        ModelChoice {
            model: self.model.model.clone(),
            prompt_format: FormatArg::format(self.prompt_format),
            dinm: self.dinm.options(),
            baselines: self.baselines.options(),
            dtype: self.dtype.dtype,
        }
    }
}

/// Where results are stored (the same settings as `safeedit serve`).
#[derive(Args, Debug, Clone, Default)]
pub struct DbArgs {
    /// The runs database's folder [default: ~/.cache/safeedit/data].
    #[arg(long, env = "SAFEEDIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A database URL instead of the SQLite file (e.g. postgres://user@host/safeedit).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Do not store the results in the runs database (files only).
    #[arg(long)]
    pub no_db: bool,
    /// Store the results unlisted: off the app's lists, reachable by their link only.
    #[arg(long, conflicts_with = "no_db")]
    pub unlisted: bool,
}

impl DbArgs {
    /// The database to store in, or `None` with `--no-db`.
    pub fn database(&self) -> Option<Database> {
        (!self.no_db).then(|| Database {
            data_dir: self.data_dir.clone(),
            url: self.database_url.clone(),
            unlisted: self.unlisted,
        })
    }
}
