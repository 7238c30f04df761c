//! `/judge`: the safety judge behind every DS and DG figure — which judge this server scores
//! with, how the built-in one measured on held-out data (accuracy, recall, confusion matrices),
//! which judges scored the stored evaluations, and the verdicts readers flagged as wrong, with
//! the responses (the judge's known mistakes).
//!
//! The page has nothing to click but links, so the server renders its body to HTML
//! (`judge_body.rs`, compiled into the server only) and the browser shows that HTML as sent: none
//! of its view code is in the WebAssembly bundle.

use leptos::prelude::*;

use crate::codec::resource;
use leptos_meta::Title;

use crate::judge_html;
use crate::server_html::server_html;

/// `/judge`
#[component]
pub fn JudgeView() -> impl IntoView {
    let page = resource(|| (), |_| judge_html());
    view! {
        <Title text="Judge" />
        <h1>"Judge"</h1>
        <p class="muted">
            "Every DS and DG figure is the share of responses a safety judge called safe. This page \
             says which judge that is, how it measured on held-out labelled data, and where \
             readers found it wrong. JSON: "
            <a href="/api/judge">
                <code>"/api/judge"</code>
            </a>
            "; on the command line: "
            <code>"safeedit judge report"</code>
            "."
        </p>
        <Suspense fallback=|| view! { <p>"Loading the judge…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(html) => server_html(html).into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
    .into_any()
}
