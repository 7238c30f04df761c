//! `safeedit serve`: the Leptos app on axum, with the engine behind its server functions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use app::ssr::{AppState, Engine};
use app::{App, OUTPUT_NAME, shell};
use axum::Router;
use clap::Args;
use leptos::config::{Env, LeptosOptions};
use leptos_axum::{LeptosRoutes, generate_route_list};
use safeedit_core::ModelSummary;
use safeedit_engine::LanguageModel;

use crate::{backend, paths};

/// Arguments of `safeedit serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SAFEEDIT_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Model: a .gguf file, a Hugging Face directory, or `tiny` [default: the small model].
    #[arg(long, env = "SAFEEDIT_MODEL")]
    pub model: Option<PathBuf>,
    /// The built site (scripts/build-site.sh writes it): `pkg/` with the wasm bundle and CSS.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
}

/// The engine as the web layer sees it: one loaded model.
struct LocalEngine {
    model: Mutex<LanguageModel<backend::Backend>>,
}

impl Engine for LocalEngine {
    fn model_summary(&self) -> ModelSummary {
        let model = self
            .model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        model.summary(backend::NAME)
    }
}

/// Runs the server until Ctrl-C.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let bundle = args.site_root.join("pkg").join(format!("{OUTPUT_NAME}.js"));
    if !bundle.is_file() {
        anyhow::bail!(
            "the site bundle {} is missing; build it with scripts/build-site.sh or pass --site-root",
            bundle.display()
        );
    }
    let model_path = paths::model_or_default(args.model)?;
    let model = backend::load(&model_path, true)?;
    tracing::info!(model = %model.name, backend = backend::NAME, "model loaded");
    let engine: Arc<dyn Engine> = Arc::new(LocalEngine {
        model: Mutex::new(model),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let options = LeptosOptions::builder()
            .output_name(OUTPUT_NAME)
            .site_root(args.site_root.display().to_string())
            .site_pkg_dir("pkg")
            .site_addr(args.addr)
            .env(Env::PROD)
            .build();
        let state = AppState {
            leptos_options: options.clone(),
            engine,
        };
        let routes = generate_route_list(App);
        let router = Router::new()
            .leptos_routes(&state, routes, {
                let options = options.clone();
                move || shell(options.clone())
            })
            .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        tracing::info!("SafeEdit Studio listening on http://{}", args.addr);
        axum::serve(listener, router.into_make_service())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}
