//! One SafeEdit record's page (`/instances/{split}/{id}`) as the server renders it (see
//! `server_html.rs`): everything but the detoxify panel, which runs in the browser
//! (`instance.rs`).

use leptos::prelude::*;
use safeedit_core::SafeEditRecord;
use safeedit_core::browse::InstanceQuery;
use safeedit_core::run::CatalogEntry;

use crate::error::AppResult;
use crate::server_html::RenderedPage;

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

/// The instance's page: `runs` are the runs made on it (or why they could not be listed).
pub(crate) fn render(
    split: String,
    record: SafeEditRecord,
    runs: AppResult<Vec<CatalogEntry>>,
) -> RenderedPage {
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
    let title = format!("Instance {} ({split})", record.id);
    let head = view! {
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
    }
    .to_html();
    let body = view! {
        {instance_runs(runs)}
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
    .to_html();
    RenderedPage {
        title,
        head,
        body: vec![body],
        unlist: None,
    }
}

/// The edit runs and evaluations of this instance, newest first.
fn instance_runs(runs: AppResult<Vec<CatalogEntry>>) -> impl IntoView {
    let list = {
        match runs {
            Ok(list) if list.is_empty() => view! {
                <p class="muted" id="no-instance-runs">
                    "No run of this instance yet: detoxify it or evaluate it above, or include it \
                     in an evaluation."
                </p>
            }
            .into_any(),
            Ok(list) => {
                let rows = list
                    .into_iter()
                    .map(|entry| {
                        view! {
                            <tr data-kind=entry.kind.clone()>
                                <td>
                                    <a href=entry.href.clone()>{entry.title.clone()}</a>
                                </td>
                                <td class="num">{entry.headline.clone()}</td>
                                <td>{entry.model.clone()}</td>
                                <td>{entry.created_at.clone()}</td>
                            </tr>
                        }
                    })
                    .collect_view();
                view! {
                    <div class="scroll">
                        <table class="runs" id="instance-runs">
                            <thead>
                                <tr>
                                    <th>"run"</th>
                                    <th class="num">"result"</th>
                                    <th>"model"</th>
                                    <th>"stored"</th>
                                </tr>
                            </thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                }
                .into_any()
            }
            Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
        }
    };
    view! {
        <section class="card">
            <h2>"Runs of this instance"</h2>
            {list}
        </section>
    }
    .into_any()
}
