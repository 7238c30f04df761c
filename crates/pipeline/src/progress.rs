//! [`Progress`]: how an experiment reports what it is doing, and learns that it should stop.
//! The command line draws progress bars from the events; the web job queue turns them into the
//! job's events (streamed to the browser) and sets the cancel flag.

/// One thing an experiment reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A phase over countable items begins (`label`: what, `unit`: of what, `total` of them).
    Phase {
        /// What the phase does (`dinm`, `probe`, the model path while loading).
        label: String,
        /// What is counted (`instances`, `tensors`, `steps`).
        unit: &'static str,
        /// How many there are.
        total: usize,
    },
    /// `n` more items of the current phase are done.
    Advance(usize),
    /// The current phase's status line (e.g. the last step's loss).
    Status(String),
    /// The current phase ended.
    PhaseDone,
    /// A line for the log (what is about to happen, where the output goes).
    Note(String),
    /// Something went wrong that does not stop the experiment.
    Warning(String),
    /// DINM located the toxic layer (`distances` empty when the layer was fixed).
    Located {
        /// The layer.
        layer: usize,
        /// Every layer's distance.
        distances: Vec<f32>,
    },
    /// An optimisation step finished.
    Step {
        /// 0-based step.
        step: usize,
        /// Its loss.
        loss: f64,
    },
    /// Generation of `responses` responses began.
    Generating {
        /// How many.
        responses: usize,
    },
    /// Tokens generated so far by the generation under way (after every decoding step).
    Tokens {
        /// Generated so far, over every response of the batch.
        done: usize,
        /// The most there can be (responses × the token limit).
        limit: usize,
    },
    /// The judge is scoring the responses.
    Judging,
}

/// Receives an experiment's events and answers whether it should stop.
pub trait Progress {
    /// Reports one event.
    fn event(&mut self, event: Event);

    /// Whether the experiment should stop at the next point it checks (after every generated
    /// token, optimisation step, training step, instance and phase). Never, unless the
    /// receiver says so.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Discards every event and never cancels.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn event(&mut self, _: Event) {}
}

/// One stage of a chain of experiments: passes every event on, with each phase's label
/// prefixed by the stage (`[1/3 SFT] sft`), and cancels when the chain does.
pub struct Staged<'a> {
    inner: &'a mut dyn Progress,
    stage: String,
}

impl<'a> Staged<'a> {
    /// Stage `index` (1-based) of `count`, called `name`.
    pub fn new(inner: &'a mut dyn Progress, index: usize, count: usize, name: &str) -> Self {
        Self {
            inner,
            stage: format!("[{index}/{count} {name}]"),
        }
    }
}

impl Progress for Staged<'_> {
    fn event(&mut self, event: Event) {
        let event = match event {
            Event::Phase { label, unit, total } => Event::Phase {
                label: format!("{} {label}", self.stage),
                unit,
                total,
            },
            Event::Note(line) => Event::Note(format!("{} {line}", self.stage)),
            other => other,
        };
        self.inner.event(event);
    }

    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
}

/// Helpers every experiment uses.
pub(crate) trait ProgressExt: Progress {
    fn phase(&mut self, label: impl Into<String>, unit: &'static str, total: usize) {
        self.event(Event::Phase {
            label: label.into(),
            unit,
            total,
        });
    }

    fn note(&mut self, line: impl Into<String>) {
        self.event(Event::Note(line.into()));
    }

    /// `Err(Cancelled)` when the receiver asked to stop.
    fn check(&self) -> crate::Result<()> {
        if self.cancelled() {
            Err(crate::PipelineError::Cancelled)
        } else {
            Ok(())
        }
    }
}

impl<P: Progress + ?Sized> ProgressExt for P {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_stage_prefixes_its_phases_and_cancels_with_the_chain() {
        let mut recorder = Recorder::default();
        let mut staged = Staged::new(&mut recorder, 2, 3, "DPO");
        staged.phase("dpo", "steps", 4);
        staged.event(Event::Advance(1));
        assert!(!staged.cancelled());
        assert_eq!(
            recorder.0,
            [
                Event::Phase {
                    label: "[2/3 DPO] dpo".into(),
                    unit: "steps",
                    total: 4
                },
                Event::Advance(1)
            ]
        );
    }

    /// Records every event (for tests).
    #[derive(Debug, Default)]
    pub struct Recorder(pub Vec<Event>);

    impl Progress for Recorder {
        fn event(&mut self, event: Event) {
            self.0.push(event);
        }
    }
}
