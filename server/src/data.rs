//! SafeEdit data sources: the records shipped inside the binary, or the user's files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use safeedit_core::SafeEditRecord;
use safeedit_core::safeedit::{load_records, parse_records};

/// 144 real SafeEdit test records (all nine categories, with generalisation inputs).
const TEST_SAMPLE: &str = include_str!("../../data/safeedit/SafeEdit_test_sample.json");
/// The three editing instances of the paper's SafeEdit_test_ALL experiments.
const EDITING_INSTANCES: &str =
    include_str!("../../data/safeedit/three_instances_for_editing.json");

/// `test-sample` (the shipped 144 test records), `editing-instances` (the paper's three), or the
/// path of a SafeEdit JSON file (train / val / test).
pub fn load(source: &str) -> anyhow::Result<Vec<SafeEditRecord>> {
    let shipped = |text: &str, name: &str| -> anyhow::Result<Vec<SafeEditRecord>> {
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

/// One record by id.
pub fn instance(
    records: &[SafeEditRecord],
    id: u64,
    source: &str,
) -> anyhow::Result<SafeEditRecord> {
    records
        .iter()
        .find(|r| r.id == id)
        .cloned()
        .with_context(|| {
            let ids: Vec<String> = records.iter().take(12).map(|r| r.id.to_string()).collect();
            format!(
                "no instance with id {id} in {source} (ids start: {}, ...)",
                ids.join(", ")
            )
        })
}
