//! The admin router answers without a socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use driftwatch::admin::router;
use driftwatch::pipeline::LiveStats;
use std::sync::Arc;
use tower::ServiceExt;

async fn get(stats: &Arc<LiveStats>, path: &str) -> (StatusCode, String) {
    let resp = router(stats.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let stats = Arc::new(LiveStats::default());
    assert_eq!(get(&stats, "/healthz").await.0, StatusCode::OK);

    let (status, body) = get(&stats, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no partitions assigned"), "{body}");

    let m = &stats.metrics;
    m.partitions_assigned.set(2);
    m.partitions_restoring.set(1);
    let (status, body) = get(&stats, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("restoring"), "{body}");
    m.partitions_restoring.set(0);
    assert_eq!(get(&stats, "/readyz").await.0, StatusCode::OK);

    m.events_consumed
        .with_label_values(&["hr.worker-events"])
        .inc_by(3);
    m.decode_failures
        .with_label_values(&["malformed_json"])
        .inc();
    m.processing_latency.observe(0.004);
    let (status, body) = get(&stats, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "driftwatch_events_consumed_total{topic=\"hr.worker-events\"} 3",
        "driftwatch_decode_failures_total{error_type=\"malformed_json\"} 1",
        "driftwatch_processing_latency_seconds_bucket{le=\"0.005\"} 1",
        "driftwatch_partitions_assigned 2",
        "driftwatch_ready 1",
    ] {
        assert!(body.contains(line), "{line} not in\n{body}");
    }

    stats
        .brokers_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (status, body) = get(&stats, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("brokers"), "{body}");
    stats
        .failed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        get(&stats, "/healthz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&stats, "/nowhere").await.0, StatusCode::NOT_FOUND);
}
