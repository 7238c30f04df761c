//! The engine's error type: one enum, structured variants, each naming the file and the field or
//! tensor it is about.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A required file is not where it was expected.
    #[error("{path}: file not found ({what})")]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
        /// What the file is for, e.g. "model config".
        what: &'static str,
    },

    /// A JSON file (config.json, tokenizer_config.json, an index) is malformed or lacks a field.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// serde's message, which names the field and the line.
        message: String,
    },

    /// A config field has a value the engine cannot use.
    #[error("{path}: field `{field}`: {message}")]
    Config {
        /// The config file (or a description such as "GGUF metadata of <file>").
        path: PathBuf,
        /// The field name as written in the file.
        field: String,
        /// What is wrong.
        message: String,
    },

    /// The checkpoint's architecture is not one the engine implements.
    #[error(
        "{path}: unsupported model_type `{model_type}` (supported: llama, mistral, and other \
         LLaMA-family checkpoints)"
    )]
    UnsupportedModel {
        /// The config file.
        path: PathBuf,
        /// The value found.
        model_type: String,
    },

    /// A tensor the model needs is absent from the weights.
    #[error("{path}: missing tensor `{tensor}`")]
    MissingTensor {
        /// The weights file (or index) that was searched.
        path: PathBuf,
        /// The HF name of the tensor.
        tensor: String,
    },

    /// A tensor exists but has the wrong shape.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The weights file.
        path: PathBuf,
        /// The HF name of the tensor.
        tensor: String,
        /// The shape that the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },

    /// A tensor is stored in a data type the loader does not convert.
    #[error("{path}: tensor `{tensor}` has unsupported dtype {dtype}")]
    TensorDtype {
        /// The weights file.
        path: PathBuf,
        /// The tensor name as stored.
        tensor: String,
        /// The dtype as stored.
        dtype: String,
    },

    /// A weights file is malformed (bad header, truncated data, bad offsets).
    #[error("{path}: malformed {format} file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// "GGUF" or "safetensors".
        format: &'static str,
        /// What is wrong, with the byte offset or tensor where known.
        message: String,
    },

    /// The tokenizer could not be built or used.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer {
        /// The tokenizer file (or the GGUF file it came from).
        path: PathBuf,
        /// The message.
        message: String,
    },

    /// A chat template could not be parsed or rendered.
    #[error("chat template: {0}")]
    Template(String),

    /// An argument passed to the engine is out of range (empty prompt, too long, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The caller asked the work to stop (a cancelled job): generation between two tokens, an
    /// edit between two optimisation steps.
    #[error("interrupted after {done} {unit}")]
    Interrupted {
        /// Items done before the stop (tokens over all rows, or steps).
        done: usize,
        /// What was counted.
        unit: &'static str,
    },
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, format: &'static str, message: String) -> Self {
        EngineError::Format {
            path: path.into(),
            format,
            message,
        }
    }
}
