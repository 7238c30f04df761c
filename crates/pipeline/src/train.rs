//! `train sft|dpo`: full fine-tuning (or LoRA) of a model on SafeEdit pairs (docs/method.md
//! §Baselines), with a checkpoint every `save_every` steps and resume. The output folder is a
//! Hugging Face model directory that `eval` (method `sft` / `dpo`) and `analyze` load.

use std::path::{Path, PathBuf};

use burn::module::Module;
use safeedit_core::PromptFormat;
use safeedit_core::safeedit::Fold;
use safeedit_engine::WeightDtype;
use safeedit_engine::baselines::{
    LoraConfig, Objective, OptimizerKind, TrainConfig, TrainedModelCard, Trainer, train_examples,
};
use serde::{Deserialize, Serialize};

use crate::backend::{self, Model, TrainBackend};
use crate::progress::{Event, Progress, ProgressExt};
use crate::run_dir::{self, append_jsonl};
use crate::{PipelineError, Result, ResultExt, bail, data, ensure, paths};

/// A fine-tuning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainPlan {
    /// SFT, or DPO (started from an SFT model).
    pub objective: Objective,
    /// Output model directory (also the checkpoint).
    pub out: PathBuf,
    /// Continue the run checkpointed in `out`.
    pub resume: bool,
    /// Starting model [default: the small model].
    pub model: Option<PathBuf>,
    /// Training data: `test-sample` (the shipped records; its `train` fold by default) or a
    /// SafeEdit JSON file such as SafeEdit_train.json.
    pub data: String,
    /// Which records of `data` [default: `train` for test-sample, else all].
    pub fold: Option<Fold>,
    /// Only the first N pairs (after the fold).
    pub limit: Option<usize>,
    /// The prompt format [default: the model's].
    pub prompt_format: Option<PromptFormat>,
    /// Hyperparameter preset: `reference` or `smollm2-135m` [default: by model size].
    pub preset: Option<String>,
    /// Peak learning rate [default: the preset's].
    pub lr: Option<f64>,
    /// Examples per step [default: the preset's].
    pub batch_size: Option<usize>,
    /// Passes over the data [default: the preset's].
    pub epochs: Option<usize>,
    /// Warm-up steps [default: the preset's].
    pub warmup_steps: Option<usize>,
    /// Optimiser [default: RMSprop].
    pub optimizer: Option<OptimizerKind>,
    /// DPO's β [default: 0.1].
    pub beta: Option<f64>,
    /// Seed of the example order [default: 0].
    pub seed: Option<u64>,
    /// Train LoRA adapters of this rank instead of every parameter.
    pub lora_rank: Option<usize>,
    /// LoRA α [default: 16].
    pub lora_alpha: Option<f64>,
    /// LoRA target projections [default: q_proj, v_proj].
    pub lora_targets: Option<Vec<String>>,
    /// Checkpoint every N steps (and at the end).
    pub save_every: usize,
    /// The precision the base model's matrices are kept in: f32, or with LoRA also bf16/f16
    /// (the frozen base in half the memory; the adapters and their optimiser state are f32).
    #[serde(default)]
    pub dtype: WeightDtype,
}

impl TrainPlan {
    /// `safeedit train`'s defaults for `objective`, writing to `out`.
    pub fn new(objective: Objective, out: impl Into<PathBuf>) -> Self {
        Self {
            objective,
            out: out.into(),
            resume: false,
            model: None,
            data: "test-sample".into(),
            fold: None,
            limit: None,
            prompt_format: None,
            preset: None,
            lr: None,
            batch_size: None,
            epochs: None,
            warmup_steps: None,
            optimizer: None,
            beta: None,
            seed: None,
            lora_rank: None,
            lora_alpha: None,
            lora_targets: None,
            save_every: 10,
            dtype: WeightDtype::F32,
        }
    }

    /// The plan with a train job's settings (the fields `safeedit train`'s flags set; `data`
    /// and `model` are resolved by the caller, `optimizer` parsed from the job's name).
    pub fn with_job_settings(
        mut self,
        job: &safeedit_core::job::TrainJob,
        optimizer: Option<OptimizerKind>,
    ) -> Self {
        self.fold = job.fold;
        self.limit = job.limit;
        self.preset = job.preset.clone();
        self.lr = job.lr;
        self.batch_size = job.batch_size;
        self.epochs = job.epochs;
        self.warmup_steps = job.warmup_steps;
        self.optimizer = optimizer;
        self.beta = job.beta;
        self.seed = job.seed;
        self.lora_rank = job.lora_rank;
        self.lora_alpha = job.lora_alpha;
        self.lora_targets = job.lora_targets.clone();
        if let Some(every) = job.save_every {
            self.save_every = every;
        }
        self
    }

    /// The preset (by name, or the one fitting the model) with the plan's overrides.
    pub fn config(&self, lm: &Model) -> Result<TrainConfig> {
        let objective = self.objective;
        let mut config = match &self.preset {
            Some(name) => match TrainConfig::preset_named(name, objective) {
                Some(config) => config,
                None => bail!("--preset {name}: unknown (reference, smollm2-135m)"),
            },
            None => TrainConfig::preset_for(lm.model.num_params(), objective),
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
            config.optimizer = o;
        }
        if let Some(beta) = self.beta {
            config.beta = beta;
        }
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(rank) = self.lora_rank {
            let mut lora = LoraConfig::new().with_rank(rank).with_seed(config.seed);
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

/// What a finished training run did.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// SFT or DPO.
    pub objective: Objective,
    /// Mean loss of every epoch.
    pub epoch_means: Vec<f64>,
    /// Optimiser steps in the log.
    pub steps: usize,
    /// Seconds spent stepping.
    pub seconds: f64,
    /// The model directory.
    pub out: PathBuf,
}

fn has_checkpoint(dir: &Path) -> bool {
    dir.join("trainer.json").is_file()
}

/// Trains: from the base model, or with `resume` from the checkpoint in `out`, to the end,
/// checkpointing every `save_every` steps; a cancelled run stops after a checkpoint.
pub fn run(plan: &TrainPlan, progress: &mut dyn Progress) -> Result<TrainSummary> {
    let args = plan;
    ensure!(args.save_every > 0, "--save-every must be at least 1");
    let fold = args.fold.unwrap_or(if args.data == "test-sample" {
        Fold::Train
    } else {
        Fold::All
    });
    // A half-precision base only for LoRA (a resumed run's card says whether it is one).
    let check_dtype = |lora: bool| {
        ensure!(
            args.dtype.is_f32() || lora,
            "--dtype {}: full fine-tuning keeps f32 weights (a half-precision weight would \
             round away most updates); train LoRA adapters on the {} base with --lora-rank, \
             or use --dtype f32",
            args.dtype.as_str(),
            args.dtype.as_str()
        );
        Ok(())
    };
    check_dtype(args.lora_rank.is_some() || args.resume)?;
    let mut records = fold.select(data::load(&args.data)?);
    if let Some(limit) = args.limit {
        records.truncate(limit);
    }
    ensure!(
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

    let _lock = run_dir::lock(&args.out)?;
    let resuming = args.resume && has_checkpoint(&args.out);
    ensure!(
        args.resume || !has_checkpoint(&args.out),
        "{} holds a training checkpoint; pass --resume to continue it or choose another --out",
        args.out.display()
    );
    // The base model: on resume, the card names it; the weights come from the checkpoint.
    let base_path = paths::model_or_default(args.model.clone())?;
    let (base_lm, card_base) = if resuming {
        let card = TrainedModelCard::read(&args.out)?.ok_or_else(|| {
            PipelineError::file(&args.out, "no safeedit_model.json to resume from")
        })?;
        // Full fine-tuning continues from the checkpoint's weights; LoRA from the base model
        // and the saved adapters.
        let lora = card.config.lora.is_some();
        check_dtype(lora)?;
        let lm = backend::load_as(
            if lora {
                Path::new(&card.base_source)
            } else {
                &args.out
            },
            args.dtype,
            progress,
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
        let lm = backend::load_as(&base_path, args.dtype, progress)?;
        let name = lm.name.clone();
        (lm, (name, base_path.display().to_string()))
    };
    let format = args
        .prompt_format
        .clone()
        .unwrap_or_else(|| base_lm.prompt_format.clone());

    let mut trainer = if resuming {
        let path = args.out.join("trainer.json");
        let saved: serde_json::Value = run_dir::read_json(&path)?;
        let config: TrainConfig = serde_json::from_value(saved["config"].clone())
            .map_err(|e| PipelineError::file(&path, format!("field `config`: {e}")))?;
        let examples = train_examples(&base_lm, &records, &format, &config)?;
        Trainer::<TrainBackend>::resume(&base_lm, &args.out, examples)?
    } else {
        let config = args.config(&base_lm)?;
        if config.objective == Objective::Dpo
            && TrainedModelCard::read(&base_path)
                .ok()
                .flatten()
                .is_none_or(|c| c.method != Objective::Sft)
        {
            progress.event(Event::Warning(format!(
                "DPO starts from {} which is not an SFT model trained here; the paper starts \
                 DPO from the SFT checkpoint (`safeedit train sft` first)",
                base_path.display()
            )));
        }
        let examples = train_examples(&base_lm, &records, &format, &config)?;
        let reference = config.objective == Objective::Dpo;
        if reference {
            progress.phase("DPO reference log-probs", "pairs", examples.len());
        }
        let trainer = Trainer::<TrainBackend>::new(&base_lm, examples, config, &mut |_, _| {
            progress.event(Event::Advance(1))
        })?;
        if reference {
            progress.event(Event::PhaseDone);
        }
        trainer
    };
    let config = trainer.config().clone();
    let card = |t: &Trainer<TrainBackend>| TrainedModelCard {
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
    progress.note(format!(
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
    ));
    if let Some(lora) = &config.lora {
        progress.note(format!(
            "LoRA rank {} (alpha {}) on {}: {} trained numbers",
            lora.rank,
            lora.alpha,
            lora.targets.join(", "),
            trainer.trained_params()
        ));
    }
    if resuming {
        progress.note(format!(
            "resuming at step {} of {}",
            trainer.steps_done(),
            trainer.total_steps()
        ));
    }

    progress.phase(config.objective.as_str(), "steps", trainer.total_steps());
    progress.event(Event::Advance(trainer.steps_done()));
    let log_path = args.out.join("train_log.jsonl");
    while !trainer.finished() {
        if progress.cancelled() {
            trainer.save(&base_lm, &args.out, &card(&trainer), false)?;
            return Err(PipelineError::Cancelled);
        }
        let log = trainer.step()?;
        append_jsonl(&log_path, &log)?;
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
        progress.event(Event::Step {
            step: log.step,
            loss: log.loss,
        });
        progress.event(Event::Advance(1));
        progress.event(Event::Status(format!(
            "{} loss {:.4}{extra} lr {:.2e} grad-norm {:.1} ({:.1} s)",
            config.objective.as_str(),
            log.loss,
            log.lr,
            log.grad_norm,
            log.seconds,
        )));
        if trainer.steps_done() % args.save_every == 0 && !trainer.finished() {
            trainer.save(&base_lm, &args.out, &card(&trainer), false)?;
        }
    }
    progress.event(Event::PhaseDone);
    trainer.save(&base_lm, &args.out, &card(&trainer), true)?;
    let log = trainer.log();
    // Batches differ in length, so a step's summed loss is noisy: compare epochs.
    let epoch_means: Vec<f64> = (0..config.epochs)
        .filter_map(|e| {
            let losses: Vec<f64> = log
                .iter()
                .filter(|l| l.epoch == e)
                .map(|l| l.loss)
                .collect();
            (!losses.is_empty()).then(|| losses.iter().sum::<f64>() / losses.len() as f64)
        })
        .collect();
    Ok(TrainSummary {
        objective: config.objective,
        epoch_means,
        steps: log.len(),
        seconds: log.iter().map(|l| l.seconds).sum(),
        out: args.out.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quiet;
    use crate::method::trained_card;
    use crate::testutil::tiny_train;

    /// The tiny model on 3 pairs, AdamW without warm-up, a checkpoint every step.
    fn plan(out: &Path, objective: Objective) -> TrainPlan {
        TrainPlan {
            warmup_steps: Some(0),
            optimizer: Some(OptimizerKind::AdamW),
            save_every: 1,
            ..tiny_train(objective, 3, out)
        }
    }

    #[test]
    fn sft_then_dpo_write_loadable_models_and_refuse_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let sft = dir.path().join("sft");
        run(&plan(&sft, Objective::Sft), &mut Quiet).unwrap();
        let card = trained_card(&sft, Objective::Sft).unwrap();
        assert_eq!(
            (card.steps_done, card.total_steps, card.n_examples),
            (2, 2, 3)
        );
        assert!(card.data.contains("fold train"), "{}", card.data);
        assert!(trained_card(&sft, Objective::Dpo).is_err());
        let log = std::fs::read_to_string(sft.join("train_log.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 2);
        let err = run(&plan(&sft, Objective::Sft), &mut Quiet).unwrap_err();
        assert!(err.to_string().contains("--resume"), "{err}");
        // --resume on a finished run has nothing left to do and keeps the model.
        let mut again = plan(&sft, Objective::Sft);
        again.resume = true;
        run(&again, &mut Quiet).unwrap();
        assert!(trained_card(&sft, Objective::Sft).is_ok());

        let dpo = dir.path().join("dpo");
        let mut a = plan(&dpo, Objective::Dpo);
        a.model = Some(sft.clone());
        run(&a, &mut Quiet).unwrap();
        let card = trained_card(&dpo, Objective::Dpo).unwrap();
        assert_eq!(card.base_source, sft.display().to_string());
        let lm = backend::load(&dpo, &mut Quiet).unwrap();
        assert_eq!(lm.prompt_format, safeedit_core::PromptFormat::chat());
        assert!(trained_card(Path::new("tiny"), Objective::Sft).is_err());
    }

    #[test]
    fn lora_training_writes_a_merged_model_and_peft_adapters_and_resumes_from_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sft-lora");
        let mut a = plan(&out, Objective::Sft);
        a.lora_rank = Some(2);
        a.lora_targets = Some(vec!["q_proj".into(), "down_proj".into()]);
        run(&a, &mut Quiet).unwrap();
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
        let trained = backend::load(&out, &mut Quiet).unwrap();
        let base = backend::load(Path::new("tiny"), &mut Quiet).unwrap();
        let differs = |id: WeightId| {
            trained.model.export(id).unwrap().data != base.model.export(id).unwrap().data
        };
        assert!(differs(WeightId::layer(0, LayerParam::DownProj)));
        assert!(!differs(WeightId::layer(0, LayerParam::VProj)));
        // --resume reads the base model named by the card, not the merged weights.
        let mut again = plan(&out, Objective::Sft);
        again.resume = true;
        run(&again, &mut Quiet).unwrap();
        // A bad target is refused before anything is written.
        let mut bad = plan(&dir.path().join("bad"), Objective::Sft);
        bad.lora_rank = Some(2);
        bad.lora_targets = Some(vec!["attn".into()]);
        let err = run(&bad, &mut Quiet).unwrap_err();
        assert!(err.to_string().contains("`attn`"), "{err}");
    }

    #[test]
    fn lora_trains_on_a_bf16_base_and_full_fine_tuning_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let lora = |name: &str, dtype: WeightDtype| {
            let mut a = plan(&dir.path().join(name), Objective::Sft);
            a.lora_rank = Some(2);
            a.lora_targets = Some(vec!["q_proj".into(), "down_proj".into()]);
            a.dtype = dtype;
            run(&a, &mut Quiet).unwrap();
            let log =
                std::fs::read_to_string(dir.path().join(name).join("train_log.jsonl")).unwrap();
            log.lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                        .as_f64()
                        .unwrap()
                })
                .collect::<Vec<f64>>()
        };
        let (full, half) = (
            lora("f32", WeightDtype::F32),
            lora("bf16", WeightDtype::Bf16),
        );
        assert_eq!(full.len(), half.len());
        for (f, h) in full.iter().zip(&half) {
            // The same training on weights rounded to bf16: close, not equal.
            assert!(
                h.is_finite() && (f - h).abs() <= 2e-2 * f.abs().max(1.0),
                "{full:?} {half:?}"
            );
        }
        assert_ne!(full, half, "the base really was rounded");
        // The merged model loads; its targeted projection moved away from the base's.
        use safeedit_engine::names::{LayerParam, WeightId};
        let merged = backend::load(&dir.path().join("bf16"), &mut Quiet).unwrap();
        let base = backend::load(Path::new("tiny"), &mut Quiet).unwrap();
        let id = WeightId::layer(0, LayerParam::DownProj);
        assert_ne!(
            merged.model.export(id).unwrap().data,
            base.model.export(id).unwrap().data
        );
        // Resuming names LoRA through the run's card, not the flags.
        let mut again = plan(&dir.path().join("bf16"), Objective::Sft);
        again.resume = true;
        again.dtype = WeightDtype::Bf16;
        run(&again, &mut Quiet).unwrap();
        let full_run = dir.path().join("full");
        run(&plan(&full_run, Objective::Sft), &mut Quiet).unwrap();
        let mut again = plan(&full_run, Objective::Sft);
        again.resume = true;
        again.dtype = WeightDtype::Bf16;
        let err = run(&again, &mut Quiet).unwrap_err().to_string();
        assert!(err.contains("--lora-rank"), "{err}");
        // Full fine-tuning in half precision is refused, naming the options, before writing.
        let out = dir.path().join("full-bf16");
        let mut full = plan(&out, Objective::Sft);
        full.dtype = WeightDtype::Bf16;
        let err = run(&full, &mut Quiet).unwrap_err().to_string();
        assert!(
            err.contains("--dtype bf16") && err.contains("--lora-rank"),
            "{err}"
        );
        assert!(!out.exists());
    }
}
