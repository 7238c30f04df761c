//! What can go wrong drawing or exporting a figure.

/// A figure that could not be drawn, named or exported.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    /// The chart has nothing to draw (no points, no steps, no series).
    #[error("{0}")]
    NothingToDraw(&'static str),
    /// A chart, preset or format name that does not exist.
    #[error("unknown {what} `{name}` ({known})")]
    UnknownName {
        /// What was named (`chart`, `figure preset`, `figure format`).
        what: &'static str,
        /// The name given.
        name: String,
        /// The names that exist.
        known: &'static str,
    },
    /// The record lacks what the chart needs.
    #[error("{0}")]
    MissingField(&'static str),
    /// plotters failed.
    #[error("drawing the figure: {0}")]
    Draw(String),
    /// The SVG could not be turned into PDF or PNG.
    #[error("{0}")]
    Export(String),
}

/// Results of this crate.
pub type Result<T, E = FigureError> = std::result::Result<T, E>;

/// `Err(NothingToDraw(what))` unless `cond`.
pub(crate) fn ensure(cond: bool, what: &'static str) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(FigureError::NothingToDraw(what))
    }
}
