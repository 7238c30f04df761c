//! safeedit-store: the runs database. sqlx over SQLite by default (a file `runs.sqlite` under
//! the data folder, WAL, the migrations in `migrations/` applied at start-up), Postgres when a
//! `postgres://` URL is given; the same queries serve both (sqlx's `Any` driver). Every table
//! keeps the full record as JSON beside the columns that lists filter and sort on.
//!
//! ```no_run
//! # async fn demo() -> safeedit_store::Result<()> {
//! let store = safeedit_store::Store::open(None, "/tmp/safeedit-data".as_ref()).await?;
//! for run in store.list_runs(10).await? {
//!     println!("/runs/{} layer {}", run.slug, run.layer);
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod slug;
pub mod throwaway;

use std::path::Path;

use safeedit_core::eval::InstanceResult;
use safeedit_core::flag::VerdictFlag;
use safeedit_core::job::JobSpec;
use safeedit_core::mechanism::{AnalysisRecord, AnalysisSummary};
use safeedit_core::run::{EvalRecord, JobEvent, JobStatus, RunRecord, RunSummary};
use safeedit_core::test_all::TestAllRunRecord;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::any::{AnyPoolOptions, AnyRow, install_default_drivers};
use sqlx::{Any, AnyPool, Row, Transaction};

pub use error::{Result, StoreError};
pub use slug::{now_rfc3339, random_slug, time_rfc3339};

use error::query;

/// The database behind the runs.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// On a Postgres server (job events are announced with NOTIFY).
    postgres: bool,
}

/// The Postgres channel on which a job's id is announced when it has a new event.
pub const JOB_EVENTS_CHANNEL: &str = "safeedit_job_events";

/// A job as the database remembers it (for jobs of earlier server processes).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    /// What was asked.
    pub request: JobSpec,
    /// How it stands.
    pub status: JobStatus,
    /// A finished job's result: the run's slug, or an evaluation's page (`/evals/{slug}`).
    pub result: Option<String>,
    /// Why it failed.
    pub message: Option<String>,
}

/// The tables that hold one JSON record per slug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Runs,
    Evals,
    Analyses,
    TestAll,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Runs => "runs",
            Table::Evals => "evals",
            Table::Analyses => "analyses",
            Table::TestAll => "test_all_runs",
        }
    }

    /// The query for one record by slug.
    fn select(self) -> &'static str {
        match self {
            Table::Runs => "SELECT record FROM runs WHERE slug = $1",
            Table::Evals => "SELECT record FROM evals WHERE slug = $1",
            Table::Analyses => "SELECT record FROM analyses WHERE slug = $1",
            Table::TestAll => "SELECT record FROM test_all_runs WHERE slug = $1",
        }
    }

    /// The statement removing one record by slug.
    fn delete(self) -> &'static str {
        match self {
            Table::Runs => "DELETE FROM runs WHERE slug = $1",
            Table::Evals => "DELETE FROM evals WHERE slug = $1",
            Table::Analyses => "DELETE FROM analyses WHERE slug = $1",
            Table::TestAll => "DELETE FROM test_all_runs WHERE slug = $1",
        }
    }

    /// How error messages name one of its records.
    fn what(self) -> &'static str {
        match self {
            Table::Runs => "run",
            Table::Evals => "evaluation",
            Table::Analyses => "analysis",
            Table::TestAll => "test_ALL run",
        }
    }
}

/// `url` with its password replaced by `***` (in `user:password@` and in a `password=` query
/// parameter), for messages and logs.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

impl Store {
    /// Opens `url`, or the SQLite file `runs.sqlite` under `data_dir` when `url` is `None`, and
    /// applies the migrations.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Self> {
        install_default_drivers();
        let url = match url {
            Some(url) => url.to_string(),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
                    path: data_dir.to_path_buf(),
                    source,
                })?;
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
            .map_err(|source| StoreError::Open {
                url: redact_url(&url),
                source,
            })?;
        if sqlite {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await
                .map_err(query("switching SQLite to WAL"))?;
        }
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            pool,
            postgres: !sqlite,
        })
    }

    /// The record of `slug` in `table`.
    async fn get<T: DeserializeOwned>(&self, table: Table, slug: &str) -> Result<Option<T>> {
        let what = format!("{} {slug}", table.what());
        let row = sqlx::query(table.select())
            .bind(slug)
            .fetch_optional(&self.pool)
            .await
            .map_err(query(format!("reading {what}")))?;
        row.map(|r| decode(&r, &what)).transpose()
    }

    /// The records `sql` (a `SELECT record FROM table ...`) returns, in its order.
    async fn list<T: DeserializeOwned>(&self, table: Table, sql: &'static str) -> Result<Vec<T>> {
        let what = format!("a stored {}", table.what());
        sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(query(format!("listing {}", table.name())))?
            .iter()
            .map(|r| decode(r, &what))
            .collect()
    }

    /// Starts a transaction that replaces `slug` in `table` (its old row deleted).
    async fn replace(&self, table: Table, slug: &str) -> Result<Transaction<'static, Any>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query("starting a transaction"))?;
        sqlx::query(table.delete())
            .bind(slug)
            .execute(&mut *tx)
            .await
            .map_err(query(format!("replacing {} {slug}", table.what())))?;
        Ok(tx)
    }

    /// Stores a finished run; a run already stored under its slug stays as it is (a job run
    /// again after its worker was lost stores nothing twice).
    pub async fn insert_run(&self, split: &str, run: &RunRecord) -> Result<()> {
        let (ds_before, ds_after) = ds(run);
        sqlx::query(
            "INSERT INTO runs (slug, kind, created_at, split, instance, model, layer, ds_before, \
             ds_after, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (slug) DO NOTHING",
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
        .bind(encode(run))
        .execute(&self.pool)
        .await
        .map_err(query("storing the run"))?;
        Ok(())
    }

    /// A run by slug.
    pub async fn run(&self, slug: &str) -> Result<Option<RunRecord>> {
        self.get(Table::Runs, slug).await
    }

    /// The newest runs first.
    pub async fn list_runs(&self, limit: i64) -> Result<Vec<RunSummary>> {
        let rows = sqlx::query(
            "SELECT slug, kind, created_at, split, instance, model, layer, ds_before, ds_after \
             FROM runs ORDER BY created_at DESC, slug LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query("listing runs"))?;
        summaries(&rows)
    }

    /// Every run of one instance, newest first.
    pub async fn runs_of_instance(&self, split: &str, id: u64) -> Result<Vec<RunSummary>> {
        let rows = sqlx::query(
            "SELECT slug, kind, created_at, split, instance, model, layer, ds_before, ds_after \
             FROM runs WHERE split = $1 AND instance = $2 ORDER BY created_at DESC, slug",
        )
        .bind(split)
        .bind(id as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(query(format!("listing the runs of {split} instance {id}")))?;
        summaries(&rows)
    }

    /// Records a new job.
    pub async fn insert_job(
        &self,
        id: &str,
        created_at: &str,
        request: &JobSpec,
        queue: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (id, created_at, request, status, queue) \
             VALUES ($1, $2, $3, 'queued', $4)",
        )
        .bind(id)
        .bind(created_at)
        .bind(encode(request))
        .bind(queue)
        .execute(&self.pool)
        .await
        .map_err(query(format!("recording job {id}")))?;
        Ok(())
    }

    /// Updates a job's status (and its result or error message).
    pub async fn set_job(
        &self,
        id: &str,
        status: JobStatus,
        result: Option<&str>,
        message: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE jobs SET status = $1, run_slug = $2, message = $3 WHERE id = $4")
            .bind(status_str(status))
            .bind(result)
            .bind(message)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query(format!("updating job {id}")))?;
        Ok(())
    }

    /// Appends `event` to job `id`'s events as number `seq` (its place in the job's stream; a
    /// number already taken is left as it is, so a repeated write is harmless). On Postgres it
    /// also notifies the channel [`JOB_EVENTS_CHANNEL`] with the job's id, so that the web
    /// server streams events of jobs running in other processes at once.
    pub async fn append_job_event(&self, id: &str, seq: usize, event: &JobEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_events (job, seq, event) VALUES ($1, $2, $3) \
             ON CONFLICT (job, seq) DO NOTHING",
        )
        .bind(id)
        .bind(seq as i64)
        .bind(encode(event))
        .execute(&self.pool)
        .await
        .map_err(query(format!("recording an event of job {id}")))?;
        if self.postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(JOB_EVENTS_CHANNEL)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(query(format!("announcing an event of job {id}")))?;
        }
        Ok(())
    }

    /// Job `id`'s events from number `from` on, in order.
    pub async fn job_events(&self, id: &str, from: usize) -> Result<Vec<JobEvent>> {
        let what = format!("the events of job {id}");
        let rows = sqlx::query(
            "SELECT seq, event FROM job_events WHERE job = $1 AND seq >= $2 ORDER BY seq",
        )
        .bind(id)
        .bind(from as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(query(format!("reading {what}")))?;
        let mut events = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let seq: i64 = row
                .try_get("seq")
                .map_err(query(format!("reading {what}")))?;
            if seq as usize != from + i {
                // A gap (an event not written yet): the rest comes with the next read.
                break;
            }
            let text: String = row
                .try_get("event")
                .map_err(query(format!("reading {what}")))?;
            events.push(serde_json::from_str(&text).map_err(|e| corrupt(&what, e))?);
        }
        Ok(events)
    }

    /// Asks the process running job `id` to stop it (it checks the flag while it runs).
    pub async fn request_job_cancel(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query(format!("cancelling job {id}")))?;
        Ok(())
    }

    /// Which of `ids` have been asked to stop.
    pub async fn cancel_requested(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut asked = Vec::new();
        for id in ids {
            let flag: Option<i64> =
                sqlx::query_scalar("SELECT cancel_requested FROM jobs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(query(format!("reading job {id}")))?;
            if flag.unwrap_or(0) != 0 {
                asked.push(id.clone());
            }
        }
        Ok(asked)
    }

    /// How many jobs of `queue` have `status` (the queue's bound counts the queued ones here,
    /// where every process sees them).
    pub async fn count_jobs(&self, status: JobStatus, queue: &str) -> Result<usize> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE status = $1 AND (queue = $2 OR queue IS NULL)",
        )
        .bind(status_str(status))
        .bind(queue)
        .fetch_one(&self.pool)
        .await
        .map_err(query("counting jobs"))?;
        Ok(n as usize)
    }

    /// Leaves the record `slug` (of any kind) off every listing, or lists it again.
    pub async fn set_unlisted(&self, slug: &str, unlisted: bool) -> Result<()> {
        let statement = if unlisted {
            sqlx::query(
                "INSERT INTO unlisted (slug, created_at) VALUES ($1, $2) \
                 ON CONFLICT (slug) DO NOTHING",
            )
            .bind(slug)
            .bind(now_rfc3339())
        } else {
            sqlx::query("DELETE FROM unlisted WHERE slug = $1").bind(slug)
        };
        statement
            .execute(&self.pool)
            .await
            .map_err(query(format!("unlisting {slug}")))?;
        Ok(())
    }

    /// The slugs left off the listings.
    pub async fn unlisted(&self) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query("SELECT slug FROM unlisted")
            .fetch_all(&self.pool)
            .await
            .map_err(query("reading the unlisted runs"))?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>(0)
                    .map_err(query("reading the unlisted runs"))
            })
            .collect()
    }

    /// `items` without the unlisted records, except those in `named` (a shared link names what
    /// it shows). `slug` gives an item's record slug; items without one (`None`) always stay.
    pub async fn listed<T>(
        &self,
        mut items: Vec<T>,
        slug: impl Fn(&T) -> Option<&str>,
        named: &[&str],
    ) -> Result<Vec<T>> {
        let hidden = self.unlisted().await?;
        items.retain(|item| slug(item).is_none_or(|s| !hidden.contains(s) || named.contains(&s)));
        Ok(items)
    }

    /// Marks jobs a previous server process left queued or running as failed; returns how many.
    pub async fn fail_interrupted_jobs(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'failed', message = 'the server stopped before the job \
             finished' WHERE status IN ('queued', 'running')",
        )
        .execute(&self.pool)
        .await
        .map_err(query("marking interrupted jobs"))?;
        Ok(done.rows_affected())
    }

    /// Jobs of `queue` (or of none) a server process left queued or running, oldest first:
    /// their ids and requests.
    pub async fn unfinished_jobs(&self, queue: &str) -> Result<Vec<(String, JobSpec)>> {
        let rows = sqlx::query(
            "SELECT id, request FROM jobs WHERE status IN ('queued', 'running') \
             AND (queue = $1 OR queue IS NULL) ORDER BY created_at, id",
        )
        .bind(queue)
        .fetch_all(&self.pool)
        .await
        .map_err(query("reading unfinished jobs"))?;
        rows.iter()
            .map(|row| {
                let id: String = row
                    .try_get("id")
                    .map_err(query("reading unfinished jobs"))?;
                let request: String = row
                    .try_get("request")
                    .map_err(query("reading unfinished jobs"))?;
                let spec =
                    JobSpec::from_stored(&request).map_err(|e| corrupt(&format!("job {id}"), e))?;
                Ok((id, spec))
            })
            .collect()
    }

    /// A job's stored state.
    pub async fn job(&self, id: &str) -> Result<Option<StoredJob>> {
        let what = format!("job {id}");
        let row = sqlx::query("SELECT request, status, run_slug, message FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query(format!("reading {what}")))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let column = |name: &str| -> Result<Option<String>> {
            row.try_get(name).map_err(query(format!("reading {what}")))
        };
        let request: String = column("request")?.unwrap_or_default();
        let status = column("status")?.unwrap_or_default();
        Ok(Some(StoredJob {
            request: JobSpec::from_stored(&request).map_err(|e| corrupt(&what, e))?,
            status: parse_status(&status).ok_or_else(|| StoreError::Corrupt {
                what: what.clone(),
                message: format!("unknown status `{status}`"),
            })?,
            result: column("run_slug")?,
            message: column("message")?,
        }))
    }

    /// Stores an evaluation run (replacing an earlier version of the same slug) with its
    /// instances, in one transaction.
    pub async fn upsert_eval(
        &self,
        record: &EvalRecord,
        instances: &[InstanceResult],
    ) -> Result<()> {
        let slug = &record.slug;
        let stored = query(format!("storing evaluation {slug}"));
        let mut tx = self.replace(Table::Evals, slug).await?;
        sqlx::query("DELETE FROM eval_instances WHERE slug = $1")
            .bind(slug)
            .execute(&mut *tx)
            .await
            .map_err(query(format!("replacing evaluation {slug}")))?;
        let inserted = async {
            sqlx::query(
                "INSERT INTO evals (slug, created_at, updated_at, method, data, model, \
                 instances, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(slug)
            .bind(&record.created_at)
            .bind(&record.updated_at)
            .bind(&record.method)
            .bind(&record.data)
            .bind(&record.model)
            .bind(record.instances as i64)
            .bind(encode(record))
            .execute(&mut *tx)
            .await?;
            for r in instances {
                sqlx::query("INSERT INTO eval_instances (slug, id, record) VALUES ($1, $2, $3)")
                    .bind(slug)
                    .bind(r.id as i64)
                    .bind(encode(r))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        };
        inserted.await.map_err(stored)
    }

    /// An evaluation run by slug.
    pub async fn eval(&self, slug: &str) -> Result<Option<EvalRecord>> {
        self.get(Table::Evals, slug).await
    }

    /// An evaluation's instances, by id.
    pub async fn eval_instances(&self, slug: &str) -> Result<Vec<InstanceResult>> {
        let what = format!("evaluation {slug}");
        sqlx::query("SELECT record FROM eval_instances WHERE slug = $1 ORDER BY id")
            .bind(slug)
            .fetch_all(&self.pool)
            .await
            .map_err(query(format!("reading {what}")))?
            .iter()
            .map(|r| decode(r, &format!("{what}, an instance")))
            .collect()
    }

    /// Stores a reader's flag on one verdict of evaluation `slug` (replacing an earlier flag on
    /// the same instance and input).
    pub async fn set_verdict_flag(&self, slug: &str, flag: &VerdictFlag) -> Result<()> {
        let what = format!(
            "the flag on instance {} {} of {slug}",
            flag.instance, flag.kind
        );
        sqlx::query(
            "INSERT INTO verdict_flags (slug, instance, kind, record) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (slug, instance, kind) DO UPDATE SET record = excluded.record",
        )
        .bind(slug)
        .bind(flag.instance as i64)
        .bind(&flag.kind)
        .bind(encode(flag))
        .execute(&self.pool)
        .await
        .map_err(query(format!("storing {what}")))?;
        Ok(())
    }

    /// Removes the flag on instance `instance`'s input `kind` of evaluation `slug`; whether there
    /// was one.
    pub async fn clear_verdict_flag(&self, slug: &str, instance: u64, kind: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM verdict_flags WHERE slug = $1 AND instance = $2 AND kind = $3",
        )
        .bind(slug)
        .bind(instance as i64)
        .bind(kind)
        .execute(&self.pool)
        .await
        .map_err(query(format!(
            "removing the flag on instance {instance} {kind} of {slug}"
        )))?;
        Ok(done.rows_affected() > 0)
    }

    /// The flags on evaluation `slug`'s verdicts, by instance and input.
    pub async fn verdict_flags(&self, slug: &str) -> Result<Vec<VerdictFlag>> {
        let what = format!("the verdict flags of {slug}");
        sqlx::query("SELECT record FROM verdict_flags WHERE slug = $1 ORDER BY instance, kind")
            .bind(slug)
            .fetch_all(&self.pool)
            .await
            .map_err(query(format!("reading {what}")))?
            .iter()
            .map(|r| decode(r, &what))
            .collect()
    }

    /// Every verdict flag with its evaluation's slug, by slug, instance and input.
    pub async fn all_verdict_flags(&self) -> Result<Vec<(String, VerdictFlag)>> {
        let what = "the verdict flags";
        sqlx::query("SELECT slug, record FROM verdict_flags ORDER BY slug, instance, kind")
            .fetch_all(&self.pool)
            .await
            .map_err(query(format!("reading {what}")))?
            .iter()
            .map(|r| {
                let slug: String = r
                    .try_get("slug")
                    .map_err(query(format!("reading {what}")))?;
                Ok((slug, decode(r, what)?))
            })
            .collect()
    }

    /// Every evaluation run, newest first (full records: the metric rows are small).
    pub async fn list_evals(&self) -> Result<Vec<EvalRecord>> {
        self.list(
            Table::Evals,
            "SELECT record FROM evals ORDER BY updated_at DESC, slug",
        )
        .await
    }

    /// Every evaluation with an instance of id `id` (of any split; the record's `data` says
    /// which), newest first.
    pub async fn evals_with_instance(&self, id: u64) -> Result<Vec<EvalRecord>> {
        let what = format!("evaluations of instance {id}");
        sqlx::query(
            "SELECT e.record FROM evals e JOIN eval_instances i ON i.slug = e.slug \
             WHERE i.id = $1 ORDER BY e.updated_at DESC, e.slug",
        )
        .bind(id as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(query(format!("listing {what}")))?
        .iter()
        .map(|r| decode(r, &what))
        .collect()
    }

    /// Stores (or replaces) an analysis.
    pub async fn upsert_analysis(&self, record: &AnalysisRecord) -> Result<()> {
        let mut tx = self.replace(Table::Analyses, &record.slug).await?;
        let inserted = async {
            sqlx::query(
                "INSERT INTO analyses (slug, created_at, model, methods, record) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&record.slug)
            .bind(&record.created_at)
            .bind(&record.model)
            .bind(record.methods.join(","))
            .bind(encode(record))
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        };
        inserted
            .await
            .map_err(query(format!("storing analysis {}", record.slug)))
    }

    /// An analysis by slug.
    pub async fn analysis(&self, slug: &str) -> Result<Option<AnalysisRecord>> {
        self.get(Table::Analyses, slug).await
    }

    /// Every analysis, newest first.
    pub async fn list_analyses(&self) -> Result<Vec<AnalysisSummary>> {
        let records: Vec<AnalysisRecord> = self
            .list(
                Table::Analyses,
                "SELECT record FROM analyses ORDER BY created_at DESC, slug",
            )
            .await?;
        Ok(records.iter().map(AnalysisRecord::summary).collect())
    }

    /// Stores (or replaces) a test_ALL run.
    pub async fn upsert_test_all(&self, record: &TestAllRunRecord) -> Result<()> {
        let mut tx = self.replace(Table::TestAll, &record.slug).await?;
        let inserted = async {
            sqlx::query(
                "INSERT INTO test_all_runs (slug, created_at, method, model, record) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&record.slug)
            .bind(&record.created_at)
            .bind(&record.method)
            .bind(&record.model)
            .bind(encode(record))
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        };
        inserted
            .await
            .map_err(query(format!("storing test_ALL run {}", record.slug)))
    }

    /// A test_ALL run by slug.
    pub async fn test_all(&self, slug: &str) -> Result<Option<TestAllRunRecord>> {
        self.get(Table::TestAll, slug).await
    }

    /// Every test_ALL run, oldest first (the order rows are added to a table).
    pub async fn list_test_all(&self) -> Result<Vec<TestAllRunRecord>> {
        self.list(
            Table::TestAll,
            "SELECT record FROM test_all_runs ORDER BY created_at, slug",
        )
        .await
    }
}

/// A record as stored (JSON). Records are plain data, so this cannot fail.
fn encode<T: Serialize>(record: &T) -> String {
    serde_json::to_string(record).expect("records serialise to JSON")
}

/// The `record` column of a row, parsed.
fn decode<T: DeserializeOwned>(row: &AnyRow, what: &str) -> Result<T> {
    let text: String = row
        .try_get("record")
        .map_err(query(format!("reading {what}")))?;
    serde_json::from_str(&text).map_err(|e| corrupt(what, e))
}

fn corrupt(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
        message: e.to_string(),
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

fn parse_status(s: &str) -> Option<JobStatus> {
    [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ]
    .into_iter()
    .find(|&status| status_str(status) == s)
}

fn ds(run: &RunRecord) -> (f64, f64) {
    run.outcome
        .defense()
        .into_iter()
        .find(|(kind, _, _)| kind == "DS")
        .map_or((0.0, 0.0), |(_, before, after)| (before, after))
}

/// Run summaries from rows of the runs table's summary columns.
fn summaries(rows: &[AnyRow]) -> Result<Vec<RunSummary>> {
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
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(query("reading the runs list"))
}
