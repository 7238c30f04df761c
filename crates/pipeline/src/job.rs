//! Jobs of the web app and its workers: a [`JobSpec`] checked before it is queued ([`Worker::
//! check`]) and run on a worker's loaded model ([`Worker::run`]), through the same experiment
//! functions as the command line. What a job produced is the page of its result.

use std::path::{Path, PathBuf};

use safeedit_core::Method;
use safeedit_core::browse::Catalog;
use safeedit_core::general::GeneralTask;
use safeedit_core::job::{
    AnalyzeJob, CompareJob, EvalJob, GeneralJob, JobSpec, TestAllJob, TrainJob, check_model_name,
};
use safeedit_core::run::{EditOverrides, EditRequest};
use safeedit_engine::WeightDtype;
use safeedit_engine::baselines::{Objective, OptimizerKind, TrainConfig};
use safeedit_engine::dinm::DinmConfig;

use crate::analyze::{self, AnalyzePlan};
use crate::edit::{config_with_overrides, edit_run, no_instance};
use crate::eval::{self, EvalPlan};
use crate::evaluate::evaluate_one;
use crate::general::{self, GeneralPlan};
use crate::method::{DinmOptions, ModelChoice};
use crate::models::ModelsDir;
use crate::progress::{ProgressExt, Staged};
use crate::publish::{Database, Published, Publisher};
use crate::test_all::{self, TestAllPlan};
use crate::train::{self, TrainPlan};
use crate::{Loaded, PipelineError, Progress, Result, bail, ensure};

/// What a worker has: the data, the model's preset and where results go.
#[derive(Clone)]
pub struct Worker {
    /// The instances that edit jobs may name.
    pub catalog: std::sync::Arc<Catalog>,
    /// The folder of the full SafeEdit release, when the server has one.
    pub safeedit_dir: Option<PathBuf>,
    /// The model's DINM preset, which requests override.
    pub preset: DinmConfig,
    /// Decoder layers of the model (to check a fixed layer).
    pub n_layers: usize,
    /// The paper's classifier directory, or `None` for the built-in judge.
    pub judge_dir: Option<PathBuf>,
    /// The precision evaluations, analyses and LoRA training load their models in (the
    /// server's `--dtype`; full fine-tuning keeps f32).
    pub dtype: WeightDtype,
    /// Where each edit run's delta is saved (`{slug}.safetensors`).
    pub delta_dir: PathBuf,
    /// Where each evaluation job keeps its run folder (`{job id}/`, resumed after a restart).
    pub job_dir: PathBuf,
    /// Where train jobs write their models (`{name}/`), which later jobs name.
    pub models: ModelsDir,
    /// The runs database.
    pub database: Database,
}

/// The file in an eval job's folder that keeps its request.
const EVAL_JOB_FILE: &str = "eval_job.json";

/// The training objective of a train job's `objective` field.
fn objective(method: Method) -> Result<Objective> {
    match method {
        Method::Sft => Ok(Objective::Sft),
        Method::Dpo => Ok(Objective::Dpo),
        other => bail!("objective: `{other}` is not a training objective (sft, dpo)"),
    }
}

/// The optimiser of a train job's `optimizer` field.
fn optimizer(name: &str) -> Result<OptimizerKind> {
    match name {
        "rmsprop" => Ok(OptimizerKind::RmsProp),
        "adamw" => Ok(OptimizerKind::AdamW),
        other => bail!("optimizer: unknown optimiser `{other}` (rmsprop, adamw)"),
    }
}

/// `Err` naming the field when a `kind` job cannot run `method` on the loaded model, or
/// `limit` is 0.
fn check_method_and_limit(kind: &str, method: Method, limit: Option<usize>) -> Result<()> {
    ensure!(
        Method::ON_LOADED_MODEL.contains(&method),
        "method: `{method}` needs a trained model ({kind} jobs run {})",
        Method::ON_LOADED_MODEL.map(Method::name).join(", ")
    );
    ensure!(
        limit != Some(0),
        "limit: must be at least 1 (or left out for all)"
    );
    Ok(())
}

impl Worker {
    /// Checks a job before it is queued: the instance or split exists, the method can run here
    /// and every setting is in range. The error names the field.
    pub fn check(&self, spec: &JobSpec) -> Result<()> {
        match spec {
            JobSpec::Edit(request) => {
                self.edit_config(request)?;
            }
            JobSpec::Eval(job) => {
                self.trained_model(job.method, job.model.as_deref())?;
                if job.model.is_none() {
                    check_method_and_limit("eval", job.method, job.limit)?;
                }
                ensure!(
                    job.limit != Some(0),
                    "limit: must be at least 1 (or left out for all)"
                );
                self.eval_data(&job.split)?;
                config_with_overrides(&self.preset, self.n_layers, &self.overrides(job))
                    .map_err(|e| PipelineError::Invalid(format!("overrides: {e}")))?;
            }
            JobSpec::TestAll(job) => {
                check_method_and_limit("test_all", job.method, job.limit)?;
                ensure!(job.batch_size != Some(0), "batch_size: must be at least 1");
                for id in job.edit_instances.iter().flatten() {
                    ensure!(
                        self.catalog.instance("editing", *id).is_some(),
                        "edit_instances: no editing instance {id} (1, 2, 3)"
                    );
                }
                let overrides = with_token_limit(&job.overrides, job.max_new_tokens);
                config_with_overrides(&self.preset, self.n_layers, &overrides)
                    .map_err(|e| PipelineError::Invalid(format!("overrides: {e}")))?;
            }
            JobSpec::Train(job) => self.check_train(job)?,
            JobSpec::General(job) => {
                self.check_general(job)?;
            }
            JobSpec::Analyze(job) => self.check_analyze(job)?,
            JobSpec::Compare(job) => self.check_compare(job)?,
        }
        Ok(())
    }

    /// Checks a job and fills in what the queue must fix before it runs: a train job's model
    /// name (`{objective}-{6 characters of the id}` unless given), whose folder it reserves.
    pub fn prepare(&self, id: &str, spec: &JobSpec) -> Result<JobSpec> {
        self.check(spec)?;
        let mut spec = spec.clone();
        if let JobSpec::Train(job) = &mut spec {
            let name = job.name.get_or_insert_with(|| {
                let short: String = id.chars().take(6).collect();
                format!("{}-{short}", job.objective.name())
            });
            self.models.reserve(name, id)?;
        }
        if let JobSpec::Compare(job) = &mut spec {
            let name = job.name.get_or_insert_with(|| {
                let short: String = id.chars().take(6).collect();
                format!("compare-{short}")
            });
            let (sft, dpo) = CompareJob::model_names(name);
            self.models.reserve(&sft, id)?;
            if let Err(e) = self.models.reserve(&dpo, id) {
                self.models.release(&sft, id);
                return Err(e);
            }
            job.sft.name = Some(sft.clone());
            job.dpo.name = Some(dpo);
            job.dpo.model = Some(sft);
        }
        Ok(spec)
    }

    /// Gives back what [`Worker::prepare`] reserved for a job that was not queued after all
    /// (the model names of a train or comparison job that has not started).
    pub fn release(&self, id: &str, spec: &JobSpec) {
        match spec {
            JobSpec::Train(job) => {
                if let Some(name) = &job.name {
                    self.models.release(name, id);
                }
            }
            JobSpec::Compare(job) => {
                for name in [&job.sft.name, &job.dpo.name].into_iter().flatten() {
                    self.models.release(name, id);
                }
            }
            _ => {}
        }
    }

    /// Checks an analysis job's fields.
    fn check_analyze(&self, job: &AnalyzeJob) -> Result<()> {
        self.analyzed(&job.methods)?;
        ensure!(
            matches!(job.edit_split.as_str(), "editing" | "test"),
            "edit_split: `{}` is not editing or test",
            job.edit_split
        );
        for (field, value) in [
            ("edits", job.edits),
            ("inputs", job.inputs),
            ("projection_inputs", job.projection_inputs),
            ("top_k", job.top_k),
            ("lens_vectors", job.lens_vectors),
            ("lens_tokens", job.lens_tokens),
            ("probe_tokens", job.probe_tokens),
        ] {
            ensure!(value != Some(0), "{field}: must be at least 1");
        }
        if let Some(layer) = job.region_layer {
            ensure!(
                layer < self.n_layers,
                "region_layer: layer {layer} does not exist (the model has {} layers)",
                self.n_layers
            );
        }
        Ok(())
    }

    /// Checks a comparison's fields (each stage's, named `sft.…`, `dpo.…`, `analyze.…`).
    fn check_compare(&self, job: &CompareJob) -> Result<()> {
        if let Some(name) = &job.name {
            let (sft, _) = CompareJob::model_names(name);
            check_model_name(name)
                .and_then(|()| check_model_name(&sft))
                .map_err(|e| PipelineError::Invalid(format!("name: {e}")))?;
        }
        for (stage, train, objective) in [
            ("sft", &job.sft, Method::Sft),
            ("dpo", &job.dpo, Method::Dpo),
        ] {
            ensure!(
                train.objective == objective,
                "{stage}.objective: the {stage} stage trains with {objective}"
            );
            ensure!(
                train.name.is_none(),
                "{stage}.name: the comparison names its models `{{name}}-sft` and \
                 `{{name}}-dpo`; set the comparison's `name`"
            );
        }
        ensure!(
            job.dpo.model.is_none(),
            "dpo.model: DPO starts from the comparison's SFT model"
        );
        self.check_train(&job.sft).map_err(|e| e.within("sft"))?;
        self.check_train(&job.dpo).map_err(|e| e.within("dpo"))?;
        self.check_analyze(&job.analyze)
            .map_err(|e| e.within("analyze"))
    }

    /// For `sft` / `dpo` the folder of the trained model named in `model` (which they need);
    /// `None` for the other methods (which run on the loaded model and name none).
    fn trained_model(&self, method: Method, model: Option<&str>) -> Result<Option<PathBuf>> {
        match (objective(method), model) {
            (Ok(objective), Some(name)) => self
                .models
                .finished("model", name, Some(objective))
                .map(Some),
            (Ok(_), None) => bail!(
                "model: method `{method}` evaluates a trained model; name one (GET /api/models, \
                 or start a train job)"
            ),
            (Err(_), Some(_)) => bail!(
                "model: method `{method}` runs on the loaded model; a trained model is evaluated \
                 with method sft or dpo"
            ),
            (Err(_), None) => Ok(None),
        }
    }

    /// An analysis's compared methods as `safeedit analyze` takes them: editing methods, and
    /// trained models by name (as `name=folder`). The error names the field.
    fn analyzed(&self, methods: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for m in methods {
            ensure!(
                !m.contains('='),
                "methods: `{m}`: the web app compares editing methods and trained models by \
                 name (a model given by its path is for the command line)"
            );
            if m.parse::<Method>().is_err()
                && let Ok(dir) = self.models.path(m)
                && dir.is_dir()
            {
                let dir = self.models.finished("methods", m, None)?;
                out.push(format!("{m}={}", dir.display()));
                continue;
            }
            out.push(m.clone());
        }
        analyze::check_methods(&out).map_err(|e| {
            let message = e.to_string().replace("--", "");
            PipelineError::Invalid(if message.contains("unknown method") {
                format!("{message} (nor a trained model: GET /api/models)")
            } else {
                message
            })
        })?;
        Ok(out)
    }

    /// Checks a general-performance job; the evaluation's folder and job.
    fn check_general(&self, job: &GeneralJob) -> Result<(PathBuf, EvalJob)> {
        ensure!(
            job.task != GeneralTask::Kqa,
            "task: kqa needs the TriviaQA file, which the server does not have (safeedit general \
             --task kqa --data FILE); the server measures knowledge and csum"
        );
        for (field, value) in [("limit", job.limit), ("batch_size", job.batch_size)] {
            ensure!(value != Some(0), "{field}: must be at least 1");
        }
        ensure!(
            job.max_new_tokens != Some(0),
            "max_new_tokens: must be at least 1"
        );
        if let Some(id) = job.edit_instance {
            ensure!(
                self.catalog.instance("editing", id).is_some(),
                "edit_instance: no editing instance {id} (1, 2, 3)"
            );
        }
        self.eval_folder(&job.eval)
    }

    /// The folder and request of the eval job whose result is the evaluation `slug`.
    fn eval_folder(&self, slug: &str) -> Result<(PathBuf, EvalJob)> {
        let entries = std::fs::read_dir(&self.job_dir)
            .into_iter()
            .flatten()
            .flatten();
        for entry in entries {
            let folder = entry.path();
            let stored = std::fs::read_to_string(folder.join("slug.txt")).unwrap_or_default();
            if stored.lines().next().map(str::trim) != Some(slug) {
                continue;
            }
            let path = folder.join(EVAL_JOB_FILE);
            ensure!(
                path.is_file(),
                "eval: evaluation `{slug}` was made before general-performance jobs existed; \
                 measure it with `safeedit general --out {}`",
                folder.display()
            );
            let job: EvalJob = crate::run_dir::read_json(&path)?;
            return Ok((folder, job));
        }
        bail!(
            "eval: no evaluation `{slug}` made by this server's eval jobs (an evaluation made on \
             the command line is measured with `safeedit general --out` its folder)"
        )
    }

    /// Checks a train job's fields.
    fn check_train(&self, job: &TrainJob) -> Result<()> {
        let objective = objective(job.objective)?;
        if let Some(name) = &job.name {
            check_model_name(name).map_err(|e| PipelineError::Invalid(format!("name: {e}")))?;
        }
        if let Some(base) = &job.model {
            self.models.finished("model", base, None)?;
        }
        self.train_data(&job.data)?;
        if let Some(preset) = &job.preset {
            ensure!(
                TrainConfig::preset_named(preset, objective).is_some(),
                "preset: unknown preset `{preset}` (reference, smollm2-135m)"
            );
        }
        if let Some(name) = &job.optimizer {
            optimizer(name)?;
        }
        for (field, value) in [
            ("limit", job.limit),
            ("batch_size", job.batch_size),
            ("epochs", job.epochs),
            ("lora_rank", job.lora_rank),
            ("save_every", job.save_every),
        ] {
            ensure!(value != Some(0), "{field}: must be at least 1");
        }
        for (field, value) in [
            ("lr", job.lr),
            ("beta", job.beta),
            ("lora_alpha", job.lora_alpha),
        ] {
            if let Some(v) = value {
                ensure!(
                    v.is_finite() && v > 0.0,
                    "{field}: must be positive (got {v})"
                );
            }
        }
        ensure!(
            job.lora_rank.is_some() || (job.lora_alpha.is_none() && job.lora_targets.is_none()),
            "lora_rank: lora_alpha and lora_targets need a LoRA rank"
        );
        Ok(())
    }

    /// The data file of a train job's `data` field.
    fn train_data(&self, data: &str) -> Result<String> {
        match data {
            "test-sample" => Ok(data.to_string()),
            "train" => self
                .safeedit_dir
                .as_ref()
                .map(|dir| dir.join("SafeEdit_train.json"))
                .filter(|path| path.is_file())
                .map(|path| path.display().to_string())
                .ok_or_else(|| {
                    PipelineError::Invalid(
                        "data: `train` is SafeEdit_train.json of the full release (serve with \
                         --safeedit-dir); this server trains on test-sample"
                            .into(),
                    )
                }),
            other => bail!("data: unknown data `{other}` (test-sample, train)"),
        }
    }

    fn edit_config(&self, request: &EditRequest) -> Result<DinmConfig> {
        if self.catalog.instance(&request.split, request.id).is_none() {
            return Err(no_instance(&request.split, request.id));
        }
        ensure!(
            matches!(
                request.method,
                Method::Dinm | Method::Vanilla | Method::Prompt
            ),
            "method `{}` cannot run on one instance (dinm, vanilla, prompt); start an eval job",
            request.method
        );
        config_with_overrides(&self.preset, self.n_layers, &request.overrides)
    }

    /// The overrides of an eval job, with its token limit.
    fn overrides(&self, job: &EvalJob) -> EditOverrides {
        with_token_limit(&job.overrides, job.max_new_tokens)
    }

    /// The split and data file an evaluation of `split` reads.
    fn eval_data(&self, split: &str) -> Result<(String, Option<String>)> {
        let file = |name: &str| {
            self.safeedit_dir
                .as_ref()
                .map(|dir| dir.join(format!("SafeEdit_{name}.json")))
                .filter(|path| path.is_file())
                .map(|path| path.display().to_string())
        };
        match split {
            "editing" => Ok(("editing".into(), None)),
            "test" => Ok(("test".into(), file("test"))),
            "val" | "train" => match file(split) {
                Some(path) => Ok((split.into(), Some(path))),
                None => bail!(
                    "split: `{split}` is evaluated from the full SafeEdit release (serve with \
                     --safeedit-dir); this server has test and editing"
                ),
            },
            other => bail!("split: unknown split `{other}` (test, val, train, editing)"),
        }
    }

    /// Runs job `id` on the loaded model; the page of its result. `Cancelled` when the
    /// progress asks to stop.
    pub fn run(
        &self,
        id: &str,
        spec: &JobSpec,
        loaded: &Loaded<'_>,
        publisher: &Publisher,
        progress: &mut dyn Progress,
    ) -> Result<String> {
        // Records of an unlisted job are stored unlisted, whichever way they are published.
        let unlisted_copy;
        let worker = if publisher.unlisted() {
            let mut copy = self.clone();
            copy.database.unlisted = true;
            unlisted_copy = copy;
            &unlisted_copy
        } else {
            self
        };
        worker.run_job(id, spec, loaded, publisher, progress)
    }

    fn run_job(
        &self,
        id: &str,
        spec: &JobSpec,
        loaded: &Loaded<'_>,
        publisher: &Publisher,
        progress: &mut dyn Progress,
    ) -> Result<String> {
        match spec {
            JobSpec::Edit(request) => {
                let config = self.edit_config(request)?;
                let record = self
                    .catalog
                    .instance(&request.split, request.id)
                    .cloned()
                    .ok_or_else(|| no_instance(&request.split, request.id))?;
                // The result's slug comes from the job's id: a job run again (its worker was
                // lost after storing it) stores nothing twice.
                let slug = result_slug(id);
                if request.method == Method::Dinm {
                    let run = edit_run(
                        loaded,
                        slug,
                        request,
                        &record,
                        &config,
                        &self.delta_dir,
                        progress,
                    )?;
                    publisher.run(&request.split, &run)?;
                    Ok(format!("/runs/{}", run.slug))
                } else {
                    let (eval, instance) = evaluate_one(
                        loaded,
                        slug,
                        &request.split,
                        &record,
                        request.method,
                        config,
                        progress,
                    )?;
                    publisher.eval(&eval, std::slice::from_ref(&instance))?;
                    Ok(format!("/evals/{}", eval.slug))
                }
            }
            JobSpec::Eval(job) => self.eval(id, job, loaded.path, progress),
            JobSpec::General(job) => self.general(job, loaded.path, progress),
            JobSpec::TestAll(job) => self.test_all(id, job, loaded.path, progress),
            JobSpec::Train(job) => self.train(id, job, loaded.path, progress),
            JobSpec::Analyze(job) => self.analyze(id, job, loaded.path, progress),
            JobSpec::Compare(job) => self.compare(id, job, loaded.path, progress),
        }
    }

    /// A comparison: SFT, DPO from it, then the analysis, each a stage of the job's progress.
    /// A stage whose model is trained already (before a restart) is not run again.
    fn compare(
        &self,
        id: &str,
        job: &CompareJob,
        model: &Path,
        progress: &mut dyn Progress,
    ) -> Result<String> {
        let mut analyzed = job.analyze.clone();
        for (index, stage, train) in [(1, "SFT", &job.sft), (2, "DPO", &job.dpo)] {
            let name = train.name.as_deref().ok_or_else(|| {
                PipelineError::Invalid("name: the queue names every comparison's models".into())
            })?;
            let mut staged = Staged::new(progress, index, 3, stage);
            if self.models.finished("model", name, None).is_ok() {
                staged.note(format!("model {name} is trained already"));
            } else {
                self.train(id, train, model, &mut staged)?;
            }
            analyzed.methods.push(name.to_string());
        }
        let mut staged = Staged::new(progress, 3, 3, "analysis");
        self.analyze(id, &analyzed, model, &mut staged)
    }

    /// A train job into its model's folder (resumed from its last checkpoint after a
    /// restart); the model's page.
    fn train(
        &self,
        id: &str,
        job: &TrainJob,
        model: &Path,
        progress: &mut dyn Progress,
    ) -> Result<String> {
        self.check_train(job)?;
        let name = job.name.as_deref().ok_or_else(|| {
            PipelineError::Invalid("name: the queue names every train job's model".into())
        })?;
        let out = self.models.reserved(name, id)?;
        let optimizer = job.optimizer.as_deref().map(optimizer).transpose()?;
        let mut plan =
            TrainPlan::new(objective(job.objective)?, &out).with_job_settings(job, optimizer);
        plan.resume = out.join("trainer.json").is_file();
        // LoRA trains on a base kept in the server's precision; full fine-tuning keeps f32.
        if plan.lora_rank.is_some() {
            plan.dtype = self.dtype;
        }
        plan.model = Some(match &job.model {
            Some(base) => self.models.finished("model", base, None)?,
            None => model.to_path_buf(),
        });
        plan.data = self.train_data(&job.data)?;
        train::run(&plan, progress)?;
        Ok(format!("/models/{name}"))
    }

    /// A SafeEdit_test_ALL job into the job's folder (resumed after a restart).
    fn test_all(
        &self,
        id: &str,
        job: &TestAllJob,
        model: &Path,
        progress: &mut dyn Progress,
    ) -> Result<String> {
        let mut eval = self.eval_plan(
            id,
            &EvalJob {
                method: job.method,
                split: "test".into(),
                fold: job.fold,
                limit: job.limit,
                max_new_tokens: job.max_new_tokens,
                overrides: job.overrides.clone(),
                model: None,
            },
            model,
        )?;
        // The protocol reads its own inputs (SafeEdit_test_ALL), not the test split.
        eval.data = None;
        let mut plan = TestAllPlan::new(eval);
        if let Some(instances) = &job.edit_instances {
            plan.edit_instances = instances.clone();
        }
        if let Some(batch) = job.batch_size {
            plan.batch_size = batch;
        }
        let summary = test_all::run(&plan, progress)?;
        published(summary.published, "/test-all", &plan.eval.out)
    }

    /// A mechanism-analysis job into the job's folder.
    fn analyze(
        &self,
        id: &str,
        job: &AnalyzeJob,
        model: &Path,
        progress: &mut dyn Progress,
    ) -> Result<String> {
        let mut plan = AnalyzePlan::new(self.job_dir.join(id));
        let mut methods = vec!["vanilla".to_string()];
        methods.extend(self.analyzed(&job.methods)?);
        plan.methods = methods;
        plan.edit_split = job.edit_split.clone();
        plan.edits = job.edits;
        plan.inputs = job.inputs;
        plan.fold = job.fold;
        plan.region_layer = job.region_layer;
        plan.model = Some(model.to_path_buf());
        plan.dtype = self.dtype;
        plan.database = Some(self.database.clone());
        let set = |field: &mut usize, value: Option<usize>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut plan.projection_inputs, job.projection_inputs);
        set(&mut plan.top_k, job.top_k);
        set(&mut plan.lens_vectors, job.lens_vectors);
        set(&mut plan.lens_tokens, job.lens_tokens);
        set(&mut plan.probe_tokens, job.probe_tokens);
        let summary = analyze::run(&plan, progress)?;
        published(summary.published, "/mechanisms", &plan.out)
    }

    /// A general-performance job into its evaluation's folder; the evaluation's page.
    fn general(
        &self,
        job: &GeneralJob,
        model: &Path,
        progress: &mut dyn Progress,
    ) -> Result<String> {
        let (folder, eval_job) = self.check_general(job)?;
        let id = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let eval = self.eval_plan(&id, &eval_job, model)?;
        let plan = GeneralPlan {
            task: job.task,
            method: eval_job.method,
            data: None,
            limit: job.limit,
            out: folder.clone(),
            edit_instance: job.edit_instance.unwrap_or(2),
            edit_data: "editing-instances".into(),
            model: eval.model,
            max_new_tokens: job.max_new_tokens,
            batch_size: job.batch_size.unwrap_or(4),
            database: Some(self.database.clone()),
        };
        let summary = general::run(&plan, progress)?;
        published(summary.published, "/evals", &folder)
    }

    /// An evaluation job: `safeedit eval` into the job's own folder (a restarted job resumes
    /// from the instances it finished).
    fn eval(
        &self,
        id: &str,
        job: &EvalJob,
        model: &Path,
        progress: &mut dyn Progress,
    ) -> Result<String> {
        let plan = self.eval_plan(id, job, model)?;
        // What a later general-performance job of this evaluation needs to measure the same
        // method on the same model.
        crate::run_dir::create(&plan.out)?;
        crate::run_dir::write_json(&plan.out.join(EVAL_JOB_FILE), job)?;
        let summary = eval::run(&plan, progress)?;
        summary.check()?;
        published(summary.published, "/evals", &plan.out)
    }

    /// The `safeedit eval` plan of an evaluation job, writing to the job's folder.
    fn eval_plan(&self, id: &str, job: &EvalJob, model: &Path) -> Result<EvalPlan> {
        let (split, data) = self.eval_data(&job.split)?;
        let overrides = self.overrides(job);
        let mut plan = EvalPlan::new(job.method, self.job_dir.join(id));
        plan.split = split;
        plan.data = data;
        plan.fold = job.fold;
        plan.limit = job.limit;
        plan.max_new_tokens = overrides.max_new_tokens;
        plan.judge_dir = self.judge_dir.clone();
        plan.database = Some(self.database.clone());
        let model = self
            .trained_model(job.method, job.model.as_deref())?
            .unwrap_or_else(|| model.to_path_buf());
        plan.model = ModelChoice {
            model: Some(model),
            dinm: DinmOptions {
                lr: overrides.lr,
                steps: overrides.steps,
                layer: overrides.layer,
                ..DinmOptions::default()
            },
            dtype: self.dtype,
            ..ModelChoice::default()
        };
        if let Some(layer) = overrides.layer {
            plan.model.baselines.ftl_layer = Some(layer);
        }
        if let Some(steps) = overrides.steps {
            plan.model.baselines.ftl_steps = Some(steps);
        }
        Ok(plan)
    }
}

/// A job's overrides with its `max_new_tokens` field (which wins over the overrides' own).
fn with_token_limit(overrides: &EditOverrides, max_new_tokens: Option<usize>) -> EditOverrides {
    EditOverrides {
        max_new_tokens: max_new_tokens.or(overrides.max_new_tokens),
        ..overrides.clone()
    }
}

/// The slug of the one result a job stores itself (an edit run, a one-instance evaluation):
/// the first 10 characters of the job's id (random, like every slug: 50 bits), so the same job
/// always stores under the same slug.
pub fn result_slug(id: &str) -> &str {
    id.char_indices().nth(10).map_or(id, |(end, _)| &id[..end])
}

/// The page of a stored result (`{pages}/{slug}`), or why it was not stored.
fn published(published: Published, pages: &str, out: &Path) -> Result<String> {
    match published {
        Published::Stored(slug) => Ok(format!("{pages}/{slug}")),
        Published::Failed(message) => bail!(
            "the results are written to {} but the runs database refused them: {message}",
            out.display()
        ),
        Published::Skipped => bail!("{} holds no results to store", out.display()),
    }
}
