//! "Run an evaluation" on the Results page: any method the server can evaluate on the loaded
//! model, on a split, for the first N instances, queued as an `eval` job (the same request as
//! `POST /api/jobs`); the job opens at `/jobs/{id}` and its evaluation joins the results table.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use safeedit_core::Method;
use safeedit_core::job::{EvalJob, JobSpec};
use safeedit_core::run::EditOverrides;
use safeedit_core::safeedit::Fold;

use crate::format::optional_number;
use crate::start_job;

/// The evaluation form.
#[component]
pub fn EvalLauncher(
    /// Open at first (the empty Results page) or folded under the table.
    open: bool,
) -> impl IntoView {
    let method = RwSignal::new("vanilla".to_string());
    let split = RwSignal::new("test".to_string());
    let limit = RwSignal::new("10".to_string());
    let max_new = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let navigate = use_navigate();
    let submit = move |_| {
        let spec = (|| -> Result<JobSpec, String> {
            Ok(JobSpec::Eval(EvalJob {
                method: method
                    .get_untracked()
                    .parse()
                    .map_err(|e| format!("method: {e}"))?,
                split: split.get_untracked(),
                fold: Fold::All,
                limit: optional_number("instances", &limit.get_untracked())?,
                max_new_tokens: optional_number("max new tokens", &max_new.get_untracked())?,
                overrides: EditOverrides::default(),
            }))
        })();
        let spec = match spec {
            Ok(spec) => spec,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        error.set(None);
        pending.set(true);
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            match start_job(spec).await {
                Ok(job) => navigate(&format!("/jobs/{job}"), Default::default()),
                Err(e) => {
                    error.set(Some(e.to_string()));
                    pending.set(false);
                }
            }
        });
    };
    let options = Method::ON_LOADED_MODEL
        .iter()
        .map(|m| view! { <option value=m.name()>{m.name()}</option> })
        .collect_view();
    view! {
        <details class="card launcher" id="eval-launcher" open=open>
            <summary>"Run an evaluation"</summary>
            <p class="muted">
                "Evaluates a method on the loaded model, as "
                <code>"safeedit eval"</code>
                " does: DS and the four DG inputs per instance, judged; the run joins this table."
            </p>
            <div class="filters">
                <label>
                    "method"
                    <select
                        id="launch-method"
                        prop:value=move || method.get()
                        on:change=move |ev| method.set(event_target_value(&ev))
                    >
                        {options}
                    </select>
                </label>
                <label>
                    "split"
                    <select
                        id="launch-split"
                        prop:value=move || split.get()
                        on:change=move |ev| split.set(event_target_value(&ev))
                    >
                        <option value="test">"test"</option>
                        <option value="editing">"editing (3 instances)"</option>
                    </select>
                </label>
                <label>
                    "instances"
                    <input
                        id="launch-limit"
                        type="text"
                        inputmode="numeric"
                        placeholder="all"
                        prop:value=move || limit.get()
                        on:input=move |ev| limit.set(event_target_value(&ev))
                    />
                </label>
                <label>
                    "max new tokens"
                    <input
                        id="launch-max-new"
                        type="text"
                        inputmode="numeric"
                        placeholder="preset"
                        prop:value=move || max_new.get()
                        on:input=move |ev| max_new.set(event_target_value(&ev))
                    />
                </label>
            </div>
            <p class="actions">
                <button
                    id="launch-button"
                    disabled=move || !hydrated.get() || pending.get()
                    on:click=submit
                >
                    {move || if pending.get() { "Submitting…" } else { "Run the evaluation" }}
                </button>
            </p>
            {move || error.get().map(|e| view! { <p class="error" id="launch-error">{e}</p> })}
        </details>
    }
}
