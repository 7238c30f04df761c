//! The jobs' JSON API (the README's "JSON API" section): `POST /api/jobs` queues a job of any
//! kind, `GET /api/jobs/{id}` reports it, `POST /api/jobs/{id}/cancel` cancels it; `GET
//! /api/models` lists the models jobs may name. The event stream is in [`super::events`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use safeedit_core::ModelList;
use safeedit_core::job::JobSpec;
use serde_json::json;

use super::WebState;
use super::error::{WebError, WebResult};
use super::jobs::SubmitError;
use super::public;

/// `POST /api/jobs` with a JSON [`JobSpec`] (and optionally `"unlisted": true`): `202 {"id",
/// "url"}`; 400 naming the field that is wrong; 503 when the queue is full.
pub(super) async fn submit(State(state): State<WebState>, body: Bytes) -> WebResult {
    let bad = |e: serde_json::Error| WebError::BadRequest(format!("job request: {e}"));
    let mut body: serde_json::Value = serde_json::from_slice(&body).map_err(bad)?;
    // `"unlisted": true` beside the job's fields: its records stay off every list.
    let unlisted = match body.as_object_mut().and_then(|o| o.remove("unlisted")) {
        None => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "job request: unlisted: expected true or false, got {other}"
            )));
        }
    };
    let spec: JobSpec = serde_json::from_value(body).map_err(bad)?;
    match state.jobs.submit_with(spec, unlisted).await {
        Ok((id, ahead)) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "url": format!("/jobs/{id}"), "ahead": ahead})),
        )
            .into_response()),
        Err(SubmitError::Invalid(message)) => Err(WebError::BadRequest(message)),
        Err(e @ SubmitError::Busy(_)) => Err(WebError::Busy(e.to_string())),
        Err(SubmitError::Other(e)) => Err(WebError::Internal(format!("{e:#}"))),
    }
}

/// `GET /api/jobs/{id}`: the job's state, progress, worker, result and error.
pub(super) async fn info(State(state): State<WebState>, Path(id): Path<String>) -> WebResult {
    let info = state
        .jobs
        .info(&id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("no job `{id}`")))?;
    Ok(Json(info).into_response())
}

/// `POST /api/jobs/{id}/cancel`: `{"cancelled": true}` (a queued job at once, a running one at
/// its next check); 404 for an unknown job, 409 for one that has ended.
pub(super) async fn cancel(State(state): State<WebState>, Path(id): Path<String>) -> WebResult {
    if state.jobs.cancel(&id).await {
        return Ok(Json(json!({"cancelled": true})).into_response());
    }
    match state.jobs.info(&id).await? {
        None => Err(WebError::NotFound(format!("no job `{id}`"))),
        Some(info) => Err(WebError::Conflict(format!(
            "job `{id}` has ended ({})",
            serde_json::to_value(info.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ))),
    }
}

/// `GET /api/models`: the loaded model and every trained model, newest first (jobs name them).
pub(super) async fn models(State(state): State<WebState>) -> WebResult {
    // Model cards are small files: read in place.
    Ok(Json(public::record(ModelList {
        loaded: (*state.model).clone(),
        trained: state.jobs.models().list(),
    }))
    .into_response())
}

/// `GET /api/models/{name}`: a trained model's card and training log; 404 for an unknown name.
pub(super) async fn model(State(state): State<WebState>, Path(name): Path<String>) -> WebResult {
    let page = state
        .jobs
        .models()
        .page(&name)
        .map_err(|e| WebError::Internal(e.to_string()))?
        .ok_or_else(|| WebError::NotFound(format!("no trained model `{name}`")))?;
    Ok(Json(public::record(page)).into_response())
}
