//! The app's server functions reach the job queue and the runs database through these (the
//! `app::ssr` traits), so the app crate stays free of the engine, the queue and sqlx.

use app::ssr::{BoxFuture, Engine, EvalPageData, Runs};
use app::{AppError, AppResult};
use safeedit_core::ask::{TryRequest, TryResponse};
use safeedit_core::flag::{FlagRequest, VerdictFlag};
use safeedit_core::job::JobSpec;
use safeedit_core::judge_page::JudgePage;
use safeedit_core::mechanism::{AnalysisRecord, AnalysisSummary};
use safeedit_core::run::{CatalogEntry, EvalRecord, FigureSvg, JobSnapshot, RunRecord, RunSummary};
use safeedit_core::table::ResultsView;
use safeedit_core::test_all::TestAllRunRecord;
use safeedit_core::{ModelSummary, TrainedModel, TrainedModelPage};
use safeedit_figures::{self as figures, FigureError, Preset};
use safeedit_store::StoreError;

use super::error::WebError;
use super::jobs::SubmitError;
use super::public;
use super::{WebState, flags};

/// The loaded model as the pages describe it, read once at start-up so a page never waits for
/// a running job.
pub(super) struct ModelInfo(pub ModelSummary);

impl Engine for ModelInfo {
    fn model_summary(&self) -> ModelSummary {
        public::record(self.0.clone())
    }
}

/// Jobs and stored results for the app's server functions.
pub(super) struct RunService(pub WebState);

/// The database failed: the server's fault.
fn internal(e: StoreError) -> AppError {
    AppError::Internal(e.to_string())
}

/// An API error as the pages' error, with the same status.
fn app_error(e: WebError) -> AppError {
    match e {
        WebError::BadRequest(m) => AppError::BadRequest(m),
        WebError::NotFound(m) => AppError::NotFound(m),
        WebError::Busy(m) => AppError::Busy(m),
        WebError::Conflict(m) | WebError::Internal(m) => AppError::Internal(m),
    }
}

/// A chart that could not be drawn: an unknown name is the request's fault.
fn figure_error(e: FigureError) -> AppError {
    match e {
        FigureError::UnknownName { .. } => AppError::NotFound(e.to_string()),
        other => AppError::Internal(other.to_string()),
    }
}

impl RunService {
    /// The results table the query selects (an unknown run or slice is the request's fault).
    async fn view(&self, runs: Option<String>, group: &str, value: &str) -> AppResult<ResultsView> {
        let all = super::files::results_candidates(&self.0, runs.as_deref())
            .await
            .map_err(internal)?;
        ResultsView::build(all, runs.as_deref(), group, value)
            .map_err(|e| AppError::BadRequest(e.to_string()))
    }
}

impl Runs for RunService {
    fn submit(&self, spec: JobSpec) -> BoxFuture<'_, AppResult<String>> {
        Box::pin(async move {
            match self.0.jobs.submit(spec).await {
                Ok((id, _)) => Ok(id),
                Err(SubmitError::Invalid(message)) => Err(AppError::BadRequest(message)),
                Err(e @ SubmitError::Busy(_)) => Err(AppError::Busy(e.to_string())),
                Err(SubmitError::Other(e)) => Err(AppError::Internal(format!("{e:#}"))),
            }
        })
    }

    fn job(&self, id: String) -> BoxFuture<'_, AppResult<Option<JobSnapshot>>> {
        Box::pin(async move { self.0.jobs.snapshot(&id).await.map_err(internal) })
    }

    fn cancel(&self, id: String) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.0.jobs.cancel(&id).await })
    }

    fn run(&self, slug: String) -> BoxFuture<'_, AppResult<Option<RunRecord>>> {
        Box::pin(async move {
            let run = self.0.store.run(&slug).await.map_err(internal)?;
            Ok(run.map(public::record))
        })
    }

    fn figure(&self, slug: String, chart: String) -> BoxFuture<'_, AppResult<Option<FigureSvg>>> {
        Box::pin(async move {
            let Some(run) = self.0.store.run(&slug).await.map_err(internal)? else {
                return Ok(None);
            };
            let svg = figures::run_chart(&run, &chart, Preset::Column).map_err(figure_error)?;
            Ok(svg.map(|svg| FigureSvg { name: chart, svg }))
        })
    }

    fn eval(&self, slug: String) -> BoxFuture<'_, AppResult<Option<EvalPageData>>> {
        Box::pin(async move {
            let Some(record) = self.0.store.eval(&slug).await.map_err(internal)? else {
                return Ok(None);
            };
            let instances = self.0.store.eval_instances(&slug).await.map_err(internal)?;
            let flags = self.0.store.verdict_flags(&slug).await.map_err(internal)?;
            Ok(Some((public::record(record), instances, flags)))
        })
    }

    fn results(
        &self,
        runs: Option<String>,
        group: String,
        value: String,
    ) -> BoxFuture<'_, AppResult<ResultsView>> {
        Box::pin(async move { self.view(runs, &group, &value).await })
    }

    fn analysis(&self, slug: String) -> BoxFuture<'_, AppResult<Option<AnalysisRecord>>> {
        Box::pin(async move {
            let analysis = self.0.store.analysis(&slug).await.map_err(internal)?;
            Ok(analysis.map(public::record))
        })
    }

    fn test_all_run(&self, slug: String) -> BoxFuture<'_, AppResult<Option<TestAllRunRecord>>> {
        Box::pin(async move {
            let run = self.0.store.test_all(&slug).await.map_err(internal)?;
            Ok(run.map(public::record))
        })
    }

    fn test_all_runs(&self) -> BoxFuture<'_, AppResult<Vec<TestAllRunRecord>>> {
        Box::pin(async move {
            let store = &self.0.store;
            let runs = store.list_test_all().await.map_err(internal)?;
            let runs = store
                .listed(runs, |r| Some(r.slug.as_str()), &[])
                .await
                .map_err(internal)?;
            Ok(runs.into_iter().map(public::record).collect())
        })
    }

    fn analyses(&self) -> BoxFuture<'_, AppResult<Vec<AnalysisSummary>>> {
        Box::pin(async move {
            let store = &self.0.store;
            let analyses = store.list_analyses().await.map_err(internal)?;
            store
                .listed(analyses, |a| Some(a.slug.as_str()), &[])
                .await
                .map_err(internal)
        })
    }

    fn analysis_figure(
        &self,
        slug: String,
        chart: String,
    ) -> BoxFuture<'_, AppResult<Option<FigureSvg>>> {
        Box::pin(async move {
            let Some(record) = self.0.store.analysis(&slug).await.map_err(internal)? else {
                return Ok(None);
            };
            let svg = figures::mechanism_chart(&record.report, &chart, Preset::Column)
                .map_err(figure_error)?;
            Ok(svg.map(|svg| FigureSvg { name: chart, svg }))
        })
    }

    fn results_figure(
        &self,
        runs: Option<String>,
        group: String,
        value: String,
    ) -> BoxFuture<'_, AppResult<Option<FigureSvg>>> {
        Box::pin(async move {
            let view = self.view(runs, &group, &value).await?;
            let svg = figures::results_chart(&view.table, Preset::Column).map_err(figure_error)?;
            Ok(svg.map(|svg| FigureSvg {
                name: "defense".into(),
                svg,
            }))
        })
    }

    fn list(&self) -> BoxFuture<'_, AppResult<Vec<RunSummary>>> {
        Box::pin(async move {
            let store = &self.0.store;
            let runs = store.list_runs(200).await.map_err(internal)?;
            store
                .listed(runs, |r| Some(r.slug.as_str()), &[])
                .await
                .map_err(internal)
        })
    }

    fn try_prompt(&self, request: TryRequest) -> BoxFuture<'_, AppResult<TryResponse>> {
        Box::pin(async move {
            self.0.tries.answer(request).await.map_err(|e| match e {
                WebError::BadRequest(m) => AppError::BadRequest(m),
                WebError::NotFound(m) => AppError::NotFound(m),
                WebError::Busy(m) => {
                    AppError::Busy(m.strip_prefix("busy: ").unwrap_or(&m).to_string())
                }
                WebError::Conflict(m) | WebError::Internal(m) => AppError::Internal(m),
            })
        })
    }

    fn catalogue(&self) -> BoxFuture<'_, AppResult<Vec<CatalogEntry>>> {
        Box::pin(async move {
            let store = &self.0.store;
            let mut all = Vec::new();
            for r in store.list_runs(500).await.map_err(internal)? {
                all.push(edit_entry(r));
            }
            for e in store.list_evals().await.map_err(internal)? {
                all.push(eval_entry(e));
            }
            for t in store.list_test_all().await.map_err(internal)? {
                let avg = t
                    .overall("Avg")
                    .map_or("–".into(), |m| format!("Avg {:.1}", m.mean));
                all.push(CatalogEntry {
                    kind: "test_all".into(),
                    href: format!("/test-all/{}", t.slug),
                    slug: t.slug.clone(),
                    created_at: t.created_at.clone(),
                    title: format!("test_ALL: {} ({} inputs)", t.method, t.inputs),
                    model: t.model.clone(),
                    headline: avg,
                    edit: None,
                });
            }
            for a in store.list_analyses().await.map_err(internal)? {
                all.push(CatalogEntry {
                    kind: "analysis".into(),
                    href: format!("/mechanisms/{}", a.slug),
                    slug: a.slug,
                    created_at: a.created_at,
                    title: format!("mechanisms: vanilla vs {}", a.methods.join(", ")),
                    model: a.model,
                    headline: format!("layer {}, {} inputs", a.layer, a.inputs),
                    edit: None,
                });
            }
            for m in self.0.jobs.models().list() {
                all.push(CatalogEntry {
                    kind: "model".into(),
                    href: format!("/models/{}", m.name),
                    title: format!("{} model {}", m.objective.to_uppercase(), m.name),
                    headline: m
                        .final_loss
                        .map_or_else(|| m.line(), |l| format!("{}; loss {l:.3}", m.line())),
                    slug: m.name,
                    created_at: m.trained_at,
                    model: m.base.unwrap_or(m.base_model),
                    edit: None,
                });
            }
            // Trained models are folders, not records: never unlisted.
            let mut all = store
                .listed(all, |e| (e.kind != "model").then_some(e.slug.as_str()), &[])
                .await
                .map_err(internal)?;
            // RFC 3339 UTC strings sort by time.
            all.sort_by(|a, b| b.created_at.cmp(&a.created_at));
            Ok(all)
        })
    }

    fn instance_runs(&self, split: String, id: u64) -> BoxFuture<'_, AppResult<Vec<CatalogEntry>>> {
        Box::pin(async move {
            let store = &self.0.store;
            let mut all: Vec<CatalogEntry> = store
                .runs_of_instance(&split, id)
                .await
                .map_err(internal)?
                .into_iter()
                .map(edit_entry)
                .collect();
            all.extend(
                store
                    .evals_with_instance(id)
                    .await
                    .map_err(internal)?
                    .into_iter()
                    .filter(|e| evaluates_split(&e.data, &split))
                    .map(eval_entry),
            );
            let mut all = store
                .listed(all, |e| Some(e.slug.as_str()), &[])
                .await
                .map_err(internal)?;
            all.sort_by(|a, b| b.created_at.cmp(&a.created_at));
            Ok(all)
        })
    }

    fn unlisted(&self, slug: String) -> BoxFuture<'_, AppResult<bool>> {
        Box::pin(async move {
            let hidden = self.0.store.unlisted().await.map_err(internal)?;
            Ok(hidden.contains(&slug))
        })
    }

    fn set_unlisted(&self, slug: String, unlisted: bool) -> BoxFuture<'_, AppResult<bool>> {
        Box::pin(async move {
            let store = &self.0.store;
            let known = store.run(&slug).await.map_err(internal)?.is_some()
                || store.eval(&slug).await.map_err(internal)?.is_some()
                || store.analysis(&slug).await.map_err(internal)?.is_some()
                || store.test_all(&slug).await.map_err(internal)?.is_some();
            if !known {
                return Err(AppError::NotFound(format!(
                    "no run, evaluation, analysis or test_ALL run `{slug}`"
                )));
            }
            store
                .set_unlisted(&slug, unlisted)
                .await
                .map_err(internal)?;
            tracing::info!(%slug, unlisted, "listing changed");
            Ok(unlisted)
        })
    }

    fn flag_verdict(
        &self,
        slug: String,
        request: FlagRequest,
    ) -> BoxFuture<'_, AppResult<VerdictFlag>> {
        Box::pin(async move {
            flags::set_flag(&self.0.store, &slug, request)
                .await
                .map_err(app_error)
        })
    }

    fn unflag_verdict(
        &self,
        slug: String,
        instance: u64,
        kind: String,
    ) -> BoxFuture<'_, AppResult<()>> {
        Box::pin(async move {
            flags::clear_flag(&self.0.store, &slug, instance, &kind)
                .await
                .map_err(app_error)
        })
    }

    // Model cards and training logs are small files: read in place.
    fn judge(&self) -> BoxFuture<'_, AppResult<JudgePage>> {
        Box::pin(async move { super::judge::judge_page(&self.0).await.map_err(app_error) })
    }

    fn trained_models(&self) -> BoxFuture<'_, AppResult<Vec<TrainedModel>>> {
        Box::pin(async move {
            Ok(self
                .0
                .jobs
                .models()
                .list()
                .into_iter()
                .map(public::record)
                .collect())
        })
    }

    fn trained_model(&self, name: String) -> BoxFuture<'_, AppResult<Option<TrainedModelPage>>> {
        Box::pin(async move {
            self.0
                .jobs
                .models()
                .page(&name)
                .map(|page| page.map(public::record))
                .map_err(|e| AppError::Internal(e.to_string()))
        })
    }
}

/// An edit run in the catalogue.
fn edit_entry(r: RunSummary) -> CatalogEntry {
    CatalogEntry {
        kind: "edit".into(),
        href: format!("/runs/{}", r.slug),
        slug: r.slug.clone(),
        created_at: r.created_at.clone(),
        title: format!(
            "DINM edit of {} #{}, layer {}",
            r.split, r.instance, r.layer
        ),
        model: r.model.clone(),
        headline: format!("DS {:.0} → {:.0}", r.ds.0, r.ds.1),
        edit: Some(r),
    }
}

/// An evaluation in the catalogue.
fn eval_entry(e: EvalRecord) -> CatalogEntry {
    let ds = e
        .metrics
        .iter()
        .find(|m| m.group == "all" && m.value == "all" && m.metric == "DS")
        .map_or("–".into(), |m| format!("DS {:.1}", m.score));
    CatalogEntry {
        kind: "eval".into(),
        href: format!("/evals/{}", e.slug),
        slug: e.slug,
        created_at: e.created_at,
        title: format!("{} on {} ({} instances)", e.method, e.data, e.instances),
        model: e.model,
        headline: ds,
        edit: None,
    }
}

/// Whether an evaluation of data `data` (`test #3`, `test-sample`, `editing-instances`, a
/// SafeEdit file) evaluated instances of `split`, whose ids it shares.
fn evaluates_split(data: &str, split: &str) -> bool {
    let data = data.rsplit('/').next().unwrap_or(data);
    match split {
        "editing" => data.starts_with("editing"),
        "test" => {
            data.starts_with("test #")
                || data.starts_with("test-sample")
                || data.starts_with("SafeEdit_test.json")
        }
        other => {
            data.starts_with(&format!("{other} #"))
                || data.starts_with(&format!("SafeEdit_{other}.json"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::evaluates_split;

    #[test]
    fn an_evaluation_belongs_to_the_split_its_data_came_from() {
        for (data, split) in [
            ("test #3", "test"),
            ("test-sample", "test"),
            ("test-sample (fold held-out)", "test"),
            ("/data/SafeEdit/SafeEdit_test.json", "test"),
            ("editing #2", "editing"),
            ("editing-instances", "editing"),
            ("/data/SafeEdit_val.json", "val"),
        ] {
            assert!(evaluates_split(data, split), "{data} is {split}");
        }
        for (data, split) in [
            ("editing #2", "test"),
            ("test #3", "editing"),
            ("/data/SafeEdit_test_ALL.json", "test"),
            ("/data/SafeEdit_train.json", "val"),
        ] {
            assert!(!evaluates_split(data, split), "{data} is not {split}");
        }
    }
}
