//! The admin HTTP port: `/metrics` (Prometheus text format), `/healthz`
//! (the process is alive and not failing) and `/readyz` (partitions
//! assigned and restored, brokers reachable), and read-only queries of the
//! live state: `/v1/workers/{id}` and `/v1/findings?status=&rule=&severity=
//! &worker_id=&limit=&after=` (an unknown parameter or value is a 400 that
//! names it and the values allowed; a page holds at most 1,000 findings in
//! finding_id order, and `next` is the query of the page after). Bound to
//! 127.0.0.1 unless the config says otherwise. The `/v1` queries serve
//! identity data: beyond loopback they need `admin.token` as a bearer token
//! (compared in constant time), and without a token they are closed there;
//! `/metrics`, `/healthz` and `/readyz` stay open for probes and scrapers.

use super::live::LiveStats;
use super::query::percent_encode;
use crate::model::event::Key;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Who may read the `/v1` queries, which serve identity data (names,
/// emails, departments and access of real people).
#[derive(Debug, Clone)]
pub enum Access {
    /// Anyone who reaches the port: the port listens on loopback only.
    Loopback,
    /// Callers with `Authorization: Bearer <token>`.
    Token(crate::config::AdminToken),
    /// Nobody: the port listens beyond loopback and no token is set.
    Closed,
}

impl Access {
    /// What the configuration allows: a token if one is set; without one,
    /// loopback only.
    pub fn of(cfg: &crate::config::Config) -> Access {
        match (&cfg.admin_token, cfg.admin_listen) {
            (Some(t), _) => Access::Token(t.clone()),
            (None, Some(addr)) if !addr.ip().is_loopback() => Access::Closed,
            (None, _) => Access::Loopback,
        }
    }
}

/// The admin routes over the pipeline's counters. `/metrics`, `/healthz`
/// and `/readyz` are open; the `/v1` queries need what `access` says.
pub fn router(stats: Arc<LiveStats>, access: Access) -> Router {
    let queries = Router::new()
        .route("/v1/workers/:id", get(worker))
        .route("/v1/findings", get(findings))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(access),
            authorize,
        ));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(queries)
        .with_state(stats)
}

async fn authorize(
    State(access): State<Arc<Access>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let refuse = |status: StatusCode, error: &str| {
        let mut r = (status, Json(serde_json::json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"driftwatch\""),
            );
        }
        r
    };
    match &*access {
        Access::Loopback => next.run(request).await,
        Access::Closed => refuse(
            StatusCode::FORBIDDEN,
            "the /v1 queries serve identity data and this port listens beyond loopback: set admin.token (or DRIFTWATCH_ADMIN__TOKEN) and send it as a bearer token, or listen on 127.0.0.1",
        ),
        Access::Token(token) => {
            // The scheme is case-insensitive (RFC 7235).
            let given = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token);
            match given {
                Some(t) if token.matches(t.trim()) => next.run(request).await,
                Some(_) => refuse(StatusCode::UNAUTHORIZED, "wrong bearer token"),
                None => refuse(
                    StatusCode::UNAUTHORIZED,
                    "the /v1 queries need `Authorization: Bearer <admin.token>`",
                ),
            }
        }
    }
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
    let stores: Vec<(i32, Arc<crate::detect::state::Store>)> = stats
        .stores
        .read()
        .expect("stores lock")
        .iter()
        .map(|(p, s)| (*p, s.clone()))
        .collect();
    for (partition, store) in stores {
        if let Some(view) = store.with_state(&key, |st| crate::ops::query::worker_view(&key, st)) {
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
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    let query = query.unwrap_or_default();
    let params: Vec<(String, String)> = match serde_urlencoded_pairs(&query) {
        Some(p) => p,
        None => {
            return bad_request(crate::ops::query::BadParameter {
                parameter: "(query string)".into(),
                problem: "is not application/x-www-form-urlencoded".into(),
                allowed: Vec::new(),
            })
        }
    };
    let filter = match crate::ops::query::FindingFilter::from_params(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let stores: Vec<Arc<crate::detect::state::Store>> = stats
        .stores
        .read()
        .expect("stores lock")
        .values()
        .cloned()
        .collect();
    let (out, truncated) = crate::ops::query::open_findings(stores.iter().map(|s| &**s), &filter);
    // The next page: the same query, after the last finding returned.
    let next = match (truncated, out.last()) {
        (true, Some(last)) => {
            let mut pairs: Vec<(String, String)> =
                params.into_iter().filter(|(k, _)| k != "after").collect();
            pairs.push(("after".into(), last.finding_id.clone()));
            let q: String = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            serde_json::Value::String(format!("/v1/findings?{q}"))
        }
        _ => serde_json::Value::Null,
    };
    Json(serde_json::json!({
        "count": out.len(),
        "truncated": truncated,
        "next": next,
        "findings": out,
    }))
    .into_response()
}

fn bad_request(e: crate::ops::query::BadParameter) -> axum::response::Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({
            "error": e.to_string(),
            "parameter": e.parameter,
            "allowed": e.allowed,
        })),
    )
        .into_response()
}

/// The pairs of a query string, percent-decoded; `None` when it is not
/// valid form encoding.
fn serde_urlencoded_pairs(query: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Some(out)
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The admin routes, for the log line that says where they are.
pub const ROUTES: &str =
    "/metrics /healthz /readyz /v1/workers/{worker_id} /v1/findings?status=&rule=&severity=&worker_id=&limit=&after=";

/// Binds the admin port. A port already in use is an error here, at
/// start, not a log line while the detector runs on without its metrics.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("admin port {addr}: {e}; set admin.listen to a free port (or `off`)"),
        )
    })
}

/// Serves the admin routes on a bound listener until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stats: Arc<LiveStats>,
    access: Access,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let v1 = match &access {
        Access::Loopback => "/v1 open on loopback",
        Access::Token(_) => "/v1 needs the bearer token",
        Access::Closed => "/v1 closed: listening beyond loopback with no admin.token",
    };
    match access {
        Access::Closed => tracing::warn!("admin port http://{addr}: {ROUTES}; {v1}"),
        _ => tracing::info!("admin port http://{addr}: {ROUTES}; {v1}"),
    }
    axum::serve(listener, router(stats, access))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}
