//! The web app's jobs: every experiment a user starts from the browser or the JSON API, queued
//! durably ([`queue`]: apalis on `jobs.sqlite`) and run one at a time by the embedded worker on
//! the loaded model ([`worker`]). A job's events (queue position, phases with counts and ETA, the
//! located layer, each step's loss) stream over SSE; its state, worker and result are in the runs
//! database too. The queue is bounded: a full queue answers "busy" instead of piling up.
//!
//! After a restart the jobs the previous process left queued or running are queued again:
//! queued tasks keep their place, the interrupted one is handed out again and starts over (an
//! evaluation resumes from the instances it had finished). A queued job is cancelled at once, a
//! running one at its next check: after the generated token, optimisation step or training
//! step under way.

mod queue;
mod worker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use apalis::prelude::{
    Attempt, BackendExt, BoxDynError, Data, WorkerBuilder, WorkerBuilderExt, WorkerContext,
};
use safeedit_core::job::{JobInfo, JobProgress, JobSpec};
use safeedit_core::run::{JobEvent, JobSnapshot, JobStatus};
use safeedit_store::{Store, StoredJob, now_rfc3339, random_slug};
use tokio::sync::watch;

pub use queue::{Queue, QueuedJob, Tasks};
pub use worker::ModelContext;
use worker::{ModelThread, Outcome};

/// How many jobs may wait behind the running one.
pub const QUEUE_CAPACITY: usize = 8;

/// The name of the worker inside the server process.
pub const EMBEDDED_WORKER: &str = "embedded";

/// How often a job may be started: a job that was running each time the server stopped (or
/// crashed) is not started again after this many starts.
pub const MAX_STARTS: usize = 3;

/// One job: its request, its events, and a channel that ticks on every new event.
pub struct Job {
    id: String,
    spec: JobSpec,
    events: Mutex<Vec<JobEvent>>,
    /// When the last progress event arrived (to report the time since).
    progress_at: Mutex<Option<std::time::Instant>>,
    cancel: AtomicBool,
    tick: watch::Sender<usize>,
}

impl Job {
    fn new(id: &str, spec: JobSpec) -> Arc<Self> {
        Arc::new(Self {
            id: id.to_string(),
            spec,
            events: Mutex::new(Vec::new()),
            progress_at: Mutex::new(None),
            cancel: AtomicBool::new(false),
            tick: watch::channel(0).0,
        })
    }

    fn push(&self, event: JobEvent) {
        if matches!(event, JobEvent::Progress(_)) {
            *self.progress_at.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now());
        }
        let n = {
            let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
            events.push(event);
            events.len()
        };
        self.tick.send_replace(n);
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What it does.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    fn cancel_requested(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn status(&self) -> JobStatus {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .map_or(JobStatus::Queued, JobEvent::status)
    }

    /// The events so far and the status they imply.
    pub fn snapshot(&self) -> JobSnapshot {
        let events = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let status = events.last().map_or(JobStatus::Queued, JobEvent::status);
        JobSnapshot {
            id: self.id.clone(),
            request: self.spec.clone(),
            status,
            events,
        }
    }

    /// A receiver that changes whenever an event arrives.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.tick.subscribe()
    }
}

/// What the queue handle shares with its worker.
struct Shared {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    store: Store,
    queue: Queue,
    model: ModelThread,
    /// What checks every job before it is queued.
    check: safeedit_pipeline::job::Worker,
    /// The worker's task (aborted when the server stops).
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The queue handle kept in the web state.
#[derive(Clone)]
pub struct Jobs {
    shared: Arc<Shared>,
}

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request names no instance or has an out-of-range setting.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The queue is full.
    #[error("busy: {0} jobs are waiting; try again when one finishes")]
    Busy(usize),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The event that ends a job with the result at `page` (runs keep their old event: no path).
fn done_event(page: &str) -> JobEvent {
    let slug = page.rsplit('/').next().unwrap_or(page).to_string();
    let path = (!page.starts_with("/runs/")).then(|| page.to_string());
    JobEvent::Done { slug, path }
}

impl Jobs {
    /// Opens the task queue (on the Postgres server `url` names, else in `queue_dir`), starts
    /// the model thread and the embedded worker, and queues again the jobs an earlier process
    /// left unfinished.
    pub async fn start(
        ctx: ModelContext,
        url: Option<&str>,
        queue_dir: &Path,
    ) -> anyhow::Result<Self> {
        let queue = Queue::open(url, queue_dir).await?;
        let store = ctx.store.clone();
        let check = ctx.worker.clone();
        let jobs = Self {
            shared: Arc::new(Shared {
                jobs: Mutex::new(HashMap::new()),
                store,
                queue,
                model: ModelThread::start(ctx),
                check,
                worker: Mutex::new(None),
            }),
        };
        jobs.requeue_unfinished().await?;
        jobs.shared.queue.forget_worker(EMBEDDED_WORKER).await?;
        // The same worker on either storage (two types, so built in each arm).
        let handle = match jobs.shared.queue.tasks() {
            Tasks::Sqlite { storage, .. } => {
                let worker = WorkerBuilder::new(EMBEDDED_WORKER)
                    .backend(storage.clone().poll_with_interval(queue::POLL))
                    .concurrency(1)
                    .data(jobs.clone())
                    .build(execute);
                tokio::spawn(async move {
                    if let Err(e) = worker.run().await {
                        tracing::error!("the job worker stopped: {e}");
                    }
                })
            }
            Tasks::Postgres { storage, .. } => {
                let worker = WorkerBuilder::new(EMBEDDED_WORKER)
                    .backend(storage.clone().poll_with_interval(queue::POLL))
                    .concurrency(1)
                    .data(jobs.clone())
                    .build(execute);
                tokio::spawn(async move {
                    if let Err(e) = worker.run().await {
                        tracing::error!("the job worker stopped: {e}");
                    }
                })
            }
        };
        *jobs.shared.worker.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(jobs)
    }

    /// Queues again what the runs database says is unfinished (the task table keeps a job that
    /// is still in it; jobs of older versions without a task get one).
    async fn requeue_unfinished(&self) -> anyhow::Result<()> {
        let unfinished = self.shared.store.unfinished_jobs().await?;
        for (ahead, (id, spec)) in unfinished.into_iter().enumerate() {
            let job = Job::new(&id, spec.clone());
            self.shared
                .queue
                .push(QueuedJob {
                    id: id.clone(),
                    spec,
                })
                .await?;
            let ended = match self.shared.queue.state(&id).await? {
                Some((status, _)) if status == "Killed" => Some(JobEvent::Cancelled),
                Some((status, _)) if status == "Done" || status == "Failed" => {
                    Some(JobEvent::Failed {
                        message: "the server stopped while the job was ending; start it again"
                            .into(),
                    })
                }
                _ => None,
            };
            match ended {
                Some(event) => {
                    let status = event.status();
                    let message = match &event {
                        JobEvent::Failed { message } => Some(message.clone()),
                        _ => None,
                    };
                    job.push(event);
                    self.shared
                        .store
                        .set_job(&id, status, None, message.as_deref())
                        .await?;
                }
                None => {
                    tracing::info!(job = %id, "queued again after a restart");
                    job.push(JobEvent::Queued { ahead });
                    self.shared
                        .store
                        .set_job(&id, JobStatus::Queued, None, None)
                        .await?;
                }
            }
            self.insert(job);
        }
        Ok(())
    }

    fn insert(&self, job: Arc<Job>) {
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone(), job);
    }

    /// Checks a job before it is queued.
    pub fn validate(&self, spec: &JobSpec) -> Result<(), SubmitError> {
        self.shared
            .check
            .check(spec)
            .map_err(|e| SubmitError::Invalid(e.to_string()))
    }

    /// Queues a job; returns its id and how many jobs are ahead of it. The queue's place is
    /// taken under the same lock that counts the waiting jobs, so concurrent submissions never
    /// exceed [`QUEUE_CAPACITY`].
    pub async fn submit(&self, spec: JobSpec) -> Result<(String, usize), SubmitError> {
        self.submit_with(spec, false).await
    }

    /// [`Jobs::submit`]; with `unlisted`, every record the job stores is unlisted (off the
    /// lists, reachable by its link).
    pub async fn submit_with(
        &self,
        spec: JobSpec,
        unlisted: bool,
    ) -> Result<(String, usize), SubmitError> {
        self.validate(&spec)?;
        let id = random_slug(12);
        // What the job needs fixed before it is queued (a train job's model name and folder).
        let check = &self.shared.check;
        let spec = check
            .prepare(&id, &spec)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let ahead = {
            let mut jobs = self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let waiting = jobs
                .values()
                .filter(|j| j.status() == JobStatus::Queued)
                .count();
            if waiting >= QUEUE_CAPACITY {
                drop(jobs);
                check.release(&id, &spec);
                return Err(SubmitError::Busy(waiting));
            }
            let running = jobs.values().any(|j| j.status() == JobStatus::Running);
            let ahead = waiting + usize::from(running);
            let job = Job::new(&id, spec.clone());
            job.push(JobEvent::Queued { ahead });
            jobs.insert(id.clone(), job);
            ahead
        };
        let queued = async {
            if unlisted {
                // Before the job can run, so not one of its records is ever listed.
                self.shared.store.set_unlisted(&id, true).await?;
            }
            self.shared
                .store
                .insert_job(&id, &now_rfc3339(), &spec)
                .await?;
            self.shared
                .queue
                .push(QueuedJob {
                    id: id.clone(),
                    spec: spec.clone(),
                })
                .await?;
            anyhow::Ok(())
        };
        if let Err(e) = queued.await {
            // The place is given back; the job was never queued.
            self.shared
                .jobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            check.release(&id, &spec);
            return Err(SubmitError::Other(e));
        }
        Ok((id, ahead))
    }

    /// The trained models' folder (what train jobs write and other jobs name).
    pub fn models(&self) -> &safeedit_pipeline::models::ModelsDir {
        &self.shared.check.models
    }

    /// A job of this process.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// A job's snapshot: from memory, or for jobs of an earlier process from the database.
    pub async fn snapshot(&self, id: &str) -> safeedit_store::Result<Option<JobSnapshot>> {
        if let Some(job) = self.get(id) {
            return Ok(Some(job.snapshot()));
        }
        Ok(self.shared.store.job(id).await?.map(
            |StoredJob {
                 request,
                 status,
                 result,
                 message,
             }| {
                let event = match (status, result) {
                    (JobStatus::Done, Some(stored)) if stored.starts_with('/') => {
                        done_event(&stored)
                    }
                    (JobStatus::Done, Some(slug)) => JobEvent::Done { slug, path: None },
                    (JobStatus::Cancelled, _) => JobEvent::Cancelled,
                    _ => JobEvent::Failed {
                        message: message.unwrap_or_else(|| "the job did not finish".into()),
                    },
                };
                JobSnapshot {
                    id: id.to_string(),
                    request,
                    status: event.status(),
                    events: vec![event],
                }
            },
        ))
    }

    /// A job as the JSON API reports it.
    pub async fn info(&self, id: &str) -> safeedit_store::Result<Option<JobInfo>> {
        let Some(job) = self.get(id) else {
            return Ok(self.snapshot(id).await?.map(|s| s.info()));
        };
        let mut info = job.snapshot().info();
        // The phase's clock runs on between its progress events.
        let since = job
            .progress_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed().as_secs_f64());
        if let (Some(p), Some(since)) = (info.progress.as_mut(), since) {
            *p = JobProgress::new(
                std::mem::take(&mut p.phase),
                std::mem::take(&mut p.unit),
                p.done,
                p.total,
                p.elapsed_s + since,
            );
        }
        Ok(Some(info))
    }

    /// Cancels a job; false when it is unknown or already finished.
    pub async fn cancel(&self, id: &str) -> bool {
        let Some(job) = self.get(id) else {
            return false;
        };
        if job.status().is_final() {
            return false;
        }
        job.cancel.store(true, Ordering::SeqCst);
        if job.status() == JobStatus::Queued {
            // Out of the task table, unless the worker has just taken it (it then sees the
            // flag before it starts).
            if let Err(e) = self.shared.queue.kill_pending(id).await {
                tracing::warn!(job = %id, "{e}");
            }
            job.push(JobEvent::Cancelled);
            if let Err(e) = self
                .shared
                .store
                .set_job(id, JobStatus::Cancelled, None, None)
                .await
            {
                tracing::warn!(job = %id, "{e}");
            }
        }
        true
    }

    /// Stops the worker as the server stops: the running job ends at its next check (a
    /// training writes its checkpoint first; this waits up to a minute for it) and, like the
    /// queued ones, is taken up again by the next server process.
    pub fn shutdown(&self) {
        self.shared.model.stopping.store(true, Ordering::SeqCst);
        if !self
            .shared
            .model
            .wait_idle(std::time::Duration::from_secs(60))
        {
            tracing::warn!(
                "the running job did not stop within a minute; it starts over next time"
            );
        }
        if let Some(worker) = self
            .shared
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            worker.abort();
        }
    }

    /// Runs one task the worker took from the queue (`starts`: how often it was handed out).
    async fn run(&self, task: QueuedJob, worker: &str, starts: usize) -> Result<String, String> {
        let job = match self.get(&task.id) {
            Some(job) => job,
            None => {
                let job = Job::new(&task.id, task.spec);
                self.insert(job.clone());
                job
            }
        };
        if job.cancel_requested() || job.status().is_final() {
            return Ok("cancelled before it started".into());
        }
        let store = &self.shared.store;
        if starts > MAX_STARTS {
            // The server stopped every time this job ran: perhaps the job itself stops it.
            let message = format!(
                "the server stopped {} times while this job was running, so it is not started \
                 again (see the server log)",
                starts - 1
            );
            tracing::warn!(job = %job.id, "{message}");
            let _ = store
                .set_job(&job.id, JobStatus::Failed, None, Some(&message))
                .await;
            job.push(JobEvent::Failed {
                message: message.clone(),
            });
            return Err(message);
        }
        let _ = store.set_job(&job.id, JobStatus::Running, None, None).await;
        job.push(JobEvent::Started {
            worker: worker.to_string(),
        });
        let outcome = self.shared.model.run(job.clone()).await;
        if self.shared.model.stopping.load(Ordering::SeqCst) {
            // The server is stopping: leave the job to the next process.
            return std::future::pending().await;
        }
        let (event, result) = match outcome {
            Outcome::Done(page) => (done_event(&page), Ok(page)),
            Outcome::Stopped => (JobEvent::Cancelled, Ok("cancelled".into())),
            Outcome::Failed(message) => {
                tracing::warn!(job = %job.id, "job failed: {message}");
                (
                    JobEvent::Failed {
                        message: message.clone(),
                    },
                    Err(message),
                )
            }
        };
        let (status, message) = match &event {
            JobEvent::Failed { message } => (JobStatus::Failed, Some(message.clone())),
            other => (other.status(), None),
        };
        // The database keeps the result's page (older rows: a run's slug).
        let page = result.as_ref().ok().filter(|_| status == JobStatus::Done);
        let _ = store
            .set_job(
                &job.id,
                status,
                page.map(String::as_str),
                message.as_deref(),
            )
            .await;
        job.push(event);
        result
    }
}

/// The worker's handler: one task at a time.
async fn execute(
    task: QueuedJob,
    worker: WorkerContext,
    attempt: Attempt,
    jobs: Data<Jobs>,
) -> Result<String, BoxDynError> {
    jobs.run(task, worker.name(), attempt.current())
        .await
        .map_err(|message| message.into())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use safeedit_core::Method;
    use safeedit_core::job::EvalJob;
    use safeedit_core::run::{EditOutcome, EditOverrides, EditRequest};
    use safeedit_core::safeedit::Fold;
    use safeedit_engine::dinm::DinmConfig;
    use safeedit_pipeline::job::Worker;
    use safeedit_pipeline::publish::Database;
    use std::path::PathBuf;

    /// A queue on the `tiny` model with the built-in judge, the runs database, the task queue
    /// and the job folders in `dir` (a second call on the same folder is the next server
    /// process).
    pub(crate) fn start(dir: &Path) -> (tokio::runtime::Runtime, Jobs, Store) {
        start_on(dir, None)
    }

    /// [`start`] with the runs database and the task queue on the Postgres server `url` names.
    pub(crate) fn start_on(
        dir: &Path,
        url: Option<&str>,
    ) -> (tokio::runtime::Runtime, Jobs, Store) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(Store::open(url, dir)).unwrap();
        let lm = safeedit_pipeline::backend::load(Path::new("tiny"), &mut safeedit_pipeline::Quiet)
            .unwrap();
        let worker = Worker {
            catalog: Arc::new(safeedit_pipeline::data::catalog(None).unwrap()),
            safeedit_dir: None,
            preset: DinmConfig::preset_for(&lm.name, &lm.architecture),
            n_layers: lm.config.n_layers,
            judge_dir: None,
            delta_dir: dir.join("deltas"),
            job_dir: dir.join("jobs"),
            models: safeedit_pipeline::models::ModelsDir(dir.join("models")),
            database: Database {
                data_dir: Some(dir.to_path_buf()),
                url: url.map(str::to_string),
                unlisted: false,
            },
        };
        let ctx = ModelContext {
            model: Arc::new(lm),
            model_path: PathBuf::from("tiny"),
            model_checksum: "none".into(),
            worker,
            store: store.clone(),
            runtime: rt.handle().clone(),
        };
        let jobs = rt.block_on(Jobs::start(ctx, url, dir)).unwrap();
        (rt, jobs, store)
    }

    fn request(split: &str, id: u64) -> EditRequest {
        EditRequest {
            split: split.into(),
            id,
            method: Method::Dinm,
            overrides: EditOverrides {
                steps: Some(3),
                max_new_tokens: Some(4),
                ..EditOverrides::default()
            },
        }
    }

    /// Waits until the job ends (the worker is busy with real edits, so this polls).
    pub(crate) fn wait(jobs: &Jobs, id: &str) -> JobSnapshot {
        for _ in 0..6000 {
            let snapshot = jobs.get(id).expect("a job of this process").snapshot();
            if snapshot.status.is_final() {
                return snapshot;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("job {id} did not finish");
    }

    /// The stored outcome of a finished job, timings zeroed (everything else must repeat).
    fn outcome(rt: &tokio::runtime::Runtime, store: &Store, snapshot: &JobSnapshot) -> EditOutcome {
        let Some(JobEvent::Done { slug, path: None }) = snapshot.events.last() else {
            panic!("job did not finish well: {:?}", snapshot.events.last());
        };
        let run = rt.block_on(store.run(slug)).unwrap().expect("stored run");
        assert_eq!(&run.slug, slug);
        let mut outcome = run.outcome;
        outcome.seconds = [0.0; 3];
        outcome
    }

    #[test]
    fn concurrent_edits_give_the_same_results_as_serial_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, jobs, store) = start(dir.path());
        let (a, b) = (request("test", 0), request("editing", 2));
        // Submitted together: the second waits behind the first.
        let (id_a, ahead_a) = rt.block_on(jobs.submit(JobSpec::Edit(a.clone()))).unwrap();
        let (id_b, ahead_b) = rt.block_on(jobs.submit(JobSpec::Edit(b.clone()))).unwrap();
        assert_eq!(ahead_a, 0);
        assert_eq!(ahead_b, 1, "the second job is queued behind the first");
        let (concurrent_a, concurrent_b) = (wait(&jobs, &id_a), wait(&jobs, &id_b));
        // Then one at a time.
        let id = rt.block_on(jobs.submit(JobSpec::Edit(a))).unwrap().0;
        let serial_a = wait(&jobs, &id);
        let id = rt.block_on(jobs.submit(JobSpec::Edit(b))).unwrap().0;
        let serial_b = wait(&jobs, &id);

        let (ca, sa) = (
            outcome(&rt, &store, &concurrent_a),
            outcome(&rt, &store, &serial_a),
        );
        let (cb, sb) = (
            outcome(&rt, &store, &concurrent_b),
            outcome(&rt, &store, &serial_b),
        );
        assert_eq!(ca, sa, "instance test#0: queued and serial edits differ");
        assert_eq!(cb, sb, "instance editing#2: queued and serial edits differ");
        assert_ne!(
            ca, cb,
            "two different instances must not give the same edit"
        );
        assert_eq!(ca.steps.len(), 3);
        assert_eq!(ca.comparisons.len(), 5, "DS and the four DG inputs");
        // The progress events arrived in order.
        let kinds: Vec<JobStatus> = concurrent_b.events.iter().map(JobEvent::status).collect();
        assert_eq!(kinds.first(), Some(&JobStatus::Queued));
        assert_eq!(kinds.last(), Some(&JobStatus::Done));
        let steps = concurrent_b
            .events
            .iter()
            .filter(|e| matches!(e, JobEvent::Step { .. }))
            .count();
        assert_eq!(steps, 3);
        // Four runs, newest first, each with its delta file.
        let runs = rt.block_on(store.list_runs(10)).unwrap();
        assert_eq!(runs.len(), 4);
        for run in &runs {
            assert!(
                dir.path()
                    .join("deltas")
                    .join(format!("{}.safetensors", run.slug))
                    .is_file()
            );
        }
    }

    #[test]
    fn bad_requests_are_refused_before_queueing_and_a_full_queue_says_busy() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, jobs, _store) = start(dir.path());
        let err = rt
            .block_on(jobs.submit(JobSpec::Edit(request("test", 99_999))))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid request: no instance 99999"),
            "{err}"
        );
        let mut bad = request("test", 0);
        bad.overrides.layer = Some(7);
        let err = rt.block_on(jobs.submit(JobSpec::Edit(bad))).unwrap_err();
        assert!(err.to_string().contains("layer 7 does not exist"), "{err}");
        let mut bad = request("test", 0);
        bad.overrides.lr = Some(-1.0);
        let err = rt.block_on(jobs.submit(JobSpec::Edit(bad))).unwrap_err();
        assert!(err.to_string().contains("lr must be positive"), "{err}");

        // One running (or about to run) plus QUEUE_CAPACITY waiting; then "busy".
        let mut ids = Vec::new();
        let mut busy = None;
        for _ in 0..QUEUE_CAPACITY + 2 {
            match rt.block_on(jobs.submit(JobSpec::Edit(request("test", 1)))) {
                Ok((id, _)) => ids.push(id),
                Err(e) => {
                    busy = Some(e);
                    break;
                }
            }
        }
        let busy = busy.expect("the queue is bounded");
        assert!(matches!(busy, SubmitError::Busy(QUEUE_CAPACITY)), "{busy}");
        assert!(busy.to_string().starts_with("busy:"), "{busy}");
        // Cancelling the waiting ones takes effect at once; the running one stops at a phase end.
        for id in ids.iter().skip(1) {
            assert!(rt.block_on(jobs.cancel(id)));
            assert_eq!(
                jobs.get(id).unwrap().snapshot().status,
                JobStatus::Cancelled
            );
        }
        assert!(!rt.block_on(jobs.cancel("no-such-job")));
        let first = wait(&jobs, &ids[0]);
        assert!(first.status.is_final());
    }

    /// An evaluation job of `limit` test instances, vanilla, 8 tokens each.
    fn eval_job(limit: usize) -> JobSpec {
        JobSpec::Eval(EvalJob {
            method: Method::Vanilla,
            split: "test".into(),
            fold: Fold::All,
            limit: Some(limit),
            max_new_tokens: Some(8),
            overrides: EditOverrides::default(),
            model: None,
        })
    }

    #[test]
    fn an_evaluation_job_reports_counts_and_stores_its_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, jobs, store) = start(dir.path());
        let id = rt.block_on(jobs.submit(eval_job(3))).unwrap().0;
        let done = wait(&jobs, &id);
        let info = done.info();
        assert_eq!(info.state, JobStatus::Done, "{:?}", info.error);
        assert_eq!(info.worker.as_deref(), Some(EMBEDDED_WORKER));
        let page = info.result.expect("a result page");
        let slug = page.strip_prefix("/evals/").expect(&page);
        let eval = rt.block_on(store.eval(slug)).unwrap().expect("stored");
        let instances = rt.block_on(store.eval_instances(slug)).unwrap();
        assert_eq!(eval.method, "vanilla");
        assert_eq!(instances.len(), 3);
        // The instance phase was counted: 0/3 at its start, 3/3 at its end.
        let counts: Vec<(usize, usize)> = done
            .events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Progress(p) if p.unit == "instances" => Some((p.done, p.total)),
                _ => None,
            })
            .collect();
        assert_eq!(counts.first(), Some(&(0, 3)), "{counts:?}");
        assert_eq!(counts.last(), Some(&(3, 3)), "{counts:?}");
        // The database agrees, for the next process.
        let stored = rt.block_on(store.job(&id)).unwrap().unwrap();
        assert_eq!(stored.status, JobStatus::Done);
        assert_eq!(stored.result.as_deref(), Some(page.as_str()));
        // General performance of that evaluation joins its record.
        let general: JobSpec = serde_json::from_str(&format!(
            r#"{{"kind": "general", "eval": "{slug}", "task": "knowledge", "limit": 2,
                "max_new_tokens": 4}}"#
        ))
        .unwrap();
        let general = rt.block_on(jobs.submit(general)).unwrap().0;
        let general = wait(&jobs, &general).info();
        assert_eq!(general.state, JobStatus::Done, "{:?}", general.error);
        assert_eq!(general.result.as_deref(), Some(page.as_str()));
        let eval = rt.block_on(store.eval(slug)).unwrap().expect("stored");
        let proxy = eval
            .metrics
            .iter()
            .find(|m| m.metric == "KQA-proxy")
            .expect("the knowledge proxy is in the evaluation's metrics");
        assert_eq!(proxy.n, 2);
        for (json, needle) in [
            (
                r#"{"kind": "general", "eval": "nosuch"}"#,
                "eval: no evaluation `nosuch`",
            ),
            (
                &format!(r#"{{"kind": "general", "eval": "{slug}", "task": "kqa"}}"#),
                "task: kqa needs the TriviaQA file",
            ),
            (
                &format!(r#"{{"kind": "general", "eval": "{slug}", "limit": 0}}"#),
                "limit: must be at least 1",
            ),
        ] {
            let spec: JobSpec = serde_json::from_str(json).unwrap();
            let err = rt.block_on(jobs.submit(spec)).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
        // A bad evaluation is refused before it is queued, naming the field.
        for (spec, needle) in [
            (
                r#"{"kind": "eval", "method": "sft"}"#,
                "model: method `sft` evaluates a trained model",
            ),
            (
                r#"{"kind": "eval", "method": "vanilla", "split": "val"}"#,
                "split: `val`",
            ),
            (
                r#"{"kind": "eval", "method": "vanilla", "limit": 0}"#,
                "limit: must be",
            ),
            (
                r#"{"kind": "eval", "method": "dinm", "overrides": {"steps": 0}}"#,
                "overrides: steps must be 1..=100",
            ),
        ] {
            let spec: JobSpec = serde_json::from_str(spec).unwrap();
            let err = rt.block_on(jobs.submit(spec)).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn analysis_and_test_all_jobs_store_their_results_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, jobs, store) = start(dir.path());
        let spec = |json: &str| serde_json::from_str::<JobSpec>(json).unwrap();
        for (json, needle) in [
            (
                r#"{"kind": "analyze", "methods": []}"#,
                "methods: nothing to compare",
            ),
            (
                r#"{"kind": "analyze", "methods": ["magic"]}"#,
                "methods: unknown method `magic`",
            ),
            (
                r#"{"kind": "analyze", "methods": ["sft=/tmp/x"]}"#,
                "methods: `sft=/tmp/x`",
            ),
            (
                r#"{"kind": "analyze", "top_k": 0}"#,
                "top_k: must be at least 1",
            ),
            (
                r#"{"kind": "analyze", "region_layer": 99}"#,
                "region_layer: layer 99",
            ),
            (
                r#"{"kind": "test_all", "method": "vanilla", "edit_instances": [9]}"#,
                "edit_instances: no editing instance 9",
            ),
            (
                r#"{"kind": "test_all", "method": "dpo"}"#,
                "method: `dpo` needs a trained model",
            ),
        ] {
            let err = rt
                .block_on(jobs.submit(spec(json)))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
        let analysis = rt
            .block_on(jobs.submit(spec(
                r#"{"kind": "analyze", "methods": ["dinm"], "edits": 1, "inputs": 4,
                    "projection_inputs": 4, "probe_tokens": 32, "top_k": 32,
                    "lens_vectors": 2, "lens_tokens": 4}"#,
            )))
            .unwrap()
            .0;
        let all = rt
            .block_on(jobs.submit(spec(
                r#"{"kind": "test_all", "method": "vanilla", "limit": 6, "max_new_tokens": 4}"#,
            )))
            .unwrap()
            .0;
        let page = |id: &str| {
            let info = wait(&jobs, id).info();
            assert_eq!(info.state, JobStatus::Done, "{id}: {:?}", info.error);
            info.result.unwrap()
        };
        let analysis = page(&analysis);
        let slug = analysis.strip_prefix("/mechanisms/").expect(&analysis);
        let record = rt
            .block_on(store.analysis(slug))
            .unwrap()
            .expect("stored analysis");
        assert_eq!(record.methods, ["dinm"], "compared with vanilla");
        let all = page(&all);
        let slug = all.strip_prefix("/test-all/").expect(&all);
        let run = rt
            .block_on(store.test_all(slug))
            .unwrap()
            .expect("stored test_ALL run");
        assert_eq!(run.method, "vanilla");
    }

    /// A train job on the tiny model: `limit` pairs, one pair per step, AdamW without warm-up,
    /// a checkpoint every step.
    fn train_job(objective: &str, name: &str, extra: &str) -> JobSpec {
        serde_json::from_str(&format!(
            r#"{{"kind": "train", "objective": "{objective}", "name": "{name}", "batch_size": 1,
                "warmup_steps": 0, "optimizer": "adamw", "save_every": 1{extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_trained_model_is_listed_by_name_and_evaluated_and_analysed_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, jobs, store) = start(dir.path());
        let id = rt
            .block_on(jobs.submit(train_job("sft", "sft-a", r#", "limit": 3, "epochs": 1"#)))
            .unwrap()
            .0;
        // The name is reserved at once: a second job cannot take it.
        let err = rt
            .block_on(jobs.submit(train_job("sft", "sft-a", "")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("name: a model called `sft-a` exists already"),
            "{err}"
        );
        let done = wait(&jobs, &id);
        let info = done.info();
        assert_eq!(info.state, JobStatus::Done, "{:?}", info.error);
        assert_eq!(info.result.as_deref(), Some("/models/sft-a"));
        // Every step's loss went out as it happened, and the step phase was counted.
        let steps = done
            .events
            .iter()
            .filter(|e| matches!(e, JobEvent::Step { .. }))
            .count();
        assert_eq!(steps, 3);
        assert!(done.events.iter().any(
            |e| matches!(e, JobEvent::Progress(p) if p.unit == "steps" && p.done == 3 && p.total == 3)
        ));
        let listed = jobs.models().list();
        assert_eq!(listed.len(), 1);
        let model = &listed[0];
        assert_eq!(
            (model.name.as_str(), model.objective.as_str()),
            ("sft-a", "sft")
        );
        assert!(model.finished(), "{model:?}");
        assert_eq!((model.n_examples, model.steps_done), (3, 3));
        let page = jobs.models().page("sft-a").unwrap().unwrap();
        assert_eq!(page.steps.len(), 3);
        assert!(jobs.models().page("nope").unwrap().is_none());
        assert!(jobs.models().page("../etc").unwrap().is_none());

        // A job without a name gets one from its id; DPO starts from the SFT model by name.
        let dpo = rt
            .block_on(
                jobs.submit(
                    serde_json::from_str(
                        r#"{"kind": "train", "objective": "dpo", "model": "sft-a", "limit": 2,
                        "batch_size": 1, "warmup_steps": 0}"#,
                    )
                    .unwrap(),
                ),
            )
            .unwrap()
            .0;
        let dpo_info = wait(&jobs, &dpo).info();
        assert_eq!(dpo_info.state, JobStatus::Done, "{:?}", dpo_info.error);
        let JobSpec::Train(stored) = &dpo_info.request else {
            panic!("{:?}", dpo_info.request)
        };
        let dpo_name = stored.name.clone().expect("named at submission");
        assert_eq!(dpo_name, format!("dpo-{}", &dpo[..6]));
        let dpo_page = jobs.models().page(&dpo_name).unwrap().unwrap();
        assert_eq!(dpo_page.model.base.as_deref(), Some("sft-a"));

        // Evaluated and analysed by name.
        let eval = rt
            .block_on(
                jobs.submit(
                    serde_json::from_str(
                        r#"{"kind": "eval", "method": "sft", "model": "sft-a", "limit": 2,
                        "max_new_tokens": 4}"#,
                    )
                    .unwrap(),
                ),
            )
            .unwrap()
            .0;
        let analysis = rt
            .block_on(
                jobs.submit(
                    serde_json::from_str(
                        r#"{"kind": "analyze", "methods": ["sft-a"], "inputs": 4,
                        "projection_inputs": 4, "probe_tokens": 32, "top_k": 32,
                        "lens_vectors": 2, "lens_tokens": 4}"#,
                    )
                    .unwrap(),
                ),
            )
            .unwrap()
            .0;
        let eval = wait(&jobs, &eval).info();
        assert_eq!(eval.state, JobStatus::Done, "{:?}", eval.error);
        let slug = eval.result.unwrap();
        let record = rt
            .block_on(store.eval(slug.strip_prefix("/evals/").unwrap()))
            .unwrap()
            .unwrap();
        assert_eq!(record.method, "sft");
        let analysis = wait(&jobs, &analysis).info();
        assert_eq!(analysis.state, JobStatus::Done, "{:?}", analysis.error);
        let slug = analysis.result.unwrap();
        let record = rt
            .block_on(store.analysis(slug.strip_prefix("/mechanisms/").unwrap()))
            .unwrap()
            .unwrap();
        assert_eq!(record.methods, ["sft-a"]);

        // Bad requests name the field.
        for (json, needle) in [
            (
                r#"{"kind": "train", "objective": "dinm"}"#,
                "objective: `dinm` is not a training objective",
            ),
            (
                r#"{"kind": "train", "objective": "sft", "name": "Bad Name"}"#,
                "name: `Bad Name`",
            ),
            (
                r#"{"kind": "train", "objective": "sft", "name": "dinm"}"#,
                "a method's name",
            ),
            (
                r#"{"kind": "train", "objective": "sft", "model": "nope"}"#,
                "model: no trained model `nope`",
            ),
            (
                r#"{"kind": "train", "objective": "sft", "data": "train"}"#,
                "data: `train`",
            ),
            (
                r#"{"kind": "train", "objective": "sft", "epochs": 0}"#,
                "epochs: must be at least 1",
            ),
            (
                r#"{"kind": "train", "objective": "sft", "lr": -1}"#,
                "lr: must be positive",
            ),
            (
                r#"{"kind": "train", "objective": "sft", "optimizer": "sgd"}"#,
                "optimizer: unknown",
            ),
            (
                r#"{"kind": "train", "objective": "sft", "preset": "huge"}"#,
                "preset: unknown",
            ),
            (
                r#"{"kind": "train", "objective": "sft", "lora_alpha": 8}"#,
                "lora_rank:",
            ),
            (
                r#"{"kind": "eval", "method": "sft"}"#,
                "model: method `sft` evaluates a trained model",
            ),
            (
                r#"{"kind": "eval", "method": "dpo", "model": "sft-a"}"#,
                "was trained with sft, not dpo",
            ),
            (
                r#"{"kind": "eval", "method": "vanilla", "model": "sft-a"}"#,
                "model: method `vanilla` runs on the loaded model",
            ),
            (
                r#"{"kind": "analyze", "methods": ["nope"]}"#,
                "nor a trained model",
            ),
        ] {
            let spec: JobSpec = serde_json::from_str(json).unwrap();
            let err = rt.block_on(jobs.submit(spec)).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn a_comparison_trains_sft_then_dpo_from_it_then_analyses_all_three() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, jobs, store) = start(dir.path());
        let stage = r#"{"limit": 2, "epochs": 1, "batch_size": 1, "warmup_steps": 0,
            "optimizer": "adamw"}"#;
        let spec: JobSpec = serde_json::from_str(&format!(
            r#"{{"kind": "compare", "name": "cmp", "sft": {stage}, "dpo": {stage},
                "analyze": {{"methods": ["dinm"], "edits": 1, "inputs": 4,
                "projection_inputs": 4, "probe_tokens": 32, "top_k": 32, "lens_vectors": 2,
                "lens_tokens": 4}}}}"#
        ))
        .unwrap();
        let id = rt.block_on(jobs.submit(spec.clone())).unwrap().0;
        // Both names are reserved at submission.
        let err = rt.block_on(jobs.submit(spec)).unwrap_err().to_string();
        assert!(
            err.contains("name: a model called `cmp-sft` exists"),
            "{err}"
        );
        let err = rt
            .block_on(jobs.submit(train_job("dpo", "cmp-dpo", "")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a model called `cmp-dpo` exists"), "{err}");

        let done = wait(&jobs, &id);
        let info = done.info();
        assert_eq!(info.state, JobStatus::Done, "{:?}", info.error);
        let JobSpec::Compare(stored) = &info.request else {
            panic!("{:?}", info.request)
        };
        assert_eq!(stored.dpo.model.as_deref(), Some("cmp-sft"));
        // Each stage's phases are named by the stage, in order.
        let phases: Vec<String> = done
            .events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Progress(p) => Some(p.phase.clone()),
                _ => None,
            })
            .collect();
        let first = |prefix: &str| phases.iter().position(|p| p.starts_with(prefix));
        let (sft, dpo, analysis) = (
            first("[1/3 SFT] sft").expect("sft steps"),
            first("[2/3 DPO] dpo").expect("dpo steps"),
            first("[3/3 analysis]").expect("analysis"),
        );
        assert!(sft < dpo && dpo < analysis, "{phases:?}");
        let steps = done
            .events
            .iter()
            .take_while(|e| !matches!(e, JobEvent::Progress(p) if p.phase.starts_with("[3/3")))
            .filter(|e| matches!(e, JobEvent::Step { .. }))
            .count();
        assert_eq!(
            steps, 4,
            "two steps of SFT and two of DPO (then DINM's in the analysis)"
        );

        let dpo_page = jobs.models().page("cmp-dpo").unwrap().unwrap();
        assert_eq!(dpo_page.model.base.as_deref(), Some("cmp-sft"));
        assert!(dpo_page.model.finished());
        let slug = info.result.expect("a result page");
        let record = rt
            .block_on(store.analysis(slug.strip_prefix("/mechanisms/").expect(&slug)))
            .unwrap()
            .expect("stored analysis");
        assert_eq!(record.methods, ["dinm", "cmp-sft", "cmp-dpo"]);

        // Each stage's fields are checked as its own job's are, named by the stage; a refused
        // comparison keeps no name.
        for (json, needle) in [
            (
                r#"{"kind": "compare", "sft": {"epochs": 0}}"#,
                "sft.epochs: must be at least 1",
            ),
            (
                r#"{"kind": "compare", "dpo": {"lr": -1}}"#,
                "dpo.lr: must be positive",
            ),
            (
                r#"{"kind": "compare", "dpo": {"model": "cmp-sft"}}"#,
                "dpo.model: DPO starts",
            ),
            (
                r#"{"kind": "compare", "sft": {"name": "x"}}"#,
                "sft.name: the comparison names",
            ),
            (
                r#"{"kind": "compare", "sft": {"objective": "dpo"}}"#,
                "sft.objective",
            ),
            (
                r#"{"kind": "compare", "analyze": {"inputs": 0}}"#,
                "analyze.inputs: must be",
            ),
            (
                r#"{"kind": "compare", "analyze": {"methods": ["x"]}}"#,
                "analyze.methods",
            ),
            (r#"{"kind": "compare", "name": "Bad"}"#, "name: `Bad`"),
        ] {
            let spec: JobSpec = serde_json::from_str(json).unwrap();
            let err = rt.block_on(jobs.submit(spec)).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
        let names: Vec<String> = jobs.models().list().into_iter().map(|m| m.name).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_restart_resumes_training_from_its_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let spec = train_job("sft", "sft-r", r#", "limit": 4, "epochs": 3"#);
        let (id, before) = {
            let (rt, jobs, _store) = start(dir.path());
            let id = rt.block_on(jobs.submit(spec)).unwrap().0;
            let job = jobs.get(&id).unwrap();
            let started = std::time::Instant::now();
            let done_steps = || {
                job.snapshot()
                    .events
                    .iter()
                    .filter(|e| matches!(e, JobEvent::Step { .. }))
                    .count()
            };
            while done_steps() < 2 {
                assert!(started.elapsed().as_secs() < 300, "training never advanced");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            jobs.shutdown();
            drop(rt);
            (id, done_steps())
        };
        let card = |dir: &Path| {
            safeedit_engine::baselines::TrainedModelCard::read(&dir.join("models").join("sft-r"))
                .unwrap()
                .expect("a checkpoint card")
        };
        let checkpoint = card(dir.path()).steps_done;
        assert!(
            (before..12).contains(&checkpoint),
            "{checkpoint} of 12 after {before}"
        );

        let (_rt, jobs, _store) = start(dir.path());
        let done = wait(&jobs, &id);
        assert_eq!(done.status, JobStatus::Done, "{:?}", done.events.last());
        // The second start began at the checkpoint: only the remaining steps ran.
        let steps: Vec<usize> = done
            .events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Step { step, .. } => Some(*step),
                _ => None,
            })
            .collect();
        assert_eq!(steps, (checkpoint..12).collect::<Vec<_>>());
        let card = card(dir.path());
        assert_eq!((card.steps_done, card.total_steps), (12, 12));
        let log = std::fs::read_to_string(dir.path().join("models/sft-r/train_log.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 12, "one log line per step, none twice");
    }

    #[test]
    fn a_job_running_at_every_stop_is_not_started_again_after_max_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut id = None;
        // Each server process stops while the job runs, until a start refuses it.
        for process in 0..MAX_STARTS + 2 {
            let (rt, jobs, store) = start(dir.path());
            let id = id
                .get_or_insert_with(|| rt.block_on(jobs.submit(eval_job(30))).unwrap().0)
                .clone();
            let job = jobs.get(&id).expect("queued (again)");
            let started = std::time::Instant::now();
            loop {
                match job.status() {
                    JobStatus::Running => break,
                    JobStatus::Failed => {
                        let message = rt.block_on(store.job(&id)).unwrap().unwrap().message;
                        let message = message.unwrap_or_default();
                        assert!(message.contains("is not started again"), "{message}");
                        assert_eq!(process, MAX_STARTS, "started {process} times");
                        assert!(rt.block_on(store.unfinished_jobs()).unwrap().is_empty());
                        return;
                    }
                    other => assert!(!other.is_final(), "{other:?}"),
                }
                assert!(started.elapsed().as_secs() < 300, "the job never started");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            jobs.shutdown();
            drop(rt);
        }
        panic!("the job was started more than {MAX_STARTS} times");
    }

    #[test]
    fn a_restart_runs_the_interrupted_job_from_where_it_was_and_the_queued_one() {
        restart_scenario(None);
    }

    /// The queue on a real Postgres server (a throwaway one; the runs database and apalis's
    /// tables in one database, as `serve --database-url postgres://...` has them): a queued job
    /// is cancelled at once, and the next server process runs the job interrupted by a stop
    /// from where it was, and the queued one.
    #[test]
    fn on_postgres_a_queued_job_is_cancelled_and_a_restart_resumes_the_rest() {
        let server = safeedit_store::throwaway::ThrowawayPostgres::start()
            .expect("a throwaway Postgres server starts");
        let url = server.database("jobs").unwrap();
        {
            let dir = tempfile::tempdir().unwrap();
            let (rt, jobs, _store) = start_on(dir.path(), Some(&url));
            let first = rt
                .block_on(jobs.submit(JobSpec::Edit(request("test", 0))))
                .unwrap()
                .0;
            let second = rt
                .block_on(jobs.submit(JobSpec::Edit(request("test", 1))))
                .unwrap()
                .0;
            assert!(rt.block_on(jobs.cancel(&second)));
            assert_eq!(wait(&jobs, &second).status, JobStatus::Cancelled);
            assert_eq!(wait(&jobs, &first).status, JobStatus::Done);
            let state = |id: &str| rt.block_on(jobs.shared.queue.state(id)).unwrap().unwrap().0;
            assert_eq!(
                state(&second),
                "Killed",
                "taken out of the Postgres task table"
            );
            assert_eq!(state(&first), "Done");
            jobs.shutdown();
        }
        restart_scenario(Some(&url));
    }

    /// A stop while an evaluation runs and an edit waits; the next process on the same data
    /// folder (and database `url`) finishes both.
    fn restart_scenario(url: Option<&str>) {
        let dir = tempfile::tempdir().unwrap();
        let start = |dir: &Path| start_on(dir, url);
        let (eval_id, edit_id, earlier) =
            {
                let (rt, jobs, _store) = start(dir.path());
                let earlier = rt
                    .block_on(jobs.submit(JobSpec::Edit(request("test", 0))))
                    .unwrap()
                    .0;
                assert_eq!(wait(&jobs, &earlier).status, JobStatus::Done);
                let eval_id = rt.block_on(jobs.submit(eval_job(6))).unwrap().0;
                let edit_id = rt
                    .block_on(jobs.submit(JobSpec::Edit(request("editing", 2))))
                    .unwrap()
                    .0;
                // Stop the server once the evaluation has finished some instances.
                let job = jobs.get(&eval_id).unwrap();
                let started = std::time::Instant::now();
                while !job.snapshot().events.iter().any(
                    |e| matches!(e, JobEvent::Progress(p) if p.unit == "instances" && p.done > 0),
                ) {
                    assert!(
                        started.elapsed().as_secs() < 600,
                        "the evaluation never advanced"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                jobs.shutdown();
                assert_eq!(job.status(), JobStatus::Running);
                drop(rt);
                (eval_id, edit_id, earlier)
            };
        let finished = std::fs::read_to_string(
            dir.path()
                .join("jobs")
                .join(&eval_id)
                .join("instances.jsonl"),
        )
        .unwrap()
        .lines()
        .count();
        assert!(
            (1..6).contains(&finished),
            "{finished} instances before the stop"
        );

        // The next server process: both jobs are queued again and finish.
        let (rt, jobs, store) = start(dir.path());
        let resumed = jobs.get(&eval_id).expect("queued again");
        assert!(!resumed.status().is_final());
        let eval = wait(&jobs, &eval_id);
        let edit = wait(&jobs, &edit_id);
        assert_eq!(eval.status, JobStatus::Done, "{:?}", eval.events.last());
        assert_eq!(edit.status, JobStatus::Done, "{:?}", edit.events.last());
        // The evaluation went on from the instances it had: its phase counted only the rest.
        let totals: Vec<usize> = eval
            .events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Progress(p) if p.unit == "instances" => Some(p.total),
                _ => None,
            })
            .collect();
        assert!(
            totals.iter().all(|&t| t <= 6 - finished),
            "{totals:?}, {finished} were done"
        );
        let page = eval.info().result.unwrap();
        let instances = rt
            .block_on(store.eval_instances(page.strip_prefix("/evals/").unwrap()))
            .unwrap();
        assert_eq!(instances.len(), 6);
        assert!(rt.block_on(store.unfinished_jobs()).unwrap().is_empty());
        // The job finished before the stop is as it was.
        let snapshot = rt.block_on(jobs.snapshot(&earlier)).unwrap().unwrap();
        assert_eq!(snapshot.status, JobStatus::Done);
        outcome(&rt, &store, &snapshot);
    }
}
