//! SafeEdit data sources: the records shipped inside the binary, or the user's files, and the
//! catalogue of splits the web app browses.

use std::path::{Path, PathBuf};

use safeedit_core::SafeEditRecord;
use safeedit_core::TestAllRecord;
use safeedit_core::browse::{Catalog, SplitIndex};
use safeedit_core::general::{GeneralItem, GeneralTask, parse_triviaqa, parse_xsum_jsonl};
use safeedit_core::safeedit::{load_records, load_test_all, parse_records};

use crate::{PipelineError, Result, ResultExt, bail, ensure};

/// 144 real SafeEdit test records (all nine categories, with generalisation inputs).
const TEST_SAMPLE: &str = include_str!("../../../data/safeedit/SafeEdit_test_sample.json");
/// The three editing instances of the paper's SafeEdit_test_ALL experiments.
const EDITING_INSTANCES: &str =
    include_str!("../../../data/safeedit/three_instances_for_editing.json");

/// `test-sample` (the shipped 144 test records), `editing-instances` (the paper's three), or the
/// path of a SafeEdit JSON file (train / val / test).
pub fn load(source: &str) -> Result<Vec<SafeEditRecord>> {
    let shipped = |text: &str, name: &str| -> Result<Vec<SafeEditRecord>> {
        Ok(parse_records(text, Path::new(name))?)
    };
    match source {
        "test-sample" => shipped(TEST_SAMPLE, "data/safeedit/SafeEdit_test_sample.json"),
        "editing-instances" => shipped(
            EDITING_INSTANCES,
            "data/safeedit/three_instances_for_editing.json",
        ),
        path => load_records(&PathBuf::from(path)).with_context(|| format!("loading {path}")),
    }
}

/// SafeEdit_test_ALL's 540 inputs (the NLPCC 2024 Track 2 file of the SafeEdit authors).
const TEST_ALL: &str =
    include_str!("../../../data/safeedit_extra/nlpcc2024_track2_detoxify_val.json");

/// `test-all` (the shipped 540 SafeEdit_test_ALL inputs) or the path of a test_ALL file (the
/// hub's `SafeEdit_test_ALL.json` or the NLPCC format).
pub fn load_test_all_inputs(source: &str) -> Result<Vec<TestAllRecord>> {
    match source {
        "test-all" => Ok(parse_records(
            TEST_ALL,
            Path::new("data/safeedit_extra/nlpcc2024_track2_detoxify_val.json"),
        )?),
        path => load_test_all(&PathBuf::from(path)).with_context(|| format!("loading {path}")),
    }
}

/// One record by id.
pub fn instance(records: &[SafeEditRecord], id: u64, source: &str) -> Result<SafeEditRecord> {
    records.iter().find(|r| r.id == id).cloned().ok_or_else(|| {
        let ids: Vec<String> = records.iter().take(12).map(|r| r.id.to_string()).collect();
        PipelineError::Invalid(format!(
            "no instance with id {id} in {source} (ids start: {}, ...)",
            ids.join(", ")
        ))
    })
}

/// 200 XSum dev documents with reference summaries (OpenCompass format), for CSum.
const XSUM_SAMPLE: &str = include_str!("../../../data/general/xsum_dev_200.jsonl");

/// Items of a general-performance task: `data` is a file (TriviaQA TSV/JSONL for KQA, XSum
/// JSONL for CSum, a SafeEdit JSON for the knowledge proxy); without one, the shipped samples
/// (XSum, the SafeEdit test sample's knowledge-constrain pairs). KQA has no shipped data.
pub fn general_items(task: GeneralTask, data: Option<&str>) -> Result<Vec<GeneralItem>> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map_err(|e| PipelineError::io(Path::new(path), e))
            .with_context(|| format!("reading {task:?} data {path}"))
    };
    Ok(match (task, data) {
        (GeneralTask::Kqa, None) => bail!(
            "KQA needs TriviaQA, which cannot be shipped: pass --data with OpenCompass's \
             trivia-dev.qa.csv (or a JSONL with `question` and `answer`); offline, use \
             --task knowledge"
        ),
        (GeneralTask::Kqa, Some(path)) => parse_triviaqa(&read(path)?, Path::new(path))?,
        (GeneralTask::Csum, None) => {
            parse_xsum_jsonl(XSUM_SAMPLE, Path::new("data/general/xsum_dev_200.jsonl"))?
        }
        (GeneralTask::Csum, Some(path)) => parse_xsum_jsonl(&read(path)?, Path::new(path))?,
        (GeneralTask::Knowledge, source) => {
            let records = load(source.unwrap_or("test-sample"))?;
            let mut seen = std::collections::HashSet::new();
            records
                .into_iter()
                .filter(|r| seen.insert(r.knowledge_constraint.prompt.clone()))
                .map(|r| GeneralItem {
                    id: r.id.to_string(),
                    input: r.knowledge_constraint.prompt,
                    references: vec![r.knowledge_constraint.answer],
                })
                .collect()
        }
    })
}

/// Two real SafeEdit train records (shipped for tests and the train split's browser view).
const TRAIN_SAMPLE: &str = include_str!("../../../data/safeedit_extra/SafeEdit_train_sample.json");

/// The splits the web app browses. With `dir` (the folder of the full SafeEdit release), each of
/// `SafeEdit_test.json`, `SafeEdit_val.json`, `SafeEdit_train.json` found there is a split;
/// without it, the shipped samples. The three editing instances are always there.
pub fn catalog(dir: Option<&Path>) -> Result<Catalog> {
    let mut splits = Vec::new();
    let shipped = |name: &str, text: &str, file: &str, label: &str| -> Result<SplitIndex> {
        Ok(SplitIndex::new(
            name,
            label,
            parse_records(text, Path::new(file))?,
        ))
    };
    match dir {
        Some(dir) => {
            ensure!(
                dir.is_dir(),
                "SafeEdit folder {} does not exist",
                dir.display()
            );
            for (name, file) in [
                ("test", "SafeEdit_test.json"),
                ("val", "SafeEdit_val.json"),
                ("train", "SafeEdit_train.json"),
            ] {
                let path = dir.join(file);
                if path.is_file() {
                    let records = load_records(&path)?;
                    splits.push(SplitIndex::new(name, &path.display().to_string(), records));
                }
            }
            ensure!(
                !splits.is_empty(),
                "{} holds none of SafeEdit_test.json, SafeEdit_val.json, SafeEdit_train.json",
                dir.display()
            );
        }
        None => {
            splits.push(shipped(
                "test",
                TEST_SAMPLE,
                "data/safeedit/SafeEdit_test_sample.json",
                "shipped sample (144 of 1,350)",
            )?);
            splits.push(shipped(
                "train",
                TRAIN_SAMPLE,
                "data/safeedit_extra/SafeEdit_train_sample.json",
                "shipped sample (2 of 4,050)",
            )?);
        }
    }
    splits.push(shipped(
        "editing",
        EDITING_INSTANCES,
        "data/safeedit/three_instances_for_editing.json",
        "the paper's three editing instances",
    )?);
    Ok(Catalog::new(splits))
}
