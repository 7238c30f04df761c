//! The read-only parts of an evaluation's page (`/evals/{slug}`), rendered to HTML on the server
//! (see `server_html.rs`): the metrics, the instances table and the provenance. The responses
//! with their flag controls, the share line and the general-task form run in the browser
//! (`eval.rs`).

use leptos::prelude::*;
use safeedit_core::Method;
use safeedit_core::Verdict;
use safeedit_core::eval::{InstanceResult, MetricRow};
use safeedit_core::flag::VerdictFlag;
use safeedit_core::run::EvalRecord;
use safeedit_core::table::TABLE_METRICS;

use crate::format::{score, slice_label};
use crate::judge_note::judge_note;
use crate::server_html::RenderedPage;
use crate::try_box::verdict_tag;

/// A verdict's tag, or a dash for an input the instance lacks.
fn verdict_cell(v: Option<Verdict>) -> AnyView {
    match v {
        Some(v) => verdict_tag(v).into_any(),
        None => view! { <span class="muted">"–"</span> }.into_any(),
    }
}

/// The evaluation's page: the heading, then three sections (the metrics, the instances, the
/// provenance) between which the browser's parts go.
pub(crate) fn render(
    record: EvalRecord,
    instances: &[InstanceResult],
    flags: &[VerdictFlag],
) -> RenderedPage {
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
                        <td class="num">{score(value(&metrics, group, v, c).map(|(s, _)| s))}</td>
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
    let kinds = ["DS", "DG_onlyQ", "DG_otherA", "DG_otherQ", "DG_otherAQ"];
    let instance_rows = instances
        .iter()
        .map(|r| {
            let verdicts = kinds
                .iter()
                .map(|k| {
                    let v = r.inputs.iter().find(|i| i.kind == *k).map(|i| i.verdict);
                    // A reader's flag that applies to this verdict is marked here too.
                    let flagged = flags.iter().any(|f| f.is_for(r.id, k) && Some(f.judge) == v);
                    view! {
                        <td>
                            {verdict_cell(v)}
                            {flagged
                                .then(|| {
                                    view! {
                                        <span
                                            class="flag-mark"
                                            title="a reader flagged this verdict as wrong"
                                        >
                                            " ⚑"
                                        </span>
                                    }
                                })}
                        </td>
                    }
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
    let head = view! {
        <p class="crumbs">
            <a href="/runs">"runs"</a>
            " / evaluation "
            {slug.clone()}
        </p>
        <h1 id="eval-title">{format!("{} on {data}", Method::label_of(&method))}</h1>
    }
    .to_html();
    let metrics_card = view! {
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
            {judge_note(
                run["judge"]["id"].as_str().unwrap_or_default(),
                run["judge"]["description"].as_str().unwrap_or_default(),
            )}
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
    }
    .to_html();
    let instances_card = view! {
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
    }
    .to_html();
    let provenance = view! {
        <section class="card">
            <h2>"Provenance"</h2>
            <pre class="provenance" id="eval-provenance">
                {serde_json::to_string_pretty(&run).unwrap_or_default()}
            </pre>
        </section>
    }
    .to_html();
    RenderedPage {
        title: format!("Evaluation: {} on {data}", Method::label_of(&method)),
        head,
        body: vec![metrics_card, instances_card, provenance],
        unlist: Some(slug),
    }
}
