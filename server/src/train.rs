//! `safeedit train sft|dpo`: full fine-tuning of a model on SafeEdit pairs (dinm_spec.md §4),
//! with progress (step, loss, ETA), a checkpoint every `--save-every` steps and `--resume`.
//! The output folder is a Hugging Face model directory that `--model DIR` and
//! `safeedit analyze --methods sft=DIR` load; `safeedit eval --method sft --model DIR` evaluates
//! it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use safeedit_core::safeedit::Fold;
use safeedit_engine::LanguageModel;
use safeedit_engine::baselines::{
    Objective, OptimizerKind, TrainConfig, TrainedModelCard, Trainer, train_examples,
};

use crate::generate::FormatArg;
use crate::{backend, data, paths, runs};

/// SFT or DPO on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    /// Supervised fine-tuning on (adversarial prompt → safe generation).
    Sft,
    /// DPO on (prompt, safe ≻ unsafe generation), from an SFT model (β 0.1).
    Dpo,
}

/// `--fold` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FoldArg {
    /// Every record.
    All,
    /// The question-disjoint training two thirds.
    Train,
    /// The held-out third (evaluate trained models here).
    HeldOut,
}

impl FoldArg {
    pub fn fold(self) -> Fold {
        match self {
            FoldArg::All => Fold::All,
            FoldArg::Train => Fold::Train,
            FoldArg::HeldOut => Fold::HeldOut,
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
    /// Starting model: a .gguf file, a Hugging Face directory, or `tiny` [default: the small
    /// model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
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
}

impl TrainArgs {
    fn config(&self, lm: &LanguageModel<backend::Backend>) -> anyhow::Result<TrainConfig> {
        let objective = match self.objective {
            ObjectiveArg::Sft => Objective::Sft,
            ObjectiveArg::Dpo => Objective::Dpo,
        };
        let mut config = match &self.preset {
            Some(name) => TrainConfig::preset_named(name, objective)
                .with_context(|| format!("--preset {name}: unknown (reference, smollm2-135m)"))?,
            None => {
                use burn::module::Module;
                TrainConfig::preset_for(lm.model.num_params(), objective)
            }
        };
        if let Some(lr) = self.lr {
            config.lr = lr;
        }
        if let Some(b) = self.batch_size {
            config.batch_size = b;
        }
        if let Some(e) = self.epochs {
            config.epochs = e;
        }
        if let Some(w) = self.warmup_steps {
            config.warmup_steps = w;
        }
        if let Some(o) = self.optimizer {
            config.optimizer = match o {
                OptimizerArg::Rmsprop => OptimizerKind::RmsProp,
                OptimizerArg::Adamw => OptimizerKind::AdamW,
            };
        }
        if let Some(beta) = self.beta {
            config.beta = beta;
        }
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(rank) = self.lora_rank {
            let mut lora = safeedit_engine::baselines::LoraConfig::new()
                .with_rank(rank)
                .with_seed(config.seed);
            if let Some(alpha) = self.lora_alpha {
                lora.alpha = alpha;
            }
            if let Some(targets) = &self.lora_targets {
                lora.targets = targets.clone();
            }
            lora.params()?;
            config.lora = Some(lora);
        }
        config.validate()?;
        Ok(config)
    }
}

fn has_checkpoint(dir: &Path) -> bool {
    dir.join("trainer.json").is_file()
}

/// Runs the command.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.save_every > 0, "--save-every must be at least 1");
    let fold = args
        .fold
        .map(FoldArg::fold)
        .unwrap_or(if args.data == "test-sample" {
            Fold::Train
        } else {
            Fold::All
        });
    let mut records = fold.select(data::load(&args.data)?);
    if let Some(limit) = args.limit {
        records.truncate(limit);
    }
    anyhow::ensure!(
        !records.is_empty(),
        "no training records in {} (fold {})",
        args.data,
        fold.as_str()
    );
    let data_label = format!(
        "{} (fold {}{})",
        args.data,
        fold.as_str(),
        args.limit
            .map(|l| format!(", first {l}"))
            .unwrap_or_default()
    );

    let resuming = args.resume && has_checkpoint(&args.out);
    anyhow::ensure!(
        args.resume || !has_checkpoint(&args.out),
        "{} holds a training checkpoint; pass --resume to continue it or choose another --out",
        args.out.display()
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // The base model: on resume, the card names it; the weights come from the checkpoint.
    let base_path = paths::model_or_default(args.model.clone())?;
    let (base_lm, card_base) = if resuming {
        let card = TrainedModelCard::read(&args.out)?
            .with_context(|| format!("{}: no safeedit_model.json", args.out.display()))?;
        // Full fine-tuning continues from the checkpoint's weights; LoRA from the base model
        // and the saved adapters.
        let lora = card.config.lora.is_some();
        let lm = backend::load(
            if lora {
                Path::new(&card.base_source)
            } else {
                &args.out
            },
            true,
        )
        .with_context(|| {
            if lora {
                format!("loading the LoRA base model {}", card.base_source)
            } else {
                format!("loading the checkpoint {}", args.out.display())
            }
        })?;
        (lm, (card.base_model, card.base_source))
    } else {
        let lm = backend::load(&base_path, true)?;
        let name = lm.name.clone();
        (lm, (name, base_path.display().to_string()))
    };
    let format = FormatArg::resolve(args.prompt_format, &base_lm.prompt_format);

    let mut trainer = if resuming {
        let path = args.out.join("trainer.json");
        let text = std::fs::read_to_string(&path)?;
        let saved: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        let config: TrainConfig = serde_json::from_value(saved["config"].clone())
            .with_context(|| format!("{}: field `config`", path.display()))?;
        let examples = train_examples(&base_lm, &records, &format, &config)?;
        Trainer::<backend::TrainBackend>::resume(&base_lm, &args.out, examples)?
    } else {
        let config = args.config(&base_lm)?;
        if config.objective == Objective::Dpo
            && TrainedModelCard::read(&base_path)
                .ok()
                .flatten()
                .is_none_or(|c| c.method != Objective::Sft)
        {
            eprintln!(
                "note: DPO starts from {} which is not an SFT model trained here; the paper \
                 starts DPO from the SFT checkpoint (`safeedit train sft` first)",
                base_path.display()
            );
        }
        let examples = train_examples(&base_lm, &records, &format, &config)?;
        let bar = runs::progress(examples.len(), "DPO reference log-probs", "pairs");
        let trainer =
            Trainer::<backend::TrainBackend>::new(&base_lm, examples, config, &mut |done, _| {
                bar.set_position(done as u64)
            })?;
        bar.finish_and_clear();
        trainer
    };
    let config = trainer.config().clone();
    let card = |t: &Trainer<backend::TrainBackend>| TrainedModelCard {
        method: config.objective,
        base_model: card_base.0.clone(),
        base_source: card_base.1.clone(),
        prompt_format: format.clone(),
        config: config.clone(),
        data: data_label.clone(),
        n_examples: t.examples().len(),
        steps_done: t.steps_done(),
        total_steps: t.total_steps(),
        final_loss: t.log().last().map(|l| l.loss),
    };
    let lengths: Vec<usize> = trainer
        .examples()
        .iter()
        .map(|e| e.prompt.len() + e.chosen.len().max(e.rejected.len()))
        .collect();
    eprintln!(
        "{} on {} pairs from {} ({} to {} tokens), {} steps of {} (lr {:e}, {:?}), from {} -> {}",
        config.objective.as_str(),
        lengths.len(),
        data_label,
        lengths.iter().min().unwrap_or(&0),
        lengths.iter().max().unwrap_or(&0),
        trainer.total_steps(),
        config.batch_size,
        config.lr,
        config.optimizer,
        card_base.0,
        args.out.display()
    );
    if let Some(lora) = &config.lora {
        eprintln!(
            "LoRA rank {} (alpha {}) on {}: {} trained numbers",
            lora.rank,
            lora.alpha,
            lora.targets.join(", "),
            trainer.trained_params()
        );
    }
    if resuming {
        eprintln!(
            "resuming at step {} of {}",
            trainer.steps_done(),
            trainer.total_steps()
        );
    }

    let bar = ProgressBar::new(trainer.total_steps() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] step {pos}/{len} ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(trainer.steps_done() as u64);
    bar.set_message(config.objective.as_str());
    let log_path = args.out.join("train_log.jsonl");
    while !trainer.finished() {
        let log = trainer.step()?;
        runs::append_jsonl(&log_path, &log)?;
        let extra = log
            .preference
            .map(|p| {
                format!(
                    " acc {:.2} margin {:+.3}",
                    p.accuracy,
                    p.chosen_reward - p.rejected_reward
                )
            })
            .unwrap_or_default();
        bar.set_message(format!(
            "{} loss {:.4}{extra}",
            config.objective.as_str(),
            log.loss
        ));
        bar.inc(1);
        if bar.is_hidden() {
            // Not a terminal (a log file): one line per step instead of the bar.
            let done = trainer.steps_done();
            let mean = trainer.log().iter().map(|l| l.seconds).sum::<f64>()
                / trainer.log().len().max(1) as f64;
            eprintln!(
                "step {done}/{} loss {:.4}{extra} lr {:.2e} grad-norm {:.1} ({:.1} s, eta {:.0} s)",
                trainer.total_steps(),
                log.loss,
                log.lr,
                log.grad_norm,
                log.seconds,
                mean * (trainer.total_steps() - done) as f64
            );
        }
        if trainer.steps_done() % args.save_every == 0 && !trainer.finished() {
            trainer.save(&base_lm, &args.out, &card(&trainer), false)?;
        }
    }
    bar.finish_and_clear();
    trainer.save(&base_lm, &args.out, &card(&trainer), true)?;
    let log = trainer.log();
    // Batches differ in length, so a step's summed loss is noisy: compare epochs.
    let epoch_means: Vec<String> = (0..config.epochs)
        .filter_map(|e| {
            let losses: Vec<f64> = log
                .iter()
                .filter(|l| l.epoch == e)
                .map(|l| l.loss)
                .collect();
            (!losses.is_empty())
                .then(|| format!("{:.4}", losses.iter().sum::<f64>() / losses.len() as f64))
        })
        .collect();
    eprintln!(
        "{}: mean loss per epoch {}, {} steps, {:.0} s; model in {}",
        config.objective.as_str(),
        epoch_means.join(" -> "),
        log.len(),
        log.iter().map(|l| l.seconds).sum::<f64>(),
        args.out.display()
    );
    Ok(())
}

/// The card of a model trained by `safeedit train` with the given objective, for
/// `eval --method sft|dpo`: refuses other models.
pub fn trained_card(model: &Path, objective: Objective) -> anyhow::Result<TrainedModelCard> {
    let card = TrainedModelCard::read(model)?.with_context(|| {
        format!(
            "--method {0} evaluates a model trained by `safeedit train {0}`; {1} has no \
             safeedit_model.json (pass --model DIR)",
            objective.as_str(),
            model.display()
        )
    })?;
    anyhow::ensure!(
        card.method == objective,
        "--method {}: {} was trained with {}",
        objective.as_str(),
        model.display(),
        card.method.as_str()
    );
    anyhow::ensure!(
        card.finished(),
        "{} stopped at step {} of {}; finish it with `safeedit train {} --resume --out {}`",
        model.display(),
        card.steps_done,
        card.total_steps,
        objective.as_str(),
        model.display()
    );
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::tests::TempDir;

    fn args(out: &Path, objective: ObjectiveArg) -> TrainArgs {
        TrainArgs {
            objective,
            out: out.to_path_buf(),
            resume: false,
            model: Some(PathBuf::from("tiny")),
            data: "test-sample".into(),
            fold: None,
            limit: Some(3),
            prompt_format: None,
            preset: None,
            lr: Some(1e-3),
            batch_size: Some(2),
            epochs: Some(1),
            warmup_steps: Some(0),
            optimizer: Some(OptimizerArg::Adamw),
            beta: None,
            seed: None,
            lora_rank: None,
            lora_alpha: None,
            lora_targets: None,
            save_every: 1,
        }
    }

    #[test]
    fn sft_then_dpo_write_loadable_models_and_refuse_to_overwrite() {
        let dir = TempDir::new("train");
        let sft = dir.path().join("sft");
        run(args(&sft, ObjectiveArg::Sft)).unwrap();
        let card = trained_card(&sft, Objective::Sft).unwrap();
        assert_eq!(
            (card.steps_done, card.total_steps, card.n_examples),
            (2, 2, 3)
        );
        assert!(card.data.contains("fold train"), "{}", card.data);
        assert!(trained_card(&sft, Objective::Dpo).is_err());
        let log = std::fs::read_to_string(sft.join("train_log.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 2);
        let err = run(args(&sft, ObjectiveArg::Sft)).unwrap_err();
        assert!(format!("{err:#}").contains("--resume"), "{err:#}");
        // --resume on a finished run has nothing left to do and keeps the model.
        let mut again = args(&sft, ObjectiveArg::Sft);
        again.resume = true;
        run(again).unwrap();
        assert!(trained_card(&sft, Objective::Sft).is_ok());

        let dpo = dir.path().join("dpo");
        let mut a = args(&dpo, ObjectiveArg::Dpo);
        a.model = Some(sft.clone());
        run(a).unwrap();
        let card = trained_card(&dpo, Objective::Dpo).unwrap();
        assert_eq!(card.base_source, sft.display().to_string());
        let lm = backend::load(&dpo, false).unwrap();
        assert_eq!(lm.prompt_format, safeedit_core::PromptFormat::chat());
        assert!(trained_card(Path::new("tiny"), Objective::Sft).is_err());
    }

    #[test]
    fn lora_training_writes_a_merged_model_and_peft_adapters_and_resumes_from_the_base() {
        let dir = TempDir::new("train-lora");
        let out = dir.path().join("sft-lora");
        let mut a = args(&out, ObjectiveArg::Sft);
        a.lora_rank = Some(2);
        a.lora_targets = Some(vec!["q_proj".into(), "down_proj".into()]);
        run(a).unwrap();
        let card = trained_card(&out, Objective::Sft).unwrap();
        let lora = card.config.lora.clone().expect("the card records LoRA");
        assert_eq!((lora.rank, lora.alpha), (2, 16.0));
        assert_eq!(lora.targets, ["q_proj", "down_proj"]);
        let peft: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(peft["base_model_name_or_path"], "tiny");
        assert!(out.join("adapter/adapter_model.safetensors").is_file());
        // The merged model differs from the base only in the targeted projections.
        use safeedit_engine::names::{LayerParam, WeightId};
        let trained = backend::load(&out, false).unwrap();
        let base = backend::load(Path::new("tiny"), false).unwrap();
        let differs = |id: WeightId| {
            trained.model.export(id).unwrap().data != base.model.export(id).unwrap().data
        };
        assert!(differs(WeightId::layer(0, LayerParam::DownProj)));
        assert!(!differs(WeightId::layer(0, LayerParam::VProj)));
        // --resume reads the base model named by the card, not the merged weights.
        let mut again = args(&out, ObjectiveArg::Sft);
        again.resume = true;
        run(again).unwrap();
        // A bad target is refused before anything is written.
        let mut bad = args(&dir.path().join("bad"), ObjectiveArg::Sft);
        bad.lora_rank = Some(2);
        bad.lora_targets = Some(vec!["attn".into()]);
        let err = run(bad).unwrap_err();
        assert!(format!("{err:#}").contains("`attn`"), "{err:#}");
    }
}
