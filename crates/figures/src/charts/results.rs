//! The results table's chart: the defense metrics as grouped bars per method.

use safeedit_core::eval::DEFENSE_METRICS;
use safeedit_core::table::MetricTable;

use super::grouped_bars;
use crate::error::Result;
use crate::style::Preset;

/// The results page's charts.
pub const RESULTS_CHARTS: [&str; 1] = ["defense"];

/// The defense metrics present in a results table (DS, the DG inputs, DG-Avg), as grouped bars
/// per method (`None` when the table has none of them or no rows).
pub fn results_chart(table: &MetricTable, preset: Preset) -> Result<Option<String>> {
    let columns: Vec<(usize, &str)> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| DEFENSE_METRICS.contains(&c.as_str()))
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
