//! The admin router answers without a socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use driftwatch::kafka::LiveStats;
use driftwatch::ops::admin::router;
use std::sync::Arc;
use tower::ServiceExt;

async fn get(stats: &Arc<LiveStats>, path: &str) -> (StatusCode, String) {
    get_with(stats, driftwatch::ops::admin::Access::Loopback, path, None).await
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

#[tokio::test]
async fn live_state_queries_read_the_stores() {
    use driftwatch::config::Config;
    use driftwatch::detect::engine::Engine;
    use driftwatch::model::event::{Envelope, Origin};
    use driftwatch::model::time::Ts;
    use driftwatch::tools::generate::Generator;

    let mut engine = Engine::new(Arc::new(Config::default_config()));
    let mut g = Generator::new(5, 50, Ts::parse("2026-11-02T08:00:00Z").unwrap());
    let mut events = g.baseline();
    for _ in 0..300 {
        events.extend(g.next_batch(10 * 60_000));
    }
    let mut out = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        let origin = Origin {
            topic: "t".into(),
            partition: 0,
            offset: i as i64,
        };
        engine.apply(Envelope { origin, event }, &mut out);
    }
    let open: Vec<_> = engine.open_findings();
    assert!(!open.is_empty());
    let stats = Arc::new(LiveStats::default());
    stats
        .stores
        .write()
        .unwrap()
        .insert(0, engine.store().clone());

    let (status, body) = get(&stats, "/v1/findings?status=OPEN&limit=5").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert!(!findings.is_empty() && findings.len() <= 5, "{body}");
    assert!(findings.iter().all(|f| f["status"] == "OPEN"));

    let rule = findings[0]["rule"].as_str().unwrap().to_string();
    let (_, body) = get(&stats, &format!("/v1/findings?rule={rule}&limit=1000")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["rule"] == rule.as_str()));
    assert_eq!(v["truncated"], false);

    let (status, body) = get(&stats, "/v1/workers/W000001").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["partition"], 0);
    assert!(!v["state"]["hr"].as_array().unwrap().is_empty(), "{body}");
    assert!(
        !v["state"]["accounts"].as_array().unwrap().is_empty(),
        "{body}"
    );

    assert_eq!(
        get(&stats, "/v1/workers/W999999").await.0,
        StatusCode::NOT_FOUND
    );

    // Pages of two, followed through `next`, give every open finding once,
    // in finding_id order, as one page of all of them does.
    let (_, body) = get(&stats, "/v1/findings").await;
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    let all: Vec<String> = all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["finding_id"].as_str().unwrap().to_string())
        .collect();
    assert!(all.len() > 2, "{body}");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    let mut paged = Vec::new();
    let mut next = Some("/v1/findings?limit=2".to_string());
    while let Some(path) = next.take() {
        let (status, body) = get(&stats, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let page = v["findings"].as_array().unwrap();
        assert!(page.len() <= 2);
        paged.extend(
            page.iter()
                .map(|f| f["finding_id"].as_str().unwrap().to_string()),
        );
        assert_eq!(v["truncated"] == true, v["next"].is_string(), "{body}");
        next = v["next"].as_str().map(str::to_string);
    }
    assert_eq!(paged, all);
}

#[tokio::test]
async fn bad_finding_filters_are_refused_with_what_is_allowed() {
    let stats = Arc::new(LiveStats::default());
    for (query, parameter, allowed) in [
        ("rule=NOPE", "rule", Some("ORPHAN_ACCOUNT")),
        ("status=RESOLVED", "status", Some("ESCALATED")),
        ("severity=urgent", "severity", Some("CRITICAL")),
        ("limit=100000", "limit", None),
        ("limit=0", "limit", None),
        ("stauts=OPEN", "stauts", Some("status")),
    ] {
        let (status, body) = get(&stats, &format!("/v1/findings?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["parameter"], parameter, "{body}");
        assert!(v["error"].as_str().unwrap().contains(parameter), "{body}");
        if let Some(a) = allowed {
            assert!(
                v["allowed"].as_array().unwrap().iter().any(|x| x == a),
                "{body}"
            );
        }
    }
    // The contract's values in any case are understood.
    let (status, body) = get(
        &stats,
        "/v1/findings?status=open&rule=orphan_account&severity=High",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn get_with(
    stats: &Arc<LiveStats>,
    access: driftwatch::ops::admin::Access,
    path: &str,
    bearer: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::get(path);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router(stats.clone(), access)
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn identity_queries_need_the_token_beyond_loopback() {
    use driftwatch::config::Config;
    use driftwatch::ops::admin::Access;
    let stats = Arc::new(LiveStats::default());
    let secret = "0123456789abcdef-token";
    let cfg = Config::from_toml(&format!(
        "[admin]\nlisten = \"0.0.0.0:9464\"\ntoken = \"{secret}\"\n"
    ))
    .unwrap();
    let access = Access::of(&cfg);
    assert!(
        !format!("{cfg:?}").contains(secret),
        "the token never shows in Debug"
    );
    for path in ["/v1/findings", "/v1/workers/W1"] {
        let (status, body) = get_with(&stats, access.clone(), path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        let (status, body) = get_with(
            &stats,
            access.clone(),
            path,
            Some("wrong-token-of-some-length"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert!(!body.contains(secret));
        let (status, _) = get_with(
            &stats,
            access.clone(),
            path,
            Some(&secret[..secret.len() - 1]),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a prefix is not the token"
        );
        let (status, body) = get_with(&stats, access.clone(), path, Some(secret)).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        // The scheme is case-insensitive.
        let resp = router(stats.clone(), access.clone())
            .oneshot(
                Request::get(path)
                    .header("authorization", format!("bearer {secret}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_ne!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_ne!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    // Probes and scrapers need no token.
    for path in ["/metrics", "/healthz"] {
        let (status, _) = get_with(&stats, access.clone(), path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // Beyond loopback with no token: closed, and it says how to open.
    let open = Config::from_toml("[admin]\nlisten = \"0.0.0.0:9464\"\n").unwrap();
    let (status, body) = get_with(&stats, Access::of(&open), "/v1/findings", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("admin.token"), "{body}");
    // On loopback with no token: open.
    let local = Config::from_toml("[admin]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
    let (status, body) = get_with(&stats, Access::of(&local), "/v1/findings", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A token of digits from the environment stays a string, and an error
    // never quotes it.
    let digits = "12345678901234567";
    let (cfg, _) = Config::load_layered(
        None,
        [("DRIFTWATCH_ADMIN__TOKEN".to_string(), digits.to_string())],
    )
    .unwrap();
    assert!(cfg.admin_token.unwrap().matches(digits));
    // Bad escapes in a query are refused.
    let (status, _) = get(&stats, "/v1/findings?rule=%+F").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A short token is refused at start.
    let err = Config::from_toml("[admin]\ntoken = \"short\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin.token"), "{err}");
}
