//! `/instances`: the instance table, every filter, the search, the sort and the page in the URL.
//! The server filters, sorts and pages ([`safeedit_core::browse::Catalog::query`]); this renders
//! what it returns, on the server for the first paint and in the browser after hydration.

use leptos::prelude::*;

use crate::codec::resource;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_query_map};
use safeedit_core::browse::{FacetCount, InstancePage, InstanceQuery, SortKey};

use crate::list_instances;

/// `/instances`
#[component]
pub fn InstancesPage() -> impl IntoView {
    let params = use_query_map();
    let query = Memo::new(move |_| {
        let map = params.get();
        InstanceQuery::from_params(|k| map.get(k))
    });
    let page = resource(move || query.get(), list_instances);
    view! {
        <Title text="Instances" />
        <h1>"SafeEdit instances"</h1>
        <Suspense fallback=|| view! { <p>"Loading instances…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(page) => view! { <InstanceTable page /> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
    .into_any()
}

fn options(facets: &[FacetCount], selected: Option<&str>, all: &'static str) -> AnyView {
    let selected = selected.map(str::to_string);
    let first = view! { <option value="">{all}</option> };
    let rest = facets
        .iter()
        .map(|f| {
            let is = selected.as_deref() == Some(f.value.as_str());
            view! {
                <option value=f.value.clone() selected=is>
                    {format!("{} ({})", f.label, f.count)}
                </option>
            }
        })
        .collect_view();
    (first, rest).into_any()
}

#[component]
fn InstanceTable(page: InstancePage) -> impl IntoView {
    let q = page.query.clone();
    let split_options = page
        .splits
        .iter()
        .map(|s| {
            let is = *s == q.split;
            view! { <option value=s.clone() selected=is>{s.clone()}</option> }
        })
        .collect_view();
    let header = |key: SortKey, label: &'static str| {
        let arrow = if q.sort == key {
            if q.desc { " ▼" } else { " ▲" }
        } else {
            ""
        };
        let href = q.sorted_by(key).href();
        view! {
            <th>
                <a href=href data-sort=key.as_str()>
                    {label}
                    {arrow}
                </a>
            </th>
        }
        .into_any()
    };
    let h_id = header(SortKey::Id, "id");
    let h_category = header(SortKey::Category, "category");
    let h_attack = header(SortKey::Attack, "attack");
    let h_length = header(SortKey::Length, "prompt chars");
    let category_options = options(&page.categories, q.category.as_deref(), "all categories");
    let attack_options = options(&page.attacks, q.attack.as_deref(), "all attacks");
    let attack_category_options = options(
        &page.attack_categories,
        q.attack_category.as_deref(),
        "all attack categories",
    );
    let reset = format!("/instances?split={}", q.split);
    // The form sends only the filters that are set (a plain GET form also sends the empty
    // ones); without JavaScript it is a plain GET form.
    let (f_split, f_category, f_attack, f_attack_category, f_q) = (
        NodeRef::<leptos::html::Select>::new(),
        NodeRef::<leptos::html::Select>::new(),
        NodeRef::<leptos::html::Select>::new(),
        NodeRef::<leptos::html::Select>::new(),
        NodeRef::<leptos::html::Input>::new(),
    );
    let navigate = use_navigate();
    let current = q.clone();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let select = |r: NodeRef<leptos::html::Select>| r.get().map(|e| e.value());
        let fields = [
            ("split", select(f_split)),
            ("category", select(f_category)),
            ("attack", select(f_attack)),
            ("attack_category", select(f_attack_category)),
            ("q", f_q.get().map(|e| e.value())),
        ];
        let mut next = InstanceQuery::from_params(|key| {
            fields
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.clone())
        });
        next.sort = current.sort;
        next.desc = current.desc;
        next.per_page = current.per_page;
        navigate(&next.href(), Default::default());
    };
    let search = q.q.clone().unwrap_or_default();
    let sort = q.sort.as_str();
    let desc = if q.desc { "1" } else { "" };
    let split = q.split.clone();
    let rows = page
        .rows
        .iter()
        .map(|r| {
            let href = format!("/instances/{}/{}", split, r.id);
            let id = r.id.to_string();
            let row_id = id.clone();
            let question = r.question.clone();
            view! {
                <tr data-id=row_id>
                    <td class="num">
                        <A href=href.clone()>{id}</A>
                    </td>
                    <td>
                        <span class=format!("tag cat-{}", r.category)>
                            {r.category_label.clone()}
                        </span>
                    </td>
                    <td>{r.attack.clone()}</td>
                    <td class="question">
                        <A href=href>{question}</A>
                    </td>
                    <td class="num">{r.prompt_chars.to_string()}</td>
                </tr>
            }
        })
        .collect_view();
    let prev = (q.page > 1).then(|| q.with_page(q.page - 1).href());
    let next = (q.page < page.pages).then(|| q.with_page(q.page + 1).href());
    let summary = format!(
        "{} matching instance{} · page {} of {}",
        page.total,
        if page.total == 1 { "" } else { "s" },
        q.page,
        page.pages
    );
    view! {
        <form method="get" action="/instances" on:submit=submit>
            <div class="filters">
                <label>
                    "Split" <select name="split" id="f-split" node_ref=f_split>
                        {split_options}
                    </select>
                </label>
                <label>
                    "Category"
                    <select name="category" id="f-category" node_ref=f_category>
                        {category_options}
                    </select>
                </label>
                <label>
                    "Attack"
                    <select name="attack" id="f-attack" node_ref=f_attack>
                        {attack_options}
                    </select>
                </label>
                <label>
                    "Attack category"
                    <select name="attack_category" id="f-attack-category" node_ref=f_attack_category>
                        {attack_category_options}
                    </select>
                </label>
                <label class="grow">
                    "Search"
                    <input
                        type="search"
                        name="q"
                        id="f-q"
                        node_ref=f_q
                        placeholder="question, prompt, generations…"
                        value=search
                    />
                </label>
                <input type="hidden" name="sort" value=sort />
                <input type="hidden" name="desc" value=desc />
                <button type="submit" id="f-apply">
                    "Apply"
                </button>
                <a class="reset" href=reset>
                    "Reset"
                </a>
            </div>
        </form>
        <p class="muted" id="result-summary" data-total=page.total.to_string()>
            {summary}
        </p>
        <table class="instances">
            <thead>
                <tr>
                    {h_id}
                    {h_category}
                    {h_attack}
                    <th>"question"</th>
                    {h_length}
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
        <nav class="pager">
            {prev.map(|h| view! { <a href=h rel="prev" id="page-prev">"← previous"</a> })}
            {next.map(|h| view! { <a href=h rel="next" id="page-next">"next →"</a> })}
        </nav>
    }
    .into_any()
}
