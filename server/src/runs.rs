//! What the resumable run commands (`eval`, `general`) share: the run description that a resumed
//! run must match, JSONL result files that survive an interrupted write, and the progress bar.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Writes `info` to `path`, or, when the file exists, checks that it describes the same run on
/// every key in `keys` (a resumed run must be the same run).
pub fn check_or_write_run_info(
    path: &Path,
    info: &serde_json::Value,
    keys: &[&str],
) -> anyhow::Result<()> {
    if path.is_file() {
        let text = std::fs::read_to_string(path)?;
        let existing: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        let null = serde_json::Value::Null;
        for key in keys {
            // A key missing from an older record counts as null.
            anyhow::ensure!(
                existing.get(key).unwrap_or(&null) == info.get(key).unwrap_or(&null),
                "{} holds a run with a different `{key}` ({} vs {}); use another --out",
                path.display(),
                existing.get(key).unwrap_or(&serde_json::Value::Null),
                info.get(key).unwrap_or(&serde_json::Value::Null)
            );
        }
        return Ok(());
    }
    std::fs::write(path, serde_json::to_string_pretty(info)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a JSONL result file; a malformed line is an error naming the file and line (a line cut
/// off by an interrupted run, the last one, is skipped so the run can resume). A missing file is
/// an empty run.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let lines: Vec<String> = BufReader::new(File::open(path)?)
        .lines()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    let mut results = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(line) {
            Ok(r) => results.push(r),
            Err(_) if i + 1 == lines.len() => {
                eprintln!(
                    "{}: ignoring the incomplete last line {}",
                    path.display(),
                    i + 1
                );
            }
            Err(e) => anyhow::bail!("{}: line {}: {e}", path.display(), i + 1),
        }
    }
    Ok(results)
}

/// Reads a JSONL result file for resuming: like [`read_jsonl`], and a cut-off last line is
/// removed from the file, so that new lines are not appended onto it.
pub fn resume_jsonl<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let results: Vec<T> = read_jsonl(path)?;
    if path.is_file() {
        let text = std::fs::read_to_string(path)?;
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
            std::fs::write(path, repaired)
                .with_context(|| format!("repairing {}", path.display()))?;
        }
    }
    Ok(results)
}

/// Appends one JSON line and flushes, so a finished item survives an interruption.
pub fn append_jsonl<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{}", serde_json::to_string(value)?)?;
    file.flush()?;
    Ok(())
}

/// A progress bar over `len` items of kind `unit`, labelled `label`.
pub fn progress(len: usize, label: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{elapsed}}, eta {{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

#[cfg(test)]
pub mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A fresh folder under the system temp dir, removed when dropped.
    pub struct TempDir(PathBuf);
    impl TempDir {
        pub fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("safeedit-run-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_malformed_line_in_the_middle_names_file_and_line() {
        let dir = TempDir::new("malformed");
        let path = dir.path().join("instances.jsonl");
        std::fs::write(&path, "{\"id\": oops}\n{}\n").unwrap();
        let err = read_jsonl::<serde_json::Value>(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("instances.jsonl: line 1"), "{err}");
    }

    #[test]
    fn resuming_drops_a_cut_off_last_line() {
        let dir = TempDir::new("cutoff");
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
        let dir = TempDir::new("runinfo");
        let path = dir.path().join("run.json");
        let a = serde_json::json!({"method": "dinm", "note": 1});
        check_or_write_run_info(&path, &a, &["method"]).unwrap();
        let b = serde_json::json!({"method": "dinm", "note": 2});
        check_or_write_run_info(&path, &b, &["method"]).unwrap();
        let c = serde_json::json!({"method": "vanilla"});
        let err = check_or_write_run_info(&path, &c, &["method"]).unwrap_err();
        assert!(err.to_string().contains("different `method`"), "{err}");
    }
}
