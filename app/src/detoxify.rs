//! "Detoxify this instance" on an instance page: DINM with the model's preset and optional
//! overrides, or a one-instance evaluation vanilla / prompt-only; the job opens at `/jobs/{id}`.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use safeedit_core::Method;
use safeedit_core::job::JobSpec;
use safeedit_core::run::{EditOverrides, EditRequest};

use crate::format::optional_number;
use crate::launch::{Launch, max_new_hint, preset_hint, server_models, text_field};

/// "Detoxify this instance" with an advanced panel of hyperparameters.
#[component]
pub fn DetoxifyPanel(split: String, id: u64) -> impl IntoView {
    let lr = RwSignal::new(String::new());
    let steps = RwSignal::new(String::new());
    let layer = RwSignal::new(String::new());
    let max_new = RwSignal::new(String::new());
    let launch = Launch::new();
    let models = server_models();
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
        let spec = overrides.map(|overrides| {
            JobSpec::Edit(EditRequest {
                split: split.clone(),
                id,
                method,
                overrides,
            })
        });
        launch.start(spec, navigate.clone());
    };
    view! {
        <section class="card" id="detoxify">
            <h2>"Detoxify this instance"</h2>
            <p class="muted">
                "Runs DINM on the loaded model: locate the toxic layer, tune its down_proj on this \
                 instance, then answer DS and the DG inputs before and after, and judge them."
            </p>
            <fieldset class="controls" disabled=launch.waiting()>
                <details class="advanced">
                    <summary>"Hyperparameters (empty = the model's preset)"</summary>
                    <div class="filters">
                        {text_field("learning rate", "hp-lr", lr, preset_hint(models, |p| p.lr.to_string()))}
                        {text_field("steps", "hp-steps", steps, preset_hint(models, |p| p.steps.to_string()))}
                        {text_field("layer", "hp-layer", layer, "locate")}
                        {text_field("max new tokens", "hp-max-new", max_new, max_new_hint(models))}
                    </div>
                </details>
                <p class="actions">
                    <button
                        id="detoxify-button"
                        disabled=move || launch.disabled()
                        on:click={
                            let submit = submit.clone();
                            move |_| submit(Method::Dinm)
                        }
                    >
                        {move || if launch.pending.get() { "Submitting…" } else { "Detoxify this instance" }}
                    </button>
                    " "
                    <button
                        id="eval-vanilla-button"
                        class="secondary"
                        disabled=move || launch.disabled()
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
                        disabled=move || launch.disabled()
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
            </fieldset>
            {launch.error_line("detoxify-error")}
        </section>
    }
    // Erased: the instance page's view type would otherwise outgrow the compiler's query depth.
    .into_any()
}
