//! A mechanism analysis's charts: region toxicity and activation shift as grouped bars, the
//! Fig. 8 projection and the distribution of column cosines.

use plotters::element::DashedPathElement;
use plotters::prelude::*;
use safeedit_core::mechanism::MechanismReport;

use super::{SERIES, grouped_bars, legend};
use crate::error::{Result, ensure};
use crate::style::{HouseStyle, Preset, draw, palette, plot_err, short_number, units};

/// docs/method.md §Mechanisms, Fig. 8: each input's mid-layer residual in every model, on the shift
/// direction (x) and the first principal component (y); dotted lines join the same input across
/// models.
pub fn projection(
    models: &[String],
    x: &[Vec<f64>],
    y: &[Vec<f64>],
    preset: Preset,
) -> Result<String> {
    let all_x = x.iter().flatten().copied();
    let all_y = y.iter().flatten().copied();
    let bounds = |it: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = it.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        ensure(lo.is_finite(), "no points to draw")?;
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

/// docs/method.md §Mechanisms: the distribution of the region's column cosines with the probe,
/// vanilla and each method, as histogram outlines on shared bins.
pub fn cosine_histogram(series: &[(String, Vec<f32>)], preset: Preset) -> Result<String> {
    let values = series.iter().flat_map(|(_, v)| v.iter().copied());
    let (lo, hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    ensure(lo.is_finite() && hi > lo, "no cosines to draw")?;
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

/// One mechanism chart by name (`None` for an unknown name).
pub fn mechanism_chart(
    report: &MechanismReport,
    chart: &str,
    preset: Preset,
) -> Result<Option<String>> {
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
) -> Result<Vec<(&'static str, String)>> {
    MECHANISM_CHARTS
        .iter()
        .filter_map(|c| {
            mechanism_chart(report, c, preset)
                .transpose()
                .map(|r| r.map(|s| (*c, s)))
        })
        .collect()
}
