//! The landing page: what SafeEdit Studio is, and the model the server has loaded (fetched
//! through the `model_info` server function, on the server for the first render and from the
//! browser after hydration).

use leptos::prelude::*;
use safeedit_core::ModelSummary;

use crate::model_info;

/// `/`
#[component]
pub fn HomePage() -> impl IntoView {
    let (asks, set_asks) = signal(0u32);
    let info = Resource::new(move || asks.get(), |_| model_info());
    // Set only in the browser, once the page is interactive.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    view! {
        <section class="intro">
            <h1>"SafeEdit Studio"</h1>
            <p>
                "Browse the SafeEdit benchmark, detoxify a model instance by instance with DINM, "
                "compare against SFT and DPO, and export the paper's figures."
            </p>
        </section>
        <section class="card" id="model" data-hydrated=move || hydrated.get().to_string()>
            <h2>"Loaded model"</h2>
            <Suspense fallback=|| view! { <p>"Asking the engine…"</p> }>
                {move || Suspend::new(async move {
                    match info.await {
                        Ok(summary) => view! { <ModelCard summary /> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
            <p class="actions">
                <button
                    id="ask-engine"
                    disabled=move || !hydrated.get()
                    on:click=move |_| set_asks.update(|n| *n += 1)
                >
                    "Ask the engine again"
                </button>
                <span class="muted">
                    " asked from this browser: " <span id="ask-count">{move || asks.get()}</span>
                </span>
            </p>
        </section>
    }
}

/// The model's facts as a definition list.
#[component]
fn ModelCard(summary: ModelSummary) -> impl IntoView {
    let rows = vec![
        ("Name", summary.name.clone()),
        (
            "Parameters",
            format!("{} ({})", summary.params_human(), summary.n_params),
        ),
        ("Layers", summary.n_layers.to_string()),
        ("Width", summary.d_model.to_string()),
        (
            "Heads (query / key-value)",
            format!("{} / {}", summary.n_heads, summary.n_kv_heads),
        ),
        ("Vocabulary", summary.vocab_size.to_string()),
        ("Architecture", summary.architecture.clone()),
        ("Prompt format", summary.prompt_format.label()),
        (
            "Weights",
            format!("{} ({})", summary.source, summary.format),
        ),
        ("Backend", summary.backend.clone()),
    ];
    view! {
        <dl class="facts">
            {rows
                .into_iter()
                .map(|(k, v)| {
                    let id = k.to_lowercase().replace([' ', '(', ')', '/'], "-");
                    view! {
                        <dt>{k}</dt>
                        <dd data-field=id>{v}</dd>
                    }
                })
                .collect_view()}
        </dl>
    }
}
