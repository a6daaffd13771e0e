//! The admin HTTP port: `/metrics` (Prometheus text format), `/healthz`
//! (the process is alive and not failing) and `/readyz` (partitions
//! assigned and restored, brokers reachable), and read-only queries of the
//! live state: `/v1/workers/{id}` and `/v1/findings?status=&rule=&severity=
//! &worker_id=&limit=`. Bound to 127.0.0.1 unless the config says otherwise.

use crate::event::Key;
use crate::pipeline::LiveStats;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
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
        .route("/v1/workers/:id", get(worker))
        .route("/v1/findings", get(findings))
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

async fn worker(State(stats): State<Arc<LiveStats>>, Path(id): Path<String>) -> impl IntoResponse {
    let key = Key::worker(&id);
    let stores: Vec<(i32, Arc<crate::state::Store>)> = stats
        .stores
        .read()
        .expect("stores lock")
        .iter()
        .map(|(p, s)| (*p, s.clone()))
        .collect();
    for (partition, store) in stores {
        if let Some(st) = store.map().get(&key) {
            let view = crate::query::worker_view(&key, &st);
            return (
                StatusCode::OK,
                Json(serde_json::json!({ "worker_id": id, "partition": partition, "state": view })),
            );
        }
    }
    (
        StatusCode::NOT_FOUND,
        Json(
            serde_json::json!({ "error": format!("worker `{id}` is not in the state of this instance's partitions") }),
        ),
    )
}

async fn findings(
    State(stats): State<Arc<LiveStats>>,
    Query(filter): Query<crate::query::FindingFilter>,
) -> impl IntoResponse {
    let stores: Vec<Arc<crate::state::Store>> = stats
        .stores
        .read()
        .expect("stores lock")
        .values()
        .cloned()
        .collect();
    let mut out = Vec::new();
    let mut truncated = false;
    for store in stores {
        if crate::query::open_findings(&store, &filter, &mut out) {
            truncated = true;
            break;
        }
    }
    Json(serde_json::json!({ "count": out.len(), "truncated": truncated, "findings": out }))
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
