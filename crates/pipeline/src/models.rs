//! The web app's trained models: one folder per model in the server's models folder
//! (`{data dir}/models/{name}/`, a Hugging Face directory with its training card, as
//! `safeedit train` writes it), found by name. Jobs and pickers name models; paths stay here.

use std::path::{Path, PathBuf};

use safeedit_core::job::check_model_name;
use safeedit_core::{TrainPoint, TrainedModel, TrainedModelPage};
use safeedit_engine::baselines::{Objective, TrainedModelCard};

use crate::run_dir::read_jsonl;
use crate::{PipelineError, Result, bail, ensure};

/// The file in a model folder that names the job training it (the folder is reserved for that
/// job from the moment it is queued).
pub const JOB_FILE: &str = "safeedit_job.txt";

/// The folder of trained models.
#[derive(Debug, Clone)]
pub struct ModelsDir(pub PathBuf);

impl ModelsDir {
    /// The folder of model `name` (checked to be a plain name).
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        check_model_name(name).map_err(PipelineError::Invalid)?;
        Ok(self.0.join(name))
    }

    /// Reserves `name` for job `job`: creates its folder with the job's id in it. `Err` when
    /// the name is taken (by a model or by another queued training).
    pub fn reserve(&self, name: &str, job: &str) -> Result<PathBuf> {
        let dir = self.path(name)?;
        std::fs::create_dir_all(&self.0).map_err(|e| PipelineError::file(&self.0, e))?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("name: a model called `{name}` exists already; choose another name")
            }
            Err(e) => return Err(PipelineError::file(&dir, e)),
        }
        let file = dir.join(JOB_FILE);
        std::fs::write(&file, job).map_err(|e| PipelineError::file(&file, e))?;
        Ok(dir)
    }

    /// Gives back a name `job` reserved and has not trained yet (its folder holds nothing but
    /// the reservation).
    pub fn release(&self, name: &str, job: &str) {
        let Ok(dir) = self.reserved(name, job) else {
            return;
        };
        if std::fs::remove_file(dir.join(JOB_FILE)).is_ok() {
            // Fails, leaving the folder, when anything else is in it.
            let _ = std::fs::remove_dir(&dir);
        }
    }

    /// The folder reserved for job `job` under `name`; `Err` when another job holds it.
    pub fn reserved(&self, name: &str, job: &str) -> Result<PathBuf> {
        let dir = self.path(name)?;
        let holder = std::fs::read_to_string(dir.join(JOB_FILE)).unwrap_or_default();
        ensure!(
            holder.trim() == job,
            "name: the folder of model `{name}` belongs to {}",
            if holder.trim().is_empty() {
                "no job of this server".to_string()
            } else {
                format!("job {}", holder.trim())
            }
        );
        Ok(dir)
    }

    /// A trained model's card as the app shows it (`None`: no card yet).
    fn card(&self, name: &str) -> Result<Option<TrainedModel>> {
        let dir = self.path(name)?;
        let Some(card) = TrainedModelCard::read(&dir)? else {
            return Ok(None);
        };
        let trained_at = dir
            .join(TrainedModelCard::FILE)
            .metadata()
            .and_then(|m| m.modified())
            .map(safeedit_store::time_rfc3339)
            .unwrap_or_default();
        let base_dir = Path::new(&card.base_source);
        let base = (base_dir.parent() == Some(self.0.as_path()))
            .then(|| base_dir.file_name())
            .flatten()
            .map(|n| n.to_string_lossy().into_owned());
        Ok(Some(TrainedModel {
            name: name.to_string(),
            objective: card.method.as_str().to_string(),
            base_model: card.base_model,
            base,
            data: card.data,
            n_examples: card.n_examples,
            steps_done: card.steps_done,
            total_steps: card.total_steps,
            final_loss: card.final_loss,
            lora_rank: card.config.lora.as_ref().map(|l| l.rank),
            prompt_format: card.prompt_format,
            settings: serde_json::to_value(&card.config).unwrap_or_default(),
            trained_at,
        }))
    }

    /// Every model with a card, newest first (a folder whose card cannot be read is skipped
    /// with a warning in the log).
    pub fn list(&self) -> Vec<TrainedModel> {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return Vec::new();
        };
        let mut found: Vec<(std::time::SystemTime, TrainedModel)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                check_model_name(&name).ok()?;
                match self.card(&name) {
                    Ok(Some(model)) => {
                        let modified = entry
                            .path()
                            .join(TrainedModelCard::FILE)
                            .metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        Some((modified, model))
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!("skipping trained model `{name}`: {e}");
                        None
                    }
                }
            })
            .collect();
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
        found.into_iter().map(|(_, m)| m).collect()
    }

    /// A model's page: its card and training log (`None`: no such model).
    pub fn page(&self, name: &str) -> Result<Option<TrainedModelPage>> {
        if check_model_name(name).is_err() {
            return Ok(None);
        }
        let Some(model) = self.card(name)? else {
            return Ok(None);
        };
        let log = self.0.join(name).join("train_log.jsonl");
        let steps: Vec<TrainPoint> = if log.is_file() {
            read_jsonl(&log)?
        } else {
            Vec::new()
        };
        Ok(Some(TrainedModelPage { model, steps }))
    }

    /// The folder of a finished model trained with `objective` (any objective when `None`),
    /// for jobs that name it in `field`. The error names the field and what is wrong.
    pub fn finished(
        &self,
        field: &str,
        name: &str,
        objective: Option<Objective>,
    ) -> Result<PathBuf> {
        self.finished_model(field, name, objective)
            .map(|(dir, _)| dir)
    }

    /// [`ModelsDir::finished`], with the model's card.
    pub fn finished_model(
        &self,
        field: &str,
        name: &str,
        objective: Option<Objective>,
    ) -> Result<(PathBuf, TrainedModel)> {
        check_model_name(name).map_err(|e| PipelineError::Invalid(format!("{field}: {e}")))?;
        let Some(model) = self.card(name)? else {
            bail!("{field}: no trained model `{name}` (GET /api/models lists them)");
        };
        if let Some(objective) = objective {
            ensure!(
                model.objective == objective.as_str(),
                "{field}: `{name}` was trained with {}, not {}",
                model.objective,
                objective.as_str()
            );
        }
        ensure!(
            model.finished(),
            "{field}: `{name}` stopped at step {} of {}; it cannot be used until it is trained \
             to the end",
            model.steps_done,
            model.total_steps
        );
        Ok((self.0.join(name), model))
    }
}
