//! Configuration in two stages: [`RawConfig`] is what `config/driftwatch.toml`
//! says (serde, unknown fields refused, durations as human strings such as
//! `1h` or `7d`); [`Config`] is the validated form the engine uses. Every
//! validation error names the field and says how to fix it.

use crate::model::finding::Severity;
use crate::model::rule::Rule;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The configuration shipped in `config/driftwatch.toml`, built into the binary.
/// Larger input messages are dead letters (`detector.max_message_bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

pub const DEFAULT_TOML: &str = include_str!("../config/driftwatch.toml");

/// A configuration that cannot be used, naming the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The reason is part of the message (not a chained source), so that
    /// an error report prints it once.
    #[error("cannot read config file {path}: {reason}")]
    Io {
        path: String,
        reason: std::io::Error,
    },
    #[error("config: {0}")]
    Parse(String),
    #[error("config field `{field}`: {problem}")]
    Invalid { field: String, problem: String },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

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
}

/// A topic name or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
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
}

/// A team that contributes to (or is accountable for) a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub team: Arc<str>,
    pub contact: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct AppOwner {
    pub owner: Team,
    pub approvers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleConfig {
    pub enabled: bool,
    pub sla_ms: i64,
    pub severity: Severity,
    pub elevated_severity: Severity,
}

impl RuleConfig {
    /// The contract's defaults of `rule`, switched on.
    pub fn default_of(rule: Rule) -> RuleConfig {
        let d = rule.defaults();
        RuleConfig {
            enabled: true,
            sla_ms: d.sla_ms,
            severity: d.severity,
            elevated_severity: d.elevated_severity,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StormConfig {
    pub enabled: bool,
    pub min_workers: u64,
    pub fraction: f64,
    pub window_ms: i64,
    pub max_hold_ms: i64,
    pub severity: Severity,
}

#[derive(Debug, Clone)]
pub struct Topics {
    pub hr: Vec<String>,
    pub directory: Vec<String>,
    pub app: Vec<String>,
    pub findings: String,
    pub dead_letter: String,
}

/// Delivery guarantee of the findings topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Offsets are committed only after the findings they produced are
    /// acknowledged; a crash may publish a transition again (same
    /// finding_id and status).
    AtLeastOnce,
    /// Findings and offsets commit in one Kafka transaction.
    ExactlyOnce,
}

/// librdkafka properties set by driftwatch itself, with the field to use instead.
const MANAGED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("group.id", "kafka.group_id"),
    ("enable.auto.offset.store", "kafka.delivery"),
    ("enable.auto.commit", "kafka.commit_interval"),
    ("auto.commit.interval.ms", "kafka.commit_interval"),
    ("transactional.id", "kafka.delivery"),
    ("isolation.level", "kafka.delivery"),
    (
        "partition.assignment.strategy",
        "nothing: partitions are assigned by range so input topics stay co-partitioned",
    ),
];

/// Broker connection, consumer group and delivery guarantee.
#[derive(Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub delivery: Delivery,
    pub max_task_idle_ms: u64,
    pub commit_interval_ms: u64,
    pub unassigned_warning_ms: u64,
    /// Passed through to every librdkafka client as it is.
    pub librdkafka: BTreeMap<String, String>,
}

/// Whether a librdkafka property holds a secret (never logged or shown).
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with(".key.pem")
        || k.contains("sasl.oauthbearer.config")
        || k == "ssl.key.location"
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted: BTreeMap<&str, &str> = self
            .librdkafka
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) {
                    "[redacted]"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("delivery", &self.delivery)
            .field("max_task_idle_ms", &self.max_task_idle_ms)
            .field("commit_interval_ms", &self.commit_interval_ms)
            .field("unassigned_warning_ms", &self.unassigned_warning_ms)
            .field("librdkafka", &redacted)
            .finish()
    }
}

/// Where Avro writer schemas come from.
#[derive(Debug, Clone, Default)]
pub struct SchemasConfig {
    pub registry_url: Option<String>,
    /// Schema id -> `.avsc` path (resolved against the config file's directory by [`Config::load`]).
    pub ids: BTreeMap<u32, std::path::PathBuf>,
}

/// The bearer token of the admin port's `/v1` queries: a secret, never
/// printed (its `Debug` says `[redacted]`).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Whether `candidate` is the token, in time that does not depend on
    /// where they first differ.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
        }
        diff == 0
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub instance: Arc<str>,
    pub version: Arc<str>,
    pub topics: Topics,
    pub governance_team: Arc<str>,
    pub hr: Team,
    pub it: Team,
    pub default_app: Team,
    pub apps: BTreeMap<String, AppOwner>,
    pub escalation_target: Arc<str>,
    pub critical_escalation_target: Arc<str>,
    /// Indexed by `Severity as usize`.
    pub remediation_ms: [i64; 4],
    /// Indexed by `Rule::index()`.
    pub rules: Vec<RuleConfig>,
    pub storm: StormConfig,
    pub dedup_capacity: usize,
    /// Wall-clock idle advance of stream time (live only); `None` is off.
    pub idle_advance_ms: Option<i64>,
    pub kafka: KafkaConfig,
    pub schemas: SchemasConfig,
    /// Where the admin port listens; `None` is off.
    pub admin_listen: Option<std::net::SocketAddr>,
    /// The bearer token of the `/v1` queries.
    pub admin_token: Option<AdminToken>,
    /// How long a graceful stop may take before the process exits anyway.
    pub shutdown_timeout_ms: u64,
    /// Encoding of the findings topic.
    pub output: crate::model::encoding::Encoding,
    /// Larger input messages are dead letters.
    pub max_message_bytes: usize,
}

/// Parses a duration such as `90s`, `1h`, `7d` or `0`.
pub fn parse_duration_ms(field: &str, s: &str) -> Result<i64, ConfigError> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| {
            invalid(
                field,
                format!("`{s}` is not a duration ({e}); write e.g. 0s, 30m, 1h, 7d"),
            )
        })
}

fn parse_severity(field: &str, s: &str) -> Result<Severity, ConfigError> {
    Severity::parse(s).ok_or_else(|| {
        invalid(
            field,
            format!("`{s}` is not a severity; use one of LOW, MEDIUM, HIGH, CRITICAL"),
        )
    })
}

fn team(field: &str, raw: Option<RawTeam>, default: &str) -> Result<Team, ConfigError> {
    let raw = raw.unwrap_or(RawTeam {
        team: default.into(),
        contact: None,
    });
    if raw.team.trim().is_empty() {
        return Err(invalid(
            format!("{field}.team"),
            "must name a team; it is published as the finding's owner",
        ));
    }
    Ok(Team {
        team: raw.team.into(),
        contact: raw.contact.map(Into::into),
    })
}

fn topic_list(
    field: &str,
    raw: Option<OneOrMany>,
    default: &str,
) -> Result<Vec<String>, ConfigError> {
    let list = raw
        .map(OneOrMany::into_vec)
        .unwrap_or_else(|| vec![default.into()]);
    if list.is_empty() {
        return Err(invalid(
            field,
            "lists no topic; give at least one topic name",
        ));
    }
    for t in &list {
        if !valid_topic(t) {
            return Err(invalid(
                field,
                format!("`{t}` is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"),
            ));
        }
    }
    Ok(list)
}

fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let t = raw.topics;
        let topics = Topics {
            hr: topic_list("topics.hr", t.hr, "hr.worker-events")?,
            directory: topic_list("topics.directory", t.directory, "directory.account-changes")?,
            app: topic_list("topics.app", t.app, "app.entitlement-changes")?,
            findings: t
                .findings
                .unwrap_or_else(|| "identity.drift-findings".into()),
            dead_letter: t
                .dead_letter
                .unwrap_or_else(|| "driftwatch.dead-letter".into()),
        };
        for (field, name) in [
            ("topics.findings", &topics.findings),
            ("topics.dead_letter", &topics.dead_letter),
        ] {
            if !valid_topic(name) {
                return Err(invalid(
                    field,
                    format!("`{name}` is not a valid Kafka topic name"),
                ));
            }
        }
        let mut seen = BTreeMap::new();
        for (field, list) in [
            ("topics.hr", &topics.hr),
            ("topics.directory", &topics.directory),
            ("topics.app", &topics.app),
        ] {
            for name in list {
                if let Some(other) = seen.insert(name.clone(), field) {
                    return Err(invalid(
                        field,
                        format!("topic `{name}` is also listed in `{other}`; each input topic belongs to one family"),
                    ));
                }
            }
        }
        for (field, name) in [
            ("topics.findings", &topics.findings),
            ("topics.dead_letter", &topics.dead_letter),
        ] {
            if let Some(other) = seen.get(name) {
                return Err(invalid(
                    field,
                    format!("`{name}` is an input topic in `{other}`; findings and dead letters need their own topics"),
                ));
            }
        }

        let governance_team = raw
            .owners
            .governance_team
            .unwrap_or_else(|| "identity-governance".into());
        if governance_team.trim().is_empty() {
            return Err(invalid(
                "owners.governance_team",
                "must name the process owner's team",
            ));
        }
        let hr = team("owners.hr", raw.owners.hr, "hr-operations")?;
        let it = team("owners.it", raw.owners.it, "it-identity")?;
        let default_app = team("owners.default_app", raw.owners.default_app, "app-owners")?;

        let mut apps = BTreeMap::new();
        for (id, app) in raw.apps {
            let field = format!("apps.{id}");
            let owner = team(
                &field,
                Some(RawTeam {
                    team: app.team,
                    contact: app.contact,
                }),
                "",
            )?;
            if app.approvers.iter().any(|a| a.trim().is_empty()) {
                return Err(invalid(
                    format!("{field}.approvers"),
                    "holds an empty worker_id",
                ));
            }
            apps.insert(
                id,
                AppOwner {
                    owner,
                    approvers: app.approvers,
                },
            );
        }

        let escalation_target: Arc<str> = raw
            .escalation
            .target
            .unwrap_or_else(|| governance_team.clone())
            .into();
        let critical_escalation_target = raw
            .escalation
            .critical_target
            .map(Into::into)
            .unwrap_or_else(|| escalation_target.clone());

        let r = raw.remediation;
        let mut remediation_ms = [0i64; 4];
        for (sev, field, value, default) in [
            (Severity::Critical, "remediation.critical", r.critical, "4h"),
            (Severity::High, "remediation.high", r.high, "24h"),
            (Severity::Medium, "remediation.medium", r.medium, "72h"),
            (Severity::Low, "remediation.low", r.low, "7d"),
        ] {
            let ms = parse_duration_ms(field, value.as_deref().unwrap_or(default))?;
            if ms <= 0 {
                return Err(invalid(field, "must be longer than zero"));
            }
            remediation_ms[sev as usize] = ms;
        }

        let mut rules: Vec<RuleConfig> = Rule::ALL
            .iter()
            .map(|r| RuleConfig::default_of(*r))
            .collect();
        for (name, rr) in raw.rules {
            let rule = Rule::parse(&name).ok_or_else(|| {
                invalid(
                    format!("rules.{name}"),
                    format!(
                        "unknown rule id; the rules are {}",
                        Rule::ALL
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            let c = &mut rules[rule.index()];
            if let Some(e) = rr.enabled {
                c.enabled = e;
            }
            if let Some(s) = rr.sla {
                c.sla_ms = parse_duration_ms(&format!("rules.{name}.sla"), &s)?;
            }
            if let Some(s) = rr.severity {
                c.severity = parse_severity(&format!("rules.{name}.severity"), &s)?;
            }
            if let Some(s) = rr.elevated_severity {
                c.elevated_severity =
                    parse_severity(&format!("rules.{name}.elevated_severity"), &s)?;
            }
            if c.elevated_severity < c.severity {
                return Err(invalid(
                    format!("rules.{name}.elevated_severity"),
                    format!(
                        "{} is below the base severity {}; raise it or lower `severity`",
                        c.elevated_severity, c.severity
                    ),
                ));
            }
        }

        let s = raw.storm;
        let storm_enabled = s.enabled.unwrap_or(true);
        let fraction = s.fraction.unwrap_or(0.05);
        if !(0.0..=1.0).contains(&fraction) || fraction.is_nan() {
            return Err(invalid(
                "storm.fraction",
                format!("{fraction} is not between 0 and 1"),
            ));
        }
        let window_ms = parse_duration_ms("storm.window", s.window.as_deref().unwrap_or("5m"))?;
        if window_ms <= 0 {
            return Err(invalid("storm.window", "must be longer than zero"));
        }
        let max_hold_ms =
            parse_duration_ms("storm.max_hold", s.max_hold.as_deref().unwrap_or("24h"))?;
        if max_hold_ms < window_ms {
            return Err(invalid("storm.max_hold", "must be at least storm.window"));
        }
        let storm = StormConfig {
            enabled: storm_enabled && rules[Rule::SourceStorm.index()].enabled,
            min_workers: s.min_workers.unwrap_or(50),
            fraction,
            window_ms,
            max_hold_ms,
            severity: match s.severity {
                Some(v) => parse_severity("storm.severity", &v)?,
                None => rules[Rule::SourceStorm.index()].severity,
            },
        };
        if storm.min_workers == 0 {
            return Err(invalid("storm.min_workers", "must be at least 1"));
        }

        let dedup_capacity = raw.state.dedup_capacity.unwrap_or(1_000_000);
        if dedup_capacity == 0 {
            return Err(invalid(
                "state.dedup_capacity",
                "must be at least 1; duplicates would not be detected",
            ));
        }

        let idle_advance_ms = match raw.detector.idle_advance.as_deref().map(str::trim) {
            Some("off") => None,
            other => {
                let ms = parse_duration_ms("detector.idle_advance", other.unwrap_or("10s"))?;
                if ms <= 0 {
                    return Err(invalid(
                        "detector.idle_advance",
                        "must be longer than zero, or `off`",
                    ));
                }
                Some(ms)
            }
        };
        let kafka = kafka_config(raw.kafka)?;
        let admin_listen = match raw.admin.listen.as_deref().map(str::trim) {
            Some("off") => None,
            other => {
                let text = other.unwrap_or("127.0.0.1:9464");
                Some(listen_addr(text).map_err(|why| {
                    invalid(
                        "admin.listen",
                        format!("`{text}` {why} (write host:port, e.g. 127.0.0.1:9464, localhost:9464, or 0.0.0.0:9464 to listen on every interface; or `off`)"),
                    )
                })?)
            }
        };
        let admin_token = match raw.admin.token.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) if t.len() < 16 => {
                return Err(invalid(
                    "admin.token",
                    "is shorter than 16 characters; use a long random string (e.g. `openssl rand -hex 32`)",
                ))
            }
            Some(t) => Some(AdminToken(t.to_string())),
        };
        let shutdown_timeout_ms = parse_duration_ms(
            "detector.shutdown_timeout",
            raw.detector.shutdown_timeout.as_deref().unwrap_or("30s"),
        )?;
        if shutdown_timeout_ms <= 0 {
            return Err(invalid(
                "detector.shutdown_timeout",
                "must be longer than zero",
            ));
        }
        let schemas = schemas_config(raw.schemas)?;

        let output = {
            let name = raw.output.encoding.as_deref().unwrap_or("json");
            let enc = crate::model::encoding::Encoding::parse(name, raw.output.avro_schema_id)
                .map_err(|e| invalid("output.encoding", e))?;
            if name == "avro" && raw.output.avro_schema_id.is_none() {
                return Err(invalid(
                    "output.avro_schema_id",
                    "is needed with encoding = \"avro\": the id under which schemas/finding.avsc is registered (the Confluent header carries it)",
                ));
            }
            enc
        };

        let max_message_bytes = raw
            .detector
            .max_message_bytes
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if max_message_bytes == 0 {
            return Err(invalid("detector.max_message_bytes", "must be at least 1"));
        }

        Ok(Config {
            max_message_bytes,
            output,
            admin_listen,
            admin_token,
            shutdown_timeout_ms: shutdown_timeout_ms as u64,
            idle_advance_ms,
            kafka,
            schemas,
            instance: raw
                .detector
                .instance
                .unwrap_or_else(|| "driftwatch".into())
                .into(),
            version: env!("CARGO_PKG_VERSION").into(),
            topics,
            governance_team: governance_team.into(),
            hr,
            it,
            default_app,
            apps,
            escalation_target,
            critical_escalation_target,
            remediation_ms,
            rules,
            storm,
            dedup_capacity,
        })
    }
}

/// `host:port` to one socket address: an IP literal as it is, a host name
/// through the resolver (`localhost` becomes its first address, IPv4
/// first, so that the port is where a user expects it).
fn listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("has no port".into());
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err("is not host:port".into());
    }
    let addrs: Vec<std::net::SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("does not resolve: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| "resolves to no address".into())
}

fn kafka_config(k: RawKafka) -> Result<KafkaConfig, ConfigError> {
    let bootstrap_servers = k
        .bootstrap_servers
        .unwrap_or_else(|| "localhost:9092".into());
    if bootstrap_servers.trim().is_empty() {
        return Err(invalid(
            "kafka.bootstrap_servers",
            "is empty; give host:port[,host:port...]",
        ));
    }
    let group_id = k.group_id.unwrap_or_else(|| "driftwatch".into());
    if group_id.trim().is_empty() {
        return Err(invalid(
            "kafka.group_id",
            "is empty; name the consumer group",
        ));
    }
    let delivery = match k.delivery.as_deref().unwrap_or("at_least_once") {
        "at_least_once" => Delivery::AtLeastOnce,
        "exactly_once" => Delivery::ExactlyOnce,
        other => {
            return Err(invalid(
                "kafka.delivery",
                format!("`{other}` is not a delivery mode; use at_least_once or exactly_once"),
            ))
        }
    };
    let max_task_idle_ms = parse_duration_ms(
        "kafka.max_task_idle",
        k.max_task_idle.as_deref().unwrap_or("2s"),
    )?;
    let commit_interval_ms = parse_duration_ms(
        "kafka.commit_interval",
        k.commit_interval.as_deref().unwrap_or("1s"),
    )?;
    if commit_interval_ms <= 0 {
        return Err(invalid("kafka.commit_interval", "must be longer than zero"));
    }
    let unassigned_warning_ms = parse_duration_ms(
        "kafka.unassigned_warning",
        k.unassigned_warning.as_deref().unwrap_or("60s"),
    )?;
    if unassigned_warning_ms <= 0 {
        return Err(invalid(
            "kafka.unassigned_warning",
            "must be longer than zero",
        ));
    }
    for key in k.librdkafka.keys() {
        if let Some((_, instead)) = MANAGED_PROPERTIES.iter().find(|(p, _)| p == key) {
            return Err(invalid(
                format!("kafka.librdkafka.\"{key}\""),
                format!("is set by driftwatch; use {instead}"),
            ));
        }
    }
    Ok(KafkaConfig {
        bootstrap_servers,
        group_id,
        delivery,
        max_task_idle_ms: max_task_idle_ms.max(0) as u64,
        commit_interval_ms: commit_interval_ms as u64,
        unassigned_warning_ms: unassigned_warning_ms as u64,
        librdkafka: k.librdkafka,
    })
}

fn schemas_config(s: RawSchemas) -> Result<SchemasConfig, ConfigError> {
    let registry_url = match s.registry_url {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            return Err(invalid(
                "schemas.registry_url",
                format!("`{u}` is not an http:// or https:// URL"),
            ))
        }
        other => other.map(|u| u.trim_end_matches('/').to_string()),
    };
    let mut ids = BTreeMap::new();
    for (id, file) in s.ids {
        let n: u32 = id.parse().map_err(|_| {
            invalid(
                format!("schemas.ids.{id}"),
                "is not a schema id; keys are the numeric ids of the Confluent header",
            )
        })?;
        ids.insert(n, std::path::PathBuf::from(file));
    }
    Ok(SchemasConfig { registry_url, ids })
}

/// Prefix of environment overrides: `DRIFTWATCH_<SECTION>__<KEY>`, sections
/// and keys separated by a double underscore, e.g.
/// `DRIFTWATCH_KAFKA__BOOTSTRAP_SERVERS=broker:9092` or
/// `DRIFTWATCH_RULES__ORPHAN_ACCOUNT__SLA=2h`. Under `kafka.librdkafka` the
/// single underscores of the key become dots:
/// `DRIFTWATCH_KAFKA__LIBRDKAFKA__SASL_PASSWORD` sets `sasl.password`.
pub const ENV_PREFIX: &str = "DRIFTWATCH_";

/// The TOML path an environment variable overrides, if it is one.
fn env_path(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if !rest.contains("__") {
        return None; // e.g. DRIFTWATCH_LOG_FORMAT: not a config key
    }
    let parts: Vec<&str> = rest.split("__").collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut path: Vec<String> = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let seg = match (
            path.first().map(String::as_str),
            path.get(1).map(String::as_str),
            i,
        ) {
            // Rule ids are upper case.
            (Some("rules"), _, 1) => p.to_string(),
            (Some("kafka"), Some("librdkafka"), 2) => p.to_ascii_lowercase().replace('_', "."),
            _ => p.to_ascii_lowercase(),
        };
        path.push(seg);
    }
    Some(path)
}

/// An environment value as TOML when it reads as a scalar or array
/// (`true`, `5`, `0.1`, `["a","b"]`), else as a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(v) if !v.is_table() => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Applies environment overrides to a parsed TOML table; returns the
/// names of the variables applied.
pub fn apply_env(
    table: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let mut applied = Vec::new();
    let mut vars: Vec<(String, String)> = vars.into_iter().collect();
    vars.sort();
    for (name, raw) in vars {
        let Some(path) = env_path(&name) else {
            continue;
        };
        let (last, parents) = path.split_last().expect("at least two segments");
        let mut node = &mut *table;
        for seg in parents {
            let entry = node
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry.as_table_mut().ok_or_else(|| {
                invalid(
                    path.join("."),
                    format!("{name} sets a key inside `{seg}`, which is not a table"),
                )
            })?;
        }
        // librdkafka takes every value as a string, and a value read as a
        // number could lose its text (`0.10`).
        let value = if path.len() == 3 && path[0] == "kafka" && path[1] == "librdkafka" {
            toml::Value::String(raw)
        } else {
            env_value(&raw)
        };
        node.insert(last.clone(), value);
        applied.push(name);
    }
    Ok(applied)
}

/// A copy of a config table safe to show: secret librdkafka values and
/// credentials in URLs replaced.
pub fn redacted(table: &toml::Table) -> toml::Table {
    let mut t = table.clone();
    if let Some(lib) = t
        .get_mut("kafka")
        .and_then(|k| k.get_mut("librdkafka"))
        .and_then(toml::Value::as_table_mut)
    {
        for (k, v) in lib.iter_mut() {
            if is_secret_property(k) {
                *v = toml::Value::String("[redacted]".into());
            }
        }
    }
    if let Some(token) = t.get_mut("admin").and_then(|a| a.get_mut("token")) {
        *token = toml::Value::String("[redacted]".into());
    }
    if let Some(toml::Value::String(url)) =
        t.get_mut("schemas").and_then(|s| s.get_mut("registry_url"))
    {
        if let Some((scheme, rest)) = url.split_once("://") {
            if let Some((_, host)) = rest.split_once('@') {
                *url = format!("{scheme}://[redacted]@{host}");
            }
        }
    }
    t
}

impl Config {
    /// Secret values this config holds: librdkafka secrets and the
    /// password in the registry URL.
    pub fn secret_values(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .kafka
            .librdkafka
            .iter()
            .filter(|(k, v)| is_secret_property(k) && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect();
        if let Some(token) = &self.admin_token {
            out.push(token.expose());
        }
        if let Some(url) = &self.schemas.registry_url {
            if let Some((userinfo, _)) = url.split_once("://").and_then(|(_, r)| r.split_once('@'))
            {
                if let Some((_, password)) = userinfo.split_once(':') {
                    if !password.is_empty() {
                        out.push(password);
                    }
                }
            }
        }
        out
    }

    /// `text` with every secret value of this config replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secret_values() {
            out = out.replace(secret, "[redacted]");
        }
        out
    }

    /// The file (or the built-in default) with environment overrides on
    /// top; returns the validated config and the effective table.
    pub fn load_layered(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, toml::Table), ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|reason| ConfigError::Io {
                path: p.display().to_string(),
                reason,
            })?,
            None => DEFAULT_TOML.to_string(),
        };
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let applied = apply_env(&mut table, vars)?;
        let raw = RawConfig::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            let mut msg = e.to_string();
            if !applied.is_empty() {
                msg.push_str(&format!(" (environment overrides: {})", applied.join(", ")));
            }
            ConfigError::Parse(msg)
        })?;
        let mut cfg = Config::try_from(raw)?;
        if let Some(p) = path {
            let base = p.parent().unwrap_or(Path::new(""));
            for file in cfg.schemas.ids.values_mut() {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        Ok((cfg, table))
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        Config::try_from(raw)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|reason| ConfigError::Io {
            path: path.display().to_string(),
            reason,
        })?;
        let mut cfg = Config::from_toml(&text)?;
        let base = path.parent().unwrap_or(Path::new(""));
        for file in cfg.schemas.ids.values_mut() {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        Ok(cfg)
    }

    /// The shipped default configuration.
    pub fn default_config() -> Config {
        Config::from_toml(DEFAULT_TOML).expect("the shipped config/driftwatch.toml is valid")
    }

    pub fn rule(&self, rule: Rule) -> &RuleConfig {
        &self.rules[rule.index()]
    }

    /// The owning team of an application.
    pub fn app_owner(&self, app_id: &str) -> &Team {
        self.apps
            .get(app_id)
            .map_or(&self.default_app, |a| &a.owner)
    }

    /// Whether `approver` may approve privileged grants in `app_id`.
    /// An app with no configured approvers accepts no approval.
    pub fn is_app_approver(&self, app_id: &str, approver: &str) -> bool {
        self.apps
            .get(app_id)
            .is_some_and(|a| a.approvers.iter().any(|x| x == approver))
    }

    pub fn remediation_ms(&self, severity: Severity) -> i64 {
        self.remediation_ms[severity as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_err(toml: &str, expect: &str) {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(expect), "{err}\n does not contain\n{expect}");
    }

    #[test]
    fn shipped_config_is_valid() {
        let c = Config::default_config();
        assert_eq!(c.rule(Rule::LeaverDirectoryAccess).sla_ms, 3_600_000);
        assert_eq!(c.topics.hr, vec!["hr.worker-events".to_string()]);
        assert_eq!(c.remediation_ms(Severity::Low), 7 * 86_400_000);
        // The shipped storm guard is the one a config that leaves it out gets.
        let (shipped, default) = (&c.storm, &Config::from_toml("").unwrap().storm);
        assert_eq!(
            (shipped.enabled, shipped.min_workers, shipped.window_ms),
            (default.enabled, default.min_workers, default.window_ms)
        );
        assert_eq!(shipped.fraction, default.fraction);
        assert_eq!(shipped.max_hold_ms, default.max_hold_ms);
        assert_eq!(shipped.max_hold_ms, 24 * 3_600_000);
    }

    #[test]
    fn empty_config_takes_contract_defaults() {
        let c = Config::from_toml("").unwrap();
        for rule in Rule::ALL {
            assert_eq!(*c.rule(*rule), RuleConfig::default_of(*rule), "{rule}");
        }
        assert_eq!(c.topics.findings, "identity.drift-findings");
    }

    #[test]
    fn bad_values_name_the_field() {
        check_err(
            "[rules.LEAVER_DIRECTORY_ACCESS]\nsla = \"an hour\"",
            "`rules.LEAVER_DIRECTORY_ACCESS.sla`: `an hour` is not a duration",
        );
        check_err(
            "[rules.LEAVER_DIRECTORY_ACCES]\nsla = \"1h\"",
            "`rules.LEAVER_DIRECTORY_ACCES`: unknown rule id",
        );
        check_err(
            "[rules.ORPHAN_ACCOUNT]\nseverity = \"SEVERE\"",
            "`rules.ORPHAN_ACCOUNT.severity`: `SEVERE` is not a severity",
        );
        check_err("[storm]\nfraction = 5.0", "`storm.fraction`");
        check_err(
            "[storm]\nwindow = \"10m\"\nmax_hold = \"5m\"",
            "`storm.max_hold`: must be at least storm.window",
        );
        check_err("[topics]\nhr = \"bad topic!\"", "`topics.hr`");
        check_err(
            "[topics]\nhr = \"x\"\napp = \"x\"",
            "`topics.app`: topic `x` is also listed in `topics.hr`",
        );
        check_err("[owners]\ngovernance = \"x\"", "unknown field `governance`");
        check_err(
            "[rules.LEAVER_APP_ACCESS]\nseverity = \"CRITICAL\"\nelevated_severity = \"LOW\"",
            "`rules.LEAVER_APP_ACCESS.elevated_severity`",
        );
        check_err("[apps.crm]\ncontact = \"x\"", "missing field `team`");
        check_err(
            "[kafka]\ndelivery = \"twice\"",
            "`kafka.delivery`: `twice` is not a delivery mode",
        );
        check_err(
            "[kafka.librdkafka]\n\"group.id\" = \"x\"",
            "use kafka.group_id",
        );
        check_err("[schemas.ids]\nhr = \"x.avsc\"", "`schemas.ids.hr`");
        check_err(
            "[detector]\nidle_advance = \"soon\"",
            "`detector.idle_advance`",
        );
    }

    #[test]
    fn environment_overrides_name_their_keys() {
        let vars = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let (c, table) = Config::load_layered(
            None,
            vars(&[
                ("DRIFTWATCH_KAFKA__BOOTSTRAP_SERVERS", "b1:9092,b2:9092"),
                ("DRIFTWATCH_KAFKA__LIBRDKAFKA__SASL_PASSWORD", "hunter2"),
                // librdkafka values stay text, even where they read as numbers.
                ("DRIFTWATCH_KAFKA__LIBRDKAFKA__LINGER_MS", "7"),
                (
                    "DRIFTWATCH_KAFKA__LIBRDKAFKA__BROKER_VERSION_FALLBACK",
                    "0.10",
                ),
                ("DRIFTWATCH_RULES__ORPHAN_ACCOUNT__SLA", "2h"),
                ("DRIFTWATCH_STORM__MIN_WORKERS", "7"),
                ("DRIFTWATCH_TANSU_BOOTSTRAP", "not a config key"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "b1:9092,b2:9092");
        assert_eq!(c.kafka.librdkafka["sasl.password"], "hunter2");
        assert_eq!(c.kafka.librdkafka["linger.ms"], "7");
        assert_eq!(c.kafka.librdkafka["broker.version.fallback"], "0.10");
        assert_eq!(c.rule(Rule::OrphanAccount).sla_ms, 2 * 3_600_000);
        assert_eq!(c.storm.min_workers, 7);
        let shown = toml::to_string(&redacted(&table)).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.password"), "{shown}");
        let err = Config::load_layered(None, vars(&[("DRIFTWATCH_KAFKA__BOOTSTRAP", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bootstrap`"), "{err}");
        assert!(err.contains("DRIFTWATCH_KAFKA__BOOTSTRAP"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let c = Config::from_toml(
            "[kafka.librdkafka]\n\"sasl.password\" = \"hunter2\"\n\"sasl.username\" = \"svc\"",
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("svc"), "{shown}");
        assert_eq!(
            Config::from_toml("[detector]\nidle_advance = \"off\"")
                .unwrap()
                .idle_advance_ms,
            None
        );
    }
}
