//! What a method needs besides the model and the instance (DINM, FT-L and ablation settings),
//! how it changes an input, and how it edits the model on an instance. Every protocol (eval,
//! general, test_ALL, analyze, the web's one-instance jobs) goes through these.

use std::path::{Path, PathBuf};

use safeedit_core::eval::EditSummary;
use safeedit_core::{Method, PromptFormat, SafeEditRecord};
use safeedit_engine::baselines::{
    FtlConfig, Objective, SELF_REMINDER_SUFFIX, SELF_REMINDER_SYSTEM, TrainedModelCard,
    ftl_edit_stoppable, self_reminder,
};
use safeedit_engine::dinm::{
    DinmConfig, DinmEvent, dinm_edit_stoppable, locate_toxic_layer, random_layer, with_suffix,
};
use safeedit_engine::{PaddingSide, WeightDtype};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backend::{self, Model, TrainBackend};
use crate::progress::{Event, Progress, ProgressExt};
use crate::{Result, ResultExt, bail, ensure, limits, paths};

/// DINM hyperparameters: a preset plus overrides (`None` keeps the preset's value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DinmOptions {
    /// Preset: `llama-2-7b-chat`, `mistral-7b`, `smollm2-135m` [default: by model].
    pub preset: Option<String>,
    /// The preset's learning rate, overridden.
    pub lr: Option<f64>,
    /// The number of steps, overridden.
    pub steps: Option<usize>,
    /// Edit this layer instead of locating one.
    pub layer: Option<usize>,
    /// Padding for location [default: the preset's].
    pub padding: Option<PaddingSide>,
    /// Let the KL constraint carry a gradient (the paper's intent; D2).
    pub constraint_grad: bool,
    /// Reuse the first instance's located layer for all later ones, as the release does (D1).
    pub reuse_first_layer: bool,
}

impl DinmOptions {
    /// Checks the overrides' ranges (before a model is loaded).
    pub fn check(&self) -> Result<()> {
        if let Some(lr) = self.lr {
            limits::lr("lr", lr)?;
        }
        if let Some(steps) = self.steps {
            limits::edit_steps("steps", steps)?;
        }
        Ok(())
    }

    /// The preset (by name, or the one fitting the model) with the overrides applied.
    pub fn config(&self, lm: &Model) -> Result<DinmConfig> {
        let mut config = match &self.preset {
            Some(name) => match DinmConfig::preset_named(name) {
                Some(config) => config,
                None => {
                    bail!("unknown preset `{name}` (llama-2-7b-chat, mistral-7b, smollm2-135m)")
                }
            },
            None => DinmConfig::preset_for(&lm.name, &lm.architecture),
        };
        self.check()?;
        if let Some(lr) = self.lr {
            config.lr = lr;
            config.preset = format!("{} (lr {lr})", config.preset);
        }
        if let Some(steps) = self.steps {
            config.num_steps = steps;
        }
        if self.layer.is_some() {
            config.layer = self.layer;
        }
        if let Some(padding) = self.padding {
            config.padding_side = padding;
        }
        config.constraint_has_grad |= self.constraint_grad;
        config.reuse_first_located_layer |= self.reuse_first_layer;
        Ok(config)
    }
}

/// Settings of the baselines (FT-L) and the random-layer ablation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BaselineOptions {
    /// FT-L: the tuned layer [default: the preset's, 21 for 7B models, 20 for SmolLM2].
    pub ftl_layer: Option<usize>,
    /// FT-L: optimisation steps [default: 25].
    pub ftl_steps: Option<usize>,
    /// FT-L: learning rate [default: 5e-4].
    pub ftl_lr: Option<f64>,
    /// Seed of dinm-random-layer's layer draws (a pure function of the seed and instance id).
    pub seed: u64,
}

impl BaselineOptions {
    /// Checks the overrides' ranges (before a model is loaded).
    pub fn check(&self) -> Result<()> {
        if let Some(lr) = self.ftl_lr {
            limits::lr("ftl_lr", lr)?;
        }
        if let Some(steps) = self.ftl_steps {
            limits::edit_steps("ftl_steps", steps)?;
        }
        Ok(())
    }

    /// The FT-L preset fitting the model, with the overrides applied.
    pub fn ftl_config(&self, lm: &Model) -> Result<FtlConfig> {
        let mut config = FtlConfig::preset_for(&lm.name, &lm.architecture, lm.config.n_layers);
        self.check()?;
        if let Some(layer) = self.ftl_layer {
            ensure!(
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
    /// The settings of `lm` with the options applied.
    pub fn new(lm: &Model, dinm: &DinmOptions, baselines: &BaselineOptions) -> Result<Self> {
        Ok(Self {
            dinm: dinm.config(lm)?,
            ftl: baselines.ftl_config(lm)?,
            seed: baselines.seed,
        })
    }

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

/// The card of a model trained by `safeedit train` with the given objective, for
/// `eval --method sft|dpo`: refuses other models and unfinished runs.
pub fn trained_card(model: &Path, objective: Objective) -> Result<TrainedModelCard> {
    let Some(card) = TrainedModelCard::read(model)? else {
        bail!(
            "--method {0} evaluates a model trained by `safeedit train {0}`; {1} has no \
             safeedit_model.json (pass --model DIR)",
            objective.as_str(),
            model.display()
        );
    };
    ensure!(
        card.method == objective,
        "--method {}: {} was trained with {}",
        objective.as_str(),
        model.display(),
        card.method.as_str()
    );
    ensure!(
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

/// For `sft` / `dpo`, the card of the trained model at `model` (refusing any other model);
/// `None` for the other methods.
pub fn method_card(method: Method, model: &Path) -> Result<Option<TrainedModelCard>> {
    let objective = match method {
        Method::Sft => Objective::Sft,
        Method::Dpo => Objective::Dpo,
        _ => return Ok(None),
    };
    trained_card(model, objective).map(Some)
}

/// The model a method is measured on, with the method's settings and the prompt format.
pub struct MethodModel {
    /// Where the model came from.
    pub model_path: PathBuf,
    /// The training card of an SFT/DPO model.
    pub trained: Option<TrainedModelCard>,
    /// The model.
    pub lm: Model,
    /// DINM, FT-L and ablation settings.
    pub settings: MethodSettings,
    /// How inputs reach the model.
    pub format: PromptFormat,
}

/// Which model a method runs on and how inputs reach it (what `eval`, `general` and `test_ALL`
/// plans share).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelChoice {
    /// A `.gguf` file, a Hugging Face folder or `tiny` [default: the small model].
    pub model: Option<PathBuf>,
    /// The prompt format [default: the model's].
    pub prompt_format: Option<PromptFormat>,
    /// DINM settings (also the suffix prompt of `prompt`).
    pub dinm: DinmOptions,
    /// FT-L and ablation settings.
    pub baselines: BaselineOptions,
    /// How the model's matrices are kept (f32, or bf16 / f16 for half the memory).
    #[serde(skip_serializing_if = "WeightDtype::is_f32")]
    pub dtype: WeightDtype,
}

impl ModelChoice {
    /// Checks the DINM and baseline overrides' ranges (before a model is loaded).
    pub fn check(&self) -> Result<()> {
        self.dinm.check()?;
        self.baselines.check()
    }
}

impl MethodModel {
    /// Loads the model (refusing a non-trained one for `sft` / `dpo`) and its settings.
    pub fn load(method: Method, choice: &ModelChoice, progress: &mut dyn Progress) -> Result<Self> {
        choice.check()?;
        let model_path = paths::model_or_default(choice.model.clone())?;
        let trained = method_card(method, &model_path)?;
        let lm = backend::load_as(&model_path, choice.dtype, progress)?;
        let settings = MethodSettings::new(&lm, &choice.dinm, &choice.baselines)?;
        let format = choice
            .prompt_format
            .clone()
            .unwrap_or_else(|| lm.prompt_format.clone());
        Ok(Self {
            model_path,
            trained,
            lm,
            settings,
            format,
        })
    }
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

/// Edits the model on `record` for an editing method (`None` for the others), reporting the
/// located layer and every step. DINM with `reuse_first_located_layer` fixes the first located
/// layer in `settings` (D1).
pub fn edit_for(
    method: Method,
    lm: &Model,
    record: &SafeEditRecord,
    settings: &mut MethodSettings,
    format: &PromptFormat,
    progress: &mut dyn Progress,
) -> Result<Option<(Model, EditSummary)>> {
    // The events and the stop question both reach the progress, one at a time.
    let shared = std::cell::RefCell::new(progress);
    let dinm = |config: &DinmConfig| {
        dinm_edit_stoppable::<TrainBackend>(
            lm,
            record,
            config,
            format,
            &mut |event| shared.borrow_mut().event(dinm_event(event)),
            &|| shared.borrow().cancelled(),
        )
        .with_context(|| format!("editing instance {}", record.id))
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
            let edit = ftl_edit_stoppable::<TrainBackend>(
                lm,
                record,
                &settings.ftl,
                format,
                &mut |step, loss| shared.borrow_mut().event(Event::Step { step, loss }),
                &|| shared.borrow().cancelled(),
            )
            .with_context(|| format!("editing instance {} with FT-L", record.id))?;
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

/// D1 (`reuse_first_located_layer`) when this process does not edit on the run's first
/// instance (a resumed run, a shard without it): fixes the layer that instance's edit located,
/// from its stored edit when there is one, else by locating on it as its edit did.
pub fn reuse_first_layer(
    method: Method,
    lm: &Model,
    first: &SafeEditRecord,
    stored: Option<&EditSummary>,
    settings: &mut MethodSettings,
    progress: &mut dyn Progress,
) -> Result<()> {
    if method != Method::Dinm
        || !settings.dinm.reuse_first_located_layer
        || settings.dinm.layer.is_some()
    {
        return Ok(());
    }
    let layer = match stored {
        Some(edit) => edit.layer,
        None => {
            locate_toxic_layer(
                lm,
                &first.safe_generation,
                &first.unsafe_generation,
                settings.dinm.padding_side,
            )
            .with_context(|| format!("locating on the first instance ({})", first.id))?
            .layer
        }
    };
    progress.note(format!(
        "--reuse-first-layer: layer {layer}, the first instance's ({})",
        first.id
    ));
    settings.dinm.layer = Some(layer);
    Ok(())
}

/// A DINM progress event as a pipeline event.
pub(crate) fn dinm_event(event: DinmEvent) -> Event {
    match event {
        DinmEvent::Located(found) => Event::Located {
            layer: found.layer,
            distances: found.distances,
        },
        DinmEvent::Step(step) => Event::Step {
            step: step.step,
            loss: step.loss,
        },
    }
}
