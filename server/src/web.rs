//! `safeedit serve`: the Leptos app on axum, with the engine behind its server functions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use app::ssr::{AppState, Engine};
use app::{App, OUTPUT_NAME, shell};
use axum::Router;
use axum::response::IntoResponse;
use clap::Args;
use leptos::config::{Env, LeptosOptions};
use leptos_axum::{LeptosRoutes, generate_route_list};
use safeedit_core::ModelSummary;
use safeedit_engine::LanguageModel;

use crate::{backend, data, paths};

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

/// Server functions answer every error with 500; input that does not parse is the client's
/// fault, so those become 400 (the body keeps the message naming the field).
async fn client_errors_are_4xx(response: axum::response::Response) -> axum::response::Response {
    use axum::body::Body;
    use axum::http::StatusCode;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key("serverfnerror")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading an error body: {e}"),
            )
                .into_response();
        }
    };
    let client_side = ["Args|", "MissingArg|", "Deserialization|"]
        .iter()
        .any(|p| bytes.starts_with(p.as_bytes()));
    if client_side {
        parts.status = StatusCode::BAD_REQUEST;
    }
    axum::response::Response::from_parts(parts, Body::from(bytes))
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
    let started = std::time::Instant::now();
    let catalog = Arc::new(data::catalog(args.safeedit_dir.as_deref())?);
    tracing::info!(
        splits = ?catalog.split_names(),
        seconds = started.elapsed().as_secs_f64(),
        "SafeEdit data indexed"
    );
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
            catalog,
        };
        let routes = generate_route_list(App);
        let router = Router::new()
            .leptos_routes(&state, routes, {
                let options = options.clone();
                move || shell(options.clone())
            })
            .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
            .layer(axum::middleware::map_response(client_errors_are_4xx))
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
