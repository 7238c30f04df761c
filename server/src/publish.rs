//! Evaluation folders into the runs database: `safeedit eval` (and `safeedit general`, whose
//! scores join the same table) store their results where the web app reads them, under a random
//! slug kept in the folder (`slug.txt`), so a resumed or extended run updates the same link.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use safeedit_core::eval::{InstanceResult, summarize};
use safeedit_core::mechanism::{AnalysisRecord, MechanismReport};
use safeedit_core::run::EvalRecord;
use safeedit_core::test_all::{AggregateRow, TestAllModel, TestAllRunRecord};

use crate::{eval, paths};
use safeedit_store::Store;
use safeedit_store::{now_rfc3339, random_slug};

/// Where results are stored (the same settings as `safeedit serve`).
#[derive(Args, Debug, Clone, Default)]
pub struct DbArgs {
    /// The runs database's folder [default: ~/.cache/safeedit/data].
    #[arg(long, env = "SAFEEDIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A database URL instead of the SQLite file (e.g. postgres://user@host/safeedit).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Do not store the results in the runs database (files only).
    #[arg(long)]
    pub no_db: bool,
}

impl DbArgs {
    /// The data folder, defaulted.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| paths::cache_dir().join("data"))
    }
}

/// Stores (or updates) the evaluation in `out`; returns its slug, or `None` with `--no-db` or
/// when `out` holds no evaluation yet.
pub fn publish(out: &Path, db: &DbArgs) -> anyhow::Result<Option<String>> {
    if db.no_db {
        return Ok(None);
    }
    let run_path = out.join("run.json");
    let results_path = out.join("instances.jsonl");
    if !run_path.is_file() || !results_path.is_file() {
        return Ok(None);
    }
    let run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&run_path)
            .with_context(|| format!("reading {}", run_path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", run_path.display()))?;
    let field = |name: &str| {
        run[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{}: no string field `{name}`", run_path.display()))
    };
    let method = field("method")?;
    let results: Vec<InstanceResult> = eval::read_results(&results_path)?;
    let mut metrics = summarize(&results);
    metrics.extend(eval::general_rows(out, &method)?);

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
    with_store(db, |store| async move {
        store.upsert_eval(&record, &results).await
    })?;
    Ok(Some(slug))
}

/// The slug kept in a results folder (`slug.txt`: slug, creation time), made on first use.
fn folder_slug(out: &Path) -> anyhow::Result<(String, String)> {
    let slug_path = out.join("slug.txt");
    match std::fs::read_to_string(&slug_path) {
        Ok(text) => {
            let mut lines = text.lines();
            let slug = lines.next().unwrap_or_default().trim().to_string();
            anyhow::ensure!(
                !slug.is_empty() && slug.chars().all(|c| c.is_ascii_alphanumeric()),
                "{}: line 1 should be the run's slug, found {slug:?}",
                slug_path.display()
            );
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
            std::fs::write(&slug_path, format!("{slug}\n{created}\n"))
                .with_context(|| format!("writing {}", slug_path.display()))?;
            Ok((slug, created))
        }
    }
}

/// Runs `f` on the database `db` names, on a small runtime of its own.
fn with_store<F, Fut>(db: &DbArgs, f: F) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = safeedit_store::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::open(db.database_url.as_deref(), &db.data_dir()).await?;
        Ok(f(store).await?)
    })
}

/// Stores the analysis in `out` (`analysis.json` of `safeedit analyze`); returns its slug, or
/// `None` with `--no-db`. Re-publishing the same folder replaces the stored copy.
pub fn publish_analysis(out: &Path, db: &DbArgs) -> anyhow::Result<Option<String>> {
    if db.no_db {
        return Ok(None);
    }
    let path = out.join("analysis.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let report: MechanismReport = serde_json::from_value(json["report"].clone())
        .with_context(|| format!("{}: field `report`", path.display()))?;
    let (slug, created_at) = folder_slug(out)?;
    let record = AnalysisRecord {
        slug: slug.clone(),
        created_at,
        model: report.model.clone(),
        methods: report.methods.iter().map(|m| m.method.clone()).collect(),
        run: json["run"].clone(),
        report,
    };
    with_store(
        db,
        |store| async move { store.upsert_analysis(&record).await },
    )?;
    Ok(Some(slug))
}

/// Stores the test_ALL run in `out` (`summary.json` of `safeedit eval --test-all`); returns its
/// slug, or `None` with `--no-db`. Re-publishing the same folder replaces the stored copy.
pub fn publish_test_all(out: &Path, db: &DbArgs) -> anyhow::Result<Option<String>> {
    if db.no_db {
        return Ok(None);
    }
    let path = out.join("summary.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let summary: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let field = |value: &serde_json::Value, name: &str| -> anyhow::Result<String> {
        value[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{}: no string field `{name}`", path.display()))
    };
    let run = summary["run"].clone();
    let models: Vec<TestAllModel> = serde_json::from_value(summary["models"].clone())
        .with_context(|| format!("{}: field `models`", path.display()))?;
    let aggregate: Vec<AggregateRow> = serde_json::from_value(summary["aggregate"].clone())
        .with_context(|| format!("{}: field `aggregate`", path.display()))?;
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
    with_store(
        db,
        |store| async move { store.upsert_test_all(&record).await },
    )?;
    Ok(Some(slug))
}
