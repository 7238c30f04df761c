//! The home page's read-only sections (the benchmark's overview, the loaded model's card),
//! rendered to HTML on the server (see `home.rs`).

use leptos::prelude::*;
use safeedit_core::ModelSummary;
use safeedit_core::browse::{InstanceQuery, SplitOverview};

/// The overview's and the model card's HTML.
pub(crate) fn render(splits: Vec<SplitOverview>, summary: ModelSummary) -> (String, String) {
    (
        view! { <Overview splits /> }.to_html(),
        view! { <ModelCard summary /> }.to_html(),
    )
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
