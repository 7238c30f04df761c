//! Jobs as the JSON API and the browser see them: what a job asks for ([`JobSpec`], one variant
//! per kind, tagged by `kind`), and how it stands ([`JobInfo`], the answer of
//! `GET /api/jobs/{id}`), computed from the job's progress events ([`JobEvent`]).

use serde::{Deserialize, Serialize};

use crate::general::GeneralTask;
use crate::method::Method;
use crate::run::{EditOverrides, EditRequest, JobEvent, JobStatus};
use crate::safeedit::Fold;

/// What a job does; the JSON body of `POST /api/jobs`.
///
/// ```
/// use safeedit_core::job::JobSpec;
///
/// let spec: JobSpec = serde_json::from_str(
///     r#"{"kind": "eval", "method": "vanilla", "split": "test", "limit": 2, "max_new_tokens": 8}"#,
/// ).unwrap();
/// assert_eq!(spec.kind(), "eval");
/// let bad = serde_json::from_str::<JobSpec>(r#"{"kind": "eval", "metod": "vanilla"}"#);
/// assert!(bad.unwrap_err().to_string().contains("unknown field `metod`"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// One instance: a DINM edit compared before and after (a run at `/runs/{slug}`), or its
    /// five inputs evaluated vanilla / prompt-only (an evaluation at `/evals/{slug}`).
    Edit(EditRequest),
    /// A method over SafeEdit instances, as `safeedit eval` (an evaluation at `/evals/{slug}`).
    Eval(EvalJob),
    /// General performance of an evaluation's method and model, as `safeedit general` into that
    /// evaluation's folder (its page at `/evals/{slug}` gains the score).
    General(GeneralJob),
    /// The SafeEdit_test_ALL protocol, as `safeedit eval --test-all` (a run at
    /// `/test-all/{slug}`).
    TestAll(TestAllJob),
    /// SFT or DPO fine-tuning, as `safeedit train` (a model at `/models/{name}`).
    Train(TrainJob),
    /// The mechanism analysis, as `safeedit analyze` (an analysis at `/mechanisms/{slug}`).
    Analyze(AnalyzeJob),
    /// The paper's mechanism comparison as one job: train SFT, train DPO from it, then analyse
    /// vanilla against both and the editing methods (an analysis at `/mechanisms/{slug}`).
    Compare(Box<CompareJob>),
}

impl JobSpec {
    /// `edit`, `eval`, `general`, `test_all`, `train`, `analyze`.
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Edit(_) => "edit",
            JobSpec::Eval(_) => "eval",
            JobSpec::General(_) => "general",
            JobSpec::TestAll(_) => "test_all",
            JobSpec::Train(_) => "train",
            JobSpec::Analyze(_) => "analyze",
            JobSpec::Compare(_) => "compare",
        }
    }

    /// A job's request as stored in the runs database: a [`JobSpec`], or (jobs stored before
    /// there were kinds) a bare edit request.
    pub fn from_stored(json: &str) -> serde_json::Result<Self> {
        serde_json::from_str(json).or_else(|e| {
            serde_json::from_str::<EditRequest>(json)
                .map(JobSpec::Edit)
                .map_err(|_| e)
        })
    }

    /// One line saying what the job does (the job page's title).
    pub fn title(&self) -> String {
        match self {
            JobSpec::Edit(r) if r.method == Method::Dinm => {
                format!("Detoxifying {} instance {}", r.split, r.id)
            }
            JobSpec::Edit(r) => format!(
                "Evaluating {} on {} instance {}",
                r.method.label(),
                r.split,
                r.id
            ),
            JobSpec::Eval(e) => {
                let fold = match e.fold {
                    Fold::All => String::new(),
                    fold => format!(" (fold {})", fold.as_str()),
                };
                let count = match e.limit {
                    Some(1) => ", 1 instance".to_string(),
                    Some(n) => format!(", {n} instances"),
                    None => String::new(),
                };
                let on = e
                    .model
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                format!(
                    "Evaluating {}{on} on {}{fold}{count}",
                    e.method.label(),
                    e.split
                )
            }
            JobSpec::General(g) => format!(
                "General performance ({}) of evaluation {}",
                g.task.metric(),
                g.eval
            ),
            JobSpec::TestAll(t) => format!("SafeEdit_test_ALL: {}", t.method.label()),
            JobSpec::Train(t) => {
                let objective = t.objective.name().to_uppercase();
                let pairs = match t.limit {
                    Some(1) => " on 1 pair".to_string(),
                    Some(n) => format!(" on {n} pairs"),
                    None => String::new(),
                };
                match &t.name {
                    Some(name) => format!("Training {objective} model {name}{pairs}"),
                    None => format!("Training {objective}{pairs}"),
                }
            }
            JobSpec::Analyze(a) => {
                format!("Mechanism analysis: vanilla vs {}", a.methods.join(", "))
            }
            JobSpec::Compare(c) => {
                let mut compared = vec!["SFT".to_string(), "DPO".to_string()];
                compared.extend(c.analyze.methods.iter().map(|m| m.to_uppercase()));
                match &c.name {
                    Some(name) => format!("Mechanism comparison {name}: {}", compared.join(" vs ")),
                    None => format!("Mechanism comparison: {}", compared.join(" vs ")),
                }
            }
        }
    }
}

fn default_split() -> String {
    "test".into()
}

fn default_fold() -> Fold {
    Fold::All
}

/// An evaluation job: the flags of `safeedit eval`, in snake_case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalJob {
    /// The method (`vanilla`, `prompt`, `self-reminder`, `dinm`, `ftl`, `dinm-random-layer`,
    /// `dinm-no-suffix`).
    pub method: Method,
    /// `test` (the test records the server has) or `editing` (the three editing instances).
    #[serde(default = "default_split")]
    pub split: String,
    /// `all`, `train` or `held-out` records.
    #[serde(default = "default_fold")]
    pub fold: Fold,
    /// Only the first N instances.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Most new tokens per response [default: the DINM preset's].
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// DINM / FT-L learning rate, steps and layer, overriding the preset.
    #[serde(default)]
    pub overrides: EditOverrides,
    /// For `sft` / `dpo`: the trained model, by name (`GET /api/models`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

fn default_task() -> GeneralTask {
    GeneralTask::Knowledge
}

/// A general-performance job: the flags of `safeedit general`, in snake_case, with the
/// evaluation it adds a score to in place of `--out`, `--method` and the model (the
/// evaluation's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralJob {
    /// The evaluation (its slug): an `eval` job's result on this server.
    pub eval: String,
    /// `knowledge` (the offline KQA proxy; default) or `csum` (XSum; the shipped sample).
    #[serde(default = "default_task")]
    pub task: GeneralTask,
    /// Only the first N items.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Most new tokens per item [default: the task's].
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// Items generated together [default: 4].
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// For editing methods: the editing instance the model is edited on [default: 2].
    #[serde(default)]
    pub edit_instance: Option<u64>,
}

/// A SafeEdit_test_ALL job: the flags of `safeedit eval --test-all`, in snake_case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestAllJob {
    /// The method (as for `eval`).
    pub method: Method,
    /// `all`, `train` or `held-out` inputs.
    #[serde(default = "default_fold")]
    pub fold: Fold,
    /// A stratified sample of N inputs [default: all 540].
    #[serde(default)]
    pub limit: Option<usize>,
    /// Most new tokens per response [default: the DINM preset's].
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// The editing instances an editing method edits on, one edited model each [default: 1, 2,
    /// 3].
    #[serde(default)]
    pub edit_instances: Option<Vec<u64>>,
    /// Inputs generated together [default: 4].
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// DINM / FT-L learning rate, steps and layer, overriding the preset.
    #[serde(default)]
    pub overrides: EditOverrides,
}

fn default_train_data() -> String {
    "test-sample".into()
}

/// A fine-tuning job: the flags of `safeedit train`, in snake_case. The job writes a model
/// directory named `name` in the server's models folder; after a restart it resumes from its
/// last checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainJob {
    /// `sft`, or `dpo` (start it from an SFT model with `model`).
    pub objective: Method,
    /// The new model's name: lower-case letters, digits, `-`, `_`, `.` [default:
    /// `{objective}-{6 characters of the job id}`].
    #[serde(default)]
    pub name: Option<String>,
    /// The starting model: a trained model, by name [default: the loaded model].
    #[serde(default)]
    pub model: Option<String>,
    /// `test-sample` (the shipped records) or `train` (SafeEdit_train.json of the full release,
    /// when the server has it).
    #[serde(default = "default_train_data")]
    pub data: String,
    /// Which records [default: `train` for test-sample, else `all`].
    #[serde(default)]
    pub fold: Option<Fold>,
    /// Only the first N pairs (after the fold).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Hyperparameter preset: `reference` or `smollm2-135m` [default: by model size].
    #[serde(default)]
    pub preset: Option<String>,
    /// Peak learning rate [default: the preset's].
    #[serde(default)]
    pub lr: Option<f64>,
    /// Examples per step [default: the preset's].
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Passes over the data [default: the preset's].
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Warm-up steps [default: the preset's].
    #[serde(default)]
    pub warmup_steps: Option<usize>,
    /// `rmsprop` or `adamw` [default: rmsprop].
    #[serde(default)]
    pub optimizer: Option<String>,
    /// DPO's β [default: 0.1].
    #[serde(default)]
    pub beta: Option<f64>,
    /// Seed of the example order [default: 0].
    #[serde(default)]
    pub seed: Option<u64>,
    /// Train LoRA adapters of this rank instead of every parameter.
    #[serde(default)]
    pub lora_rank: Option<usize>,
    /// LoRA α [default: 16].
    #[serde(default)]
    pub lora_alpha: Option<f64>,
    /// LoRA target projections [default: q_proj, v_proj].
    #[serde(default)]
    pub lora_targets: Option<Vec<String>>,
    /// Checkpoint every N steps (and at the end) [default: 10].
    #[serde(default)]
    pub save_every: Option<usize>,
}

impl TrainJob {
    /// An SFT or DPO job with every other setting at its default.
    pub fn new(objective: Method) -> Self {
        Self {
            objective,
            name: None,
            model: None,
            data: default_train_data(),
            fold: None,
            limit: None,
            preset: None,
            lr: None,
            batch_size: None,
            epochs: None,
            warmup_steps: None,
            optimizer: None,
            beta: None,
            seed: None,
            lora_rank: None,
            lora_alpha: None,
            lora_targets: None,
            save_every: None,
        }
    }
}

/// Whether `name` may name a trained model: 1 to 64 of `a-z 0-9 - _ .`, starting with a letter
/// or digit, and not a method's name (analyses mix both). `Err` says why not.
pub fn check_model_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("`{name}` must have 1 to 64 characters"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if !name.chars().all(allowed) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "`{name}`: use lower-case letters, digits, `-`, `_` and `.`, starting with a letter \
             or digit"
        ));
    }
    if name.parse::<Method>().is_ok() {
        return Err(format!("`{name}` is a method's name; choose another"));
    }
    Ok(())
}

fn default_analyzed() -> Vec<String> {
    ["dinm", "ftl"].map(String::from).to_vec()
}

fn default_edit_split() -> String {
    "editing".into()
}

/// A mechanism-analysis job: the flags of `safeedit analyze`, in snake_case (vanilla is always
/// the baseline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeJob {
    /// Editing methods and trained models (by name) compared with vanilla [default: dinm,
    /// ftl].
    #[serde(default = "default_analyzed")]
    pub methods: Vec<String>,
    /// Where the edit instances come from: `editing` or `test`.
    #[serde(default = "default_edit_split")]
    pub edit_split: String,
    /// Edit only the first N instances.
    #[serde(default)]
    pub edits: Option<usize>,
    /// Adversarial inputs for the activation means [default: all].
    #[serde(default)]
    pub inputs: Option<usize>,
    /// Which test prompts feed the activation means.
    #[serde(default = "default_fold")]
    pub fold: Fold,
    /// Inputs in the projection view [default: 30].
    #[serde(default)]
    pub projection_inputs: Option<usize>,
    /// The analysis layer [default: the layer most DINM edits chose].
    #[serde(default)]
    pub region_layer: Option<usize>,
    /// Columns in the top-k toxicity measure [default: 128].
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Value vectors in the logit lens [default: 5].
    #[serde(default)]
    pub lens_vectors: Option<usize>,
    /// Tokens per value vector in the logit lens [default: 8].
    #[serde(default)]
    pub lens_tokens: Option<usize>,
    /// Tokens pooled per probe text [default: 128].
    #[serde(default)]
    pub probe_tokens: Option<usize>,
}

impl Default for AnalyzeJob {
    /// What `{"kind": "analyze"}` asks for.
    fn default() -> Self {
        Self {
            methods: default_analyzed(),
            edit_split: default_edit_split(),
            edits: None,
            inputs: None,
            fold: default_fold(),
            projection_inputs: None,
            region_layer: None,
            top_k: None,
            lens_vectors: None,
            lens_tokens: None,
            probe_tokens: None,
        }
    }
}

/// The mechanism comparison of the paper's section 5 as one job: an SFT model, a DPO model
/// trained from it, and the analysis of vanilla against both (and the editing methods in
/// `analyze.methods`). Each stage resumes after a restart; a finished stage is not run again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareJob {
    /// The comparison's name: its models are `{name}-sft` and `{name}-dpo` [default:
    /// `compare-{6 characters of the job id}`].
    #[serde(default)]
    pub name: Option<String>,
    /// The SFT training, as a train job's fields (`objective` may be left out; the comparison
    /// sets `name`).
    #[serde(default = "compare_sft", deserialize_with = "sft_stage")]
    pub sft: TrainJob,
    /// The DPO training, as a train job's fields (`objective` may be left out; the comparison
    /// sets `name` and starts it from the SFT model).
    #[serde(default = "compare_dpo", deserialize_with = "dpo_stage")]
    pub dpo: TrainJob,
    /// The analysis, as an analyze job's fields; `methods` are the editing methods compared
    /// besides the two trained models [default: dinm].
    #[serde(default = "compare_analysis", deserialize_with = "analysis_stage")]
    pub analyze: AnalyzeJob,
}

impl CompareJob {
    /// The names of its SFT and DPO models, under `name`.
    pub fn model_names(name: &str) -> (String, String) {
        (format!("{name}-sft"), format!("{name}-dpo"))
    }
}

fn compare_sft() -> TrainJob {
    TrainJob::new(Method::Sft)
}

fn compare_dpo() -> TrainJob {
    TrainJob::new(Method::Dpo)
}

fn compare_analysis() -> AnalyzeJob {
    AnalyzeJob {
        methods: vec!["dinm".into()],
        ..AnalyzeJob::default()
    }
}

/// A comparison's training stage: a train job's fields, with the objective filled in when left
/// out.
fn train_stage<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    objective: Method,
) -> Result<TrainJob, D::Error> {
    let mut value = serde_json::Value::deserialize(deserializer)?;
    if let Some(fields) = value.as_object_mut() {
        fields
            .entry("objective")
            .or_insert_with(|| serde_json::Value::String(objective.name().to_string()));
    }
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

/// A comparison's analysis: an analyze job's fields, comparing DINM besides the trained models
/// when `methods` is left out.
fn analysis_stage<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<AnalyzeJob, D::Error> {
    let mut value = serde_json::Value::deserialize(deserializer)?;
    if let Some(fields) = value.as_object_mut() {
        fields
            .entry("methods")
            .or_insert_with(|| serde_json::json!(compare_analysis().methods));
    }
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

fn sft_stage<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<TrainJob, D::Error> {
    train_stage(deserializer, Method::Sft)
}

fn dpo_stage<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<TrainJob, D::Error> {
    train_stage(deserializer, Method::Dpo)
}

/// How far the current phase of a running job is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    /// What is being done (`vanilla`, `dinm steps`, …).
    pub phase: String,
    /// What is counted (`instances`, `steps`, `tokens`).
    pub unit: String,
    /// Items done.
    pub done: usize,
    /// Items in the phase.
    pub total: usize,
    /// Seconds since the phase began.
    pub elapsed_s: f64,
    /// Seconds left at the phase's pace so far (`None` before the first item).
    pub eta_s: Option<f64>,
    /// The generation under way for the current item, token by token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenProgress>,
}

/// Tokens generated so far by a generation under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenProgress {
    /// Generated so far, over every response of the batch.
    pub done: usize,
    /// The most there can be (responses × the token limit; most end earlier).
    pub limit: usize,
}

impl JobProgress {
    /// A phase's progress; the ETA extrapolates the time per item so far.
    pub fn new(
        phase: impl Into<String>,
        unit: impl Into<String>,
        done: usize,
        total: usize,
        elapsed_s: f64,
    ) -> Self {
        let eta_s =
            (done > 0 && total >= done).then(|| elapsed_s / done as f64 * (total - done) as f64);
        Self {
            phase: phase.into(),
            unit: unit.into(),
            done,
            total,
            elapsed_s,
            eta_s,
            tokens: None,
        }
    }

    /// The same, with the generation under way.
    pub fn with_tokens(mut self, tokens: Option<TokenProgress>) -> Self {
        self.tokens = tokens;
        self
    }

    /// `vanilla: 3/10 instances, 12 s, about 28 s left`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{}: {}/{} {}, {:.0} s",
            self.phase, self.done, self.total, self.unit, self.elapsed_s
        );
        if let Some(eta) = self.eta_s.filter(|_| self.done < self.total) {
            line.push_str(&format!(", about {eta:.0} s left"));
        }
        if let Some(t) = self.tokens {
            line.push_str(&format!(
                "; generating: {} tokens (at most {})",
                t.done, t.limit
            ));
        }
        line
    }
}

/// A job as `GET /api/jobs/{id}` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Job id (`/jobs/{id}`).
    pub id: String,
    /// `edit`, `eval`, `general`, `test_all`, `train`, `analyze`, `compare`.
    pub kind: String,
    /// `queued`, `running`, `done`, `failed`, `cancelled`.
    pub state: JobStatus,
    /// The current phase, while running.
    pub progress: Option<JobProgress>,
    /// The worker that runs (or ran) it.
    pub worker: Option<String>,
    /// The result's page once done (`/runs/{slug}`, `/evals/{slug}`).
    pub result: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// What was asked.
    pub request: JobSpec,
}

impl JobInfo {
    /// The job's state from its events so far.
    pub fn from_events(id: &str, request: &JobSpec, events: &[JobEvent]) -> Self {
        let state = events.last().map_or(JobStatus::Queued, JobEvent::status);
        let worker = events.iter().rev().find_map(|e| match e {
            JobEvent::Started { worker } => Some(worker.clone()),
            _ => None,
        });
        let progress = if state == JobStatus::Running {
            events.iter().rev().find_map(|e| match e {
                JobEvent::Progress(p) => Some(p.clone()),
                _ => None,
            })
        } else {
            None
        };
        Self {
            id: id.to_string(),
            kind: request.kind().to_string(),
            state,
            progress,
            worker,
            result: events.iter().find_map(JobEvent::result_path),
            error: events.iter().rev().find_map(|e| match e {
                JobEvent::Failed { message } => Some(message.clone()),
                _ => None,
            }),
            request: request.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_tagged_by_kind_and_old_stored_requests_still_read() {
        let edit: JobSpec =
            serde_json::from_str(r#"{"kind": "edit", "split": "test", "id": 0}"#).unwrap();
        let JobSpec::Edit(request) = &edit else {
            panic!("{edit:?}")
        };
        assert_eq!(request.method, Method::Dinm);
        assert_eq!(edit.title(), "Detoxifying test instance 0");
        let stored = r#"{"split":"editing","id":2,"method":"prompt","overrides":{}}"#;
        let old = JobSpec::from_stored(stored).unwrap();
        assert_eq!(old.kind(), "edit");
        assert_eq!(old.title(), "Evaluating prompt-only on editing instance 2");
        let round = JobSpec::from_stored(&serde_json::to_string(&edit).unwrap()).unwrap();
        assert_eq!(round, edit);

        let eval: JobSpec = serde_json::from_str(
            r#"{"kind": "eval", "method": "self-reminder", "limit": 1, "fold": "held-out"}"#,
        )
        .unwrap();
        let JobSpec::Eval(job) = &eval else {
            panic!("{eval:?}")
        };
        assert_eq!(job.split, "test");
        assert_eq!(job.max_new_tokens, None);
        assert_eq!(
            eval.title(),
            "Evaluating self-reminder on test (fold held-out), 1 instance"
        );
        let err = serde_json::from_str::<JobSpec>(r#"{"kind": "eval", "method": "magic"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("magic"), "{err}");
        let err = serde_json::from_str::<JobSpec>(r#"{"kind": "bake", "method": "dinm"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `bake`"), "{err}");
        assert!(JobSpec::from_stored("{}").is_err());

        let analyze: JobSpec =
            serde_json::from_str(r#"{"kind": "analyze", "methods": ["dinm"], "edits": 1}"#)
                .unwrap();
        assert_eq!(analyze.kind(), "analyze");
        assert_eq!(analyze.title(), "Mechanism analysis: vanilla vs dinm");
        let JobSpec::Analyze(job) = &analyze else {
            panic!("{analyze:?}")
        };
        assert_eq!((job.edit_split.as_str(), job.top_k), ("editing", None));
        let all: JobSpec = serde_json::from_str(
            r#"{"kind": "test_all", "method": "ftl", "edit_instances": [1, 2], "limit": 6}"#,
        )
        .unwrap();
        assert_eq!(all.kind(), "test_all");
        assert_eq!(all.title(), "SafeEdit_test_ALL: ftl");

        let train: JobSpec = serde_json::from_str(
            r#"{"kind": "train", "objective": "sft", "limit": 2, "epochs": 1}"#,
        )
        .unwrap();
        let JobSpec::Train(job) = &train else {
            panic!("{train:?}")
        };
        assert_eq!(
            (job.data.as_str(), job.epochs, job.name.as_deref()),
            ("test-sample", Some(1), None)
        );
        assert_eq!(train.title(), "Training SFT on 2 pairs");
        let err =
            serde_json::from_str::<JobSpec>(r#"{"kind": "train", "objective": "sft", "epoch": 1}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
    }

    #[test]
    fn a_comparison_takes_each_stage_as_its_own_job_kind_does() {
        let compare: JobSpec = serde_json::from_str(
            r#"{"kind": "compare", "sft": {"limit": 2, "epochs": 1},
                "dpo": {"limit": 2, "beta": 0.2}, "analyze": {"inputs": 4}}"#,
        )
        .unwrap();
        assert_eq!(compare.kind(), "compare");
        assert_eq!(compare.title(), "Mechanism comparison: SFT vs DPO vs DINM");
        let JobSpec::Compare(job) = &compare else {
            panic!("{compare:?}")
        };
        assert_eq!((job.sft.objective, job.sft.limit), (Method::Sft, Some(2)));
        assert_eq!((job.dpo.objective, job.dpo.beta), (Method::Dpo, Some(0.2)));
        assert_eq!(job.analyze.methods, ["dinm"]);
        assert_eq!(job.analyze.inputs, Some(4));
        let round = JobSpec::from_stored(&serde_json::to_string(&compare).unwrap()).unwrap();
        assert_eq!(round, compare);

        let bare: JobSpec =
            serde_json::from_str(r#"{"kind": "compare", "name": "paper"}"#).unwrap();
        let JobSpec::Compare(job) = &bare else {
            panic!("{bare:?}")
        };
        assert_eq!(job.analyze.methods, ["dinm"]);
        assert_eq!(job.dpo, TrainJob::new(Method::Dpo));
        assert_eq!(
            CompareJob::model_names("paper"),
            ("paper-sft".to_string(), "paper-dpo".to_string())
        );
        let err = serde_json::from_str::<JobSpec>(r#"{"kind": "compare", "sft": {"epoch": 1}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
    }

    #[test]
    fn model_names_are_plain_and_never_a_method() {
        for good in ["sft-1", "dpo_v2.final", "a"] {
            assert_eq!(check_model_name(good), Ok(()), "{good}");
        }
        for (bad, needle) in [
            ("", "1 to 64"),
            ("Sft", "lower-case"),
            ("../x", "lower-case"),
            ("-x", "starting with"),
            ("dinm", "a method's name"),
            ("vanilla", "a method's name"),
        ] {
            let err = check_model_name(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        assert!(check_model_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn progress_has_an_eta_once_an_item_is_done() {
        let p = JobProgress::new("vanilla", "instances", 0, 4, 1.0);
        assert_eq!(p.eta_s, None);
        assert_eq!(p.line(), "vanilla: 0/4 instances, 1 s");
        let p = JobProgress::new("vanilla", "instances", 1, 4, 10.0);
        assert_eq!(p.eta_s, Some(30.0));
        assert_eq!(p.line(), "vanilla: 1/4 instances, 10 s, about 30 s left");
        let p = JobProgress::new("vanilla", "instances", 4, 4, 40.0);
        assert_eq!(p.eta_s, Some(0.0));
        assert_eq!(p.line(), "vanilla: 4/4 instances, 40 s");
        let p =
            JobProgress::new("vanilla", "instances", 1, 4, 10.0).with_tokens(Some(TokenProgress {
                done: 37,
                limit: 320,
            }));
        assert_eq!(
            p.line(),
            "vanilla: 1/4 instances, 10 s, about 30 s left; generating: 37 tokens (at most 320)"
        );
    }

    #[test]
    fn info_follows_the_events() {
        let spec = JobSpec::Eval(EvalJob {
            method: Method::Vanilla,
            split: "test".into(),
            fold: Fold::All,
            limit: Some(2),
            max_new_tokens: Some(8),
            overrides: EditOverrides::default(),
            model: None,
        });
        let mut events = vec![JobEvent::Queued { ahead: 0 }];
        let info = JobInfo::from_events("abc", &spec, &events);
        assert_eq!(
            (info.state, info.kind.as_str()),
            (JobStatus::Queued, "eval")
        );
        assert_eq!(info.worker, None);
        events.push(JobEvent::Started {
            worker: "embedded".into(),
        });
        events.push(JobEvent::Progress(JobProgress::new(
            "vanilla",
            "instances",
            1,
            2,
            3.0,
        )));
        let info = JobInfo::from_events("abc", &spec, &events);
        assert_eq!(info.state, JobStatus::Running);
        assert_eq!(info.worker.as_deref(), Some("embedded"));
        assert_eq!(info.progress.as_ref().map(|p| p.done), Some(1));
        events.push(JobEvent::Done {
            slug: "s1".into(),
            path: Some("/evals/s1".into()),
        });
        let info = JobInfo::from_events("abc", &spec, &events);
        assert_eq!(info.state, JobStatus::Done);
        assert_eq!(info.progress, None);
        assert_eq!(info.result.as_deref(), Some("/evals/s1"));
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["state"], "done");
        assert_eq!(json["request"]["kind"], "eval");
    }
}
