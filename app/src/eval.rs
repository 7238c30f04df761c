//! `/evals/{slug}`: one evaluation — metrics overall, per category and per attack, every
//! instance's responses and verdicts, provenance and downloads.

use leptos::prelude::*;
use leptos_meta::Title;
use safeedit_core::Method;
use safeedit_core::Verdict;
use safeedit_core::eval::{InstanceResult, MetricRow};
use safeedit_core::run::EvalRecord;
use safeedit_core::table::TABLE_METRICS;

use crate::format::{score, slice_label};
use crate::get_eval;
use crate::judge_note::judge_note;
use crate::launch::GeneralLauncher;
use crate::record_page::record_page;
use crate::share::{CopyLink, Unlist};
use crate::try_box::verdict_tag;
use crate::verdict_flag::{FlagControl, flags_line};
use safeedit_core::flag::VerdictFlag;

/// A verdict's tag, or a dash for an input the instance lacks.
fn verdict_cell(v: Option<Verdict>) -> AnyView {
    match v {
        Some(v) => verdict_tag(v).into_any(),
        None => view! { <span class="muted">"–"</span> }.into_any(),
    }
}

/// `/evals/{slug}`
#[component]
pub fn EvalPage() -> impl IntoView {
    record_page(
        "slug",
        "Loading the evaluation…",
        get_eval,
        |(record, instances, flags)| view! { <EvalView record instances flags /> },
    )
}

/// A tag on a response that generation stopped before it ended: at the token limit or the
/// model's context length.
fn cut_tag(stop: &str, tokens: usize) -> Option<impl IntoView + use<>> {
    let why = match stop {
        "max_new_tokens" => format!("cut at the token limit ({tokens} tokens)"),
        "context_length" => format!("cut at the context length ({tokens} tokens)"),
        _ => return None,
    };
    Some(view! { <span class="tag cut" data-stop=stop.to_string()>{why}</span> })
}

#[component]
fn EvalView(
    record: EvalRecord,
    instances: Vec<InstanceResult>,
    flags: Vec<VerdictFlag>,
) -> impl IntoView {
    let flags = RwSignal::new(flags);
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
                            <h4>
                                {i.kind.clone()}
                                " "
                                {verdict_cell(Some(i.verdict))}
                                {cut_tag(&i.stop, i.generated_tokens)}
                            </h4>
                            <FlagControl
                                slug=slug.clone()
                                instance=r.id
                                kind=i.kind.clone()
                                judge=i.verdict
                                flags
                            />
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
                    // A reader's flag that applies to this verdict is marked here too.
                    let (id, kind) = (r.id, k.to_string());
                    let flagged = move || {
                        flags.with(|fs| {
                            fs.iter().any(|f| f.is_for(id, &kind) && Some(f.judge) == v)
                        })
                    };
                    view! {
                        <td>
                            {verdict_cell(v)}
                            {move || {
                                flagged()
                                    .then(|| {
                                        view! {
                                            <span
                                                class="flag-mark"
                                                title="a reader flagged this verdict as wrong"
                                            >
                                                " ⚑"
                                            </span>
                                        }
                                    })
                            }}
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
    view! {
        <p class="crumbs">
            <a href="/runs">"runs"</a>
            " / evaluation "
            {slug.clone()}
        </p>
        <Title text=format!("Evaluation: {} on {data}", Method::label_of(&method)) />
        <h1 id="eval-title">{format!("{} on {data}", Method::label_of(&method))}</h1>
        <p class="share"><CopyLink /> <Unlist slug=slug.clone() /></p>
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
            {flags_line(slug.clone(), flags)}
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
        <GeneralLauncher eval=slug.clone() />
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
    .into_any()
}
