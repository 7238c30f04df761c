//! `/new`: every experiment the server can run, one form each, with what it produces and the
//! command line that does the same. Empty fields keep the loaded model's preset, whose values
//! the fields show.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::launch::{
    AnalysisLauncher, CompareLauncher, EvalLauncher, TestAllLauncher, TrainLauncher, server_models,
};

/// `/new`
#[component]
pub fn NewExperimentPage() -> impl IntoView {
    let models = server_models();
    let loaded = move || {
        models.get().flatten().map(|list| {
            let model = list.loaded;
            let preset = model.preset.as_ref().map(|p| {
                format!(
                    "; DINM preset {}: learning rate {}, {} steps, at most {} new tokens",
                    p.name, p.lr, p.steps, p.max_new_tokens
                )
            });
            view! {
                <p id="new-model">
                    "On "
                    <strong>{model.name.clone()}</strong>
                    {format!(" ({}, {} layers)", model.params_human(), model.n_layers)}
                    {preset}
                    ". Trained models are picked by name."
                </p>
            }
        })
    };
    view! {
        <Title text="New experiment" />
        <h1>"New experiment"</h1>
        <p class="muted">
            "Each form queues a job, as "
            <code>"POST /api/jobs"</code>
            " does, and opens its page: progress, cancel, and the result's link when it is done. \
             Jobs run one at a time; a restarted server resumes them."
        </p>
        <Transition>{loaded}</Transition>
        <section class="card">
            <h2>"One instance"</h2>
            <p>
                "Detoxify a single SafeEdit instance with DINM, or evaluate it vanilla or \
                 prompt-only: pick it on "
                <a href="/instances">"Instances"</a>
                " and use the panel on its page."
            </p>
        </section>
        <EvalLauncher open=true />
        <TestAllLauncher open=false />
        <TrainLauncher open=false />
        <CompareLauncher open=false />
        <AnalysisLauncher open=false />
    }
    .into_any()
}
