//! librdkafka clients: their configuration by role, a log that reports each
//! cause once per interval, and the error that names the bootstrap servers
//! when no broker answers.
//!
//! The `[kafka.librdkafka]` passthrough is shared by every client, but a
//! property only a consumer knows goes only to consumers, and one only a
//! producer knows only to producers (librdkafka warns about the others on
//! every start). The property `debug` switches on librdkafka's debug
//! contexts and lets its debug log through; otherwise it logs warnings and
//! errors.

use super::PipelineError;
use crate::config::Config;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a client does, for the properties it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Consumer,
    Producer,
    /// Admin and metadata clients: neither consumer nor producer properties.
    Admin,
}

/// Properties librdkafka marks as consumer-only (CONFIGURATION.md, `C`).
const CONSUMER_ONLY: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// Properties librdkafka marks as producer-only (CONFIGURATION.md, `P`).
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

/// Whether a client of `role` takes the property `key`.
pub fn applies_to(key: &str, role: Role) -> bool {
    let consumer = CONSUMER_ONLY.contains(&key);
    let producer = PRODUCER_ONLY.contains(&key);
    match role {
        Role::Consumer => !producer,
        Role::Producer => !consumer,
        Role::Admin => !consumer && !producer,
    }
}

/// Settings of a client of `role`: bootstrap servers, the passthrough
/// properties that apply to it, and the log level.
pub fn client_config(cfg: &Config, role: Role) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.kafka.bootstrap_servers);
    for (k, v) in &cfg.kafka.librdkafka {
        if applies_to(k, role) {
            c.set(k, v);
        }
    }
    let debug = cfg
        .kafka
        .librdkafka
        .get("debug")
        .is_some_and(|d| !d.trim().is_empty());
    c.set_log_level(if debug {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    });
    c
}

/// How often one cause of a librdkafka warning or error is logged.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Admits a message once per [`LOG_EVERY`] per cause; counts the others.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogLimiter {
    /// `Some(n)` when the cause may be logged now, `n` being how many of it
    /// were held back since it last was.
    pub(crate) fn admit(&self, cause: &str) -> Option<u64> {
        self.admit_at(cause, Instant::now())
    }

    fn admit_at(&self, cause: &str, now: Instant) -> Option<u64> {
        let key = cause_of(cause);
        let mut seen = self.seen.lock().expect("log limiter lock");
        match seen.get_mut(&key) {
            Some((last, held)) if now.duration_since(*last) < LOG_EVERY => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                if seen.len() > 1024 {
                    seen.clear();
                }
                seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }

    /// One librdkafka log line, through `tracing`.
    pub(crate) fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        use RDKafkaLogLevel::*;
        if matches!(level, Debug) {
            tracing::debug!(target: "librdkafka", facility, "{message}");
            return;
        }
        if matches!(level, Notice | Info) {
            tracing::info!(target: "librdkafka", facility, "{message}");
            return;
        }
        let Some(held) = self.admit(message) else {
            return;
        };
        let note = suppressed(held);
        if matches!(level, Warning) {
            tracing::warn!(target: "librdkafka", facility, "{message}{note}");
        } else {
            tracing::error!(target: "librdkafka", facility, "{message}{note}");
        }
    }

    /// A client error reported by librdkafka's error callback.
    pub(crate) fn error(&self, error: &KafkaError, reason: &str) {
        if let Some(held) = self.admit(reason) {
            tracing::warn!(target: "librdkafka", "kafka client error: {error}: {reason}{}", suppressed(held));
        }
    }
}

fn suppressed(held: u64) -> String {
    match held {
        0 => String::new(),
        1 => " (1 more like it in the last 30 s)".into(),
        n => format!(" ({n} more like it in the last 30 s)"),
    }
}

/// A message with its numbers taken out: "Connect to 127.0.0.1:9092 failed
/// (after 1ms ...)" is one cause however long each attempt took.
fn cause_of(message: &str) -> String {
    // librdkafka's own "(after 0ms in state CONNECT, 3 identical error(s)
    // suppressed)" says nothing of the cause.
    let message = message.split(" (after ").next().unwrap_or(message);
    let mut out = String::with_capacity(message.len());
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// The context of every client without a context of its own: librdkafka's
/// log and errors through [`LogLimiter`].
#[derive(Debug, Default)]
pub struct Logs {
    limiter: LogLimiter,
    /// Set when this client finds every broker down (the detector's
    /// producer: its callbacks run on a thread of their own, so an outage
    /// is noticed even while the consumer thread waits in a rebalance).
    brokers_down: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Logs {
    /// A context that also raises `flag` when every broker is down.
    pub fn watching(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Logs {
        Logs {
            limiter: LogLimiter::default(),
            brokers_down: Some(flag),
        }
    }
}

impl ClientContext for Logs {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.limiter.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let (Some(flag), KafkaError::Global(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)) =
            (&self.brokers_down, &error)
        {
            note_brokers(flag, false, "producer error", reason);
        }
        self.limiter.error(&error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        if let (Some(flag), Some(up)) = (&self.brokers_down, brokers_up(&statistics)) {
            // The producer's own view; readiness also asks the consumer's.
            note_brokers(flag, up, "producer statistics", &broker_states(&statistics));
        }
    }
}

impl ConsumerContext for Logs {}

/// A broker with requests waiting, and nothing sent or received for this
/// long, is not answering, however its connection looks (a broker that
/// stops answering may keep its sockets open until requests time out).
/// Nothing sent either: a request just sent on a connection quiet for
/// longer (an idle producer's, or after a restore) is not yet unanswered.
const UNANSWERED_US: i64 = 4_000_000;

/// Whether any broker is up and answering, by fresh statistics (of the
/// last two seconds: statistics wait in a consumer's queue until it is
/// polled, and old ones say nothing of now). Real brokers only: not
/// librdkafka's internal broker, nor the logical group coordinator, whose
/// state is not a connection's. `None` when the statistics cannot tell.
pub(crate) fn brokers_up(statistics: &rdkafka::Statistics) -> Option<bool> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut brokers = statistics
        .brokers
        .values()
        .filter(|b| b.source == "learned" || b.source == "configured")
        .peekable();
    if brokers.peek().is_none() || now - statistics.time > 2 {
        return None;
    }
    Some(brokers.any(|b| {
        b.state == "UP"
            && !(b.waitresp_cnt > 0 && b.rxidle > UNANSWERED_US && b.txidle > UNANSWERED_US)
    }))
}

/// Each broker's name and connection state, for a log line.
pub(crate) fn broker_states(statistics: &rdkafka::Statistics) -> String {
    let mut states: Vec<String> = statistics
        .brokers
        .values()
        .map(|b| format!("{} {} ({})", b.name, b.state, b.source))
        .collect();
    states.sort();
    states.join(", ")
}

/// Sets the brokers-down flag from what `source` saw, and logs a change.
pub(crate) fn note_brokers(
    flag: &std::sync::atomic::AtomicBool,
    up: bool,
    source: &str,
    detail: &str,
) {
    let was_down = flag.swap(!up, std::sync::atomic::Ordering::Relaxed);
    if was_down == up {
        if up {
            tracing::info!(source, detail, "a broker is reachable again");
        } else {
            tracing::warn!(source, detail, "all brokers are down");
        }
    }
}

/// How often a client watching the brokers gets statistics, unless
/// `kafka.librdkafka` says otherwise.
pub(crate) const WATCH_STATISTICS_MS: &str = "1000";

impl Logs {
    /// Whether this context watches the brokers (and so wants statistics).
    pub(crate) fn watches(&self) -> bool {
        self.brokers_down.is_some()
    }
}

/// A consumer without a group of its own to speak of (replay, restore,
/// the harness).
pub type PlainConsumer = rdkafka::consumer::BaseConsumer<Logs>;

/// The producer of findings, dead letters and generated events.
pub type Producer = rdkafka::producer::FutureProducer<Logs>;

/// How long a client waits for the first answer of the cluster.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The error of a cluster that did not answer: it names the bootstrap
/// servers and what to check.
pub fn unreachable(cfg: &Config, error: &KafkaError) -> PipelineError {
    PipelineError::Unreachable {
        bootstrap: cfg.kafka.bootstrap_servers.clone(),
        detail: cfg.redact(&error.to_string()),
    }
}

/// The cluster's metadata (all topics), or [`unreachable`] when no broker
/// answers within [`CONNECT_TIMEOUT`].
pub fn metadata<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    cfg: &Config,
) -> Result<Metadata, PipelineError> {
    tracing::debug!(bootstrap = %cfg.kafka.bootstrap_servers, "asking the cluster for its topics");
    client
        .fetch_metadata(None, CONNECT_TIMEOUT)
        .map_err(|e| unreachable(cfg, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_go_to_the_clients_that_know_them() {
        assert!(applies_to("security.protocol", Role::Consumer));
        assert!(applies_to("security.protocol", Role::Producer));
        assert!(applies_to("security.protocol", Role::Admin));
        assert!(applies_to("session.timeout.ms", Role::Consumer));
        assert!(!applies_to("session.timeout.ms", Role::Producer));
        assert!(!applies_to("session.timeout.ms", Role::Admin));
        assert!(applies_to("linger.ms", Role::Producer));
        assert!(!applies_to("linger.ms", Role::Consumer));
        assert!(!applies_to("linger.ms", Role::Admin));
    }

    #[test]
    fn one_cause_is_logged_once_per_interval() {
        let limiter = LogLimiter::default();
        let a = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)";
        let b = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 12ms in state CONNECT)";
        let t0 = Instant::now();
        assert_eq!(limiter.admit_at(a, t0), Some(0));
        assert_eq!(
            limiter.admit_at(b, t0),
            None,
            "the same cause with other numbers"
        );
        assert_eq!(limiter.admit_at(a, t0 + LOG_EVERY / 2), None);
        assert_eq!(limiter.admit_at("another cause", t0), Some(0));
        // Once the interval has passed, the count of those held back comes along.
        assert_eq!(limiter.admit_at(a, t0 + LOG_EVERY), Some(2));
        assert_eq!(limiter.admit_at(a, t0 + LOG_EVERY), None);
    }
}
