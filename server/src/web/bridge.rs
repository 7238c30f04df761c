//! The app's server functions reach the job queue and the runs database through these (the
//! `app::ssr` traits), so the app crate stays free of the engine, the queue and sqlx.

use app::ssr::{BoxFuture, Engine, EvalPageData, Runs};
use safeedit_core::ModelSummary;
use safeedit_core::mechanism::{AnalysisRecord, AnalysisSummary};
use safeedit_core::run::{EditRequest, FigureSvg, JobSnapshot, RunRecord, RunSummary};
use safeedit_core::table::ResultsView;
use safeedit_core::test_all::TestAllRunRecord;
use safeedit_figures::{self as figures, Preset};
use safeedit_store::StoreError;

use super::WebState;

/// The loaded model as the pages describe it, read once at start-up so a page never waits for
/// a running job.
pub(super) struct ModelInfo(pub ModelSummary);

impl Engine for ModelInfo {
    fn model_summary(&self) -> ModelSummary {
        self.0.clone()
    }
}

/// Jobs and stored results for the app's server functions.
pub(super) struct RunService(pub WebState);

impl Runs for RunService {
    fn submit(&self, request: EditRequest) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            match self.0.jobs.submit(request).await {
                Ok((id, _)) => Ok(id),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn job(&self, id: String) -> BoxFuture<'_, Result<Option<JobSnapshot>, String>> {
        Box::pin(async move { self.0.jobs.snapshot(&id).await.map_err(|e| e.to_string()) })
    }

    fn cancel(&self, id: String) -> bool {
        self.0.jobs.cancel(&id)
    }

    fn run(&self, slug: String) -> BoxFuture<'_, Result<Option<RunRecord>, String>> {
        Box::pin(async move { self.0.store.run(&slug).await.map_err(|e| e.to_string()) })
    }

    fn figure(
        &self,
        slug: String,
        chart: String,
    ) -> BoxFuture<'_, Result<Option<FigureSvg>, String>> {
        Box::pin(async move {
            let Some(run) = self.0.store.run(&slug).await.map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            let svg =
                figures::run_chart(&run, &chart, Preset::Column).map_err(|e| e.to_string())?;
            Ok(svg.map(|svg| FigureSvg { name: chart, svg }))
        })
    }

    fn eval(&self, slug: String) -> BoxFuture<'_, Result<Option<EvalPageData>, String>> {
        Box::pin(async move {
            let err = |e: StoreError| e.to_string();
            let Some(record) = self.0.store.eval(&slug).await.map_err(err)? else {
                return Ok(None);
            };
            let instances = self.0.store.eval_instances(&slug).await.map_err(err)?;
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
            let all = self.0.store.list_evals().await.map_err(|e| e.to_string())?;
            ResultsView::build(all, runs.as_deref(), &group, &value)
        })
    }

    fn analysis(&self, slug: String) -> BoxFuture<'_, Result<Option<AnalysisRecord>, String>> {
        Box::pin(async move {
            self.0
                .store
                .analysis(&slug)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn test_all_run(
        &self,
        slug: String,
    ) -> BoxFuture<'_, Result<Option<TestAllRunRecord>, String>> {
        Box::pin(async move {
            self.0
                .store
                .test_all(&slug)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn test_all_runs(&self) -> BoxFuture<'_, Result<Vec<TestAllRunRecord>, String>> {
        Box::pin(async move {
            self.0
                .store
                .list_test_all()
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn analyses(&self) -> BoxFuture<'_, Result<Vec<AnalysisSummary>, String>> {
        Box::pin(async move {
            self.0
                .store
                .list_analyses()
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn analysis_figure(
        &self,
        slug: String,
        chart: String,
    ) -> BoxFuture<'_, Result<Option<FigureSvg>, String>> {
        Box::pin(async move {
            let err = |e: StoreError| e.to_string();
            let Some(record) = self.0.store.analysis(&slug).await.map_err(err)? else {
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
            let all = self.0.store.list_evals().await.map_err(|e| e.to_string())?;
            let view = ResultsView::build(all, runs.as_deref(), &group, &value)?;
            let svg =
                figures::results_chart(&view.table, Preset::Column).map_err(|e| e.to_string())?;
            Ok(svg.map(|svg| FigureSvg {
                name: "defense".into(),
                svg,
            }))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RunSummary>, String>> {
        Box::pin(async move { self.0.store.list_runs(200).await.map_err(|e| e.to_string()) })
    }
}
