//! [`WebError`]: every way an API request can fail, each with its status code. Handlers return
//! `Result<Response, WebError>` and use `?`; the status comes from the variant, never from text.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use safeedit_figures::FigureError;
use safeedit_store::StoreError;

/// An API error; the body is its message (plain text).
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The request is malformed or out of range (the message names the field).
    #[error("{0}")]
    BadRequest(String),
    /// No such record, file or chart.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with the record's state (cancelling a finished job).
    #[error("{0}")]
    Conflict(String),
    /// The job queue is full; try again later.
    #[error("{0}")]
    Busy(String),
    /// The server's own failure (the database, drawing a figure).
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    /// The HTTP status of the error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::Internal(message) = &self {
            tracing::error!("request failed: {message}");
        }
        let message = self.to_string();
        let message = app::error::cap_message(&message).unwrap_or(message);
        (self.status_code(), message).into_response()
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        WebError::Internal(e.to_string())
    }
}

impl From<FigureError> for WebError {
    fn from(e: FigureError) -> Self {
        match e {
            FigureError::UnknownName { .. } => WebError::BadRequest(e.to_string()),
            other => WebError::Internal(other.to_string()),
        }
    }
}

/// Results of handlers.
pub type WebResult<T = Response> = Result<T, WebError>;
