//! SafeEdit_test_ALL in the app (docs/method.md §test_ALL; the paper's Table 3): `/test-all`
//! shows every stored `safeedit eval --test-all` run as one Table 3 (DG_onlyQ, DG_otherAQ, Avg,
//! fluency; editing methods as mean ± std over their edited models) with LaTeX and CSV
//! downloads; `/test-all/{slug}` shows one run: each model's numbers and the per-category and
//! per-attack slices.

use leptos::prelude::*;
use leptos_meta::Title;
use safeedit_core::test_all::{TEST_ALL_METRICS, TestAllRunRecord, format_mean_std};

use crate::launch::TestAllLauncher;
use crate::list_test_all_runs;

pub(crate) fn overall_cells(record: &TestAllRunRecord) -> impl IntoView + use<> {
    TEST_ALL_METRICS
        .iter()
        .map(|m| view! { <td class="num">{format_mean_std(record.overall(m))}</td> })
        .collect_view()
}

pub(crate) fn metric_heads() -> impl IntoView {
    TEST_ALL_METRICS
        .iter()
        .map(|m| view! { <th class="num">{*m}</th> })
        .collect_view()
}

/// `/test-all`
#[component]
pub fn TestAllPage() -> impl IntoView {
    let runs = Resource::new(|| (), |_| list_test_all_runs());
    view! {
        <Title text="SafeEdit_test_ALL" />
        <h1>"SafeEdit_test_ALL"</h1>
        <p class="muted">
            "Every method on the same inputs (the paper's Table 3): DG_onlyQ on the bare harmful \
             questions, DG_otherAQ on the attacked ones. A method that edits does so once per \
             editing instance and is shown as mean ± std over its edited models. Runs are made \
             with the form below or "
            <code>"safeedit eval --test-all --method M --out DIR"</code>
            "."
        </p>
        <Suspense fallback=|| view! { <p>"Loading runs…"</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Ok(list) if list.is_empty() => {
                        view! {
                            <p class="muted" id="no-test-all">
                                "No test_ALL runs yet: run one below (or "
                                <code>"safeedit eval --test-all --method vanilla --out DIR"</code>
                                ")."
                            </p>
                            <TestAllLauncher open=true />
                        }
                            .into_any()
                    }
                    Ok(list) => {
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
                            <TestAllLauncher open=false />
                        }
                            .into_any()
                    }
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
    .into_any()
}
