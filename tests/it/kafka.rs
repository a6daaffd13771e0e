//! The pipeline against a real Kafka-protocol broker: librdkafka's mock
//! cluster, over TCP.

use driftwatch::config::Config;
use driftwatch::tools::demo::{self, DemoOptions};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_the_mock_cluster_publishes_findings() {
    let opts = DemoOptions {
        duration: Duration::from_secs(4),
        workers: 300,
        rate: 100,
        partitions: 2,
    };
    let mut out = Vec::new();
    let stats = demo::run(Arc::new(Config::default_config()), opts, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("embedded Kafka-protocol broker"), "{text}");
    assert!(stats.events.load(Ordering::Relaxed) > 900, "{text}");
    assert_eq!(stats.dead_letters.load(Ordering::Relaxed), 0);
    assert!(stats.findings.load(Ordering::Relaxed) > 0, "{text}");
    assert!(text.contains("latest opened findings"), "{text}");
}
