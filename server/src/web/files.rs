//! Downloads: a run's JSON, generations and delta; an evaluation's tables and instances; the
//! results table across runs; an analysis's JSON, CSV and LaTeX; test_ALL runs and Table 3.

use std::collections::{BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use safeedit_core::eval::MetricRow;
use safeedit_core::flag::human_metrics;
use safeedit_core::mechanism;
use safeedit_core::run::EvalRecord;
use safeedit_core::table::{EvalEntry, MetricTable, ResultsView, to_tidy_csv};
use safeedit_core::test_all;

use super::WebState;
use super::error::{WebError, WebResult};
use super::public;

/// A download named `name`.
pub(super) fn attachment(mime: &str, name: &str, body: impl Into<Bytes>) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body.into(),
    )
        .into_response()
}

/// `http://{Host}` of a request, for links in downloaded tables (empty without a Host).
pub(super) fn origin(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default()
}

/// The stored record, or a `404` naming it (`what` `slug`).
pub(super) fn found<T>(record: Option<T>, what: &str, slug: &str) -> WebResult<T> {
    record.ok_or_else(|| WebError::NotFound(format!("no {what} `{slug}`")))
}

/// A `404` for a file that a record does not have, listing the ones it has.
fn no_file(file: &str, known: &str) -> WebError {
    WebError::NotFound(format!("no file `{file}` ({known})"))
}

/// Pretty JSON of a stored record (plain data: cannot fail).
fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("records serialise to JSON")
}

/// `GET /api/runs/{slug}/{run.json | generations.jsonl | delta.safetensors}`.
pub(super) async fn run_file(
    State(state): State<WebState>,
    Path((slug, file)): Path<(String, String)>,
) -> WebResult {
    let run = found(state.store.run(&slug).await?, "run", &slug)?;
    let name = format!("safeedit-{slug}-{file}");
    Ok(match file.as_str() {
        "run.json" => attachment("application/json", &name, pretty(&public::record(run))),
        "generations.jsonl" => {
            let body: String = run
                .outcome
                .comparisons
                .iter()
                .map(|c| serde_json::to_string(c).expect("records serialise") + "\n")
                .collect();
            attachment("application/jsonl", &name, body)
        }
        "delta.safetensors" => {
            let path = state.deltas.join(format!("{slug}.safetensors"));
            let bytes = tokio::fs::read(path).await.map_err(|_| {
                WebError::NotFound(format!("the delta of run `{slug}` is not on this server"))
            })?;
            attachment("application/octet-stream", &name, bytes)
        }
        other => {
            return Err(no_file(
                other,
                "run.json, generations.jsonl, delta.safetensors",
            ));
        }
    })
}

/// `GET /api/evals/{slug}/{summary.csv | table.tex | instances.jsonl}`: an evaluation's metric
/// table (tidy CSV; LaTeX with one row per slice) and every instance's responses and verdicts;
/// `?verdicts=human` recomputes the tables with the verdicts readers flagged.
pub(super) async fn eval_file(
    State(state): State<WebState>,
    Path((slug, file)): Path<(String, String)>,
    Query(q): Query<EvalFileQuery>,
) -> WebResult {
    let mut record = found(state.store.eval(&slug).await?, "evaluation", &slug)?;
    // With `?verdicts=human` the judged metrics are recomputed with the readers' verdicts where
    // they flagged the judge's, and the file says so (the method column / the caption).
    let human = match q.verdicts.as_deref() {
        None | Some("judge") => None,
        Some("human") => {
            let instances = state.store.eval_instances(&slug).await?;
            let flags = state.store.verdict_flags(&slug).await?;
            let (rows, replaced) = human_metrics(&record.metrics, &instances, &flags);
            record.metrics = rows;
            Some(replaced)
        }
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "verdicts: `{other}` is not `judge` or `human`"
            )));
        }
    };
    let suffix = if human.is_some() { "-human" } else { "" };
    let name = |ext: &str| format!("safeedit-eval-{slug}-{}{suffix}.{ext}", record.method);
    let method = match human {
        Some(n) => format!("{} (human verdicts: {n} flagged)", record.method),
        None => record.method.clone(),
    };
    Ok(match file.as_str() {
        "summary.csv" => attachment(
            "text/csv",
            &name("csv"),
            safeedit_core::eval::to_csv(&method, &record.metrics),
        ),
        "table.tex" => attachment(
            "application/x-tex",
            &name("tex"),
            eval_latex(&slug, &record, human),
        ),
        "instances.jsonl" => {
            let instances = state.store.eval_instances(&slug).await?;
            let body: String = instances
                .iter()
                .map(|i| serde_json::to_string(i).expect("records serialise") + "\n")
                .collect();
            attachment("application/jsonl", &name("jsonl"), body)
        }
        other => return Err(no_file(other, "summary.csv, table.tex, instances.jsonl")),
    })
}

/// The query of an evaluation's downloads.
#[derive(Debug, serde::Deserialize)]
pub(super) struct EvalFileQuery {
    /// `judge` (the default) or `human`: the judge's verdicts, or the readers' where flagged.
    verdicts: Option<String>,
}

/// An evaluation's table with one row per slice: the run overall, then per category and attack.
/// `human`: the judged metrics use the readers' verdicts, this many of them flagged.
fn eval_latex(slug: &str, record: &EvalRecord, human: Option<usize>) -> String {
    let mut slices: Vec<(String, String)> = Vec::new();
    for r in &record.metrics {
        let key = (r.group.clone(), r.value.clone());
        if !slices.contains(&key) {
            slices.push(key);
        }
    }
    let entries: Vec<EvalEntry> = slices
        .iter()
        .map(|(g, v)| EvalEntry {
            method: if g == "all" {
                format!("{} (all)", record.method)
            } else {
                v.clone()
            },
            link: format!("/evals/{slug} ({g})"),
            metrics: record
                .metrics
                .iter()
                .filter(|r| &r.group == g && &r.value == v)
                .map(|r| MetricRow {
                    group: "all".into(),
                    value: "all".into(),
                    ..r.clone()
                })
                .collect(),
        })
        .collect();
    let table = MetricTable::build(&entries, "all", "all");
    let mut caption = format!(
        "SafeEdit metrics of {} on {} ({}, {} instances), overall, per category and per attack.",
        record.method, record.data, record.model, record.instances
    );
    if let Some(n) = human {
        caption.push_str(&format!(
            " Verdicts: the judge's, except {n} response(s) a reader flagged, counted with the \
             reader's verdict."
        ));
    }
    table.to_latex(&caption)
}

/// What the results table picks from: every stored evaluation, newest first, and the DINM
/// edit runs among the picked slugs (`runs`), each standing for its edited model on its one
/// instance, so browser edits and one-instance evaluations share one table.
pub(super) async fn results_candidates(
    state: &WebState,
    runs: Option<&str>,
) -> safeedit_store::Result<Vec<EvalRecord>> {
    let named: Vec<&str> = runs
        .into_iter()
        .flat_map(|r| r.split(','))
        .map(str::trim)
        .collect();
    // Unlisted evaluations are offered only where the query names them (a shared link).
    let all = state.store.list_evals().await?;
    let mut all = state
        .store
        .listed(all, |e| Some(e.slug.as_str()), &named)
        .await?;
    for slug in named {
        if slug.is_empty() || all.iter().any(|e| e.slug == slug) {
            continue;
        }
        if let Some(run) = state.store.run(slug).await? {
            all.push(run.as_eval());
        }
    }
    Ok(all)
}

/// The query of the results table, its downloads and its chart.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ResultsQuery {
    /// Comma-separated evaluation slugs [default: the newest run of each method].
    pub runs: Option<String>,
    /// `all`, `category` or `attack`.
    pub group: Option<String>,
    /// The category or attack.
    pub value: Option<String>,
    /// Figures only: `column` or `full`.
    pub preset: Option<String>,
}

impl ResultsQuery {
    /// The slice: group and value, `all` by default.
    pub fn slice(&self) -> (String, String) {
        (
            self.group.clone().unwrap_or_else(|| "all".into()),
            self.value.clone().unwrap_or_else(|| "all".into()),
        )
    }

    /// The table of the stored evaluations this query selects (an unknown run or slice is the
    /// request's fault).
    pub async fn view(&self, state: &WebState) -> WebResult<(ResultsView, Vec<EvalRecord>)> {
        let all = results_candidates(state, self.runs.as_deref()).await?;
        let (group, value) = self.slice();
        let view = ResultsView::build(all.clone(), self.runs.as_deref(), &group, &value)
            .map_err(|e| WebError::BadRequest(e.to_string()))?;
        Ok((view, all))
    }
}

/// `GET /api/results.csv`: every number of the chosen runs, tidy.
pub(super) async fn results_csv(
    State(state): State<WebState>,
    Query(q): Query<ResultsQuery>,
    headers: HeaderMap,
) -> WebResult {
    let (entries, _) = results_entries(&state, &q, &headers).await?;
    Ok(attachment(
        "text/csv",
        "safeedit-results.csv",
        to_tidy_csv(&entries),
    ))
}

/// `GET /api/results.tex`: the chosen slice's table, booktabs, best bold, the runs' absolute
/// links in a comment.
pub(super) async fn results_tex(
    State(state): State<WebState>,
    Query(q): Query<ResultsQuery>,
    headers: HeaderMap,
) -> WebResult {
    let (entries, models) = results_entries(&state, &q, &headers).await?;
    let (group, value) = q.slice();
    let table = MetricTable::build(&entries, &group, &value);
    let slice = if group == "all" {
        "all instances".to_string()
    } else {
        format!("{group} {value}")
    };
    let caption = format!(
        "SafeEdit results ({slice}; {}). DS and DG: defense success and generalisation (%), Fluency: n-gram entropy.",
        models.into_iter().collect::<Vec<_>>().join(", ")
    );
    Ok(attachment(
        "application/x-tex",
        "safeedit-results.tex",
        table.to_latex(&caption),
    ))
}

/// The selected runs as table entries linking to their pages, and their models.
async fn results_entries(
    state: &WebState,
    q: &ResultsQuery,
    headers: &HeaderMap,
) -> WebResult<(Vec<EvalEntry>, BTreeSet<String>)> {
    let (view, all) = q.view(state).await?;
    let by_slug: HashMap<&str, &EvalRecord> = all.iter().map(|e| (e.slug.as_str(), e)).collect();
    let base = origin(headers);
    let selected: Vec<&EvalRecord> = view
        .selected
        .iter()
        .filter_map(|slug| by_slug.get(slug.as_str()).copied())
        .collect();
    let entries = selected
        .iter()
        .map(|e| EvalEntry {
            method: e.method.clone(),
            link: format!("{base}{}", e.page()),
            metrics: e.metrics.clone(),
        })
        .collect();
    let models = selected.iter().map(|e| e.model.clone()).collect();
    Ok((entries, models))
}

/// `GET /api/mechanisms/{slug}/{analysis.json | analysis.csv | analysis.tex}`.
pub(super) async fn analysis_file(
    State(state): State<WebState>,
    Path((slug, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> WebResult {
    let record = found(state.store.analysis(&slug).await?, "analysis", &slug)?;
    let (mime, body) = match file.as_str() {
        "analysis.json" => ("application/json", pretty(&public::record(record.clone()))),
        "analysis.csv" => ("text/csv", mechanism::to_csv(&record.report)),
        "analysis.tex" => (
            "application/x-tex",
            mechanism::to_latex(
                &record.report,
                &format!("{}/mechanisms/{slug}", origin(&headers)),
            ),
        ),
        other => {
            return Err(no_file(other, "analysis.json, analysis.csv, analysis.tex"));
        }
    };
    Ok(attachment(mime, &format!("safeedit-{slug}-{file}"), body))
}

/// Table 3 of the chosen test_ALL runs (every stored run when `runs` is absent): LaTeX with the
/// runs' links, and tidy CSV.
async fn test_all_table(
    state: &WebState,
    q: &ResultsQuery,
    headers: &HeaderMap,
) -> WebResult<(String, String)> {
    let named: Vec<&str> = q
        .runs
        .iter()
        .flat_map(|r| r.split(','))
        .map(str::trim)
        .collect();
    let all = state.store.list_test_all().await?;
    let all = state
        .store
        .listed(all, |r| Some(r.slug.as_str()), &named)
        .await?;
    let chosen = test_all::select_runs(&all, q.runs.as_deref())
        .map_err(|e| WebError::NotFound(e.to_string()))?;
    Ok(test_all::runs_table(&chosen, &origin(headers)))
}

/// `GET /api/test-all.tex?runs=slug,slug`: Table 3 as LaTeX.
pub(super) async fn test_all_tex(
    State(state): State<WebState>,
    Query(q): Query<ResultsQuery>,
    headers: HeaderMap,
) -> WebResult {
    let (tex, _) = test_all_table(&state, &q, &headers).await?;
    Ok(attachment(
        "application/x-tex",
        "safeedit-test-all.tex",
        tex,
    ))
}

/// `GET /api/test-all.csv?runs=slug,slug`: Table 3's numbers, tidy.
pub(super) async fn test_all_csv(
    State(state): State<WebState>,
    Query(q): Query<ResultsQuery>,
    headers: HeaderMap,
) -> WebResult {
    let (_, csv) = test_all_table(&state, &q, &headers).await?;
    Ok(attachment("text/csv", "safeedit-test-all.csv", csv))
}

/// `GET /api/test-all/{slug}/{summary.json | summary.csv | table.tex}`: one test_ALL run.
pub(super) async fn test_all_file(
    State(state): State<WebState>,
    Path((slug, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> WebResult {
    let record = found(state.store.test_all(&slug).await?, "test_ALL run", &slug)?;
    let (tex, csv) = test_all::runs_table(&[&record], &origin(&headers));
    let (mime, body) = match file.as_str() {
        "summary.json" => ("application/json", pretty(&public::record(record.clone()))),
        "summary.csv" => ("text/csv", csv),
        "table.tex" => ("application/x-tex", tex),
        other => return Err(no_file(other, "summary.json, summary.csv, table.tex")),
    };
    Ok(attachment(mime, &format!("safeedit-{slug}-{file}"), body))
}
