//! Plans on the `tiny` test model for the experiments' tests: small enough to run in seconds,
//! stored (when they store) in a database inside the test's own folder.

use std::path::Path;

use safeedit_core::Method;
use safeedit_engine::baselines::Objective;

use crate::eval::EvalPlan;
use crate::method::{BaselineOptions, DinmOptions, ModelChoice};
use crate::publish::Database;
use crate::train::TrainPlan;

/// The tiny model with 2 DINM steps.
pub fn tiny_model() -> ModelChoice {
    ModelChoice {
        model: Some("tiny".into()),
        prompt_format: None,
        dinm: DinmOptions {
            steps: Some(2),
            ..DinmOptions::default()
        },
        baselines: BaselineOptions::default(),
        dtype: Default::default(),
    }
}

/// The runs database in `dir/db`, so tests never touch the user's.
pub fn database_in(dir: &Path) -> Option<Database> {
    Some(Database {
        data_dir: Some(dir.join("db")),
        url: None,
        unlisted: false,
    })
}

/// A small evaluation on the tiny model (2 DINM steps, 3 tokens), stored in `out/db`.
pub fn tiny_eval(method: Method, limit: usize, out: &Path) -> EvalPlan {
    EvalPlan {
        limit: Some(limit),
        model: tiny_model(),
        max_new_tokens: Some(3),
        database: database_in(out),
        ..EvalPlan::new(method, out)
    }
}

/// SFT or DPO of the tiny model on the first `limit` pairs of the train fold, one epoch of
/// batches of 2 at lr 1e-3 (the preset's optimiser and warm-up).
pub fn tiny_train(objective: Objective, limit: usize, out: &Path) -> TrainPlan {
    TrainPlan {
        model: Some("tiny".into()),
        limit: Some(limit),
        lr: Some(1e-3),
        batch_size: Some(2),
        epochs: Some(1),
        ..TrainPlan::new(objective, out)
    }
}

/// Opens the database a test stored into (`dir/db`) and runs `f` with it.
pub fn with_store<T>(dir: &Path, f: impl AsyncFnOnce(safeedit_store::Store) -> T) -> T {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = safeedit_store::Store::open(None, &dir.join("db"))
            .await
            .unwrap();
        f(store).await
    })
}

/// The slug a results folder was stored under.
pub fn folder_slug(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("slug.txt")).unwrap();
    text.lines().next().unwrap().to_string()
}
