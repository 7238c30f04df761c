//! What can go wrong with the runs database.

use std::path::PathBuf;

/// A database error, naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data folder could not be created.
    #[error("creating {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("opening the database {url}: {source}")]
    Open {
        /// The URL (SQLite file or server).
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The migrations could not be applied.
    #[error("applying database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being done (`storing the run`, `reading evaluation abc`).
        what: String,
        /// Why.
        source: sqlx::Error,
    },
    /// A stored record does not parse (written by another version, or edited by hand).
    #[error("{what}: stored record: {message}")]
    Corrupt {
        /// Which record.
        what: String,
        /// The parse error.
        message: String,
    },
}

/// Results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// `map_err` adapter naming what a query was doing.
pub(crate) fn query(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Query { what, source }
}
