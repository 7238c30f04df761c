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
mod guard;
mod job_api;
mod jobs;
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
use jobs::{Jobs, ModelContext};
use leptos::config::{Env, LeptosOptions};
use safeedit_core::ModelSummary;
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
    /// The built site (scripts/build-site.sh writes it): `pkg/` with the wasm bundle and CSS.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// Who may do what on a shared server.
    #[command(flatten)]
    pub access: AccessArgs,
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
    let started = std::time::Instant::now();
    let catalog = Arc::new(data::catalog(args.safeedit_dir.as_deref())?);
    tracing::info!(
        splits = ?catalog.split_names(),
        seconds = started.elapsed().as_secs_f64(),
        "SafeEdit data indexed"
    );
    let model_path = paths::model_or_default(args.model)?;
    let model = backend::load(&model_path, &mut crate::cli::progress::Bars::new())?;
    tracing::info!(model = %model.name, backend = backend::NAME, "model loaded");
    let preset = safeedit_engine::dinm::DinmConfig::preset_for(&model.name, &model.architecture);
    let mut summary = model.summary(backend::NAME);
    summary.preset = Some(safeedit_core::EditPreset {
        name: preset.preset.clone(),
        lr: preset.lr,
        steps: preset.num_steps,
        max_new_tokens: preset.max_output_length,
    });
    let n_layers = model.config.n_layers;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(paths::default_data_dir);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = Store::open(args.database_url.as_deref(), &data_dir).await?;
        let deltas = data_dir.join("deltas");
        let worker = Worker {
            catalog: catalog.clone(),
            safeedit_dir: args.safeedit_dir.clone(),
            preset,
            n_layers,
            judge_dir: args.judge_dir.clone(),
            delta_dir: deltas.clone(),
            job_dir: data_dir.join("jobs"),
            models: safeedit_pipeline::models::ModelsDir(data_dir.join("models")),
            database: Database {
                data_dir: Some(data_dir.clone()),
                url: args.database_url.clone(),
                unlisted: false,
            },
        };
        let model = Arc::new(model);
        let tries = Arc::new(try_api::TryService::new(
            model.clone(),
            args.judge_dir.clone(),
            store.clone(),
            deltas.clone(),
            worker.models.clone(),
        ));
        let ctx = ModelContext {
            model,
            model_checksum: model_checksum(&model_path),
            model_path: model_path.clone(),
            worker,
            store: store.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        // The task queue lives beside the runs database: on its Postgres server, or in the data
        // folder.
        let jobs = Jobs::start(ctx, args.database_url.as_deref(), &data_dir).await?;
        let state = WebState {
            store,
            jobs,
            deltas,
            model: Arc::new(summary.clone()),
            tries,
            access,
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
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await;
        // The running job stops at its next check; the next start takes it and the queued
        // ones up again.
        jobs.shutdown();
        Ok(())
    })
}
