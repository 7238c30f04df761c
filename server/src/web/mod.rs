//! `safeedit serve`: the Leptos app on axum, with the engine behind its server functions, the
//! DINM job worker, the runs database, the progress stream (SSE) and the run downloads.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use app::ssr::{AppState, BoxFuture, Engine, EvalPageData, Runs};
use app::{App, OUTPUT_NAME, shell};
use axum::Router;
use axum::extract::{Path as UrlPath, Query};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use leptos::config::{Env, LeptosOptions};
use leptos_axum::{LeptosRoutes, generate_route_list};
use safeedit_core::ModelSummary;
use safeedit_core::mechanism::{self, AnalysisRecord, AnalysisSummary};
use safeedit_core::run::{EditRequest, FigureSvg, JobSnapshot, RunRecord, RunSummary};
use safeedit_core::table::{EvalEntry, MetricTable, ResultsView, to_tidy_csv};
use safeedit_core::test_all::{self, TestAllRunRecord};

mod jobs;

use jobs::{Jobs, WorkerContext};
use safeedit_figures::{self as figures, Format, Preset};
use safeedit_pipeline::backend::{self, Model};
use safeedit_pipeline::provenance::model_checksum;
use safeedit_pipeline::{data, paths};
use safeedit_store::Store;

/// Arguments of `safeedit serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SAFEEDIT_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Model: a .gguf file, a Hugging Face directory, or `tiny` [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
    /// Folder with the full SafeEdit release (SafeEdit_test.json, SafeEdit_val.json,
    /// SafeEdit_train.json) [default: the shipped samples].
    #[arg(long, env = "SAFEEDIT_DIR")]
    pub safeedit_dir: Option<PathBuf>,
    /// Where runs live: the SQLite database and the edits' deltas [default: ~/.cache/safeedit/data].
    #[arg(long, env = "SAFEEDIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A database URL instead of the SQLite file (e.g. postgres://user@host/safeedit).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Judge with the paper's classifier in this directory [default: the built-in judge].
    #[arg(long, env = "SAFEEDIT_JUDGE_DIR")]
    pub judge_dir: Option<PathBuf>,
    /// The built site (scripts/build-site.sh writes it): `pkg/` with the wasm bundle and CSS.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
}

/// The engine as the web layer sees it: one loaded model.
struct LocalEngine {
    model: Arc<Mutex<Model>>,
    summary: ModelSummary,
}

impl Engine for LocalEngine {
    fn model_summary(&self) -> ModelSummary {
        // Read once at start-up, so the page never waits for a running edit.
        let _ = &self.model;
        self.summary.clone()
    }
}

/// Jobs and runs for the web layer.
struct RunService {
    jobs: Jobs,
    store: Store,
}

impl Runs for RunService {
    fn submit(&self, request: EditRequest) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            match self.jobs.submit(request).await {
                Ok((id, _)) => Ok(id),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn job(&self, id: String) -> BoxFuture<'_, Result<Option<JobSnapshot>, String>> {
        Box::pin(async move { self.jobs.snapshot(&id).await.map_err(|e| format!("{e:#}")) })
    }

    fn cancel(&self, id: String) -> bool {
        self.jobs.cancel(&id)
    }

    fn run(&self, slug: String) -> BoxFuture<'_, Result<Option<RunRecord>, String>> {
        Box::pin(async move { self.store.run(&slug).await.map_err(|e| format!("{e:#}")) })
    }

    fn figure(
        &self,
        slug: String,
        chart: String,
    ) -> BoxFuture<'_, Result<Option<FigureSvg>, String>> {
        Box::pin(async move {
            let Some(run) = self.store.run(&slug).await.map_err(|e| format!("{e:#}"))? else {
                return Ok(None);
            };
            let svg =
                figures::run_chart(&run, &chart, Preset::Column).map_err(|e| format!("{e:#}"))?;
            Ok(svg.map(|svg| FigureSvg { name: chart, svg }))
        })
    }

    fn eval(&self, slug: String) -> BoxFuture<'_, Result<Option<EvalPageData>, String>> {
        Box::pin(async move {
            let err = |e: safeedit_store::StoreError| e.to_string();
            let Some(record) = self.store.eval(&slug).await.map_err(err)? else {
                return Ok(None);
            };
            let instances = self.store.eval_instances(&slug).await.map_err(err)?;
            Ok(Some((record, instances)))
        })
    }

    fn results(
        &self,
        runs: Option<String>,
        group: String,
        value: String,
    ) -> BoxFuture<'_, Result<ResultsView, String>> {
        Box::pin(async move {
            let all = self
                .store
                .list_evals()
                .await
                .map_err(|e| format!("{e:#}"))?;
            ResultsView::build(all, runs.as_deref(), &group, &value)
        })
    }

    fn analysis(&self, slug: String) -> BoxFuture<'_, Result<Option<AnalysisRecord>, String>> {
        Box::pin(async move {
            self.store
                .analysis(&slug)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }

    fn test_all_run(
        &self,
        slug: String,
    ) -> BoxFuture<'_, Result<Option<TestAllRunRecord>, String>> {
        Box::pin(async move {
            self.store
                .test_all(&slug)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }

    fn test_all_runs(&self) -> BoxFuture<'_, Result<Vec<TestAllRunRecord>, String>> {
        Box::pin(async move {
            self.store
                .list_test_all()
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }

    fn analyses(&self) -> BoxFuture<'_, Result<Vec<AnalysisSummary>, String>> {
        Box::pin(async move {
            self.store
                .list_analyses()
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }

    fn analysis_figure(
        &self,
        slug: String,
        chart: String,
    ) -> BoxFuture<'_, Result<Option<FigureSvg>, String>> {
        Box::pin(async move {
            let err = |e: safeedit_store::StoreError| e.to_string();
            let Some(record) = self.store.analysis(&slug).await.map_err(err)? else {
                return Ok(None);
            };
            let svg = figures::mechanism_chart(&record.report, &chart, Preset::Column)
                .map_err(|e| e.to_string())?;
            Ok(svg.map(|svg| FigureSvg { name: chart, svg }))
        })
    }

    fn results_figure(
        &self,
        runs: Option<String>,
        group: String,
        value: String,
    ) -> BoxFuture<'_, Result<Option<FigureSvg>, String>> {
        Box::pin(async move {
            let all = self
                .store
                .list_evals()
                .await
                .map_err(|e| format!("{e:#}"))?;
            let view = ResultsView::build(all, runs.as_deref(), &group, &value)?;
            let svg = figures::results_chart(&view.table, Preset::Column)
                .map_err(|e| format!("{e:#}"))?;
            Ok(svg.map(|svg| FigureSvg {
                name: "defense".into(),
                svg,
            }))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RunSummary>, String>> {
        Box::pin(async move {
            self.store
                .list_runs(200)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }
}

/// Runs the server until Ctrl-C.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let bundle = args.site_root.join("pkg").join(format!("{OUTPUT_NAME}.js"));
    if !bundle.is_file() {
        anyhow::bail!(
            "the site bundle {} is missing; build it with scripts/build-site.sh or pass --site-root",
            bundle.display()
        );
    }
    let started = std::time::Instant::now();
    let catalog = Arc::new(data::catalog(args.safeedit_dir.as_deref())?);
    tracing::info!(
        splits = ?catalog.split_names(),
        seconds = started.elapsed().as_secs_f64(),
        "SafeEdit data indexed"
    );
    let model_path = paths::model_or_default(args.model)?;
    let model = backend::load(&model_path, &mut crate::cli::progress::Bars::new())?;
    tracing::info!(model = %model.name, backend = backend::NAME, "model loaded");
    let summary = model.summary(backend::NAME);
    let preset = safeedit_engine::dinm::DinmConfig::preset_for(&model.name, &model.architecture);
    let n_layers = model.config.n_layers;
    let model = Arc::new(Mutex::new(model));
    let engine: Arc<dyn Engine> = Arc::new(LocalEngine {
        model: model.clone(),
        summary,
    });
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(paths::default_data_dir);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = Store::open(args.database_url.as_deref(), &data_dir).await?;
        let interrupted = store.fail_interrupted_jobs().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "jobs of the previous server process marked failed"
            );
        }
        let jobs = Jobs::start(WorkerContext {
            model,
            catalog: catalog.clone(),
            judge_dir: args.judge_dir.clone(),
            store: store.clone(),
            runtime: tokio::runtime::Handle::current(),
            model_path: model_path.clone(),
            model_checksum: model_checksum(&model_path),
            delta_dir: data_dir.join("deltas"),
            preset,
            n_layers,
        });
        let runs = Arc::new(RunService {
            jobs: jobs.clone(),
            store: store.clone(),
        });
        let options = LeptosOptions::builder()
            .output_name(OUTPUT_NAME)
            .site_root(args.site_root.display().to_string())
            .site_pkg_dir("pkg")
            .site_addr(args.addr)
            .env(Env::PROD)
            .build();
        let state = AppState {
            leptos_options: options.clone(),
            engine,
            catalog,
            runs,
        };
        let routes = generate_route_list(App);
        let api = Router::new()
            .route(
                "/api/jobs/{id}/events",
                get({
                    let jobs = jobs.clone();
                    move |UrlPath(id): UrlPath<String>, Query(q): Query<EventsQuery>| {
                        job_events(jobs.clone(), id, q.from.unwrap_or(0))
                    }
                }),
            )
            .route(
                "/api/evals/{slug}/{file}",
                get({
                    let store = store.clone();
                    move |UrlPath((slug, file)): UrlPath<(String, String)>| {
                        eval_file(store.clone(), slug, file)
                    }
                }),
            )
            .route(
                "/api/results.csv",
                get({
                    let store = store.clone();
                    move |Query(q): Query<ResultsQuery>, headers: axum::http::HeaderMap| {
                        results_file(store.clone(), ResultsFormat::Csv, q, headers)
                    }
                }),
            )
            .route(
                "/api/results.tex",
                get({
                    let store = store.clone();
                    move |Query(q): Query<ResultsQuery>, headers: axum::http::HeaderMap| {
                        results_file(store.clone(), ResultsFormat::Latex, q, headers)
                    }
                }),
            )
            .route(
                "/api/runs/{slug}/figures/{file}",
                get({
                    let store = store.clone();
                    move |UrlPath((slug, file)): UrlPath<(String, String)>,
                          Query(q): Query<FigureQuery>| {
                        run_figure_file(store.clone(), slug, file, q.preset)
                    }
                }),
            )
            .route(
                "/api/results/figures/{file}",
                get({
                    let store = store.clone();
                    move |UrlPath(file): UrlPath<String>, Query(q): Query<ResultsQuery>| {
                        results_figure_file(store.clone(), file, q)
                    }
                }),
            )
            .route(
                "/api/mechanisms/{slug}/figures/{file}",
                get({
                    let store = store.clone();
                    move |UrlPath((slug, file)): UrlPath<(String, String)>,
                          Query(q): Query<FigureQuery>| {
                        analysis_figure_file(store.clone(), slug, file, q.preset)
                    }
                }),
            )
            .route(
                "/api/mechanisms/{slug}/{file}",
                get({
                    let store = store.clone();
                    move |UrlPath((slug, file)): UrlPath<(String, String)>,
                          headers: axum::http::HeaderMap| {
                        analysis_file(store.clone(), slug, file, origin(&headers))
                    }
                }),
            )
            .route(
                "/api/test-all.tex",
                get({
                    let store = store.clone();
                    move |Query(q): Query<ResultsQuery>, headers: axum::http::HeaderMap| {
                        test_all_table_file(store.clone(), true, q.runs, origin(&headers))
                    }
                }),
            )
            .route(
                "/api/test-all.csv",
                get({
                    let store = store.clone();
                    move |Query(q): Query<ResultsQuery>, headers: axum::http::HeaderMap| {
                        test_all_table_file(store.clone(), false, q.runs, origin(&headers))
                    }
                }),
            )
            .route(
                "/api/test-all/{slug}/{file}",
                get({
                    let store = store.clone();
                    move |UrlPath((slug, file)): UrlPath<(String, String)>,
                          headers: axum::http::HeaderMap| {
                        test_all_file(store.clone(), slug, file, origin(&headers))
                    }
                }),
            )
            .route(
                "/api/runs/{slug}/{file}",
                get({
                    let store = store.clone();
                    let deltas = data_dir.join("deltas");
                    move |UrlPath((slug, file)): UrlPath<(String, String)>| {
                        run_file(store.clone(), deltas.clone(), slug, file)
                    }
                }),
            );
        let router = Router::new()
            .leptos_routes(&state, routes, {
                let options = options.clone();
                move || shell(options.clone())
            })
            .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
            .with_state(state)
            .merge(api)
            .layer(axum::middleware::map_response(client_errors_are_4xx));
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        tracing::info!("SafeEdit Studio listening on http://{}", args.addr);
        axum::serve(listener, router.into_make_service())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

#[derive(serde::Deserialize)]
struct EventsQuery {
    from: Option<usize>,
}

/// `GET /api/jobs/{id}/events?from=N`: the job's events from the N-th on, as SSE messages (one
/// JSON [`safeedit_core::run::JobEvent`] each), until the job ends.
async fn job_events(jobs: Jobs, id: String, from: usize) -> Response {
    let Some(job) = jobs.get(&id) else {
        // A job of an earlier process: its final state, if the database knows it.
        return match jobs.snapshot(&id).await {
            Ok(Some(snapshot)) => {
                let events: Vec<Result<Event, Infallible>> = snapshot
                    .events
                    .iter()
                    .skip(from)
                    .map(
                        |e| Ok(Event::default().data(serde_json::to_string(e).unwrap_or_default())),
                    )
                    .collect();
                Sse::new(futures::stream::iter(events)).into_response()
            }
            Ok(None) => (StatusCode::NOT_FOUND, format!("no job `{id}`")).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
        };
    };
    let rx = job.subscribe();
    let stream = futures::stream::unfold(
        (job, rx, from, false),
        |(job, mut rx, next, finished)| async move {
            if finished {
                return None;
            }
            loop {
                let event = job.snapshot().events.get(next).cloned();
                if let Some(event) = event {
                    let last = event.status().is_final();
                    let sse =
                        Event::default().data(serde_json::to_string(&event).unwrap_or_default());
                    return Some((Ok::<_, Infallible>(sse), (job, rx, next + 1, last)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A text download.
fn attachment(mime: &str, name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

fn internal(e: impl Into<anyhow::Error>) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{:#}", e.into())).into_response()
}

/// `GET /api/evals/{slug}/{summary.csv | table.tex | instances.jsonl}`: an evaluation's metric
/// table (tidy CSV; LaTeX with one row per slice) and every instance's responses and verdicts.
async fn eval_file(store: Store, slug: String, file: String) -> Response {
    let record = match store.eval(&slug).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, format!("no evaluation `{slug}`")).into_response();
        }
        Err(e) => return internal(e),
    };
    let name = |ext: &str| format!("safeedit-eval-{slug}-{}.{ext}", record.method);
    match file.as_str() {
        "summary.csv" => attachment(
            "text/csv",
            &name("csv"),
            safeedit_core::eval::to_csv(&record.method, &record.metrics),
        ),
        "table.tex" => {
            // One row per slice: the run overall, then per category and per attack.
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
                        .map(|r| safeedit_core::eval::MetricRow {
                            group: "all".into(),
                            value: "all".into(),
                            ..r.clone()
                        })
                        .collect(),
                })
                .collect();
            let table = MetricTable::build(&entries, "all", "all");
            let caption = format!(
                "SafeEdit metrics of {} on {} ({}, {} instances), overall, per category and per attack.",
                record.method, record.data, record.model, record.instances
            );
            attachment("application/x-tex", &name("tex"), table.to_latex(&caption))
        }
        "instances.jsonl" => match store.eval_instances(&slug).await {
            Ok(instances) => attachment(
                "application/jsonl",
                &name("jsonl"),
                instances
                    .iter()
                    .map(|i| serde_json::to_string(i).unwrap_or_default() + "\n")
                    .collect(),
            ),
            Err(e) => internal(e),
        },
        other => (
            StatusCode::NOT_FOUND,
            format!("no file `{other}` (summary.csv, table.tex, instances.jsonl)"),
        )
            .into_response(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ResultsFormat {
    Csv,
    Latex,
}

#[derive(serde::Deserialize)]
struct ResultsQuery {
    runs: Option<String>,
    group: Option<String>,
    value: Option<String>,
    /// Figures only: `column` or `full`.
    preset: Option<String>,
}

/// `http://{Host}` of a request, for links in downloaded tables (empty without a Host).
fn origin(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default()
}

/// `GET /api/results.csv` (every number of the chosen runs, tidy) and `/api/results.tex` (the
/// chosen slice's table, booktabs, best bold, the runs' absolute links in a comment).
async fn results_file(
    store: Store,
    format: ResultsFormat,
    q: ResultsQuery,
    headers: axum::http::HeaderMap,
) -> Response {
    let all = match store.list_evals().await {
        Ok(all) => all,
        Err(e) => return internal(e),
    };
    let (group, value) = (
        q.group.unwrap_or_else(|| "all".into()),
        q.value.unwrap_or_else(|| "all".into()),
    );
    let by_slug: std::collections::HashMap<String, safeedit_core::run::EvalRecord> =
        all.iter().map(|e| (e.slug.clone(), e.clone())).collect();
    let view = match ResultsView::build(all, q.runs.as_deref(), &group, &value) {
        Ok(v) => v,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let base = origin(&headers);
    let entries: Vec<EvalEntry> = view
        .selected
        .iter()
        .filter_map(|slug| by_slug.get(slug))
        .map(|e| EvalEntry {
            method: e.method.clone(),
            link: format!("{base}/evals/{}", e.slug),
            metrics: e.metrics.clone(),
        })
        .collect();
    if format == ResultsFormat::Csv {
        return attachment("text/csv", "safeedit-results.csv", to_tidy_csv(&entries));
    }
    let table = MetricTable::build(&entries, &group, &value);
    let slice = if group == "all" {
        "all instances".to_string()
    } else {
        format!("{group} {value}")
    };
    let models: std::collections::BTreeSet<&str> = view
        .selected
        .iter()
        .filter_map(|s| by_slug.get(s))
        .map(|e| e.model.as_str())
        .collect();
    let caption = format!(
        "SafeEdit results ({slice}; {}). DS and DG: defense success and generalisation (%), Fluency: n-gram entropy.",
        models.into_iter().collect::<Vec<_>>().join(", ")
    );
    attachment(
        "application/x-tex",
        "safeedit-results.tex",
        table.to_latex(&caption),
    )
}

#[derive(serde::Deserialize)]
struct FigureQuery {
    preset: Option<String>,
}

/// `GET /api/runs/{slug}/figures/{chart}.{svg|pdf|png}?preset=column|full`: a run's chart as a
/// file for a paper (the same drawing the run page shows).
async fn run_figure_file(
    store: Store,
    slug: String,
    file: String,
    preset: Option<String>,
) -> Response {
    let record = store.run(&slug).await.map_err(Into::into);
    figure_file(
        "run",
        &figures::RUN_CHARTS,
        slug,
        file,
        preset,
        record,
        figures::run_chart,
    )
    .await
}

/// `GET /api/mechanisms/{slug}/figures/{chart}.{svg|pdf|png}?preset=column|full`: an analysis's
/// chart for a paper (the Mechanisms page's drawing).
async fn analysis_figure_file(
    store: Store,
    slug: String,
    file: String,
    preset: Option<String>,
) -> Response {
    let record = store.analysis(&slug).await.map_err(Into::into);
    figure_file(
        "analysis",
        &figures::MECHANISM_CHARTS,
        slug,
        file,
        preset,
        record,
        |a: &AnalysisRecord, chart, preset| figures::mechanism_chart(&a.report, chart, preset),
    )
    .await
}

/// A stored record's chart `file` (`CHART.svg|pdf|png`) at `preset`, drawn by `draw`.
async fn figure_file<T: Send + 'static>(
    what: &'static str,
    charts: &'static [&'static str],
    slug: String,
    file: String,
    preset: Option<String>,
    record: anyhow::Result<Option<T>>,
    draw: fn(&T, &str, Preset) -> figures::Result<Option<String>>,
) -> Response {
    let bad = |message: String| (StatusCode::BAD_REQUEST, message).into_response();
    let Some((chart, ext)) = file.rsplit_once('.') else {
        return bad(format!(
            "`{file}`: expected CHART.svg, CHART.pdf or CHART.png"
        ));
    };
    let format: Format = match ext.parse() {
        Ok(f) => f,
        Err(e) => return bad(format!("{e:#}")),
    };
    let preset: Preset = match preset.as_deref().unwrap_or("column").parse() {
        Ok(p) => p,
        Err(e) => return bad(format!("{e:#}")),
    };
    if !charts.contains(&chart) {
        return (
            StatusCode::NOT_FOUND,
            format!("no chart `{chart}` ({})", charts.join(", ")),
        )
            .into_response();
    }
    let record = match record {
        Ok(Some(r)) => r,
        Ok(None) => return (StatusCode::NOT_FOUND, format!("no {what} `{slug}`")).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    };
    let chart = chart.to_string();
    // Rasterising and PDF conversion take milliseconds to tens of them: off the async threads.
    let drawn = tokio::task::spawn_blocking(move || {
        draw(&record, &chart, preset)?
            .map(|svg| figures::export(&svg, format))
            .transpose()
    })
    .await;
    match drawn {
        Ok(Ok(Some(bytes))) => (
            [
                (header::CONTENT_TYPE, format.mime().to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"safeedit-{slug}-{}-{}.{}\"",
                        file.rsplit_once('.').map_or("", |(c, _)| c),
                        preset.as_str(),
                        format.extension()
                    ),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(Ok(None)) => (
            StatusCode::NOT_FOUND,
            format!("{what} `{slug}` has nothing to draw for `{file}`"),
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("drawing failed: {e}"),
        )
            .into_response(),
    }
}

/// `GET /api/results/figures/defense.{svg|pdf|png}?runs=&group=&value=&preset=`: the results
/// table's defense metrics as grouped bars, for a paper.
async fn results_figure_file(store: Store, file: String, q: ResultsQuery) -> Response {
    let table = match store.list_evals().await {
        Ok(all) => ResultsView::build(
            all,
            q.runs.as_deref(),
            q.group.as_deref().unwrap_or("all"),
            q.value.as_deref().unwrap_or("all"),
        )
        .map(|view| Some(view.table))
        .map_err(|message| anyhow::anyhow!(message)),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = &table {
        // An unknown run or group is the request's fault.
        return (StatusCode::BAD_REQUEST, format!("{e:#}")).into_response();
    }
    figure_file(
        "results table",
        &figures::RESULTS_CHARTS,
        "results".into(),
        file,
        q.preset,
        table,
        |t: &MetricTable, _, preset| figures::results_chart(t, preset),
    )
    .await
}

/// `GET /api/mechanisms/{slug}/{analysis.json | analysis.csv | analysis.tex}`.
async fn analysis_file(store: Store, slug: String, file: String, base: String) -> Response {
    let record = match store.analysis(&slug).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, format!("no analysis `{slug}`")).into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    };
    let (mime, body) = match file.as_str() {
        "analysis.json" => (
            "application/json",
            serde_json::to_string_pretty(&record).unwrap_or_default(),
        ),
        "analysis.csv" => ("text/csv", mechanism::to_csv(&record.report)),
        "analysis.tex" => (
            "application/x-tex",
            mechanism::to_latex(&record.report, &format!("{base}/mechanisms/{slug}")),
        ),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                format!("no file `{file}` (analysis.json, analysis.csv, analysis.tex)"),
            )
                .into_response();
        }
    };
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"safeedit-{slug}-{file}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /api/test-all.tex` / `.csv?runs=slug,slug`: Table 3 of the chosen test_ALL runs (every
/// stored run when `runs` is absent), LaTeX with the runs' links, or tidy CSV.
async fn test_all_table_file(
    store: Store,
    latex: bool,
    runs: Option<String>,
    base: String,
) -> Response {
    let all = match store.list_test_all().await {
        Ok(all) => all,
        Err(e) => return internal(e),
    };
    let chosen = match test_all::select_runs(&all, runs.as_deref()) {
        Ok(chosen) => chosen,
        Err(message) => return (StatusCode::NOT_FOUND, message).into_response(),
    };
    let (tex, csv) = test_all::runs_table(&chosen, &base);
    if latex {
        attachment("application/x-tex", "safeedit-test-all.tex", tex)
    } else {
        attachment("text/csv", "safeedit-test-all.csv", csv)
    }
}

/// `GET /api/test-all/{slug}/{summary.json | summary.csv | table.tex}`: one test_ALL run.
async fn test_all_file(store: Store, slug: String, file: String, base: String) -> Response {
    let record = match store.test_all(&slug).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, format!("no test_ALL run `{slug}`")).into_response();
        }
        Err(e) => return internal(e),
    };
    let (tex, csv) = test_all::runs_table(&[&record], &base);
    let (mime, body) = match file.as_str() {
        "summary.json" => (
            "application/json",
            serde_json::to_string_pretty(&record).unwrap_or_default(),
        ),
        "summary.csv" => ("text/csv", csv),
        "table.tex" => ("application/x-tex", tex),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                format!("no file `{file}` (summary.json, summary.csv, table.tex)"),
            )
                .into_response();
        }
    };
    attachment(mime, &format!("safeedit-{slug}-{file}"), body)
}

/// `GET /api/runs/{slug}/{run.json | generations.jsonl | delta.safetensors}`.
async fn run_file(store: Store, deltas: PathBuf, slug: String, file: String) -> Response {
    let run = match store.run(&slug).await {
        Ok(Some(run)) => run,
        Ok(None) => return (StatusCode::NOT_FOUND, format!("no run `{slug}`")).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    };
    let attachment = |name: &str| format!("attachment; filename=\"safeedit-{slug}-{name}\"");
    match file.as_str() {
        "run.json" => (
            [
                (header::CONTENT_TYPE, "application/json".to_string()),
                (header::CONTENT_DISPOSITION, attachment("run.json")),
            ],
            serde_json::to_string_pretty(&run).unwrap_or_default(),
        )
            .into_response(),
        "generations.jsonl" => {
            let body: String = run
                .outcome
                .comparisons
                .iter()
                .map(|c| serde_json::to_string(c).unwrap_or_default() + "\n")
                .collect();
            (
                [
                    (header::CONTENT_TYPE, "application/jsonl".to_string()),
                    (header::CONTENT_DISPOSITION, attachment("generations.jsonl")),
                ],
                body,
            )
                .into_response()
        }
        "delta.safetensors" => {
            match tokio::fs::read(deltas.join(format!("{slug}.safetensors"))).await {
                Ok(bytes) => (
                    [
                        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                        (header::CONTENT_DISPOSITION, attachment("delta.safetensors")),
                    ],
                    bytes,
                )
                    .into_response(),
                Err(_) => (
                    StatusCode::NOT_FOUND,
                    format!("the delta of run `{slug}` is not on this server"),
                )
                    .into_response(),
            }
        }
        other => (
            StatusCode::NOT_FOUND,
            format!("no file `{other}` (run.json, generations.jsonl, delta.safetensors)"),
        )
            .into_response(),
    }
}

/// Server functions answer every error with 500; input that does not parse, or names no
/// instance, or has an out-of-range hyperparameter, is the client's fault, so those become 400;
/// a full job queue is 503 (try again later). The body keeps the message naming the field.
async fn client_errors_are_4xx(response: Response) -> Response {
    use axum::body::Body;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key("serverfnerror")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading an error body: {e}"),
            )
                .into_response();
        }
    };
    let client_side = [
        "Args|",
        "MissingArg|",
        "Deserialization|",
        "ServerError|invalid request:",
    ]
    .iter()
    .any(|p| bytes.starts_with(p.as_bytes()));
    if client_side {
        parts.status = StatusCode::BAD_REQUEST;
    } else if bytes.starts_with(b"ServerError|busy:") {
        parts.status = StatusCode::SERVICE_UNAVAILABLE;
    }
    Response::from_parts(parts, Body::from(bytes))
}
