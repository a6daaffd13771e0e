//! `driftwatch bench`, the load harness, on a small input against both
//! brokers: every phase runs and reports what it measured. No rate or time
//! is asserted (these machines are shared and noisy); the counts are, and
//! the order of the latency percentiles.

use crate::harness::Broker;
use std::process::Command;

const EVENTS: u64 = 4_000;

fn bench(extra: &[&str]) -> String {
    let events = EVENTS.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["bench", "--partitions", "2", "--events", &events])
        .args(["--rate", "500", "--latency-secs", "3"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The line of the report starting with `label`.
fn line<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{report}"))
}

/// The number just before `unit` in `text` (the last such).
fn before(text: &str, unit: &str) -> f64 {
    let head = &text[..text
        .rfind(unit)
        .unwrap_or_else(|| panic!("no `{unit}` in `{text}`"))];
    let word = head.trim_end().rsplit([' ', '(']).next().unwrap();
    word.parse()
        .unwrap_or_else(|e| panic!("`{word}` before `{unit}` in `{text}`: {e}"))
}

/// What every run reports, whatever the broker.
fn check_report(report: &str) {
    let n = EVENTS as f64;
    assert_eq!(before(line(report, "produced"), "events in"), n);
    assert!(before(line(report, "raw librdkafka consume:"), "msgs/s") > 0.0);

    let detector = line(report, "detector:");
    assert_eq!(before(detector, "events in"), n, "{detector}");
    assert!(before(detector, "events/s") > 0.0, "{detector}");
    // Reported as a whole number (the first events of the generated stream
    // are the organisation's hires, with no drift yet: it may be 0 here).
    let transitions = before(detector, "finding transitions");
    assert_eq!(transitions.fract(), 0.0, "{detector}");

    // Everything was committed before the restart, so the restore applies
    // every input event again.
    let restore = line(report, "restore:");
    assert_eq!(before(restore, "events in"), n, "{restore}");
    assert!(before(restore, "events/s") > 0.0, "{restore}");

    let latency = line(report, "latency at 500 events/s offered");
    assert!(before(latency, "findings)") > 0.0, "{latency}");
    let p50 = before(latency, "ms, p99 ");
    let p99 = before(latency, "ms, p99.9");
    let p999 = before(latency, "ms, max");
    let max = before(latency, "ms");
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{latency}"
    );
}

#[test]
fn the_load_harness_measures_every_phase_on_the_mock_cluster() {
    let report = bench(&["--memory-workers", "20000"]);
    check_report(&report);
    assert!(line(&report, "broker:").contains("mock cluster"));
    // Both shapes of the memory phase, each a positive size per worker.
    let memory: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("memory: 20000 workers"))
        .collect();
    assert_eq!(memory.len(), 2, "{report}");
    for l in memory {
        assert!(before(l, "bytes per worker") > 0.0, "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Tansu broker (scripts/test.sh starts it and runs these)"]
async fn the_load_harness_measures_every_phase_on_tansu() {
    let broker = Broker::tansu();
    let _turn = crate::harness::TANSU_TURN.lock().await;
    let bootstrap = broker.bootstrap();
    let report = tokio::task::spawn_blocking(move || {
        bench(&["--memory-workers", "0", "--bootstrap-servers", &bootstrap])
    })
    .await
    .unwrap();
    check_report(&report);
    assert!(!report.contains("memory:"), "{report}");
}
