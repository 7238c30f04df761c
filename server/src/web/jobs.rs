//! The job queue behind "Detoxify this instance": one worker thread owns the model and runs one
//! DINM edit at a time; the queue is bounded (a full queue answers "busy" instead of piling up);
//! every job keeps its progress events, which `/api/jobs/{id}/events` streams as SSE; finished
//! edits are stored as runs with random slugs. A queued job can be cancelled at once, a running
//! one at its next phase (after location, after tuning, before judging).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use safeedit_core::Method;
use safeedit_core::browse::Catalog;
use safeedit_core::run::{EditRequest, JobEvent, JobSnapshot, JobStatus};
use safeedit_engine::dinm::DinmConfig;
use safeedit_engine::judge::SafetyJudge;
use safeedit_pipeline::backend::Model;
use safeedit_pipeline::edit::{config_with_overrides, edit_run, no_instance};
use safeedit_pipeline::evaluate::evaluate_one;
use safeedit_pipeline::publish::Publisher;
use safeedit_pipeline::{Event, Loaded, PipelineError, Progress, judge};
use safeedit_store::{Store, StoredJob, now_rfc3339, random_slug};
use tokio::sync::watch;

/// How many jobs may wait behind the running one.
pub const QUEUE_CAPACITY: usize = 8;

/// One job: its request, its events, and a channel that ticks on every new event.
pub struct Job {
    id: String,
    request: EditRequest,
    events: Mutex<Vec<JobEvent>>,
    cancel: AtomicBool,
    tick: watch::Sender<usize>,
}

impl Job {
    fn push(&self, event: JobEvent) {
        let n = {
            let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
            events.push(event);
            events.len()
        };
        self.tick.send_replace(n);
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
            request: self.request.clone(),
            status,
            events,
        }
    }

    /// A receiver that changes whenever an event arrives.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.tick.subscribe()
    }
}

/// What the worker needs besides the model.
pub struct WorkerContext {
    /// The model (the worker is its only user while a job runs).
    pub model: Arc<Mutex<Model>>,
    /// Where instances come from.
    pub catalog: Arc<Catalog>,
    /// The paper's classifier directory, or `None` for the built-in judge (loaded by the
    /// worker thread itself).
    pub judge_dir: Option<PathBuf>,
    /// Where runs go.
    pub store: Store,
    /// Runtime handle for database calls from the worker thread.
    pub runtime: tokio::runtime::Handle,
    /// Model file or directory, for the run record.
    pub model_path: PathBuf,
    /// Model checksum, for the run record.
    pub model_checksum: String,
    /// Where each run's delta is saved (`{slug}.safetensors`).
    pub delta_dir: PathBuf,
    /// The model's DINM preset, which requests override.
    pub preset: DinmConfig,
    /// Decoder layers of the model (to check a fixed layer).
    pub n_layers: usize,
}

struct Shared {
    waiting: Mutex<VecDeque<Arc<Job>>>,
    wake: Condvar,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    running: Mutex<Option<String>>,
}

/// The queue handle kept in the web state.
#[derive(Clone)]
pub struct Jobs {
    shared: Arc<Shared>,
    store: Store,
    catalog: Arc<Catalog>,
    preset: DinmConfig,
    n_layers: usize,
    runtime: tokio::runtime::Handle,
}

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request names no instance or has an out-of-range hyperparameter.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The queue is full.
    #[error("busy: {0} jobs are waiting; try again when one finishes")]
    Busy(usize),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Jobs {
    /// Starts the worker thread.
    pub fn start(ctx: WorkerContext) -> Self {
        let shared = Arc::new(Shared {
            waiting: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            jobs: Mutex::new(HashMap::new()),
            running: Mutex::new(None),
        });
        let jobs = Self {
            shared: shared.clone(),
            store: ctx.store.clone(),
            catalog: ctx.catalog.clone(),
            preset: ctx.preset.clone(),
            n_layers: ctx.n_layers,
            runtime: ctx.runtime.clone(),
        };
        std::thread::Builder::new()
            .name("dinm-worker".into())
            .spawn(move || worker_loop(&shared, &ctx))
            .expect("spawning the worker thread");
        jobs
    }

    /// Checks a request before it is queued: the instance exists and the overrides are in range.
    pub fn validate(&self, request: &EditRequest) -> Result<DinmConfig, SubmitError> {
        if self.catalog.instance(&request.split, request.id).is_none() {
            return Err(SubmitError::Invalid(format!(
                "no instance {} in split `{}`",
                request.id, request.split
            )));
        }
        if !matches!(
            request.method,
            Method::Dinm | Method::Vanilla | Method::Prompt
        ) {
            return Err(SubmitError::Invalid(format!(
                "method `{}` cannot run from an instance page (dinm, vanilla, prompt)",
                request.method
            )));
        }
        config_with_overrides(&self.preset, self.n_layers, &request.overrides)
            .map_err(|e| SubmitError::Invalid(e.to_string()))
    }

    /// Queues an edit; returns the job id and how many jobs are ahead of it.
    pub async fn submit(&self, request: EditRequest) -> Result<(String, usize), SubmitError> {
        self.validate(&request)?;
        let id = random_slug(12);
        let job = Arc::new(Job {
            id: id.clone(),
            request: request.clone(),
            events: Mutex::new(Vec::new()),
            cancel: AtomicBool::new(false),
            tick: watch::channel(0).0,
        });
        let ahead = {
            let waiting = self
                .shared
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if waiting.len() >= QUEUE_CAPACITY {
                return Err(SubmitError::Busy(waiting.len()));
            }
            waiting.len() + usize::from(self.running().is_some())
        };
        self.store
            .insert_job(&id, &now_rfc3339(), &request)
            .await
            .map_err(anyhow::Error::from)?;
        job.push(JobEvent::Queued { ahead });
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), job.clone());
        self.shared
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(job);
        self.shared.wake.notify_one();
        Ok((id, ahead))
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
        Ok(self.store.job(id).await?.map(
            |StoredJob {
                 request,
                 status,
                 result,
                 message,
             }| {
                let (status, event) = match (status, result) {
                    (JobStatus::Done, Some(stored)) => {
                        let event = match stored.strip_prefix('/') {
                            Some(page) => JobEvent::Done {
                                slug: page.rsplit('/').next().unwrap_or(page).to_string(),
                                path: Some(stored.clone()),
                            },
                            None => JobEvent::Done {
                                slug: stored,
                                path: None,
                            },
                        };
                        (JobStatus::Done, event)
                    }
                    (JobStatus::Cancelled, _) => (JobStatus::Cancelled, JobEvent::Cancelled),
                    _ => (
                        JobStatus::Failed,
                        JobEvent::Failed {
                            message: message.unwrap_or_else(|| "the job did not finish".into()),
                        },
                    ),
                };
                JobSnapshot {
                    id: id.to_string(),
                    request,
                    status,
                    events: vec![event],
                }
            },
        ))
    }

    /// Cancels a job; false when it is unknown or already finished.
    pub fn cancel(&self, id: &str) -> bool {
        let Some(job) = self.get(id) else {
            return false;
        };
        if job.snapshot().status.is_final() {
            return false;
        }
        job.cancel.store(true, Ordering::SeqCst);
        let mut waiting = self
            .shared
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = waiting.iter().position(|j| j.id == id) {
            waiting.remove(pos);
            drop(waiting);
            job.push(JobEvent::Cancelled);
            let store = self.store.clone();
            let id = id.to_string();
            self.runtime.spawn(async move {
                let _ = store.set_job(&id, JobStatus::Cancelled, None, None).await;
            });
        }
        true
    }

    fn running(&self) -> Option<String> {
        self.shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn worker_loop(shared: &Shared, ctx: &WorkerContext) {
    let judge = judge::load_judge(ctx.judge_dir.as_deref()).map_err(|e| e.to_string());
    if let Err(e) = &judge {
        tracing::error!("the judge could not be loaded, every edit will fail: {e}");
    }
    loop {
        let job = {
            let mut waiting = shared.waiting.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(job) = waiting.pop_front() {
                    break job;
                }
                waiting = shared.wake.wait(waiting).unwrap_or_else(|p| p.into_inner());
            }
        };
        *shared.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(job.id.clone());
        let _ = ctx
            .runtime
            .block_on(ctx.store.set_job(&job.id, JobStatus::Running, None, None));
        job.push(JobEvent::Started);
        // A panic in the engine must not take the worker down with it.
        let outcome = match &judge {
            Ok(judge) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_job(&job, ctx, judge.as_ref())
            }))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the job panicked (see the server log)"))),
            Err(e) => Err(anyhow::anyhow!("the judge could not be loaded: {e}")),
        };
        let (status, slug, message) = match outcome {
            Ok(Some((slug, path))) => {
                job.push(JobEvent::Done {
                    slug: slug.clone(),
                    path: path.clone(),
                });
                // The database keeps the page of evaluations, the slug of runs.
                (JobStatus::Done, Some(path.unwrap_or(slug)), None)
            }
            Ok(None) => {
                job.push(JobEvent::Cancelled);
                (JobStatus::Cancelled, None, None)
            }
            Err(e) => {
                let message = format!("{e:#}");
                tracing::warn!(job = %job.id, "job failed: {message}");
                job.push(JobEvent::Failed {
                    message: message.clone(),
                });
                (JobStatus::Failed, None, Some(message))
            }
        };
        let _ = ctx.runtime.block_on(ctx.store.set_job(
            &job.id,
            status,
            slug.as_deref(),
            message.as_deref(),
        ));
        *shared.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A finished job's result: its slug and, for evaluations, its page.
type Finished = (String, Option<String>);

/// A running job's progress: the pipeline's events as job events, and its cancel flag.
struct JobProgress<'a>(&'a Job);

impl Progress for JobProgress<'_> {
    fn event(&mut self, event: Event) {
        let job = self.0;
        match event {
            Event::Located { layer, distances } => job.push(JobEvent::Located { layer, distances }),
            Event::Step { step, loss } => job.push(JobEvent::Step { step, loss }),
            Event::Generating { responses } => job.push(JobEvent::Generating { responses }),
            Event::Judging => job.push(JobEvent::Judging),
            _ => {}
        }
    }

    fn cancelled(&self) -> bool {
        self.0.cancel.load(Ordering::SeqCst)
    }
}

/// Runs one job through the pipeline and stores its result; `Ok(None)` when cancelled.
fn run_job(
    job: &Job,
    ctx: &WorkerContext,
    judge: &dyn SafetyJudge,
) -> anyhow::Result<Option<Finished>> {
    let request = &job.request;
    let record = ctx
        .catalog
        .instance(&request.split, request.id)
        .cloned()
        .ok_or_else(|| no_instance(&request.split, request.id))?;
    let config = config_with_overrides(&ctx.preset, ctx.n_layers, &request.overrides)?;
    let lm = ctx.model.lock().unwrap_or_else(|p| p.into_inner());
    let loaded = Loaded {
        lm: &lm,
        path: &ctx.model_path,
        checksum: &ctx.model_checksum,
        judge,
    };
    let publisher = Publisher::with_handle(ctx.store.clone(), ctx.runtime.clone());
    let progress = &mut JobProgress(job);
    let finished = match request.method {
        Method::Dinm => edit_run(&loaded, request, &record, &config, &ctx.delta_dir, progress)
            .and_then(|run| {
                publisher.run(&request.split, &run)?;
                Ok((run.slug, None))
            }),
        method => evaluate_one(&loaded, &request.split, &record, method, config, progress)
            .and_then(|(eval, instance)| {
                publisher.eval(&eval, std::slice::from_ref(&instance))?;
                let page = format!("/evals/{}", eval.slug);
                Ok((eval.slug, Some(page)))
            }),
    };
    match finished {
        Ok(finished) => Ok(Some(finished)),
        Err(PipelineError::Cancelled) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use safeedit_core::run::{EditOutcome, EditOverrides};
    use std::path::Path;

    /// A queue on the `tiny` model with the built-in judge and a fresh SQLite file in `dir`.
    pub(crate) fn start(dir: &Path) -> (tokio::runtime::Runtime, Jobs, Store) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(Store::open(None, dir)).unwrap();
        let lm = safeedit_pipeline::backend::load(Path::new("tiny"), &mut safeedit_pipeline::Quiet)
            .unwrap();
        let preset = DinmConfig::preset_for(&lm.name, &lm.architecture);
        let n_layers = lm.config.n_layers;
        let jobs = Jobs::start(WorkerContext {
            model: Arc::new(Mutex::new(lm)),
            catalog: Arc::new(safeedit_pipeline::data::catalog(None).unwrap()),
            judge_dir: None,
            store: store.clone(),
            runtime: rt.handle().clone(),
            model_path: PathBuf::from("tiny"),
            model_checksum: "none".into(),
            delta_dir: dir.join("deltas"),
            preset,
            n_layers,
        });
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
        let (id_a, ahead_a) = rt.block_on(jobs.submit(a.clone())).unwrap();
        let (id_b, ahead_b) = rt.block_on(jobs.submit(b.clone())).unwrap();
        assert_eq!(ahead_a, 0);
        assert_eq!(ahead_b, 1, "the second job is queued behind the first");
        let (concurrent_a, concurrent_b) = (wait(&jobs, &id_a), wait(&jobs, &id_b));
        // Then one at a time.
        let id = rt.block_on(jobs.submit(a)).unwrap().0;
        let serial_a = wait(&jobs, &id);
        let id = rt.block_on(jobs.submit(b)).unwrap().0;
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
            .block_on(jobs.submit(request("test", 99_999)))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid request: no instance 99999"),
            "{err}"
        );
        let mut bad = request("test", 0);
        bad.overrides.layer = Some(7);
        let err = rt.block_on(jobs.submit(bad)).unwrap_err();
        assert!(err.to_string().contains("layer 7 does not exist"), "{err}");
        let mut bad = request("test", 0);
        bad.overrides.lr = Some(-1.0);
        let err = rt.block_on(jobs.submit(bad)).unwrap_err();
        assert!(err.to_string().contains("lr must be positive"), "{err}");

        // One running (or about to run) plus QUEUE_CAPACITY waiting; then "busy".
        let mut ids = Vec::new();
        let mut busy = None;
        for _ in 0..QUEUE_CAPACITY + 2 {
            match rt.block_on(jobs.submit(request("test", 1))) {
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
            assert!(jobs.cancel(id));
            assert_eq!(
                jobs.get(id).unwrap().snapshot().status,
                JobStatus::Cancelled
            );
        }
        assert!(!jobs.cancel("no-such-job"));
        let first = wait(&jobs, &ids[0]);
        assert!(first.status.is_final());
    }

    #[test]
    fn a_restart_marks_unfinished_jobs_failed_and_keeps_finished_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (slug, interrupted) = {
            let (rt, jobs, store) = start(dir.path());
            let id = rt.block_on(jobs.submit(request("test", 0))).unwrap().0;
            let done = wait(&jobs, &id);
            let Some(JobEvent::Done { slug, .. }) = done.events.last().cloned() else {
                panic!("{:?}", done.events.last());
            };
            // A job the process was running when it stopped.
            let interrupted = random_slug(12);
            rt.block_on(async {
                store
                    .insert_job(&interrupted, &now_rfc3339(), &request("test", 1))
                    .await
                    .unwrap();
                store
                    .set_job(&interrupted, JobStatus::Running, None, None)
                    .await
                    .unwrap();
            });
            (slug, interrupted)
        };
        // The next process opens the same database.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt.block_on(Store::open(None, dir.path())).unwrap();
        assert_eq!(rt.block_on(store.fail_interrupted_jobs()).unwrap(), 1);
        let job = rt.block_on(store.job(&interrupted)).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        assert!(job.message.unwrap().contains("server stopped"));
        let run = rt
            .block_on(store.run(&slug))
            .unwrap()
            .expect("the finished run survives");
        assert_eq!(run.outcome.steps.len(), 3);
        assert_eq!(rt.block_on(store.fail_interrupted_jobs()).unwrap(), 0);
        assert!(rt.block_on(store.run("nosuchslug")).unwrap().is_none());
    }
}
