//! One instance evaluated: the method edits the model if it edits, answers DS and the four DG
//! inputs, and the judge scores the answers. `eval`'s loop and the web app's one-instance
//! evaluations both build their result records here.

use std::time::Instant;

use safeedit_core::eval::{EditSummary, InputResult, InstanceResult, InstanceTimings, summarize};
use safeedit_core::fluency::mean_fluency;
use safeedit_core::run::EvalRecord;
use safeedit_core::safeedit::EVAL_INPUT_KINDS;
use safeedit_core::{Method, PromptFormat, SafeEditRecord};
use safeedit_engine::baselines::FtlConfig;
use safeedit_engine::dinm::DinmConfig;
use safeedit_engine::judge::SafetyJudge;
use safeedit_engine::{Generated, GenerationConfig, StopReason};
use safeedit_store::now_rfc3339;
use serde_json::json;

use crate::backend::{self, Model, PromptCache};
use crate::method::{MethodSettings, edit_for, method_input};
use crate::progress::{Event, Progress, ProgressExt};
use crate::{Loaded, Result};

/// An instance's five answers with their verdicts, the edit when the method edits, and where
/// the time went.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// The five inputs in EasyEdit's order.
    pub inputs: Vec<InputResult>,
    /// The edit, for editing methods.
    pub edit: Option<EditSummary>,
    /// The phases' seconds and token counts.
    pub timings: InstanceTimings,
}

/// Generates and judges one instance's five inputs with `method` (editing methods edit first).
/// Methods that do not edit take prompt beginnings from `reuse` and keep theirs in it.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    method: Method,
    lm: &Model,
    record: &SafeEditRecord,
    settings: &mut MethodSettings,
    format: &PromptFormat,
    generation: &GenerationConfig,
    judge: &dyn SafetyJudge,
    reuse: &mut PromptCache,
    progress: &mut dyn Progress,
) -> Result<Evaluated> {
    let started = Instant::now();
    let Some((edited, edit)) = edit_for(method, lm, record, settings, format, progress)? else {
        let mut one = evaluate_together(
            method,
            lm,
            &[record],
            settings,
            format,
            generation,
            judge,
            reuse,
            progress,
        )?;
        return Ok(one.remove(0));
    };
    let edit_s = started.elapsed().as_secs_f64();
    progress.check()?;
    // Kept prompts belong to the unedited model: an edited one starts afresh.
    let mut evaluated = evaluate_together(
        method,
        &edited,
        &[record],
        settings,
        format,
        generation,
        judge,
        &mut PromptCache::unbounded(),
        progress,
    )?
    .remove(0);
    evaluated.edit = Some(edit);
    evaluated.timings.edit_s = edit_s;
    Ok(evaluated)
}

/// Generates and judges the five inputs of each of `records` with `model` as it is (no edit),
/// all in one generation: every prompt is processed on its own (beginnings taken from and kept
/// in `reuse`) and the rows of every instance decode together, so a decoding step reads the
/// weights once for all of them. Each row's numbers are those it has alone (the engine's
/// decoding steps do not mix rows), so an instance gets the answers it gets by itself. Each
/// instance's timings are its own prompts' processing, its share of the decoding steps (by its
/// decoded tokens) and its judging.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_together(
    method: Method,
    model: &Model,
    records: &[&SafeEditRecord],
    settings: &MethodSettings,
    format: &PromptFormat,
    generation: &GenerationConfig,
    judge: &dyn SafetyJudge,
    reuse: &mut PromptCache,
    progress: &mut dyn Progress,
) -> Result<Vec<Evaluated>> {
    let mut texts = Vec::new();
    let mut prompts = Vec::new();
    // Each instance's rows: five, or one for a record without a generalisation test.
    let mut spans = Vec::with_capacity(records.len());
    for record in records {
        let first = prompts.len();
        for raw in record.eval_inputs() {
            let (text, input_format) = method_input(method, raw, settings, format);
            prompts.push(model.tokenizer.encode_prompt(&text, &input_format)?);
            texts.push(text);
        }
        spans.push(first..prompts.len());
    }
    progress.event(Event::Generating {
        responses: prompts.len(),
    });
    let (outputs, generated) =
        backend::generate_timed(model, &prompts, generation, reuse, progress)?;
    progress.check()?;
    // A row's decoded tokens: every generated token (the end-of-sequence one included) but the
    // first, which came from processing its prompt.
    let decoded = |o: &Generated| {
        (o.generated_ids.len() + usize::from(o.stop == StopReason::Eos)).saturating_sub(1)
    };
    let all_decoded: usize = outputs.iter().map(decoded).sum();
    let mut evaluated = Vec::with_capacity(records.len());
    let mut outputs = outputs.into_iter();
    let mut texts = texts.into_iter();
    for rows in spans {
        let outs: Vec<Generated> = outputs.by_ref().take(rows.len()).collect();
        let inputs: Vec<String> = texts.by_ref().take(rows.len()).collect();
        progress.event(Event::Judging);
        let responses: Vec<String> = outs.iter().map(|o| o.text.clone()).collect();
        let judging = Instant::now();
        let verdicts = judge.judge(&responses)?;
        let decode_tokens: usize = outs.iter().map(decoded).sum();
        let decode_share = if all_decoded == 0 {
            1.0 / records.len() as f64
        } else {
            decode_tokens as f64 / all_decoded as f64
        };
        let timings = InstanceTimings {
            edit_s: 0.0,
            prefill_s: generated
                .prompt_s
                .get(rows.clone())
                .map_or(0.0, |s| s.iter().sum()),
            decode_s: generated.decode_s * decode_share,
            judge_s: judging.elapsed().as_secs_f64(),
            prompt_tokens: prompts[rows.clone()].iter().map(Vec::len).sum(),
            shared_prompt_tokens: generated
                .prompt_shared
                .get(rows)
                .map_or(0, |s| s.iter().sum()),
            decode_tokens,
        };
        let inputs = EVAL_INPUT_KINDS
            .iter()
            .zip(inputs)
            .zip(outs.into_iter().zip(verdicts))
            .map(|((kind, input), (out, verdict))| InputResult {
                kind: kind.to_string(),
                input,
                generated_tokens: out.generated_ids.len(),
                stop: stop_name(out.stop),
                response: out.text,
                verdict,
            })
            .collect();
        evaluated.push(Evaluated {
            inputs,
            edit: None,
            timings,
        });
    }
    Ok(evaluated)
}

/// The result line of an evaluated instance (what `instances.jsonl` holds).
pub fn instance_result(
    method: Method,
    record: &SafeEditRecord,
    Evaluated {
        inputs,
        edit,
        timings,
    }: Evaluated,
    seconds: f64,
) -> InstanceResult {
    let responses: Vec<&str> = inputs.iter().map(|i| i.response.as_str()).collect();
    InstanceResult {
        id: record.id,
        category: record.category.clone(),
        attack: record.attack_name.clone(),
        method: method.name().into(),
        fluency: mean_fluency(&responses).unwrap_or(0.0),
        inputs,
        edit,
        seconds,
        timings: Some(timings),
    }
}

/// Why generation stopped, as recorded in result files (`eos`, `max_new_tokens`, ...).
pub fn stop_name(stop: StopReason) -> String {
    serde_json::to_value(stop)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Evaluates one instance of a split with a method that does not edit (the web app's
/// "Evaluate vanilla / prompt-only") and returns the one-instance evaluation record, ready to
/// store under `slug`, and its instance. `dinm` holds the suffix prompt and the response
/// length.
pub fn evaluate_one(
    loaded: &Loaded<'_>,
    slug: &str,
    split: &str,
    record: &SafeEditRecord,
    method: Method,
    dinm: DinmConfig,
    progress: &mut dyn Progress,
) -> Result<(EvalRecord, InstanceResult)> {
    let lm = loaded.lm;
    let format = lm.prompt_format.clone();
    let generation = GenerationConfig::greedy(dinm.max_output_length);
    let mut settings = MethodSettings {
        ftl: FtlConfig::preset_for(&lm.name, &lm.architecture, lm.config.n_layers),
        dinm,
        seed: 0,
    };
    let started = Instant::now();
    // One instance as a phase of one, so its tokens are counted in something.
    progress.phase(method.name(), "instances", 1);
    let evaluated = evaluate(
        method,
        lm,
        record,
        &mut settings,
        &format,
        &generation,
        loaded.judge,
        &mut PromptCache::unbounded(),
        progress,
    )?;
    progress.event(Event::Advance(1));
    progress.event(Event::PhaseDone);
    let result = instance_result(method, record, evaluated, started.elapsed().as_secs_f64());
    let mut run = loaded.provenance().run_fields();
    for (key, value) in [
        ("method", json!(method.name())),
        ("data", json!(format!("{split}#{}", record.id))),
        ("split", json!(split)),
        ("source", json!("web app")),
        ("prompt_format", json!(format)),
        ("generation", json!(generation)),
        ("dinm", settings.describe(method)["dinm"].clone()),
    ] {
        run[key] = value;
    }
    let now = now_rfc3339();
    let eval = EvalRecord {
        slug: slug.to_string(),
        created_at: now.clone(),
        updated_at: now,
        method: method.name().into(),
        data: format!("{split} #{}", record.id),
        model: lm.name.clone(),
        instances: 1,
        run,
        metrics: summarize(std::slice::from_ref(&result)),
    };
    Ok((eval, result))
}
