//! `safeedit serve`: the Leptos app on axum with the engine behind its server functions, the
//! job worker, the runs database, the progress stream (SSE) and the downloads.
//!
//! - [`router`]: `router(state, app)` builds every route; tests call it with tower's `oneshot`.
//! - [`error`]: [`WebError`](error::WebError), the status code of each failure.
//! - [`files`], [`figures`], [`events`]: downloads, figure exports, the job event stream.
//! - [`guard`]: host, cross-site and sign-in checks, the sign-in page, security headers.
//! - [`listen`]: the HTTP loop with header, idle and body timeouts.
//! - [`jobs`]: the bounded queue and the worker thread whose jobs run the pipeline.
//! - [`bridge`]: what the app's server functions see of the queue and the database.

mod assets;
mod bridge;
mod error;
mod events;
mod figures;
mod files;
mod flags;
mod guard;
mod job_api;
mod jobs;
mod judge;
mod listen;
mod public;
mod router;
#[cfg(test)]
mod tests;
mod try_api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bridge::{ModelInfo, RunService};
use clap::Args;
use jobs::{Jobs, ModelContext, Workers};
use leptos::config::{Env, LeptosOptions};
use safeedit_core::ModelSummary;
use safeedit_engine::WeightDtype;
use safeedit_pipeline::backend;
use safeedit_pipeline::job::Worker;
use safeedit_pipeline::provenance::model_checksum;
use safeedit_pipeline::publish::Database;
use safeedit_pipeline::{data, paths};
use safeedit_store::Store;

pub use router::router;

/// Arguments of `safeedit serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SAFEEDIT_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// The model, data and database.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// How many workers run jobs inside the server (each on its own thread with the loaded
    /// model); 0 serves pages and the API only and leaves the jobs to `safeedit worker`
    /// processes on the same database (docs/deploy.md).
    #[arg(long, env = "SAFEEDIT_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// The built site (scripts/build-site.sh writes it): `pkg/` with the wasm bundle and CSS.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// Who may do what on a shared server.
    #[command(flatten)]
    pub access: AccessArgs,
}

/// Arguments of `safeedit worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The model, data and database (the server's database URL, and a data folder the server's
    /// machine sees too: docs/deploy.md).
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// What a server and a worker process load: the model, the data, the runs database.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
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
    /// Keep the model's matrices as f32, bf16 or f16 (bf16: a 7B model in 14 GB); the jobs'
    /// evaluations, analyses and LoRA training load their models likewise (full fine-tuning
    /// stays f32).
    #[arg(long, env = "SAFEEDIT_DTYPE", default_value_t = WeightDtype::F32)]
    pub dtype: WeightDtype,
}

/// Sign-in and the names the server answers for (README: "Running on a shared server").
#[derive(Args, Debug, Clone, Default)]
pub struct AccessArgs {
    /// An access token required to start, cancel and try (and with --private, to read):
    /// `Authorization: Bearer <token>`, or sign in on /login in the browser.
    #[arg(long, env = "SAFEEDIT_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// A header a trusted reverse proxy sets to the signed-in user (e.g. X-Forwarded-User); a
    /// request carrying it counts as signed in. The proxy must remove it from clients' requests.
    #[arg(long, env = "SAFEEDIT_AUTH_HEADER")]
    pub auth_header: Option<String>,
    /// Reading pages, runs and downloads needs a sign-in too.
    #[arg(long, env = "SAFEEDIT_PRIVATE")]
    pub private: bool,
    /// A host name the server is reached by (repeatable): requests naming another host are
    /// refused [default: loopback names on a loopback --addr; any host elsewhere].
    #[arg(
        long = "allowed-host",
        env = "SAFEEDIT_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Another site allowed to send actions from a browser (e.g. https://lab.example.org).
    #[arg(
        long = "allowed-origin",
        env = "SAFEEDIT_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Listen on a non-loopback address without any sign-in (anyone who reaches the port can
    /// start jobs).
    #[arg(long)]
    pub insecure: bool,
}

impl AccessArgs {
    /// The access rules for a server on `addr`; `Err` for a non-loopback address without a
    /// sign-in unless `--insecure`.
    pub fn access(&self, addr: SocketAddr) -> anyhow::Result<guard::Access> {
        let mut access = guard::Access::for_addr(addr, &self.allowed_hosts);
        access.token = self.auth_token.clone().filter(|t| !t.trim().is_empty());
        access.auth_header = self.auth_header.clone().filter(|h| !h.trim().is_empty());
        access.private = self.private;
        access.allowed_origins = self.allowed_origins.clone();
        if let Some(token) = &access.token {
            anyhow::ensure!(
                token.len() >= 16,
                "--auth-token: use at least 16 characters (e.g. `openssl rand -hex 16`)"
            );
        }
        anyhow::ensure!(
            !access.private || access.signs_in(),
            "--private needs --auth-token or --auth-header (who may read?)"
        );
        if !addr.ip().is_loopback() && !access.signs_in() {
            anyhow::ensure!(
                self.insecure,
                "--addr {addr} is reachable from other machines, and without --auth-token or \
                 --auth-header anyone who reaches it can start jobs; add one (README: \
                 \"Running on a shared server\"), or pass --insecure to allow it"
            );
            tracing::warn!("listening on {addr} without sign-in (--insecure)");
        }
        Ok(access)
    }
}

/// What the API's handlers share: the runs database, the job queue and the folder of the edits'
/// deltas.
#[derive(Clone)]
pub struct WebState {
    /// The runs database.
    pub store: Store,
    /// The job queue.
    pub jobs: Jobs,
    /// Where each edit run's delta is (`{slug}.safetensors`).
    pub deltas: PathBuf,
    /// The loaded model (`GET /api/models`).
    pub model: Arc<ModelSummary>,
    /// Trying prompts on edited models.
    pub tries: Arc<try_api::TryService>,
    /// Who may do what.
    pub access: Arc<guard::Access>,
    /// The paper's classifier's folder, when the server judges with it (else the built-in
    /// judge).
    pub judge_dir: Option<PathBuf>,
}

/// What [`EngineArgs`] load before the runtime starts.
struct Engine {
    catalog: Arc<safeedit_core::browse::Catalog>,
    model_path: PathBuf,
    model: backend::Model,
    preset: safeedit_engine::dinm::DinmConfig,
    summary: ModelSummary,
    data_dir: PathBuf,
}

impl EngineArgs {
    /// Indexes the data and loads the model.
    fn load(&self) -> anyhow::Result<Engine> {
        let started = std::time::Instant::now();
        let catalog = Arc::new(data::catalog(self.safeedit_dir.as_deref())?);
        tracing::info!(
            splits = ?catalog.split_names(),
            seconds = started.elapsed().as_secs_f64(),
            "SafeEdit data indexed"
        );
        let model_path = paths::model_or_default(self.model.clone())?;
        let model = backend::load_as(
            &model_path,
            self.dtype,
            &mut crate::cli::progress::Bars::new(),
        )?;
        tracing::info!(
            model = %model.name,
            backend = backend::NAME,
            weights = self.dtype.as_str(),
            "model loaded"
        );
        let preset =
            safeedit_engine::dinm::DinmConfig::preset_for(&model.name, &model.architecture);
        let mut summary = model.summary(backend::NAME);
        summary.preset = Some(safeedit_core::EditPreset {
            name: preset.preset.clone(),
            lr: preset.lr,
            steps: preset.num_steps,
            max_new_tokens: preset.max_output_length,
        });
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(paths::default_data_dir);
        Ok(Engine {
            catalog,
            model_path,
            model,
            preset,
            summary,
            data_dir,
        })
    }
}

impl Engine {
    /// What the model threads need, with the runs database open (inside the runtime).
    fn context(self, args: &EngineArgs, store: &Store) -> ModelContext {
        let data_dir = &self.data_dir;
        let worker = Worker {
            catalog: self.catalog.clone(),
            safeedit_dir: args.safeedit_dir.clone(),
            preset: self.preset,
            n_layers: self.model.config.n_layers,
            judge_dir: args.judge_dir.clone(),
            dtype: args.dtype,
            delta_dir: data_dir.join("deltas"),
            job_dir: data_dir.join("jobs"),
            models: safeedit_pipeline::models::ModelsDir(data_dir.join("models")),
            database: Database {
                data_dir: Some(data_dir.clone()),
                url: args.database_url.clone(),
                unlisted: false,
            },
        };
        ModelContext {
            model: Arc::new(self.model),
            model_checksum: model_checksum(&self.model_path),
            model_path: self.model_path,
            worker,
            store: store.clone(),
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

/// Runs the server until Ctrl-C.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let bundle = args
        .site_root
        .join("pkg")
        .join(format!("{}.js", app::OUTPUT_NAME));
    if !bundle.is_file() {
        anyhow::bail!(
            "the site bundle {} is missing; build it with scripts/build-site.sh or pass --site-root",
            bundle.display()
        );
    }
    let access = Arc::new(args.access.access(args.addr)?);
    let engine = args.engine.load()?;
    let catalog = engine.catalog.clone();
    let summary = engine.summary.clone();
    let data_dir = engine.data_dir.clone();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let url = args.engine.database_url.as_deref();
        let store = Store::open(url, &data_dir).await?;
        let deltas = data_dir.join("deltas");
        let ctx = engine.context(&args.engine, &store);
        let tries = Arc::new(try_api::TryService::new(
            ctx.model.clone(),
            args.engine.judge_dir.clone(),
            store.clone(),
            deltas.clone(),
            ctx.worker.models.clone(),
        ));
        // The task queue lives beside the runs database: on its Postgres server, or in the data
        // folder.
        let jobs = Jobs::start(ctx, url, &data_dir, Workers::Embedded(args.workers)).await?;
        if args.workers == 0 {
            tracing::info!(
                "--workers 0: jobs wait for `safeedit worker` processes on this database"
            );
        }
        let state = WebState {
            store,
            jobs,
            deltas,
            model: Arc::new(summary.clone()),
            tries,
            access,
            judge_dir: args.engine.judge_dir.clone(),
        };
        let options = LeptosOptions::builder()
            .output_name(app::OUTPUT_NAME)
            .site_root(args.site_root.display().to_string())
            // Versioned: the bundle's paths change with its content (long-lived caching).
            .site_pkg_dir(assets::pkg_dir(&args.site_root))
            .site_addr(args.addr)
            .env(Env::PROD)
            .build();
        let app_state = app::ssr::AppState {
            leptos_options: options,
            engine: Arc::new(ModelInfo(summary)),
            catalog,
            runs: Arc::new(RunService(state.clone())),
        };
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        tracing::info!("SafeEdit Studio listening on http://{}", args.addr);
        let jobs = state.jobs.clone();
        listen::serve(
            listener,
            router(state, app_state),
            listen::Timeouts::default(),
            stopped(),
        )
        .await;
        // The running job stops at its next check; the next start takes it and the queued
        // ones up again.
        jobs.shutdown();
        Ok(())
    })
}

/// `safeedit worker`: runs jobs from the queue of its model, one at a time, until Ctrl-C or
/// SIGTERM (the job under way then goes back to the queue for the next worker).
pub fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let engine = args.engine.load()?;
    let data_dir = engine.data_dir.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let url = args.engine.database_url.as_deref();
        let store = Store::open(url, &data_dir).await?;
        let model = engine.summary.name.clone();
        let ctx = engine.context(&args.engine, &store);
        let jobs = Jobs::start(ctx, url, &data_dir, Workers::Process).await?;
        tracing::info!(
            worker = %jobs.worker_names().join(","),
            %model,
            database = %url.map_or_else(
                || data_dir.join("runs.sqlite").display().to_string(),
                safeedit_store::redact_url,
            ),
            "worker waiting for jobs"
        );
        stopped().await;
        tracing::info!("stopping: the job under way goes back to the queue");
        jobs.shutdown();
        jobs.release().await;
        Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM (how service managers and `kill` stop a process).
async fn stopped() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
