//! The runs database: sqlx over SQLite by default (a file under the data folder, WAL,
//! migrations from `server/migrations` applied at start-up), Postgres when `DATABASE_URL` says
//! so; the same queries serve both (sqlx's `Any` driver).

use std::path::Path;

use anyhow::Context;
use safeedit_core::eval::InstanceResult;
use safeedit_core::mechanism::{AnalysisRecord, AnalysisSummary};
use safeedit_core::run::{EditRequest, EvalRecord, JobStatus, RunRecord, RunSummary};
use safeedit_core::test_all::TestAllRunRecord;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

/// The database behind the runs.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Opens `url`, or the SQLite file `runs.sqlite` under `data_dir` when `url` is `None`, and
    /// applies the migrations.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        install_default_drivers();
        let url = match url {
            Some(url) => url.to_string(),
            None => {
                std::fs::create_dir_all(data_dir)
                    .with_context(|| format!("creating {}", data_dir.display()))?;
                format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("runs.sqlite").display()
                )
            }
        };
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { 8 })
            .connect(&url)
            .await
            .with_context(|| format!("opening the database {url}"))?;
        if sqlite {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Self { pool })
    }

    /// Stores a finished run.
    pub async fn insert_run(&self, split: &str, run: &RunRecord) -> anyhow::Result<()> {
        let (ds_before, ds_after) = ds(run);
        sqlx::query(
            "INSERT INTO runs (slug, kind, created_at, split, instance, model, layer, ds_before, \
             ds_after, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&run.slug)
        .bind(&run.kind)
        .bind(&run.created_at)
        .bind(split)
        .bind(run.request.id as i64)
        .bind(&run.model)
        .bind(run.outcome.layer as i64)
        .bind(ds_before)
        .bind(ds_after)
        .bind(serde_json::to_string(run)?)
        .execute(&self.pool)
        .await
        .context("storing the run")?;
        Ok(())
    }

    /// A run by slug.
    pub async fn run(&self, slug: &str) -> anyhow::Result<Option<RunRecord>> {
        let row = sqlx::query("SELECT record FROM runs WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let text: String = r.try_get("record")?;
            serde_json::from_str(&text).with_context(|| format!("run {slug}: stored record"))
        })
        .transpose()
    }

    /// The newest runs first.
    pub async fn list_runs(&self, limit: i64) -> anyhow::Result<Vec<RunSummary>> {
        let rows = sqlx::query(
            "SELECT slug, kind, created_at, split, instance, model, layer, ds_before, ds_after \
             FROM runs ORDER BY created_at DESC, slug LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunSummary {
                    slug: r.try_get("slug")?,
                    kind: r.try_get("kind")?,
                    created_at: r.try_get("created_at")?,
                    split: r.try_get("split")?,
                    instance: r.try_get::<i64, _>("instance")? as u64,
                    model: r.try_get("model")?,
                    layer: r.try_get::<i64, _>("layer")? as usize,
                    ds: (r.try_get("ds_before")?, r.try_get("ds_after")?),
                })
            })
            .collect()
    }

    /// Records a new job.
    pub async fn insert_job(
        &self,
        id: &str,
        created_at: &str,
        request: &EditRequest,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO jobs (id, created_at, request, status) VALUES ($1, $2, $3, 'queued')",
        )
        .bind(id)
        .bind(created_at)
        .bind(serde_json::to_string(request)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Updates a job's status (and its run or error message).
    pub async fn set_job(
        &self,
        id: &str,
        status: JobStatus,
        run_slug: Option<&str>,
        message: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE jobs SET status = $1, run_slug = $2, message = $3 WHERE id = $4")
            .bind(status_str(status))
            .bind(run_slug)
            .bind(message)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks jobs a previous server process left queued or running as failed; returns how many.
    pub async fn fail_interrupted_jobs(&self) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'failed', message = 'the server stopped before the job \
             finished' WHERE status IN ('queued', 'running')",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A job's stored status and message (for jobs of earlier server processes).
    pub async fn job(
        &self,
        id: &str,
    ) -> anyhow::Result<Option<(EditRequest, String, Option<String>, Option<String>)>> {
        let row = sqlx::query("SELECT request, status, run_slug, message FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let request: String = r.try_get("request")?;
            Ok((
                serde_json::from_str(&request)?,
                r.try_get("status")?,
                r.try_get("run_slug")?,
                r.try_get("message")?,
            ))
        })
        .transpose()
    }
    /// Stores an evaluation run (replacing an earlier version of the same slug) with its
    /// instances, in one transaction.
    pub async fn upsert_eval(
        &self,
        record: &EvalRecord,
        instances: &[InstanceResult],
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM eval_instances WHERE slug = $1")
            .bind(&record.slug)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM evals WHERE slug = $1")
            .bind(&record.slug)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO evals (slug, created_at, updated_at, method, data, model, instances, \
             record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&record.slug)
        .bind(&record.created_at)
        .bind(&record.updated_at)
        .bind(&record.method)
        .bind(&record.data)
        .bind(&record.model)
        .bind(record.instances as i64)
        .bind(serde_json::to_string(record)?)
        .execute(&mut *tx)
        .await?;
        for r in instances {
            sqlx::query("INSERT INTO eval_instances (slug, id, record) VALUES ($1, $2, $3)")
                .bind(&record.slug)
                .bind(r.id as i64)
                .bind(serde_json::to_string(r)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await.context("storing the evaluation")?;
        Ok(())
    }

    /// An evaluation run by slug.
    pub async fn eval(&self, slug: &str) -> anyhow::Result<Option<EvalRecord>> {
        let row = sqlx::query("SELECT record FROM evals WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let text: String = r.try_get("record")?;
            serde_json::from_str(&text).with_context(|| format!("evaluation {slug}: stored record"))
        })
        .transpose()
    }

    /// An evaluation's instances, by id.
    pub async fn eval_instances(&self, slug: &str) -> anyhow::Result<Vec<InstanceResult>> {
        let rows = sqlx::query("SELECT record FROM eval_instances WHERE slug = $1 ORDER BY id")
            .bind(slug)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("record")?;
                serde_json::from_str(&text)
                    .with_context(|| format!("evaluation {slug}: stored instance"))
            })
            .collect()
    }

    /// Stores (or replaces) an analysis.
    pub async fn upsert_analysis(&self, record: &AnalysisRecord) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM analyses WHERE slug = $1")
            .bind(&record.slug)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO analyses (slug, created_at, model, methods, record) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&record.slug)
        .bind(&record.created_at)
        .bind(&record.model)
        .bind(record.methods.join(","))
        .bind(serde_json::to_string(record)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await.context("storing the analysis")?;
        Ok(())
    }

    /// An analysis by slug.
    pub async fn analysis(&self, slug: &str) -> anyhow::Result<Option<AnalysisRecord>> {
        let row = sqlx::query("SELECT record FROM analyses WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let text: String = r.try_get("record")?;
            serde_json::from_str(&text).with_context(|| format!("analysis {slug}: stored record"))
        })
        .transpose()
    }

    /// Every analysis, newest first.
    pub async fn list_analyses(&self) -> anyhow::Result<Vec<AnalysisSummary>> {
        let rows = sqlx::query("SELECT record FROM analyses ORDER BY created_at DESC, slug")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("record")?;
                let record: AnalysisRecord =
                    serde_json::from_str(&text).context("a stored analysis")?;
                Ok(record.summary())
            })
            .collect()
    }

    /// Stores (or replaces) a test_ALL run.
    pub async fn upsert_test_all(&self, record: &TestAllRunRecord) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM test_all_runs WHERE slug = $1")
            .bind(&record.slug)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO test_all_runs (slug, created_at, method, model, record) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&record.slug)
        .bind(&record.created_at)
        .bind(&record.method)
        .bind(&record.model)
        .bind(serde_json::to_string(record)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await.context("storing the test_ALL run")?;
        Ok(())
    }

    /// A test_ALL run by slug.
    pub async fn test_all(&self, slug: &str) -> anyhow::Result<Option<TestAllRunRecord>> {
        let row = sqlx::query("SELECT record FROM test_all_runs WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let text: String = r.try_get("record")?;
            serde_json::from_str(&text)
                .with_context(|| format!("test_ALL run {slug}: stored record"))
        })
        .transpose()
    }

    /// Every test_ALL run, oldest first (the order rows are added to a table).
    pub async fn list_test_all(&self) -> anyhow::Result<Vec<TestAllRunRecord>> {
        let rows = sqlx::query("SELECT record FROM test_all_runs ORDER BY created_at, slug")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("record")?;
                serde_json::from_str(&text).context("a stored test_ALL run")
            })
            .collect()
    }

    /// Every evaluation run, newest first (full records: the metric rows are small).
    pub async fn list_evals(&self) -> anyhow::Result<Vec<EvalRecord>> {
        let rows = sqlx::query("SELECT record FROM evals ORDER BY updated_at DESC, slug")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("record")?;
                serde_json::from_str(&text).context("a stored evaluation")
            })
            .collect()
    }
}

fn status_str(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "queued",
        JobStatus::Running => "running",
        JobStatus::Done => "done",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "cancelled",
    }
}

fn ds(run: &RunRecord) -> (f64, f64) {
    run.outcome
        .defense()
        .into_iter()
        .find(|(kind, _, _)| kind == "DS")
        .map_or((0.0, 0.0), |(_, before, after)| (before, after))
}
