//! Runs and jobs as the web app sees them: a DINM edit of one instance started from the browser
//! (its request, the progress events streamed while it runs, and the stored result behind a
//! shareable `/runs/{slug}` link).

use serde::{Deserialize, Serialize};

use crate::job::{JobProgress, JobSpec};
use crate::judge::{JudgeInfo, Verdict};
use crate::method::Method;

/// A job request without a method detoxifies with DINM.
fn default_job_method() -> Method {
    Method::Dinm
}

/// Hyperparameters a user may change from the browser; `None` keeps the model's preset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EditOverrides {
    /// Learning rate.
    pub lr: Option<f64>,
    /// Optimisation steps.
    pub steps: Option<usize>,
    /// Edit this layer instead of locating one.
    pub layer: Option<usize>,
    /// Most new tokens per generated response.
    pub max_new_tokens: Option<usize>,
}

/// What a user asks for: detoxify one instance, or evaluate it vanilla / prompt-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    /// Split of the instance.
    pub split: String,
    /// Instance id.
    pub id: u64,
    /// What to do: `dinm` (detoxify and compare before/after, a run at `/runs/{slug}`, the
    /// default) or `vanilla` / `prompt` (evaluate the instance's five inputs unedited, an
    /// evaluation at `/evals/{slug}`).
    #[serde(default = "default_job_method")]
    pub method: Method,
    /// Hyperparameter overrides.
    #[serde(default)]
    pub overrides: EditOverrides,
}

/// How a queued job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for the worker.
    Queued,
    /// The worker is on it.
    Running,
    /// Finished; the run is stored.
    Done,
    /// Stopped by an error.
    Failed,
    /// Cancelled by the user.
    Cancelled,
}

impl JobStatus {
    /// True once nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// One progress event of a job (one SSE message, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    /// Accepted; `ahead` jobs are before it.
    Queued {
        /// Jobs ahead in the queue (the running one included).
        ahead: usize,
    },
    /// A worker started the job (again, when an interrupted job resumes).
    Started {
        /// Which worker.
        worker: String,
    },
    /// How far the current phase is (instances, steps, tokens), with an ETA.
    Progress(JobProgress),
    /// The toxic layer was located.
    Located {
        /// The chosen layer.
        layer: usize,
        /// Per-layer distances (index = layer); empty when the layer was fixed.
        distances: Vec<f32>,
    },
    /// One optimisation step finished.
    Step {
        /// 0-based step (as the engine counts them).
        step: usize,
        /// Total loss.
        loss: f64,
    },
    /// Generating the vanilla and edited responses.
    Generating {
        /// Responses to generate.
        responses: usize,
    },
    /// Judging the responses.
    Judging,
    /// Stored as a run (or, for vanilla / prompt-only, an evaluation).
    Done {
        /// The result's slug.
        slug: String,
        /// Its page: `/runs/{slug}` when absent, `/evals/{slug}` for evaluations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// Stopped by an error.
    Failed {
        /// What went wrong.
        message: String,
    },
    /// Cancelled.
    Cancelled,
}

impl JobEvent {
    /// The page of a finished job's result.
    pub fn result_path(&self) -> Option<String> {
        match self {
            JobEvent::Done { slug, path } => {
                Some(path.clone().unwrap_or_else(|| format!("/runs/{slug}")))
            }
            _ => None,
        }
    }

    /// The status after this event.
    pub fn status(&self) -> JobStatus {
        match self {
            JobEvent::Queued { .. } => JobStatus::Queued,
            JobEvent::Done { .. } => JobStatus::Done,
            JobEvent::Failed { .. } => JobStatus::Failed,
            JobEvent::Cancelled => JobStatus::Cancelled,
            _ => JobStatus::Running,
        }
    }
}

/// A job's state as polled by a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSnapshot {
    /// Job id.
    pub id: String,
    /// The request.
    pub request: JobSpec,
    /// Current status.
    pub status: JobStatus,
    /// Every event so far.
    pub events: Vec<JobEvent>,
}

impl JobSnapshot {
    /// The snapshot as `GET /api/jobs/{id}` answers it.
    pub fn info(&self) -> crate::job::JobInfo {
        crate::job::JobInfo::from_events(&self.id, &self.request, &self.events)
    }
}

/// One evaluation input before and after the edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `DS`, `DG_onlyQ`, ...
    pub kind: String,
    /// The raw input.
    pub input: String,
    /// The unedited model's response to the raw input.
    pub vanilla: String,
    /// Its verdict.
    pub vanilla_verdict: Verdict,
    /// The edited model's response to the input plus the suffix prompt.
    pub edited: String,
    /// Its verdict.
    pub edited_verdict: Verdict,
}

/// One optimisation step's losses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLosses {
    /// 0-based step (as the engine counts them).
    pub step: usize,
    /// Total loss.
    pub loss: f64,
    /// Edit NLL.
    pub edit: f64,
    /// KL constraint.
    pub constraint: f64,
}

/// The outcome of a DINM edit of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditOutcome {
    /// The edited layer.
    pub layer: usize,
    /// The edited tensor's HF name.
    pub tensor: String,
    /// Per-layer distances (absent when the layer was fixed).
    pub distances: Option<Vec<f32>>,
    /// Every step's losses.
    pub steps: Vec<StepLosses>,
    /// Whether the early-stop rule ended the loop.
    pub stopped_early: bool,
    /// Frobenius norm of the delta.
    pub delta_norm: f64,
    /// DS and the DG inputs, before and after.
    pub comparisons: Vec<Comparison>,
    /// Seconds: locate, tune, generate.
    pub seconds: [f64; 3],
}

impl EditOutcome {
    /// Defense rate (`100 − 100·score`) of one input kind before and after, over this instance.
    pub fn defense(&self) -> Vec<(String, f64, f64)> {
        self.comparisons
            .iter()
            .map(|c| {
                (
                    c.kind.clone(),
                    100.0 - 100.0 * c.vanilla_verdict.score(),
                    100.0 - 100.0 * c.edited_verdict.score(),
                )
            })
            .collect()
    }
}

/// A stored run: everything needed to read it, cite it and run it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Random slug (`/runs/{slug}`).
    pub slug: String,
    /// `dinm-edit`.
    pub kind: String,
    /// RFC 3339 creation time (UTC).
    pub created_at: String,
    /// What was asked.
    pub request: EditRequest,
    /// Instance facts at the time (category, attack, question).
    pub instance: InstanceFacts,
    /// The full DINM configuration used (JSON of the engine's config).
    pub config: serde_json::Value,
    /// Seed (greedy decoding and the edit are deterministic; recorded for re-runs).
    pub seed: u64,
    /// Model name.
    pub model: String,
    /// Model file or directory.
    pub model_path: String,
    /// SHA-256 prefix of the model file (or `config.json`), when known.
    pub model_checksum: String,
    /// Backend.
    pub backend: String,
    /// The judge.
    pub judge: JudgeInfo,
    /// Project version.
    pub version: String,
    /// Git commit the binary was built from.
    pub git_commit: String,
    /// The outcome.
    pub outcome: EditOutcome,
}

/// What identifies an instance in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceFacts {
    /// Category string.
    pub category: String,
    /// Attack name.
    pub attack: String,
    /// The harmful question.
    pub question: String,
}

/// A run in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Slug.
    pub slug: String,
    /// Kind.
    pub kind: String,
    /// Creation time.
    pub created_at: String,
    /// Split and instance.
    pub split: String,
    /// Instance id.
    pub instance: u64,
    /// Model name.
    pub model: String,
    /// Edited layer.
    pub layer: usize,
    /// DS before and after.
    pub ds: (f64, f64),
}

/// One stored result of any kind, as the run catalogue (`/runs`) lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// `edit`, `eval`, `test_all`, `analysis` or `model`.
    pub kind: String,
    /// Its slug (a trained model: its name).
    pub slug: String,
    /// Its page.
    pub href: String,
    /// When it was stored (a trained model: its card's time).
    pub created_at: String,
    /// What it is, in a few words.
    pub title: String,
    /// The model it ran on (or started from).
    pub model: String,
    /// Its headline figure.
    pub headline: String,
    /// For edit runs: the summary the edit filters and the comparison use.
    pub edit: Option<RunSummary>,
}

impl CatalogEntry {
    /// The kinds, with the label the filter shows.
    pub const KINDS: [(&'static str, &'static str); 5] = [
        ("edit", "edit runs"),
        ("eval", "evaluations"),
        ("test_all", "test_ALL runs"),
        ("analysis", "analyses"),
        ("model", "trained models"),
    ];
}

/// A random URL-safe slug of `len` characters from `entropy` (the caller supplies OS randomness).
pub fn slug_from(entropy: &[u8], len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    entropy
        .iter()
        .take(len)
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_a_tag_and_map_to_statuses() {
        let e = JobEvent::Step { step: 3, loss: 1.5 };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"step","step":3,"loss":1.5}"#
        );
        assert_eq!(e.status(), JobStatus::Running);
        assert!(JobEvent::Cancelled.status().is_final());
        assert!(!JobEvent::Queued { ahead: 1 }.status().is_final());
    }

    #[test]
    fn slugs_use_an_unambiguous_alphabet() {
        let s = slug_from(&[0, 31, 32, 255, 7, 8, 9, 10, 11, 12], 10);
        assert_eq!(s.len(), 10);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() && !"l1o0".contains(c))
        );
    }
}

impl EvalRecord {
    /// True for one-instance evaluations started from an instance page (and edit runs put in
    /// the results table).
    pub fn from_web_app(&self) -> bool {
        self.run.get("source").and_then(serde_json::Value::as_str) == Some("web app")
    }

    /// Whether this stands for a DINM edit run ([`RunRecord::as_eval`]).
    pub fn is_edit_run(&self) -> bool {
        self.run.get("kind").and_then(serde_json::Value::as_str) == Some(EDIT_RUN_KIND)
    }

    /// Its page: `/runs/{slug}` for an edit run, else `/evals/{slug}`.
    pub fn page(&self) -> String {
        if self.is_edit_run() {
            format!("/runs/{}", self.slug)
        } else {
            format!("/evals/{}", self.slug)
        }
    }
}

/// The `kind` of a DINM edit run of the web app.
pub const EDIT_RUN_KIND: &str = "dinm-edit";

impl RunRecord {
    /// The edited model's side of this run as an evaluation of its one instance (same slug,
    /// DS and the DG inputs it answered, judged as it was), so the results table can put an
    /// edit made in the browser beside evaluations of the same instance.
    pub fn as_eval(&self) -> EvalRecord {
        use crate::eval::{InputResult, InstanceResult, summarize};
        let inputs: Vec<InputResult> = self
            .outcome
            .comparisons
            .iter()
            .map(|c| InputResult {
                kind: c.kind.clone(),
                input: c.input.clone(),
                response: c.edited.clone(),
                verdict: c.edited_verdict,
                // Not kept by edit runs; the table does not use them.
                stop: String::new(),
                generated_tokens: 0,
            })
            .collect();
        let responses: Vec<&str> = inputs.iter().map(|i| i.response.as_str()).collect();
        let instance = InstanceResult {
            id: self.request.id,
            category: self.instance.category.clone(),
            attack: self.instance.attack.clone(),
            method: self.request.method.name().into(),
            fluency: crate::fluency::mean_fluency(&responses).unwrap_or(0.0),
            inputs,
            edit: None,
            seconds: 0.0,
            timings: None,
        };
        EvalRecord {
            slug: self.slug.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.created_at.clone(),
            method: self.request.method.name().into(),
            data: format!("{} #{}", self.request.split, self.request.id),
            model: self.model.clone(),
            instances: 1,
            run: serde_json::json!({
                "source": "web app",
                "kind": EDIT_RUN_KIND,
                "split": self.request.split,
                "judge": self.judge,
            }),
            metrics: summarize(std::slice::from_ref(&instance)),
        }
    }
}

/// A chart drawn by the server (plotters SVG at its paper size), for inline display; the same
/// SVG is what the download links export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigureSvg {
    /// Chart name (`distances`, `losses`, ...), used in download URLs.
    pub name: String,
    /// The SVG document.
    pub svg: String,
}

/// A batch evaluation (`safeedit eval`) as stored in the runs database (`/evals/{slug}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Random slug, kept in the output folder's `slug.txt`.
    pub slug: String,
    /// When the run was first stored (RFC 3339 UTC).
    pub created_at: String,
    /// When it was last updated (a resumed run, new general scores).
    pub updated_at: String,
    /// `vanilla`, `dinm`, `prompt`, ...
    pub method: String,
    /// The data evaluated (`test-sample` or a file path).
    pub data: String,
    /// Model name.
    pub model: String,
    /// Instances evaluated.
    pub instances: usize,
    /// The run's settings (`run.json`: model path, prompt format, generation, DINM config,
    /// judge, version).
    pub run: serde_json::Value,
    /// The metric table (overall, per category, per attack, general scores).
    pub metrics: Vec<crate::eval::MetricRow>,
}
