//! Verdict flags (the README's "Judge" section): a reader who thinks the judge got a response of
//! an evaluation wrong flags it; the evaluation page shows the flag beside the verdict, and the
//! metric downloads can be recomputed with the human verdicts (`?verdicts=human`).
//!
//! - `GET /api/evals/{slug}/flags`: `{"flags": [...]}`, by instance and input.
//! - `POST /api/evals/{slug}/flags` with `{"instance", "kind", "note"?}`: `201 {"flag"}`; 400
//!   naming the field that is wrong (no such instance or input, an empty response, a long note).
//! - `DELETE /api/evals/{slug}/flags/{instance}/{kind}`: `{"removed": true}`; 404 when not
//!   flagged.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use safeedit_core::flag::{FlagRequest, VerdictFlag, flag_for};
use safeedit_store::{Store, now_rfc3339};
use serde_json::json;

use super::WebState;
use super::error::{WebError, WebResult};
use super::files::found;

/// `GET /api/evals/{slug}/flags`.
pub(super) async fn list(State(state): State<WebState>, Path(slug): Path<String>) -> WebResult {
    found(state.store.eval(&slug).await?, "evaluation", &slug)?;
    let flags = state.store.verdict_flags(&slug).await?;
    Ok(Json(json!({ "flags": flags })).into_response())
}

/// `POST /api/evals/{slug}/flags`.
pub(super) async fn set(
    State(state): State<WebState>,
    Path(slug): Path<String>,
    body: Bytes,
) -> WebResult {
    let request: FlagRequest = serde_json::from_slice(&body)
        .map_err(|e| WebError::BadRequest(format!("flag request: {e}")))?;
    let flag = set_flag(&state.store, &slug, request).await?;
    Ok((StatusCode::CREATED, Json(json!({ "flag": flag }))).into_response())
}

/// `DELETE /api/evals/{slug}/flags/{instance}/{kind}`.
pub(super) async fn clear(
    State(state): State<WebState>,
    Path((slug, instance, kind)): Path<(String, String, String)>,
) -> WebResult {
    let instance: u64 = instance.parse().map_err(|_| {
        WebError::BadRequest(format!("instance: `{instance}` is not an instance id"))
    })?;
    clear_flag(&state.store, &slug, instance, &kind).await?;
    Ok(Json(json!({ "removed": true })).into_response())
}

/// Stores the flag `request` sets on evaluation `slug` (the API's and the page's way in).
pub(super) async fn set_flag(
    store: &Store,
    slug: &str,
    request: FlagRequest,
) -> Result<VerdictFlag, WebError> {
    found(store.eval(slug).await?, "evaluation", slug)?;
    let instances = store.eval_instances(slug).await?;
    let flag = flag_for(&instances, request, now_rfc3339()).map_err(WebError::BadRequest)?;
    store.set_verdict_flag(slug, &flag).await?;
    tracing::info!(
        slug,
        instance = flag.instance,
        kind = flag.kind,
        "verdict flagged"
    );
    Ok(flag)
}

/// Removes the flag on instance `instance`'s input `kind` of evaluation `slug`; 404 when the
/// evaluation or the flag does not exist.
pub(super) async fn clear_flag(
    store: &Store,
    slug: &str,
    instance: u64,
    kind: &str,
) -> Result<(), WebError> {
    found(store.eval(slug).await?, "evaluation", slug)?;
    if !store.clear_verdict_flag(slug, instance, kind).await? {
        return Err(WebError::NotFound(format!(
            "no flag on instance {instance} {kind} of evaluation `{slug}`"
        )));
    }
    tracing::info!(slug, instance, kind, "verdict flag removed");
    Ok(())
}
