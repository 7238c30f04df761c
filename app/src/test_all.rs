//! SafeEdit_test_ALL in the app (docs/method.md §test_ALL; the paper's Table 3): `/test-all`
//! shows every stored `safeedit eval --test-all` run as one Table 3 (DG_onlyQ, DG_otherAQ, Avg,
//! fluency; editing methods as mean ± std over their edited models) with LaTeX and CSV
//! downloads; `/test-all/{slug}` shows one run: each model's numbers and the per-category and
//! per-attack slices. The server renders the table (`test_all_run_body.rs`); the launcher runs in
//! the browser.

use leptos::prelude::*;

use crate::codec::resource;
use leptos_meta::Title;

use crate::launch::TestAllLauncher;
use crate::server_html::server_html;
use crate::test_all_list_html;

/// `/test-all`
#[component]
pub fn TestAllPage() -> impl IntoView {
    let runs = resource(|| (), |_| test_all_list_html());
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
                    Ok(None) => {
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
                    Ok(Some(html)) => {
                        view! {
                            {server_html(html)}
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
