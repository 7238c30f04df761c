//! `GET /api/jobs/{id}/events?from=N`: a job's progress as server-sent events.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use safeedit_core::run::JobEvent;

use super::WebState;
use super::error::{WebError, WebResult};

#[derive(serde::Deserialize)]
pub(super) struct EventsQuery {
    from: Option<usize>,
}

/// `GET /api/jobs/{id}/events?from=N`: the job's events from the N-th on, as SSE messages (one
/// JSON [`safeedit_core::run::JobEvent`] each), until the job ends.
pub(super) async fn job_events(
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> WebResult {
    let from = q.from.unwrap_or(0);
    let jobs = &state.jobs;
    let Some(job) = jobs.get(&id) else {
        // A job of an earlier process: its final state, if the database knows it.
        let snapshot = jobs
            .snapshot(&id)
            .await?
            .ok_or_else(|| WebError::NotFound(format!("no job `{id}`")))?;
        let events: Vec<Result<Event, Infallible>> = snapshot
            .events
            .iter()
            .skip(from)
            .map(|e| Ok(sse(e)))
            .collect();
        return Ok(Sse::new(futures::stream::iter(events)).into_response());
    };
    let rx = job.subscribe();
    let stream = futures::stream::unfold(
        (job, rx, from, false),
        |(job, mut rx, next, finished)| async move {
            if finished {
                return None;
            }
            loop {
                let event = job.snapshot().events.get(next).cloned();
                if let Some(event) = event {
                    let last = event.status().is_final();
                    return Some((Ok::<_, Infallible>(sse(&event)), (job, rx, next + 1, last)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One SSE message: the event as JSON.
fn sse(event: &JobEvent) -> Event {
    Event::default().data(serde_json::to_string(event).expect("events serialise"))
}
