//! Prometheus metrics in one private registry. Names follow the Prometheus
//! conventions (`_total` counters, base units); labels are bounded: topic,
//! partition, rule, severity, status, owner role, error type, and teams
//! named in the configuration (any other team is `other`). Never a worker
//! id.
//!
//! The `driftwatch_owner_*` metrics show how each contributing owner
//! performs against its remediation deadlines: [`OwnerBook`] keeps one
//! partition task's share of them.

use crate::config::Config;
use crate::model::finding::{Finding, OwnerRole, Severity, Status};
use crate::model::rule::Rule;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

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

/// The `team` label value of a team not named in the configuration.
pub const OTHER_TEAM: &str = "other";

/// The teams the configuration names (`owners.hr`, `owners.it`,
/// `owners.default_app` and every `[apps.*]` team): the only values of a
/// `team` label, so that its cardinality stays bounded whatever a finding
/// carries.
#[derive(Debug, Clone, Default)]
pub struct TeamLabels {
    teams: BTreeSet<Arc<str>>,
}

impl TeamLabels {
    pub fn of(cfg: &Config) -> TeamLabels {
        let mut teams: BTreeSet<Arc<str>> = BTreeSet::new();
        for t in [&cfg.hr, &cfg.it, &cfg.default_app] {
            teams.insert(t.team.clone());
        }
        teams.extend(cfg.apps.values().map(|a| a.owner.team.clone()));
        TeamLabels { teams }
    }

    /// The label of `team`: itself when configured, else [`OTHER_TEAM`].
    pub fn label(&self, team: &str) -> Arc<str> {
        self.teams
            .get(team)
            .cloned()
            .unwrap_or_else(|| Arc::from(OTHER_TEAM))
    }
}

/// A finding counted in the owner gauges.
struct Counted {
    role: OwnerRole,
    team: Arc<str>,
    rule: Rule,
    overdue: bool,
}

impl Counted {
    fn move_gauges(&self, m: &Metrics, open: i64, overdue: i64) {
        let labels = [self.role.as_str(), &*self.team, self.rule.as_str()];
        if open != 0 {
            m.owner_open.with_label_values(&labels).add(open);
        }
        if overdue != 0 {
            m.owner_overdue.with_label_values(&labels).add(overdue);
        }
    }
}

/// One partition task's share of the `driftwatch_owner_*` metrics: the
/// findings open and overdue in its partition, by finding_id, so that a
/// transition moves the gauges once whatever came before it (a finding
/// restored open, a storm finding the restore does not list). Dropping it
/// takes the partition's share of the gauges back: they belong to its
/// next owner.
pub struct OwnerBook<'m> {
    metrics: &'m Metrics,
    teams: TeamLabels,
    open: HashMap<String, Counted>,
}

impl<'m> OwnerBook<'m> {
    pub fn new(metrics: &'m Metrics, teams: TeamLabels) -> OwnerBook<'m> {
        OwnerBook {
            metrics,
            teams,
            open: HashMap::new(),
        }
    }

    /// Findings open or escalated in the partition.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// A finding the restore found open or escalated: counted in the
    /// gauges as its status says, not as a new transition.
    pub fn restored(&mut self, f: &Finding) {
        self.track(f);
    }

    /// A finding transition the broker acknowledged.
    pub fn acknowledged(&mut self, f: &Finding) {
        match f.status {
            Status::Open | Status::Escalated => self.track(f),
            Status::Resolved => {
                if let Some(c) = self.open.remove(&f.finding_id) {
                    c.move_gauges(self.metrics, -1, -i64::from(c.overdue));
                }
                let team = self.teams.label(&f.contributing_owner.team);
                self.metrics.owner_resolved(f, &team);
            }
        }
    }

    /// Counts `f` as open, and as overdue when it is escalated.
    fn track(&mut self, f: &Finding) {
        let overdue = f.status == Status::Escalated;
        match self.open.get_mut(&f.finding_id) {
            Some(c) => {
                if overdue && !c.overdue {
                    c.overdue = true;
                    c.move_gauges(self.metrics, 0, 1);
                }
            }
            None => {
                let c = Counted {
                    role: f.contributing_owner.role,
                    team: self.teams.label(&f.contributing_owner.team),
                    rule: f.rule,
                    overdue,
                };
                c.move_gauges(self.metrics, 1, i64::from(overdue));
                self.open.insert(f.finding_id.clone(), c);
            }
        }
    }
}

impl Drop for OwnerBook<'_> {
    fn drop(&mut self) {
        for (_, c) in self.open.drain() {
            c.move_gauges(self.metrics, -1, -i64::from(c.overdue));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = crate::model::time::MS_PER_HOUR;

    /// A transition of finding `id`, detected at hour 0 with its deadline
    /// at hour 24, at hour `at`.
    fn finding(id: &str, status: &str, role: &str, team: &str, rule: &str, at: i64) -> Finding {
        let t = |h: i64| crate::model::time::Ts(h * H).to_string();
        serde_json::from_value(serde_json::json!({
            "finding_id": id, "status": status, "rule": rule, "severity": "HIGH",
            "worker_id": "W1",
            "subject": {"system": "directory", "directory": "ad", "app_id": null,
                        "account_id": "a1", "entitlement": null},
            "summary": "s",
            "accountable_owner": {"role": "IDENTITY_GOVERNANCE_PROCESS_OWNER", "team": "gov"},
            "contributing_owner": {"role": role, "team": team, "contact": null},
            "detected_at": t(0), "remediation_deadline": t(24),
            "escalation": {"target": team, "level": 1},
            "evidence": [], "frameworks": [],
            "detector": {"version": "0", "instance": "i"},
            "transitioned_at": t(at),
        }))
        .unwrap()
    }

    fn gauge(v: &IntGaugeVec, labels: [&str; 3]) -> i64 {
        v.with_label_values(&labels).get()
    }

    const IT: [&str; 3] = ["IT", "it-identity", "LEAVER_DIRECTORY_ACCESS"];

    #[test]
    fn team_labels_are_the_configured_teams_or_other() {
        let teams = TeamLabels::of(&Config::default_config());
        for t in [
            "hr-operations",
            "it-identity",
            "app-owners",
            "sales-operations",
        ] {
            assert_eq!(&*teams.label(t), t);
        }
        assert_eq!(&*teams.label("W000123's team"), OTHER_TEAM);
        assert_eq!(&*teams.label("identity-governance"), OTHER_TEAM);
    }

    #[test]
    fn the_book_follows_a_finding_open_escalated_resolved_and_gives_back_on_drop() {
        let m = Metrics::new();
        let teams = TeamLabels::of(&Config::default_config());
        let mut book = OwnerBook::new(&m, teams.clone());
        let id = "f1";
        book.acknowledged(&finding(id, "OPEN", "IT", "it-identity", IT[2], 0));
        assert_eq!(
            (gauge(&m.owner_open, IT), gauge(&m.owner_overdue, IT)),
            (1, 0)
        );
        book.acknowledged(&finding(id, "ESCALATED", "IT", "it-identity", IT[2], 24));
        assert_eq!(
            (gauge(&m.owner_open, IT), gauge(&m.owner_overdue, IT)),
            (1, 1)
        );
        // A repeated transition (at-least-once) moves nothing.
        book.acknowledged(&finding(id, "ESCALATED", "IT", "it-identity", IT[2], 24));
        assert_eq!(
            (gauge(&m.owner_open, IT), gauge(&m.owner_overdue, IT)),
            (1, 1)
        );
        book.acknowledged(&finding(id, "RESOLVED", "IT", "it-identity", IT[2], 30));
        assert_eq!(
            (gauge(&m.owner_open, IT), gauge(&m.owner_overdue, IT)),
            (0, 0)
        );
        let late = m
            .owner_resolved
            .with_label_values(&[IT[0], IT[1], IT[2], "false"]);
        assert_eq!(late.get(), 1);
        let h = m.owner_time_to_resolve.with_label_values(&IT);
        assert_eq!(h.get_sample_count(), 1);
        assert_eq!(h.get_sample_sum(), 30.0 * 3600.0);

        // Resolved by the deadline, exactly at it.
        book.acknowledged(&finding("f2", "OPEN", "IT", "it-identity", IT[2], 0));
        book.acknowledged(&finding("f2", "RESOLVED", "IT", "it-identity", IT[2], 24));
        let within = m
            .owner_resolved
            .with_label_values(&[IT[0], IT[1], IT[2], "true"]);
        assert_eq!(within.get(), 1);

        // A team the config does not name counts as `other`.
        let other = ["APP_OWNER", OTHER_TEAM, "LEAVER_APP_ACCESS"];
        book.acknowledged(&finding("f3", "OPEN", "APP_OWNER", "nobody", other[2], 0));
        assert_eq!(gauge(&m.owner_open, other), 1);

        // The partition's share goes back when its task ends.
        book.restored(&finding("f4", "ESCALATED", "IT", "it-identity", IT[2], 24));
        assert_eq!(
            (gauge(&m.owner_open, IT), gauge(&m.owner_overdue, IT)),
            (1, 1)
        );
        assert_eq!(book.open(), 2);
        drop(book);
        assert_eq!(
            (gauge(&m.owner_open, IT), gauge(&m.owner_overdue, IT)),
            (0, 0)
        );
        assert_eq!(gauge(&m.owner_open, other), 0);
        // Counters stay.
        assert_eq!(late.get(), 1);
    }

    #[test]
    fn two_partitions_add_up_and_one_leaving_takes_only_its_share() {
        let m = Metrics::new();
        let teams = TeamLabels::of(&Config::default_config());
        let mut p0 = OwnerBook::new(&m, teams.clone());
        let mut p1 = OwnerBook::new(&m, teams);
        p0.acknowledged(&finding("a", "OPEN", "IT", "it-identity", IT[2], 0));
        p1.restored(&finding("b", "ESCALATED", "IT", "it-identity", IT[2], 24));
        // A storm finding restored open is not listed by the restore: its
        // transitions still move the gauges once, and never below zero.
        p1.acknowledged(&finding("s", "ESCALATED", "IT", "it-identity", IT[2], 24));
        p1.acknowledged(&finding("gone", "RESOLVED", "IT", "it-identity", IT[2], 2));
        assert_eq!(
            (gauge(&m.owner_open, IT), gauge(&m.owner_overdue, IT)),
            (3, 2)
        );
        drop(p1);
        assert_eq!(
            (gauge(&m.owner_open, IT), gauge(&m.owner_overdue, IT)),
            (1, 0)
        );
        drop(p0);
        assert_eq!(
            (gauge(&m.owner_open, IT), gauge(&m.owner_overdue, IT)),
            (0, 0)
        );
    }

    #[test]
    fn the_exposition_names_the_owner_metrics() {
        let m = Metrics::new();
        let mut book = OwnerBook::new(&m, TeamLabels::of(&Config::default_config()));
        book.acknowledged(&finding(
            "f",
            "OPEN",
            "HR",
            "hr-operations",
            "CONTRACT_EXPIRED_ACCESS",
            0,
        ));
        book.acknowledged(&finding(
            "f",
            "RESOLVED",
            "HR",
            "hr-operations",
            "CONTRACT_EXPIRED_ACCESS",
            2,
        ));
        let text = m.render();
        for line in [
            "driftwatch_owner_findings_open{role=\"HR\",rule=\"CONTRACT_EXPIRED_ACCESS\",team=\"hr-operations\"} 0",
            "driftwatch_owner_findings_resolved_total{role=\"HR\",rule=\"CONTRACT_EXPIRED_ACCESS\",team=\"hr-operations\",within_deadline=\"true\"} 1",
            "driftwatch_owner_time_to_resolve_seconds_bucket{role=\"HR\",rule=\"CONTRACT_EXPIRED_ACCESS\",team=\"hr-operations\",le=\"14400\"} 1",
            "driftwatch_owner_time_to_resolve_seconds_bucket{role=\"HR\",rule=\"CONTRACT_EXPIRED_ACCESS\",team=\"hr-operations\",le=\"3600\"} 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
