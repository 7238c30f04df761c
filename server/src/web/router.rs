//! Every route of the server: the Leptos pages and server functions, and the `/api` downloads
//! and event stream, with their state passed through axum's `State`.

use axum::routing::{delete, get, post};
use axum::{Router, middleware};
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;

use super::{WebState, assets, events, figures, files, flags, guard, job_api, judge, try_api};
use app::ssr::AppState;
use app::{App, shell};

/// The `/api` routes that are not server functions: the jobs' JSON API and event stream,
/// downloads, figure exports.
pub fn api_router(state: WebState) -> Router {
    Router::new()
        .route("/api/jobs", post(job_api::submit))
        .route("/api/jobs/{id}", get(job_api::info))
        .route("/api/jobs/{id}/cancel", post(job_api::cancel))
        .route("/api/jobs/{id}/events", get(events::job_events))
        .route("/api/models", get(job_api::models))
        .route("/api/try", post(try_api::try_prompt))
        .route("/api/try/stream", get(try_api::try_stream))
        .route("/api/models/{name}", get(job_api::model))
        .route("/api/runs/{slug}/figures/{file}", get(figures::run_figure))
        .route("/api/runs/{slug}/{file}", get(files::run_file))
        .route("/api/judge", get(judge::page))
        .route("/api/evals/{slug}/flags", get(flags::list).post(flags::set))
        .route(
            "/api/evals/{slug}/flags/{instance}/{kind}",
            delete(flags::clear),
        )
        .route("/api/evals/{slug}/{file}", get(files::eval_file))
        .route("/api/results.csv", get(files::results_csv))
        .route("/api/results.tex", get(files::results_tex))
        .route("/api/results/figures/{file}", get(figures::results_figure))
        .route(
            "/api/mechanisms/{slug}/figures/{file}",
            get(figures::analysis_figure),
        )
        .route("/api/mechanisms/{slug}/{file}", get(files::analysis_file))
        .route("/api/test-all.tex", get(files::test_all_tex))
        .route("/api/test-all.csv", get(files::test_all_csv))
        .route("/api/test-all/{slug}/{file}", get(files::test_all_file))
        .with_state(state)
}

/// The largest request body accepted (413 above it): job specifications, prompts and queries
/// are a few kilobytes.
pub const MAX_BODY: usize = 1 << 20;

/// The whole server: pages (server-rendered, hydrated), server functions, static files and the
/// API.
pub fn router(state: WebState, app: AppState) -> Router {
    let routes = generate_route_list(App);
    let options = app.leptos_options.clone();
    let access = state.access.clone();
    let bundle = assets::Bundle {
        dir: std::path::Path::new(options.site_root.as_ref()).join("pkg"),
        version: options
            .site_pkg_dir
            .strip_prefix("pkg/")
            .unwrap_or_default()
            .to_string(),
    };
    let versioned = Router::new()
        .route("/pkg/{version}/{file}", get(assets::versioned))
        .with_state(bundle);
    let sign_in = Router::new()
        .route("/login", get(guard::login_form).post(guard::login))
        .route("/logout", post(guard::logout))
        .with_state(access.clone());
    Router::new()
        .leptos_routes(&app, routes, move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .with_state(app)
        .merge(api_router(state))
        .merge(versioned)
        .merge(sign_in)
        .layer(middleware::from_fn_with_state(access, guard::guard))
        .layer(middleware::from_fn(guard::security_headers))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        // Pages, scripts, styles, the WebAssembly and JSON/CSV/LaTeX downloads go out compressed
        // (brotli or gzip, as the client accepts); event streams and images are left alone
        // (tower-http's default predicate), so progress still arrives as it happens.
        .layer(CompressionLayer::new())
}
