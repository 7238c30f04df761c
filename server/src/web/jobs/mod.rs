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
//!
//! Jobs may run in other processes (`safeedit worker`, on other machines with a Postgres
//! database, `serve --workers 0` then only queues): every event of a job is written to the
//! runs database in order, and each process follows the jobs it knows and does not run itself
//! by reading their new events (woken by Postgres NOTIFY, and at least every second). A cancel
//! sets a flag in the database, which the process running the job reads every second.

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

/// How often a process reads the events of jobs other processes run, and the cancel flags of
/// the jobs it runs.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a job's row may say it ended before its last event arrives, before the follower
/// ends it as the row says.
const ENDED_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Who runs the jobs of this process's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workers {
    /// `serve --workers N`: N workers inside the server process, each on its own thread with the
    /// loaded model (named `embedded`, `embedded-2`, ...); 0 queues jobs for worker processes.
    Embedded(usize),
    /// `safeedit worker`: this process runs jobs and serves nothing; its worker is named
    /// `host:pid`.
    Process,
}

impl Workers {
    /// The names of this process's workers.
    fn names(&self) -> Vec<String> {
        match self {
            Workers::Embedded(n) => (1..=*n)
                .map(|i| match i {
                    1 => EMBEDDED_WORKER.to_string(),
                    i => format!("{EMBEDDED_WORKER}-{i}"),
                })
                .collect(),
            Workers::Process => vec![format!("{}:{}", host_name(), std::process::id())],
        }
    }
}

/// This machine's name (for the worker's name).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Writes jobs' events to the runs database in the order they happen (one task per process).
#[derive(Clone)]
struct Recorder(tokio::sync::mpsc::UnboundedSender<Record>);

enum Record {
    /// Event number `seq` of a job.
    Event(String, usize, JobEvent),
    /// Answered once every earlier event is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl Recorder {
    /// Starts the writing task.
    fn start(store: Store) -> Self {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Record>();
        tokio::spawn(async move {
            while let Some(record) = receiver.recv().await {
                match record {
                    Record::Event(id, seq, event) => {
                        // A number is never skipped (readers stop at a gap): a write that
                        // fails is tried again, waiting longer each time, up to a minute.
                        let mut wait = std::time::Duration::from_millis(100);
                        while let Err(e) = store.append_job_event(&id, seq, &event).await {
                            if wait > std::time::Duration::from_secs(60) {
                                tracing::error!(job = %id, seq, "event lost: {e}");
                                break;
                            }
                            tracing::warn!(job = %id, seq, "{e}; trying again");
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                    }
                    Record::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Self(sender)
    }

    fn record(&self, id: &str, seq: usize, event: &JobEvent) {
        let _ = self
            .0
            .send(Record::Event(id.to_string(), seq, event.clone()));
    }

    /// Waits until every event recorded so far is in the database.
    async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.0.send(Record::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}

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
    /// Running on one of this process's workers: its events are written from here, and the
    /// cancel flag is read from the database.
    local: AtomicBool,
    recorder: Recorder,
    /// When the follower first saw the job's row ended without its last events.
    ended_since: Mutex<Option<std::time::Instant>>,
}

impl Job {
    fn new(id: &str, spec: JobSpec, recorder: Recorder) -> Arc<Self> {
        Arc::new(Self {
            id: id.to_string(),
            spec,
            events: Mutex::new(Vec::new()),
            progress_at: Mutex::new(None),
            cancel: AtomicBool::new(false),
            tick: watch::channel(0).0,
            local: AtomicBool::new(false),
            recorder,
            ended_since: Mutex::new(None),
        })
    }

    /// Adds an event here and, as the job's next numbered event, in the database.
    fn push(&self, event: JobEvent) {
        if matches!(event, JobEvent::Progress(_)) {
            *self.progress_at.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now());
        }
        let n = {
            let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
            self.recorder.record(&self.id, events.len(), &event);
            events.push(event);
            events.len()
        };
        self.tick.send_replace(n);
    }

    /// How many events the job has here (the number of the next one).
    fn len(&self) -> usize {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Adds the events another process wrote, numbered from `from` (those this process has
    /// already are skipped).
    fn import(&self, from: usize, new: Vec<JobEvent>) {
        let n = {
            let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
            let have = events.len();
            if have < from || have >= from + new.len() {
                return;
            }
            events.extend(new.into_iter().skip(have - from));
            events.len()
        };
        if matches!(
            self.events.lock().unwrap_or_else(|p| p.into_inner()).last(),
            Some(JobEvent::Progress(_))
        ) {
            *self.progress_at.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now());
        }
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

/// What the queue handle shares with its workers.
struct Shared {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    store: Store,
    queue: Queue,
    /// One model thread per worker of this process.
    threads: Vec<ModelThread>,
    /// Who runs the jobs.
    workers: Workers,
    /// The loaded model's name: its jobs' queue.
    model: String,
    /// What checks every job before it is queued.
    check: safeedit_pipeline::job::Worker,
    /// The workers' and followers' tasks (aborted when the server stops).
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Writes the events of this process's jobs to the database.
    recorder: Recorder,
    /// Submissions one at a time (the queue's bound is counted in the database).
    submitting: tokio::sync::Mutex<()>,
    /// Wakes the follower (a job's new event was announced).
    wake: tokio::sync::Notify,
}

/// What each worker's handler gets: the queue and its own model thread.
#[derive(Clone)]
struct Runner {
    jobs: Jobs,
    thread: ModelThread,
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

/// The event that ends a job as its row in the database says (a row that has not ended: failed,
/// "did not finish").
fn final_event(stored: StoredJob) -> JobEvent {
    match (stored.status, stored.result) {
        (JobStatus::Done, Some(page)) if page.starts_with('/') => done_event(&page),
        (JobStatus::Done, Some(slug)) => JobEvent::Done { slug, path: None },
        (JobStatus::Cancelled, _) => JobEvent::Cancelled,
        _ => JobEvent::Failed {
            message: stored
                .message
                .unwrap_or_else(|| "the job did not finish".into()),
        },
    }
}

/// The event that ends a job with the result at `page` (runs keep their old event: no path).
fn done_event(page: &str) -> JobEvent {
    let slug = page.rsplit('/').next().unwrap_or(page).to_string();
    let path = (!page.starts_with("/runs/")).then(|| page.to_string());
    JobEvent::Done { slug, path }
}

impl Jobs {
    /// Opens the task queue (on the Postgres server `url` names, else in `queue_dir`), starts
    /// this process's workers, each with its model thread, and the follower of jobs that run
    /// elsewhere; a server (not a worker process) also queues again the jobs an earlier
    /// process left unfinished.
    pub async fn start(
        ctx: ModelContext,
        url: Option<&str>,
        queue_dir: &Path,
        workers: Workers,
    ) -> anyhow::Result<Self> {
        let queue = Queue::open(url, queue_dir, &ctx.model.name).await?;
        let store = ctx.store.clone();
        let check = ctx.worker.clone();
        let names = workers.names();
        let threads = names
            .iter()
            .map(|_| ModelThread::start(ctx.clone()))
            .collect();
        let jobs = Self {
            shared: Arc::new(Shared {
                jobs: Mutex::new(HashMap::new()),
                recorder: Recorder::start(store.clone()),
                store,
                queue,
                threads,
                workers: workers.clone(),
                model: ctx.model.name.clone(),
                check,
                tasks: Mutex::new(Vec::new()),
                submitting: tokio::sync::Mutex::new(()),
                wake: tokio::sync::Notify::new(),
            }),
        };
        if workers != Workers::Process {
            jobs.requeue_unfinished().await?;
        }
        let mut tasks = Vec::new();
        for (name, thread) in names.into_iter().zip(jobs.shared.threads.clone()) {
            if workers != Workers::Process {
                // An earlier server process's worker of this name is gone.
                jobs.shared.queue.forget_worker(&name).await?;
            }
            let runner = Runner {
                jobs: jobs.clone(),
                thread,
            };
            // The same worker on either storage (two types, so built in each arm); one task,
            // so that aborting it stops the worker.
            type Running = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
            let worker: Running = match jobs.shared.queue.tasks() {
                Tasks::Sqlite { storage, .. } => {
                    let worker = WorkerBuilder::new(name.as_str())
                        .backend(storage.clone().poll_with_interval(queue::POLL))
                        .concurrency(1)
                        .data(runner)
                        .build(execute);
                    Box::pin(async move { worker.run().await.map_err(|e| e.to_string()) })
                }
                Tasks::Postgres { storage, .. } => {
                    let worker = WorkerBuilder::new(name.as_str())
                        .backend(storage.clone().poll_with_interval(queue::POLL))
                        .concurrency(1)
                        .data(runner)
                        .build(execute);
                    Box::pin(async move { worker.run().await.map_err(|e| e.to_string()) })
                }
            };
            tasks.push(tokio::spawn(async move {
                if let Err(e) = worker.await {
                    tracing::error!(worker = %name, "the job worker stopped: {e}");
                }
            }));
        }
        let follower = jobs.clone();
        tasks.push(tokio::spawn(async move { follower.follow().await }));
        if let Some(url) =
            url.filter(|u| u.starts_with("postgres:") || u.starts_with("postgresql:"))
        {
            let listener = jobs.clone();
            let url = url.to_string();
            tasks.push(tokio::spawn(async move { listener.listen(url).await }));
        }
        *jobs.shared.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(jobs)
    }

    /// Follows the jobs this process knows and does not run (their new events from the
    /// database) and the cancel flags of those it runs, every [`SYNC_EVERY`] or when woken.
    async fn follow(&self) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SYNC_EVERY) => {}
                () = self.shared.wake.notified() => {}
            }
            self.sync().await;
        }
    }

    /// One round of [`Self::follow`].
    async fn sync(&self) {
        let open: Vec<Arc<Job>> = self
            .shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|job| !job.status().is_final())
            .cloned()
            .collect();
        let store = &self.shared.store;
        let (running_here, elsewhere): (Vec<_>, Vec<_>) = open
            .into_iter()
            .partition(|job| job.local.load(Ordering::SeqCst));
        let ids: Vec<String> = running_here
            .iter()
            .filter(|job| !job.cancel_requested())
            .map(|job| job.id.clone())
            .collect();
        if !ids.is_empty() {
            match store.cancel_requested(&ids).await {
                Ok(asked) => {
                    for job in running_here.iter().filter(|job| asked.contains(&job.id)) {
                        tracing::info!(job = %job.id, "cancelled from another process");
                        job.cancel.store(true, Ordering::SeqCst);
                    }
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        for job in elsewhere {
            let from = job.len();
            match store.job_events(&job.id, from).await {
                Ok(new) if !new.is_empty() => job.import(from, new),
                Ok(_) => {
                    // No new event, but the job may have ended without its last events (they
                    // could not be written): its row says how. The row is written just before
                    // the last event, so only a row that has said so for a while counts.
                    match self.ended_in_database(&job.id).await {
                        Ok(Some(ended)) => {
                            let mut since =
                                job.ended_since.lock().unwrap_or_else(|p| p.into_inner());
                            let first_seen = *since.get_or_insert_with(std::time::Instant::now);
                            drop(since);
                            if first_seen.elapsed() >= ENDED_GRACE {
                                tracing::warn!(job = %job.id, "its last events are missing; ended as its row says");
                                job.import(from, vec![ended]);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(job = %job.id, "{e}"),
                    }
                }
                Err(e) => tracing::warn!(job = %job.id, "{e}"),
            }
        }
    }

    /// How a job ended, from its row in the database; `None` while it has not.
    async fn ended_in_database(&self, id: &str) -> safeedit_store::Result<Option<JobEvent>> {
        let Some(stored) = self.shared.store.job(id).await? else {
            return Ok(None);
        };
        Ok(stored.status.is_final().then(|| final_event(stored)))
    }

    /// Wakes the follower whenever Postgres announces a job's new event (reconnecting after a
    /// lost connection; the follower's own clock covers the gap).
    async fn listen(&self, url: String) {
        loop {
            let listening = async {
                let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
                listener.listen(safeedit_store::JOB_EVENTS_CHANNEL).await?;
                loop {
                    listener.recv().await?;
                    self.shared.wake.notify_one();
                }
            };
            let result: Result<(), sqlx::Error> = listening.await;
            if let Err(e) = result {
                tracing::warn!(
                    "listening for job events on {}: {e}; retrying in 5 s",
                    safeedit_store::redact_url(&url)
                );
            }
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
    }

    /// Queues again what the runs database says is unfinished (the task table keeps a job that
    /// is still in it; jobs of older versions without a task get one). A job a worker process
    /// is running goes on there.
    async fn requeue_unfinished(&self) -> anyhow::Result<()> {
        let unfinished = self
            .shared
            .store
            .unfinished_jobs(&self.shared.model)
            .await?;
        let own = self.shared.workers.names();
        for (ahead, (id, spec)) in unfinished.into_iter().enumerate() {
            let job = Job::new(&id, spec.clone(), self.shared.recorder.clone());
            job.import(0, self.shared.store.job_events(&id, 0).await?);
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
                Some((status, Some(by)))
                    if (status == "Running" || status == "Queued") && !own.contains(&by) =>
                {
                    tracing::info!(job = %id, worker = %by, "running in a worker process");
                    self.insert(job);
                    continue;
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
        // The bound counts the queued jobs in the database, which every process shares; one
        // submission at a time here, so concurrent ones never exceed it.
        let submitting = self.shared.submitting.lock().await;
        let store = &self.shared.store;
        let counted = async {
            let model = &self.shared.model;
            let waiting = store.count_jobs(JobStatus::Queued, model).await?;
            let running = store.count_jobs(JobStatus::Running, model).await?;
            Ok::<_, safeedit_store::StoreError>((waiting, running))
        };
        let (waiting, running) = match counted.await {
            Ok(counts) => counts,
            Err(e) => {
                check.release(&id, &spec);
                return Err(SubmitError::Other(anyhow::Error::from(e)));
            }
        };
        if waiting >= QUEUE_CAPACITY {
            check.release(&id, &spec);
            return Err(SubmitError::Busy(waiting));
        }
        let ahead = waiting + running;
        let job = Job::new(&id, spec.clone(), self.shared.recorder.clone());
        let queued = async {
            if unlisted {
                // Before the job can run, so not one of its records is ever listed.
                store.set_unlisted(&id, true).await?;
            }
            store
                .insert_job(&id, &now_rfc3339(), &spec, &self.shared.model)
                .await?;
            job.push(JobEvent::Queued { ahead });
            self.insert(job.clone());
            // The first event is in the database before any worker can take the job (a worker
            // process numbers its events after it).
            self.shared.recorder.flush().await;
            self.shared
                .queue
                .push(QueuedJob {
                    id: id.clone(),
                    spec: spec.clone(),
                })
                .await?;
            anyhow::Ok(())
        };
        let queued = queued.await;
        drop(submitting);
        if let Err(e) = queued {
            // The place is given back; the job was never queued.
            self.shared
                .jobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            let _ = store
                .set_job(&id, JobStatus::Failed, None, Some(&e.to_string()))
                .await;
            check.release(&id, &spec);
            return Err(SubmitError::Other(e));
        }
        Ok((id, ahead))
    }

    /// The names of this process's workers (as jobs report them in `"worker"`).
    pub fn worker_names(&self) -> Vec<String> {
        self.shared.workers.names()
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

    /// A job's snapshot: from memory, or for jobs of an earlier process from the database (its
    /// events as they were recorded, ending with how it ended).
    pub async fn snapshot(&self, id: &str) -> safeedit_store::Result<Option<JobSnapshot>> {
        if let Some(job) = self.get(id) {
            return Ok(Some(job.snapshot()));
        }
        let Some(stored) = self.shared.store.job(id).await? else {
            return Ok(None);
        };
        let request = stored.request.clone();
        let mut events = self.shared.store.job_events(id, 0).await?;
        let last = final_event(stored);
        // Jobs of versions before the events were recorded have none.
        if events.last().map(JobEvent::status) != Some(last.status()) {
            events.push(last);
        }
        Ok(Some(JobSnapshot {
            id: id.to_string(),
            request,
            status: events.last().map_or(JobStatus::Queued, JobEvent::status),
            events,
        }))
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

    /// Cancels a job; false when it is unknown or already finished. A queued job is taken out
    /// of the queue at once; a running one, here or in a worker process, stops at its next
    /// check.
    pub async fn cancel(&self, id: &str) -> bool {
        let Some(job) = self.get(id) else {
            return false;
        };
        if job.status().is_final() {
            return false;
        }
        job.cancel.store(true, Ordering::SeqCst);
        // First the flag, which every process sees: a worker taking the job from now on finds
        // it set.
        if let Err(e) = self.shared.store.request_job_cancel(id).await {
            tracing::warn!(job = %id, "{e}");
        }
        if job.status() == JobStatus::Queued {
            // Out of the task table, unless a worker has just taken it (it then sees the flag
            // before it starts and reports the cancel itself).
            match self.shared.queue.kill_pending(id).await {
                Ok(true) => {
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
                Ok(false) => {}
                Err(e) => tracing::warn!(job = %id, "{e}"),
            }
        }
        true
    }

    /// Stops the workers as the process stops: the running jobs end at their next check (a
    /// training writes its checkpoint first; this waits up to a minute for it) and, like the
    /// queued ones, are taken up again by the next worker.
    pub fn shutdown(&self) {
        // First no worker takes another task, then the running jobs stop.
        for task in self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        for thread in &self.shared.threads {
            thread.stopping.store(true, Ordering::SeqCst);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        for thread in &self.shared.threads {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !thread.wait_idle(left) {
                tracing::warn!(
                    "the running job did not stop within a minute; it starts over next time"
                );
            }
        }
    }

    /// After [`Self::shutdown`] of a worker process: its unfinished tasks go back to the queue
    /// for the other workers, and the jobs' state says queued again.
    pub async fn release(&self) {
        // The jobs' state first, so that a worker taking them numbers its events after it.
        let running: Vec<Arc<Job>> = self
            .shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|job| job.local.load(Ordering::SeqCst) && !job.status().is_final())
            .cloned()
            .collect();
        for job in running {
            job.push(JobEvent::Queued { ahead: 0 });
            let _ = self
                .shared
                .store
                .set_job(&job.id, JobStatus::Queued, None, None)
                .await;
        }
        self.shared.recorder.flush().await;
        for name in self.shared.workers.names() {
            match self.shared.queue.release(&name).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(worker = %name, "{n} job(s) handed back to the queue"),
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }

    /// Runs one task a worker took from the queue on its model thread (`starts`: how often it
    /// was handed out).
    async fn run(
        &self,
        task: QueuedJob,
        worker: &str,
        starts: usize,
        thread: &ModelThread,
    ) -> Result<String, String> {
        let store = &self.shared.store;
        let job = match self.get(&task.id) {
            Some(job) => job,
            None => {
                // Queued by another process: its events are read before it starts (below).
                let job = Job::new(&task.id, task.spec, self.shared.recorder.clone());
                self.insert(job.clone());
                job
            }
        };
        if job.status().is_final() {
            return Ok("finished before it started".into());
        }
        let asked = match store.cancel_requested(std::slice::from_ref(&job.id)).await {
            Ok(asked) => !asked.is_empty(),
            Err(e) => {
                tracing::warn!(job = %job.id, "{e}");
                false
            }
        };
        if asked || job.cancel_requested() {
            job.push(JobEvent::Cancelled);
            let _ = store
                .set_job(&job.id, JobStatus::Cancelled, None, None)
                .await;
            self.shared.recorder.flush().await;
            return Ok("cancelled before it started".into());
        }
        if starts > MAX_STARTS {
            // The worker stopped every time this job ran: perhaps the job itself stops it.
            let message = format!(
                "the worker running this job stopped {} times, so it is not started again (see \
                 the server's or worker's log)",
                starts - 1
            );
            tracing::warn!(job = %job.id, "{message}");
            let _ = store
                .set_job(&job.id, JobStatus::Failed, None, Some(&message))
                .await;
            job.push(JobEvent::Failed {
                message: message.clone(),
            });
            self.shared.recorder.flush().await;
            return Err(message);
        }
        // What other processes recorded since (a job handed back or lost by another worker),
        // so this start is numbered after it.
        let from = job.len();
        match store.job_events(&job.id, from).await {
            Ok(new) => job.import(from, new),
            Err(e) => return Err(format!("reading the job's events: {e}")),
        }
        job.local.store(true, Ordering::SeqCst);
        let _ = store.set_job(&job.id, JobStatus::Running, None, None).await;
        job.push(JobEvent::Started {
            worker: worker.to_string(),
        });
        let outcome = thread.run(job.clone()).await;
        if thread.stopping.load(Ordering::SeqCst) {
            // The process is stopping: leave the job to the next worker.
            self.shared.recorder.flush().await;
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
        job.local.store(false, Ordering::SeqCst);
        // Every event is in the database before the task is marked done.
        self.shared.recorder.flush().await;
        result
    }
}

/// A worker's handler: one task at a time.
async fn execute(
    task: QueuedJob,
    worker: WorkerContext,
    attempt: Attempt,
    runner: Data<Runner>,
) -> Result<String, BoxDynError> {
    runner
        .jobs
        .run(task, worker.name(), attempt.current(), &runner.thread)
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
    use safeedit_engine::WeightDtype;
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
        start_with(dir, url, Workers::Embedded(1), WeightDtype::F32)
    }

    /// [`start_on`] with `workers` in the process.
    fn start_with(
        dir: &Path,
        url: Option<&str>,
        workers: Workers,
        dtype: WeightDtype,
    ) -> (tokio::runtime::Runtime, Jobs, Store) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(Store::open(url, dir)).unwrap();
        let lm = safeedit_pipeline::backend::load_as(
            Path::new("tiny"),
            dtype,
            &mut safeedit_pipeline::Quiet,
        )
        .unwrap();
        let worker = Worker {
            catalog: Arc::new(safeedit_pipeline::data::catalog(None).unwrap()),
            safeedit_dir: None,
            preset: DinmConfig::preset_for(&lm.name, &lm.architecture),
            n_layers: lm.config.n_layers,
            judge_dir: None,
            dtype,
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
        let jobs = rt.block_on(Jobs::start(ctx, url, dir, workers)).unwrap();
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

    /// Queues the job `json` describes; its id.
    fn submit_json(rt: &tokio::runtime::Runtime, jobs: &Jobs, json: &str) -> String {
        let spec: JobSpec = serde_json::from_str(json).unwrap();
        rt.block_on(jobs.submit(spec)).unwrap().0
    }

    /// Waits for the job, which must end done; its result's page.
    fn done_page(jobs: &Jobs, id: &str) -> String {
        let info = wait(jobs, id).info();
        assert_eq!(info.state, JobStatus::Done, "{id}: {:?}", info.error);
        info.result.unwrap()
    }

    /// The events from the job's last start on.
    fn last_start(events: &[JobEvent]) -> &[JobEvent] {
        let at = events
            .iter()
            .rposition(|e| matches!(e, JobEvent::Started { .. }))
            .unwrap_or(0);
        &events[at..]
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
    fn two_workers_in_the_server_run_two_jobs_at_once_with_the_results_of_one() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, jobs, store) =
            start_with(dir.path(), None, Workers::Embedded(2), WeightDtype::F32);
        let ids: Vec<String> = [
            request("test", 0),
            request("editing", 2),
            request("test", 0),
        ]
        .into_iter()
        .map(|r| rt.block_on(jobs.submit(JobSpec::Edit(r))).unwrap().0)
        .collect();
        // The first two start together, one on each worker.
        let started = std::time::Instant::now();
        while ids[..2]
            .iter()
            .any(|id| jobs.get(id).unwrap().status() == JobStatus::Queued)
        {
            assert!(
                started.elapsed().as_secs() < 120,
                "both workers start a job"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let done: Vec<JobSnapshot> = ids.iter().map(|id| wait(&jobs, id)).collect();
        let mut workers: Vec<String> = done[..2]
            .iter()
            .map(|d| d.info().worker.expect("a worker"))
            .collect();
        workers.sort();
        assert_eq!(workers, ["embedded", "embedded-2"]);
        // Jobs sharing the model at once give what one at a time gives.
        let outcomes: Vec<EditOutcome> = done.iter().map(|d| outcome(&rt, &store, d)).collect();
        assert_eq!(
            outcomes[0], outcomes[2],
            "test#0 on either worker, beside another job"
        );
        assert_ne!(outcomes[0], outcomes[1]);
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
        let analysis = submit_json(
            &rt,
            &jobs,
            r#"{"kind": "analyze", "methods": ["dinm"], "edits": 1, "inputs": 4,
                "projection_inputs": 4, "probe_tokens": 32, "top_k": 32,
                "lens_vectors": 2, "lens_tokens": 4}"#,
        );
        let all = submit_json(
            &rt,
            &jobs,
            r#"{"kind": "test_all", "method": "vanilla", "limit": 6, "max_new_tokens": 4}"#,
        );
        let analysis = done_page(&jobs, &analysis);
        let slug = analysis.strip_prefix("/mechanisms/").expect(&analysis);
        let record = rt
            .block_on(store.analysis(slug))
            .unwrap()
            .expect("stored analysis");
        assert_eq!(record.methods, ["dinm"], "compared with vanilla");
        let all = done_page(&jobs, &all);
        let slug = all.strip_prefix("/test-all/").expect(&all);
        let run = rt
            .block_on(store.test_all(slug))
            .unwrap()
            .expect("stored test_ALL run");
        assert_eq!(run.method, "vanilla");
    }

    #[test]
    fn a_server_loaded_in_bf16_evaluates_and_analyses_in_bf16() {
        // `serve --dtype bf16`: the jobs that load their own model (evaluations, analyses) load
        // it in the server's precision, and their records say so.
        let dir = tempfile::tempdir().unwrap();
        let (rt, jobs, store) =
            start_with(dir.path(), None, Workers::Embedded(1), WeightDtype::Bf16);
        let eval = submit_json(
            &rt,
            &jobs,
            r#"{"kind": "eval", "method": "dinm", "limit": 1, "max_new_tokens": 4,
                "overrides": {"steps": 2}}"#,
        );
        let analysis = submit_json(
            &rt,
            &jobs,
            r#"{"kind": "analyze", "methods": ["dinm"], "edits": 1, "inputs": 3,
                "projection_inputs": 3, "probe_tokens": 16, "top_k": 16,
                "lens_vectors": 1, "lens_tokens": 2}"#,
        );
        let eval = done_page(&jobs, &eval);
        let slug = eval.strip_prefix("/evals/").expect(&eval);
        let stored = rt.block_on(store.eval(slug)).unwrap().expect("stored");
        assert_eq!(stored.run["weights"], "bf16", "{}", stored.run);
        let analysis = done_page(&jobs, &analysis);
        let slug = analysis.strip_prefix("/mechanisms/").expect(&analysis);
        let record = rt
            .block_on(store.analysis(slug))
            .unwrap()
            .expect("stored analysis");
        assert_eq!(record.report.weights.as_deref(), Some("bf16"));
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
        // The second start began at the checkpoint: only the remaining steps ran (the job's
        // events keep the first start's too, before the second `started`).
        let steps: Vec<usize> = last_start(&done.events)
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
                        assert!(
                            rt.block_on(store.unfinished_jobs("tiny"))
                                .unwrap()
                                .is_empty()
                        );
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
                let finished = wait(&jobs, &earlier);
                assert_eq!(finished.status, JobStatus::Done);
                // Recorded before the stop: what the next process reads.
                rt.block_on(jobs.shared.recorder.flush());
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
        // The evaluation went on from the instances it had: its phase counted only the rest
        // (the events before the second start are the first process's).
        let starts = eval
            .events
            .iter()
            .filter(|e| matches!(e, JobEvent::Started { .. }))
            .count();
        assert_eq!(starts, 2, "both starts are in the job's events");
        let totals: Vec<usize> = last_start(&eval.events)
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
        assert!(
            rt.block_on(store.unfinished_jobs("tiny"))
                .unwrap()
                .is_empty()
        );
        // The job finished before the stop is as it was, with every event it had (its located
        // layer and its 3 steps).
        let snapshot = rt.block_on(jobs.snapshot(&earlier)).unwrap().unwrap();
        assert_eq!(snapshot.status, JobStatus::Done);
        let steps = snapshot
            .events
            .iter()
            .filter(|e| matches!(e, JobEvent::Step { .. }))
            .count();
        assert_eq!(steps, 3, "{:?}", snapshot.events);
        assert!(matches!(snapshot.events[0], JobEvent::Queued { .. }));
        outcome(&rt, &store, &snapshot);
    }
}
