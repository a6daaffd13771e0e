//! Prometheus metrics in one private registry. Names follow the Prometheus
//! conventions (`_total` counters, base units); labels are bounded: topic,
//! partition, rule, severity, status, owner role, error type. Never a
//! worker id.

use crate::model::finding::{Finding, Severity, Status};
use crate::model::rule::Rule;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the detector exports.
pub struct Metrics {
    registry: Registry,
    pub events_consumed: IntCounterVec,
    pub decode_failures: IntCounterVec,
    pub dead_letters: IntCounter,
    pub findings_published: IntCounterVec,
    pub findings_open: IntGaugeVec,
    pub tracked_workers: IntGaugeVec,
    pub state_entries: IntGaugeVec,
    pub stream_time: GaugeVec,
    pub stream_lag: GaugeVec,
    pub processing_latency: Histogram,
    pub consumer_lag: IntGaugeVec,
    pub rebalances: IntCounter,
    pub merge_forced: IntCounter,
    pub producer_queue: IntGauge,
    pub partitions_assigned: IntGauge,
    pub partitions_restoring: IntGauge,
    pub restore_events: IntCounter,
    pub ready: Gauge,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn fgauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let m = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let m = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let m = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let processing_latency = Histogram::with_opts(
            HistogramOpts::new(
                "driftwatch_processing_latency_seconds",
                "From a message received from Kafka to the findings it caused acknowledged by the broker.",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(processing_latency.clone()))
            .expect("unique metric");
        let ready = Gauge::new(
            "driftwatch_ready",
            "1 when partitions are assigned and restored and the pipeline is healthy.",
        )
        .expect("valid metric");
        r.register(Box::new(ready.clone())).expect("unique metric");
        Metrics {
            events_consumed: counter_vec(
                &r,
                "driftwatch_events_consumed_total",
                "Input messages consumed, by topic (dead letters included).",
                &["topic"],
            ),
            decode_failures: counter_vec(
                &r,
                "driftwatch_decode_failures_total",
                "Input messages that could not be decoded, by error type.",
                &["error_type"],
            ),
            dead_letters: counter(
                &r,
                "driftwatch_dead_letters_total",
                "Messages published to the dead-letter topic and acknowledged.",
            ),
            findings_published: counter_vec(
                &r,
                "driftwatch_findings_published_total",
                "Finding transitions acknowledged on the findings topic.",
                &["rule", "severity", "status", "owner_role"],
            ),
            findings_open: gauge_vec(
                &r,
                "driftwatch_findings_open",
                "Findings open or escalated in the partitions this process owns.",
                &["rule", "severity"],
            ),
            tracked_workers: gauge_vec(
                &r,
                "driftwatch_tracked_workers",
                "Workers (correlated keys) in state, by partition.",
                &["partition"],
            ),
            state_entries: gauge_vec(
                &r,
                "driftwatch_state_entries",
                "Keys in the state store (workers and uncorrelated accounts), by partition.",
                &["partition"],
            ),
            stream_time: fgauge_vec(
                &r,
                "driftwatch_stream_time_seconds",
                "Stream time (event time) of a partition task, Unix seconds.",
                &["partition"],
            ),
            stream_lag: fgauge_vec(
                &r,
                "driftwatch_stream_time_lag_seconds",
                "Wall clock minus stream time, by partition.",
                &["partition"],
            ),
            processing_latency,
            consumer_lag: gauge_vec(
                &r,
                "driftwatch_consumer_lag_messages",
                "Consumer lag from librdkafka statistics, by topic and partition.",
                &["topic", "partition"],
            ),
            rebalances: counter(
                &r,
                "driftwatch_rebalances_total",
                "Partition assignments and revocations seen.",
            ),
            merge_forced: counter(
                &r,
                "driftwatch_merge_forced_total",
                "Episodes in which a partition task stopped waiting for a lagging input topic (kafka.max_task_idle) and applied the other topics without it: event-time order across topics may differ from a replay.",
            ),
            producer_queue: gauge(
                &r,
                "driftwatch_producer_queue_messages",
                "Messages queued in the producer and not yet acknowledged.",
            ),
            partitions_assigned: gauge(
                &r,
                "driftwatch_partitions_assigned",
                "Partition numbers this process owns.",
            ),
            partitions_restoring: gauge(
                &r,
                "driftwatch_partitions_restoring",
                "Partitions whose state is being restored.",
            ),
            restore_events: counter(
                &r,
                "driftwatch_restore_events_total",
                "Events re-applied while restoring partition state.",
            ),
            ready,
            registry: r,
        }
    }

    /// Counts one acknowledged finding transition.
    pub fn finding(&self, f: &Finding) {
        self.findings_published
            .with_label_values(&[
                f.rule.as_str(),
                f.severity.as_str(),
                f.status.as_str(),
                f.contributing_owner.role.as_str(),
            ])
            .inc();
    }

    /// Moves the open-findings gauge by `delta` for one rule and severity.
    pub fn open(&self, rule: Rule, severity: Severity, delta: i64) {
        self.findings_open
            .with_label_values(&[rule.as_str(), severity.as_str()])
            .add(delta);
    }

    /// How a transition moves the number of open findings.
    pub fn open_delta(status: Status) -> i64 {
        match status {
            Status::Open => 1,
            Status::Escalated => 0,
            Status::Resolved => -1,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}
