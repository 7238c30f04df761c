//! `/jobs/{id}`: a job's progress, streamed over SSE as it happens (queue position, the worker,
//! each phase with its count and ETA; for DINM edits the located layer with every layer's
//! distance and each step's loss; done or failed).

use leptos::prelude::*;
use leptos_meta::Title;
use safeedit_core::Method;
use safeedit_core::job::JobSpec;
use safeedit_core::run::{JobEvent, JobSnapshot, JobStatus};
use serde::{Deserialize, Serialize};

use crate::models::LossCurve;
use crate::record_page::record_page;
use crate::{cancel_job, job_page};

/// What the job page shows of a job: its header, worked out on the server from the job's
/// request (so the browser needs no code to read requests of every kind), and its events so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPageData {
    /// Job id.
    pub id: String,
    /// The request's title.
    pub title: String,
    /// The crumb above the title: where it leads, and its text.
    pub crumb: (String, String),
    /// A training (or a comparison that trains): the page draws its loss curves.
    pub trains: bool,
    /// A DINM edit of one instance: the page shows the located layer and the tuning steps.
    pub edits: bool,
    /// Status when the page was asked for.
    pub status: JobStatus,
    /// Every event so far.
    pub events: Vec<JobEvent>,
}

impl From<JobSnapshot> for JobPageData {
    fn from(snapshot: JobSnapshot) -> Self {
        let request = &snapshot.request;
        let crumb = match request {
            JobSpec::Edit(r) => (
                format!("/instances/{}/{}", r.split, r.id),
                format!("{} instance {}", r.split, r.id),
            ),
            JobSpec::Eval(_) => ("/results".to_string(), "Results".to_string()),
            JobSpec::General(g) => (
                format!("/evals/{}", g.eval),
                format!("evaluation {}", g.eval),
            ),
            JobSpec::TestAll(_) => ("/test-all".to_string(), "test_ALL".to_string()),
            JobSpec::Analyze(_) => ("/mechanisms".to_string(), "Mechanisms".to_string()),
            JobSpec::Train(_) => ("/models".to_string(), "Models".to_string()),
            JobSpec::Compare(_) => ("/mechanisms".to_string(), "Mechanisms".to_string()),
        };
        Self {
            title: request.title(),
            crumb,
            trains: matches!(request, JobSpec::Train(_) | JobSpec::Compare(_)),
            // Location and tuning belong to DINM edits of one instance.
            edits: matches!(request, JobSpec::Edit(r) if r.method == Method::Dinm),
            id: snapshot.id,
            status: snapshot.status,
            events: snapshot.events,
        }
    }
}

/// `/jobs/{id}`
#[component]
pub fn JobPage() -> impl IntoView {
    record_page("id", "Loading the job…", job_page, |job| {
        view! { <JobView job /> }
    })
}

#[component]
fn JobView(job: JobPageData) -> impl IntoView {
    let JobPageData {
        id,
        title,
        crumb: (crumb_href, crumb),
        trains,
        edits,
        status: status_then,
        events,
    } = job;
    let from = events.len();
    let events = RwSignal::new(events);
    // In the browser: follow the job over SSE from the events already shown.
    #[cfg(feature = "hydrate")]
    {
        let final_already = status_then.is_final();
        let id = id.clone();
        Effect::new(move |_| {
            if final_already {
                return;
            }
            follow(&id, from, events);
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (from, status_then);
    let status = move || {
        events
            .get()
            .last()
            .map_or(JobStatus::Queued, JobEvent::status)
    };
    let cancel_id = id.clone();
    let cancel = move |_| {
        let id = cancel_id.clone();
        leptos::task::spawn_local(async move {
            let _ = cancel_job(id).await;
        });
    };
    view! {
        <p class="crumbs">
            <a href=crumb_href>{crumb}</a>
            " / job "
            {id.clone()}
        </p>
        <Title text=title.clone() />
        <h1 id="job-title">{title}</h1>
        <p id="job-status" data-status=move || format!("{:?}", status()).to_lowercase()>
            {move || status_line(&events.get(), edits)}
        </p>
        {move || {
            current_progress(&events.get())
                .filter(|_| !status().is_final())
                .map(|p| {
                    view! {
                        <p class="job-progress">
                            <progress
                                id="job-progress"
                                max=p.total.to_string()
                                value=p.done.to_string()
                                data-done=p.done.to_string()
                                data-total=p.total.to_string()
                            ></progress>
                            " "
                            {p.line()}
                        </p>
                    }
                })
        }}
        {move || {
            (!status().is_final())
                .then(|| {
                    view! {
                        <button id="cancel-job" class="secondary" on:click=cancel.clone()>
                            "Cancel"
                        </button>
                    }
                })
        }}
        {move || {
            events
                .get()
                .iter()
                .find_map(JobEvent::result_path)
                .map(|path| {
                    view! {
                        <p class="done">
                            <a id="run-link" href=path.clone()>
                                "Open the result: "
                                {path.clone()}
                            </a>
                        </p>
                    }
                })
        }}
        {trains.then(|| view! {
            <section class="card">
                <h2>"Training loss"</h2>
                {move || {
                    let curves = loss_curves(&events.get());
                    let titled = curves.len() > 1;
                    curves
                        .into_iter()
                        .map(|(phase, points)| view! {
                            {titled.then(|| view! { <h3>{phase}</h3> })}
                            <LossCurve points />
                        })
                        .collect_view()
                }}
            </section>
        })}
        {edits.then(|| view! {
        <section class="card">
                <h2>"Location"</h2>
                {move || {
                    events
                        .get()
                        .iter()
                        .find_map(|e| match e {
                            JobEvent::Located { layer, distances } => {
                                Some(view! { <DistanceBars distances=distances.clone() layer=*layer /> }.into_any())
                            }
                            _ => None,
                        })
                        .unwrap_or_else(|| view! { <p class="muted">"not yet"</p> }.into_any())
                }}
            </section>
            <section class="card">
                <h2>"Tuning"</h2>
                <ol class="steps" id="job-steps">
                    {move || {
                        events
                            .get()
                            .iter()
                            .filter_map(|e| match e {
                                JobEvent::Step { step, loss } => {
                                    Some(view! { <li>{format!("step {step}: loss {loss:.5}")}</li> })
                                }
                                _ => None,
                            })
                            .collect_view()
                    }}
                </ol>
            </section>
        })}
    }
    .into_any()
}

/// The training steps' losses, one curve per training (a comparison trains two): each step
/// belongs to the phase last reported before it. One empty curve before the first step.
fn loss_curves(events: &[JobEvent]) -> Vec<(String, Vec<(usize, f64)>)> {
    let mut curves: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
    let mut phase = String::new();
    for event in events {
        match event {
            JobEvent::Progress(p) => phase.clone_from(&p.phase),
            JobEvent::Step { step, loss } => {
                match curves.iter_mut().find(|(name, _)| *name == phase) {
                    Some((_, points)) => points.push((*step, *loss)),
                    None => curves.push((phase.clone(), vec![(*step, *loss)])),
                }
            }
            _ => {}
        }
    }
    if curves.is_empty() {
        curves.push((String::new(), Vec::new()));
    }
    curves
}

/// The latest phase's progress, once a phase has begun.
fn current_progress(events: &[JobEvent]) -> Option<safeedit_core::job::JobProgress> {
    events.iter().rev().find_map(|e| match e {
        JobEvent::Progress(p) => Some(p.clone()),
        _ => None,
    })
}

fn status_line(events: &[JobEvent], edits: bool) -> String {
    match events.last() {
        None => "queued".into(),
        Some(JobEvent::Queued { ahead: 0 }) => "queued: starting next".into(),
        Some(JobEvent::Queued { ahead }) => format!("queued behind {ahead}"),
        Some(JobEvent::Started { .. }) if edits => "locating the toxic layer…".into(),
        Some(JobEvent::Started { worker }) => format!("started on worker {worker}"),
        Some(JobEvent::Progress(p)) => p.line(),
        Some(JobEvent::Located { layer, .. }) => format!("layer {layer} located; tuning…"),
        Some(JobEvent::Step { step, loss }) => format!("tuning: step {step}, loss {loss:.5}"),
        Some(JobEvent::Generating { responses }) if edits => {
            format!("generating {responses} responses (vanilla and edited)…")
        }
        Some(JobEvent::Generating { responses }) => format!("generating {responses} responses…"),
        Some(JobEvent::Judging) => "judging the responses…".into(),
        Some(JobEvent::Done { .. }) => "done".into(),
        Some(JobEvent::Failed { message }) => format!("failed: {message}"),
        Some(JobEvent::Cancelled) => "cancelled".into(),
    }
}

#[cfg(feature = "hydrate")]
fn follow(id: &str, from: usize, events: RwSignal<Vec<JobEvent>>) {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    let Ok(source) = web_sys::EventSource::new(&format!("/api/jobs/{id}/events?from={from}"))
    else {
        return;
    };
    let closer = source.clone();
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |msg: web_sys::MessageEvent| {
            let Some(text) = msg.data().as_string() else {
                return;
            };
            if let Ok(event) = crate::codec::from_json::<JobEvent>(&text) {
                let last = event.status().is_final();
                events.update(|e| e.push(event));
                if last {
                    closer.close();
                }
            }
        });
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
}

/// Per-layer distances as horizontal bars, the chosen layer marked.
#[component]
pub(crate) fn DistanceBars(distances: Vec<f32>, layer: usize) -> impl IntoView {
    if distances.is_empty() {
        return view! { <p id="located-layer">{format!("layer {layer} (fixed by the settings)")}</p> }
            .into_any();
    }
    let max = distances
        .iter()
        .copied()
        .fold(f32::MIN, f32::max)
        .max(f32::MIN_POSITIVE);
    let rows = distances
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let width = format!("width: {:.1}%", 100.0 * d / max);
            let class = if i == layer { "bar chosen" } else { "bar" };
            view! {
                <tr>
                    <td class="num">{i.to_string()}</td>
                    <td class="barcell">
                        <div class=class style=width></div>
                    </td>
                    <td class="num">{format!("{d:.3}")}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p id="located-layer" data-layer=layer.to_string()>
            {format!("toxic layer: {layer} (largest distance between safe and unsafe hidden states)")}
        </p>
        <table class="bars">
            <thead>
                <tr>
                    <th class="num">"layer"</th>
                    <th>"distance"</th>
                    <th class="num"></th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(spec: &str) -> JobPageData {
        JobSnapshot {
            id: "j1".into(),
            request: serde_json::from_str(spec).unwrap(),
            status: JobStatus::Running,
            events: vec![JobEvent::Started {
                worker: "w0".into(),
            }],
        }
        .into()
    }

    #[test]
    fn the_server_works_out_the_header_each_kind_of_job_gets() {
        let edit = page(r#"{"kind": "edit", "split": "test", "id": 7}"#);
        assert_eq!(edit.title, "Detoxifying test instance 7");
        assert_eq!(
            edit.crumb,
            ("/instances/test/7".into(), "test instance 7".into())
        );
        assert!(edit.edits && !edit.trains);
        assert_eq!((edit.id.as_str(), edit.events.len()), ("j1", 1));
        let vanilla = page(r#"{"kind": "edit", "split": "test", "id": 7, "method": "vanilla"}"#);
        assert!(!vanilla.edits && !vanilla.trains);
        let train = page(r#"{"kind": "train", "objective": "sft"}"#);
        assert!(train.trains && !train.edits);
        assert_eq!(train.crumb.0, "/models");
        let eval = page(r#"{"kind": "eval", "method": "vanilla", "split": "test"}"#);
        assert_eq!(eval.crumb, ("/results".into(), "Results".into()));
        assert!(!eval.trains && !eval.edits);
    }
}
