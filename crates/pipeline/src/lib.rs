//! safeedit-pipeline: every SafeEdit Studio experiment as a plain plan and one function that
//! runs it. The command line turns its flags into these plans, the web app's job queue turns
//! requests into them, and both get the same files, records and numbers.
//!
//! | experiment | plan | run |
//! | --- | --- | --- |
//! | DINM on one instance | [`edit::EditPlan`] | [`edit::run`], [`edit::edit_run`] (web) |
//! | a method on SafeEdit | [`eval::EvalPlan`] | [`eval::run`] |
//! | one instance (web) | — | [`evaluate::evaluate_one`] |
//! | general performance | [`general::GeneralPlan`] | [`general::run`] |
//! | SafeEdit_test_ALL | [`test_all::TestAllPlan`] | [`test_all::run`], [`test_all::join_tables`] |
//! | SFT / DPO | [`train::TrainPlan`] | [`train::run`] |
//! | mechanisms | [`analyze::AnalyzePlan`] | [`analyze::run`] |
//! | a web job of any kind | [`safeedit_core::job::JobSpec`] | [`job::Worker::run`] |
//!
//! Each run reports through a [`Progress`] (progress bars on the command line, job events in the
//! web app), which can also cancel it; writes its run folder (resumable where the experiment
//! is); records where its results came from ([`provenance`]) and stores them in the runs
//! database ([`publish`]). The burn backend is chosen here ([`backend`]; `cuda` feature).
//!
//! ```no_run
//! use safeedit_core::Method;
//! use safeedit_pipeline::eval::{EvalPlan, run};
//! use safeedit_pipeline::progress::Quiet;
//!
//! let mut plan = EvalPlan::new(Method::Vanilla, "runs/vanilla");
//! plan.limit = Some(2);
//! let summary = run(&plan, &mut Quiet)?;
//! println!("{} instances", summary.instances);
//! # Ok::<(), safeedit_pipeline::PipelineError>(())
//! ```

pub mod analyze;
pub mod ask;
pub mod backend;
pub mod data;
pub mod edit;
mod error;
pub mod eval;
pub mod evaluate;
pub mod general;
pub mod job;
pub mod judge;
pub mod limits;
pub mod method;
pub mod models;
pub mod paths;
pub mod progress;
pub mod provenance;
pub mod publish;
pub mod run_dir;
pub mod shard;
pub mod test_all;
#[cfg(test)]
mod testutil;
pub mod train;

use std::path::Path;

use safeedit_core::Provenance;
use safeedit_engine::judge::SafetyJudge;

pub use error::{PipelineError, Result, ResultExt};
pub use progress::{Event, Progress, Quiet};

/// A model that is already loaded and a judge (what the web app's worker keeps between jobs),
/// with where the model came from.
pub struct Loaded<'a> {
    /// The model.
    pub lm: &'a backend::Model,
    /// Its file or folder.
    pub path: &'a Path,
    /// Its checksum ([`provenance::model_checksum`], computed once).
    pub checksum: &'a str,
    /// The judge.
    pub judge: &'a dyn SafetyJudge,
}

impl Loaded<'_> {
    /// Where results from this model and judge come from.
    pub fn provenance(&self) -> Provenance {
        provenance::provenance(self.path, Some(self.checksum), self.lm, self.judge.info())
    }
}
