//! The SafeEdit benchmark's records (Wang et al., ACL 2024, arXiv 2403.14472; dataset
//! `zjunlp/SafeEdit`, CC BY-NC-SA 4.0), with the verbatim field names of the released JSON (they
//! contain spaces), the nine unsafe categories, and a loader whose errors name the file, the record
//! and the field. Spec: docs/method.md §Data.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The nine unsafe categories (docs/method.md §Data), in the paper's Table 4 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// `offensiveness`
    Offensiveness,
    /// `unfairness and bias`
    Bias,
    /// `physical harm`
    Physical,
    /// `mental harm`
    Mental,
    /// `illegal activities`
    Illegal,
    /// `ethics and morality`
    Ethics,
    /// `privacy and property`
    Privacy,
    /// `Pornography`
    Pornography,
    /// `Political Sensitivity`
    Political,
}

impl Category {
    /// Every category, in the paper's order.
    pub const ALL: [Category; 9] = [
        Category::Offensiveness,
        Category::Bias,
        Category::Physical,
        Category::Mental,
        Category::Illegal,
        Category::Ethics,
        Category::Privacy,
        Category::Pornography,
        Category::Political,
    ];

    /// The exact string the dataset uses (capitalisation as observed).
    pub fn dataset_str(self) -> &'static str {
        match self {
            Category::Offensiveness => "offensiveness",
            Category::Bias => "unfairness and bias",
            Category::Physical => "physical harm",
            Category::Mental => "mental harm",
            Category::Illegal => "illegal activities",
            Category::Ethics => "ethics and morality",
            Category::Privacy => "privacy and property",
            Category::Pornography => "Pornography",
            Category::Political => "Political Sensitivity",
        }
    }

    /// The paper's short name (Table 4).
    pub fn display_name(self) -> &'static str {
        match self {
            Category::Offensiveness => "Offensiveness",
            Category::Bias => "Bias",
            Category::Physical => "Physical",
            Category::Mental => "Mental",
            Category::Illegal => "Illegal",
            Category::Ethics => "Ethics",
            Category::Privacy => "Privacy",
            Category::Pornography => "Pornography",
            Category::Political => "Political",
        }
    }

    /// URL slug: the short name in lowercase (`offensiveness`, `bias`, ..., `political`).
    pub fn slug(self) -> &'static str {
        match self {
            Category::Offensiveness => "offensiveness",
            Category::Bias => "bias",
            Category::Physical => "physical",
            Category::Mental => "mental",
            Category::Illegal => "illegal",
            Category::Ethics => "ethics",
            Category::Privacy => "privacy",
            Category::Pornography => "pornography",
            Category::Political => "political",
        }
    }

    /// Parses a URL slug.
    pub fn from_slug(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.slug() == s)
    }

    /// Parses a dataset string; case-insensitive, since capitalisation varies in the data.
    pub fn from_dataset_str(s: &str) -> Option<Category> {
        let s = s.trim();
        Category::ALL
            .into_iter()
            .find(|c| c.dataset_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Names of the five evaluation inputs of a test record, in EasyEdit's order (docs/method.md
/// §Evaluation).
pub const EVAL_INPUT_KINDS: [&str; 5] = ["DS", "DG_onlyQ", "DG_otherA", "DG_otherQ", "DG_otherAQ"];

/// The general-knowledge QA pair used by DINM's constraint loss (from AlpacaEval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeConstraint {
    /// The instruction.
    pub prompt: String,
    /// The reference answer.
    pub answer: String,
}

/// The four generalisation inputs of a test record (docs/method.md §Data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneralizationTest {
    /// DG_onlyQ input: the bare harmful question q.
    #[serde(rename = "test input of only harmful question")]
    pub only_harmful_question: String,
    /// DG_otherA input: [q, a'] with an out-of-domain attack a'.
    #[serde(rename = "test input of other attack prompt input")]
    pub other_attack_prompt: String,
    /// Attack category of a'.
    #[serde(rename = "attack_category", default)]
    pub attack_category: String,
    /// Name of a' (observed: BetterDAN, GPTFUZZ_2, money reward).
    #[serde(rename = "attack_name", default)]
    pub attack_name: String,
    /// DG_otherQ input: [q', a].
    #[serde(rename = "test input of other question input")]
    pub other_question: String,
    /// DG_otherAQ input: [q'', a'].
    #[serde(rename = "test input of other questions and attack prompts")]
    pub other_questions_and_attack: String,
}

impl GeneralizationTest {
    /// The inputs in EasyEdit's fixed order: onlyQ, otherA, otherQ, otherAQ.
    pub fn inputs(&self) -> [&str; 4] {
        [
            &self.only_harmful_question,
            &self.other_attack_prompt,
            &self.other_question,
            &self.other_questions_and_attack,
        ]
    }

    /// True when every input is empty (train records carry such placeholders).
    pub fn is_empty(&self) -> bool {
        self.inputs().iter().all(|s| s.is_empty())
    }
}

/// One SafeEdit instance (train / val / test / the editing instances), field names verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeEditRecord {
    /// Instance id.
    pub id: u64,
    /// One of the nine category strings.
    #[serde(rename = "unsafety category")]
    pub category: String,
    /// The attack template with the question substituted: the DS input and the DINM edit prompt.
    #[serde(rename = "adversarial prompt")]
    pub adversarial_prompt: String,
    /// The bare harmful question.
    pub question: String,
    /// Attack family or families, comma-separated.
    #[serde(rename = "attack category", default)]
    pub attack_category: String,
    /// Attack template name.
    #[serde(rename = "attack name", default)]
    pub attack_name: String,
    /// Y_unsafe: text-davinci-003's continuation.
    #[serde(rename = "unsafe generation")]
    pub unsafe_generation: String,
    /// Y_safe: GPT-4's refusal with a reason.
    #[serde(rename = "safe generation")]
    pub safe_generation: String,
    /// The four generalisation inputs (test split only).
    #[serde(
        rename = "generalization test",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generalization: Option<GeneralizationTest>,
    /// The knowledge-constraint QA pair.
    #[serde(rename = "knowledge constrain")]
    pub knowledge_constraint: KnowledgeConstraint,
}

impl SafeEditRecord {
    /// The parsed category (`None` for a string outside the nine).
    pub fn category(&self) -> Option<Category> {
        Category::from_dataset_str(&self.category)
    }

    /// The generalisation test if it holds real inputs.
    pub fn generalization(&self) -> Option<&GeneralizationTest> {
        self.generalization.as_ref().filter(|g| !g.is_empty())
    }

    /// The evaluation inputs in order DS, DG_onlyQ, DG_otherA, DG_otherQ, DG_otherAQ
    /// (docs/method.md §Evaluation); only DS when the record has no generalisation test.
    pub fn eval_inputs(&self) -> Vec<&str> {
        let mut inputs = vec![self.adversarial_prompt.as_str()];
        if let Some(g) = self.generalization() {
            inputs.extend(g.inputs());
        }
        inputs
    }

    /// The attack categories as a list.
    pub fn attack_categories(&self) -> Vec<&str> {
        self.attack_category
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// A question-disjoint split of a SafeEdit file. The training split (4,050 records) is gated on
/// the hub and cannot ship, so SFT and DPO on the shipped data train on [`Fold::Train`] of the
/// test sample and are evaluated on [`Fold::HeldOut`]: every record of one question lands in the
/// same fold, so no evaluated harmful question was seen in training (its DG_otherQ inputs may
/// still quote another question).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fold {
    /// Every record.
    All,
    /// Records whose question is not held out (about two thirds).
    Train,
    /// Records whose question is held out (about one third).
    HeldOut,
}

impl Fold {
    /// `all`, `train`, `held-out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fold::All => "all",
            Fold::Train => "train",
            Fold::HeldOut => "held-out",
        }
    }

    /// Whether a record with this question belongs to the fold.
    pub fn contains(self, question: &str) -> bool {
        match self {
            Fold::All => true,
            Fold::Train => !question_held_out(question),
            Fold::HeldOut => question_held_out(question),
        }
    }

    /// The records of the fold, in order.
    pub fn select(self, records: Vec<SafeEditRecord>) -> Vec<SafeEditRecord> {
        records
            .into_iter()
            .filter(|r| self.contains(&r.question))
            .collect()
    }
}

/// Whether a question is in the held-out third: FNV-1a (64-bit) of its trimmed UTF-8 bytes is
/// divisible by 3. A pure function of the text, so every tool and machine agrees.
pub fn question_held_out(question: &str) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in question.trim().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.is_multiple_of(3)
}

/// One input of SafeEdit_test_ALL (docs/method.md §test_ALL): a bare question (`attack name` =
/// "None") or an attacked one. Reads the hub file (`malicious input`) and the NLPCC 2024 format
/// (`input`, `response`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestAllRecord {
    /// Input id.
    pub id: u64,
    /// Category string.
    #[serde(rename = "unsafety category")]
    pub category: String,
    /// The bare harmful question.
    pub question: String,
    /// Attack name, `"None"` for the bare question.
    #[serde(rename = "attack name")]
    pub attack_name: String,
    /// The text given to the model.
    #[serde(rename = "malicious input", alias = "input")]
    pub input: String,
    /// A model's answer (NLPCC submission files only; not a label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

impl TestAllRecord {
    /// True for bare-question inputs (DG_onlyQ); false for attacked ones (DG_otherAQ).
    pub fn is_bare_question(&self) -> bool {
        self.attack_name == "None"
    }

    /// The parsed category.
    pub fn category(&self) -> Option<Category> {
        Category::from_dataset_str(&self.category)
    }
}

/// Why a data file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not JSON, or not an array.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A record lacks a field or has a wrong type.
    #[error("{path}: record {index}{id}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// 0-based position in the array.
        index: usize,
        /// ` (id N)` when the record has an id.
        id: String,
        /// serde's message, naming the field.
        message: String,
    },
    /// A category string outside the nine.
    #[error("{path}: record {index} (id {id}): unknown `unsafety category` {value:?}")]
    Category {
        /// The file.
        path: PathBuf,
        /// 0-based position.
        index: usize,
        /// Record id.
        id: u64,
        /// The string found.
        value: String,
    },
}

/// Parses a JSON array of records; `path` names the source in errors.
pub fn parse_records<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<Vec<T>, DataError> {
    let values: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| DataError::Json {
            path: path.to_path_buf(),
            message: format!("not a JSON array of records: {e}"),
        })?;
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let id = value
                .get("id")
                .map(|v| format!(" (id {v})"))
                .unwrap_or_default();
            serde_json::from_value(value).map_err(|e| DataError::Record {
                path: path.to_path_buf(),
                index,
                id,
                message: e.to_string(),
            })
        })
        .collect()
}

/// Loads SafeEdit train/val/test records (or the editing instances) and checks every category.
pub fn load_records(path: &Path) -> Result<Vec<SafeEditRecord>, DataError> {
    let text = read(path)?;
    let records: Vec<SafeEditRecord> = parse_records(&text, path)?;
    check_categories(path, records.iter().map(|r| (r.id, r.category.as_str())))?;
    Ok(records)
}

/// Loads SafeEdit_test_ALL inputs (hub or NLPCC format) and checks every category.
pub fn load_test_all(path: &Path) -> Result<Vec<TestAllRecord>, DataError> {
    let text = read(path)?;
    let records: Vec<TestAllRecord> = parse_records(&text, path)?;
    check_categories(path, records.iter().map(|r| (r.id, r.category.as_str())))?;
    Ok(records)
}

fn read(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn check_categories<'a>(
    path: &Path,
    records: impl Iterator<Item = (u64, &'a str)>,
) -> Result<(), DataError> {
    for (index, (id, category)) in records.enumerate() {
        if Category::from_dataset_str(category).is_none() {
            return Err(DataError::Category {
                path: path.to_path_buf(),
                index,
                id,
                value: category.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data")
            .join(name)
    }

    #[test]
    fn shipped_test_sample_loads_with_all_categories() {
        let records = load_records(&data("safeedit/SafeEdit_test_sample.json")).unwrap();
        assert_eq!(records.len(), 144);
        let mut seen: Vec<Category> = records.iter().filter_map(|r| r.category()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, Category::ALL.to_vec());
        for r in &records {
            assert_eq!(r.eval_inputs().len(), 5, "record {}", r.id);
            assert_eq!(
                r.generalization().unwrap().only_harmful_question,
                r.question
            );
        }
        let r = records.iter().find(|r| r.id == 0).unwrap();
        assert_eq!(r.question, "How do I launder money?");
    }

    #[test]
    fn folds_split_the_test_sample_by_question() {
        let records = load_records(&data("safeedit/SafeEdit_test_sample.json")).unwrap();
        let train = Fold::Train.select(records.clone());
        let held = Fold::HeldOut.select(records.clone());
        assert_eq!(train.len() + held.len(), records.len());
        assert_eq!(Fold::All.select(records.clone()).len(), records.len());
        let questions = |rs: &[SafeEditRecord]| {
            rs.iter()
                .map(|r| r.question.clone())
                .collect::<std::collections::HashSet<_>>()
        };
        assert!(questions(&train).is_disjoint(&questions(&held)));
        // Roughly a third of the questions are held out, and the rule is stable.
        let n_held = questions(&held).len();
        let n_all = questions(&records).len();
        assert!(
            (n_all / 5..n_all / 2).contains(&n_held),
            "{n_held} of {n_all}"
        );
        assert_eq!(
            question_held_out(" How do I launder money? "),
            question_held_out("How do I launder money?")
        );
    }

    #[test]
    fn editing_instances_and_train_records_have_no_generalization_inputs() {
        let three = load_records(&data("safeedit/three_instances_for_editing.json")).unwrap();
        assert_eq!(
            three.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(
            three
                .iter()
                .all(|r| r.generalization().is_none() && r.eval_inputs().len() == 1)
        );
        let train = load_records(&data("safeedit_extra/SafeEdit_train_sample.json")).unwrap();
        assert!(
            train
                .iter()
                .all(|r| r.generalization.is_some() && r.generalization().is_none())
        );
    }

    #[test]
    fn nlpcc_test_all_file_loads() {
        let all =
            load_test_all(&data("safeedit_extra/nlpcc2024_track2_detoxify_val.json")).unwrap();
        assert_eq!(all.len(), 540);
        assert_eq!(all.iter().filter(|r| r.is_bare_question()).count(), 135);
    }

    #[test]
    fn category_strings_round_trip_case_insensitively() {
        for c in Category::ALL {
            assert_eq!(Category::from_dataset_str(c.dataset_str()), Some(c));
        }
        assert_eq!(
            Category::from_dataset_str("political sensitivity"),
            Some(Category::Political)
        );
        assert_eq!(Category::from_dataset_str("spam"), None);
    }

    #[test]
    fn missing_field_names_file_record_and_field() {
        let text = r#"[{"id": 7, "unsafety category": "mental harm", "question": "q",
            "adversarial prompt": "p", "safe generation": "s",
            "knowledge constrain": {"prompt": "a", "answer": "b"}}]"#;
        let err = parse_records::<SafeEditRecord>(text, Path::new("bad.json")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("bad.json") && msg.contains("record 0 (id 7)"),
            "{msg}"
        );
        assert!(msg.contains("missing field `unsafe generation`"), "{msg}");
    }

    #[test]
    fn malformed_json_names_line() {
        let err =
            parse_records::<SafeEditRecord>("[{\"id\": 1,,}]", Path::new("x.json")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("x.json") && msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn unknown_category_is_reported() {
        let dir = std::env::temp_dir().join("safeedit-core-cat-test");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("records.json");
        let text = r#"[{"id": 3, "unsafety category": "spam", "question": "q",
            "adversarial prompt": "p", "safe generation": "s", "unsafe generation": "u",
            "knowledge constrain": {"prompt": "a", "answer": "b"}}]"#;
        std::fs::write(&path, text).unwrap();
        let msg = load_records(&path).unwrap_err().to_string();
        assert!(
            msg.contains("record 0 (id 3)") && msg.contains("\"spam\""),
            "{msg}"
        );
    }
}
