//! The page of one stored edit run (`/runs/{slug}`), rendered to HTML on the server with its
//! charts (see `server_html.rs`); its actions and try box run in the browser (`run.rs`).

use leptos::prelude::*;
use safeedit_core::Category;
use safeedit_core::run::{EditOutcome, EditRequest, FigureSvg, RunRecord};

use crate::figure::FigureCard;
use crate::job::DistanceBars;
use crate::judge_note::judge_note;
use crate::server_html::RenderedPage;
use crate::try_box::verdict_tag;

/// The run's page around its interactive parts: `body` holds the part above the actions (the
/// question and the defense table), the part between the actions and the try box (location,
/// tuning, responses), and the provenance; `distances_figure` and `losses_figure` are its charts
/// as drawn. Also the request, for "Re-run with this config".
pub(crate) fn render(
    run: RunRecord,
    distances_figure: Option<FigureSvg>,
    losses_figure: Option<FigureSvg>,
) -> (RenderedPage, EditRequest) {
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
    let figure = |svg: Option<FigureSvg>, chart: &str, caption: &str| {
        let base = format!("/api/runs/{slug}/figures/{chart}");
        svg.map(|figure| view! { <FigureCard figure base caption=caption.to_string() /> })
    };
    let title = format!("DINM edit of {} instance {}", request.split, request.id);
    let head = view! {
        <p class="crumbs">
            <a href="/runs">"runs"</a>
            " / "
            {slug.clone()}
        </p>
        <h1 id="run-title">
            {format!("DINM edit of {} instance {}", request.split, request.id)}
        </h1>
    }
    .to_html();
    let top = view! {
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
        </section>
    }
    .to_html();
    let middle = view! {
        <section class="card">
            <h2>"Location"</h2>
            {figure(distances_figure, "distances", "Distance between the hidden states of the safe and the unsafe response at each layer (DINM docs/method.md §Location); the located toxic layer in vermillion.")}
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
            {figure(losses_figure, "losses", "Objective at each step: the weighted edit NLL of the safe response plus the KL constraint on the knowledge pair (DINM docs/method.md §The edit).")}
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
    }
    .to_html();
    let bottom = view! {
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
    .to_html();
    let page = RenderedPage {
        title,
        head,
        body: vec![top, middle, bottom],
        unlist: Some(slug),
    };
    (page, request)
}
