//! Prometheus metrics in one private registry. Names follow the Prometheus
//! conventions (`_total` counters, base units); labels are bounded: topic,
//! partition, rule, severity, status, owner role, error type, and teams
//! named in the configuration (any other team is `other`). Never a worker
//! id.
//!
//! The `driftwatch_owner_*` metrics show how each contributing owner
//! performs against its remediation deadlines: [`OwnerBook`] keeps one
//! partition task's share of them.

mod owner;

pub use owner::{OwnerBook, TeamLabels, OTHER_TEAM};

use crate::model::finding::{Finding, Severity, Status};
use crate::model::rule::Rule;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
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
    pub records_misplaced: IntCounterVec,
    pub records_moved: IntCounterVec,
    pub routed_waiting: IntGaugeVec,
    pub producer_queue: IntGauge,
    pub partitions_assigned: IntGauge,
    pub partitions_restoring: IntGauge,
    pub restore_events: IntCounter,
    pub restores: IntCounterVec,
    pub restore_seconds: HistogramVec,
    pub state_keys_restored: IntCounter,
    pub state_records_written: IntCounter,
    pub state_records_read: IntCounter,
    pub state_bytes_read: IntCounter,
    pub input_deleted_unread: IntCounterVec,
    pub ready: Gauge,
    pub owner_open: IntGaugeVec,
    pub owner_overdue: IntGaugeVec,
    pub owner_resolved: IntCounterVec,
    pub owner_time_to_resolve: HistogramVec,
}

/// Labels of the `driftwatch_owner_*` metrics.
const OWNER_LABELS: &[&str] = &["role", "team", "rule"];

/// Buckets of `driftwatch_owner_time_to_resolve_seconds`: 1h to 30d, with
/// the default remediation deadlines (CRITICAL 4h, HIGH 24h, MEDIUM 72h,
/// LOW 7d) among the bounds.
pub const TIME_TO_RESOLVE_BUCKETS: &[f64] = &[
    3_600.0,     // 1h
    14_400.0,    // 4h
    28_800.0,    // 8h
    86_400.0,    // 1d
    172_800.0,   // 2d
    259_200.0,   // 3d
    604_800.0,   // 7d
    1_209_600.0, // 14d
    2_592_000.0, // 30d
];

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
        let owner_time_to_resolve = HistogramVec::new(
            HistogramOpts::new(
                "driftwatch_owner_time_to_resolve_seconds",
                "Findings resolved, by contributing owner role and team and by rule: from detected_at to the RESOLVED transition, in event time.",
            )
            .buckets(TIME_TO_RESOLVE_BUCKETS.to_vec()),
            OWNER_LABELS,
        )
        .expect("valid metric");
        r.register(Box::new(owner_time_to_resolve.clone()))
            .expect("unique metric");
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
            records_misplaced: counter_vec(
                &r,
                "driftwatch_input_records_misplaced_total",
                "Input records found in another partition than the one kafka.partitioner gives their payload's correlation key (their producer keyed or partitioned them otherwise), by topic: the join sees them apart from the rest of their worker's events.",
                &["topic"],
            ),
            records_moved: counter_vec(
                &r,
                "driftwatch_input_records_moved_total",
                "Input records found in another partition than the one kafka.partitioner gives their payload's correlation key and moved there through the repartition topic (kafka.route_by = payload), by topic.",
                &["topic"],
            ),
            routed_waiting: gauge_vec(
                &r,
                "driftwatch_routed_events_waiting",
                "Routing by payload: events a partition holds for rounds not every partition has closed yet, by partition; one that stays up while the others' input flows waits for a partition no detector owns.",
                &["partition"],
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
            restores: counter_vec(
                &r,
                "driftwatch_state_restores_total",
                "Partition restores, by where the state came from: changelog (the state topic and the input since its last checkpoint), history (the input from its beginning), or none (nothing committed yet).",
                &["source"],
            ),
            restore_seconds: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "driftwatch_restore_seconds",
                        "Time to restore a partition's state, by source.",
                    )
                    .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
                    &["source"],
                )
                .expect("valid histogram");
                r.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            state_keys_restored: counter(
                &r,
                "driftwatch_state_keys_restored_total",
                "Keys whose state was read from the state changelog.",
            ),
            state_records_written: counter(
                &r,
                "driftwatch_state_records_written_total",
                "Records produced to the state changelog (key states, de-duplication pieces and their deletions, partition records).",
            ),
            state_records_read: counter(
                &r,
                "driftwatch_state_records_read_total",
                "Records read from the state changelog while restoring.",
            ),
            input_deleted_unread: counter_vec(
                &r,
                "driftwatch_input_records_deleted_unread_total",
                "Input records deleted by retention between the offset a partition resumed at and the topic's log start: lost to the state.",
                &["topic"],
            ),
            state_bytes_read: counter(
                &r,
                "driftwatch_state_bytes_read_total",
                "Bytes of keys and values read from the state changelog while restoring.",
            ),
            ready,
            owner_open: gauge_vec(
                &r,
                "driftwatch_owner_findings_open",
                "Findings open or escalated in the partitions this process owns, by contributing owner role and team (a configured team, else other) and by rule.",
                OWNER_LABELS,
            ),
            owner_overdue: gauge_vec(
                &r,
                "driftwatch_owner_findings_overdue",
                "Findings escalated and not resolved (past their remediation deadline in stream time) in the partitions this process owns, by contributing owner role and team and by rule.",
                OWNER_LABELS,
            ),
            owner_resolved: counter_vec(
                &r,
                "driftwatch_owner_findings_resolved_total",
                "RESOLVED transitions acknowledged, by contributing owner role and team, by rule, and whether they came by the remediation deadline.",
                &["role", "team", "rule", "within_deadline"],
            ),
            owner_time_to_resolve,
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

    /// Counts a RESOLVED transition towards its owner's resolutions and
    /// time to resolve; `team` is its label (see [`TeamLabels`]).
    fn owner_resolved(&self, f: &Finding, team: &str) {
        let labels = [f.contributing_owner.role.as_str(), team, f.rule.as_str()];
        let within = f.transitioned_at <= f.remediation_deadline;
        self.owner_resolved
            .with_label_values(&[labels[0], labels[1], labels[2], &within.to_string()])
            .inc();
        let seconds = (f.transitioned_at.millis() - f.detected_at.millis()).max(0) as f64 / 1000.0;
        self.owner_time_to_resolve
            .with_label_values(&labels)
            .observe(seconds);
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
