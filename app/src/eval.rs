//! `/evals/{slug}`: one evaluation — metrics overall, per category and per attack, every
//! instance's responses and verdicts, provenance and downloads. The server renders the read-only
//! parts (`eval_body.rs`); the responses with their flag controls, the share line and the
//! general-task form run in the browser.

use leptos::prelude::*;
use leptos_meta::Title;
use safeedit_core::eval::InstanceResult;
use safeedit_core::flag::VerdictFlag;

use crate::eval_html;
use crate::format::slice_label;
use crate::launch::GeneralLauncher;
use crate::record_page::record_page;
use crate::server_html::{RenderedPage, server_html, share_line};
use crate::try_box::verdict_tag;
use crate::verdict_flag::{FlagControl, flags_line};

/// `/evals/{slug}`
#[component]
pub fn EvalPage() -> impl IntoView {
    record_page(
        "slug",
        "Loading the evaluation…",
        eval_html,
        |(page, instances, flags)| view! { <EvalView page instances flags /> },
    )
}

/// A tag on a response that generation stopped before it ended: at the token limit or the
/// model's context length.
fn cut_tag(stop: &str, tokens: usize) -> Option<impl IntoView + use<>> {
    let why = match stop {
        "max_new_tokens" => format!("cut at the token limit ({tokens} tokens)"),
        "context_length" => format!("cut at the context length ({tokens} tokens)"),
        _ => return None,
    };
    Some(view! { <span class="tag cut" data-stop=stop.to_string()>{why}</span> })
}

#[component]
fn EvalView(
    page: RenderedPage,
    instances: Vec<InstanceResult>,
    flags: Vec<VerdictFlag>,
) -> impl IntoView {
    let flags = RwSignal::new(flags);
    let (title, head, [metrics, instances_table, provenance], slug) = page.into_parts();
    let open = instances.len() == 1;
    let responses = instances
        .iter()
        .map(|r| {
            let inputs = r
                .inputs
                .iter()
                .map(|i| {
                    view! {
                        <div class="response" data-kind=i.kind.clone()>
                            <h4>
                                {i.kind.clone()}
                                " "
                                {verdict_tag(i.verdict)}
                                {cut_tag(&i.stop, i.generated_tokens)}
                            </h4>
                            <FlagControl
                                slug=slug.clone()
                                instance=r.id
                                kind=i.kind.clone()
                                judge=i.verdict
                                flags
                            />
                            <details>
                                <summary>"input"</summary>
                                <pre class="text">{i.input.clone()}</pre>
                            </details>
                            <pre class="text">{i.response.clone()}</pre>
                        </div>
                    }
                })
                .collect_view();
            view! {
                <details class="instance-responses" open=open>
                    <summary>
                        {format!(
                            "#{} · {} · {}",
                            r.id,
                            slice_label("category", &r.category),
                            r.attack,
                        )}
                    </summary>
                    {inputs}
                </details>
            }
        })
        .collect_view();
    view! {
        <Title text=title />
        {server_html(head)}
        {share_line(Some(slug.clone()))}
        {server_html(metrics)}
        {flags_line(slug.clone(), flags)}
        <GeneralLauncher eval=slug.clone() />
        {server_html(instances_table)}
        <section class="card" id="eval-responses">
            <h2>"Responses"</h2>
            {responses}
        </section>
        {server_html(provenance)}
    }
    .into_any()
}
