//! The server functions: what the pages ask the server for. Each answers its value or an
//! [`AppError`] whose variant sets the HTTP status; on the server they read the shared
//! [`AppState`](crate::ssr::AppState).

use leptos::prelude::*;
use safeedit_core::ask::{TryRequest, TryResponse};
use safeedit_core::browse::{InstancePage, InstanceQuery, SplitOverview};
use safeedit_core::eval::InstanceResult;
use safeedit_core::flag::VerdictFlag;
use safeedit_core::job::JobSpec;
use safeedit_core::mechanism::{AnalysisRecord, AnalysisSummary};
use safeedit_core::run::{CatalogEntry, EditRequest, EvalRecord, FigureSvg, RunRecord, RunSummary};
use safeedit_core::table::ResultsView;
use safeedit_core::test_all::TestAllRunRecord;
use safeedit_core::{ModelList, ModelSummary, SafeEditRecord, TrainedModelPage};

#[cfg(feature = "ssr")]
use crate::error::AppError;
use crate::error::AppResult;
use crate::job::JobPageData;
use crate::server_html::RenderedPage;

/// Describes the loaded model, read from the engine.
#[server(endpoint = "model_info")]
pub async fn model_info() -> AppResult<ModelSummary> {
    Ok(state()?.engine.model_summary())
}

/// The home page's read-only sections as HTML, rendered here: the benchmark's overview and the
/// loaded model's card.
#[server(endpoint = "home_html")]
pub async fn home_html() -> AppResult<(String, String)> {
    Ok(crate::home_body::render(
        overview().await?,
        model_info().await?,
    ))
}

/// Every split's instance counts per category and attack.
#[server(endpoint = "overview")]
pub async fn overview() -> AppResult<Vec<SplitOverview>> {
    Ok(state()?.catalog.overview())
}

/// One page of the instance table (filters, search, sort; the server does the work).
#[server(endpoint = "instances", input = leptos::server_fn::codec::Json)]
pub async fn list_instances(query: InstanceQuery) -> AppResult<InstancePage> {
    state()?
        .catalog
        .query(&query)
        .map_err(|e| AppError::BadRequest(e.to_string()).respond())
}

/// One instance by split and id (`None`: no such instance).
#[server(endpoint = "instance")]
pub async fn get_instance(split: String, id: u64) -> AppResult<Option<SafeEditRecord>> {
    Ok(state()?.catalog.instance(&split, id).cloned())
}

/// One instance's page, rendered here with the runs made on it (`None`: no such instance).
#[server(endpoint = "instance_html")]
pub async fn instance_html(split: String, id: u64) -> AppResult<Option<RenderedPage>> {
    let Some(record) = get_instance(split.clone(), id).await? else {
        return Ok(None);
    };
    let runs = list_instance_runs(split.clone(), id).await;
    Ok(Some(crate::instance_body::render(split, record, runs)))
}

/// Queues a DINM edit of one instance; returns the job id at once (or "busy").
#[server(endpoint = "start_edit", input = leptos::server_fn::codec::Json)]
pub async fn start_edit(request: EditRequest) -> AppResult<String> {
    state()?
        .runs
        .submit(JobSpec::Edit(request))
        .await
        .map_err(AppError::respond)
}

/// Queues a job of any kind (the body of `POST /api/jobs`); returns the job id at once.
#[server(endpoint = "start_job", input = leptos::server_fn::codec::Json)]
pub async fn start_job(spec: JobSpec) -> AppResult<String> {
    state()?.runs.submit(spec).await.map_err(AppError::respond)
}

/// A job's page: its header and its progress so far (`None`: no such job).
#[server(endpoint = "job_page")]
pub async fn job_page(id: String) -> AppResult<Option<JobPageData>> {
    let snapshot = state()?.runs.job(id).await.map_err(AppError::respond)?;
    Ok(snapshot.map(JobPageData::from))
}

/// Cancels a queued or running job; false when it is unknown or finished.
#[server(endpoint = "cancel_job", input = leptos::server_fn::codec::Json)]
pub async fn cancel_job(id: String) -> AppResult<bool> {
    Ok(state()?.runs.cancel(id).await)
}

/// A stored run (`None`: no such slug).
#[server(endpoint = "run")]
pub async fn get_run(slug: String) -> AppResult<Option<RunRecord>> {
    state()?.runs.run(slug).await.map_err(AppError::respond)
}

/// Every stored result (edit runs, evaluations, test_ALL runs, analyses, trained models),
/// newest first.
#[server(endpoint = "catalogue")]
pub async fn list_catalogue() -> AppResult<Vec<CatalogEntry>> {
    state()?.runs.catalogue().await.map_err(AppError::respond)
}

/// The `/runs` page's catalogue as HTML, rendered here: every stored result, newest first, that
/// passes the filters given (`kind`; `split`, `instance`, `layer` are the edit runs').
#[server(endpoint = "runs_html")]
pub async fn runs_html(
    kind: Option<String>,
    split: Option<String>,
    instance: Option<String>,
    layer: Option<String>,
) -> AppResult<String> {
    let all = list_catalogue().await?;
    let filter = crate::runs_body::RunsFilter {
        kind,
        split,
        instance,
        layer,
    };
    Ok(crate::runs_body::render(all, &filter))
}

/// The edit runs and evaluations of one instance, newest first.
#[server(endpoint = "instance_runs")]
pub async fn list_instance_runs(split: String, id: u64) -> AppResult<Vec<CatalogEntry>> {
    state()?
        .runs
        .instance_runs(split, id)
        .await
        .map_err(AppError::respond)
}

/// The newest runs.
#[server(endpoint = "runs")]
pub async fn list_runs() -> AppResult<Vec<RunSummary>> {
    state()?.runs.list().await.map_err(AppError::respond)
}

/// One of a run's charts as SVG (`None`: no such run or nothing to draw).
#[server(endpoint = "run_figure")]
pub async fn run_figure(slug: String, chart: String) -> AppResult<Option<FigureSvg>> {
    state()?
        .runs
        .figure(slug, chart)
        .await
        .map_err(AppError::respond)
}

/// Two to four stored runs, for side-by-side comparison.
#[server(endpoint = "compare_runs", input = leptos::server_fn::codec::Json)]
pub async fn compare_runs(runs: Vec<String>) -> AppResult<Vec<RunRecord>> {
    if !(2..=4).contains(&runs.len()) {
        return Err(
            AppError::BadRequest(format!("compare 2 to 4 runs (got {})", runs.len())).respond(),
        );
    }
    let state = state()?;
    let mut out = Vec::new();
    for slug in runs {
        match state
            .runs
            .run(slug.clone())
            .await
            .map_err(AppError::respond)?
        {
            Some(run) => out.push(run),
            None => {
                return Err(AppError::BadRequest(format!("no run `{slug}`")).respond());
            }
        }
    }
    Ok(out)
}

/// The comparison of two to four edit runs (`runs`: their slugs; `diff`: only the settings that
/// differ), rendered here; a bad request names what is wrong.
#[server(endpoint = "compare_html")]
pub async fn compare_html(runs: Vec<String>, diff: bool) -> AppResult<String> {
    let records = compare_runs(runs).await?;
    Ok(crate::compare_body::render(records, diff))
}

/// A stored edit run's page with its charts, rendered here, and its request (for "Re-run with
/// this config"); `None`: no such slug.
#[server(endpoint = "run_html")]
pub async fn run_html(slug: String) -> AppResult<Option<(RenderedPage, EditRequest)>> {
    let runs = &state()?.runs;
    let Some(run) = runs.run(slug.clone()).await.map_err(AppError::respond)? else {
        return Ok(None);
    };
    let distances = runs
        .figure(slug.clone(), "distances".into())
        .await
        .map_err(AppError::respond)?;
    let losses = runs
        .figure(slug, "losses".into())
        .await
        .map_err(AppError::respond)?;
    Ok(Some(crate::run_body::render(run, distances, losses)))
}

/// An evaluation page's data: the record, its instances and the readers' verdict flags.
pub type EvalPage = (EvalRecord, Vec<InstanceResult>, Vec<VerdictFlag>);

/// A stored evaluation (`None`: no such slug) with its instances and verdict flags.
#[server(endpoint = "eval")]
pub async fn get_eval(slug: String) -> AppResult<Option<EvalPage>> {
    state()?.runs.eval(slug).await.map_err(AppError::respond)
}

/// An evaluation's page: its read-only parts rendered here, with the instances and the readers'
/// flags for the responses (`None`: no such slug).
#[server(endpoint = "eval_html")]
pub async fn eval_html(
    slug: String,
) -> AppResult<Option<(RenderedPage, Vec<InstanceResult>, Vec<VerdictFlag>)>> {
    let page = state()?.runs.eval(slug).await.map_err(AppError::respond)?;
    Ok(page.map(|(record, instances, flags)| {
        let rendered = crate::eval_body::render(record, &instances, &flags);
        (rendered, instances, flags)
    }))
}

/// Flags the judge's verdict on instance `instance`'s input `kind` of evaluation `slug` as
/// wrong (the reader's verdict is the other one), with an optional note; the stored flag.
#[server(endpoint = "flag_verdict", input = leptos::server_fn::codec::Json)]
pub async fn flag_verdict(
    slug: String,
    instance: u64,
    kind: String,
    note: String,
) -> AppResult<VerdictFlag> {
    let request = safeedit_core::flag::FlagRequest {
        instance,
        kind,
        note,
    };
    state()?
        .runs
        .flag_verdict(slug, request)
        .await
        .map_err(AppError::respond)
}

/// Removes the flag on instance `instance`'s input `kind` of evaluation `slug`.
#[server(endpoint = "unflag_verdict", input = leptos::server_fn::codec::Json)]
pub async fn unflag_verdict(slug: String, instance: u64, kind: String) -> AppResult<()> {
    state()?
        .runs
        .unflag_verdict(slug, instance, kind)
        .await
        .map_err(AppError::respond)
}

/// The Judge page's body as HTML, rendered here (the page is read-only: its view code stays out
/// of the WebAssembly bundle). The same data as JSON: `GET /api/judge`.
#[server(endpoint = "judge_html")]
pub async fn judge_html() -> AppResult<String> {
    let page = state()?.runs.judge().await.map_err(AppError::respond)?;
    Ok(crate::judge_body::render(page))
}

/// The SafeEdit metric table across evaluation runs (`runs`: comma-separated slugs, default the
/// newest of each method; one slice: `group` all/category/attack and its `value`).
#[server(endpoint = "results")]
pub async fn results(runs: Option<String>, group: String, value: String) -> AppResult<ResultsView> {
    state()?
        .runs
        .results(runs, group, value)
        .await
        .map_err(AppError::respond)
}

/// The results table's defense metrics as a chart (`None`: nothing to draw).
#[server(endpoint = "results_figure")]
pub async fn results_figure(
    runs: Option<String>,
    group: String,
    value: String,
) -> AppResult<Option<FigureSvg>> {
    state()?
        .runs
        .results_figure(runs, group, value)
        .await
        .map_err(AppError::respond)
}

/// A stored mechanism analysis (`None`: no such slug).
#[server(endpoint = "analysis")]
pub async fn get_analysis(slug: String) -> AppResult<Option<AnalysisRecord>> {
    state()?
        .runs
        .analysis(slug)
        .await
        .map_err(AppError::respond)
}

/// Every stored mechanism analysis, newest first.
#[server(endpoint = "analyses")]
pub async fn list_analyses() -> AppResult<Vec<AnalysisSummary>> {
    state()?.runs.analyses().await.map_err(AppError::respond)
}

/// One of an analysis's charts as SVG (`None`: no such analysis or nothing to draw).
#[server(endpoint = "analysis_figure")]
pub async fn analysis_figure(slug: String, chart: String) -> AppResult<Option<FigureSvg>> {
    state()?
        .runs
        .analysis_figure(slug, chart)
        .await
        .map_err(AppError::respond)
}

/// The `/mechanisms` page's table of every stored analysis, rendered here (`None`: none yet).
#[server(endpoint = "analyses_html")]
pub async fn analyses_html() -> AppResult<Option<String>> {
    let list = list_analyses().await?;
    Ok((!list.is_empty()).then(|| crate::mechanism_body::render_list(list)))
}

/// The `/test-all` page's table of every stored test_ALL run, rendered here (`None`: none yet).
#[server(endpoint = "test_all_list_html")]
pub async fn test_all_list_html() -> AppResult<Option<String>> {
    let list = list_test_all_runs().await?;
    Ok((!list.is_empty()).then(|| crate::test_all_run_body::render_list(list)))
}

/// A stored SafeEdit_test_ALL run's page, rendered here (`None`: no such slug).
#[server(endpoint = "test_all_run_html")]
pub async fn test_all_run_html(slug: String) -> AppResult<Option<RenderedPage>> {
    let record = state()?
        .runs
        .test_all_run(slug)
        .await
        .map_err(AppError::respond)?;
    Ok(record.map(crate::test_all_run_body::render))
}

/// A stored mechanism analysis's page with its four figures, rendered here (`None`: no such
/// slug).
#[server(endpoint = "analysis_html")]
pub async fn analysis_html(slug: String) -> AppResult<Option<RenderedPage>> {
    let runs = &state()?.runs;
    let Some(record) = runs
        .analysis(slug.clone())
        .await
        .map_err(AppError::respond)?
    else {
        return Ok(None);
    };
    let mut figures = Vec::new();
    for (chart, _) in crate::mechanism_body::CHARTS {
        let figure = runs
            .analysis_figure(slug.clone(), chart.to_string())
            .await
            .map_err(AppError::respond)?;
        figures.push(figure);
    }
    Ok(Some(crate::mechanism_body::render(record, figures)))
}

/// A stored SafeEdit_test_ALL run (`None`: no such slug).
#[server(endpoint = "test_all_run")]
pub async fn get_test_all_run(slug: String) -> AppResult<Option<TestAllRunRecord>> {
    state()?
        .runs
        .test_all_run(slug)
        .await
        .map_err(AppError::respond)
}

/// Every stored test_ALL run, oldest first.
#[server(endpoint = "test_all_runs")]
pub async fn list_test_all_runs() -> AppResult<Vec<TestAllRunRecord>> {
    state()?
        .runs
        .test_all_runs()
        .await
        .map_err(AppError::respond)
}

/// The loaded model and every trained model (what jobs may name).
#[server(endpoint = "models")]
pub async fn list_models() -> AppResult<ModelList> {
    let state = state()?;
    Ok(ModelList {
        loaded: state.engine.model_summary(),
        trained: state
            .runs
            .trained_models()
            .await
            .map_err(AppError::respond)?,
    })
}

/// A prompt answered by the vanilla model and an edit run's or a trained model (the body of
/// `POST /api/try`).
#[server(endpoint = "try_model", input = leptos::server_fn::codec::Json)]
pub async fn try_model(request: TryRequest) -> AppResult<TryResponse> {
    state()?
        .runs
        .try_prompt(request)
        .await
        .map_err(AppError::respond)
}

/// A trained model's card and training log (`None`: no such model).
#[server(endpoint = "trained_model")]
pub async fn get_trained_model(name: String) -> AppResult<Option<TrainedModelPage>> {
    state()?
        .runs
        .trained_model(name)
        .await
        .map_err(AppError::respond)
}

/// Whether a run, evaluation, analysis or test_ALL run is left off the listings.
#[server(endpoint = "unlisted")]
pub async fn is_unlisted(slug: String) -> AppResult<bool> {
    state()?
        .runs
        .unlisted(slug)
        .await
        .map_err(AppError::respond)
}

/// Leaves a record off every listing (its link still opens it), or lists it again; answers the
/// new state.
#[server(endpoint = "set_unlisted", input = leptos::server_fn::codec::Json)]
pub async fn set_unlisted(slug: String, unlisted: bool) -> AppResult<bool> {
    state()?
        .runs
        .set_unlisted(slug, unlisted)
        .await
        .map_err(AppError::respond)
}

#[cfg(feature = "ssr")]
fn state() -> AppResult<crate::ssr::AppState> {
    use_context::<crate::ssr::AppState>()
        .ok_or_else(|| AppError::Internal("server state is missing".into()).respond())
}
