//! safeedit-figures: paper figures. plotters draws every chart once, as SVG; the browser shows that SVG inline and
//! the downloads are the same SVG, a vector PDF converted from it (svg2pdf, the font embedded as
//! a subset) and a PNG rasterised from it at 300 dpi (resvg) — so preview and export cannot
//! differ. Sizes follow the ACL template: one column is 7.7 cm wide, the full text width 16 cm.
//! Colours are the Okabe–Ito palette, which stays distinct under the common colour-vision
//! deficiencies. One font everywhere: DejaVu Sans, shipped in `public/fonts/`.
//!
//! ```
//! use safeedit_figures::{Format, Preset, export, grouped_bars};
//!
//! let svg = grouped_bars(
//!     &["DS", "DG-Avg"],
//!     &[("dinm".to_string(), vec![Some(90.0), Some(85.0)])],
//!     "defense (%)",
//!     Preset::Column,
//! )?;
//! assert!(svg.starts_with("<svg width=\"3.031in\""));
//! let pdf = export(&svg, Format::Pdf)?;
//! assert!(pdf.starts_with(b"%PDF-"));
//! # Ok::<(), safeedit_figures::FigureError>(())
//! ```

pub mod charts;
mod error;
mod export;
pub mod style;
#[cfg(test)]
mod tests;

pub use charts::grouped_bars;
pub use charts::mechanism::{MECHANISM_CHARTS, mechanism_chart, mechanism_charts};
pub use charts::results::{RESULTS_CHARTS, results_chart};
pub use charts::run::{RUN_CHARTS, run_chart};
pub use error::{FigureError, Result};
pub use export::{export, to_pdf, to_png};
pub use style::{FONT, FONT_FAMILY, Format, PNG_DPI, Preset, palette};
