//! Every chart drawn, exported and checked for size, font and colours.

use super::*;
use crate::charts::grouped_bars;
use crate::charts::mechanism::{cosine_histogram, projection};
use crate::charts::run::{distances, losses};
use crate::style::short_number;
use safeedit_core::run::StepLosses;

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
    // The page says so, and each 0 is a thin bar rather than nothing.
    assert!(
        labels(&bars).contains("every value is 0"),
        "{:?}",
        labels(&bars)
    );
    let rects = |svg: &str| svg.matches("<rect").count();
    let one = grouped_bars(
        &["token mean", "last token"],
        &[("dinm".to_string(), vec![Some(0.0), None])],
        "activation shift (%)",
        Preset::Column,
    )
    .unwrap();
    assert_eq!(
        rects(&bars),
        rects(&one) + 1,
        "a bar for the 0, none for the missing value"
    );
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

/// The `y` of the text element showing `label`.
fn label_y(svg: &str, label: &str) -> f64 {
    let end = svg
        .find(&format!(">\n{label}\n<"))
        .unwrap_or_else(|| panic!("no label {label}"));
    let start = svg[..end].rfind("<text").unwrap();
    let y = svg[start..end].split(" y=\"").nth(1).unwrap();
    y[..y.find('"').unwrap()].parse().unwrap()
}

#[test]
fn group_labels_too_wide_for_a_column_alternate_between_two_rows() {
    let groups = [
        "DS",
        "DG_onlyQ",
        "DG_otherA",
        "DG_otherQ",
        "DG_otherAQ",
        "DG-Avg",
    ];
    let series = [("vanilla".to_string(), vec![Some(10.0); 6])];
    let column = grouped_bars(&groups, &series, "defense (%)", Preset::Column).unwrap();
    let (first, second) = (label_y(&column, "DS"), label_y(&column, "DG_onlyQ"));
    assert!(
        second > first,
        "the second label sits lower ({first} vs {second})"
    );
    assert_eq!(label_y(&column, "DG_otherA"), first);
    // At full width they fit on one row.
    let full = grouped_bars(&groups, &series, "defense (%)", Preset::Full).unwrap();
    assert_eq!(label_y(&full, "DS"), label_y(&full, "DG_onlyQ"));
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
