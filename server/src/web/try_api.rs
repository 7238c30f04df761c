//! Trying the model: `POST /api/try` (and the try box of run and model pages, through the same
//! service) answers one prompt with the loaded model and an edited one, side by side, judged.
//! Tries run beside the job queue, not in it (the model is shared read-only), one at a time: a
//! second try while one is answered is told the server is busy.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use safeedit_core::ask::{TryRequest, TryResponse};
use safeedit_engine::judge::SafetyJudge;
use safeedit_engine::threads::OwnPool;
use safeedit_pipeline::ask::{self, Counterpart, Side};
use safeedit_pipeline::backend::Model;
use safeedit_pipeline::models::ModelsDir;
use safeedit_pipeline::{PipelineError, judge};
use safeedit_store::Store;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;

use super::WebState;
use super::error::{WebError, WebResult};

/// What a try needs: the loaded model, the judge (loaded at the first try), the runs and their
/// deltas, the trained models; the last edited model is kept for the next try.
pub struct TryService {
    model: Arc<Model>,
    judge_dir: Option<PathBuf>,
    judge: Mutex<Option<Arc<dyn SafetyJudge>>>,
    store: Store,
    deltas: PathBuf,
    models: ModelsDir,
    /// One try at a time.
    slot: Semaphore,
    /// The threads a try computes on (one try at a time, so nothing else runs there; jobs have
    /// their own).
    pool: Arc<OwnPool>,
    /// The last edited side (`run:{slug}` or `model:{name}`).
    last: Mutex<Option<(String, Arc<Counterpart>)>>,
}

impl TryService {
    /// The service over the loaded model.
    pub fn new(
        model: Arc<Model>,
        judge_dir: Option<PathBuf>,
        store: Store,
        deltas: PathBuf,
        models: ModelsDir,
    ) -> Self {
        Self {
            model,
            judge_dir,
            judge: Mutex::new(None),
            store,
            deltas,
            models,
            slot: Semaphore::new(1),
            pool: Arc::new(OwnPool::new("try")),
            last: Mutex::new(None),
        }
    }

    fn judge(&self) -> Result<Arc<dyn SafetyJudge>, PipelineError> {
        let mut slot = self.judge.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(judge) = slot.as_ref() {
            return Ok(judge.clone());
        }
        let judge: Arc<dyn SafetyJudge> = Arc::from(judge::load_judge(self.judge_dir.as_deref())?);
        *slot = Some(judge.clone());
        Ok(judge)
    }

    /// Answers a try; the error's status says whose fault it is.
    pub async fn answer(&self, request: TryRequest) -> Result<TryResponse, WebError> {
        self.answer_with(request, None).await
    }

    /// Whether a try is being answered now (a new one would be told the server is busy).
    fn busy(&self) -> bool {
        self.slot.available_permits() == 0
    }

    /// Answers a try, sending each answer's text so far to `texts` as it is generated.
    async fn answer_with(
        &self,
        request: TryRequest,
        texts: Option<UnboundedSender<(Side, String)>>,
    ) -> Result<TryResponse, WebError> {
        request.check().map_err(WebError::BadRequest)?;
        let max_new_tokens = request.token_limit().map_err(WebError::BadRequest)?;
        let Ok(_permit) = self.slot.try_acquire() else {
            return Err(WebError::Busy(
                "busy: another prompt is being answered; try again in a moment".into(),
            ));
        };
        let (key, run) = match (&request.run, &request.model) {
            (Some(slug), _) => {
                let run = self
                    .store
                    .run(slug)
                    .await
                    .map_err(|e| WebError::Internal(e.to_string()))?
                    .ok_or_else(|| WebError::NotFound(format!("run: no edit run `{slug}`")))?;
                (format!("run:{slug}"), Some(run))
            }
            (None, Some(name)) => (format!("model:{name}"), None),
            (None, None) => unreachable!("checked"),
        };
        let cached = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, c)| c.clone());
        let model = self.model.clone();
        let deltas = self.deltas.clone();
        let models = self.models.clone();
        let judge = self.judge();
        let name = request.model.clone();
        let prompt = request.prompt.clone();
        let pool = self.pool.clone();
        let (counterpart, response) = tokio::task::spawn_blocking(move || {
            pool.run(move || {
                let judge = judge?;
                let counterpart = match (cached, run, name) {
                    (Some(c), _, _) => c,
                    (None, Some(run), _) => {
                        let delta = deltas.join(format!("{}.safetensors", run.slug));
                        if !delta.is_file() {
                            return Err(PipelineError::Invalid(format!(
                                "run: `{}` has no saved delta in this server's data folder",
                                run.slug
                            )));
                        }
                        Arc::new(Counterpart::edit_run(&model, &run, &delta)?)
                    }
                    (None, None, Some(name)) => {
                        Arc::new(Counterpart::trained(&models, &name, model.weight_dtype())?)
                    }
                    (None, None, None) => unreachable!("checked"),
                };
                let response = ask::answer_streamed(
                    &model,
                    judge.as_ref(),
                    &counterpart,
                    &prompt,
                    max_new_tokens,
                    &mut |side, text| {
                        if let Some(tx) = &texts {
                            // A closed stream (the browser left) only stops the updates.
                            let _ = tx.send((side, text.to_string()));
                        }
                    },
                )?;
                Ok((counterpart, response))
            })
        })
        .await
        .map_err(|e| WebError::Internal(format!("the try panicked: {e}")))?
        .map_err(|e| match e {
            PipelineError::Invalid(message) if message.contains("no trained model") => {
                WebError::NotFound(message)
            }
            PipelineError::Invalid(message) => WebError::BadRequest(message),
            other => WebError::Internal(other.to_string()),
        })?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, counterpart));
        Ok(response)
    }
}

/// `POST /api/try` with a JSON [`TryRequest`]: both answers with verdicts; 400 naming the field,
/// 404 for an unknown run or model, 503 while another try is answered.
pub(super) async fn try_prompt(State(state): State<WebState>, body: Bytes) -> WebResult {
    let request: TryRequest = serde_json::from_slice(&body)
        .map_err(|e| WebError::BadRequest(format!("try request: {e}")))?;
    Ok(Json(state.tries.answer(request).await?).into_response())
}

/// `GET /api/try/stream?run=SLUG|model=NAME&prompt=...&max_new_tokens=N`: the same try as
/// `POST /api/try`, as server-sent events: `text` (`{"side": "vanilla"|"edited", "text"}`, each
/// answer so far, after every token; vanilla first), then `answer` (the JSON of `POST /api/try`)
/// or `error` (the message). A bad request is a 400 and a busy server a 503 before the stream
/// starts; an unknown run or model arrives as an `error` event.
pub(super) async fn try_stream(
    State(state): State<WebState>,
    Query(request): Query<TryRequest>,
) -> WebResult {
    request.check().map_err(WebError::BadRequest)?;
    request.token_limit().map_err(WebError::BadRequest)?;
    if state.tries.busy() {
        return Err(WebError::Busy(
            "busy: another prompt is being answered; try again in a moment".into(),
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Side, String)>();
    let tries = state.tries.clone();
    let answered = tokio::spawn(async move { tries.answer_with(request, Some(tx)).await });
    let texts = futures::stream::unfold(rx, |mut rx| async move {
        let (side, text) = rx.recv().await?;
        let data = serde_json::json!({"side": side.name(), "text": text}).to_string();
        Some((Event::default().event("text").data(data), rx))
    });
    // Once the texts end (the answer's task dropped its sender), the result.
    let last = futures::stream::once(async move {
        match answered.await {
            Ok(Ok(response)) => Event::default()
                .event("answer")
                .data(serde_json::to_string(&response).unwrap_or_default()),
            Ok(Err(e)) => Event::default().event("error").data(e.to_string()),
            Err(e) => Event::default()
                .event("error")
                .data(format!("the try stopped: {e}")),
        }
    });
    use futures::StreamExt;
    let stream = texts.chain(last).map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
