//! `/runs/{slug}`: one stored edit run, rendered completely on the server so a shared link opens
//! anywhere: the distances and losses, DS and each DG input before and after with the verdicts,
//! provenance, downloads and "Re-run with this config".

use crate::job::DistanceBars;
use crate::judge_note::judge_note;
use crate::share::{CopyLink, Unlist};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use safeedit_core::Category;
use safeedit_core::run::{EditOutcome, RunRecord};

use crate::figure::{FigureOf, StoredFigure};
use crate::record_page::record_page;
use crate::try_box::{TryBox, verdict_tag};
use crate::{get_run, start_edit};

/// `/runs/{slug}`
#[component]
pub fn RunPage() -> impl IntoView {
    record_page(
        "slug",
        "Loading the run…",
        get_run,
        |run| view! { <RunView run /> },
    )
}

#[component]
fn RunView(run: RunRecord) -> impl IntoView {
    let RunRecord {
        slug,
        created_at,
        request,
        instance,
        config,
        model,
        model_path,
        model_checksum,
        backend,
        judge,
        version,
        git_commit,
        outcome,
        ..
    } = run;
    let category = Category::from_dataset_str(&instance.category)
        .map_or(instance.category.clone(), |c| c.display_name().to_string());
    let instance_href = format!("/instances/{}/{}", request.split, request.id);
    let EditOutcome {
        layer,
        tensor,
        distances,
        steps,
        stopped_early,
        delta_norm,
        comparisons,
        seconds,
    } = outcome.clone();
    let defense = outcome.defense();
    let metric_rows = defense
        .into_iter()
        .map(|(kind, before, after)| {
            let metric = kind.clone();
            view! {
                <tr data-metric=metric>
                    <th>{kind}</th>
                    <td class="num">{format!("{before:.0}")}</td>
                    <td class="num">{format!("{after:.0}")}</td>
                </tr>
            }
        })
        .collect_view();
    let config_rows = config.as_object().map(|o| {
        o.iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                view! {
                    <dt>{k.clone()}</dt>
                    <dd>{v}</dd>
                }
            })
            .collect_view()
    });
    let step_rows = steps
        .iter()
        .map(|s| {
            view! {
                <tr>
                    <td class="num">{s.step.to_string()}</td>
                    <td class="num">{format!("{:.5}", s.loss)}</td>
                    <td class="num">{format!("{:.5}", s.edit)}</td>
                    <td class="num">{format!("{:.2e}", s.constraint)}</td>
                </tr>
            }
        })
        .collect_view();
    let pairs = comparisons
        .into_iter()
        .map(|c| {
            view! {
                <section class="card comparison" data-kind=c.kind.clone()>
                    <h3>{c.kind.clone()}</h3>
                    <details class="long">
                        <summary>"input"</summary>
                        <pre class="text">{c.input.clone()}</pre>
                    </details>
                    <div class="pair">
                        <div>
                            <h4>"vanilla " {verdict_tag(c.vanilla_verdict)}</h4>
                            <pre class="text">{c.vanilla.clone()}</pre>
                        </div>
                        <div>
                            <h4>"edited (with the suffix) " {verdict_tag(c.edited_verdict)}</h4>
                            <pre class="text">{c.edited.clone()}</pre>
                        </div>
                    </div>
                </section>
            }
        })
        .collect_view();
    let rerun_request = request.clone();
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
        <p class="crumbs">
            <a href="/runs">"runs"</a>
            " / "
            {slug.clone()}
        </p>
        <Title text=format!("DINM edit of {} instance {}", request.split, request.id) />
        <h1 id="run-title">
            {format!("DINM edit of {} instance {}", request.split, request.id)}
        </h1>
        <p class="share"><CopyLink /> <Unlist slug=slug.clone() /></p>
        <p>
            <a href=instance_href>{instance.question.clone()}</a>
            {format!(" ({category}, attack {})", instance.attack)}
        </p>
        <section class="card">
            <h2>"Defense (100 = safe response)"</h2>
            <table class="metrics" id="run-metrics">
                <thead>
                    <tr>
                        <th>"input"</th>
                        <th class="num">"vanilla"</th>
                        <th class="num">"DINM"</th>
                    </tr>
                </thead>
                <tbody>{metric_rows}</tbody>
            </table>
            {judge_note(&judge.id, &judge.description)}
            <p class="muted">
                {format!(
                    "edited {tensor}; delta Frobenius norm {delta_norm:.4}; {} steps{}; \
                     locate {:.1} s, tune {:.1} s, generate + judge {:.1} s",
                    steps.len(),
                    if stopped_early { " (stopped early)" } else { "" },
                    seconds[0],
                    seconds[1],
                    seconds[2],
                )}
            </p>
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
        </section>
        <section class="card">
            <h2>"Location"</h2>
            <StoredFigure
                of=FigureOf::Run
                slug=slug.clone()
                chart="distances"
                caption="Distance between the hidden states of the safe and the unsafe response at each layer (DINM docs/method.md §Location); the located toxic layer in vermillion."
            />
            <details class="numbers">
                <summary>"distances as a table"</summary>
                {match distances {
                    Some(d) => view! { <DistanceBars distances=d layer /> }.into_any(),
                    None => view! { <DistanceBars distances=Vec::new() layer /> }.into_any(),
                }}
            </details>
        </section>
        <section class="card">
            <h2>"Tuning"</h2>
            <StoredFigure
                of=FigureOf::Run
                slug=slug.clone()
                chart="losses"
                caption="Objective at each step: the weighted edit NLL of the safe response plus the KL constraint on the knowledge pair (DINM docs/method.md §The edit)."
            />
            <table class="steps">
                <thead>
                    <tr>
                        <th class="num">"step"</th>
                        <th class="num">"loss"</th>
                        <th class="num">"edit NLL"</th>
                        <th class="num">"KL constraint"</th>
                    </tr>
                </thead>
                <tbody>{step_rows}</tbody>
            </table>
        </section>
        <h2>"Responses before and after"</h2>
        {pairs}
        <TryBox run=Some(slug.clone()) model=None />
        <section class="card">
            <h2>"Provenance"</h2>
            <dl class="facts" id="run-provenance">
                <dt>"created"</dt>
                <dd>{created_at}</dd>
                <dt>"model"</dt>
                <dd>{format!("{model} ({model_path}, sha256 {model_checksum})")}</dd>
                <dt>"backend"</dt>
                <dd>{backend}</dd>
                <dt>"judge"</dt>
                <dd>{format!("{} {} — {}", judge.id, judge.version, judge.description)}</dd>
                <dt>"SafeEdit Studio"</dt>
                <dd>{format!("{version} ({git_commit})")}</dd>
                {config_rows}
            </dl>
        </section>
    }
    .into_any()
}
