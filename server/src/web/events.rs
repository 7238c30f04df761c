//! `GET /api/jobs/{id}/events?from=N`: a job's progress as server-sent events.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use safeedit_core::run::JobEvent;

use super::WebState;
use super::error::{WebError, WebResult};

#[derive(serde::Deserialize)]
pub(super) struct EventsQuery {
    from: Option<usize>,
}

/// `GET /api/jobs/{id}/events?from=N`: the job's events from the N-th on (or after the
/// `Last-Event-ID` a reconnecting client sends), as SSE messages (one
/// JSON [`safeedit_core::run::JobEvent`] each), until the job ends.
pub(super) async fn job_events(
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> WebResult {
    // A browser that reconnects says which event it saw last.
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map(|last| last + 1);
    let from = resumed.or(q.from).unwrap_or(0);
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
            .enumerate()
            .skip(from)
            .map(|(i, e)| Ok(sse(i, e)))
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
                let snapshot = job.snapshot();
                if let Some(event) = snapshot.events.get(next) {
                    let last = event.status().is_final();
                    let message = sse(next, event);
                    return Some((Ok::<_, Infallible>(message), (job, rx, next + 1, last)));
                }
                // Asked for events past the last one of a finished job: there are none to come.
                if snapshot.status.is_final() {
                    return None;
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

/// One SSE message: the event as JSON, its index as the message id (a client that reconnects
/// asks for `?from=` the next one).
fn sse(index: usize, event: &JobEvent) -> Event {
    Event::default()
        .id(index.to_string())
        .data(serde_json::to_string(event).expect("events serialise"))
}
