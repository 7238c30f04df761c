//! `/runs?kind=&split=&instance=&layer=`: the one catalogue of stored results — edit runs,
//! evaluations, test_ALL runs, mechanism analyses and trained models — newest first, filtered in
//! the URL (the split, instance and layer filters are the edit runs'); tick 2–4 edit runs to
//! compare them.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use safeedit_core::run::CatalogEntry;

use crate::list_catalogue;

/// `/runs?kind=&split=&instance=&layer=`
#[component]
pub fn RunsPage() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query.get();
        let text = |k: &str| q.get(k).filter(|v| !v.trim().is_empty());
        (text("kind"), text("split"), text("instance"), text("layer"))
    });
    let entries = Resource::new(|| (), |_| list_catalogue());
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
        <Suspense fallback=|| view! { <p>"Loading runs…"</p> }>
            {move || {
                let (kind, split, instance, layer) = filter.get();
                Suspend::new(async move {
                    match entries.await {
                        Ok(all) if all.is_empty() => {
                            view! {
                                <p class="muted">
                                    "Nothing stored yet: open an instance and press “Detoxify this \
                                     instance”, or run an evaluation on "
                                    <a href="/results">"Results"</a>
                                    "."
                                </p>
                            }
                                .into_any()
                        }
                        Ok(all) => {
                            let edit_filter = split.is_some() || instance.is_some()
                                || layer.is_some();
                            let keep = |e: &CatalogEntry| {
                                kind.as_ref().is_none_or(|k| e.kind == *k)
                                    && (!edit_filter
                                        || e.edit.as_ref().is_some_and(|r| {
                                            split.as_ref().is_none_or(|s| r.split == *s)
                                                && instance
                                                    .as_ref()
                                                    .is_none_or(|i| r.instance.to_string() == *i)
                                                && layer
                                                    .as_ref()
                                                    .is_none_or(|l| r.layer.to_string() == *l)
                                        }))
                            };
                            let total = all.len();
                            let shown: Vec<CatalogEntry> = all.into_iter().filter(keep).collect();
                            let count = format!("{} of {total} runs", shown.len());
                            let rows = shown
                                .into_iter()
                                .map(|e| {
                                    let tick = e
                                        .edit
                                        .as_ref()
                                        .map(|r| {
                                            view! {
                                                <input
                                                    type="checkbox"
                                                    name="run"
                                                    value=r.slug.clone()
                                                    aria-label=format!("compare {}", r.slug)
                                                />
                                            }
                                        });
                                    view! {
                                        <tr data-kind=e.kind.clone()>
                                            <td>{tick}</td>
                                            <td>{e.kind.replace('_', " ")}</td>
                                            <td>
                                                <a href=e.href.clone()>{e.slug.clone()}</a>
                                            </td>
                                            <td>{e.title.clone()}</td>
                                            <td>{e.headline.clone()}</td>
                                            <td>{e.model.clone()}</td>
                                            <td>{e.created_at.clone()}</td>
                                        </tr>
                                    }
                                })
                                .collect_view();
                            view! {
                                <form method="get" action="/compare" id="compare-form">
                                    <p class="muted" id="runs-count">{count}</p>
                                    <table class="instances" id="runs-table">
                                        <thead>
                                            <tr>
                                                <th></th>
                                                <th>"kind"</th>
                                                <th>"result"</th>
                                                <th>"what"</th>
                                                <th>"headline"</th>
                                                <th>"model"</th>
                                                <th>"stored"</th>
                                            </tr>
                                        </thead>
                                        <tbody>{rows}</tbody>
                                    </table>
                                    <p>
                                        <button type="submit" id="compare-button">
                                            "Compare the ticked edit runs (2–4)"
                                        </button>
                                    </p>
                                </form>
                            }
                                .into_any()
                        }
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
    .into_any()
}
