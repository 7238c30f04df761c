//! [`PipelineError`]: what an experiment reports when it cannot go on, with the file, field or
//! setting it is about.

use std::path::{Path, PathBuf};

use safeedit_core::general::GeneralDataError;
use safeedit_core::safeedit::DataError;
use safeedit_engine::EngineError;
use safeedit_figures::FigureError;
use safeedit_store::StoreError;

/// Why an experiment failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The plan cannot run: a setting out of range, an unknown name, missing data.
    #[error("{0}")]
    Invalid(String),
    /// The output folder holds a different run than the one asked for.
    #[error("{} holds a run with a different `{key}` ({existing} vs {requested}); use another --out", path.display())]
    RunMismatch {
        /// The run description (`run.json`).
        path: PathBuf,
        /// The setting that differs.
        key: String,
        /// Its value in the folder.
        existing: serde_json::Value,
        /// Its value now.
        requested: serde_json::Value,
    },
    /// Some instances failed; the others are written and summarised.
    #[error("{failures} instance(s) failed (the summary covers the others); see {}", errors.display())]
    InstancesFailed {
        /// How many.
        failures: usize,
        /// Where their errors are (`errors.jsonl`).
        errors: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what it should be (JSON that does not parse, a missing field).
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the line or field.
        message: String,
    },
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// SafeEdit data that does not parse.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A general-performance data file that does not parse.
    #[error(transparent)]
    GeneralData(#[from] GeneralDataError),
    /// The engine (model, tokenizer, edit, judge).
    #[error(transparent)]
    Engine(EngineError),
    /// The runs database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A figure.
    #[error(transparent)]
    Figure(#[from] FigureError),
    /// What was being done when `source` happened.
    #[error("{message}: {source}")]
    Context {
        /// What was being done.
        message: String,
        /// What went wrong.
        source: Box<PipelineError>,
    },
}

/// Results of this crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

impl PipelineError {
    /// The same error about a field of the part `part` of a request: `part.field: …` for an
    /// invalid setting (whose message starts with its field's name), anything else as it is.
    pub fn within(self, part: &str) -> Self {
        match self {
            PipelineError::Invalid(message) => PipelineError::Invalid(format!("{part}.{message}")),
            other => other,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        PipelineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A malformed file.
    pub fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        PipelineError::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    /// The error under any context layers.
    pub fn root(&self) -> &PipelineError {
        match self {
            PipelineError::Context { source, .. } => source.root(),
            other => other,
        }
    }

    /// Whether the plan itself is at fault (a client's mistake, not the server's).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self.root(),
            PipelineError::Invalid(_) | PipelineError::RunMismatch { .. }
        )
    }
}

/// Adds what was being done to an error, as `anyhow::Context` does.
impl From<EngineError> for PipelineError {
    /// An engine stopped at the caller's request is a cancellation, not a failure.
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Interrupted { .. } => PipelineError::Cancelled,
            other => PipelineError::Engine(other),
        }
    }
}

pub trait ResultExt<T> {
    /// Wraps the error with `message` (a cancellation stays what it is).
    fn context(self, message: impl Into<String>) -> Result<T>;
    /// Wraps the error with a message computed only on failure (a cancellation stays what it
    /// is).
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E: Into<PipelineError>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, message: impl Into<String>) -> Result<T> {
        self.with_context(|| message)
    }

    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| match e.into() {
            PipelineError::Cancelled => PipelineError::Cancelled,
            e => PipelineError::Context {
                message: message().into(),
                source: Box::new(e),
            },
        })
    }
}

/// Returns `PipelineError::Invalid(format!(...))` unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::PipelineError::Invalid(format!($($msg)+)));
        }
    };
}

/// Returns `PipelineError::Invalid(format!(...))`.
#[macro_export]
macro_rules! bail {
    ($($msg:tt)+) => {
        return Err($crate::PipelineError::Invalid(format!($($msg)+)))
    };
}
