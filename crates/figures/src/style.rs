//! The house style every figure shares: the font, the Okabe–Ito palette, the ACL width presets,
//! the download formats, the mesh style and the SVG canvas with its physical size.

use std::str::FromStr;
use std::sync::Once;

use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{FigureError, Result};

/// The font file every figure uses.
pub static FONT: &[u8] = include_bytes!("../../../public/fonts/DejaVuSans.ttf");
/// Its family name (what the SVG's `font-family` says).
pub const FONT_FAMILY: &str = "DejaVu Sans";

/// Drawing units per typographic point: plotters works in integer coordinates, so drawing at
/// four units per point keeps lines and labels placed to a quarter point.
const UNITS_PER_PT: f64 = 4.0;
/// plotters writes `font-size` as the requested size divided by 1.24.
const PLOTTERS_FONT_FACTOR: f64 = 1.24;

/// Okabe & Ito (2008) palette (the colours used so far).
pub mod palette {
    use plotters::style::RGBColor;
    /// Black.
    pub const BLACK: RGBColor = RGBColor(0, 0, 0);
    /// Orange.
    pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
    /// Sky blue.
    pub const SKY_BLUE: RGBColor = RGBColor(86, 180, 233);
    /// Blue.
    pub const BLUE: RGBColor = RGBColor(0, 114, 178);
    /// Vermillion.
    pub const VERMILLION: RGBColor = RGBColor(213, 94, 0);
    /// Bluish green.
    pub const BLUISH_GREEN: RGBColor = RGBColor(0, 158, 115);
    /// Reddish purple.
    pub const REDDISH_PURPLE: RGBColor = RGBColor(204, 121, 167);
    /// Grey for grid lines (not a data colour).
    pub const GRID: RGBColor = RGBColor(221, 221, 221);
}

/// Figure width presets of the ACL template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// One column: 7.7 cm.
    Column,
    /// Full text width: 16 cm.
    Full,
}

impl Preset {
    /// Width in inches.
    pub fn width_in(self) -> f64 {
        match self {
            Self::Column => 7.7 / 2.54,
            Self::Full => 16.0 / 2.54,
        }
    }

    /// Height in inches for a chart of the given aspect (height / width); the full-width preset
    /// is flatter so a figure* does not take half a page.
    pub fn height_in(self, aspect: f64) -> f64 {
        match self {
            Self::Column => self.width_in() * aspect,
            Self::Full => self.width_in() * aspect * 0.55,
        }
    }

    /// Name used in URLs and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Column => "column",
            Self::Full => "full",
        }
    }
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 2] = [Preset::Column, Preset::Full];
}

impl FromStr for Preset {
    type Err = FigureError;
    fn from_str(s: &str) -> Result<Self> {
        named(s, &Self::ALL, Self::as_str).ok_or_else(|| FigureError::UnknownName {
            what: "figure preset",
            name: s.to_string(),
            known: "column, full",
        })
    }
}

/// Download formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The drawing itself.
    Svg,
    /// Vector PDF, font embedded.
    Pdf,
    /// 300 dpi raster.
    Png,
}

impl Format {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Svg => "svg",
            Self::Pdf => "pdf",
            Self::Png => "png",
        }
    }

    /// MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Svg => "image/svg+xml",
            Self::Pdf => "application/pdf",
            Self::Png => "image/png",
        }
    }
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 3] = [Format::Svg, Format::Pdf, Format::Png];
}

impl FromStr for Format {
    type Err = FigureError;
    fn from_str(s: &str) -> Result<Self> {
        named(s, &Self::ALL, Self::extension).ok_or_else(|| FigureError::UnknownName {
            what: "figure format",
            name: s.to_string(),
            known: "svg, pdf, png",
        })
    }
}

/// The item of `all` whose name is `s`.
fn named<T: Copy>(s: &str, all: &[T], name: fn(T) -> &'static str) -> Option<T> {
    all.iter().copied().find(|&item| name(item) == s)
}

/// Resolution of PNG exports.
pub const PNG_DPI: f64 = 300.0;

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are the shipped TrueType file; a parse failure is a packaging bug.
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("{FONT_FAMILY} does not parse"));
    });
}

/// A text style of `pt` points in the figure font.
pub(crate) fn font(pt: f64) -> TextStyle<'static> {
    (FONT_FAMILY, pt * UNITS_PER_PT * PLOTTERS_FONT_FACTOR)
        .into_font()
        .into()
}

/// The house style of every chart's mesh: grid lines only at labelled ticks, thin black axes,
/// 7 pt labels and 8 pt axis titles.
pub(crate) trait HouseStyle {
    /// Applies the house style.
    fn house_style(&mut self) -> &mut Self;
}

impl<X: Ranged, Y: Ranged, DB: DrawingBackend> HouseStyle for MeshStyle<'_, '_, X, Y, DB> {
    fn house_style(&mut self) -> &mut Self {
        self.light_line_style(TRANSPARENT)
            .bold_line_style(palette::GRID.stroke_width(units(0.5)))
            .axis_style(palette::BLACK.stroke_width(units(0.5)))
            .label_style(font(7.0))
            .axis_desc_style(font(8.0))
    }
}

pub(crate) fn units(pt: f64) -> u32 {
    (pt * UNITS_PER_PT).round() as u32
}

/// Draws with plotters on a canvas of `preset` width and `aspect`, then gives the SVG physical
/// size (inches) so every consumer knows how big it is meant to be.
pub(crate) fn draw(
    preset: Preset,
    aspect: f64,
    paint: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<String> {
    register_font();
    let (w_in, h_in) = (preset.width_in(), preset.height_in(aspect));
    let size = (units(w_in * 72.0), units(h_in * 72.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        paint(&root)?;
        root.present().map_err(plot_err)?;
    }
    let head = format!("<svg width=\"{}\" height=\"{}\"", size.0, size.1);
    if !svg.starts_with(&head) {
        return Err(FigureError::Draw(
            "unexpected SVG header from plotters".into(),
        ));
    }
    Ok(svg.replacen(
        &head,
        &format!("<svg width=\"{w_in:.3}in\" height=\"{h_in:.3}in\""),
        1,
    ))
}

pub(crate) fn plot_err<E: std::fmt::Debug>(e: E) -> FigureError {
    FigureError::Draw(format!("{e:?}"))
}

/// Axis numbers without trailing noise: 7342 → "7342", 0.25 → "0.25", 12000 → "12k".
pub(crate) fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}
