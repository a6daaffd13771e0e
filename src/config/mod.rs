//! Configuration in two stages: [`RawConfig`] is what `config/driftwatch.toml`
//! says (serde, unknown fields refused, durations as human strings such as
//! `1h` or `7d`); [`Config`] is the validated form the engine uses. Every
//! validation error names the field and says how to fix it.
//!
//! - [`raw`]: the file as written, one documented struct per section.
//! - `validate`: raw to validated, with the cross-field checks.
//! - [`env`]: `DRIFTWATCH_<SECTION>__<KEY>` overrides.
//! - [`redact`]: secrets out of anything shown.

use crate::model::finding::Severity;
use crate::model::rule::Rule;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Larger input messages are dead letters (`detector.max_message_bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The configuration shipped in `config/driftwatch.toml`, built into the binary.
pub const DEFAULT_TOML: &str = include_str!("../../config/driftwatch.toml");

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

pub mod env;
pub mod raw;
pub mod redact;
mod validate;

pub use env::{apply_env, ENV_PREFIX};
pub use raw::*;
pub use redact::{is_secret_property, redacted};
pub use validate::parse_duration_ms;

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
    /// The compacted state changelog topic.
    pub state: String,
    /// The topic records move through to their key's partition
    /// (`kafka.route_by = "payload"`).
    pub repartition: String,
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
    ("group.instance.id", "kafka.group_instance_id"),
    ("isolation.level", "kafka.delivery"),
    (
        "partition.assignment.strategy",
        "nothing: partitions are assigned by range so input topics stay co-partitioned",
    ),
];

/// Broker connection, consumer group and delivery guarantee.
/// `kafka.route_by`: which partition task applies a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteBy {
    /// The task of the partition the producer put it in: the join is only
    /// as good as the producers' keys and partitioners.
    KafkaKey,
    /// The task owning its correlation key (`kafka.partitioner` of the
    /// key computed from the payload); records elsewhere move there
    /// through `topics.repartition`.
    Payload,
}

impl RouteBy {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteBy::KafkaKey => "kafka_key",
            RouteBy::Payload => "payload",
        }
    }
}

#[derive(Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub delivery: Delivery,
    pub max_task_idle_ms: u64,
    pub commit_interval_ms: u64,
    pub unassigned_warning_ms: u64,
    /// `group.instance.id` of the detector's group consumer, if any.
    pub group_instance_id: Option<String>,
    /// `kafka.partitioner`: the partition a correlation key belongs to.
    pub partitioner: crate::model::partitioner::Partitioner,
    /// `kafka.route_by`: which partition task applies a record.
    pub route_by: RouteBy,
    /// Passed through to every librdkafka client as it is.
    pub librdkafka: BTreeMap<String, String>,
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
            .field("partitioner", &self.partitioner)
            .field("route_by", &self.route_by)
            .field("group_instance_id", &self.group_instance_id)
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
    /// `state.dedup_max_age` in milliseconds: ids that arrived longer ago
    /// (stream time) are forgotten (None: `off`).
    pub dedup_max_age_ms: Option<i64>,
    /// `state.changelog`: partition state is written to `topics.state` and
    /// restored from it.
    pub state_changelog: bool,
    /// `state.history_fallback`: a partition the changelog cannot restore
    /// is rebuilt from the input history (else the pipeline stops).
    pub history_fallback: bool,
    /// `state.checkpoint_interval`: how often a partition's changes go to
    /// the changelog (0: after every batch).
    pub checkpoint_interval_ms: u64,
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
    /// Encoding of the findings topic. Avro with schema id 0 and no
    /// `output_schema_id_given` takes its id from the registry at start.
    pub output: crate::model::encoding::Encoding,
    /// `output.avro_schema_id` was set (else the registry is asked).
    pub output_schema_id_given: bool,
    /// Larger input messages are dead letters.
    pub max_message_bytes: usize,
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
mod tests;
