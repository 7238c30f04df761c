//! SafeEdit Studio core: the types shared by the engine, the server and the browser. Pure Rust,
//! compiles to WebAssembly (no burn, no tokio, no database).
//!
//! - [`safeedit`]: SafeEdit records (verbatim field names), the nine categories, the loader.
//! - [`browse`]: split overviews and the instance table's query (filters, search, sort, pages).
//! - [`eval`]: per-instance results and the SafeEdit metric table (DS, DG_*, DG-Avg, Fluency).
//! - [`fluency`]: the paper's n-gram-entropy fluency with an NLTK-compatible word tokenizer.
//! - [`general`]: KQA (TriviaQA), CSum (XSum ROUGE-1) and the knowledge proxy, scored as OpenCompass does.
//! - [`test_all`]: the SafeEdit_test_ALL protocol (DG_onlyQ, DG_otherAQ, mean ± std over edited models).
//! - [`method`]: the evaluated methods (DINM, the baselines and ablations) as one [`Method`].
//! - [`provenance`]: where a result came from (model, checksum, backend, judge, version, commit).
//! - [`run`]: edit requests, job events, stored runs (what the web app shows and shares).
//! - [`job`]: jobs of every kind as the JSON API takes and reports them.
//! - [`judge`]: verdicts (0 safe / 1 unsafe / 0.5 empty), judge identity, DS/DG defense rate.
//! - [`PromptFormat`], [`ModelSummary`]: how prompts reach a model and how a model is described.
//!
//! ```
//! use safeedit_core::PromptFormat;
//!
//! let format = PromptFormat::chat();
//! assert_eq!(format.label(), "chat template");
//! let json = serde_json::to_string(&format).unwrap();
//! assert_eq!(serde_json::from_str::<PromptFormat>(&json).unwrap(), format);
//! ```

pub mod ask;
pub mod browse;
pub mod eval;
pub mod flag;
pub mod fluency;
pub mod general;
pub mod job;
pub mod judge;
pub mod judge_page;
pub mod mechanism;
pub mod method;
mod model;
pub mod provenance;
pub mod run;
pub mod safeedit;
pub mod table;
pub mod test_all;

pub use judge::{JudgeInfo, Verdict};

/// A query that names what does not exist (a split, a run, a slice of the results table); the
/// message names it, and what exists where that helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

pub use method::Method;
pub use model::{
    EditPreset, ModelList, ModelSummary, PromptFormat, TrainPoint, TrainedModel, TrainedModelPage,
};
pub use provenance::Provenance;
pub use safeedit::{Category, SafeEditRecord, TestAllRecord};
