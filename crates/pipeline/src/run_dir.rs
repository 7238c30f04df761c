//! What resumable experiments keep in their output folder: the run description a resumed run
//! must match (`run.json`), and JSONL result files that survive an interrupted write.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use safeedit_core::eval::MetricRow;
use safeedit_core::general::GeneralTask;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{PipelineError, Result};

/// Creates the output folder.
pub fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))
}

/// An output folder held by this process: a second process that asks for the same folder is
/// refused while this lives (two writers would duplicate every line of its result files). The
/// operating system drops the lock when the process ends, however it ends.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

/// The name of the lock file in an output folder.
pub const LOCK_FILE: &str = ".lock";

/// Creates the output folder and takes its lock, or says which folder is in use.
pub fn lock(dir: &Path) -> Result<FolderLock> {
    create(dir)?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| PipelineError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(FolderLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(PipelineError::Invalid(format!(
            "{} is in use by another run (another process writes to this --out); wait for it \
             to finish or pick another folder",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(PipelineError::io(&path, e)),
    }
}

/// Writes `text` to `path`.
pub fn write(path: &Path, text: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, text).map_err(|e| PipelineError::io(path, e))
}

/// Writes `value` to `path` as pretty JSON with a final newline.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("records serialise to JSON");
    write(path, text + "\n")
}

/// Reads and parses a JSON file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| PipelineError::file(path, format!("not valid JSON: {e}")))
}

/// Writes `info` to `path`, or, when the file exists, checks that it describes the same run on
/// every key in `keys` (a resumed run must be the same run).
pub fn check_or_write_run_info(path: &Path, info: &serde_json::Value, keys: &[&str]) -> Result<()> {
    if path.is_file() {
        let existing: serde_json::Value = read_json(path)?;
        let null = serde_json::Value::Null;
        for key in keys {
            // A key missing from an older record counts as null.
            let (old, new) = (
                existing.get(key).unwrap_or(&null),
                info.get(key).unwrap_or(&null),
            );
            if old != new {
                return Err(PipelineError::RunMismatch {
                    path: path.to_path_buf(),
                    key: key.to_string(),
                    existing: old.clone(),
                    requested: new.clone(),
                });
            }
        }
        return Ok(());
    }
    write_json(path, info)
}

/// Reads a JSONL result file; a malformed line is an error naming the file and line (a line cut
/// off by an interrupted run, the last one, is skipped so the run can resume). A missing file is
/// an empty run.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let lines: Vec<String> = File::open(path)
        .and_then(|f| BufReader::new(f).lines().collect())
        .map_err(|e| PipelineError::io(path, e))?;
    let mut results = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(line) {
            Ok(r) => results.push(r),
            Err(_) if i + 1 == lines.len() => {
                tracing::warn!(
                    "{}: ignoring the incomplete last line {}",
                    path.display(),
                    i + 1
                );
            }
            Err(e) => return Err(PipelineError::file(path, format!("line {}: {e}", i + 1))),
        }
    }
    Ok(results)
}

/// Reads a JSONL result file for resuming: like [`read_jsonl`], and a cut-off last line is
/// removed from the file, so that new lines are not appended onto it.
pub fn resume_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let results: Vec<T> = read_jsonl(path)?;
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
        let complete = text.lines().filter(|l| !l.trim().is_empty()).count() == results.len();
        if !complete || !(text.is_empty() || text.ends_with('\n')) {
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(results.len())
                .collect();
            let mut repaired = kept.join("\n");
            if !repaired.is_empty() {
                repaired.push('\n');
            }
            write(path, repaired)?;
        }
    }
    Ok(results)
}

/// Appends one JSON line and flushes, so a finished item survives an interruption.
pub fn append_jsonl<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let line = serde_json::to_string(value).expect("records serialise to JSON");
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| {
            writeln!(file, "{line}")?;
            file.flush()
        })
        .map_err(|e| PipelineError::io(path, e))
}

/// The file names of a task's results in an output folder.
pub fn general_summary_path(out: &Path, task: GeneralTask) -> PathBuf {
    out.join(format!("general_{}.json", task.name()))
}

/// The general-performance scores (`general_*.json`) of `method` in an eval folder.
pub fn general_rows(out: &Path, method: &str) -> Result<Vec<MetricRow>> {
    let mut rows = Vec::new();
    for task in GeneralTask::ALL {
        let path = general_summary_path(out, task);
        if !path.is_file() {
            continue;
        }
        let summary: serde_json::Value = read_json(&path)?;
        if summary["run"]["method"] != method {
            continue;
        }
        let (Some(score), Some(n)) = (summary["score"].as_f64(), summary["n"].as_u64()) else {
            return Err(PipelineError::file(&path, "missing `score` or `n`"));
        };
        rows.push(MetricRow {
            group: "all".into(),
            value: "all".into(),
            metric: task.metric().into(),
            score,
            n: n as usize,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_line_in_the_middle_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instances.jsonl");
        std::fs::write(&path, "{\"id\": oops}\n{}\n").unwrap();
        let err = read_jsonl::<serde_json::Value>(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("instances.jsonl: line 1"), "{err}");
    }

    #[test]
    fn resuming_drops_a_cut_off_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        std::fs::write(&path, "{\"id\": 1}\n{\"id\": 2, \"res").unwrap();
        let done: Vec<serde_json::Value> = resume_jsonl(&path).unwrap();
        assert_eq!(done.len(), 1);
        append_jsonl(&path, &serde_json::json!({"id": 2})).unwrap();
        let all: Vec<serde_json::Value> = read_jsonl(&path).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1]["id"], 2);
    }

    #[test]
    fn a_resumed_run_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        let a = serde_json::json!({"method": "dinm", "note": 1});
        check_or_write_run_info(&path, &a, &["method"]).unwrap();
        let b = serde_json::json!({"method": "dinm", "note": 2});
        check_or_write_run_info(&path, &b, &["method"]).unwrap();
        let c = serde_json::json!({"method": "vanilla"});
        let err = check_or_write_run_info(&path, &c, &["method"]).unwrap_err();
        assert!(err.to_string().contains("different `method`"), "{err}");
        assert!(err.is_invalid_input());
    }
}
