//! The admin HTTP port: `/metrics` (Prometheus text format), `/healthz`
//! (the process is alive and not failing) and `/readyz` (partitions
//! assigned and restored, brokers reachable). Bound to 127.0.0.1 unless the
//! config says otherwise.

use crate::pipeline::LiveStats;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The admin routes over the pipeline's counters.
pub fn router(stats: Arc<LiveStats>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(stats)
}

async fn metrics(State(stats): State<Arc<LiveStats>>) -> impl IntoResponse {
    // Refreshes the driftwatch_ready gauge.
    let _ = stats.readiness();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        stats.metrics.render(),
    )
}

async fn healthz(State(stats): State<Arc<LiveStats>>) -> impl IntoResponse {
    if stats.failed.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "failing\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn readyz(State(stats): State<Arc<LiveStats>>) -> impl IntoResponse {
    match stats.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Serves the admin routes on `addr` until `shutdown` turns true.
pub async fn serve(
    addr: SocketAddr,
    stats: Arc<LiveStats>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin port: /metrics /healthz /readyz");
    axum::serve(listener, router(stats))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}
