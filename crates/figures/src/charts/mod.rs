//! The charts: a DINM run's ([`run`]), a mechanism analysis's ([`mechanism`]) and the results
//! table's ([`results`]), plus the grouped bars and legend row they share.

pub mod mechanism;
pub mod results;
pub mod run;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;

use crate::error::{Result, ensure};
use crate::style::{HouseStyle, Preset, draw, font, palette, plot_err, short_number, units};

/// Series colours, in order (Okabe–Ito; vanilla, when shown, is black and comes first).
pub(crate) const SERIES: [RGBColor; 7] = [
    palette::BLACK,
    palette::VERMILLION,
    palette::SKY_BLUE,
    palette::BLUISH_GREEN,
    palette::ORANGE,
    palette::BLUE,
    palette::REDDISH_PURPLE,
];

/// A legend row: a swatch and a label per series, left to right.
pub(crate) fn legend(
    area: &DrawingArea<SVGBackend, Shift>,
    labels: &[String],
    first_colour: usize,
) -> Result<()> {
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
) -> Result<String> {
    ensure(!groups.is_empty() && !series.is_empty(), "nothing to draw")?;
    let values = series.iter().flat_map(|(_, v)| v.iter().flatten().copied());
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // All zeros (e.g. DINM's shift): a unit axis, not a degenerate one.
    let span = if hi - lo > 1e-9 { hi - lo } else { 1.0 };
    let (lo, hi) = (
        if lo < 0.0 { lo - span * 0.08 } else { 0.0 },
        hi + span * 0.12,
    );
    let n_series = series.len();
    // Labels wider than their group (six metrics in one column) alternate between two rows.
    let label_pt = 6.5;
    let plot_px = f64::from(units(preset.width_in() * 72.0 - 38.0));
    let widest = groups.iter().map(|g| g.chars().count()).max().unwrap_or(0) as f64;
    let stagger = widest * 0.55 * f64::from(units(label_pt)) > 0.95 * plot_px / groups.len() as f64;
    let all_zero = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .all(|v| v.abs() < 1e-12);
    draw(preset, 0.66, |root| {
        let (top, plot) = root.split_vertically(units(12.0));
        let labels: Vec<String> = series.iter().map(|(l, _)| l.clone()).collect();
        legend(&top, &labels, 1)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(units(4.0))
            .x_label_area_size(units(if stagger { 22.0 } else { 14.0 }))
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
        let (_, y_px) = chart.plotting_area().get_pixel_range();
        let per_px = (hi - lo) / f64::from((y_px.end - y_px.start).max(1));
        let row = per_px * f64::from(units(label_pt * 1.3));
        chart
            .draw_series(groups.iter().enumerate().map(|(g, name)| {
                let y = if stagger && g % 2 == 1 { lo - row } else { lo };
                Text::new(
                    name.to_string(),
                    (g as f64 + 0.5, y),
                    font(label_pt).pos(text_anchor::Pos::new(
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
        // A value of 0 is a bar too: a thin one, so it is not read as missing.
        let floor = per_px * f64::from(units(1.2));
        let width = 0.8 / n_series as f64;
        for (k, (_, vals)) in series.iter().enumerate() {
            let colour = SERIES[(1 + k) % SERIES.len()];
            chart
                .draw_series(vals.iter().enumerate().filter_map(|(g, v)| {
                    v.map(|v| {
                        let x0 = g as f64 + 0.1 + k as f64 * width;
                        let top = if v.abs() >= floor {
                            v
                        } else if v < 0.0 {
                            -floor
                        } else {
                            floor
                        };
                        Rectangle::new([(x0, 0.0), (x0 + width * 0.9, top)], colour.filled())
                    })
                }))
                .map_err(plot_err)?;
        }
        if all_zero {
            chart
                .draw_series(std::iter::once(Text::new(
                    "every value is 0",
                    (groups.len() as f64 / 2.0, hi - (hi - lo) * 0.1),
                    font(7.0).pos(text_anchor::Pos::new(
                        text_anchor::HPos::Center,
                        text_anchor::VPos::Top,
                    )),
                )))
                .map_err(plot_err)?;
        }
        Ok(())
    })
}
