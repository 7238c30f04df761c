//! The pipeline's progress events as indicatif progress bars on stderr (hidden when stderr is
//! not a terminal, where step lines are printed instead), notes and warnings.

use indicatif::{ProgressBar, ProgressStyle};
use safeedit_pipeline::{Event, Progress};

/// Progress bars for one command.
pub struct Bars {
    show: bool,
    bar: Option<ProgressBar>,
    unit: &'static str,
}

impl Bars {
    /// Bars and notes on stderr.
    pub fn new() -> Self {
        Self::shown(true)
    }

    /// Bars and notes when `show` (off for `--json` output: only warnings then).
    pub fn shown(show: bool) -> Self {
        Self {
            show,
            bar: None,
            unit: "",
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}

impl Progress for Bars {
    fn event(&mut self, event: Event) {
        match event {
            Event::Phase { label, unit, total } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let bar = if self.show {
                    ProgressBar::new(total as u64)
                } else {
                    ProgressBar::hidden()
                };
                bar.set_style(
                    ProgressStyle::with_template(&format!(
                        "{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{elapsed}}, eta {{eta}})"
                    ))
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_message(label);
                self.bar = Some(bar);
                self.unit = unit;
            }
            Event::Advance(n) => {
                if let Some(bar) = &self.bar {
                    bar.inc(n as u64);
                }
            }
            Event::Status(text) => {
                if let Some(bar) = &self.bar {
                    if bar.is_hidden() && self.show {
                        // Not a terminal (a log file): one line per update instead of the bar.
                        eprintln!(
                            "{} {}/{} {text}",
                            self.unit.trim_end_matches('s'),
                            bar.position(),
                            bar.length().unwrap_or(0)
                        );
                    }
                    bar.set_message(text);
                }
            }
            Event::PhaseDone => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
            Event::Note(text) => {
                if self.show {
                    self.line(&text);
                }
            }
            Event::Warning(text) => self.line(&format!("warning: {text}")),
            Event::Located { layer, .. } if self.unit == "steps" => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("layer {layer}: tuning down_proj"));
                }
            }
            Event::Step { step, loss } if self.unit == "steps" => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("step {step} loss {loss:.4}"));
                }
            }
            Event::Located { .. }
            | Event::Step { .. }
            | Event::Generating { .. }
            | Event::Tokens { .. } => {}
            Event::Judging => {}
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
