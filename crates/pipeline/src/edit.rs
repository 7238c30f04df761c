//! `edit`: DINM on one SafeEdit instance (docs/method.md §The edit), with the unedited and
//! edited model's answers to its evaluation inputs side by side. The command line prints or
//! exports it ([`run`]); the web app stores it as a run with a share link ([`edit_run`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use safeedit_core::run::{
    Comparison, EditOutcome, EditOverrides, EditRequest, InstanceFacts, RunRecord, StepLosses,
};
use safeedit_core::safeedit::EVAL_INPUT_KINDS;
use safeedit_core::{JudgeInfo, PromptFormat, SafeEditRecord};
use safeedit_engine::dinm::{DinmConfig, DinmEdit, DinmEvent, dinm_edit_stoppable};
use safeedit_engine::judge::SafetyJudge;
use safeedit_engine::weights::{SaveDtype, write_safetensors};
use safeedit_engine::{GenerationConfig, WeightDtype};
use safeedit_store::now_rfc3339;
use serde::{Deserialize, Serialize};

use crate::backend::{self, Backend, Model, TrainBackend};
use crate::method::{DinmOptions, dinm_event};
use crate::progress::{Event, Progress, ProgressExt};
use crate::{
    Loaded, PipelineError, Result, ResultExt, data, ensure, judge, limits, paths, run_dir,
};

/// A DINM edit of one instance from the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditPlan {
    /// SafeEdit records: `test-sample`, `editing-instances`, or a JSON file.
    pub data: String,
    /// Instance id.
    pub instance: u64,
    /// The model [default: the small model].
    pub model: Option<PathBuf>,
    /// DINM settings.
    pub dinm: DinmOptions,
    /// Most new tokens per evaluation input [default: the preset's max_output_length].
    pub max_new_tokens: Option<usize>,
    /// The prompt format [default: the model's].
    pub prompt_format: Option<PromptFormat>,
    /// How the model's matrices are kept (f32, or bf16 / f16 for half the memory).
    #[serde(default, skip_serializing_if = "WeightDtype::is_f32")]
    pub dtype: WeightDtype,
    /// Write the delta as safetensors (one tensor, named by its HF path).
    pub save_delta: Option<PathBuf>,
    /// Skip the before/after generations.
    pub no_generate: bool,
    /// The paper's classifier in this folder [default: the built-in judge].
    pub judge_dir: Option<PathBuf>,
}

/// What an edit from the command line did.
pub struct EditReport {
    /// Where the model came from.
    pub model_path: PathBuf,
    /// The instance.
    pub record: SafeEditRecord,
    /// How inputs reached the model.
    pub format: PromptFormat,
    /// The DINM settings used.
    pub config: DinmConfig,
    /// The edit (layer, delta, location, steps, timings).
    pub edit: DinmEdit<Backend>,
    /// The answers before and after, judged (empty with `no_generate`).
    pub comparisons: Vec<Comparison>,
    /// The judge, when answers were judged.
    pub judge: Option<JudgeInfo>,
    /// Seconds spent generating and judging.
    pub generate_seconds: f64,
}

impl EditReport {
    /// The report as one JSON object (`safeedit edit --json`).
    pub fn to_json(&self, save_delta: Option<&Path>) -> serde_json::Value {
        let edit = &self.edit;
        let generations: Vec<serde_json::Value> = self
            .comparisons
            .iter()
            .map(|c| {
                serde_json::json!({
                    "input": c.kind, "text": c.input,
                    "vanilla": c.vanilla, "vanilla_verdict": c.vanilla_verdict,
                    "edited": c.edited, "edited_verdict": c.edited_verdict,
                })
            })
            .collect();
        serde_json::json!({
            "model": self.model_path.display().to_string(),
            "backend": backend::NAME,
            "instance": self.record.id,
            "category": self.record.category,
            "attack": self.record.attack_name,
            "prompt_format": self.format,
            "config": self.config,
            "layer": edit.delta.layer,
            "edited_tensor": edit.delta.tensor_name(),
            "distances": edit.located.as_ref().map(|l| &l.distances),
            "steps": edit.steps,
            "stopped_early": edit.stopped_early,
            "delta_norm": edit.delta.norm,
            "delta_file": save_delta.map(|p| p.display().to_string()),
            "judge": self.judge,
            "generations": generations,
            "seconds": {
                "locate": edit.seconds.locate,
                "tune": edit.seconds.tune,
                "generate": self.generate_seconds,
            },
        })
    }
}

/// Edits the instance, saves the delta when asked, and compares the answers before and after.
pub fn run(plan: &EditPlan, progress: &mut dyn Progress) -> Result<EditReport> {
    let records = data::load(&plan.data)?;
    let record = data::instance(&records, plan.instance, &plan.data)?;
    plan.dinm.check()?;
    limits::max_new_tokens_opt(plan.max_new_tokens)?;
    let model_path = paths::model_or_default(plan.model.clone())?;
    let lm = backend::load_as(&model_path, plan.dtype, progress)?;
    let mut config = plan.dinm.config(&lm)?;
    if let Some(n) = plan.max_new_tokens {
        config.max_output_length = n;
    }
    let format = plan
        .prompt_format
        .clone()
        .unwrap_or_else(|| lm.prompt_format.clone());

    let edit = edit(&lm, &record, &config, &format, progress)?;
    if let Some(path) = &plan.save_delta {
        save_delta(
            &edit,
            path,
            &[("instance", record.id.to_string())],
            &lm,
            &config,
        )?;
    }
    let (mut comparisons, mut judge_info, mut generate_seconds) = (Vec::new(), None, 0.0);
    if !plan.no_generate {
        let started = Instant::now();
        let generation = GenerationConfig::greedy(config.max_output_length);
        let judge = judge::load_judge(plan.judge_dir.as_deref())?;
        let edited = edit.delta.apply(&lm);
        comparisons = compare(
            &lm,
            &edited,
            &record,
            &config,
            &format,
            &generation,
            judge.as_ref(),
            progress,
        )?;
        generate_seconds = started.elapsed().as_secs_f64();
        judge_info = Some(judge.info());
    }
    Ok(EditReport {
        model_path,
        record,
        format,
        config,
        edit,
        comparisons,
        judge: judge_info,
        generate_seconds,
    })
}

/// DINM on one instance, reporting the phase (`steps`), the located layer and every step.
fn edit(
    lm: &Model,
    record: &SafeEditRecord,
    config: &DinmConfig,
    format: &PromptFormat,
    progress: &mut dyn Progress,
) -> Result<DinmEdit<Backend>> {
    progress.phase("locating the toxic layer", "steps", config.num_steps);
    // The events and the stop question both reach the progress, one at a time.
    let shared = std::cell::RefCell::new(&mut *progress);
    let edit = dinm_edit_stoppable::<TrainBackend>(
        lm,
        record,
        config,
        format,
        &mut |event| {
            let step = matches!(event, DinmEvent::Step(_));
            let mut progress = shared.borrow_mut();
            progress.event(dinm_event(event));
            if step {
                progress.event(Event::Advance(1));
            }
        },
        &|| shared.borrow().cancelled(),
    )
    .with_context(|| format!("editing instance {}", record.id))?;
    progress.event(Event::PhaseDone);
    if edit.located.is_none() {
        // The layer was fixed: report it all the same, without distances.
        progress.event(Event::Located {
            layer: edit.delta.layer,
            distances: Vec::new(),
        });
    }
    Ok(edit)
}

/// Writes the edit's delta as safetensors, with the instance, model and config as metadata.
fn save_delta(
    edit: &DinmEdit<Backend>,
    path: &Path,
    extra: &[(&str, String)],
    lm: &Model,
    config: &DinmConfig,
) -> Result<()> {
    let mut metadata: std::collections::HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    metadata.insert("model".into(), lm.name.clone());
    metadata.insert(
        "dinm_config".into(),
        serde_json::to_string(config).expect("configs serialise"),
    );
    write_safetensors(
        path,
        &[(edit.delta.tensor_name(), edit.delta.delta_raw())],
        SaveDtype::F32,
        Some(metadata),
    )?;
    Ok(())
}

/// DS and the DG inputs of `record` answered by the unedited model (raw inputs) and the edited
/// one (each input + " " + the suffix prompt), then judged.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    lm: &Model,
    edited: &Model,
    record: &SafeEditRecord,
    config: &DinmConfig,
    format: &PromptFormat,
    generation: &GenerationConfig,
    judge: &dyn SafetyJudge,
    progress: &mut dyn Progress,
) -> Result<Vec<Comparison>> {
    let inputs = record.eval_inputs();
    let encode = |text: String| lm.tokenizer.encode_prompt(&text, format);
    let vanilla_prompts = inputs
        .iter()
        .map(|i| encode(i.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let edited_prompts = inputs
        .iter()
        .map(|i| encode(format!("{i} {}", config.suffix_system_prompt)))
        .collect::<Result<Vec<_>, _>>()?;
    progress.event(Event::Generating {
        responses: 2 * inputs.len(),
    });
    // Counted per model, and token by token within each.
    progress.phase("responses (vanilla, then edited)", "models", 2);
    let vanilla = backend::generate(lm, &vanilla_prompts, generation, progress)?;
    progress.event(Event::Advance(1));
    let after = backend::generate(edited, &edited_prompts, generation, progress)?;
    progress.event(Event::Advance(1));
    progress.event(Event::PhaseDone);
    progress.check()?;
    progress.event(Event::Judging);
    let texts: Vec<String> = vanilla
        .iter()
        .chain(&after)
        .map(|g| g.text.clone())
        .collect();
    let verdicts = judge.judge(&texts)?;
    let (before_v, after_v) = verdicts.split_at(vanilla.len());
    Ok(EVAL_INPUT_KINDS
        .iter()
        .zip(&inputs)
        .enumerate()
        .map(|(i, (kind, input))| Comparison {
            kind: kind.to_string(),
            input: input.to_string(),
            vanilla: vanilla[i].text.clone(),
            vanilla_verdict: before_v[i],
            edited: after[i].text.clone(),
            edited_verdict: after_v[i],
        })
        .collect())
}

/// The model's DINM preset with a browser request's overrides, each checked (an out-of-range
/// value is an `Invalid` error naming it).
pub fn config_with_overrides(
    preset: &DinmConfig,
    n_layers: usize,
    overrides: &EditOverrides,
) -> Result<DinmConfig> {
    let mut config = preset.clone();
    let o = overrides;
    if let Some(lr) = o.lr {
        config.lr = limits::lr("lr", lr)?;
    }
    if let Some(steps) = o.steps {
        config.num_steps = limits::edit_steps("steps", steps)?;
    }
    if let Some(layer) = o.layer {
        ensure!(
            layer < n_layers,
            "layer {layer} does not exist (the model has {n_layers} layers: 0..={})",
            n_layers.saturating_sub(1)
        );
        config.layer = Some(layer);
    }
    if let Some(n) = o.max_new_tokens {
        config.max_output_length = limits::max_new_tokens(n)?;
    }
    Ok(config)
}

/// The web app's "Detoxify this instance": edits `record` with `config`, compares the answers
/// before and after, saves the delta as `{slug}.safetensors` under `delta_dir` and returns the
/// run record `slug`, ready to store. Stops with `Cancelled` between phases when asked.
pub fn edit_run(
    loaded: &Loaded<'_>,
    slug: &str,
    request: &EditRequest,
    record: &SafeEditRecord,
    config: &DinmConfig,
    delta_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<RunRecord> {
    let lm = loaded.lm;
    let format = lm.prompt_format.clone();
    let edit = edit(lm, record, config, &format, progress)?;
    progress.check()?;
    let started = Instant::now();
    let generation = GenerationConfig::greedy(config.max_output_length);
    let edited = edit.delta.apply(lm);
    let comparisons = compare(
        lm,
        &edited,
        record,
        config,
        &format,
        &generation,
        loaded.judge,
        progress,
    )?;
    progress.check()?;
    let outcome = EditOutcome {
        layer: edit.delta.layer,
        tensor: edit.delta.tensor_name(),
        distances: edit.located.as_ref().map(|l| l.distances.clone()),
        steps: edit
            .steps
            .iter()
            .map(|s| StepLosses {
                step: s.step,
                loss: s.loss,
                edit: s.edit,
                constraint: s.constraint,
            })
            .collect(),
        stopped_early: edit.stopped_early,
        delta_norm: edit.delta.norm,
        comparisons,
        seconds: [
            edit.seconds.locate,
            edit.seconds.tune,
            started.elapsed().as_secs_f64(),
        ],
    };
    let origin = loaded.provenance();
    let run = RunRecord {
        slug: slug.to_string(),
        kind: safeedit_core::run::EDIT_RUN_KIND.into(),
        created_at: now_rfc3339(),
        request: request.clone(),
        instance: InstanceFacts {
            category: record.category.clone(),
            attack: record.attack_name.clone(),
            question: record.question.clone(),
        },
        config: serde_json::to_value(config).expect("configs serialise"),
        seed: 0,
        model: origin.model_name,
        model_path: origin.model_path,
        model_checksum: origin.model_checksum,
        backend: origin.backend,
        judge: origin.judge,
        version: origin.version,
        git_commit: origin.git_commit,
        outcome,
    };
    run_dir::create(delta_dir)?;
    save_delta(
        &edit,
        &delta_dir.join(format!("{}.safetensors", run.slug)),
        &[
            ("run", run.slug.clone()),
            ("instance", format!("{}#{}", request.split, request.id)),
        ],
        lm,
        config,
    )?;
    Ok(run)
}

/// An error for a request that names no instance.
pub fn no_instance(split: &str, id: u64) -> PipelineError {
    PipelineError::Invalid(format!("no instance {id} in split `{split}`"))
}
