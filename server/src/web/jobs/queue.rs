//! The durable queue under the jobs: apalis on `jobs.sqlite` beside the runs database, or, when the
//! runs database is on Postgres, apalis-postgres in the same database (schema `apalis`, where
//! workers on other machines can claim tasks with `FOR UPDATE SKIP LOCKED`). One design on both:
//! each job is one apalis task carrying the job's id and request (the id is also the task's
//! idempotency key, so queueing a job twice queues it once). The task table survives restarts:
//! queued tasks wait for the next worker, and a task whose worker stopped mid-run is handed out
//! again.

use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_postgres::{PgConnectOptions, PgPool, PostgresStorage};
use apalis_sqlite::{Config, SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use safeedit_core::job::JobSpec;
use serde::{Deserialize, Serialize};

/// The queues' names in the task table begin with this, followed by `:` and the model's name:
/// a worker takes the jobs of the model it has loaded.
pub const QUEUE: &str = "safeedit-jobs";

/// The queue of the model `model` (its name as loaded, e.g. `SmolLM2-135M-Instruct`).
pub fn queue_name(model: &str) -> String {
    format!("{QUEUE}:{model}")
}

/// How often an idle worker looks for a new task.
pub const POLL: Duration = Duration::from_millis(300);

/// One queued job as the task table stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedJob {
    /// The job's id (`/jobs/{id}`).
    pub id: String,
    /// What it does.
    pub spec: JobSpec,
}

/// Why the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The task database could not be opened, set up or queried.
    #[error("job queue database {what}: {source}")]
    Database {
        /// What was being done.
        what: String,
        /// The database's answer.
        source: apalis_sqlite::SqlxError,
    },
    /// apalis refused the task.
    #[error("queueing job {id}: {message}")]
    Push {
        /// The job.
        id: String,
        /// apalis's answer.
        message: String,
    },
}

fn database(what: impl Into<String>) -> impl FnOnce(apalis_sqlite::SqlxError) -> QueueError {
    let what = what.into();
    move |source| QueueError::Database { what, source }
}

/// The task table and a storage handle on it.
#[derive(Clone)]
pub struct Queue {
    tasks: Tasks,
    /// This queue's name in the task table ([`queue_name`]).
    name: String,
}

/// Where the tasks are.
#[derive(Clone)]
pub enum Tasks {
    /// `jobs.sqlite` in the data folder.
    Sqlite {
        /// Its pool.
        pool: SqlitePool,
        /// apalis on it.
        storage: SqliteStorage<QueuedJob>,
    },
    /// The runs database's Postgres server (schema `apalis`).
    Postgres {
        /// Its pool.
        pool: PgPool,
        /// apalis on it.
        storage: PostgresStorage<QueuedJob>,
    },
}

/// Task ids are ULIDs, generated monotonically so that jobs queued in the same millisecond keep
/// their order.
static TASK_IDS: Mutex<Option<ulid::Generator>> = Mutex::new(None);

fn next_task_id() -> TaskId {
    let mut generator = TASK_IDS.lock().unwrap_or_else(|p| p.into_inner());
    let generator = generator.get_or_insert_with(ulid::Generator::new);
    let ulid = generator
        .generate()
        .unwrap_or_else(|overflow| overflow.commit_overflow_increment());
    TaskId::from_ulid(ulid)
}

impl Queue {
    /// Opens the queue of `model` beside the runs database: on the Postgres server `url` names,
    /// or in `jobs.sqlite` in `dir` (SQLite runs databases, or none), and brings its tables up
    /// to date.
    pub async fn open(url: Option<&str>, dir: &Path, model: &str) -> Result<Self, QueueError> {
        let name = queue_name(model);
        let tasks = match url {
            Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
                Self::open_postgres(url, &name).await?
            }
            _ => Self::open_sqlite(dir, &name).await?,
        };
        let queue = Self { tasks, name };
        queue.adopt_unnamed().await?;
        Ok(queue)
    }

    /// Earlier versions had one queue for every model (named [`QUEUE`]); its unfinished tasks
    /// move to this model's queue (a server then only ever had one model).
    async fn adopt_unnamed(&self) -> Result<(), QueueError> {
        let moved = match &self.tasks {
            Tasks::Sqlite { pool, .. } => sqlx::query(
                "UPDATE Jobs SET job_type = ?1 WHERE job_type = ?2 \
                 AND status IN ('Pending', 'Queued', 'Running')",
            )
            .bind(&self.name)
            .bind(QUEUE)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
            Tasks::Postgres { pool, .. } => sqlx::query(
                "UPDATE apalis.jobs SET job_type = $1 WHERE job_type = $2 \
                 AND status IN ('Pending', 'Queued', 'Running')",
            )
            .bind(&self.name)
            .bind(QUEUE)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
        }
        .map_err(database("moving the tasks of the unnamed queue"))?;
        if moved > 0 {
            tracing::info!(queue = %self.name, "{moved} unfinished task(s) of the unnamed queue moved here");
        }
        Ok(())
    }

    async fn open_postgres(url: &str, name: &str) -> Result<Tasks, QueueError> {
        let what = safeedit_store::redact_url(url);
        let options =
            PgConnectOptions::from_str(url).map_err(database(format!("{what}: the URL")))?;
        let pool = apalis_postgres::PgPool::connect_with(options)
            .await
            .map_err(database(format!("{what}: connecting")))?;
        // apalis's migrations keep their own record in its schema, apart from the runs
        // database's (a shared `_sqlx_migrations` would make each refuse the other's versions).
        let mut migrations = PostgresStorage::<()>::migrations();
        migrations.create_schema("apalis");
        migrations.dangerous_set_table_name("apalis._sqlx_migrations");
        migrations
            .run(&pool)
            .await
            .map_err(|e| QueueError::Database {
                what: format!("{what}: setting up the task tables (schema apalis)"),
                source: e.into(),
            })?;
        let storage = PostgresStorage::new(&pool).with_config(Self::pg_config(name));
        Ok(Tasks::Postgres { pool, storage })
    }

    /// Opens (creating) `jobs.sqlite` in `dir` and brings its tables up to date.
    async fn open_sqlite(dir: &Path, name: &str) -> Result<Tasks, QueueError> {
        std::fs::create_dir_all(dir).map_err(|e| QueueError::Database {
            what: format!("folder {}", dir.display()),
            source: apalis_sqlite::SqlxError::Io(e),
        })?;
        let path = dir.join("jobs.sqlite");
        let what = path.display().to_string();
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{what}"))
            .map_err(database(format!("{what}: the path")))?
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(database(format!("{what}: opening")))?;
        SqliteStorage::setup(&pool)
            .await
            .map_err(|e| QueueError::Database {
                what: format!("{what}: setting up the task tables"),
                source: match e {
                    apalis_sqlite::Error::Database(e) => e,
                    other => apalis_sqlite::SqlxError::Protocol(other.to_string()),
                },
            })?;
        let storage = SqliteStorage::new(&pool).with_config(Self::config(name));
        Ok(Tasks::Sqlite { pool, storage })
    }

    /// The Postgres storage's settings, the same as [`Self::config`]'s: a worker that misses
    /// three heartbeats (30 s) is taken for dead, and another worker's next heartbeat hands its
    /// task out again.
    pub fn pg_config(name: &str) -> apalis_postgres::Config {
        apalis_postgres::Config::default()
            .queue(name)
            .batch_size(1)
            .heartbeat_interval(Duration::from_secs(10))
            .missed_heartbeats(3)
    }

    /// The storage's settings: one task at a time per worker, heartbeats every 10 s.
    pub fn config(name: &str) -> Config {
        Config::default()
            .queue(name)
            .batch_size(1)
            .heartbeat_interval(Duration::from_secs(10))
            .missed_heartbeats(3)
    }

    /// Where the tasks are (a worker takes its storage handle from here).
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Queues a job (once: a job already in the table is left as it is).
    pub async fn push(&self, job: QueuedJob) -> Result<(), QueueError> {
        let id = job.id.clone();
        let task = TaskBuilder::new(job)
            .task_id(next_task_id())
            .idempotency_key(&id)
            .max_attempts(1)
            .build();
        let pushed = match &self.tasks {
            Tasks::Sqlite { storage, .. } => storage
                .clone()
                .push_task(task)
                .await
                .map_err(|e| e.to_string()),
            Tasks::Postgres { storage, .. } => {
                // apalis-postgres refuses a second task with the key (SQLite's ignores it): a
                // job already in the table stays as it is, as on SQLite.
                if self.state(&id).await?.is_some() {
                    return Ok(());
                }
                match storage.clone().push_task(task).await {
                    Err(e) if e.to_string().contains("idx_jobs_idempotency_key") => Ok(()),
                    other => other.map_err(|e| e.to_string()),
                }
            }
        };
        pushed.map_err(|message| QueueError::Push { id, message })
    }

    /// The task table's status of a job (`Pending`, `Queued`, `Running`, `Done`, `Failed`,
    /// `Killed`) and the worker holding it; `None` for a job the table does not have.
    pub async fn state(&self, id: &str) -> Result<Option<(String, Option<String>)>, QueueError> {
        let row: Option<(String, Option<String>)> =
            match &self.tasks {
                Tasks::Sqlite { pool, .. } => sqlx::query_as(
                    "SELECT status, lock_by FROM Jobs WHERE job_type = ?1 AND idempotency_key = ?2",
                )
                .bind(&self.name)
                .bind(id)
                .fetch_optional(pool)
                .await,
                Tasks::Postgres { pool, .. } => {
                    sqlx::query_as(
                        "SELECT status, lock_by FROM apalis.jobs \
                     WHERE job_type = $1 AND idempotency_key = $2",
                    )
                    .bind(&self.name)
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                }
            }
            .map_err(database(format!("reading job {id}")))?;
        Ok(row)
    }

    /// Takes a job that no worker has picked up out of the queue; false when a worker already
    /// has it (it then sees the cancel flag when it starts).
    pub async fn kill_pending(&self, id: &str) -> Result<bool, QueueError> {
        let killed = match &self.tasks {
            Tasks::Sqlite { pool, .. } => sqlx::query(
                "UPDATE Jobs SET status = 'Killed', done_at = strftime('%s', 'now'), \
                 last_result = '{\"Err\":\"cancelled\"}' \
                 WHERE job_type = ?1 AND idempotency_key = ?2 AND status = 'Pending' \
                 AND lock_by IS NULL",
            )
            .bind(&self.name)
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
            Tasks::Postgres { pool, .. } => sqlx::query(
                "UPDATE apalis.jobs SET status = 'Killed', done_at = now(), \
                 last_result = '{\"Err\":\"cancelled\"}'::jsonb \
                 WHERE job_type = $1 AND idempotency_key = $2 AND status = 'Pending' \
                 AND lock_by IS NULL",
            )
            .bind(&self.name)
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
        }
        .map_err(database(format!("cancelling job {id}")))?;
        Ok(killed > 0)
    }

    /// Hands the tasks worker `name` holds back to the queue (its process is stopping and its
    /// jobs stopped at their last check), so another worker takes them at once rather than
    /// after the missed heartbeats.
    pub async fn release(&self, name: &str) -> Result<u64, QueueError> {
        match &self.tasks {
            Tasks::Sqlite { pool, .. } => sqlx::query(
                "UPDATE Jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL \
                 WHERE job_type = ?1 AND lock_by = ?2 AND status IN ('Queued', 'Running')",
            )
            .bind(&self.name)
            .bind(name)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
            Tasks::Postgres { pool, .. } => sqlx::query(
                "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL \
                 WHERE job_type = $1 AND lock_by = $2 AND status IN ('Queued', 'Running')",
            )
            .bind(&self.name)
            .bind(name)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
        }
        .map_err(database(format!("handing back the tasks of worker {name}")))
    }

    /// Declares the worker `name` of an earlier process gone, so that registering it again
    /// succeeds at once and hands its unfinished task out again (instead of after the missed
    /// heartbeats). Only for a worker name no other live process uses.
    pub async fn forget_worker(&self, name: &str) -> Result<(), QueueError> {
        match &self.tasks {
            Tasks::Sqlite { pool, .. } => {
                sqlx::query("UPDATE Workers SET last_seen = 0 WHERE id = ?1")
                    .bind(name)
                    .execute(pool)
                    .await
                    .map(|_| ())
            }
            Tasks::Postgres { pool, .. } => {
                sqlx::query("UPDATE apalis.workers SET last_seen = to_timestamp(0) WHERE id = $1")
                    .bind(name)
                    .execute(pool)
                    .await
                    .map(|_| ())
            }
        }
        .map_err(database(format!("resetting worker {name}")))?;
        Ok(())
    }
}
