//! A DINM run's charts: the per-layer distances with the toxic layer marked, and the losses.

use plotters::prelude::*;
use plotters::style::text_anchor;
use safeedit_core::run::{RunRecord, StepLosses};

use crate::error::{FigureError, Result, ensure};
use crate::style::{HouseStyle, Preset, draw, font, palette, plot_err, short_number, units};

/// docs/method.md §Location: the distance between the safe and the unsafe response's hidden states
/// at every layer, the located (toxic) layer in vermillion.
pub fn distances(distances: &[f32], layer: usize, preset: Preset) -> Result<String> {
    ensure(!distances.is_empty(), "no distances to draw")?;
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

/// docs/method.md §The edit: the objective at every step — the total and its two parts (the
/// weighted edit NLL and the KL constraint).
pub fn losses(steps: &[StepLosses], kl_factor: f64, preset: Preset) -> Result<String> {
    ensure(!steps.is_empty(), "no steps to draw")?;
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
        // The total is drawn first, wide and pale, and its parts on top of it: when the
        // constraint is ~0 the total lies on the edit line, which stays visible inside it.
        let at = |value: &dyn Fn(&StepLosses) -> f64| -> Vec<(f64, f64)> {
            steps.iter().map(|s| (s.step as f64, value(s))).collect()
        };
        let legend_end = units(9.0) as i32;
        let total = palette::BLACK.mix(0.3).stroke_width(units(2.6));
        chart
            .draw_series(LineSeries::new(at(&|s| s.loss), total))
            .map_err(plot_err)?
            .label("total")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + legend_end, y)], total));
        let parts = [
            ("KL constraint", palette::ORANGE, at(&|s| s.constraint)),
            (
                "weighted edit NLL",
                palette::BLUE,
                at(&|s| kl_factor * s.edit),
            ),
        ];
        for (label, colour, points) in parts {
            let style = colour.stroke_width(units(0.8));
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(plot_err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + legend_end, y)], style));
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

/// The charts of a stored DINM run, by name.
pub const RUN_CHARTS: [&str; 2] = ["distances", "losses"];

/// Draws one of a run's charts; `Ok(None)` when the run has nothing to draw for it (e.g. no
/// distances when the layer was fixed).
pub fn run_chart(run: &RunRecord, chart: &str, preset: Preset) -> Result<Option<String>> {
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
                .ok_or(FigureError::MissingField(
                    "the run's config has no kl_factor",
                ))?;
            losses(&outcome.steps, kl_factor, preset).map(Some)
        }
        other => Err(FigureError::UnknownName {
            what: "chart",
            name: other.to_string(),
            known: "distances, losses",
        }),
    }
}
