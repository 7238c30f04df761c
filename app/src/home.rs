//! The landing page: what SafeEdit Studio is, the benchmark's instance counts and the model the
//! server has loaded. Both are read-only, so the server renders them (`home_body.rs`, through the
//! `home_html` server function) and the browser shows the HTML as sent.

use leptos::prelude::*;

use crate::codec::resource;
use crate::home_html;
use crate::server_html::server_html;

/// `/`
#[component]
pub fn HomePage() -> impl IntoView {
    let sections = resource(|| (), |_| home_html());
    // Set only in the browser, once the page is interactive.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    // One of the two rendered sections (`pick` chooses it), or the error.
    let section = move |pick: fn((String, String)) -> String| {
        Suspend::new(async move {
            match sections.await {
                Ok(both) => server_html(pick(both)).into_any(),
                Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
            }
        })
    };

    view! {
        <section class="intro">
            <h1>"SafeEdit Studio"</h1>
            <p>
                "Browse the SafeEdit benchmark, detoxify a model instance by instance with DINM, "
                "compare against SFT and DPO, and export the paper's figures."
            </p>
        </section>
        <section class="card" id="start">
            <h2>"Start here"</h2>
            <ul class="start">
                <li>
                    <a href="/instances">"Browse the instances"</a>
                    " and detoxify one with DINM from its page."
                </li>
                <li>
                    <a href="/new" id="start-new">"Start an experiment"</a>
                    ": an evaluation of any method, SafeEdit_test_ALL, SFT or DPO training, the \
                     SFT vs DPO vs DINM comparison, a mechanism analysis."
                </li>
                <li>
                    <a href="/results">"Results"</a>
                    ", "
                    <a href="/test-all">"test_ALL"</a>
                    " and "
                    <a href="/mechanisms">"Mechanisms"</a>
                    ": the paper's tables and figures from what has been run, with LaTeX, CSV, \
                     SVG, PDF and PNG downloads; "
                    <a href="/runs">"Runs"</a>
                    " lists everything stored."
                </li>
            </ul>
        </section>
        <section class="card" id="overview">
            <h2>"The benchmark"</h2>
            <Suspense fallback=|| view! { <p>"Counting instances…"</p> }>
                {move || section(|(overview, _)| overview)}
            </Suspense>
        </section>
        <section class="card" id="model" data-hydrated=move || hydrated.get().to_string()>
            <h2>"Loaded model"</h2>
            <Suspense fallback=|| view! { <p>"Asking the engine…"</p> }>
                {move || section(|(_, card)| card)}
            </Suspense>
        </section>
    }
    .into_any()
}
