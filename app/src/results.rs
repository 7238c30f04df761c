//! `/results`: the SafeEdit table across evaluation runs, sliced in the URL, best bold, with tidy
//! CSV and booktabs LaTeX downloads and the defense chart.

use leptos::prelude::*;

use crate::codec::resource;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use safeedit_core::table::{MetricTable, ResultsView};

use crate::figure::FigureCard;
use crate::format::{score, slice_label};
use crate::launch::EvalLauncher;
use crate::share::CopyLink;
use crate::{results, results_figure};

/// The query of `/results`: which runs, which slice.
fn results_query(runs: &[String], group: &str, value: &str) -> String {
    let mut q = format!("runs={}", runs.join(","));
    if group != "all" {
        q.push_str(&format!(
            "&group={}&value={}",
            url_encode(group),
            url_encode(value)
        ));
    }
    q
}

/// Percent-encodes a query value (unreserved characters kept).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/results`
#[component]
pub fn ResultsPage() -> impl IntoView {
    let query = use_query_map();
    let args = Memo::new(move |_| {
        let q = query.get();
        (
            q.get("runs"),
            q.get("group").unwrap_or_else(|| "all".into()),
            q.get("value").unwrap_or_else(|| "all".into()),
        )
    });
    let view_data = resource(
        move || args.get(),
        |(runs, group, value)| results(runs, group, value),
    );
    view! {
        <Title text="Results" />
        <h1>"Results"</h1>
        <p class="share"><CopyLink /></p>
        <p class="muted">
            "The SafeEdit metric table across evaluation runs (the paper's Table 1 shape). Runs come from "
            <code>"safeedit eval"</code>
            "; by default the newest run of each method is shown."
        </p>
        <Suspense fallback=|| view! { <p>"Loading results…"</p> }>
            {move || Suspend::new(async move {
                match view_data.await {
                    Ok(data) => view! { <ResultsView data /> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
    .into_any()
}

#[component]
fn ResultsView(data: ResultsView) -> impl IntoView {
    let ResultsView {
        evals,
        selected,
        table,
        slices,
    } = data;
    if evals.is_empty() {
        return view! {
            <p class="muted" id="no-results">
                "No evaluations yet: run one here, or from the command line with "
                <code>"safeedit eval --method vanilla --limit 10 --out runs/vanilla"</code>
                " (it stores its results in the same database)."
            </p>
            <EvalLauncher open=true />
        }
        .into_any();
    }
    let MetricTable {
        group,
        value,
        columns,
        rows,
    } = table.clone();
    let best = table.best();
    let header = columns
        .iter()
        .map(|c| view! { <th class="num">{c.clone()}</th> })
        .collect_view();
    let body = rows
        .iter()
        .map(|r| {
            let cells = r
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let shown = score(*v);
                    let bold = v.is_some() && best[i].is_some_and(|b| format!("{b:.2}") == shown);
                    view! { <td class=if bold { "num best" } else { "num" }>{shown}</td> }
                })
                .collect_view();
            view! {
                <tr>
                    <th>
                        <a href=r.link.clone()>{r.method.clone()}</a>
                    </th>
                    {cells}
                    <td class="num">{r.n.map_or("–".into(), |n| n.to_string())}</td>
                </tr>
            }
        })
        .collect_view();
    let slice_links = slices
        .iter()
        .map(|(g, v)| {
            let href = format!("/results?{}", results_query(&selected, g, v));
            let current = *g == group && *v == value;
            view! {
                <a href=href class=if current { "chip current" } else { "chip" }>
                    {slice_label(g, v)}
                </a>
                " "
            }
        })
        .collect_view();
    let run_rows = evals
        .iter()
        .map(|e| {
            let on = selected.contains(&e.slug);
            let toggled: Vec<String> = if on {
                selected.iter().filter(|s| **s != e.slug).cloned().collect()
            } else {
                selected.iter().cloned().chain([e.slug.clone()]).collect()
            };
            let href = format!("/results?{}", results_query(&toggled, &group, &value));
            view! {
                <tr class=if on { "selected" } else { "" } data-slug=e.slug.clone()>
                    <td>
                        <a class="toggle" href=href>
                            {if on { "✓ shown" } else { "add" }}
                        </a>
                    </td>
                    <td>
                        <a href=e.page()>{e.slug.clone()}</a>
                    </td>
                    <td>
                        {e.method.clone()}
                        {e.is_edit_run().then(|| view! { <span class="muted">" (edit run)"</span> })}
                    </td>
                    <td>{e.data.clone()}</td>
                    <td>{e.model.clone()}</td>
                    <td class="num">{e.instances.to_string()}</td>
                    <td>{e.updated_at.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let q = results_query(&selected, &group, &value);
    view! {
        <section class="card">
            <h2>{format!("SafeEdit metrics — {}", slice_label(&group, &value))}</h2>
            <p class="slices">{slice_links}</p>
            <table class="metrics" id="results-table">
                <thead>
                    <tr>
                        <th>"method"</th>
                        {header}
                        <th class="num">"n"</th>
                    </tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
            <p class="muted">"Bold: best in its column (every metric is higher-is-better)."</p>
            <ResultsFigure runs=selected.join(",") group=group.clone() value=value.clone() />
            <p class="downloads">
                <a class="button" id="results-csv" href=format!("/api/results.csv?{q}") download="">
                    "All numbers (CSV, tidy)"
                </a>
                " "
                <a class="button" id="results-tex" href=format!("/api/results.tex?{q}") download="">
                    "This table (LaTeX)"
                </a>
            </p>
        </section>
        <section class="card">
            <h2>"Evaluation runs"</h2>
            <table class="runs" id="results-runs">
                <thead>
                    <tr>
                        <th></th>
                        <th>"run"</th>
                        <th>"method"</th>
                        <th>"data"</th>
                        <th>"model"</th>
                        <th class="num">"instances"</th>
                        <th>"updated"</th>
                    </tr>
                </thead>
                <tbody>{run_rows}</tbody>
            </table>
        </section>
        <EvalLauncher open=false />
    }
    .into_any()
}

/// The table's defense metrics as grouped bars, exportable like every figure.
#[component]
fn ResultsFigure(runs: String, group: String, value: String) -> impl IntoView {
    let query = results_query(
        &runs.split(',').map(str::to_string).collect::<Vec<_>>(),
        &group,
        &value,
    );
    let figure = resource(
        move || (runs.clone(), group.clone(), value.clone()),
        |(runs, group, value)| results_figure(Some(runs), group, value),
    );
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Drawing…"</p> }>
            {move || {
                let query = query.clone();
                Suspend::new(async move {
                    match figure.await {
                        Ok(Some(figure)) => {
                            view! {
                                <FigureCard
                                    figure
                                    base="/api/results/figures/defense".to_string()
                                    caption="Defense success (DS) and generalisation (DG) per method for this slice, judged by the run's judge; fluency and general scores are on other scales and stay in the table.".to_string()
                                    query
                                />
                            }
                                .into_any()
                        }
                        Ok(None) => ().into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
    .into_any()
}
