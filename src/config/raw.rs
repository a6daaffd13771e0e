//! `config/driftwatch.toml` as written: one struct per section, unknown
//! keys refused, every key optional, durations as human strings.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `config/driftwatch.toml` as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Identity of this detector in every finding's `detector` field.
    #[serde(default)]
    pub detector: RawDetector,
    /// Topic names.
    #[serde(default)]
    pub topics: RawTopics,
    /// Who is accountable and who contributes.
    #[serde(default)]
    pub owners: RawOwners,
    /// Application owners, keyed by `app_id`.
    #[serde(default)]
    pub apps: BTreeMap<String, RawApp>,
    /// Where ESCALATED findings go.
    #[serde(default)]
    pub escalation: RawEscalation,
    /// Remediation deadline by severity, counted from `detected_at`.
    #[serde(default)]
    pub remediation: RawRemediation,
    /// Per-rule switches, keyed by rule id.
    #[serde(default)]
    pub rules: BTreeMap<String, RawRule>,
    /// The SOURCE_STORM mass-change guard.
    #[serde(default)]
    pub storm: RawStorm,
    /// State store limits.
    #[serde(default)]
    pub state: RawState,
    /// Broker connection and consumer group.
    #[serde(default)]
    pub kafka: RawKafka,
    /// Avro writer schemas for Confluent-framed input.
    #[serde(default)]
    pub schemas: RawSchemas,
    /// The admin HTTP port.
    #[serde(default)]
    pub admin: RawAdmin,
    /// How findings are encoded on the findings topic.
    #[serde(default)]
    pub output: RawOutput,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    /// `json` (the contract, default), `avro` or `ocsf`.
    pub encoding: Option<String>,
    /// Schema id of `schemas/finding.avsc` in the registry, for `avro`.
    pub avro_schema_id: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `host:port` of /metrics, /healthz and /readyz, or `off`; default
    /// `127.0.0.1:9464` (loopback only).
    pub listen: Option<String>,
    /// Bearer token the `/v1` queries (identity data) require. Without
    /// one they are served on a loopback address only. Never shown.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// `bootstrap.servers`; default `localhost:9092`.
    pub bootstrap_servers: Option<String>,
    /// Consumer group of the detector; default `driftwatch`.
    pub group_id: Option<String>,
    /// `at_least_once` (default) or `exactly_once`.
    pub delivery: Option<String>,
    /// How long a partition task waits for a lagging input topic before it
    /// takes the next record without it; default `2s`.
    pub max_task_idle: Option<String>,
    /// How often acknowledged offsets are committed; default `1s`.
    pub commit_interval: Option<String>,
    /// A member of the group that has held no partition for this long logs
    /// a warning and `/readyz` says so; default `60s`.
    pub unassigned_warning: Option<String>,
    /// How a correlation key maps to a partition: `murmur2` (default, the
    /// Java client's) or `crc32` (librdkafka's default).
    pub partitioner: Option<String>,
    /// Which partition task applies a record: `kafka_key` (default: the one
    /// reading the partition the producer chose) or `payload` (the one
    /// owning the record's correlation key; records elsewhere move through
    /// `topics.repartition`).
    pub route_by: Option<String>,
    /// Static group membership (KIP-345): an id unique to this detector in
    /// the group and stable across its restarts (a host or pod name). A
    /// restarted member that comes back within the session timeout gets its
    /// partitions back without a rebalance; default none (dynamic).
    pub group_instance_id: Option<String>,
    /// librdkafka properties passed through as they are (security.protocol,
    /// sasl.*, ssl.*, ...).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSchemas {
    /// Confluent Schema Registry base URL (`http://host:8081`).
    pub registry_url: Option<String>,
    /// Schema id -> `.avsc` file (relative to the config file), used when
    /// no registry is configured.
    #[serde(default)]
    pub ids: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDetector {
    /// Instance name; defaults to `driftwatch`.
    pub instance: Option<String>,
    /// When a partition has been quiet and caught up for this long of wall
    /// time, its stream time moves to the wall clock less this much, so SLA
    /// timers fire with no input. `off` disables it; default `10s`.
    pub idle_advance: Option<String>,
    /// Bound on a graceful stop (publish, commit, leave); default `30s`.
    pub shutdown_timeout: Option<String>,
    /// Larger input messages are dead letters (`oversize`); default 1 MiB.
    pub max_message_bytes: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTopics {
    /// HR topics (a name or a list).
    pub hr: Option<OneOrMany>,
    /// Directory topics.
    pub directory: Option<OneOrMany>,
    /// Application topics.
    pub app: Option<OneOrMany>,
    /// The findings topic.
    pub findings: Option<String>,
    /// The dead-letter topic.
    pub dead_letter: Option<String>,
    /// The state changelog topic (compacted; used with `state.changelog`).
    pub state: Option<String>,
    /// The repartition topic (used with `kafka.route_by = "payload"`).
    pub repartition: Option<String>,
}

/// A topic name or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOwners {
    /// Team of the identity governance process owner (accountable for every finding).
    pub governance_team: Option<String>,
    /// HR operations team: contributing owner for HR-caused drift.
    pub hr: Option<RawTeam>,
    /// IT identity team: contributing owner for directory drift.
    pub it: Option<RawTeam>,
    /// Owner of applications that have no `[apps.<id>]` entry.
    pub default_app: Option<RawTeam>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeam {
    pub team: String,
    pub contact: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    /// The owning team.
    pub team: String,
    /// How to reach it (mail, channel, queue).
    pub contact: Option<String>,
    /// worker_ids allowed to approve privileged grants in this app.
    #[serde(default)]
    pub approvers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
    /// Target of ESCALATED findings.
    pub target: Option<String>,
    /// Target of ESCALATED CRITICAL findings (defaults to `target`).
    pub critical_target: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRemediation {
    pub critical: Option<String>,
    pub high: Option<String>,
    pub medium: Option<String>,
    pub low: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// On/off switch.
    pub enabled: Option<bool>,
    /// Time the condition may last before a finding opens (`0s` = at once).
    pub sla: Option<String>,
    /// Base severity.
    pub severity: Option<String>,
    /// Severity when the rule's aggravating case applies (privileged, SHARED_ADMIN).
    pub elevated_severity: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStorm {
    pub enabled: Option<bool>,
    /// A storm needs more findings of one rule opening within the window
    /// than this (default 50).
    pub min_workers: Option<u64>,
    /// ... or than this fraction of tracked workers (default 0.05), not
    /// rounded; the larger bound wins.
    pub fraction: Option<f64>,
    /// Event-time window (default 5m).
    pub window: Option<String>,
    /// Event time after which a storm nobody fixed ends and its held
    /// findings still drifting are published (default 24h; at least
    /// `window`).
    pub max_hold: Option<String>,
    pub severity: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// How many recent event_ids are remembered for duplicate detection.
    pub dedup_capacity: Option<usize>,
    /// How long (stream time) an event_id is remembered; `off`: until
    /// `dedup_capacity` newer ones push it out.
    pub dedup_max_age: Option<String>,
    /// Keep each partition's state in the compacted `topics.state` topic
    /// and restore from it instead of re-reading the input history.
    pub changelog: Option<bool>,
    /// With the changelog: re-read the input history when the changelog
    /// cannot restore a partition (true), or stop with the reason (false,
    /// for input topics whose early records are deleted).
    pub history_fallback: Option<bool>,
    /// With the changelog: how often a partition's changes are written;
    /// `0s` writes after every batch. Default: `kafka.commit_interval`.
    pub checkpoint_interval: Option<String>,
}
