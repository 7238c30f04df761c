//! `/compare?run=A&run=B[&run=C&run=D][&diff=1]`: two to four DINM runs side by side — what each
//! did (layer, delta norm, final loss, timings), the defense of every input before and after with
//! the change against the first run, and the settings, optionally only those that differ.
//! Read-only: the server renders the comparison (`compare_body.rs`).

use leptos::prelude::*;

use crate::codec::resource;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::compare_html;
use crate::server_html::server_html;
use crate::share::CopyLink;

/// `/compare`
#[component]
pub fn ComparePage() -> impl IntoView {
    let query = use_query_map();
    let args = Memo::new(move |_| {
        let q = query.get();
        (
            q.get_all("run").unwrap_or_default(),
            q.get("diff").is_some_and(|d| d == "1"),
        )
    });
    let page = resource(move || args.get(), |(runs, diff)| compare_html(runs, diff));
    view! {
        <Title text="Compare runs" />
        <h1>"Compare runs"</h1>
        <p class="share"><CopyLink /></p>
        <Suspense fallback=|| view! { <p>"Loading runs…"</p> }>
            {move || {
                Suspend::new(async move {
                match page.await {
                    Ok(html) => server_html(html).into_any(),
                    Err(e) => {
                        view! {
                            <p class="error" id="compare-error">
                                {e.to_string()}
                            </p>
                            <p>
                                "Pick 2 to 4 runs on the "
                                <a href="/runs">"runs page"</a>
                                "."
                            </p>
                        }
                            .into_any()
                    }
                }
            })
            }}
        </Suspense>
    }
    .into_any()
}
