//! Trying the model (`POST /api/try`): one prompt answered by the vanilla model and by an edited
//! one (an edit run's model, or a model trained here), side by side, each answer judged.

use serde::{Deserialize, Serialize};

use crate::judge::Verdict;

/// The most new tokens a try may ask for.
pub const MAX_TRY_TOKENS: usize = 512;

/// The longest prompt a try takes, in characters.
pub const MAX_TRY_PROMPT: usize = 8000;

/// The body of `POST /api/try`: a prompt for the vanilla model and the model of an edit run
/// (`run`) or a trained model (`model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TryRequest {
    /// An edit run's slug: its edited model answers (with the suffix prompt DINM is evaluated
    /// with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// A trained model's name: it answers in the prompt format it was trained in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What to ask.
    pub prompt: String,
    /// Most new tokens per answer [default: 128, at most 512].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
}

impl TryRequest {
    /// The token limit, checked; `Err` names the field.
    pub fn token_limit(&self) -> Result<usize, String> {
        match self.max_new_tokens {
            None => Ok(128),
            Some(n) if (1..=MAX_TRY_TOKENS).contains(&n) => Ok(n),
            Some(n) => Err(format!(
                "max_new_tokens: must be 1 to {MAX_TRY_TOKENS} (got {n})"
            )),
        }
    }

    /// Checks everything but whether the run or model exists; `Err` names the field.
    pub fn check(&self) -> Result<(), String> {
        match (&self.run, &self.model) {
            (Some(_), Some(_)) => return Err("run, model: name one of them, not both".into()),
            (None, None) => {
                return Err(
                    "run, model: name an edit run (`run`) or a trained model (`model`)".into(),
                );
            }
            _ => {}
        }
        if self.prompt.trim().is_empty() {
            return Err("prompt: empty".into());
        }
        let chars = self.prompt.chars().count();
        if chars > MAX_TRY_PROMPT {
            return Err(format!(
                "prompt: {chars} characters, at most {MAX_TRY_PROMPT}"
            ));
        }
        self.token_limit().map(|_| ())
    }
}

/// One side's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TryAnswer {
    /// Which model answered (`vanilla`, `DINM edit of test#0 at layer 12`, `sft model sft-1`).
    pub model: String,
    /// The text the model was given (the prompt, with the suffix for a DINM edit).
    pub input: String,
    /// How it was given (`chat template`, `plain text`).
    pub prompt_format: String,
    /// The answer.
    pub text: String,
    /// The judge's verdict on it.
    pub verdict: Verdict,
    /// New tokens generated.
    pub tokens: usize,
    /// Cut at the token limit (rather than ended by the model).
    pub truncated: bool,
}

/// The answer of `POST /api/try`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TryResponse {
    /// The loaded model, unedited, on the prompt as typed.
    pub vanilla: TryAnswer,
    /// The edited or trained model.
    pub edited: TryAnswer,
    /// The vanilla side's prompt format (the edited side's is in its answer).
    pub prompt_format: String,
    /// The token limit both answers had.
    pub max_new_tokens: usize,
    /// Who judged (the judge's id).
    pub judge: String,
    /// Seconds the two answers took.
    pub seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_naming_the_field() {
        let ok: TryRequest =
            serde_json::from_str(r#"{"run": "abc", "prompt": "How do I pick a lock?"}"#).unwrap();
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(ok.token_limit(), Ok(128));
        for (json, needle) in [
            (r#"{"prompt": "hi"}"#, "run, model: name an edit run"),
            (r#"{"run": "a", "model": "b", "prompt": "hi"}"#, "not both"),
            (r#"{"run": "a", "prompt": "  "}"#, "prompt: empty"),
            (
                r#"{"run": "a", "prompt": "hi", "max_new_tokens": 0}"#,
                "max_new_tokens: must be 1 to 512",
            ),
            (
                r#"{"run": "a", "prompt": "hi", "max_new_tokens": 513}"#,
                "(got 513)",
            ),
        ] {
            let request: TryRequest = serde_json::from_str(json).unwrap();
            let err = request.check().unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
        let long = TryRequest {
            run: Some("a".into()),
            model: None,
            prompt: "x".repeat(MAX_TRY_PROMPT + 1),
            max_new_tokens: None,
        };
        assert!(
            long.check()
                .unwrap_err()
                .starts_with("prompt: 8001 characters")
        );
        let err = serde_json::from_str::<TryRequest>(r#"{"run": "a", "promt": "hi"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `promt`"), "{err}");
    }
}
