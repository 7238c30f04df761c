//! `/runs?split=&instance=&layer=`: the stored edit runs, newest first, filtered in the URL; tick
//! 2–4 to compare them.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use safeedit_core::run::RunSummary;

use crate::list_runs;

/// `/runs?split=&instance=&layer=`: edit runs, newest first, filtered in the URL; tick 2–4 and
/// compare them.
#[component]
pub fn RunsPage() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query.get();
        let text = |k: &str| q.get(k).filter(|v| !v.trim().is_empty());
        (text("split"), text("instance"), text("layer"))
    });
    let runs = Resource::new(|| (), |_| list_runs());
    view! {
        <h1>"Runs"</h1>
        <p class="muted">
            "DINM edits started from instance pages. Batch evaluations ("
            <code>"safeedit eval"</code>
            ") are on the "
            <a href="/results">"results"</a>
            " page."
        </p>
        <form class="filters" method="get" action="/runs" id="runs-filter">
            <label>
                "split " <input name="split" size="8" value=move || filter.get().0 />
            </label>
            <label>
                "instance " <input name="instance" size="6" value=move || filter.get().1 />
            </label>
            <label>
                "layer " <input name="layer" size="4" value=move || filter.get().2 />
            </label>
            <button type="submit">"Filter"</button>
            " "
            <a href="/runs">"clear"</a>
        </form>
        <Suspense fallback=|| view! { <p>"Loading runs…"</p> }>
            {move || {
                let (split, instance, layer) = filter.get();
                Suspend::new(async move {
                match runs.await {
                    Ok(runs) if runs.is_empty() => {
                        view! {
                            <p class="muted">
                                "No runs yet: open an instance and press “Detoxify this instance”."
                            </p>
                        }
                            .into_any()
                    }
                    Ok(runs) => {
                        let keep = |r: &RunSummary| {
                            split.as_ref().is_none_or(|s| r.split == *s)
                                && instance.as_ref().is_none_or(|i| r.instance.to_string() == *i)
                                && layer.as_ref().is_none_or(|l| r.layer.to_string() == *l)
                        };
                        let total = runs.len();
                        let shown: Vec<RunSummary> = runs.into_iter().filter(keep).collect();
                        let count = format!("{} of {total} runs", shown.len());
                        let rows = shown
                            .into_iter()
                            .map(|r| {
                                view! {
                                    <tr>
                                        <td>
                                            <input
                                                type="checkbox"
                                                name="run"
                                                value=r.slug.clone()
                                                aria-label=format!("compare {}", r.slug)
                                            />
                                        </td>
                                        <td>
                                            <a href=format!("/runs/{}", r.slug)>{r.slug.clone()}</a>
                                        </td>
                                        <td>{r.created_at.clone()}</td>
                                        <td>{format!("{} #{}", r.split, r.instance)}</td>
                                        <td>{r.model.clone()}</td>
                                        <td class="num">{r.layer.to_string()}</td>
                                        <td class="num">{format!("{:.0} → {:.0}", r.ds.0, r.ds.1)}</td>
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
                                            <th>"run"</th>
                                            <th>"created"</th>
                                            <th>"instance"</th>
                                            <th>"model"</th>
                                            <th class="num">"layer"</th>
                                            <th class="num">"DS"</th>
                                        </tr>
                                    </thead>
                                    <tbody>{rows}</tbody>
                                </table>
                                <p>
                                    <button type="submit" id="compare-button">
                                        "Compare the ticked runs (2–4)"
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
}
