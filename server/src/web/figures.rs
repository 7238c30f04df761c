//! Figure downloads for papers: a run's, an analysis's or the results table's chart as SVG,
//! vector PDF or 300 dpi PNG at an ACL width preset — the same drawing the pages show.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use safeedit_core::mechanism::AnalysisRecord;
use safeedit_core::table::MetricTable;
use safeedit_figures::{self as figures, Format, Preset};

use super::WebState;
use super::error::{WebError, WebResult};
use super::files::{ResultsQuery, attachment, found};

/// `?preset=column|full`.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct FigureQuery {
    preset: Option<String>,
}

/// A chart file name (`CHART.svg|pdf|png`) and preset, checked: a malformed name or an unknown
/// format or preset is a 400, an unknown chart a 404.
struct FigureRequest {
    chart: String,
    format: Format,
    preset: Preset,
}

impl FigureRequest {
    fn parse(file: &str, preset: Option<&str>, charts: &[&str]) -> WebResult<Self> {
        let Some((chart, ext)) = file.rsplit_once('.') else {
            return Err(WebError::BadRequest(format!(
                "`{file}`: expected CHART.svg, CHART.pdf or CHART.png"
            )));
        };
        let format: Format = ext.parse()?;
        let preset: Preset = preset.unwrap_or("column").parse()?;
        if !charts.contains(&chart) {
            return Err(WebError::NotFound(format!(
                "no chart `{chart}` ({})",
                charts.join(", ")
            )));
        }
        Ok(Self {
            chart: chart.to_string(),
            format,
            preset,
        })
    }

    /// Draws and exports the chart off the async threads (rasterising takes milliseconds to
    /// tens of them); `what` and `slug` name the record in errors and the file name.
    async fn draw<T: Send + 'static>(
        self,
        what: &'static str,
        slug: &str,
        record: T,
        draw: fn(&T, &str, Preset) -> figures::Result<Option<String>>,
    ) -> WebResult {
        let Self {
            chart,
            format,
            preset,
        } = self;
        let name = format!(
            "safeedit-{slug}-{chart}-{}.{}",
            preset.as_str(),
            format.extension()
        );
        let chart_name = chart.clone();
        let drawn = tokio::task::spawn_blocking(move || {
            draw(&record, &chart, preset)?
                .map(|svg| figures::export(&svg, format))
                .transpose()
        })
        .await
        .map_err(|e| WebError::Internal(format!("drawing failed: {e}")))?;
        match drawn? {
            Some(bytes) => Ok(attachment(format.mime(), &name, bytes)),
            None => Err(WebError::NotFound(format!(
                "{what} `{slug}` has nothing to draw for `{chart_name}`"
            ))),
        }
    }
}

/// `GET /api/runs/{slug}/figures/{chart}.{svg|pdf|png}?preset=column|full`.
pub(super) async fn run_figure(
    State(state): State<WebState>,
    Path((slug, file)): Path<(String, String)>,
    Query(q): Query<FigureQuery>,
) -> WebResult<Response> {
    let request = FigureRequest::parse(&file, q.preset.as_deref(), &figures::RUN_CHARTS)?;
    let run = found(state.store.run(&slug).await?, "run", &slug)?;
    request.draw("run", &slug, run, figures::run_chart).await
}

/// `GET /api/mechanisms/{slug}/figures/{chart}.{svg|pdf|png}?preset=column|full`.
pub(super) async fn analysis_figure(
    State(state): State<WebState>,
    Path((slug, file)): Path<(String, String)>,
    Query(q): Query<FigureQuery>,
) -> WebResult<Response> {
    let request = FigureRequest::parse(&file, q.preset.as_deref(), &figures::MECHANISM_CHARTS)?;
    let record = found(state.store.analysis(&slug).await?, "analysis", &slug)?;
    request
        .draw(
            "analysis",
            &slug,
            record,
            |a: &AnalysisRecord, chart, preset| figures::mechanism_chart(&a.report, chart, preset),
        )
        .await
}

/// `GET /api/results/figures/defense.{svg|pdf|png}?runs=&group=&value=&preset=`: the results
/// table's defense metrics as grouped bars.
pub(super) async fn results_figure(
    State(state): State<WebState>,
    Path(file): Path<String>,
    Query(q): Query<ResultsQuery>,
) -> WebResult<Response> {
    let request = FigureRequest::parse(&file, q.preset.as_deref(), &figures::RESULTS_CHARTS)?;
    let (view, _) = q.view(&state).await?;
    request
        .draw(
            "results table",
            "results",
            view.table,
            |t: &MetricTable, _, preset| figures::results_chart(t, preset),
        )
        .await
}
