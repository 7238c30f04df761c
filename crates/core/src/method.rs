//! The methods SafeEdit Studio evaluates (the paper's baselines and ablations, docs/method.md
//! §Baselines), one type for the command line, the run records and the web app's job requests. The
//! serialised names are the ones every record already uses (`dinm`, `self-reminder`, ...).

use serde::{Deserialize, Serialize};

/// An evaluated method. None of the baselines gets the suffix prompt; DINM and its ablations are
/// evaluated with it (except wo/SyPrompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
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
    /// A model fine-tuned by `safeedit train sft`, on the raw inputs.
    Sft,
    /// A model trained by `safeedit train dpo`, on the raw inputs.
    Dpo,
}

impl Method {
    /// Every method, in the order tables list them.
    pub const ALL: [Method; 9] = [
        Method::Vanilla,
        Method::Dinm,
        Method::Prompt,
        Method::SelfReminder,
        Method::Ftl,
        Method::DinmRandomLayer,
        Method::DinmNoSuffix,
        Method::Sft,
        Method::Dpo,
    ];

    /// The methods that run on any loaded model (every one but SFT and DPO, which need a
    /// trained model), in the order the evaluation form lists them.
    pub const ON_LOADED_MODEL: [Method; 7] = [
        Method::Vanilla,
        Method::Prompt,
        Method::SelfReminder,
        Method::Dinm,
        Method::Ftl,
        Method::DinmRandomLayer,
        Method::DinmNoSuffix,
    ];

    /// The name records, URLs and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Method::Vanilla => "vanilla",
            Method::Dinm => "dinm",
            Method::Prompt => "prompt",
            Method::SelfReminder => "self-reminder",
            Method::Ftl => "ftl",
            Method::DinmRandomLayer => "dinm-random-layer",
            Method::DinmNoSuffix => "dinm-no-suffix",
            Method::Sft => "sft",
            Method::Dpo => "dpo",
        }
    }

    /// How pages and forms call it: the name, except `prompt-only` for the suffix prompt alone
    /// (so it reads as the paper's wo/Tune, not as any prompt).
    pub fn label(self) -> &'static str {
        match self {
            Method::Prompt => "prompt-only",
            other => other.name(),
        }
    }

    /// The label of a method stored by name (a name that is no method stays as it is).
    pub fn label_of(name: &str) -> &str {
        match Method::ALL.iter().find(|m| m.name() == name) {
            Some(m) => m.label(),
            None => name,
        }
    }

    /// Whether the method changes the model per instance.
    pub fn edits(self) -> bool {
        matches!(
            self,
            Method::Dinm | Method::Ftl | Method::DinmRandomLayer | Method::DinmNoSuffix
        )
    }

    /// Whether the method runs DINM (and so depends on its settings).
    pub fn uses_dinm(self) -> bool {
        matches!(
            self,
            Method::Dinm | Method::Prompt | Method::DinmRandomLayer | Method::DinmNoSuffix
        )
    }

    /// Whether the method is a model trained by `safeedit train` (evaluated from its folder).
    pub fn is_trained(self) -> bool {
        matches!(self, Method::Sft | Method::Dpo)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A method name that is not one of [`Method::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown method `{0}` (vanilla, dinm, prompt, self-reminder, ftl, dinm-random-layer, dinm-no-suffix, sft, dpo)"
)]
pub struct UnknownMethod(pub String);

impl std::str::FromStr for Method {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Self, UnknownMethod> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMethod(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_match_the_serialised_form() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        let err = "dpo2".parse::<Method>().unwrap_err().to_string();
        assert!(
            err.contains("`dpo2`") && err.contains("self-reminder"),
            "{err}"
        );
        assert_eq!(
            Method::ALL.iter().filter(|m| m.edits()).count(),
            4,
            "dinm, ftl and two ablations edit"
        );
        assert!(Method::Prompt.uses_dinm() && !Method::Prompt.edits());
    }
}
