//! The Judge page's data (`GET /api/judge`, and the `/judge` page through the app's server
//! function): the judge this server scores with, the built-in judge's held-out report, the judges
//! of the stored evaluations, and the readers' flags with their responses.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use safeedit_core::judge_page::JudgePage;
use safeedit_pipeline::judge;

use super::error::{WebError, WebResult};
use super::{WebState, public};

/// `GET /api/judge`.
pub(super) async fn page(State(state): State<WebState>) -> WebResult {
    Ok(Json(judge_page(&state).await?).into_response())
}

/// Assembles the Judge page from the database (the API's and the page's way in).
pub(super) async fn judge_page(state: &WebState) -> Result<JudgePage, WebError> {
    let in_use = judge::judge_in_use(state.judge_dir.as_deref())
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let built_in = judge::default_head()
        .map_err(|e| WebError::Internal(e.to_string()))?
        .report();
    // Unlisted evaluations (and so their flags) stay off this page, as off every listing.
    let evals = state.store.list_evals().await?;
    let evals = state.store.listed(evals, |e| Some(&e.slug), &[]).await?;
    let listed: std::collections::HashSet<&str> = evals.iter().map(|e| e.slug.as_str()).collect();
    let mut flags = state.store.all_verdict_flags().await?;
    flags.retain(|(slug, _)| listed.contains(slug.as_str()));
    let mut instances = HashMap::new();
    for (slug, _) in &flags {
        if !instances.contains_key(slug) {
            instances.insert(slug.clone(), state.store.eval_instances(slug).await?);
        }
    }
    let page = JudgePage::build(in_use, built_in, &evals, flags, &instances);
    Ok(public::record(page))
}
