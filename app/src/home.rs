//! The landing page: what SafeEdit Studio is, and the model the server has loaded (fetched
//! through the `model_info` server function, on the server for the first render and from the
//! browser after hydration).

use leptos::prelude::*;
use safeedit_core::ModelSummary;

use safeedit_core::browse::{InstanceQuery, SplitOverview};

use crate::{model_info, overview};

/// `/`
#[component]
pub fn HomePage() -> impl IntoView {
    let info = Resource::new(|| (), |_| model_info());
    let splits = Resource::new(|| (), |_| overview());
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
        <section class="card" id="start">
            <h2>"Start here"</h2>
            <ul class="start">
                <li>
                    <a href="/instances">"Browse the instances"</a>
                    " and detoxify one with DINM from its page."
                </li>
                <li>
                    <a href="/new" id="start-new">"Start an experiment"</a>
                    ": an evaluation of any method, SafeEdit_test_ALL, SFT or DPO training, the \
                     SFT vs DPO vs DINM comparison, a mechanism analysis."
                </li>
                <li>
                    <a href="/results">"Results"</a>
                    ", "
                    <a href="/test-all">"test_ALL"</a>
                    " and "
                    <a href="/mechanisms">"Mechanisms"</a>
                    ": the paper's tables and figures from what has been run, with LaTeX, CSV, \
                     SVG, PDF and PNG downloads; "
                    <a href="/runs">"Runs"</a>
                    " lists everything stored."
                </li>
            </ul>
        </section>
        <section class="card" id="overview">
            <h2>"The benchmark"</h2>
            <Suspense fallback=|| view! { <p>"Counting instances…"</p> }>
                {move || Suspend::new(async move {
                    match splits.await {
                        Ok(splits) => view! { <Overview splits /> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
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
        </section>
    }
    .into_any()
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
        ("Precision", summary.weights.clone()),
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
    .into_any()
}

/// Instances per category (rows) and split (columns), each count a link to the filtered table.
#[component]
fn Overview(splits: Vec<SplitOverview>) -> impl IntoView {
    let header = splits
        .iter()
        .map(|s| {
            let href = InstanceQuery {
                split: s.split.clone(),
                ..Default::default()
            }
            .href();
            view! {
                <th class="num">
                    <a href=href>{s.split.clone()}</a>
                    <div class="muted small">{s.source.clone()}</div>
                </th>
            }
        })
        .collect_view();
    let categories = splits
        .first()
        .map(|s| s.categories.clone())
        .unwrap_or_default();
    let rows = categories
        .iter()
        .map(|c| {
            let cells = splits
                .iter()
                .map(|s| {
                    let count = s
                        .categories
                        .iter()
                        .find(|x| x.value == c.value)
                        .map_or(0, |x| x.count);
                    let href = InstanceQuery {
                        split: s.split.clone(),
                        category: Some(c.value.clone()),
                        ..Default::default()
                    }
                    .href();
                    view! {
                        <td class="num">
                            <a href=href data-split=s.split.clone() data-category=c.value.clone()>
                                {count.to_string()}
                            </a>
                        </td>
                    }
                })
                .collect_view();
            view! {
                <tr>
                    <th>
                        <span class=format!("tag cat-{}", c.value)>{c.label.clone()}</span>
                    </th>
                    {cells}
                </tr>
            }
        })
        .collect_view();
    let totals = splits
        .iter()
        .map(|s| view! { <td class="num total">{s.total.to_string()}</td> })
        .collect_view();
    let attacks = splits.first().map(|s| {
        let split = s.split.clone();
        s.attacks
            .iter()
            .map(|a| {
                let href = InstanceQuery {
                    split: split.clone(),
                    attack: Some(a.value.clone()),
                    ..Default::default()
                }
                .href();
                view! {
                    <li>
                        <a href=href>{a.label.clone()}</a>
                        {format!(" {}", a.count)}
                    </li>
                }
            })
            .collect_view()
    });
    let first_split = splits.first().map(|s| s.split.clone()).unwrap_or_default();
    view! {
        <table class="overview">
            <thead>
                <tr>
                    <th>"category"</th>
                    {header}
                </tr>
            </thead>
            <tbody>
                {rows}
                <tr>
                    <th>"all"</th>
                    {totals}
                </tr>
            </tbody>
        </table>
        <h3>{format!("Attacks in {first_split}")}</h3>
        <ul class="attacks">{attacks}</ul>
    }
    .into_any()
}
