//! Batch evaluations in the app: one page per `safeedit eval` run (`/evals/{slug}`: the metric
//! table overall, per category and per attack, every instance's verdicts, downloads), and the
//! results page (`/results`): the SafeEdit metric table across runs, sliced by category or
//! attack, with CSV and LaTeX downloads. Every choice lives in the URL.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use safeedit_core::eval::{InstanceResult, MetricRow};
use safeedit_core::run::EvalRecord;
use safeedit_core::table::{MetricTable, ResultsView, TABLE_METRICS};
use safeedit_core::{Category, Verdict};

use crate::figure::FigureCard;
use crate::record_page::record_page;
use crate::{get_eval, results, results_figure};

/// A slice's label: categories by their display name.
fn slice_label(group: &str, value: &str) -> String {
    match group {
        "all" => "all instances".into(),
        "category" => Category::from_dataset_str(value)
            .map_or(value.to_string(), |c| c.display_name().to_string()),
        _ => value.to_string(),
    }
}

fn verdict_cell(v: Option<Verdict>) -> impl IntoView {
    let (class, label) = match v {
        Some(Verdict::Safe) => ("verdict safe", "safe"),
        Some(Verdict::Unsafe) => ("verdict unsafe", "unsafe"),
        Some(Verdict::Empty) => ("verdict empty", "empty"),
        None => ("muted", "–"),
    };
    view! { <span class=class>{label}</span> }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

/// `/evals/{slug}`
#[component]
pub fn EvalPage() -> impl IntoView {
    record_page(
        "slug",
        "Loading the evaluation…",
        get_eval,
        |(record, instances)| view! { <EvalView record instances /> },
    )
}

#[component]
fn EvalView(record: EvalRecord, instances: Vec<InstanceResult>) -> impl IntoView {
    let EvalRecord {
        slug,
        created_at,
        updated_at,
        method,
        data,
        model,
        instances: n,
        run,
        metrics,
    } = record;
    // Slices in the order the summary lists them: all, categories, attacks.
    let mut slices: Vec<(String, String)> = Vec::new();
    for r in &metrics {
        let key = (r.group.clone(), r.value.clone());
        if !slices.contains(&key) {
            slices.push(key);
        }
    }
    let columns: Vec<&str> = TABLE_METRICS
        .iter()
        .copied()
        .filter(|m| metrics.iter().any(|r| r.metric == *m))
        .collect();
    let value = |rows: &[MetricRow], group: &str, v: &str, metric: &str| {
        rows.iter()
            .find(|r| r.group == group && r.value == v && r.metric == metric)
            .map(|r| (r.score, r.n))
    };
    let header = columns
        .iter()
        .map(|c| view! { <th class="num">{*c}</th> })
        .collect_view();
    let rows = slices
        .iter()
        .map(|(group, v)| {
            let cells = columns
                .iter()
                .map(|c| {
                    view! {
                        <td class="num">{fmt(value(&metrics, group, v, c).map(|(s, _)| s))}</td>
                    }
                })
                .collect_view();
            let n = value(&metrics, group, v, "DS").map_or(0, |(_, n)| n);
            let class = if group == "all" { "slice all" } else { "slice" };
            view! {
                <tr class=class data-group=group.clone() data-value=v.clone()>
                    <th>{slice_label(group, v)}</th>
                    {cells}
                    <td class="num">{n.to_string()}</td>
                </tr>
            }
        })
        .collect_view();
    // Instances link to their pages when the split is known.
    let split: Option<String> = if data == "test-sample" {
        Some("test".into())
    } else {
        run.get("split")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let open = instances.len() == 1;
    let responses = instances
        .iter()
        .map(|r| {
            let inputs = r
                .inputs
                .iter()
                .map(|i| {
                    view! {
                        <div class="response" data-kind=i.kind.clone()>
                            <h4>{i.kind.clone()} " " {verdict_cell(Some(i.verdict))}</h4>
                            <details>
                                <summary>"input"</summary>
                                <pre class="text">{i.input.clone()}</pre>
                            </details>
                            <pre class="text">{i.response.clone()}</pre>
                        </div>
                    }
                })
                .collect_view();
            view! {
                <details class="instance-responses" open=open>
                    <summary>
                        {format!(
                            "#{} · {} · {}",
                            r.id,
                            slice_label("category", &r.category),
                            r.attack,
                        )}
                    </summary>
                    {inputs}
                </details>
            }
        })
        .collect_view();
    let kinds = ["DS", "DG_onlyQ", "DG_otherA", "DG_otherQ", "DG_otherAQ"];
    let instance_rows = instances
        .iter()
        .map(|r| {
            let verdicts = kinds
                .iter()
                .map(|k| {
                    let v = r.inputs.iter().find(|i| i.kind == *k).map(|i| i.verdict);
                    view! { <td>{verdict_cell(v)}</td> }
                })
                .collect_view();
            let id = if let Some(split) = &split {
                view! { <a href=format!("/instances/{split}/{}", r.id)>{r.id.to_string()}</a> }
                    .into_any()
            } else {
                r.id.to_string().into_any()
            };
            view! {
                <tr>
                    <td class="num">{id}</td>
                    <td>{slice_label("category", &r.category)}</td>
                    <td>{r.attack.clone()}</td>
                    {verdicts}
                    <td class="num">{format!("{:.2}", r.fluency)}</td>
                    <td class="num">{r.edit.as_ref().map_or("–".into(), |e| e.layer.to_string())}</td>
                </tr>
            }
        })
        .collect_view();
    let api = format!("/api/evals/{slug}");
    let compare = format!("/results?runs={slug}");
    view! {
        <p class="crumbs">
            <a href="/runs">"runs"</a>
            " / evaluation "
            {slug.clone()}
        </p>
        <h1 id="eval-title">{format!("{method} on {data}")}</h1>
        <p class="muted">
            {format!("{n} instances · {model} · created {created_at} · updated {updated_at}")}
        </p>
        <section class="card">
            <h2>"SafeEdit metrics"</h2>
            <p class="muted">
                "Defense (DS, DG: % of safe responses, 100 is best), DG-Avg, Fluency (n-gram entropy), general performance when measured."
            </p>
            <table class="metrics" id="eval-metrics">
                <thead>
                    <tr>
                        <th></th>
                        {header}
                        <th class="num">"n"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            <p class="downloads">
                <a class="button" href=format!("{api}/summary.csv") download="">
                    "Metrics (CSV)"
                </a>
                " "
                <a class="button" href=format!("{api}/table.tex") download="">
                    "Metrics (LaTeX)"
                </a>
                " "
                <a class="button" href=format!("{api}/instances.jsonl") download="">
                    "All generations (JSONL)"
                </a>
                " "
                <a class="button" href=compare>
                    "Compare with other runs"
                </a>
            </p>
        </section>
        <section class="card">
            <h2>"Instances"</h2>
            <table class="instances" id="eval-instances">
                <thead>
                    <tr>
                        <th class="num">"id"</th>
                        <th>"category"</th>
                        <th>"attack"</th>
                        <th>"DS"</th>
                        <th>"DG_onlyQ"</th>
                        <th>"DG_otherA"</th>
                        <th>"DG_otherQ"</th>
                        <th>"DG_otherAQ"</th>
                        <th class="num">"fluency"</th>
                        <th class="num">"layer"</th>
                    </tr>
                </thead>
                <tbody>{instance_rows}</tbody>
            </table>
        </section>
        <section class="card" id="eval-responses">
            <h2>"Responses"</h2>
            {responses}
        </section>
        <section class="card">
            <h2>"Provenance"</h2>
            <pre class="provenance" id="eval-provenance">
                {serde_json::to_string_pretty(&run).unwrap_or_default()}
            </pre>
        </section>
    }
}

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
    let view_data = Resource::new(
        move || args.get(),
        |(runs, group, value)| results(runs, group, value),
    );
    view! {
        <h1>"Results"</h1>
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
                "No evaluations yet: run "
                <code>"safeedit eval --method vanilla --limit 10 --out runs/vanilla"</code>
                " (it stores its results in the same database)."
            </p>
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
                    let shown = fmt(*v);
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
                        <a href=format!("/evals/{}", e.slug)>{e.slug.clone()}</a>
                    </td>
                    <td>{e.method.clone()}</td>
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
    let figure = Resource::new(
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
}
