//! [`AppError`]: what a server function can answer instead of its value, typed across the
//! server-function boundary (JSON on the wire). On the server each variant sets its HTTP status,
//! so a client's mistake is a 400 naming the field, an unknown record a 404 and a full queue a
//! 503 — decided by the variant, not by reading the message.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// A server function's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// The request is malformed or out of range (the message names the field): 400.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// No such record: 404.
    #[error("{0}")]
    NotFound(String),
    /// The job queue is full: 503.
    #[error("busy: {0}")]
    Busy(String),
    /// The server's own failure: 500.
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    /// The HTTP status of the error.
    pub fn status(&self) -> u16 {
        match self {
            AppError::BadRequest(_) => 400,
            AppError::NotFound(_) => 404,
            AppError::Busy(_) => 503,
            AppError::Internal(_) => 500,
        }
    }

    /// The message, at most [`MAX_MESSAGE`] characters: a message that repeats a huge input
    /// is cut, saying how much was left out.
    pub fn capped(self) -> Self {
        let cap = |m: String| cap_message(&m).unwrap_or(m);
        match self {
            AppError::BadRequest(m) => AppError::BadRequest(cap(m)),
            AppError::NotFound(m) => AppError::NotFound(cap(m)),
            AppError::Busy(m) => AppError::Busy(cap(m)),
            AppError::Internal(m) => AppError::Internal(cap(m)),
        }
    }

    /// When the current request is the server-function call itself (`/api/...`), sets its
    /// response's status to the error's. A page that calls the function while it renders keeps
    /// its own status (it shows the message), and in the browser this does nothing. The message
    /// is [capped](AppError::capped).
    pub fn respond(self) -> Self {
        let this = self.capped();
        #[cfg(feature = "ssr")]
        {
            use leptos::prelude::use_context;
            let api_call = use_context::<axum::http::request::Parts>()
                .is_some_and(|parts| parts.uri.path().starts_with("/api/"));
            if let (true, Some(response)) =
                (api_call, use_context::<leptos_axum::ResponseOptions>())
            {
                let status = axum::http::StatusCode::from_u16(this.status())
                    .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                response.set_status(status);
            }
        }
        this
    }
}

/// The most characters of an error message sent to a client.
pub const MAX_MESSAGE: usize = 400;

/// `message` cut to [`MAX_MESSAGE`] characters with a note of how many were left out; `None`
/// when it is short enough already.
pub fn cap_message(message: &str) -> Option<String> {
    let total = message.chars().count();
    (total > MAX_MESSAGE).then(|| {
        let kept: String = message.chars().take(MAX_MESSAGE).collect();
        format!("{kept}… ({} more characters)", total - MAX_MESSAGE)
    })
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // Arguments that do not decode are the request's fault.
            e @ (ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_)) => {
                AppError::BadRequest(e.to_string()).respond()
            }
            // On the server, what fails to deserialize is the request's body.
            #[cfg(feature = "ssr")]
            ServerFnErrorErr::Deserialization(m) => {
                AppError::BadRequest(format!("the arguments do not parse: {m}")).respond()
            }
            other => AppError::Internal(other.to_string()).respond(),
        }
    }
}

/// Results of server functions.
pub type AppResult<T> = Result<T, AppError>;
