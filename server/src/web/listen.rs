//! The HTTP server loop: hyper with timeouts, so that clients that connect and never finish a
//! request (or sit idle on a kept-alive connection) cannot hold the server's connections.
//!
//! - A request's header must arrive within [`Timeouts::header`], counted from the moment the
//!   server waits for it: also the most a kept-alive connection stays open idle between requests.
//! - Its body must arrive within [`Timeouts::body`] (a 408 otherwise).
//! - Responses are never cut: a job's event stream runs as long as the job.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// How long the server waits for a client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For a request's header, and between two requests on one connection.
    pub header: Duration,
    /// For a request's body.
    pub body: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header: Duration::from_secs(20),
            body: Duration::from_secs(60),
        }
    }
}

/// How long open connections (a job's event stream, say) get to finish after a shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// for a few seconds.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let router = router.layer(RequestBodyTimeoutLayer::new(timeouts.body));
    // HTTP/1.1 only (a reverse proxy in front speaks HTTP/2 and TLS): its header timeout also
    // covers a connection that sends nothing at all.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection closed: {e}");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {}
    }
}
