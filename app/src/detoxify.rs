//! "Detoxify this instance" on an instance page: DINM with the model's preset and optional
//! overrides, or a one-instance evaluation vanilla / prompt-only; the job opens at `/jobs/{id}`.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use safeedit_core::Method;
use safeedit_core::run::{EditOverrides, EditRequest};

use crate::format::optional_number;
use crate::start_edit;

/// "Detoxify this instance" with an advanced panel of hyperparameters.
#[component]
pub fn DetoxifyPanel(split: String, id: u64) -> impl IntoView {
    let lr = RwSignal::new(String::new());
    let steps = RwSignal::new(String::new());
    let layer = RwSignal::new(String::new());
    let max_new = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let navigate = use_navigate();
    let submit = move |method: Method| {
        let overrides = (|| -> Result<EditOverrides, String> {
            Ok(EditOverrides {
                lr: optional_number("learning rate", &lr.get_untracked())?,
                steps: optional_number("steps", &steps.get_untracked())?,
                layer: optional_number("layer", &layer.get_untracked())?,
                max_new_tokens: optional_number("max new tokens", &max_new.get_untracked())?,
            })
        })();
        let overrides = match overrides {
            Ok(o) => o,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        let request = EditRequest {
            split: split.clone(),
            id,
            method,
            overrides,
        };
        let navigate = navigate.clone();
        pending.set(true);
        leptos::task::spawn_local(async move {
            match start_edit(request).await {
                Ok(job) => navigate(&format!("/jobs/{job}"), Default::default()),
                Err(e) => {
                    error.set(Some(e.to_string()));
                    pending.set(false);
                }
            }
        });
    };
    let field =
        |label: &'static str, id: &'static str, value: RwSignal<String>, hint: &'static str| {
            view! {
                <label>
                    {label}
                    <input
                        id=id
                        type="text"
                        inputmode="decimal"
                        placeholder=hint
                        prop:value=move || value.get()
                        on:input=move |ev| value.set(event_target_value(&ev))
                    />
                </label>
            }
        };
    view! {
        <section class="card" id="detoxify">
            <h2>"Detoxify this instance"</h2>
            <p class="muted">
                "Runs DINM on the loaded model: locate the toxic layer, tune its down_proj on this \
                 instance, then answer DS and the DG inputs before and after, and judge them."
            </p>
            <details class="advanced">
                <summary>"Hyperparameters (empty = the model's preset)"</summary>
                <div class="filters">
                    {field("learning rate", "hp-lr", lr, "preset")}
                    {field("steps", "hp-steps", steps, "preset")}
                    {field("layer", "hp-layer", layer, "locate")}
                    {field("max new tokens", "hp-max-new", max_new, "preset")}
                </div>
            </details>
            <p class="actions">
                <button
                    id="detoxify-button"
                    disabled=move || !hydrated.get() || pending.get()
                    on:click={
                        let submit = submit.clone();
                        move |_| submit(Method::Dinm)
                    }
                >
                    {move || if pending.get() { "Submitting…" } else { "Detoxify this instance" }}
                </button>
                " "
                <button
                    id="eval-vanilla-button"
                    class="secondary"
                    disabled=move || !hydrated.get() || pending.get()
                    on:click={
                        let submit = submit.clone();
                        move |_| submit(Method::Vanilla)
                    }
                >
                    "Evaluate vanilla"
                </button>
                " "
                <button
                    id="eval-prompt-button"
                    class="secondary"
                    disabled=move || !hydrated.get() || pending.get()
                    on:click=move |_| submit(Method::Prompt)
                >
                    "Evaluate prompt-only"
                </button>
            </p>
            <p class="muted">
                "Evaluate: the five inputs answered by the unedited model, without (vanilla) or \
                 with the suffix prompt (prompt-only, the paper's wo/Tune), judged; stored as an \
                 evaluation like those of safeedit eval."
            </p>
            {move || error.get().map(|e| view! { <p class="error" id="detoxify-error">{e}</p> })}
        </section>
    }
}
