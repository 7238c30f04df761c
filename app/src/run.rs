//! `/runs/{slug}`: one stored edit run, rendered completely on the server so a shared link opens
//! anywhere: the distances and losses, DS and each DG input before and after with the verdicts,
//! provenance, downloads and "Re-run with this config". The server renders the read-only parts
//! (`run_body.rs`); the share line, the actions and the try box run in the browser.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use safeedit_core::run::EditRequest;

use crate::record_page::record_page;
use crate::server_html::{RenderedPage, server_html, share_line};
use crate::try_box::TryBox;
use crate::{run_html, start_edit};

/// `/runs/{slug}`
#[component]
pub fn RunPage() -> impl IntoView {
    record_page(
        "slug",
        "Loading the run…",
        run_html,
        |(page, request)| view! { <RunView page request /> },
    )
}

#[component]
fn RunView(page: RenderedPage, request: EditRequest) -> impl IntoView {
    let (title, head, [top, middle, bottom], slug) = page.into_parts();
    let rerun_request = request;
    let navigate = use_navigate();
    let rerun_error = RwSignal::new(None::<String>);
    // Inert until hydrated (Effects run only in the browser).
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let rerun = move |_| {
        let request = rerun_request.clone();
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            match start_edit(request).await {
                Ok(job) => navigate(&format!("/jobs/{job}"), Default::default()),
                Err(e) => rerun_error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <Title text=title />
        {server_html(head)}
        {share_line(Some(slug.clone()))}
        {server_html(top)}
        <p class="actions">
            <a class="button" href=format!("/api/runs/{slug}/delta.safetensors") download>
                "Delta (safetensors)"
            </a>
            " "
            <a class="button" href=format!("/api/runs/{slug}/generations.jsonl") download>
                "Generations (JSONL)"
            </a>
            " "
            <a class="button" href=format!("/api/runs/{slug}/run.json") download>
                "Run (JSON)"
            </a>
            " "
            <a class="button" id="to-results" href=format!("/results?runs={slug}")>
                "In the Results table"
            </a>
            " "
            <button id="rerun" on:click=rerun disabled=move || !hydrated.get()>
                "Re-run with this config"
            </button>
        </p>
        {move || rerun_error.get().map(|e| view! { <p class="error">{e}</p> })}
        {server_html(middle)}
        <TryBox run=Some(slug.clone()) model=None />
        {server_html(bottom)}
    }
    .into_any()
}
