//! SafeEdit Studio's web app: Leptos components, routes and server functions. Compiled twice:
//! with `ssr` into the server (heavy dependencies allowed, behind [`ssr`]) and with `hydrate`
//! into the WebAssembly bundle (no burn, no tokio).
//!
//! - [`api`]: the server functions; each answers its value or an [`AppError`] ([`error`]) whose
//!   variant sets the HTTP status.
//! - One file per route (`instances.rs`, `instance.rs`, `job.rs`, `runs.rs`, `run.rs`,
//!   `compare.rs`, `eval.rs`, `results.rs`, `test_all.rs`, `test_all_run.rs`, `mechanisms.rs`,
//!   `mechanism.rs`, `models.rs`, `home.rs`); pages of one stored record go through `record_page.rs`.
//! - Components several pages share: `figure.rs` (charts with their downloads), `detoxify.rs`
//!   (the instance page's edit panel), `launch.rs` (the forms that start jobs), `format.rs`
//!   (numbers and slice labels).

#![recursion_limit = "256"]

use leptos::prelude::*;
use leptos_meta::{MetaTags, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, path};

pub mod api;
mod codec;
mod compare;
#[cfg(feature = "ssr")]
mod compare_body;
mod detoxify;
pub mod error;
mod eval;
#[cfg(feature = "ssr")]
mod eval_body;
mod figure;
mod format;
mod home;
#[cfg(feature = "ssr")]
mod home_body;
mod instance;
#[cfg(feature = "ssr")]
mod instance_body;
mod instances;
mod job;
mod judge;
#[cfg(feature = "ssr")]
mod judge_body;
#[cfg(feature = "ssr")]
mod judge_note;
mod launch;
mod mechanism;
#[cfg(feature = "ssr")]
mod mechanism_body;
mod mechanisms;
mod models;
mod new;
mod record_page;
mod results;
mod run;
#[cfg(feature = "ssr")]
mod run_body;
mod runs;
#[cfg(feature = "ssr")]
mod runs_body;
mod server_html;
mod share;
mod test_all;
mod test_all_run;
#[cfg(feature = "ssr")]
mod test_all_run_body;
mod try_box;
mod verdict_flag;

pub use api::*;
pub use compare::ComparePage;
pub use error::{AppError, AppResult};
pub use eval::EvalPage;
pub use home::HomePage;
pub use instance::InstanceView;
pub use instances::InstancesPage;
pub use job::JobPage;
pub use judge::JudgeView;
pub use mechanism::MechanismPage;
pub use mechanisms::MechanismsPage;
pub use models::{ModelPage, ModelsPage};
pub use results::ResultsPage;
pub use run::RunPage;
pub use runs::RunsPage;
pub use test_all::TestAllPage;
pub use test_all_run::TestAllRunPage;

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
                // The bundle's folder carries its version (`pkg/{hash}`): see the server's assets.
                <link rel="stylesheet" id="safeedit" href=format!("/{}/{OUTPUT_NAME}.css", options.site_pkg_dir) />
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
        // Each page names itself; the home page is the studio.
        <Title formatter=|text: String| {
            if text.is_empty() { "SafeEdit Studio".to_string() } else { format!("{text} · SafeEdit Studio") }
        } />
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
                    <a href="/models">"Models"</a>
                    <a href="/judge">"Judge"</a>
                    <a href="/new" class="new">"New experiment"</a>
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
                    <Route path=path!("/judge") view=JudgeView ssr=SsrMode::Async />
                    <Route path=path!("/models") view=ModelsPage ssr=SsrMode::Async />
                    <Route path=path!("/models/:name") view=ModelPage ssr=SsrMode::Async />
                    <Route path=path!("/new") view=new::NewExperimentPage />
                </Routes>
            </main>
        </Router>
    }
    .into_any()
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
        <Title text="Not found" />
        <h1>"Not found"</h1>
        <p>"No page lives at this address."</p>
    }
    .into_any()
}

/// Server-side state shared by every request (compiled into the server only).
#[cfg(feature = "ssr")]
pub mod ssr {
    use std::sync::Arc;

    use axum::extract::FromRef;
    use leptos::config::LeptosOptions;
    use safeedit_core::ask::{TryRequest, TryResponse};
    use safeedit_core::{ModelSummary, TrainedModel, TrainedModelPage};
    use std::future::Future;
    use std::pin::Pin;

    use safeedit_core::browse::Catalog;
    use safeedit_core::flag::{FlagRequest, VerdictFlag};
    use safeedit_core::job::JobSpec;
    use safeedit_core::judge_page::JudgePage;
    use safeedit_core::mechanism::{AnalysisRecord, AnalysisSummary};
    use safeedit_core::run::{CatalogEntry, FigureSvg, JobSnapshot, RunRecord, RunSummary};
    use safeedit_core::table::ResultsView;
    use safeedit_core::test_all::TestAllRunRecord;

    use crate::error::AppResult;

    /// A boxed future, for the object-safe [`Runs`] trait.
    pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    /// Jobs and stored runs, implemented by the server (job worker + database).
    pub trait Runs: Send + Sync + 'static {
        /// Queues a job; its id, or why not (a bad request naming the field, or busy).
        fn submit(&self, spec: JobSpec) -> BoxFuture<'_, AppResult<String>>;
        /// A job's progress.
        fn job(&self, id: String) -> BoxFuture<'_, AppResult<Option<JobSnapshot>>>;
        /// Cancels a job.
        fn cancel(&self, id: String) -> BoxFuture<'_, bool>;
        /// A stored run.
        fn run(&self, slug: String) -> BoxFuture<'_, AppResult<Option<RunRecord>>>;
        /// The newest runs.
        fn list(&self) -> BoxFuture<'_, AppResult<Vec<RunSummary>>>;
        /// One of a run's charts at the ACL column width (`None`: no such run, or nothing to
        /// draw for that chart).
        fn figure(
            &self,
            slug: String,
            chart: String,
        ) -> BoxFuture<'_, AppResult<Option<FigureSvg>>>;
        /// A stored evaluation with its instances.
        fn eval(&self, slug: String) -> BoxFuture<'_, AppResult<Option<EvalPageData>>>;
        /// The results table's defense chart at the ACL column width (`None`: nothing to
        /// draw).
        fn results_figure(
            &self,
            runs: Option<String>,
            group: String,
            value: String,
        ) -> BoxFuture<'_, AppResult<Option<FigureSvg>>>;
        /// A stored mechanism analysis.
        fn analysis(&self, slug: String) -> BoxFuture<'_, AppResult<Option<AnalysisRecord>>>;
        /// Every stored analysis, newest first.
        fn analyses(&self) -> BoxFuture<'_, AppResult<Vec<AnalysisSummary>>>;
        /// A stored SafeEdit_test_ALL run.
        fn test_all_run(&self, slug: String) -> BoxFuture<'_, AppResult<Option<TestAllRunRecord>>>;
        /// Every stored test_ALL run, oldest first.
        fn test_all_runs(&self) -> BoxFuture<'_, AppResult<Vec<TestAllRunRecord>>>;
        /// One of an analysis's charts at the ACL column width.
        fn analysis_figure(
            &self,
            slug: String,
            chart: String,
        ) -> BoxFuture<'_, AppResult<Option<FigureSvg>>>;
        /// The results table (see [`ResultsView::build`]).
        fn results(
            &self,
            runs: Option<String>,
            group: String,
            value: String,
        ) -> BoxFuture<'_, AppResult<ResultsView>>;
        /// A prompt answered by the vanilla and an edited model.
        fn try_prompt(&self, request: TryRequest) -> BoxFuture<'_, AppResult<TryResponse>>;
        /// Every stored result of every kind, newest first.
        fn catalogue(&self) -> BoxFuture<'_, AppResult<Vec<CatalogEntry>>>;
        /// The edit runs and evaluations of one instance, newest first.
        fn instance_runs(
            &self,
            split: String,
            id: u64,
        ) -> BoxFuture<'_, AppResult<Vec<CatalogEntry>>>;
        /// Every trained model, newest first.
        fn trained_models(&self) -> BoxFuture<'_, AppResult<Vec<TrainedModel>>>;
        /// A trained model's card and training log (`None`: no such model).
        fn trained_model(&self, name: String)
        -> BoxFuture<'_, AppResult<Option<TrainedModelPage>>>;
        /// Whether the record `slug` is left off the listings.
        fn unlisted(&self, slug: String) -> BoxFuture<'_, AppResult<bool>>;
        /// Leaves the record `slug` off the listings (or lists it again); 404 for an unknown
        /// slug.
        fn set_unlisted(&self, slug: String, unlisted: bool) -> BoxFuture<'_, AppResult<bool>>;
        /// Flags a verdict of evaluation `slug` as wrong; the stored flag, or why not (400
        /// naming the field, 404 for an unknown evaluation).
        fn flag_verdict(
            &self,
            slug: String,
            request: FlagRequest,
        ) -> BoxFuture<'_, AppResult<VerdictFlag>>;
        /// The Judge page: the judge in use, the built-in judge's report, the stored
        /// evaluations' judges and the readers' flags.
        fn judge(&self) -> BoxFuture<'_, AppResult<JudgePage>>;
        /// Removes a flag; 404 when there is none.
        fn unflag_verdict(
            &self,
            slug: String,
            instance: u64,
            kind: String,
        ) -> BoxFuture<'_, AppResult<()>>;
    }

    /// An evaluation, its instances and its readers' verdict flags.
    pub type EvalPageData = crate::EvalPage;

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
