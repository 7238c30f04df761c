//! The page of one SafeEdit_test_ALL run (`/test-all/{slug}`) and the `/test-all` page's table of
//! every run, rendered to HTML on the server (see `server_html.rs`).

use leptos::prelude::*;
use safeedit_core::eval::MetricRow;
use safeedit_core::test_all::{AggregateRow, TEST_ALL_METRICS, TestAllRunRecord, format_mean_std};

use crate::server_html::RenderedPage;

/// The run's page.
pub(crate) fn render(record: TestAllRunRecord) -> RenderedPage {
    RenderedPage {
        title: format!("test_ALL: {}", record.method),
        head: view! { <h1>{format!("test_ALL · {}", record.method)}</h1> }.to_html(),
        unlist: Some(record.slug.clone()),
        body: vec![view! { <RunBody record /> }.to_html()],
    }
}

fn model_value(rows: &[MetricRow], metric: &str) -> String {
    rows.iter()
        .find(|r| r.group == "all" && r.metric == metric)
        .map_or("–".into(), |r| format!("{:.2}", r.score))
}

/// Slices (`category` or `attack`) of the aggregate, one row per value.
fn slice_table(rows: &[AggregateRow], group: &'static str) -> impl IntoView + use<> {
    let mut values: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| r.group == group) {
        if !values.contains(&r.value.as_str()) {
            values.push(&r.value);
        }
    }
    let body = values
        .into_iter()
        .map(|value| {
            let cells = TEST_ALL_METRICS
                .iter()
                .map(|m| {
                    let score = rows
                        .iter()
                        .find(|r| r.group == group && r.value == value && r.metric == *m)
                        .map(|r| r.score);
                    view! { <td class="num">{format_mean_std(score)}</td> }
                })
                .collect_view();
            let n = rows
                .iter()
                .filter(|r| r.group == group && r.value == value && r.metric == "Fluency")
                .map(|r| r.n)
                .next()
                .unwrap_or(0);
            view! {
                <tr>
                    <th>{value.to_string()}</th>
                    {cells}
                    <td class="num">{n.to_string()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="runs" id=format!("by-{group}")>
            <thead>
                <tr>
                    <th>{group}</th>
                    {metric_heads()}
                    <th class="num">"inputs"</th>
                </tr>
            </thead>
            <tbody>{body}</tbody>
        </table>
    }
}

#[component]
fn RunBody(record: TestAllRunRecord) -> impl IntoView {
    let slug = record.slug.clone();
    let file = move |name: &str| format!("/api/test-all/{slug}/{name}");
    let models = record
        .models
        .iter()
        .map(|m| {
            let cells = TEST_ALL_METRICS
                .iter()
                .map(|metric| view! { <td class="num">{model_value(&m.metrics, metric)}</td> })
                .collect_view();
            view! {
                <tr>
                    <th>{m.model.clone()}</th>
                    {cells}
                    <td class="num">{m.edit_instance.map_or("–".into(), |i| i.to_string())}</td>
                    <td class="num">{m.edit_layer.map_or("–".into(), |l| l.to_string())}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="muted">
            {format!(
                "{} · {} inputs per model · {} · judge {} · stored {}",
                record.model,
                record.inputs,
                record.data,
                record.judge,
                record.created_at,
            )}
        </p>
        <table class="runs" id="test-all-run">
            <thead>
                <tr>
                    <th>"method"</th>
                    {metric_heads()}
                    <th class="num">"models"</th>
                </tr>
            </thead>
            <tbody>
                <tr>
                    <th>{record.method.clone()}</th>
                    {overall_cells(&record)}
                    <td class="num">{record.models.len().to_string()}</td>
                </tr>
            </tbody>
        </table>
        <p class="downloads">
            <a class="download" href=file("table.tex")>"LaTeX"</a>
            " · "
            <a class="download" href=file("summary.csv")>"CSV"</a>
            " · "
            <a class="download" href=file("summary.json")>"JSON"</a>
        </p>
        <h2>"Models"</h2>
        <table class="runs" id="test-all-models">
            <thead>
                <tr>
                    <th>"model"</th>
                    {metric_heads()}
                    <th class="num">"edited on"</th>
                    <th class="num">"layer"</th>
                </tr>
            </thead>
            <tbody>{models}</tbody>
        </table>
        <h2>"By category"</h2>
        {slice_table(&record.aggregate, "category")}
        <h2>"By attack"</h2>
        {slice_table(&record.aggregate, "attack")}
    }
    .into_any()
}

fn overall_cells(record: &TestAllRunRecord) -> impl IntoView + use<> {
    TEST_ALL_METRICS
        .iter()
        .map(|m| view! { <td class="num">{format_mean_std(record.overall(m))}</td> })
        .collect_view()
}

fn metric_heads() -> impl IntoView {
    TEST_ALL_METRICS
        .iter()
        .map(|m| view! { <th class="num">{*m}</th> })
        .collect_view()
}

/// The `/test-all` page's table of every stored run, with its downloads.
pub(crate) fn render_list(list: Vec<TestAllRunRecord>) -> String {
    view! { <TestAllList list /> }.to_html()
}

#[component]
fn TestAllList(list: Vec<TestAllRunRecord>) -> impl IntoView {
    let rows = list
        .iter()
        .map(|r| {
            view! {
                <tr data-slug=r.slug.clone()>
                    <th>
                        <a href=format!(
                            "/test-all/{}",
                            r.slug,
                        )>{r.method.clone()}</a>
                    </th>
                    {overall_cells(r)}
                    <td class="num">{r.models.len().to_string()}</td>
                    <td class="num">{r.inputs.to_string()}</td>
                    <td>{r.model.clone()}</td>
                    <td>{r.judge.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="runs" id="test-all-table">
            <thead>
                <tr>
                    <th>"method"</th>
                    {metric_heads()}
                    <th class="num">"models"</th>
                    <th class="num">"inputs"</th>
                    <th>"model"</th>
                    <th>"judge"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
        <p class="downloads">
            <a class="download" href="/api/test-all.tex">"LaTeX"</a>
            " · "
            <a class="download" href="/api/test-all.csv">"CSV"</a>
            <span class="muted">
                " (every run above; "
                <code>"?runs=slug,slug"</code>
                " picks and orders rows)"
            </span>
        </p>
    }
}
