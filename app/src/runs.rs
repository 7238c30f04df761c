//! `/runs?kind=&split=&instance=&layer=`: the one catalogue of stored results — edit runs,
//! evaluations, test_ALL runs, mechanism analyses and trained models — newest first, filtered in
//! the URL (the split, instance and layer filters are the edit runs'); tick 2–4 edit runs to
//! compare them. The filtered list has nothing to click but links, boxes and a submit button, so
//! the server renders it (`runs_body.rs`).

use leptos::prelude::*;

use crate::codec::resource;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use safeedit_core::run::CatalogEntry;

use crate::runs_html;
use crate::server_html::server_html;

/// `/runs?kind=&split=&instance=&layer=`
#[component]
pub fn RunsPage() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query.get();
        let text = |k: &str| q.get(k).filter(|v| !v.trim().is_empty());
        (text("kind"), text("split"), text("instance"), text("layer"))
    });
    let entries = resource(
        move || filter.get(),
        |(kind, split, instance, layer)| runs_html(kind, split, instance, layer),
    );
    let kinds = move || {
        let chosen = filter.get().0.unwrap_or_default();
        let options = CatalogEntry::KINDS
            .iter()
            .map(|(kind, label)| {
                view! {
                    <option value=*kind selected=chosen == *kind>
                        {*label}
                    </option>
                }
            })
            .collect_view();
        view! {
            <select name="kind" id="runs-kind">
                <option value="" selected=chosen.is_empty()>
                    "every kind"
                </option>
                {options}
            </select>
        }
    };
    view! {
        <Title text="Runs" />
        <h1>"Runs"</h1>
        <p class="muted">
            "Everything stored here, newest first: DINM edits of one instance, evaluations ("
            <a href="/results">"Results"</a>
            "), test_ALL runs, mechanism analyses and trained models, from the browser or the \
             command line."
        </p>
        <form class="filters" method="get" action="/runs" id="runs-filter">
            <label>"kind " {kinds}</label>
            <label>
                "split " <input name="split" size="8" value=move || filter.get().1 />
            </label>
            <label>
                "instance " <input name="instance" size="6" value=move || filter.get().2 />
            </label>
            <label>
                "layer " <input name="layer" size="4" value=move || filter.get().3 />
            </label>
            <button type="submit">"Filter"</button>
            " "
            <a href="/runs">"clear"</a>
        </form>
        // A new query keeps the list shown until its answer comes.
        <Transition fallback=|| view! { <p>"Loading runs…"</p> }>
            {move || Suspend::new(async move {
                match entries.await {
                    Ok(html) => server_html(html).into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}
