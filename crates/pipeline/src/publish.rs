//! Results into the runs database the web app reads. Evaluation, test_ALL and analysis folders
//! are stored under a random slug kept in the folder (`slug.txt`), so a resumed or extended run
//! updates the same link; the web app's edits and one-instance evaluations are stored as they
//! finish.

use std::future::Future;
use std::path::{Path, PathBuf};

use safeedit_core::eval::{InstanceResult, summarize};
use safeedit_core::mechanism::{AnalysisRecord, MechanismReport};
use safeedit_core::run::{EvalRecord, RunRecord};
use safeedit_core::test_all::{AggregateRow, TestAllModel, TestAllRunRecord};
use safeedit_store::{Store, now_rfc3339, random_slug};
use serde::{Deserialize, Serialize};

use crate::run_dir::{general_rows, read_json, read_jsonl, write};
use crate::{PipelineError, Result, paths};

/// Which runs database to store results in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Database {
    /// The folder of the SQLite file [default: ~/.cache/safeedit/data].
    pub data_dir: Option<PathBuf>,
    /// A database URL instead of the SQLite file (e.g. postgres://user@host/safeedit).
    pub url: Option<String>,
    /// Store new records unlisted: off /runs, the catalogue and the Results defaults, reachable
    /// by their link only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unlisted: bool,
}

impl Database {
    /// The data folder, defaulted.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(paths::default_data_dir)
    }
}

/// What became of storing a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// Stored under this slug.
    Stored(String),
    /// Not asked for (no database), or nothing to store yet.
    Skipped,
    /// The files are written but the database refused them (the message says why).
    Failed(String),
}

impl Published {
    /// The outcome of a publishing attempt: a database error does not hide written results.
    fn from(result: Result<Option<String>>) -> Self {
        match result {
            Ok(Some(slug)) => Published::Stored(slug),
            Ok(None) => Published::Skipped,
            Err(e) => Published::Failed(e.to_string()),
        }
    }
}

/// A store and a way to wait for it from synchronous code: a runtime of its own (the command
/// line), or the handle of the server's runtime (the job worker's thread).
pub struct Publisher {
    store: Store,
    runtime: Runtime,
    /// Every record stored from now on is unlisted (set per job by the server's worker).
    unlisted: std::sync::atomic::AtomicBool,
}

enum Runtime {
    Own(tokio::runtime::Runtime),
    Handle(tokio::runtime::Handle),
}

impl Publisher {
    /// Opens the database on a small runtime of its own.
    pub fn open(db: &Database) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PipelineError::Invalid(format!("starting a runtime: {e}")))?;
        let store = runtime.block_on(Store::open(db.url.as_deref(), &db.data_dir()))?;
        Ok(Self {
            store,
            runtime: Runtime::Own(runtime),
            unlisted: db.unlisted.into(),
        })
    }

    /// Uses an open store from a thread outside `handle`'s runtime.
    pub fn with_handle(store: Store, handle: tokio::runtime::Handle) -> Self {
        Self {
            store,
            runtime: Runtime::Handle(handle),
            unlisted: false.into(),
        }
    }

    /// Stores the records that follow unlisted (`true`) or listed.
    pub fn set_unlisted(&self, unlisted: bool) {
        self.unlisted
            .store(unlisted, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether records are stored unlisted.
    pub fn unlisted(&self) -> bool {
        self.unlisted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for `insert`, which stores the record `slug`; when records are stored unlisted,
    /// unlists `slug` first, so no listing ever shows it.
    fn insert<T>(
        &self,
        slug: &str,
        insert: impl Future<Output = safeedit_store::Result<T>>,
    ) -> Result<T> {
        self.block_on(async {
            if self.unlisted() {
                self.store.set_unlisted(slug, true).await?;
            }
            Ok(insert.await?)
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Waits for `f` on the runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        match &self.runtime {
            Runtime::Own(rt) => rt.block_on(f),
            Runtime::Handle(handle) => handle.block_on(f),
        }
    }

    /// Stores a one-instance evaluation.
    pub fn eval(&self, record: &EvalRecord, instances: &[InstanceResult]) -> Result<()> {
        self.insert(&record.slug, self.store.upsert_eval(record, instances))
    }

    /// Stores a finished edit run of the split `split`.
    pub fn run(&self, split: &str, record: &RunRecord) -> Result<()> {
        self.insert(&record.slug, self.store.insert_run(split, record))
    }
}

/// Stores a folder's results with `store` when a database is given.
pub(crate) fn publish_folder(
    db: Option<&Database>,
    store: impl FnOnce(&Publisher) -> Result<Option<String>>,
) -> Published {
    let Some(db) = db else {
        return Published::Skipped;
    };
    Published::from(Publisher::open(db).and_then(|p| store(&p)))
}

/// Stores (or updates) the evaluation in `out`; its slug, or `None` when `out` holds no
/// evaluation yet.
pub fn publish_eval(out: &Path, publisher: &Publisher) -> Result<Option<String>> {
    let run_path = out.join("run.json");
    let results_path = out.join("instances.jsonl");
    if !run_path.is_file() || !results_path.is_file() {
        return Ok(None);
    }
    let run: serde_json::Value = read_json(&run_path)?;
    let field = |name: &str| {
        run[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PipelineError::file(&run_path, format!("no string field `{name}`")))
    };
    let method = field("method")?;
    let results: Vec<InstanceResult> = read_jsonl(&results_path)?;
    let mut metrics = summarize(&results);
    metrics.extend(general_rows(out, &method)?);

    let (slug, created_at) = folder_slug(out)?;
    let record = EvalRecord {
        slug: slug.clone(),
        created_at,
        updated_at: now_rfc3339(),
        method,
        data: field("data")?,
        model: field("model_name").or_else(|_| field("model"))?,
        instances: results.len(),
        run,
        metrics,
    };
    publisher.eval(&record, &results)?;
    Ok(Some(slug))
}

/// The slug kept in a results folder (`slug.txt`: slug, creation time), made on first use.
fn folder_slug(out: &Path) -> Result<(String, String)> {
    let slug_path = out.join("slug.txt");
    match std::fs::read_to_string(&slug_path) {
        Ok(text) => {
            let mut lines = text.lines();
            let slug = lines.next().unwrap_or_default().trim().to_string();
            if slug.is_empty() || !slug.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(PipelineError::file(
                    &slug_path,
                    format!("line 1 should be the run's slug, found {slug:?}"),
                ));
            }
            let created = lines
                .next()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map_or_else(now_rfc3339, str::to_string);
            Ok((slug, created))
        }
        Err(_) => {
            let slug = random_slug(10);
            let created = now_rfc3339();
            write(&slug_path, format!("{slug}\n{created}\n"))?;
            Ok((slug, created))
        }
    }
}

/// Stores the analysis in `out` (`analysis.json`); re-publishing the same folder replaces the
/// stored copy.
pub fn publish_analysis(out: &Path, publisher: &Publisher) -> Result<Option<String>> {
    let path = out.join("analysis.json");
    let json: serde_json::Value = read_json(&path)?;
    let report: MechanismReport = serde_json::from_value(json["report"].clone())
        .map_err(|e| PipelineError::file(&path, format!("field `report`: {e}")))?;
    let (slug, created_at) = folder_slug(out)?;
    let record = AnalysisRecord {
        slug: slug.clone(),
        created_at,
        model: report.model.clone(),
        methods: report.methods.iter().map(|m| m.method.clone()).collect(),
        run: json["run"].clone(),
        report,
    };
    publisher.insert(&record.slug, publisher.store.upsert_analysis(&record))?;
    Ok(Some(slug))
}

/// Stores the test_ALL run in `out` (`summary.json`); re-publishing the same folder replaces the
/// stored copy.
pub fn publish_test_all(out: &Path, publisher: &Publisher) -> Result<Option<String>> {
    let path = out.join("summary.json");
    let summary: serde_json::Value = read_json(&path)?;
    let field = |value: &serde_json::Value, name: &str| -> Result<String> {
        value[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PipelineError::file(&path, format!("no string field `{name}`")))
    };
    let parse = |name: &'static str| {
        let path = &path;
        move |e: serde_json::Error| PipelineError::file(path, format!("field `{name}`: {e}"))
    };
    let run = summary["run"].clone();
    let models: Vec<TestAllModel> =
        serde_json::from_value(summary["models"].clone()).map_err(parse("models"))?;
    let aggregate: Vec<AggregateRow> =
        serde_json::from_value(summary["aggregate"].clone()).map_err(parse("aggregate"))?;
    let (slug, created_at) = folder_slug(out)?;
    let record = TestAllRunRecord {
        slug: slug.clone(),
        created_at,
        updated_at: now_rfc3339(),
        method: field(&summary, "method")?,
        model: field(&run, "model_name").or_else(|_| field(&run, "model"))?,
        data: field(&run, "data")?,
        inputs: models.first().map_or(0, |m| m.inputs),
        judge: run["judge"]["id"].as_str().unwrap_or("?").to_string(),
        run,
        models,
        aggregate,
    };
    publisher.insert(&record.slug, publisher.store.upsert_test_all(&record))?;
    Ok(Some(slug))
}
