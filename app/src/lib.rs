//! SafeEdit Studio's web app: Leptos components, routes and server functions. Compiled twice:
//! with `ssr` into the server (heavy dependencies allowed, behind [`ssr`]) and with `hydrate`
//! into the WebAssembly bundle (no burn, no tokio).

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, path};
use safeedit_core::browse::{InstancePage, InstanceQuery, SplitOverview};
use safeedit_core::eval::InstanceResult;
use safeedit_core::mechanism::{AnalysisRecord, AnalysisSummary};
use safeedit_core::run::{EditRequest, EvalRecord, FigureSvg, JobSnapshot, RunRecord, RunSummary};
use safeedit_core::table::ResultsView;
use safeedit_core::test_all::TestAllRunRecord;
use safeedit_core::{ModelSummary, SafeEditRecord};

mod browse;
mod compare;
mod evals;
mod figure;
mod home;
mod mechanisms;
mod runs;
mod test_all;

pub use browse::{InstanceView, InstancesPage};
pub use compare::ComparePage;
pub use evals::{EvalPage, ResultsPage};
pub use home::HomePage;
pub use mechanisms::{MechanismPage, MechanismsPage};
pub use runs::{JobPage, RunPage, RunsPage};
pub use test_all::{TestAllPage, TestAllRunPage};

/// Name of the site's JS/WASM/CSS bundle under `/pkg`.
pub const OUTPUT_NAME: &str = "safeedit";

/// The HTML document around the app (server-rendered only).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The app: routes and shared page chrome.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="safeedit" href=format!("/pkg/{OUTPUT_NAME}.css") />
        <Title text="SafeEdit Studio" />
        <Router>
            <header class="topbar">
                <a class="brand" href="/">
                    "SafeEdit Studio"
                </a>
                <span class="tagline">"Detoxifying LLMs via knowledge editing (DINM, ACL 2024)"</span>
                <nav class="topnav">
                    <a href="/">"Overview"</a>
                    <a href="/instances">"Instances"</a>
                    <a href="/runs">"Runs"</a>
                    <a href="/results">"Results"</a>
                    <a href="/test-all">"test_ALL"</a>
                    <a href="/mechanisms">"Mechanisms"</a>
                </nav>
            </header>
            <main>
                <Routes fallback=|| view! { <NotFound /> }>
                    <Route path=path!("/") view=HomePage />
                    // Async SSR: the whole page (and a 404 status for a missing instance) is
                    // rendered before the first byte, so a shared link opens complete.
                    <Route path=path!("/instances") view=InstancesPage ssr=SsrMode::Async />
                    <Route
                        path=path!("/instances/:split/:id")
                        view=InstanceView
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/jobs/:id") view=JobPage ssr=SsrMode::Async />
                    <Route path=path!("/runs") view=RunsPage ssr=SsrMode::Async />
                    <Route path=path!("/runs/:slug") view=RunPage ssr=SsrMode::Async />
                    <Route path=path!("/evals/:slug") view=EvalPage ssr=SsrMode::Async />
                    <Route path=path!("/compare") view=ComparePage ssr=SsrMode::Async />
                    <Route path=path!("/results") view=ResultsPage ssr=SsrMode::Async />
                    <Route path=path!("/test-all") view=TestAllPage ssr=SsrMode::Async />
                    <Route
                        path=path!("/test-all/:slug")
                        view=TestAllRunPage
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/mechanisms") view=MechanismsPage ssr=SsrMode::Async />
                    <Route
                        path=path!("/mechanisms/:slug")
                        view=MechanismPage
                        ssr=SsrMode::Async
                    />
                </Routes>
            </main>
        </Router>
    }
}

/// The 404 page (the server also sets the status code).
#[component]
pub(crate) fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(axum::http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <h1>"Not found"</h1>
        <p>"No page lives at this address."</p>
    }
}

/// Describes the loaded model, read from the engine.
#[server(endpoint = "model_info")]
pub async fn model_info() -> Result<ModelSummary, ServerFnError> {
    Ok(state()?.engine.model_summary())
}

/// Every split's instance counts per category and attack.
#[server(endpoint = "overview")]
pub async fn overview() -> Result<Vec<SplitOverview>, ServerFnError> {
    Ok(state()?.catalog.overview())
}

/// One page of the instance table (filters, search, sort; the server does the work).
#[server(endpoint = "instances", input = leptos::server_fn::codec::Json)]
pub async fn list_instances(query: InstanceQuery) -> Result<InstancePage, ServerFnError> {
    state()?.catalog.query(&query).map_err(ServerFnError::new)
}

/// One instance by split and id (`None`: no such instance).
#[server(endpoint = "instance")]
pub async fn get_instance(split: String, id: u64) -> Result<Option<SafeEditRecord>, ServerFnError> {
    Ok(state()?.catalog.instance(&split, id).cloned())
}

/// Queues a DINM edit of one instance; returns the job id at once (or "busy").
#[server(endpoint = "start_edit", input = leptos::server_fn::codec::Json)]
pub async fn start_edit(request: EditRequest) -> Result<String, ServerFnError> {
    state()?
        .runs
        .submit(request)
        .await
        .map_err(ServerFnError::new)
}

/// A job's progress so far (`None`: no such job).
#[server(endpoint = "job_status")]
pub async fn job_status(id: String) -> Result<Option<JobSnapshot>, ServerFnError> {
    state()?.runs.job(id).await.map_err(ServerFnError::new)
}

/// Cancels a queued or running job; false when it is unknown or finished.
#[server(endpoint = "cancel_job")]
pub async fn cancel_job(id: String) -> Result<bool, ServerFnError> {
    Ok(state()?.runs.cancel(id))
}

/// A stored run (`None`: no such slug).
#[server(endpoint = "run")]
pub async fn get_run(slug: String) -> Result<Option<RunRecord>, ServerFnError> {
    state()?.runs.run(slug).await.map_err(ServerFnError::new)
}

/// The newest runs.
#[server(endpoint = "runs")]
pub async fn list_runs() -> Result<Vec<RunSummary>, ServerFnError> {
    state()?.runs.list().await.map_err(ServerFnError::new)
}

/// One of a run's charts as SVG (`None`: no such run or nothing to draw).
#[server(endpoint = "run_figure")]
pub async fn run_figure(slug: String, chart: String) -> Result<Option<FigureSvg>, ServerFnError> {
    state()?
        .runs
        .figure(slug, chart)
        .await
        .map_err(ServerFnError::new)
}

/// Two to four stored runs, for side-by-side comparison.
#[server(endpoint = "compare_runs", input = leptos::server_fn::codec::Json)]
pub async fn compare_runs(runs: Vec<String>) -> Result<Vec<RunRecord>, ServerFnError> {
    if !(2..=4).contains(&runs.len()) {
        return Err(ServerFnError::new(format!(
            "invalid request: compare 2 to 4 runs (got {})",
            runs.len()
        )));
    }
    let state = state()?;
    let mut out = Vec::new();
    for slug in runs {
        match state
            .runs
            .run(slug.clone())
            .await
            .map_err(ServerFnError::new)?
        {
            Some(run) => out.push(run),
            None => {
                return Err(ServerFnError::new(format!(
                    "invalid request: no run `{slug}`"
                )));
            }
        }
    }
    Ok(out)
}

/// A stored evaluation (`None`: no such slug) with its instances.
#[server(endpoint = "eval")]
pub async fn get_eval(
    slug: String,
) -> Result<Option<(EvalRecord, Vec<InstanceResult>)>, ServerFnError> {
    state()?.runs.eval(slug).await.map_err(ServerFnError::new)
}

/// The SafeEdit metric table across evaluation runs (`runs`: comma-separated slugs, default the
/// newest of each method; one slice: `group` all/category/attack and its `value`).
#[server(endpoint = "results")]
pub async fn results(
    runs: Option<String>,
    group: String,
    value: String,
) -> Result<ResultsView, ServerFnError> {
    state()?
        .runs
        .results(runs, group, value)
        .await
        .map_err(ServerFnError::new)
}

/// The results table's defense metrics as a chart (`None`: nothing to draw).
#[server(endpoint = "results_figure")]
pub async fn results_figure(
    runs: Option<String>,
    group: String,
    value: String,
) -> Result<Option<FigureSvg>, ServerFnError> {
    state()?
        .runs
        .results_figure(runs, group, value)
        .await
        .map_err(ServerFnError::new)
}

/// A stored mechanism analysis (`None`: no such slug).
#[server(endpoint = "analysis")]
pub async fn get_analysis(slug: String) -> Result<Option<AnalysisRecord>, ServerFnError> {
    state()?
        .runs
        .analysis(slug)
        .await
        .map_err(ServerFnError::new)
}

/// Every stored mechanism analysis, newest first.
#[server(endpoint = "analyses")]
pub async fn list_analyses() -> Result<Vec<AnalysisSummary>, ServerFnError> {
    state()?.runs.analyses().await.map_err(ServerFnError::new)
}

/// One of an analysis's charts as SVG (`None`: no such analysis or nothing to draw).
#[server(endpoint = "analysis_figure")]
pub async fn analysis_figure(
    slug: String,
    chart: String,
) -> Result<Option<FigureSvg>, ServerFnError> {
    state()?
        .runs
        .analysis_figure(slug, chart)
        .await
        .map_err(ServerFnError::new)
}

/// A stored SafeEdit_test_ALL run (`None`: no such slug).
#[server(endpoint = "test_all_run")]
pub async fn get_test_all_run(slug: String) -> Result<Option<TestAllRunRecord>, ServerFnError> {
    state()?
        .runs
        .test_all_run(slug)
        .await
        .map_err(ServerFnError::new)
}

/// Every stored test_ALL run, oldest first.
#[server(endpoint = "test_all_runs")]
pub async fn list_test_all_runs() -> Result<Vec<TestAllRunRecord>, ServerFnError> {
    state()?
        .runs
        .test_all_runs()
        .await
        .map_err(ServerFnError::new)
}

#[cfg(feature = "ssr")]
fn state() -> Result<ssr::AppState, ServerFnError> {
    use_context::<ssr::AppState>().ok_or_else(|| ServerFnError::new("server state is missing"))
}

/// Server-side state shared by every request (compiled into the server only).
#[cfg(feature = "ssr")]
pub mod ssr {
    use std::sync::Arc;

    use axum::extract::FromRef;
    use leptos::config::LeptosOptions;
    use safeedit_core::ModelSummary;
    use std::future::Future;
    use std::pin::Pin;

    use safeedit_core::browse::Catalog;
    use safeedit_core::eval::InstanceResult;
    use safeedit_core::mechanism::{AnalysisRecord, AnalysisSummary};
    use safeedit_core::run::{
        EditRequest, EvalRecord, FigureSvg, JobSnapshot, RunRecord, RunSummary,
    };
    use safeedit_core::table::ResultsView;
    use safeedit_core::test_all::TestAllRunRecord;

    /// A boxed future, for the object-safe [`Runs`] trait.
    pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    /// Jobs and stored runs, implemented by the server (job worker + database).
    pub trait Runs: Send + Sync + 'static {
        /// Queues an edit; the job id, or why not (e.g. busy).
        fn submit(&self, request: EditRequest) -> BoxFuture<'_, Result<String, String>>;
        /// A job's progress.
        fn job(&self, id: String) -> BoxFuture<'_, Result<Option<JobSnapshot>, String>>;
        /// Cancels a job.
        fn cancel(&self, id: String) -> bool;
        /// A stored run.
        fn run(&self, slug: String) -> BoxFuture<'_, Result<Option<RunRecord>, String>>;
        /// The newest runs.
        fn list(&self) -> BoxFuture<'_, Result<Vec<RunSummary>, String>>;
        /// One of a run's charts at the ACL column width (`None`: no such run, or nothing to
        /// draw for that chart).
        fn figure(
            &self,
            slug: String,
            chart: String,
        ) -> BoxFuture<'_, Result<Option<FigureSvg>, String>>;
        /// A stored evaluation with its instances.
        fn eval(&self, slug: String) -> BoxFuture<'_, Result<Option<EvalPageData>, String>>;
        /// The results table's defense chart at the ACL column width (`None`: nothing to
        /// draw).
        fn results_figure(
            &self,
            runs: Option<String>,
            group: String,
            value: String,
        ) -> BoxFuture<'_, Result<Option<FigureSvg>, String>>;
        /// A stored mechanism analysis.
        fn analysis(&self, slug: String) -> BoxFuture<'_, Result<Option<AnalysisRecord>, String>>;
        /// Every stored analysis, newest first.
        fn analyses(&self) -> BoxFuture<'_, Result<Vec<AnalysisSummary>, String>>;
        /// A stored SafeEdit_test_ALL run.
        fn test_all_run(
            &self,
            slug: String,
        ) -> BoxFuture<'_, Result<Option<TestAllRunRecord>, String>>;
        /// Every stored test_ALL run, oldest first.
        fn test_all_runs(&self) -> BoxFuture<'_, Result<Vec<TestAllRunRecord>, String>>;
        /// One of an analysis's charts at the ACL column width.
        fn analysis_figure(
            &self,
            slug: String,
            chart: String,
        ) -> BoxFuture<'_, Result<Option<FigureSvg>, String>>;
        /// The results table (see [`ResultsView::build`]).
        fn results(
            &self,
            runs: Option<String>,
            group: String,
            value: String,
        ) -> BoxFuture<'_, Result<ResultsView, String>>;
    }

    /// An evaluation and its instances.
    pub type EvalPageData = (EvalRecord, Vec<InstanceResult>);

    /// What the web layer needs from the engine. The server implements it over a model of
    /// whichever burn backend it was built with, so the app stays backend-agnostic.
    pub trait Engine: Send + Sync + 'static {
        /// The loaded model's description.
        fn model_summary(&self) -> ModelSummary;
    }

    /// Router state: Leptos options plus the engine.
    #[derive(Clone, FromRef)]
    pub struct AppState {
        /// Site configuration (addresses, bundle names).
        pub leptos_options: LeptosOptions,
        /// The engine behind the server functions.
        pub engine: Arc<dyn Engine>,
        /// The SafeEdit splits being browsed.
        pub catalog: Arc<Catalog>,
        /// Jobs and runs.
        pub runs: Arc<dyn Runs>,
    }
}
