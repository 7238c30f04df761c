//! Paper figures. plotters draws every chart once, as SVG; the browser shows that SVG inline and
//! the downloads are the same SVG, a vector PDF converted from it (svg2pdf, the font embedded as
//! a subset) and a PNG rasterised from it at 300 dpi (resvg) — so preview and export cannot
//! differ. Sizes follow the ACL template: one column is 7.7 cm wide, the full text width 16 cm.
//! Colours are the Okabe–Ito palette, which stays distinct under the common colour-vision
//! deficiencies. One font everywhere: DejaVu Sans, shipped in `public/fonts/`.

use std::str::FromStr;
use std::sync::Once;

use anyhow::Context;
use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor;
use resvg::{tiny_skia, usvg};
use std::path::PathBuf;

use safeedit_core::mechanism::MechanismReport;
use safeedit_core::run::{RunRecord, StepLosses};

/// The font file every figure uses.
pub static FONT: &[u8] = include_bytes!("../../public/fonts/DejaVuSans.ttf");
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

impl FromStr for Preset {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "column" => Ok(Self::Column),
            "full" => Ok(Self::Full),
            other => anyhow::bail!("unknown figure preset `{other}` (column, full)"),
        }
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

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "svg" => Ok(Self::Svg),
            "pdf" => Ok(Self::Pdf),
            "png" => Ok(Self::Png),
            other => anyhow::bail!("unknown figure format `{other}` (svg, pdf, png)"),
        }
    }
}

/// Resolution of PNG exports.
pub const PNG_DPI: f64 = 300.0;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are the shipped TrueType file; a parse failure is a packaging bug.
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("{FONT_FAMILY} does not parse"));
    });
}

/// A text style of `pt` points in the figure font.
fn font(pt: f64) -> TextStyle<'static> {
    (FONT_FAMILY, pt * UNITS_PER_PT * PLOTTERS_FONT_FACTOR)
        .into_font()
        .into()
}

/// The house style of every chart's mesh: grid lines only at labelled ticks, thin black axes,
/// 7 pt labels and 8 pt axis titles.
trait HouseStyle {
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

fn units(pt: f64) -> u32 {
    (pt * UNITS_PER_PT).round() as u32
}

/// Draws with plotters on a canvas of `preset` width and `aspect`, then gives the SVG physical
/// size (inches) so every consumer knows how big it is meant to be.
fn draw(
    preset: Preset,
    aspect: f64,
    paint: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    register_font();
    let (w_in, h_in) = (preset.width_in(), preset.height_in(aspect));
    let size = (units(w_in * 72.0), units(h_in * 72.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        paint(&root)?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let head = format!("<svg width=\"{}\" height=\"{}\"", size.0, size.1);
    anyhow::ensure!(
        svg.starts_with(&head),
        "unexpected SVG header from plotters"
    );
    Ok(svg.replacen(
        &head,
        &format!("<svg width=\"{w_in:.3}in\" height=\"{h_in:.3}in\""),
        1,
    ))
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the figure: {e:?}")
}

/// §2.3: the distance between the safe and the unsafe response's hidden states at every layer,
/// the located (toxic) layer in vermillion.
pub fn distances(distances: &[f32], layer: usize, preset: Preset) -> anyhow::Result<String> {
    anyhow::ensure!(!distances.is_empty(), "no distances to draw");
    let top = distances.iter().copied().fold(0.0f32, f32::max) as f64 * 1.12;
    let n = distances.len();
    draw(preset, 0.62, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(units(4.0))
            .x_label_area_size(units(20.0))
            .y_label_area_size(units(30.0))
            .build_cartesian_2d((0..n).into_segmented(), 0.0..top.max(1e-9))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .house_style()
            .disable_x_mesh()
            .x_desc("layer")
            .y_desc("distance (safe vs unsafe)")
            .x_labels(n.min(16))
            .y_labels(5)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i < n => i.to_string(),
                _ => String::new(),
            })
            .y_label_formatter(&|v| short_number(*v))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(distances.iter().enumerate().map(|(i, d)| {
                let colour = if i == layer {
                    palette::VERMILLION
                } else {
                    palette::SKY_BLUE
                };
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), f64::from(*d)),
                    ],
                    colour.filled(),
                );
                bar.set_margin(0, 0, units(0.4), units(0.4));
                bar
            }))
            .map_err(plot_err)?;
        if let Some(d) = distances.get(layer) {
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("toxic layer {layer}"),
                    (SegmentValue::CenterOf(layer), f64::from(*d) + top * 0.02),
                    font(7.0)
                        .color(&palette::VERMILLION)
                        .pos(text_anchor::Pos::new(
                            if layer + 3 >= n {
                                text_anchor::HPos::Right
                            } else {
                                text_anchor::HPos::Center
                            },
                            text_anchor::VPos::Bottom,
                        )),
                )))
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

/// §2.4: the objective at every step — the total and its two parts (the weighted edit NLL and
/// the KL constraint).
pub fn losses(steps: &[StepLosses], kl_factor: f64, preset: Preset) -> anyhow::Result<String> {
    anyhow::ensure!(!steps.is_empty(), "no steps to draw");
    let first = steps.first().map_or(0, |s| s.step);
    let last = steps.last().map_or(0, |s| s.step).max(first + 1);
    let top = steps
        .iter()
        .flat_map(|s| [s.loss, kl_factor * s.edit, s.constraint])
        .fold(0.0f64, f64::max)
        * 1.1;
    draw(preset, 0.62, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(units(4.0))
            .x_label_area_size(units(20.0))
            .y_label_area_size(units(30.0))
            .build_cartesian_2d(first as f64..last as f64, 0.0..top.max(1e-9))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .house_style()
            .x_desc("step")
            .y_desc("loss")
            .x_labels((last - first + 1).min(11))
            .y_labels(5)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| short_number(*v))
            .draw()
            .map_err(plot_err)?;
        // The total is drawn last and dashed: when the constraint is ~0 it lies on the edit line.
        let at = |value: &dyn Fn(&StepLosses) -> f64| -> Vec<(f64, f64)> {
            steps.iter().map(|s| (s.step as f64, value(s))).collect()
        };
        let series = [
            ("KL constraint", palette::ORANGE, at(&|s| s.constraint)),
            (
                "weighted edit NLL",
                palette::BLUE,
                at(&|s| kl_factor * s.edit),
            ),
            ("total", palette::BLACK, at(&|s| s.loss)),
        ];
        let (dash, gap, width) = (units(2.0), units(1.5), units(0.8));
        for (label, colour, points) in series {
            let style = colour.stroke_width(width);
            let legend_end = units(9.0) as i32;
            if label == "total" {
                chart
                    .draw_series(DashedLineSeries::new(points.clone(), dash, gap, style))
                    .map_err(plot_err)?
                    .label(label)
                    .legend(move |(x, y)| {
                        DashedPathElement::new(vec![(x, y), (x + legend_end, y)], dash, gap, style)
                    });
            } else {
                chart
                    .draw_series(LineSeries::new(points.clone(), style))
                    .map_err(plot_err)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + legend_end, y)], style)
                    });
            }
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|p| Circle::new(*p, units(1.2), colour.filled())),
                )
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .legend_area_size(units(12.0))
            .margin(units(3.0))
            .background_style(WHITE.mix(0.85))
            .border_style(palette::GRID.stroke_width(units(0.5)))
            .label_font(font(7.0))
            .draw()
            .map_err(plot_err)?;
        Ok(())
    })
}

/// Series colours, in order (Okabe–Ito; vanilla, when shown, is black and comes first).
const SERIES: [RGBColor; 7] = [
    palette::BLACK,
    palette::VERMILLION,
    palette::SKY_BLUE,
    palette::BLUISH_GREEN,
    palette::ORANGE,
    palette::BLUE,
    palette::REDDISH_PURPLE,
];

/// A legend row: a swatch and a label per series, left to right.
fn legend(
    area: &DrawingArea<SVGBackend, Shift>,
    labels: &[String],
    first_colour: usize,
) -> anyhow::Result<()> {
    let style = font(6.5);
    let mut x = units(8.0) as i32;
    let y = units(6.0) as i32;
    for (k, label) in labels.iter().enumerate() {
        let colour = SERIES[(first_colour + k) % SERIES.len()];
        area.draw(&Rectangle::new(
            [
                (x, y - units(2.5) as i32),
                (x + units(5.0) as i32, y + units(2.5) as i32),
            ],
            colour.filled(),
        ))
        .map_err(plot_err)?;
        let (w, _) = area.estimate_text_size(label, &style).map_err(plot_err)?;
        area.draw(&Text::new(
            label.clone(),
            (x + units(7.0) as i32, y),
            style.pos(text_anchor::Pos::new(
                text_anchor::HPos::Left,
                text_anchor::VPos::Center,
            )),
        ))
        .map_err(plot_err)?;
        x += units(7.0) as i32 + w as i32 + units(8.0) as i32;
    }
    Ok(())
}

/// Grouped bars: one group per name in `groups`, one bar per series in each (a missing value
/// leaves a gap), a legend row above the plot, a zero line when values go negative.
pub fn grouped_bars(
    groups: &[&str],
    series: &[(String, Vec<Option<f64>>)],
    y_desc: &str,
    preset: Preset,
) -> anyhow::Result<String> {
    anyhow::ensure!(!groups.is_empty() && !series.is_empty(), "nothing to draw");
    let values = series.iter().flat_map(|(_, v)| v.iter().flatten().copied());
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // All zeros (e.g. DINM's shift): a unit axis, not a degenerate one.
    let span = if hi - lo > 1e-9 { hi - lo } else { 1.0 };
    let (lo, hi) = (
        if lo < 0.0 { lo - span * 0.08 } else { 0.0 },
        hi + span * 0.12,
    );
    let n_series = series.len();
    draw(preset, 0.66, |root| {
        let (top, plot) = root.split_vertically(units(12.0));
        let labels: Vec<String> = series.iter().map(|(l, _)| l.clone()).collect();
        legend(&top, &labels, 1)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(units(4.0))
            .x_label_area_size(units(14.0))
            .y_label_area_size(units(30.0))
            .build_cartesian_2d(0.0..groups.len() as f64, lo..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .house_style()
            .disable_x_mesh()
            .y_desc(y_desc)
            .x_labels(0)
            .y_labels(6)
            .y_label_formatter(&|v| short_number(*v))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(groups.iter().enumerate().map(|(g, name)| {
                Text::new(
                    name.to_string(),
                    (g as f64 + 0.5, lo),
                    font(6.5).pos(text_anchor::Pos::new(
                        text_anchor::HPos::Center,
                        text_anchor::VPos::Top,
                    )),
                )
            }))
            .map_err(plot_err)?;
        if lo < 0.0 {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, 0.0), (groups.len() as f64, 0.0)],
                    palette::BLACK.stroke_width(units(0.5)),
                )))
                .map_err(plot_err)?;
        }
        let width = 0.8 / n_series as f64;
        for (k, (_, vals)) in series.iter().enumerate() {
            let colour = SERIES[(1 + k) % SERIES.len()];
            chart
                .draw_series(vals.iter().enumerate().filter_map(|(g, v)| {
                    v.map(|v| {
                        let x0 = g as f64 + 0.1 + k as f64 * width;
                        Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], colour.filled())
                    })
                }))
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

/// §5.4, Fig. 8: each input's mid-layer residual in every model, on the shift direction (x) and
/// the first principal component (y); dotted lines join the same input across models.
pub fn projection(
    models: &[String],
    x: &[Vec<f64>],
    y: &[Vec<f64>],
    preset: Preset,
) -> anyhow::Result<String> {
    let all_x = x.iter().flatten().copied();
    let all_y = y.iter().flatten().copied();
    let bounds = |it: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = it.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        anyhow::ensure!(lo.is_finite(), "no points to draw");
        // Coinciding points (no shift at all) get a readable unit range around them.
        let scale = lo.abs().max(hi.abs()).max(1.0);
        let pad = if hi - lo > 1e-6 * scale {
            (hi - lo) * 0.08
        } else {
            scale
        };
        Ok((lo - pad, hi + pad))
    };
    let (x0, x1) = bounds(&mut all_x.clone())?;
    let (y0, y1) = bounds(&mut all_y.clone())?;
    let n_inputs = x.first().map_or(0, Vec::len);
    draw(preset, 0.8, |root| {
        let (top, plot) = root.split_vertically(units(12.0));
        legend(&top, models, 0)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(units(4.0))
            .x_label_area_size(units(20.0))
            .y_label_area_size(units(30.0))
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .house_style()
            .x_desc("projection on the shift direction")
            .y_desc("first principal component")
            .x_labels(5)
            .y_labels(5)
            .x_label_formatter(&|v| short_number(*v))
            .y_label_formatter(&|v| short_number(*v))
            .draw()
            .map_err(plot_err)?;
        for i in 0..n_inputs {
            let path: Vec<(f64, f64)> = x.iter().zip(y).map(|(xs, ys)| (xs[i], ys[i])).collect();
            chart
                .draw_series(std::iter::once(DashedPathElement::new(
                    path,
                    units(1.0),
                    units(1.0),
                    palette::GRID.stroke_width(units(0.5)),
                )))
                .map_err(plot_err)?;
        }
        for (m, (xs, ys)) in x.iter().zip(y).enumerate() {
            let colour = SERIES[m % SERIES.len()];
            chart
                .draw_series(
                    xs.iter()
                        .zip(ys)
                        .map(|(a, b)| Circle::new((*a, *b), units(1.4), colour.filled())),
                )
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

/// §5.2: the distribution of the region's column cosines with the probe, vanilla and each
/// method, as histogram outlines on shared bins.
pub fn cosine_histogram(series: &[(String, Vec<f32>)], preset: Preset) -> anyhow::Result<String> {
    let values = series.iter().flat_map(|(_, v)| v.iter().copied());
    let (lo, hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    anyhow::ensure!(lo.is_finite() && hi > lo, "no cosines to draw");
    let bins = 40usize;
    let width = (hi - lo) as f64 / bins as f64;
    let counts: Vec<Vec<f64>> = series
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0.0; bins];
            for x in v {
                let b = (((x - lo) as f64 / width) as usize).min(bins - 1);
                c[b] += 1.0;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().fold(0.0, f64::max) * 1.1;
    draw(preset, 0.66, |root| {
        let (head, plot) = root.split_vertically(units(12.0));
        let labels: Vec<String> = series.iter().map(|(l, _)| l.clone()).collect();
        legend(&head, &labels, 0)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(units(4.0))
            .x_label_area_size(units(20.0))
            .y_label_area_size(units(30.0))
            .build_cartesian_2d(lo as f64..hi as f64, 0.0..top.max(1.0))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .house_style()
            .x_desc("cosine of a down_proj column with the probe")
            .y_desc("columns")
            .x_labels(5)
            .y_labels(5)
            .x_label_formatter(&|v| short_number(*v))
            .y_label_formatter(&|v| short_number(*v))
            .draw()
            .map_err(plot_err)?;
        for (k, c) in counts.iter().enumerate() {
            let colour = SERIES[k % SERIES.len()];
            let mut path = vec![(lo as f64, 0.0)];
            for (b, n) in c.iter().enumerate() {
                let left = lo as f64 + b as f64 * width;
                path.push((left, *n));
                path.push((left + width, *n));
            }
            path.push((hi as f64, 0.0));
            chart
                .draw_series(std::iter::once(PathElement::new(
                    path,
                    colour.stroke_width(units(if k == 0 { 1.2 } else { 0.8 })),
                )))
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

/// The charts of a mechanism report: region toxicity, activation shift, the projection view
/// and the cosine distribution.
pub const MECHANISM_CHARTS: [&str; 4] = ["toxicity", "shift", "projection", "cosines"];

/// The results page's charts.
pub const RESULTS_CHARTS: [&str; 1] = ["defense"];

/// The defense metrics present in a results table (DS, the DG inputs, DG-Avg), as grouped bars
/// per method (`None` when the table has none of them or no rows).
pub fn results_chart(
    table: &safeedit_core::table::MetricTable,
    preset: Preset,
) -> anyhow::Result<Option<String>> {
    const DEFENSE: [&str; 6] = [
        "DS",
        "DG_onlyQ",
        "DG_otherA",
        "DG_otherQ",
        "DG_otherAQ",
        "DG-Avg",
    ];
    let columns: Vec<(usize, &str)> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| DEFENSE.contains(&c.as_str()))
        .map(|(i, c)| (i, c.as_str()))
        .collect();
    if columns.is_empty() || table.rows.is_empty() {
        return Ok(None);
    }
    let groups: Vec<&str> = columns.iter().map(|(_, c)| *c).collect();
    let series: Vec<(String, Vec<Option<f64>>)> = table
        .rows
        .iter()
        .map(|r| {
            (
                r.method.clone(),
                columns.iter().map(|(i, _)| r.values[*i]).collect(),
            )
        })
        .collect();
    grouped_bars(&groups, &series, "defense (%)", preset).map(Some)
}

/// One mechanism chart by name (`None` for an unknown name).
pub fn mechanism_chart(
    report: &MechanismReport,
    chart: &str,
    preset: Preset,
) -> anyhow::Result<Option<String>> {
    let svg = match chart {
        "toxicity" => grouped_bars(
            &["all columns", &format!("top-{}", report.top_k)],
            &report
                .methods
                .iter()
                .map(|m| (m.method.clone(), vec![m.reduction_all, m.reduction_top]))
                .collect::<Vec<_>>(),
            "toxicity reduction (%)",
            preset,
        )?,
        "shift" => grouped_bars(
            &["token mean", "last token"],
            &report
                .methods
                .iter()
                .map(|m| {
                    (
                        m.method.clone(),
                        vec![m.shift_token_mean, m.shift_last_token],
                    )
                })
                .collect::<Vec<_>>(),
            "activation shift (%)",
            preset,
        )?,
        "projection" => projection(
            &report.projection.models,
            &report.projection.x,
            &report.projection.y,
            preset,
        )?,
        "cosines" => {
            let mut series = vec![("vanilla".to_string(), report.vanilla_cosines.clone())];
            series.extend(
                report
                    .methods
                    .iter()
                    .filter(|m| !m.cosines.is_empty())
                    .map(|m| (m.method.clone(), m.cosines.clone())),
            );
            cosine_histogram(&series, preset)?
        }
        _ => return Ok(None),
    };
    Ok(Some(svg))
}

/// Every mechanism chart, by name.
pub fn mechanism_charts(
    report: &MechanismReport,
    preset: Preset,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    MECHANISM_CHARTS
        .iter()
        .filter_map(|c| {
            mechanism_chart(report, c, preset)
                .transpose()
                .map(|r| r.map(|s| (*c, s)))
        })
        .collect()
}

/// The charts of a stored DINM run, by name.
pub const RUN_CHARTS: [&str; 2] = ["distances", "losses"];

/// Draws one of a run's charts; `Ok(None)` when the run has nothing to draw for it (e.g. no
/// distances when the layer was fixed).
pub fn run_chart(run: &RunRecord, chart: &str, preset: Preset) -> anyhow::Result<Option<String>> {
    let outcome = &run.outcome;
    match chart {
        "distances" => match &outcome.distances {
            Some(d) if !d.is_empty() => distances(d, outcome.layer, preset).map(Some),
            _ => Ok(None),
        },
        "losses" if outcome.steps.is_empty() => Ok(None),
        "losses" => {
            let kl_factor = run
                .config
                .get("kl_factor")
                .and_then(serde_json::Value::as_f64)
                .context("the run's config has no kl_factor")?;
            losses(&outcome.steps, kl_factor, preset).map(Some)
        }
        other => anyhow::bail!("unknown chart `{other}` ({})", RUN_CHARTS.join(", ")),
    }
}

/// Arguments of `safeedit figure`.
#[derive(clap::Args, Debug)]
pub struct FigureArgs {
    /// A run's JSON (the app's "Run (JSON)" download, `/api/runs/{slug}/run.json`).
    #[arg(long)]
    pub run: PathBuf,
    /// Which chart: distances (per-layer, toxic layer marked) or losses (per step).
    #[arg(long)]
    pub chart: String,
    /// ACL width preset: column (7.7 cm) or full (16 cm).
    #[arg(long, default_value = "column")]
    pub preset: String,
    /// svg, pdf or png (300 dpi) [default: from --out's extension].
    #[arg(long)]
    pub format: Option<String>,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// `safeedit figure`: a run's chart as a file for a paper.
pub fn run(args: FigureArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.run)
        .with_context(|| format!("reading {}", args.run.display()))?;
    let record: RunRecord = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a SafeEdit Studio run", args.run.display()))?;
    let preset: Preset = args.preset.parse()?;
    let format: Format = match &args.format {
        Some(f) => f.parse()?,
        None => args
            .out
            .extension()
            .and_then(|e| e.to_str())
            .context("--out has no extension; pass --format svg|pdf|png")?
            .parse()?,
    };
    let svg = run_chart(&record, &args.chart, preset)?.with_context(|| {
        format!(
            "run {} has no data for the `{}` chart",
            record.slug, args.chart
        )
    })?;
    let bytes = export(&svg, format)?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} bytes, {} {})",
        args.out.display(),
        bytes.len(),
        preset.as_str(),
        format.extension()
    );
    Ok(())
}

/// Axis numbers without trailing noise: 7342 → "7342", 0.25 → "0.25", 12000 → "12k".
fn short_number(v: f64) -> String {
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

fn parse(svg: &str) -> anyhow::Result<usvg::Tree> {
    let mut options = usvg::Options {
        font_family: FONT_FAMILY.into(),
        ..usvg::Options::default()
    };
    let db = options.fontdb_mut();
    db.load_font_data(FONT.to_vec());
    db.set_sans_serif_family(FONT_FAMILY);
    usvg::Tree::from_str(svg, &options).context("parsing the figure's SVG")
}

/// The figure as `format`.
pub fn export(svg: &str, format: Format) -> anyhow::Result<Vec<u8>> {
    match format {
        Format::Svg => Ok(svg.as_bytes().to_vec()),
        Format::Pdf => to_pdf(svg),
        Format::Png => to_png(svg, PNG_DPI),
    }
}

/// Vector PDF of the page size the SVG names; text stays text, its font embedded as a subset.
pub fn to_pdf(svg: &str) -> anyhow::Result<Vec<u8>> {
    let tree = parse(svg)?;
    // usvg reads the inch sizes at 96 user units per inch; telling svg2pdf the same keeps the
    // page exactly the figure's physical size.
    svg2pdf::to_pdf(
        &tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions { dpi: 96.0 },
    )
    .map_err(|e| anyhow::anyhow!("converting the figure to PDF: {e}"))
}

/// PNG at `dpi`, white background, with the resolution recorded in its `pHYs` chunk.
pub fn to_png(svg: &str, dpi: f64) -> anyhow::Result<Vec<u8>> {
    let tree = parse(svg)?;
    let scale = (dpi / 96.0) as f32;
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).round() as u32,
        (size.height() * scale).round() as u32,
    );
    let mut pixmap = tiny_skia::Pixmap::new(w, h).context("allocating the PNG canvas")?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    let rgba: Vec<u8> = pixmap
        .pixels()
        .iter()
        .flat_map(|p| {
            let c = p.demultiply();
            [c.red(), c.green(), c.blue(), c.alpha()]
        })
        .collect();
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_pixel_dims(Some(png::PixelDimensions {
            xppu: (dpi / 0.0254).round() as u32,
            yppu: (dpi / 0.0254).round() as u32,
            unit: png::Unit::Meter,
        }));
        let mut writer = encoder.write_header().context("writing the PNG header")?;
        writer
            .write_image_data(&rgba)
            .context("writing the PNG pixels")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Vec<StepLosses> {
        (0..10)
            .map(|i| StepLosses {
                step: i,
                loss: 0.3 - 0.02 * i as f64,
                edit: 2.9 - 0.2 * i as f64,
                constraint: 0.001 * i as f64,
            })
            .collect()
    }

    #[test]
    fn svg_has_physical_size_text_in_the_font_and_the_palette() {
        let d: Vec<f32> = (0..30).map(|i| 1000.0 + 200.0 * i as f32).collect();
        let svg = distances(&d, 28, Preset::Column).unwrap();
        assert!(
            svg.starts_with("<svg width=\"3.031in\" height=\"1.880in\""),
            "{}",
            &svg[..80]
        );
        assert!(svg.contains("font-family=\"DejaVu Sans\""));
        assert!(svg.contains(">\ntoxic layer 28\n<"));
        assert!(svg.contains("#D55E00"), "the located layer is vermillion");
        let full = distances(&d, 28, Preset::Full).unwrap();
        assert!(full.starts_with("<svg width=\"6.299in\""));
        let loss = losses(&steps(), 0.1, Preset::Column).unwrap();
        for label in [
            "total",
            "weighted edit NLL",
            "KL constraint",
            ">\nstep\n<",
            ">\nloss\n<",
        ] {
            assert!(loss.contains(label), "{label}");
        }
    }

    /// The distinct text labels of a plotters SVG.
    fn labels(svg: &str) -> std::collections::BTreeSet<String> {
        svg.split(">\n")
            .skip(1)
            .filter_map(|t| t.split_once("\n<").map(|(text, _)| text.to_string()))
            .collect()
    }

    #[test]
    fn the_results_chart_draws_the_defense_columns_per_method() {
        use safeedit_core::table::{MetricTable, TableRow};
        let row = |method: &str, v: f64| TableRow {
            method: method.into(),
            link: format!("/evals/{method}"),
            values: vec![Some(v), Some(v + 10.0), Some(3.9)],
            n: Some(2),
        };
        let mut table = MetricTable {
            group: "all".into(),
            value: "all".into(),
            columns: vec!["DS".into(), "DG-Avg".into(), "Fluency".into()],
            rows: vec![row("vanilla", 20.0), row("sft", 80.0)],
        };
        let svg = results_chart(&table, Preset::Column).unwrap().unwrap();
        let l = labels(&svg);
        for want in ["DS", "DG-Avg", "vanilla", "sft", "defense (%)"] {
            assert!(l.contains(want), "{want}: {l:?}");
        }
        assert!(!l.contains("Fluency"), "fluency is on another scale");
        table.columns = vec!["Fluency".into()];
        assert!(results_chart(&table, Preset::Column).unwrap().is_none());
    }

    #[test]
    fn all_zero_values_still_get_a_readable_axis() {
        // DINM shifts nothing: its bars are 0 and its projection points coincide on x = 0.
        let bars = grouped_bars(
            &["token mean", "last token"],
            &[("dinm".to_string(), vec![Some(0.0), Some(0.0)])],
            "activation shift (%)",
            Preset::Column,
        )
        .unwrap();
        let numbers = |svg: &str| {
            labels(svg)
                .into_iter()
                .filter(|l| l.parse::<f64>().is_ok())
                .collect::<Vec<_>>()
        };
        assert!(numbers(&bars).len() >= 3, "{:?}", labels(&bars));
        let names = vec!["vanilla".to_string(), "dinm".to_string()];
        let points = projection(
            &names,
            &[vec![0.0, 0.0], vec![0.0, 0.0]],
            &[vec![1.0, -2.0], vec![1.0, -2.0]],
            Preset::Column,
        )
        .unwrap();
        assert!(numbers(&points).len() >= 5, "{:?}", labels(&points));
        assert!(!labels(&points).contains("-0"), "{:?}", labels(&points));
    }

    #[test]
    fn mechanism_charts_draw_bars_points_and_distributions() {
        let bars = grouped_bars(
            &["all columns", "top-128"],
            &[
                ("dinm".into(), vec![Some(2.5), Some(-1.0)]),
                ("sft".into(), vec![Some(0.1), None]),
            ],
            "toxicity reduction (%)",
            Preset::Column,
        )
        .unwrap();
        for label in [
            ">\ndinm\n<",
            ">\nsft\n<",
            ">\ntop-128\n<",
            "toxicity reduction (%)",
        ] {
            assert!(bars.contains(label), "{label}");
        }
        assert!(
            bars.contains("#D55E00") && bars.contains("#56B4E9"),
            "one colour per method"
        );
        let scatter = projection(
            &["vanilla".into(), "sft".into()],
            &[vec![0.0, 1.0], vec![2.0, 3.0]],
            &[vec![0.5, -0.5], vec![0.5, -0.5]],
            Preset::Full,
        )
        .unwrap();
        assert_eq!(scatter.matches("<circle").count(), 4);
        assert!(scatter.contains("projection on the shift direction"));
        let hist = cosine_histogram(
            &[
                ("vanilla".into(), vec![-0.1, 0.0, 0.05, 0.2]),
                ("dinm".into(), vec![-0.1, 0.0, 0.04, 0.1]),
            ],
            Preset::Column,
        )
        .unwrap();
        assert!(hist.contains("cosine of a down_proj column with the probe"));
        assert!(to_pdf(&hist).is_ok() && to_png(&scatter, 72.0).is_ok());
        assert!(grouped_bars(&[], &[], "y", Preset::Column).is_err());
        assert!(cosine_histogram(&[("v".into(), vec![])], Preset::Column).is_err());
    }

    #[test]
    fn png_is_300_dpi_at_the_figure_size() {
        let svg = losses(&steps(), 0.1, Preset::Column).unwrap();
        let png = to_png(&svg, PNG_DPI).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(info.width, (7.7 / 2.54 * 300.0f64).round() as u32);
        let dims = info.pixel_dims.expect("pHYs chunk");
        assert_eq!(dims.xppu, 11811, "300 dpi in pixels per metre");
        assert_eq!(dims.unit, png::Unit::Meter);
    }

    #[test]
    fn pdf_is_vector_with_the_font_embedded_at_the_figure_size() {
        let d: Vec<f32> = (0..30).map(|i| 10.0 * i as f32).collect();
        let svg = distances(&d, 3, Preset::Full).unwrap();
        let pdf = to_pdf(&svg).unwrap();
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.starts_with("%PDF-"));
        assert!(text.trim_end().ends_with("%%EOF"));
        assert!(text.contains("/FontFile2"), "TrueType font embedded");
        assert!(text.contains("DejaVuSans"), "the embedded font is named");
        // MediaBox in points: 16 cm wide.
        let width_pt = 16.0 / 2.54 * 72.0;
        let media = text
            .split("/MediaBox [")
            .nth(1)
            .and_then(|s| s.split(']').next())
            .expect("MediaBox");
        let nums: Vec<f64> = media
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert!((nums[2] - width_pt).abs() < 0.5, "{media}");
    }

    #[test]
    fn presets_and_formats_parse_and_refuse_unknown_names() {
        assert_eq!("full".parse::<Preset>().unwrap(), Preset::Full);
        assert_eq!("png".parse::<Format>().unwrap(), Format::Png);
        assert!(
            "a4".parse::<Preset>()
                .unwrap_err()
                .to_string()
                .contains("column, full")
        );
        assert!("jpg".parse::<Format>().is_err());
        assert!(distances(&[], 0, Preset::Column).is_err());
    }

    #[test]
    fn numbers_on_axes_are_short() {
        assert_eq!(short_number(7342.0), "7342");
        assert_eq!(short_number(12_000.0), "12k");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(2.0), "2");
        assert_eq!(short_number(0.0), "0");
    }
}
