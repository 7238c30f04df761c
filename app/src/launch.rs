//! The forms that start jobs, each sending the same request as `POST /api/jobs` and opening the
//! job at `/jobs/{id}`:
//!
//! - "Run an evaluation" on Results: any method the server can evaluate, on the loaded model or
//!   a trained one, on a split, for the first N instances (`eval`).
//! - "Train a model" on Models: SFT or DPO on SafeEdit pairs (`train`).
//! - "Run an analysis" on Mechanisms: vanilla against editing methods and trained models
//!   (`analyze`).
//! - "Measure general performance" on an evaluation's page: the knowledge proxy or CSum of its
//!   method and model (`general`).
//! - "Run SafeEdit_test_ALL" on test_ALL: a method on the attacked and bare questions
//!   (`test_all`).
//! - "SFT vs DPO vs DINM" on Mechanisms: the paper's comparison as one job that trains SFT, DPO
//!   from it, and analyses the three (`compare`).
//!
//! The New experiment page (`/new`) gathers them all. Empty fields keep the loaded model's
//! preset, whose values the fields show.

use leptos::prelude::*;

use crate::codec::{PageResource, resource};
use leptos_router::NavigateOptions;
use leptos_router::hooks::use_navigate;
use safeedit_core::general::GeneralTask;
use safeedit_core::job::{
    AnalyzeJob, CompareJob, EvalJob, GeneralJob, JobSpec, TestAllJob, TrainJob,
};
use safeedit_core::run::EditOverrides;
use safeedit_core::safeedit::Fold;
use safeedit_core::{EditPreset, Method, ModelList, TrainedModel};

use crate::format::optional_number;
use crate::{list_models, start_job};

/// What every job form shares: the error it shows, whether a request is on its way, and
/// whether the page has hydrated (the buttons work only then).
#[derive(Clone, Copy)]
pub(crate) struct Launch {
    /// Why the last submit failed.
    pub error: RwSignal<Option<String>>,
    /// A request is on its way.
    pub pending: RwSignal<bool>,
    hydrated: RwSignal<bool>,
}

impl Launch {
    /// A form's state (call inside the component).
    pub fn new() -> Self {
        let hydrated = RwSignal::new(false);
        Effect::new(move |_| hydrated.set(true));
        Self {
            error: RwSignal::new(None),
            pending: RwSignal::new(false),
            hydrated,
        }
    }

    /// Whether the form's controls wait for the page to hydrate. Until then they are disabled
    /// (a `<fieldset>` around them): typed into earlier, a field would be reset by hydration and
    /// the form would submit what it started with, not what the user typed.
    pub fn waiting(self) -> impl Fn() -> bool + Copy + 'static {
        move || !self.hydrated.get()
    }

    /// Whether the form's buttons are disabled.
    pub fn disabled(self) -> bool {
        !self.hydrated.get() || self.pending.get()
    }

    /// Queues `spec` (or shows why the form is wrong) and opens the job's page.
    pub fn start(
        self,
        spec: Result<JobSpec, String>,
        navigate: impl Fn(&str, NavigateOptions) + 'static,
    ) {
        let spec = match spec {
            Ok(spec) => spec,
            Err(e) => {
                self.error.set(Some(e));
                return;
            }
        };
        self.error.set(None);
        self.pending.set(true);
        leptos::task::spawn_local(async move {
            match start_job(spec).await {
                Ok(job) => navigate(&format!("/jobs/{job}"), Default::default()),
                Err(e) => {
                    self.error.set(Some(e.to_string()));
                    self.pending.set(false);
                }
            }
        });
    }

    /// The error line, with element id `id`.
    pub fn error_line(self, id: &'static str) -> impl IntoView {
        move || {
            self.error
                .get()
                .map(|e| view! { <p class="error" id=id>{e}</p> })
        }
    }
}

/// A text field of a form (`hint`: the placeholder, what an empty field means).
pub(crate) fn text_field(
    label: &'static str,
    id: &'static str,
    value: RwSignal<String>,
    hint: impl Into<Signal<String>>,
) -> impl IntoView {
    let hint = hint.into();
    view! {
        <label>
            {label}
            <input
                id=id
                type="text"
                inputmode="decimal"
                placeholder=move || hint.get()
                prop:value=move || value.get()
                on:input=move |ev| value.set(event_target_value(&ev))
            />
        </label>
    }
}

/// A choice among fixed options (`options`: value and label).
pub(crate) fn select_field(
    label: &'static str,
    id: &'static str,
    value: RwSignal<String>,
    options: &'static [(&'static str, &'static str)],
) -> impl IntoView {
    let options = options
        .iter()
        .map(|(v, text)| view! { <option value=*v>{*text}</option> })
        .collect_view();
    view! {
        <label>
            {label}
            <select
                id=id
                prop:value=move || value.get()
                on:change=move |ev| value.set(event_target_value(&ev))
            >
                {options}
            </select>
        </label>
    }
}

/// The folds a form offers (value, label).
const FOLDS: &[(&str, &str)] = &[
    ("all", "all"),
    ("held-out", "held-out (questions no trained model saw)"),
    ("train", "train (what SFT/DPO train on)"),
];

/// The fold picked in a fold field.
fn fold_of(value: &RwSignal<String>) -> Fold {
    match value.get_untracked().as_str() {
        "held-out" => Fold::HeldOut,
        "train" => Fold::Train,
        _ => Fold::All,
    }
}

/// The loaded model and the trained ones (`None` until they load or when listing fails).
pub(crate) fn server_models() -> PageResource<Option<ModelList>> {
    resource(|| (), |_| async { list_models().await.ok() })
}

/// The placeholder of a field the preset fills: `preset: 0.0005`, or `preset` until the
/// model's preset is known.
pub(crate) fn preset_hint(
    models: PageResource<Option<ModelList>>,
    value: fn(&EditPreset) -> String,
) -> Signal<String> {
    Signal::derive(move || {
        models
            .get()
            .flatten()
            .and_then(|m| m.loaded.preset)
            .map_or_else(
                || "preset".to_string(),
                |p| format!("preset: {}", value(&p)),
            )
    })
}

/// The finished trained models, for pickers.
fn finished(models: Option<Vec<TrainedModel>>) -> Vec<TrainedModel> {
    models
        .unwrap_or_default()
        .into_iter()
        .filter(TrainedModel::finished)
        .collect()
}

/// The trained models of the server's model list.
fn trained_of(models: PageResource<Option<ModelList>>) -> Vec<TrainedModel> {
    finished(models.get().flatten().map(|m| m.trained))
}

/// The evaluation form.
#[component]
pub fn EvalLauncher(
    /// Open at first (the empty Results page) or folded under the table.
    open: bool,
) -> impl IntoView {
    let method = RwSignal::new("vanilla".to_string());
    let split = RwSignal::new("test".to_string());
    let fold = RwSignal::new("all".to_string());
    let limit = RwSignal::new("10".to_string());
    let max_new = RwSignal::new(String::new());
    let launch = Launch::new();
    let models = server_models();
    let navigate = use_navigate();
    let submit = move |_| {
        let spec = (|| -> Result<JobSpec, String> {
            // A trained model is picked as `model:{objective}:{name}`.
            let picked = method.get_untracked();
            let (method, model) = match picked.strip_prefix("model:") {
                Some(rest) => {
                    let (objective, name) = rest.split_once(':').unwrap_or(("sft", rest));
                    (objective.to_string(), Some(name.to_string()))
                }
                None => (picked, None),
            };
            Ok(JobSpec::Eval(EvalJob {
                method: method.parse().map_err(|e| format!("method: {e}"))?,
                split: split.get_untracked(),
                fold: fold_of(&fold),
                limit: optional_number("instances", &limit.get_untracked())?,
                max_new_tokens: optional_number("max new tokens", &max_new.get_untracked())?,
                overrides: EditOverrides::default(),
                model,
            }))
        })();
        launch.start(spec, navigate.clone());
    };
    let options = loaded_model_methods();
    let trained = move || {
        let list = trained_of(models);
        (!list.is_empty()).then(|| {
            let options = list
                .into_iter()
                .map(|m| {
                    let value = format!("model:{}:{}", m.objective, m.name);
                    view! { <option value=value>{format!("{} ({})", m.name, m.objective)}</option> }
                })
                .collect_view();
            view! { <optgroup label="trained models">{options}</optgroup> }
        })
    };
    view! {
        <details class="card launcher" id="eval-launcher" open=open>
            <summary>"Run an evaluation"</summary>
            <p class="muted">
                "Evaluates a method on the loaded model (or a model trained here), as "
                <code>"safeedit eval"</code>
                " does: DS and the four DG inputs per instance, judged; the run joins this table."
            </p>
            <fieldset class="controls" disabled=launch.waiting()>
                <div class="filters">
                    <label>
                        "method"
                        <select
                            id="launch-method"
                            prop:value=move || method.get()
                            on:change=move |ev| method.set(event_target_value(&ev))
                        >
                            {options}
                            <Transition>{trained}</Transition>
                        </select>
                    </label>
                    {select_field(
                        "split",
                        "launch-split",
                        split,
                        &[("test", "test"), ("editing", "editing (3 instances)")],
                    )}
                    {select_field("fold", "launch-fold", fold, FOLDS)}
                    {text_field("instances", "launch-limit", limit, "all")}
                    {text_field("max new tokens", "launch-max-new", max_new, max_new_hint(models))}
                </div>
                <p class="actions">
                    <button id="launch-button" disabled=move || launch.disabled() on:click=submit>
                        {move || {
                            if launch.pending.get() { "Submitting…" } else { "Run the evaluation" }
                        }}
                    </button>
                </p>
            </fieldset>
            {launch.error_line("launch-error")}
        </details>
    }
    .into_any()
}

/// The training form.
#[component]
pub fn TrainLauncher(
    /// Open at first (no trained model yet) or folded.
    open: bool,
) -> impl IntoView {
    let objective = RwSignal::new("sft".to_string());
    let name = RwSignal::new(String::new());
    let base = RwSignal::new(String::new());
    let limit = RwSignal::new("8".to_string());
    let epochs = RwSignal::new(String::new());
    let lr = RwSignal::new(String::new());
    let launch = Launch::new();
    let models = server_models();
    let navigate = use_navigate();
    let submit = move |_| {
        let spec = (|| -> Result<JobSpec, String> {
            let mut job = TrainJob::new(
                objective
                    .get_untracked()
                    .parse()
                    .map_err(|e| format!("objective: {e}"))?,
            );
            let text = name.get_untracked().trim().to_string();
            job.name = (!text.is_empty()).then_some(text);
            let text = base.get_untracked();
            job.model = (!text.is_empty()).then_some(text);
            job.limit = optional_number("pairs", &limit.get_untracked())?;
            job.epochs = optional_number("epochs", &epochs.get_untracked())?;
            job.lr = optional_number("learning rate", &lr.get_untracked())?;
            Ok(JobSpec::Train(job))
        })();
        launch.start(spec, navigate.clone());
    };
    let bases = move || {
        trained_of(models)
            .into_iter()
            .map(|m| {
                let label = format!("{} ({})", m.name, m.objective);
                view! { <option value=m.name>{label}</option> }
            })
            .collect_view()
    };
    view! {
        <details class="card launcher" id="train-launcher" open=open>
            <summary>"Train a model"</summary>
            <p class="muted">
                "Fine-tunes the loaded model (or a model trained here) on SafeEdit pairs, as "
                <code>"safeedit train"</code>
                " does: SFT on the safe responses, or DPO on safe vs unsafe (the paper starts DPO \
                 from the SFT model). The shipped sample's train fold; evaluate on the held-out \
                 fold. Empty fields keep the preset."
            </p>
            <fieldset class="controls" disabled=launch.waiting()>
                <div class="filters">
                    {select_field("objective", "train-objective", objective, &[("sft", "SFT"), ("dpo", "DPO")])}
                    <label>
                        "start from"
                        <select
                            id="train-base"
                            prop:value=move || base.get()
                            on:change=move |ev| base.set(event_target_value(&ev))
                        >
                            <option value="">"the loaded model"</option>
                            <Transition>{bases}</Transition>
                        </select>
                    </label>
                    {text_field("name", "train-name", name, "automatic")}
                    {text_field("pairs", "train-limit", limit, "all 105")}
                    {text_field("epochs", "train-epochs", epochs, "preset")}
                    {text_field("learning rate", "train-lr", lr, "preset")}
                </div>
                <p class="actions">
                    <button id="train-button" disabled=move || launch.disabled() on:click=submit>
                        {move || if launch.pending.get() { "Submitting…" } else { "Train" }}
                    </button>
                </p>
            </fieldset>
            {launch.error_line("train-error")}
        </details>
    }
    .into_any()
}

/// The editing methods an analysis can compare with vanilla.
const ANALYSED: [Method; 4] = [
    Method::Dinm,
    Method::Ftl,
    Method::DinmRandomLayer,
    Method::DinmNoSuffix,
];

/// The analysis form.
#[component]
pub fn AnalysisLauncher(
    /// Open at first (no analysis yet) or folded.
    open: bool,
) -> impl IntoView {
    let chosen = RwSignal::new(vec!["dinm".to_string()]);
    let fold = RwSignal::new("all".to_string());
    let edits = RwSignal::new("1".to_string());
    let inputs = RwSignal::new("8".to_string());
    let projection = RwSignal::new(String::new());
    let probe_tokens = RwSignal::new(String::new());
    let launch = Launch::new();
    let models = server_models();
    let navigate = use_navigate();
    let submit = move |_| {
        let spec = (|| -> Result<JobSpec, String> {
            Ok(JobSpec::Analyze(AnalyzeJob {
                methods: chosen.get_untracked(),
                edit_split: "editing".into(),
                edits: optional_number("edits", &edits.get_untracked())?,
                inputs: optional_number("inputs", &inputs.get_untracked())?,
                fold: fold_of(&fold),
                projection_inputs: optional_number(
                    "projection inputs",
                    &projection.get_untracked(),
                )?,
                region_layer: None,
                top_k: None,
                lens_vectors: None,
                lens_tokens: None,
                probe_tokens: optional_number("probe tokens", &probe_tokens.get_untracked())?,
            }))
        })();
        launch.start(spec, navigate.clone());
    };
    let checkbox = move |value: String, label: String| {
        let key = value.clone();
        view! {
            <label class="check">
                <input
                    type="checkbox"
                    name="analyze-method"
                    value=value.clone()
                    prop:checked=move || chosen.get().contains(&key)
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        chosen
                            .update(|list| {
                                list.retain(|m| *m != value);
                                if on {
                                    list.push(value.clone());
                                }
                            });
                    }
                />
                {label}
            </label>
        }
    };
    let methods = ANALYSED
        .iter()
        .map(|m| checkbox(m.name().to_string(), m.name().to_string()))
        .collect_view();
    let trained = move || {
        trained_of(models)
            .into_iter()
            .map(|m| checkbox(m.name.clone(), format!("{} ({})", m.name, m.objective)))
            .collect_view()
    };
    view! {
        <details class="card launcher" id="analysis-launcher" open=open>
            <summary>"Run an analysis"</summary>
            <p class="muted">
                "Compares vanilla with editing methods and models trained here, as "
                <code>"safeedit analyze"</code>
                " does: the toxicity probe, the toxic region's toxicity, the activation shift, \
                 the projection and the logit lens. Editing methods edit on the first editing \
                 instances; the activation means come from test inputs."
            </p>
            <fieldset class="controls" disabled=launch.waiting()>
                <div class="filters" id="analysis-methods">
                    {methods}
                    <Transition>{trained}</Transition>
                </div>
                <div class="filters">
                    {text_field("edits", "analysis-edits", edits, "all 3")}
                    {select_field("inputs from", "analysis-fold", fold, FOLDS)}
                    {text_field("inputs", "analysis-inputs", inputs, "all")}
                    {text_field("projection inputs", "analysis-projection", projection, "30")}
                    {text_field("probe tokens", "analysis-probe-tokens", probe_tokens, "128")}
                </div>
                <p class="actions">
                    <button id="analysis-button" disabled=move || launch.disabled() on:click=submit>
                        {move || if launch.pending.get() { "Submitting…" } else { "Run the analysis" }}
                    </button>
                </p>
            </fieldset>
            {launch.error_line("analysis-error")}
        </details>
    }
    .into_any()
}

/// The general-performance form of evaluation `eval`.
#[component]
pub fn GeneralLauncher(eval: String) -> impl IntoView {
    let task = RwSignal::new("knowledge".to_string());
    let limit = RwSignal::new("20".to_string());
    let max_new = RwSignal::new(String::new());
    let launch = Launch::new();
    let navigate = use_navigate();
    let submit = move |_| {
        let spec = (|| -> Result<JobSpec, String> {
            let task = match task.get_untracked().as_str() {
                "csum" => GeneralTask::Csum,
                _ => GeneralTask::Knowledge,
            };
            Ok(JobSpec::General(GeneralJob {
                eval: eval.clone(),
                task,
                limit: optional_number("items", &limit.get_untracked())?,
                max_new_tokens: optional_number("max new tokens", &max_new.get_untracked())?,
                batch_size: None,
                edit_instance: None,
            }))
        })();
        launch.start(spec, navigate.clone());
    };
    view! {
        <details class="card launcher" id="general-launcher">
            <summary>"Measure general performance"</summary>
            <p class="muted">
                "Does the method keep the model useful? As "
                <code>"safeedit general"</code>
                " does, on this evaluation's method and model (an editing method edits once, on \
                 editing instance 2): the knowledge proxy (ROUGE-1 of answers to SafeEdit's \
                 knowledge questions, offline in place of TriviaQA) or CSum (XSum summaries). \
                 The score joins this evaluation and the Results table."
            </p>
            <fieldset class="controls" disabled=launch.waiting()>
                <div class="filters">
                    {select_field(
                        "task",
                        "general-task",
                        task,
                        &[("knowledge", "knowledge proxy (KQA-proxy)"), ("csum", "summaries (CSum)")],
                    )}
                    {text_field("items", "general-limit", limit, "all")}
                    {text_field("max new tokens", "general-max-new", max_new, "the task's")}
                </div>
                <p class="actions">
                    <button id="general-button" disabled=move || launch.disabled() on:click=submit>
                        {move || if launch.pending.get() { "Submitting…" } else { "Measure" }}
                    </button>
                </p>
            </fieldset>
            {launch.error_line("general-error")}
        </details>
    }
    .into_any()
}

/// The placeholder of a max-new-tokens field.
pub(crate) fn max_new_hint(models: PageResource<Option<ModelList>>) -> Signal<String> {
    preset_hint(models, |p| p.max_new_tokens.to_string())
}

/// The methods a form can run on the loaded model, as options.
fn loaded_model_methods() -> impl IntoView {
    Method::ON_LOADED_MODEL
        .iter()
        .map(|m| view! { <option value=m.name()>{m.label()}</option> })
        .collect_view()
}

/// The SafeEdit_test_ALL form.
#[component]
pub fn TestAllLauncher(
    /// Open at first (no run yet) or folded.
    open: bool,
) -> impl IntoView {
    let method = RwSignal::new("vanilla".to_string());
    let fold = RwSignal::new("all".to_string());
    let limit = RwSignal::new("20".to_string());
    let max_new = RwSignal::new(String::new());
    let instances = RwSignal::new(String::new());
    let launch = Launch::new();
    let models = server_models();
    let navigate = use_navigate();
    let submit = move |_| {
        let spec = (|| -> Result<JobSpec, String> {
            let text = instances.get_untracked();
            let edit_instances = if text.trim().is_empty() {
                None
            } else {
                Some(
                    text.split([',', ' '])
                        .filter(|t| !t.is_empty())
                        .map(|t| {
                            t.parse()
                                .map_err(|_| format!("edit instances: `{t}` is not an instance id"))
                        })
                        .collect::<Result<Vec<u64>, String>>()?,
                )
            };
            Ok(JobSpec::TestAll(TestAllJob {
                method: method
                    .get_untracked()
                    .parse()
                    .map_err(|e| format!("method: {e}"))?,
                fold: fold_of(&fold),
                limit: optional_number("inputs", &limit.get_untracked())?,
                max_new_tokens: optional_number("max new tokens", &max_new.get_untracked())?,
                edit_instances,
                batch_size: None,
                overrides: EditOverrides::default(),
            }))
        })();
        launch.start(spec, navigate.clone());
    };
    view! {
        <details class="card launcher" id="test-all-launcher" open=open>
            <summary>"Run SafeEdit_test_ALL"</summary>
            <p class="muted">
                "A method on the 540 test_ALL inputs (or a stratified sample), as "
                <code>"safeedit eval --test-all"</code>
                " does: DG_onlyQ on the bare harmful questions, DG_otherAQ on the attacked ones,                  and fluency. An editing method edits once per editing instance; the run joins                  this table."
            </p>
            <fieldset class="controls" disabled=launch.waiting()>
                <div class="filters">
                    <label>
                        "method"
                        <select
                            id="test-all-method"
                            prop:value=move || method.get()
                            on:change=move |ev| method.set(event_target_value(&ev))
                        >
                            {loaded_model_methods()}
                        </select>
                    </label>
                    {select_field("fold", "test-all-fold", fold, FOLDS)}
                    {text_field("inputs", "test-all-limit", limit, "all 540")}
                    {text_field("max new tokens", "test-all-max-new", max_new, max_new_hint(models))}
                    {text_field("edit instances", "test-all-instances", instances, "1, 2, 3")}
                </div>
                <p class="actions">
                    <button id="test-all-button" disabled=move || launch.disabled() on:click=submit>
                        {move || if launch.pending.get() { "Submitting…" } else { "Run test_ALL" }}
                    </button>
                </p>
            </fieldset>
            {launch.error_line("test-all-error")}
        </details>
    }
    .into_any()
}

/// The paper's mechanism comparison as one action.
#[component]
pub fn CompareLauncher(
    /// Open at first or folded.
    open: bool,
) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let pairs = RwSignal::new("8".to_string());
    let epochs = RwSignal::new("1".to_string());
    let inputs = RwSignal::new("8".to_string());
    let fold = RwSignal::new("held-out".to_string());
    let edits = RwSignal::new("1".to_string());
    let launch = Launch::new();
    let navigate = use_navigate();
    let submit = move |_| {
        let spec = (|| -> Result<JobSpec, String> {
            let mut sft = TrainJob::new(Method::Sft);
            sft.limit = optional_number("pairs", &pairs.get_untracked())?;
            sft.epochs = optional_number("epochs", &epochs.get_untracked())?;
            let mut dpo = TrainJob::new(Method::Dpo);
            dpo.limit = sft.limit;
            dpo.epochs = sft.epochs;
            let text = name.get_untracked().trim().to_string();
            Ok(JobSpec::Compare(Box::new(CompareJob {
                name: (!text.is_empty()).then_some(text),
                sft,
                dpo,
                analyze: AnalyzeJob {
                    methods: vec!["dinm".into()],
                    edits: optional_number("edits", &edits.get_untracked())?,
                    inputs: optional_number("inputs", &inputs.get_untracked())?,
                    fold: fold_of(&fold),
                    ..AnalyzeJob::default()
                },
            })))
        })();
        launch.start(spec, navigate.clone());
    };
    view! {
        <details class="card launcher" id="compare-launcher" open=open>
            <summary>"SFT vs DPO vs DINM"</summary>
            <p class="muted">
                "The paper's mechanism comparison in one job: fine-tune SFT on SafeEdit pairs,                  train DPO from the SFT model, edit with DINM, then analyse vanilla against the                  three (toxic region, activation shift, projection, logit lens). The models are                  kept as "
                <code>"NAME-sft"</code>
                " and "
                <code>"NAME-dpo"</code>
                " on Models."
            </p>
            <fieldset class="controls" disabled=launch.waiting()>
                <div class="filters">
                    {text_field("name", "compare-name", name, "automatic")}
                    {text_field("pairs", "compare-pairs", pairs, "all 105")}
                    {text_field("epochs", "compare-epochs", epochs, "preset")}
                    {text_field("DINM edits", "compare-edits", edits, "all 3")}
                    {select_field("inputs from", "compare-fold", fold, FOLDS)}
                    {text_field("inputs", "compare-inputs", inputs, "all")}
                </div>
                <p class="actions">
                    <button id="compare-button" disabled=move || launch.disabled() on:click=submit>
                        {move || if launch.pending.get() { "Submitting…" } else { "Compare" }}
                    </button>
                </p>
            </fieldset>
            {launch.error_line("compare-error")}
        </details>
    }
    .into_any()
}
