//! The model thread: the one owner of the loaded model and the judge. The queue's worker hands
//! it one job at a time and awaits the result; the thread runs the job through the pipeline and
//! turns the pipeline's events into the job's events (phases with counts and an ETA, the located
//! layer, each step's loss).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use safeedit_core::job::{JobProgress, TokenProgress};
use safeedit_core::run::JobEvent;
use safeedit_engine::threads::OwnPool;
use safeedit_pipeline::backend::Model;
use safeedit_pipeline::job::Worker;
use safeedit_pipeline::publish::Publisher;
use safeedit_pipeline::{Event, Loaded, PipelineError, Progress, judge};
use safeedit_store::Store;
use tokio::sync::oneshot;

use super::Job;

/// How a job ended on the model thread.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Stored; the result's page.
    Done(String),
    /// Stopped because it was cancelled (or the server is stopping).
    Stopped,
    /// Failed; why.
    Failed(String),
}

/// What the model thread needs besides the jobs.
#[derive(Clone)]
pub struct ModelContext {
    /// The model (shared read-only with the tries).
    pub model: Arc<Model>,
    /// Its file or directory, for the records.
    pub model_path: PathBuf,
    /// Its checksum, for the records.
    pub model_checksum: String,
    /// The data, presets, judge and folders jobs use.
    pub worker: Worker,
    /// Where results are stored.
    pub store: Store,
    /// The server's runtime (database calls from the thread).
    pub runtime: tokio::runtime::Handle,
}

/// One job for the model thread and where its outcome goes.
struct Work {
    job: Arc<Job>,
    reply: oneshot::Sender<Outcome>,
}

/// The handle the queue's worker sends jobs through.
#[derive(Clone)]
pub(super) struct ModelThread {
    sender: mpsc::Sender<Work>,
    /// Set when the server stops: the running job stops at its next check and stays queued.
    pub stopping: Arc<AtomicBool>,
    /// Jobs handed to the thread and not yet answered.
    busy: Arc<AtomicUsize>,
}

impl ModelThread {
    /// Starts the thread (it loads the judge first).
    pub fn start(ctx: ModelContext) -> Self {
        let (sender, receiver) = mpsc::channel::<Work>();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let busy = Arc::new(AtomicUsize::new(0));
        let answered = busy.clone();
        std::thread::Builder::new()
            .name("model".into())
            .spawn(move || model_loop(&ctx, &receiver, &stop, &answered))
            .expect("spawning the model thread");
        Self {
            sender,
            stopping,
            busy,
        }
    }

    /// Runs `job` on the model thread; its outcome.
    pub async fn run(&self, job: Arc<Job>) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        self.busy.fetch_add(1, Ordering::SeqCst);
        if self.sender.send(Work { job, reply }).is_err() {
            self.busy.fetch_sub(1, Ordering::SeqCst);
            return Outcome::Failed("the model thread has stopped (see the server log)".into());
        }
        outcome.await.unwrap_or(Outcome::Failed(
            "the job panicked or the model thread stopped (see the server log)".into(),
        ))
    }
}

impl ModelThread {
    /// Waits up to `limit` for the job on the thread to stop (after [`Self::stopping`] is set,
    /// it stops at its next check, a training after writing its checkpoint); false if it did
    /// not.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let started = Instant::now();
        while self.busy.load(Ordering::SeqCst) > 0 {
            if started.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

fn model_loop(
    ctx: &ModelContext,
    receiver: &mpsc::Receiver<Work>,
    stopping: &AtomicBool,
    busy: &AtomicUsize,
) {
    let judge = judge::load_judge(ctx.worker.judge_dir.as_deref()).map_err(|e| e.to_string());
    if let Err(e) = &judge {
        tracing::error!("the judge could not be loaded, every job will fail: {e}");
    }
    let publisher = Publisher::with_handle(ctx.store.clone(), ctx.runtime.clone());
    // The thread's jobs run on threads of their own: each parallel operation starts on the spot
    // instead of being handed to the global pool (which the tries use), and a try's work is never
    // taken up in the middle of a job's (safeedit_engine::threads).
    let pool = OwnPool::new("model");
    while let Ok(Work { job, reply }) = receiver.recv() {
        let outcome = match &judge {
            Err(e) => Outcome::Failed(format!("the judge could not be loaded: {e}")),
            Ok(judge) => {
                let loaded = Loaded {
                    lm: &ctx.model,
                    path: &ctx.model_path,
                    checksum: &ctx.model_checksum,
                    judge: judge.as_ref(),
                };
                let mut progress = JobEvents::new(&job, stopping);
                // A job submitted unlisted is in the unlisted table under its id (durable, so a
                // restarted job keeps it); its records are stored unlisted.
                let listing = publisher
                    .block_on(ctx.store.unlisted())
                    .map(|hidden| hidden.contains(job.id()));
                // A panic in the engine must not take the thread down with it.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    publisher.set_unlisted(listing?);
                    pool.run(|| {
                        ctx.worker
                            .run(job.id(), job.spec(), &loaded, &publisher, &mut progress)
                    })
                }));
                match result {
                    Ok(Ok(page)) => Outcome::Done(page),
                    Ok(Err(PipelineError::Cancelled)) => Outcome::Stopped,
                    Ok(Err(e)) => Outcome::Failed(e.to_string()),
                    Err(_) => Outcome::Failed("the job panicked (see the server log)".into()),
                }
            }
        };
        busy.fetch_sub(1, Ordering::SeqCst);
        let _ = reply.send(outcome);
    }
}

/// A phase being counted.
struct Phase {
    label: String,
    unit: &'static str,
    total: usize,
    done: usize,
    started: Instant,
    /// The generation under way for the current item.
    tokens: Option<TokenProgress>,
}

/// The pipeline's events as the job's events; cancelled when the job is or the server stops.
pub(super) struct JobEvents<'a> {
    job: &'a Job,
    stopping: &'a AtomicBool,
    phases: Vec<Phase>,
    last_sent: Option<Instant>,
}

/// Progress events at most this often (a phase's start and end always go out).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

impl<'a> JobEvents<'a> {
    pub(super) fn new(job: &'a Job, stopping: &'a AtomicBool) -> Self {
        Self {
            job,
            stopping,
            phases: Vec::new(),
            last_sent: None,
        }
    }

    /// Sends the innermost phase's progress (`force`: regardless of the last one's time).
    fn send(&mut self, force: bool) {
        let Some(phase) = self.phases.last() else {
            return;
        };
        let now = Instant::now();
        if !force
            && phase.done < phase.total
            && self
                .last_sent
                .is_some_and(|t| now.duration_since(t) < PROGRESS_EVERY)
        {
            return;
        }
        self.last_sent = Some(now);
        self.job.push(JobEvent::Progress(
            JobProgress::new(
                phase.label.clone(),
                phase.unit,
                phase.done,
                phase.total,
                phase.started.elapsed().as_secs_f64(),
            )
            .with_tokens(phase.tokens),
        ));
    }
}

impl Progress for JobEvents<'_> {
    fn event(&mut self, event: Event) {
        let job = self.job;
        match event {
            Event::Phase { label, unit, total } => {
                self.phases.push(Phase {
                    label,
                    unit,
                    total,
                    done: 0,
                    started: Instant::now(),
                    tokens: None,
                });
                self.send(true);
            }
            Event::Advance(n) => {
                if let Some(phase) = self.phases.last_mut() {
                    phase.done += n;
                    phase.tokens = None;
                }
                self.send(false);
            }
            Event::PhaseDone => {
                self.phases.pop();
                self.send(true);
            }
            Event::Located { layer, distances } => job.push(JobEvent::Located { layer, distances }),
            Event::Step { step, loss } => job.push(JobEvent::Step { step, loss }),
            Event::Generating { responses } => job.push(JobEvent::Generating { responses }),
            Event::Tokens { done, limit } => {
                if let Some(phase) = self.phases.last_mut() {
                    phase.tokens = Some(TokenProgress { done, limit });
                    self.send(false);
                }
            }
            Event::Judging => job.push(JobEvent::Judging),
            Event::Status(_) | Event::Note(_) | Event::Warning(_) => {}
        }
    }

    fn cancelled(&self) -> bool {
        self.job.cancel_requested() || self.stopping.load(Ordering::SeqCst)
    }
}
