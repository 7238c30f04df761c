//! The comparison of two to four edit runs (`/compare`), rendered to HTML on the server (see
//! `server_html.rs`).

use std::collections::BTreeMap;

use leptos::prelude::*;
use safeedit_core::run::RunRecord;

/// The comparison of `runs`; `diff`: only the settings that differ.
pub(crate) fn render(runs: Vec<RunRecord>, diff: bool) -> String {
    view! { <CompareView runs diff /> }.to_html()
}

/// Every setting of a run, flattened to `key → text` (config keys as they are, plus the
/// request's overrides and the provenance).
fn settings(run: &RunRecord) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(config) = run.config.as_object() {
        for (k, v) in config {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(format!("dinm.{k}"), text);
        }
    }
    out.insert(
        "instance".into(),
        format!("{}#{}", run.request.split, run.request.id),
    );
    out.insert("model".into(), run.model.clone());
    out.insert("model checksum".into(), run.model_checksum.clone());
    out.insert("backend".into(), run.backend.clone());
    out.insert(
        "judge".into(),
        format!("{} {}", run.judge.id, run.judge.version),
    );
    out.insert(
        "SafeEdit Studio".into(),
        format!("{} ({})", run.version, run.git_commit),
    );
    out
}

fn compare_href(slugs: &[String], diff: bool) -> String {
    let mut q: Vec<String> = slugs.iter().map(|s| format!("run={s}")).collect();
    if diff {
        q.push("diff=1".into());
    }
    format!("/compare?{}", q.join("&"))
}

#[component]
fn CompareView(runs: Vec<RunRecord>, diff: bool) -> impl IntoView {
    let slugs: Vec<String> = runs.iter().map(|r| r.slug.clone()).collect();
    let heads = runs
        .iter()
        .map(|r| {
            view! {
                <th>
                    <a href=format!("/runs/{}", r.slug)>{r.slug.clone()}</a>
                    <br />
                    <span class="muted">
                        {format!("{} #{}", r.request.split, r.request.id)}
                    </span>
                </th>
            }
        })
        .collect_view();
    // What the edit did.
    let fact_row = |label: &'static str, value: &dyn Fn(&RunRecord) -> String| {
        let cells = runs
            .iter()
            .map(|r| view! { <td class="num">{value(r)}</td> })
            .collect_view();
        view! {
            <tr>
                <th>{label}</th>
                {cells}
            </tr>
        }
    };
    let facts = view! {
        {fact_row("edited layer", &|r| r.outcome.layer.to_string())}
        {fact_row("delta ‖Δ‖_F", &|r| format!("{:.4}", r.outcome.delta_norm))}
        {fact_row(
            "final loss",
            &|r| r.outcome.steps.last().map_or("–".into(), |s| format!("{:.5}", s.loss)),
        )}
        {fact_row("steps", &|r| r.outcome.steps.len().to_string())}
        {fact_row(
            "seconds (locate / tune / generate)",
            &|r| {
                let [a, b, c] = r.outcome.seconds;
                format!("{a:.1} / {b:.1} / {c:.1}")
            },
        )}
    };
    // Defense per input: before → after, and the after's change against the first run.
    let mut kinds: Vec<String> = Vec::new();
    for r in &runs {
        for (kind, _, _) in r.outcome.defense() {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    let defenses: Vec<Vec<(String, f64, f64)>> = runs.iter().map(|r| r.outcome.defense()).collect();
    let metric_rows = kinds
        .iter()
        .map(|kind| {
            let get = |i: usize| {
                defenses[i]
                    .iter()
                    .find(|(k, _, _)| k == kind)
                    .map(|(_, b, a)| (*b, *a))
            };
            let base = get(0).map(|(_, a)| a);
            let cells = (0..runs.len())
                .map(|i| {
                    let text = match get(i) {
                        None => "–".to_string(),
                        Some((before, after)) => {
                            let delta = match (i, base) {
                                (0, _) | (_, None) => String::new(),
                                (_, Some(b)) => format!(" ({:+.0})", after - b),
                            };
                            format!("{before:.0} → {after:.0}{delta}")
                        }
                    };
                    view! { <td class="num">{text}</td> }
                })
                .collect_view();
            view! {
                <tr data-metric=kind.clone()>
                    <th>{kind.clone()}</th>
                    {cells}
                </tr>
            }
        })
        .collect_view();
    // Settings, all or only those that differ.
    let all_settings: Vec<BTreeMap<String, String>> = runs.iter().map(settings).collect();
    let mut keys: Vec<String> = all_settings
        .iter()
        .flat_map(|s| s.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    let differing = |k: &String| {
        let first = all_settings[0].get(k);
        all_settings.iter().any(|s| s.get(k) != first)
    };
    let n_differ = keys.iter().filter(|k| differing(k)).count();
    let setting_rows = keys
        .iter()
        .filter(|k| !diff || differing(k))
        .map(|k| {
            let cells = all_settings
                .iter()
                .map(|s| view! { <td>{s.get(k).cloned().unwrap_or_else(|| "–".into())}</td> })
                .collect_view();
            let class = if differing(k) { "differs" } else { "" };
            view! {
                <tr class=class>
                    <th>{k.clone()}</th>
                    {cells}
                </tr>
            }
        })
        .collect_view();
    let toggle = if diff {
        view! {
            <a id="diff-toggle" href=compare_href(&slugs, false)>
                "show all settings"
            </a>
        }
        .into_any()
    } else if n_differ == 0 {
        view! { <span id="settings-same" class="muted">"every setting is the same"</span> }
            .into_any()
    } else {
        let label = if n_differ == 1 {
            "show only the one that differs".to_string()
        } else {
            format!("show only the {n_differ} that differ")
        };
        view! {
            <a id="diff-toggle" href=compare_href(&slugs, true)>
                {label}
            </a>
        }
        .into_any()
    };
    view! {
        <section class="card">
            <h2>"Edits"</h2>
            <table class="compare" id="compare-facts">
                <thead>
                    <tr>
                        <th></th>
                        {heads.clone()}
                    </tr>
                </thead>
                <tbody>{facts}</tbody>
            </table>
        </section>
        <section class="card">
            <h2>"Defense (vanilla → DINM; change against the first run)"</h2>
            <table class="compare" id="compare-metrics">
                <thead>
                    <tr>
                        <th></th>
                        {heads.clone()}
                    </tr>
                </thead>
                <tbody>{metric_rows}</tbody>
            </table>
        </section>
        <section class="card">
            <h2>"Settings"</h2>
            <p>{toggle}</p>
            <table class="compare" id="compare-settings" data-diff=diff.to_string()>
                <thead>
                    <tr>
                        <th></th>
                        {heads}
                    </tr>
                </thead>
                <tbody>{setting_rows}</tbody>
            </table>
        </section>
    }
    .into_any()
}
