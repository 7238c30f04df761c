//! The durable queue under the jobs: apalis on `jobs.sqlite` beside the runs database. Each job is
//! one apalis task carrying the job's id and request (the id is also the task's idempotency key,
//! so queueing a job twice queues it once). The task table survives restarts: queued tasks wait
//! for the next worker, and a task whose worker stopped mid-run is handed out again.

use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_sqlite::{Config, SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use safeedit_core::job::JobSpec;
use serde::{Deserialize, Serialize};

/// The queue's name in the task table.
pub const QUEUE: &str = "safeedit-jobs";

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
    pool: SqlitePool,
    storage: SqliteStorage<QueuedJob>,
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
    /// Opens (creating) `jobs.sqlite` in `dir` and brings its tables up to date.
    pub async fn open(dir: &Path) -> Result<Self, QueueError> {
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
        let storage = SqliteStorage::new(&pool).with_config(Self::config());
        Ok(Self { pool, storage })
    }

    /// The storage's settings: one task at a time per worker, heartbeats every 10 s.
    pub fn config() -> Config {
        Config::default()
            .queue(QUEUE)
            .batch_size(1)
            .heartbeat_interval(Duration::from_secs(10))
            .missed_heartbeats(3)
    }

    /// A storage handle for a worker.
    pub fn storage(&self) -> SqliteStorage<QueuedJob> {
        self.storage.clone()
    }

    /// Queues a job (once: a job already in the table is left as it is).
    pub async fn push(&self, job: QueuedJob) -> Result<(), QueueError> {
        let id = job.id.clone();
        let task = TaskBuilder::new(job)
            .task_id(next_task_id())
            .idempotency_key(&id)
            .max_attempts(1)
            .build();
        self.storage
            .clone()
            .push_task(task)
            .await
            .map_err(|e| QueueError::Push {
                id,
                message: e.to_string(),
            })
    }

    /// The task table's status of a job (`Pending`, `Queued`, `Running`, `Done`, `Failed`,
    /// `Killed`) and the worker holding it; `None` for a job the table does not have.
    pub async fn state(&self, id: &str) -> Result<Option<(String, Option<String>)>, QueueError> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT status, lock_by FROM Jobs WHERE job_type = ?1 AND idempotency_key = ?2",
        )
        .bind(QUEUE)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database(format!("reading job {id}")))?;
        Ok(row)
    }

    /// Takes a job that no worker has picked up out of the queue; false when a worker already
    /// has it (it then sees the cancel flag when it starts).
    pub async fn kill_pending(&self, id: &str) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "UPDATE Jobs SET status = 'Killed', done_at = strftime('%s', 'now'), \
             last_result = '{\"Err\":\"cancelled\"}' \
             WHERE job_type = ?1 AND idempotency_key = ?2 AND status = 'Pending' \
             AND lock_by IS NULL",
        )
        .bind(QUEUE)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(database(format!("cancelling job {id}")))?;
        Ok(done.rows_affected() > 0)
    }

    /// Declares the worker `name` of an earlier process gone, so that registering it again
    /// succeeds at once and hands its unfinished task out again (instead of after the missed
    /// heartbeats). Only for a worker name no other live process uses.
    pub async fn forget_worker(&self, name: &str) -> Result<(), QueueError> {
        sqlx::query("UPDATE Workers SET last_seen = 0 WHERE id = ?1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(database(format!("resetting worker {name}")))?;
        Ok(())
    }
}
