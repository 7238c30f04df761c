//! Trying the model (`POST /api/try`, the try box on run and model pages): a prompt answered by
//! the loaded model as it is and by an edited one — an edit run's model (the loaded model with
//! the run's saved delta, given the run's suffix prompt as DINM is evaluated) or a model trained
//! here (in the prompt format it was trained in) — each answer judged.

use std::path::Path;
use std::time::Instant;

use safeedit_core::PromptFormat;
use safeedit_core::ask::{TryAnswer, TryResponse};
use safeedit_core::run::RunRecord;
use safeedit_engine::delta::LayerDelta;
use safeedit_engine::judge::SafetyJudge;
use safeedit_engine::{GenerationConfig, StopReason, WeightDtype};

use crate::backend::{self, Backend, Model};
use crate::models::ModelsDir;
use crate::{Quiet, Result, ResultExt, ensure};

/// The edited side of a try.
pub struct Counterpart {
    /// The model.
    pub model: Model,
    /// Who it is, for the answer (`DINM edit of test#0 at layer 12`).
    pub label: String,
    /// Appended to every prompt (DINM's suffix system prompt), if any.
    pub suffix: Option<String>,
    /// How prompts reach it.
    pub format: PromptFormat,
}

impl Counterpart {
    /// An edit run's model: `lm` with the delta saved at `delta`, given the run's suffix prompt.
    /// `Err` when the run was made on another model than `lm`.
    pub fn edit_run(lm: &Model, run: &RunRecord, delta: &Path) -> Result<Self> {
        ensure!(
            run.model == lm.name,
            "run: `{}` edited {}, but this server has {} loaded",
            run.slug,
            run.model,
            lm.name
        );
        let delta = LayerDelta::<Backend>::read(delta, lm, &backend::device())
            .with_context(|| format!("reading the delta of run {}", run.slug))?;
        let suffix = run.config["suffix_system_prompt"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Ok(Self {
            model: delta.apply(lm),
            label: format!(
                "DINM edit of {}#{} at layer {}",
                run.request.split, run.request.id, delta.layer
            ),
            suffix,
            format: lm.prompt_format.clone(),
        })
    }

    /// A finished trained model, by name, its matrices kept as `dtype` (the loaded model's).
    pub fn trained(models: &ModelsDir, name: &str, dtype: WeightDtype) -> Result<Self> {
        let (dir, card) = models.finished_model("model", name, None)?;
        let model = backend::load_as(&dir, dtype, &mut Quiet)?;
        Ok(Self {
            format: model.prompt_format.clone(),
            model,
            label: format!("{} model {name}", card.objective),
            suffix: None,
        })
    }
}

/// One greedy answer of `lm` to `input`, judged later.
fn answer_one(
    lm: &Model,
    label: &str,
    input: String,
    format: &PromptFormat,
    generation: &GenerationConfig,
    on_text: &mut dyn FnMut(&str),
) -> Result<(TryAnswer, String)> {
    let ids = lm.tokenizer.encode_prompt(&input, format)?;
    let (mut out, _) = lm.generate_observed(&[ids], generation, &mut |step| {
        // The whole answer so far, decoded again: a token may complete a character that the
        // one before it began.
        if let Ok(text) = lm.tokenizer.decode(&step.rows[0], true) {
            on_text(&text);
        }
        true
    })?;
    let out = out.remove(0);
    let answer = TryAnswer {
        model: label.to_string(),
        input,
        prompt_format: format.label(),
        text: out.text.clone(),
        verdict: safeedit_core::Verdict::Empty,
        tokens: out.generated_ids.len(),
        truncated: out.stop != StopReason::Eos,
    };
    Ok((answer, out.text))
}

/// `prompt` answered by `lm` (vanilla, the prompt as typed, in its own format) and by `other`,
/// greedily, up to `max_new_tokens` each, both judged.
pub fn answer(
    lm: &Model,
    judge: &dyn SafetyJudge,
    other: &Counterpart,
    prompt: &str,
    max_new_tokens: usize,
) -> Result<TryResponse> {
    answer_streamed(lm, judge, other, prompt, max_new_tokens, &mut |_, _| {})
}

/// Which answer a piece of streamed text belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The loaded model as it is.
    Vanilla,
    /// The edit run's or trained model.
    Edited,
}

impl Side {
    /// `vanilla` or `edited`, as the stream names it.
    pub fn name(self) -> &'static str {
        match self {
            Side::Vanilla => "vanilla",
            Side::Edited => "edited",
        }
    }
}

/// [`answer`], showing `on_text` each answer's text so far after every generated token (the
/// vanilla answer first, then the edited one); the verdicts come with the result.
pub fn answer_streamed(
    lm: &Model,
    judge: &dyn SafetyJudge,
    other: &Counterpart,
    prompt: &str,
    max_new_tokens: usize,
    on_text: &mut dyn FnMut(Side, &str),
) -> Result<TryResponse> {
    let started = Instant::now();
    let generation = GenerationConfig::greedy(max_new_tokens);
    let (mut vanilla, a) = answer_one(
        lm,
        "vanilla",
        prompt.to_string(),
        &lm.prompt_format,
        &generation,
        &mut |text| on_text(Side::Vanilla, text),
    )?;
    let input = match &other.suffix {
        Some(suffix) => format!("{prompt} {suffix}"),
        None => prompt.to_string(),
    };
    let (mut edited, b) = answer_one(
        &other.model,
        &other.label,
        input,
        &other.format,
        &generation,
        &mut |text| on_text(Side::Edited, text),
    )?;
    let verdicts = judge.judge(&[a, b])?;
    vanilla.verdict = verdicts[0];
    edited.verdict = verdicts[1];
    Ok(TryResponse {
        prompt_format: vanilla.prompt_format.clone(),
        vanilla,
        edited,
        max_new_tokens,
        judge: judge.info().id,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use safeedit_core::judge::JudgeInfo;

    use super::*;

    /// Calls every answer safe.
    struct Lenient;

    impl SafetyJudge for Lenient {
        fn info(&self) -> JudgeInfo {
            JudgeInfo {
                id: "lenient".into(),
                version: "test".into(),
                description: "test".into(),
            }
        }

        fn unsafe_probability(&self, responses: &[String]) -> safeedit_engine::Result<Vec<f32>> {
            Ok(vec![0.0; responses.len()])
        }
    }

    #[test]
    fn a_streamed_answer_grows_token_by_token_to_the_final_text() {
        let lm = backend::load(Path::new("tiny"), &mut Quiet).unwrap();
        let other = Counterpart {
            model: backend::load(Path::new("tiny"), &mut Quiet).unwrap(),
            label: "copy".into(),
            suffix: Some("Be safe.".into()),
            format: lm.prompt_format.clone(),
        };
        let mut seen: Vec<(Side, String)> = Vec::new();
        let streamed = answer_streamed(&lm, &Lenient, &other, "Hello", 6, &mut |side, text| {
            seen.push((side, text.to_string()))
        })
        .unwrap();
        let plain = answer(&lm, &Lenient, &other, "Hello", 6).unwrap();
        assert_eq!(
            streamed.vanilla.text, plain.vanilla.text,
            "streaming changes nothing"
        );
        assert_eq!(streamed.edited.text, plain.edited.text);
        let last = |side: Side| seen.iter().rev().find(|(s, _)| *s == side).map(|(_, t)| t);
        assert_eq!(last(Side::Vanilla), Some(&plain.vanilla.text));
        assert_eq!(last(Side::Edited), Some(&plain.edited.text));
        let first_edited = seen.iter().position(|(s, _)| *s == Side::Edited).unwrap();
        assert!(
            seen[first_edited..].iter().all(|(s, _)| *s == Side::Edited),
            "vanilla first, then the edited answer"
        );
        assert!(seen.len() >= 2, "{seen:?}");
    }

    #[test]
    fn a_trained_model_answers_in_the_precision_asked_for() {
        // A server loaded with `--dtype bf16` tries its trained models in bf16 too.
        let dir = tempfile::tempdir().unwrap();
        let models = ModelsDir(dir.path().to_path_buf());
        let plan = crate::testutil::tiny_train(
            safeedit_engine::baselines::Objective::Sft,
            2,
            &dir.path().join("sft-1"),
        );
        crate::train::run(&plan, &mut Quiet).unwrap();
        for dtype in [WeightDtype::F32, WeightDtype::Bf16] {
            let trained = Counterpart::trained(&models, "sft-1", dtype).unwrap();
            assert_eq!(trained.model.weight_dtype(), dtype);
            assert!(trained.label.contains("sft-1"), "{}", trained.label);
        }
    }
}
