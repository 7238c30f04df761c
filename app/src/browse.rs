//! Browsing SafeEdit: the instance table (`/instances`, every filter in the URL) and the
//! instance page (`/instances/{split}/{id}`). The server filters, sorts and pages
//! ([`safeedit_core::browse::Catalog::query`]); these components render what it returns, on the
//! server for the first paint and in the browser after hydration.

use leptos::prelude::*;
use leptos_router::components::{A, Form};
use leptos_router::hooks::{use_params_map, use_query_map};
use safeedit_core::SafeEditRecord;
use safeedit_core::browse::{FacetCount, InstancePage, InstanceQuery, SortKey};

use crate::detoxify::DetoxifyPanel;
use crate::{NotFound, get_instance, list_instances};

/// `/instances`
#[component]
pub fn InstancesPage() -> impl IntoView {
    let params = use_query_map();
    let query = Memo::new(move |_| {
        let map = params.get();
        InstanceQuery::from_params(|k| map.get(k))
    });
    let page = Resource::new(move || query.get(), list_instances);
    view! {
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
        <Form method="GET" action="/instances">
            <div class="filters">
                <label>
                    "Split" <select name="split" id="f-split">
                        {split_options}
                    </select>
                </label>
                <label>
                    "Category"
                    <select name="category" id="f-category">
                        {category_options}
                    </select>
                </label>
                <label>
                    "Attack"
                    <select name="attack" id="f-attack">
                        {attack_options}
                    </select>
                </label>
                <label>
                    "Attack category"
                    <select name="attack_category" id="f-attack-category">
                        {attack_category_options}
                    </select>
                </label>
                <label class="grow">
                    "Search"
                    <input
                        type="search"
                        name="q"
                        id="f-q"
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
        </Form>
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
}

/// `/instances/{split}/{id}`
#[component]
pub fn InstanceView() -> impl IntoView {
    let params = use_params_map();
    let key = Memo::new(move |_| {
        let p = params.get();
        (
            p.get("split").unwrap_or_default(),
            p.get("id").and_then(|id| id.parse::<u64>().ok()),
        )
    });
    let record = Resource::new(
        move || key.get(),
        |(split, id)| async move {
            match id {
                Some(id) => get_instance(split, id).await,
                None => Ok(None),
            }
        },
    );
    view! {
        <Suspense fallback=|| view! { <p>"Loading the instance…"</p> }>
            {move || Suspend::new(async move {
                let (split, _) = key.get_untracked();
                match record.await {
                    Ok(Some(r)) => view! { <RecordView split record=r /> }.into_any(),
                    Ok(None) => view! { <NotFound /> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// Text that may be long: shown whole when short, collapsed behind its first line otherwise.
#[component]
fn LongText(text: String, #[prop(into)] id: String) -> impl IntoView {
    let text = text.trim().to_string();
    const FOLD: usize = 600;
    if text.chars().count() <= FOLD {
        view! { <pre class="text" id=id>{text}</pre> }.into_any()
    } else {
        let preview: String = text.chars().take(160).collect();
        let chars = text.chars().count();
        view! {
            <details class="long" id=id>
                <summary>{format!("{preview}… ({chars} characters)")}</summary>
                <pre class="text">{text}</pre>
            </details>
        }
        .into_any()
    }
}

#[component]
fn RecordView(split: String, record: SafeEditRecord) -> impl IntoView {
    let category = record
        .category()
        .map(|c| (c.slug().to_string(), c.display_name().to_string()));
    let (slug, label) = category.unwrap_or_else(|| (String::new(), record.category.clone()));
    let back = InstanceQuery {
        split: split.clone(),
        ..Default::default()
    };
    let same_category = InstanceQuery {
        category: Some(slug.clone()).filter(|s| !s.is_empty()),
        ..back.clone()
    }
    .href();
    let same_attack = InstanceQuery {
        attack: Some(record.attack_name.clone()).filter(|s| !s.is_empty()),
        ..back.clone()
    }
    .href();
    let generalization = record.generalization().cloned().map(|g| {
        view! {
            <section class="card" id="generalization">
                <h2>"Generalisation inputs"</h2>
                <h3>"DG_onlyQ: the bare question"</h3>
                <LongText text=g.only_harmful_question.clone() id="dg-onlyq" />
                <h3>
                    {format!(
                        "DG_otherA: another attack ({}, {})",
                        g.attack_name,
                        g.attack_category,
                    )}
                </h3>
                <LongText text=g.other_attack_prompt.clone() id="dg-othera" />
                <h3>"DG_otherQ: another question, same attack"</h3>
                <LongText text=g.other_question.clone() id="dg-otherq" />
                <h3>"DG_otherAQ: another question and attack"</h3>
                <LongText text=g.other_questions_and_attack.clone() id="dg-otheraq" />
            </section>
        }
    });
    view! {
        <p class="crumbs">
            <a href=back.href()>{format!("{split} instances")}</a>
            " / "
            <a href=same_category>{label.clone()}</a>
            " / "
            <span>{format!("#{}", record.id)}</span>
        </p>
        <h1 id="instance-title">{format!("Instance {} ({split})", record.id)}</h1>
        <dl class="facts">
            <dt>"Category"</dt>
            <dd>
                <span class=format!("tag cat-{slug}") data-field="category">
                    {label}
                </span>
                {format!("  (dataset string: {:?})", record.category)}
            </dd>
            <dt>"Attack"</dt>
            <dd data-field="attack">
                <a href=same_attack>{record.attack_name.clone()}</a>
            </dd>
            <dt>"Attack categories"</dt>
            <dd>{record.attack_category.clone()}</dd>
        </dl>
        <DetoxifyPanel split=split.clone() id=record.id />
        <section class="card">
            <h2>"Question"</h2>
            <p id="question">{record.question.clone()}</p>
            <h2>"Adversarial prompt (the DS input and the edit prompt)"</h2>
            <LongText text=record.adversarial_prompt.clone() id="adversarial-prompt" />
        </section>
        <section class="pair">
            <div class="card safe">
                <h2>"Safe generation (Y_safe, the edit target)"</h2>
                <LongText text=record.safe_generation.clone() id="safe-generation" />
            </div>
            <div class="card unsafe">
                <h2>"Unsafe generation (Y_unsafe, used to locate)"</h2>
                <LongText text=record.unsafe_generation.clone() id="unsafe-generation" />
            </div>
        </section>
        {generalization}
        <section class="card" id="knowledge">
            <h2>"Knowledge constraint (kept by the edit's KL term)"</h2>
            <h3>"Prompt"</h3>
            <LongText text=record.knowledge_constraint.prompt.clone() id="knowledge-prompt" />
            <h3>"Answer"</h3>
            <LongText text=record.knowledge_constraint.answer.clone() id="knowledge-answer" />
        </section>
    }
}
