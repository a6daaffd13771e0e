//! The Kafka shell around the engine: one consumer group over the input
//! topics, one task (and one engine) per assigned partition number, findings
//! and dead letters produced back to Kafka.
//!
//! # Threads
//!
//! One consumer thread polls a librdkafka `BaseConsumer` for its events:
//! rebalance callbacks run on it, and it commits. Messages do not pass
//! through it: before each assignment takes effect, every assigned
//! topic-partition's queue is split from the consumer's (librdkafka then
//! fetches into that queue, bounded per partition by
//! `queued.max.messages.kbytes`, see [`run`]), and the task of the partition number
//! reads its topics' queues itself, when its merge needs them. A slow task
//! leaves its queues full and the fetcher stops fetching them: backpressure
//! without holding the others up. Partition tasks run on the tokio runtime;
//! see [`task`].
//!
//! # Offsets (at-least-once)
//!
//! A task marks a batch's offsets done only after every finding (or dead
//! letter) of the batch, and of every batch before it, is acknowledged by
//! the broker. The consumer thread commits the marks of all topics of a
//! partition together, from one snapshot, every `kafka.commit_interval`
//! (librdkafka's auto-commit could catch one topic's mark without the
//! other's, and a restore would then apply a different prefix than the one
//! that was published). Nothing is committed before its findings are safe; a
//! crash re-reads from the last commit and may publish a transition again,
//! with the same finding_id and status.
//!
//! # State belongs to partitions
//!
//! Input topics must be co-partitioned (same partition count, same key ->
//! partition) and are assigned by range, so partition `p` of every input
//! topic lands on one process. On assignment the task restores its engine by
//! re-reading partition `p` of each input topic from the beginning up to the
//! committed offset (no findings are published for that part: they were
//! published before the commit), and the live partitions stay paused until
//! it is done. On revocation each task publishes what it has applied, stores
//! its offsets, and the callback commits them before the partitions go.

pub mod client;
mod publish;
pub mod replay;
mod task;

pub use crate::ops::live::LiveStats;
pub use client::{client_config, Logs, PlainConsumer, Producer, Role};
pub use publish::{dead_letter_headers, produce_events, topic_for};

use crate::codec::avro::SchemaSet;
use crate::codec::json::DecodeError;
use crate::config::{Config, Delivery};
use crate::model::event::{Event, System};
use crate::model::finding::Finding;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::Producer as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// Why the pipeline stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("publishing to {topic} failed: {reason}")]
    Publish { topic: String, reason: String },
    #[error("{0}")]
    Topology(String),
    #[error("no Kafka broker answered at {bootstrap} ({detail}); check that a broker listens there, that kafka.bootstrap_servers (or --bootstrap-servers) names it as it advertises itself, and the [kafka.librdkafka] security settings")]
    Unreachable { bootstrap: String, detail: String },
    #[error("{0}")]
    Admin(std::io::Error),
    #[error("restoring partition {partition}: {reason}")]
    Restore { partition: i32, reason: String },
}

/// Creates a librdkafka client. librdkafka's configuration errors quote
/// the offending value, so they pass through [`Config::redact`].
pub fn create_client<T: rdkafka::config::FromClientConfigAndContext<C>, C: ClientContext>(
    cfg: &Config,
    config: &ClientConfig,
    context: C,
) -> Result<T, PipelineError> {
    config.create_with_context(context).map_err(|e| {
        PipelineError::Topology(format!("kafka client: {}", cfg.redact(&e.to_string())))
    })
}

/// A producer for findings, dead letters and generated events.
pub fn producer(cfg: &Config) -> Result<Producer, PipelineError> {
    create_client(
        cfg,
        client_config(cfg, Role::Producer)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5"),
        Logs::default(),
    )
}

/// The exactly-once producer: transactional, with an id unique to this
/// process (fencing of zombies comes from the consumer group generation
/// sent with the offsets, KIP-447).
fn transactional_producer(cfg: &Config) -> Result<Producer, PipelineError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let id = format!(
        "{}.{}.{}-{nanos}",
        cfg.kafka.group_id,
        cfg.instance,
        std::process::id()
    );
    create_client(
        cfg,
        client_config(cfg, Role::Producer)
            .set("transactional.id", &id)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5"),
        Logs::default(),
    )
}

/// Publishes findings (e.g. of a replay) to a topic, keyed by
/// finding_id. Made before the work that produces the findings, so that a
/// missing topic or an unreachable cluster is known at once.
pub struct FindingsPublisher {
    producer: Producer,
    topic: String,
}

impl FindingsPublisher {
    /// A producer for `topic`, which must exist.
    pub async fn new(cfg: &Config, topic: &str) -> Result<FindingsPublisher, PipelineError> {
        let producer = producer(cfg)?;
        tokio::task::block_in_place(|| {
            require_topics(producer.client(), cfg, &[topic.to_string()])
        })?;
        Ok(FindingsPublisher {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Publishes `findings` and waits for every acknowledgement; returns how many.
    pub async fn publish(
        &self,
        encoding: crate::model::encoding::Encoding,
        findings: &[Finding],
    ) -> Result<usize, PipelineError> {
        let topic = &self.topic;
        let encoder = crate::codec::output::FindingEncoder::new(encoding);
        let mut pending = Vec::with_capacity(findings.len());
        for f in findings {
            let value = encoder
                .encode(f)
                .map_err(|e| publish::publish_error(topic, e))?;
            pending.push(
                publish::enqueue(
                    &self.producer,
                    topic,
                    Some(f.finding_id.as_bytes()),
                    &value,
                    None,
                )
                .await?,
            );
        }
        for d in pending {
            publish::confirm(topic, d).await?;
        }
        Ok(findings.len())
    }
}

/// Partition counts of the topics of the cluster, by name.
fn topic_counts<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    cfg: &Config,
) -> Result<HashMap<String, usize>, PipelineError> {
    let md = client::metadata(client, cfg)?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect())
}

/// Checks that `topics` exist, before anything is read or produced.
pub fn require_topics<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    cfg: &Config,
    topics: &[String],
) -> Result<(), PipelineError> {
    let counts = topic_counts(client, cfg)?;
    let missing: Vec<&str> = topics
        .iter()
        .filter(|t| !counts.contains_key(t.as_str()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PipelineError::Topology(format!(
        "{} missing on {}: {}; create {} (`driftwatch create-topics`, or your cluster's tooling) or fix the name",
        if missing.len() == 1 { "topic" } else { "topics" },
        cfg.kafka.bootstrap_servers,
        missing.join(", "),
        if missing.len() == 1 { "it" } else { "them" },
    )))
}

/// What `create-topics` found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOutcome {
    pub name: String,
    pub partitions: usize,
    pub created: bool,
}

/// Creates the configured topics that do not exist yet (brokers such as
/// Tansu do not auto-create). Existing topics are left as they are, but
/// existing input topics must have the partition count asked for: the
/// inputs are co-partitioned, so a count that differs is refused before
/// anything is created.
pub async fn create_topics(
    cfg: &Config,
    partitions: i32,
    replication: i32,
) -> Result<Vec<TopicOutcome>, PipelineError> {
    let admin: AdminClient<Logs> =
        create_client(cfg, &client_config(cfg, Role::Admin), Logs::default())?;
    let md = tokio::task::block_in_place(|| client::metadata(admin.inner(), cfg))?;
    let existing: HashMap<String, usize> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect();
    let inputs = input_topics(cfg);
    let wrong: Vec<String> = inputs
        .iter()
        .filter_map(|t| {
            let n = *existing.get(t.as_str())?;
            (n != partitions as usize).then(|| format!("{t} has {n}"))
        })
        .collect();
    if !wrong.is_empty() {
        return Err(PipelineError::Topology(format!(
            "input topics exist with another partition count than {partitions} ({}); input topics must be co-partitioned: create the missing ones with --partitions equal to the existing ones, or recreate the topics",
            wrong.join(", ")
        )));
    }
    let names = all_topics(cfg);
    let new: Vec<NewTopic> = names
        .iter()
        .filter(|n| !existing.contains_key(n.as_str()))
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let mut created = BTreeSet::new();
    if !new.is_empty() {
        let results = admin
            .create_topics(
                &new,
                &AdminOptions::new()
                    .operation_timeout(Some(Duration::from_secs(30)))
                    .request_timeout(Some(client::CONNECT_TIMEOUT)),
            )
            .await
            .map_err(|e| client::unreachable(cfg, &e))?;
        for r in results {
            match r {
                Ok(name) => {
                    created.insert(name);
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(PipelineError::Topology(format!(
                        "cannot create topic `{name}`: {code}"
                    )))
                }
            }
        }
    }
    Ok(names
        .into_iter()
        .map(|name| TopicOutcome {
            partitions: existing.get(&name).copied().unwrap_or(partitions as usize),
            created: created.contains(&name),
            name,
        })
        .collect())
}

/// The input topics, in configuration order.
pub fn input_topics(cfg: &Config) -> Vec<String> {
    let t = &cfg.topics;
    t.hr.iter()
        .chain(&t.directory)
        .chain(&t.app)
        .cloned()
        .collect()
}

/// Input, findings and dead-letter topics.
pub fn all_topics(cfg: &Config) -> Vec<String> {
    let t = &cfg.topics;
    t.hr.iter()
        .chain(&t.directory)
        .chain(&t.app)
        .chain([&t.findings, &t.dead_letter])
        .cloned()
        .collect()
}

/// An input topic as a partition task sees it.
#[derive(Debug)]
pub(crate) struct InputTopic {
    pub(crate) name: Arc<str>,
    /// The name interned for evidence coordinates.
    pub(crate) id: crate::model::id::Topic,
    pub(crate) c_name: CString,
    pub(crate) system: System,
    /// `driftwatch_events_consumed_total{topic}`, looked up once.
    consumed: prometheus::IntCounter,
}

/// Input decoding: JSON, or Avro when the message starts with the
/// Confluent magic byte 0 (no JSON document starts with a NUL byte). Avro
/// schema ids resolve through the `[schemas.ids]` files, then through the
/// schema registry when one is configured.
pub struct InputDecoder {
    schemas: std::sync::RwLock<SchemaSet>,
    registry: Option<crate::codec::registry::Registry>,
    /// Ids the registry did not know, and when it said so.
    unknown: Mutex<HashMap<u32, std::time::Instant>>,
    pub max_message_bytes: usize,
    /// How long the registry may stay unreachable before decoding fails.
    pub registry_patience: Duration,
}

/// How long an id the registry did not know is not asked for again.
const UNKNOWN_ID_TTL: Duration = Duration::from_secs(60);

impl InputDecoder {
    /// A decoder with the configured writer schemas and registry.
    pub fn from_config(cfg: &Config) -> Result<InputDecoder, PipelineError> {
        let mut schemas = SchemaSet::new();
        for (id, path) in &cfg.schemas.ids {
            let text = std::fs::read_to_string(path).map_err(|e| {
                PipelineError::Topology(format!(
                    "config field `schemas.ids.{id}`: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let schema = apache_avro::Schema::parse_str(&text).map_err(|e| {
                PipelineError::Topology(format!(
                    "config field `schemas.ids.{id}`: {} is not an Avro schema: {e}",
                    path.display()
                ))
            })?;
            schemas.insert_writer(*id, schema);
        }
        Ok(InputDecoder {
            schemas: std::sync::RwLock::new(schemas),
            registry: cfg
                .schemas
                .registry_url
                .as_deref()
                .map(crate::codec::registry::Registry::new),
            unknown: Mutex::new(HashMap::new()),
            max_message_bytes: cfg.max_message_bytes,
            registry_patience: Duration::from_secs(60),
        })
    }

    /// The schema id of a Confluent-framed payload that the registry must
    /// be asked for before the payload can be decoded, if any.
    pub fn pending_schema(&self, payload: &[u8]) -> Option<u32> {
        let (Some(_), [0, a, b, c, d, ..]) = (&self.registry, payload) else {
            return None;
        };
        let id = u32::from_be_bytes([*a, *b, *c, *d]);
        if self.schemas.read().expect("schemas lock").contains(id) {
            return None;
        }
        if let Some(at) = self.unknown.lock().expect("unknown lock").get(&id) {
            if at.elapsed() < UNKNOWN_ID_TTL {
                return None;
            }
        }
        Some(id)
    }

    /// Takes a registry answer in; `None` when it is worth asking again.
    fn settle(
        &self,
        id: u32,
        answer: Result<crate::codec::registry::Lookup, String>,
        started: std::time::Instant,
        backoff: Duration,
    ) -> Option<Result<(), PipelineError>> {
        match answer {
            Ok(crate::codec::registry::Lookup::Found(schema)) => {
                tracing::info!(id, "schema fetched from the registry");
                self.schemas
                    .write()
                    .expect("schemas lock")
                    .insert_writer(id, schema);
                Some(Ok(()))
            }
            Ok(crate::codec::registry::Lookup::Unknown) => {
                self.unknown
                    .lock()
                    .expect("unknown lock")
                    .insert(id, std::time::Instant::now());
                Some(Ok(()))
            }
            Err(reason) if started.elapsed() < self.registry_patience => {
                tracing::warn!(
                    id,
                    %reason,
                    "schema registry unavailable; retrying in {} ms",
                    backoff.as_millis()
                );
                None
            }
            Err(reason) => Some(Err(PipelineError::Topology(format!(
                "schema registry unavailable for {}s: {reason}",
                self.registry_patience.as_secs()
            )))),
        }
    }

    /// Asks the registry for schema `id` without blocking the runtime: the
    /// request runs on a blocking thread, and the task sleeps between
    /// attempts. Fails only when the registry stays unreachable for
    /// `registry_patience`: the message is not a dead letter, the pipeline
    /// stops and its offset is not committed.
    pub async fn fetch_schema(&self, id: u32) -> Result<(), PipelineError> {
        let Some(registry) = self.registry.clone() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            let r = registry.clone();
            let answer = tokio::task::spawn_blocking(move || r.lookup(id))
                .await
                .unwrap_or_else(|e| Err(format!("registry lookup failed: {e}")));
            if let Some(done) = self.settle(id, answer, started, backoff) {
                return done;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Makes sure the schema id of a Confluent-framed payload is known,
    /// asking the registry if need be, on this thread: for threads that
    /// may block (restore, replay). As [`InputDecoder::fetch_schema`]
    /// otherwise.
    pub fn ensure_schema(&self, payload: &[u8]) -> Result<(), PipelineError> {
        let (Some(id), Some(registry)) = (self.pending_schema(payload), &self.registry) else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            if let Some(done) = self.settle(id, registry.lookup(id), started, backoff) {
                return done;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    pub fn decode(&self, system: System, payload: &[u8]) -> Result<Event, DecodeError> {
        if payload.len() > self.max_message_bytes {
            return Err(DecodeError::Oversize {
                size: payload.len(),
                limit: self.max_message_bytes,
            });
        }
        match payload.first() {
            Some(0) => self
                .schemas
                .read()
                .expect("schemas lock")
                .decode(system, payload),
            _ => crate::codec::json::decode_json(system, payload),
        }
    }
}

pub(crate) type LiveConsumer = BaseConsumer<Ctx>;

/// What the consumer thread, the rebalance callbacks and the partition
/// tasks share.
pub(crate) struct Shared {
    pub(crate) cfg: Arc<Config>,
    /// Input topics sorted by name: the merge order of ties.
    pub(crate) topics: Vec<InputTopic>,
    index: HashMap<String, usize>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) producer: Producer,
    pub(crate) stats: Arc<LiveStats>,
    pub(crate) decoder: InputDecoder,
    pub(crate) encoder: crate::codec::output::FindingEncoder,
    tasks: Mutex<BTreeMap<i32, task::TaskHandle>>,
    /// Queues split from the consumer's before an assignment took effect,
    /// by (topic index, partition), until their task takes them.
    split: Mutex<HashMap<(usize, i32), PartitionQueue<Ctx>>>,
    /// Exactly-once mode: the transaction gate.
    pub(crate) txn: Option<Txn>,
    /// Next offset to read per (topic index, partition) whose outputs are
    /// all acknowledged and which is not committed yet.
    done: Mutex<BTreeMap<(usize, i32), i64>>,
    fatal: Mutex<Option<PipelineError>>,
    failed: AtomicBool,
    consumer: OnceLock<Weak<LiveConsumer>>,
    /// Restores running at once: a restore is CPU-bound, so more than the
    /// cores can run only thrash, and each opens its own connections.
    pub(crate) restore_slots: Arc<tokio::sync::Semaphore>,
    /// librdkafka's log of the group consumer, each cause once per interval.
    logs: client::LogLimiter,
}

/// Restores allowed at once per core.
const RESTORES_PER_CORE: usize = 2;

impl Shared {
    /// Records the first fatal error; the consumer thread stops on it.
    pub(crate) fn fail(&self, e: PipelineError) {
        tracing::error!(error = %e, "pipeline failed");
        let mut fatal = self.fatal.lock().expect("fatal lock");
        fatal.get_or_insert(e);
        self.failed.store(true, Ordering::SeqCst);
        self.stats.failed.store(true, Ordering::SeqCst);
    }

    /// Marks offsets of one partition as done (acknowledged), all at once.
    pub(crate) fn mark_done(&self, partition: i32, next: &[Option<i64>]) {
        let mut done = self.done.lock().expect("done lock");
        for (q, n) in next.iter().enumerate() {
            if let Some(n) = n {
                done.insert((q, partition), *n);
            }
        }
    }

    /// Commits what is done: in exactly-once mode the open transaction
    /// (outputs and all marked offsets), else the marked offsets of
    /// `partitions` (all when `None`), waiting for the broker.
    fn commit_done(&self, consumer: &LiveConsumer, partitions: Option<&BTreeSet<i32>>) {
        if self.txn.is_some() {
            if let Err(e) = self.commit_transaction(consumer) {
                self.fail(e);
            }
            return;
        }
        let mut tpl = TopicPartitionList::new();
        let mut taken: Vec<((usize, i32), i64)> = Vec::new();
        {
            let mut done = self.done.lock().expect("done lock");
            let keys: Vec<(usize, i32)> = done
                .keys()
                .copied()
                .filter(|(_, p)| partitions.is_none_or(|set| set.contains(p)))
                .collect();
            for k in keys {
                let next = done.remove(&k).expect("key listed");
                let _ = tpl.add_partition_offset(&self.topics[k.0].name, k.1, Offset::Offset(next));
                taken.push((k, next));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // Synchronous: a failed commit puts its marks back to be tried again
        // (unless newer ones arrived meanwhile).
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(error = %e, "offset commit failed; retrying at the next interval");
            let mut done = self.done.lock().expect("done lock");
            for (k, next) in taken {
                done.entry(k).or_insert(next);
            }
        }
    }

    fn take_marks(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let mut done = self.done.lock().expect("done lock");
        for ((q, p), next) in std::mem::take(&mut *done) {
            let _ = tpl.add_partition_offset(&self.topics[q].name, p, Offset::Offset(next));
        }
        tpl
    }

    /// Commits the open transaction with the marked offsets and opens the
    /// next. Waits for the batches in progress.
    fn commit_transaction(&self, consumer: &LiveConsumer) -> Result<(), PipelineError> {
        let txn = self.txn.as_ref().expect("exactly-once mode");
        if self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _gate = txn.gate.blocking_write();
        let tpl = self.take_marks();
        if tpl.count() == 0 && !txn.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        txn.dirty.store(false, Ordering::SeqCst);
        let timeout = Duration::from_secs(60);
        if tpl.count() > 0 {
            let group = consumer.group_metadata().ok_or_else(|| {
                PipelineError::Topology("exactly_once: the consumer has no group metadata".into())
            })?;
            self.producer
                .send_offsets_to_transaction(&tpl, &group, timeout)?;
        }
        self.producer.commit_transaction(timeout)?;
        self.producer.begin_transaction()?;
        tracing::debug!(offsets = tpl.count(), "transaction committed");
        Ok(())
    }

    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.index.get(topic).copied()
    }

    /// Stops the tasks of `partitions` (all when `None`) and waits until each
    /// has published what it applied and stored its offsets.
    fn stop_tasks(&self, partitions: Option<&BTreeSet<i32>>) {
        let handles: Vec<task::TaskHandle> = {
            let mut tasks = self.tasks.lock().expect("tasks lock");
            let keys: Vec<i32> = tasks
                .keys()
                .copied()
                .filter(|p| partitions.is_none_or(|set| set.contains(p)))
                .collect();
            keys.iter().filter_map(|p| tasks.remove(p)).collect()
        };
        if handles.is_empty() {
            return;
        }
        {
            let mut owned = self.stats.partitions.lock().expect("stats lock");
            for h in &handles {
                owned.remove(&h.partition);
            }
            self.stats
                .metrics
                .partitions_assigned
                .set(owned.len() as i64);
            self.stats.set_unassigned(owned.is_empty());
        }
        self.runtime.block_on(async {
            for h in handles {
                h.stop().await;
            }
        });
    }
}

/// Exactly-once mode: tasks hold the gate for reading while they apply a
/// batch, produce its outputs and mark its offsets; the committer takes it
/// for writing, so a transaction always holds whole batches.
pub(crate) struct Txn {
    pub(crate) gate: tokio::sync::RwLock<()>,
    /// Something was produced or marked since the last commit.
    pub(crate) dirty: AtomicBool,
}

/// The consumer's context: rebalance callbacks and librdkafka's log.
pub(crate) struct Ctx {
    shared: Arc<Shared>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.shared.logs.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.shared
                .stats
                .brokers_down
                .store(true, Ordering::Relaxed);
        }
        self.shared.logs.error(&error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let lag = &self.shared.stats.metrics.consumer_lag;
        for (name, topic) in &statistics.topics {
            if self.shared.topic_index(name).is_none() {
                continue;
            }
            for (p, part) in &topic.partitions {
                // -1 is librdkafka's internal partition; a negative lag is unknown.
                if *p >= 0 && part.consumer_lag >= 0 {
                    lag.with_label_values(&[name, &p.to_string()])
                        .set(part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &LiveConsumer, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // Split before the assignment starts the fetchers, so that no
            // message of these partitions reaches the consumer's queue.
            if let Err(e) = self.split_queues(tpl) {
                self.shared.fail(e);
            }
        }
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if parts.is_empty() {
                tracing::info!("rebalance: revocation of no partition");
            } else {
                tracing::info!(
                    "rebalance: revoked partitions {}; publishing, committing and dropping their state",
                    list(&parts)
                );
            }
            self.shared.stop_tasks(Some(&parts));
            if !consumer.assignment_lost() {
                self.shared.commit_done(consumer, Some(&parts));
            }
            // Someone else owns them now: what did not commit must not
            // overwrite their commits later.
            self.shared
                .done
                .lock()
                .expect("done lock")
                .retain(|(_, p), _| !parts.contains(p));
        }
    }

    fn post_rebalance(&self, consumer: &LiveConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.shared.stats.rebalances.fetch_add(1, Ordering::Relaxed);
                self.shared.stats.metrics.rebalances.inc();
                let parts: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                if parts.is_empty() {
                    tracing::info!(
                        group = %self.shared.cfg.kafka.group_id,
                        "rebalance: assignment of no partition (the group has at least as many members as partitions, or is still settling); waiting for the next rebalance"
                    );
                } else {
                    tracing::info!("rebalance: assigned partitions {}", list(&parts));
                }
                if let Err(e) = self.on_assign(consumer, tpl) {
                    self.shared.fail(e);
                }
            }
            Rebalance::Revoke(_) => {
                self.shared.stats.rebalances.fetch_add(1, Ordering::Relaxed);
                self.shared.stats.metrics.rebalances.inc();
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

impl Ctx {
    fn split_queues(&self, tpl: &TopicPartitionList) -> Result<(), PipelineError> {
        let shared = &self.shared;
        let Some(live) = shared.consumer.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let mut split = shared.split.lock().expect("split lock");
        for e in tpl.elements() {
            let Some(q) = shared.topic_index(e.topic()) else {
                continue;
            };
            let queue = live
                .split_partition_queue(e.topic(), e.partition())
                .ok_or_else(|| {
                    PipelineError::Topology(format!(
                        "cannot read {} [{}] on its own queue",
                        e.topic(),
                        e.partition()
                    ))
                })?;
            split.insert((q, e.partition()), queue);
        }
        Ok(())
    }

    fn on_assign(
        &self,
        consumer: &LiveConsumer,
        tpl: &TopicPartitionList,
    ) -> Result<(), PipelineError> {
        let shared = &self.shared;
        // The queues hold the consumer: none may outlive this call untaken.
        let mut split = std::mem::take(&mut *shared.split.lock().expect("split lock"));
        let Some(live) = shared.consumer.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        if tpl.count() == 0 {
            return Ok(());
        }
        // The live partitions wait while their state is restored.
        consumer.pause(tpl)?;
        let committed = consumer.committed_offsets(tpl.clone(), Duration::from_secs(30))?;
        let mut by_partition: BTreeMap<i32, Vec<Option<i64>>> = BTreeMap::new();
        for e in committed.elements() {
            let Some(q) = shared.topic_index(e.topic()) else {
                continue;
            };
            let slot = by_partition
                .entry(e.partition())
                .or_insert_with(|| vec![None; shared.topics.len()]);
            slot[q] = match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            };
        }
        let committed: Vec<String> = by_partition
            .iter()
            .map(|(p, offsets)| {
                let per_topic: Vec<String> = offsets
                    .iter()
                    .enumerate()
                    .map(|(q, o)| match o {
                        Some(o) => format!("{}@{o}", shared.topics[q].name),
                        None => format!("{}@none", shared.topics[q].name),
                    })
                    .collect();
                format!("partition {p}: {}", per_topic.join(" "))
            })
            .collect();
        tracing::info!(
            "restoring state up to the committed offsets ({})",
            committed.join("; ")
        );
        let mut tasks = shared.tasks.lock().expect("tasks lock");
        let mut owned = shared.stats.partitions.lock().expect("stats lock");
        for (p, offsets) in by_partition {
            let queues = (0..shared.topics.len())
                .map(|q| {
                    split.remove(&(q, p)).ok_or_else(|| {
                        PipelineError::Topology(format!(
                            "{} [{p}] was assigned without its queue",
                            shared.topics[q].name
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            tasks.insert(
                p,
                task::spawn(shared.clone(), live.clone(), p, offsets, queues),
            );
            owned.insert(p);
        }
        shared
            .stats
            .metrics
            .partitions_assigned
            .set(owned.len() as i64);
        shared.stats.set_unassigned(owned.is_empty());
        Ok(())
    }
}

/// Partition numbers as text: "0, 1, 2".
fn list(parts: &BTreeSet<i32>) -> String {
    parts
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that every input topic exists with the same partition count and
/// that the output topics exist; returns the partition count.
pub fn check_topics<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    cfg: &Config,
) -> Result<i32, PipelineError> {
    let counts = topic_counts(client, cfg)?;
    let missing: Vec<String> = all_topics(cfg)
        .into_iter()
        .filter(|t| !counts.contains_key(t.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(PipelineError::Topology(format!(
            "topics missing on {}: {}; create them (`driftwatch create-topics --config FILE`) or fix [topics] in the config",
            cfg.kafka.bootstrap_servers,
            missing.join(", ")
        )));
    }
    let t = &cfg.topics;
    let inputs: Vec<(&str, usize)> =
        t.hr.iter()
            .chain(&t.directory)
            .chain(&t.app)
            .map(|n| (n.as_str(), counts[n.as_str()]))
            .collect();
    let first = inputs[0].1;
    if inputs.iter().any(|(_, n)| *n != first) {
        let list: Vec<String> = inputs.iter().map(|(n, c)| format!("{n}={c}")).collect();
        return Err(PipelineError::Topology(format!(
            "input topics are not co-partitioned ({}): a worker's HR, directory and app events must land in the same partition number; give every input topic the same partition count and the same key (worker_id)",
            list.join(", ")
        )));
    }
    Ok(first as i32)
}

/// Runs the detector until `shutdown` turns true or a fatal error occurs.
pub async fn run(
    cfg: Arc<Config>,
    stats: Arc<LiveStats>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let mut topics: Vec<InputTopic> = Vec::new();
    for (system, list) in [
        (System::Hr, &cfg.topics.hr),
        (System::Directory, &cfg.topics.directory),
        (System::App, &cfg.topics.app),
    ] {
        for name in list {
            topics.push(InputTopic {
                name: name.as_str().into(),
                id: crate::model::id::Topic::new(name),
                c_name: CString::new(name.as_str()).expect("topic names hold no NUL"),
                system,
                consumed: stats.metrics.events_consumed.with_label_values(&[name]),
            });
        }
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let index = topics
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.to_string(), i))
        .collect();
    let exactly_once = cfg.kafka.delivery == Delivery::ExactlyOnce;
    let producer = if exactly_once {
        let p = transactional_producer(&cfg)?;
        tokio::task::block_in_place(|| {
            p.init_transactions(Duration::from_secs(60))?;
            p.begin_transaction()
        })
        .map_err(|e| {
            PipelineError::Topology(format!(
                "kafka.delivery = exactly_once needs a broker with transactions (Apache Kafka 2.5 or later): {e}"
            ))
        })?;
        p
    } else {
        producer(&cfg)?
    };
    let shared = Arc::new(Shared {
        decoder: InputDecoder::from_config(&cfg)?,
        encoder: crate::codec::output::FindingEncoder::new(cfg.output),
        producer,
        txn: exactly_once.then(|| Txn {
            gate: tokio::sync::RwLock::new(()),
            dirty: AtomicBool::new(false),
        }),
        topics,
        index,
        runtime: tokio::runtime::Handle::current(),
        stats,
        tasks: Mutex::new(BTreeMap::new()),
        split: Mutex::new(HashMap::new()),
        done: Mutex::new(BTreeMap::new()),
        fatal: Mutex::new(None),
        failed: AtomicBool::new(false),
        consumer: OnceLock::new(),
        restore_slots: Arc::new(tokio::sync::Semaphore::new(
            RESTORES_PER_CORE * std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        logs: client::LogLimiter::default(),
        cfg: cfg.clone(),
    });
    let partitions = tokio::task::block_in_place(|| check_topics(shared.producer.client(), &cfg))?;
    let mut consumer_config = client_config(&cfg, Role::Consumer);
    // Each assigned topic-partition has its own queue, and librdkafka's
    // prefetch limits apply to each (at its defaults they applied to the
    // consumer's one queue). Its default total, 64 MiB, is shared among the
    // input partitions, but at least 8 MiB each: a broker that answers a
    // fetch late (Tansu, at the fetch wait) empties a small queue long
    // before the next fetch (2 MiB each halved the detector's rate there).
    let queue_kib = (65_536 / (partitions.max(1) as usize * shared.topics.len())).max(8_192);
    for (key, value) in [
        ("statistics.interval.ms", "5000".to_string()),
        ("queued.max.messages.kbytes", queue_kib.to_string()),
    ] {
        if !cfg.kafka.librdkafka.contains_key(key) {
            consumer_config.set(key, value);
        }
    }
    let consumer: LiveConsumer = create_client(
        &cfg,
        consumer_config
            .set("group.id", &cfg.kafka.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "range"),
        Ctx {
            shared: shared.clone(),
        },
    )?;
    let consumer = Arc::new(consumer);
    let _ = shared.consumer.set(Arc::downgrade(&consumer));
    tracing::info!(
        bootstrap = %cfg.kafka.bootstrap_servers,
        group = %cfg.kafka.group_id,
        partitions,
        "input topics are co-partitioned; joining the group"
    );
    *shared.stats.unassigned_warning.lock().expect("stats lock") =
        Some(Duration::from_millis(cfg.kafka.unassigned_warning_ms));
    shared.stats.set_unassigned(true);
    let names: Vec<&str> = shared.topics.iter().map(|t| &*t.name).collect();
    consumer.subscribe(&names)?;

    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread = {
        let shared = shared.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("driftwatch-consumer".into())
            .spawn(move || {
                consume(&shared, consumer, &stop);
                let _ = done_tx.send(());
            })
            .expect("spawn the consumer thread")
    };
    let mut done_rx = done_rx;
    // The consumer thread ends on its own after a fatal error.
    let ended = tokio::select! {
        _ = shutdown.changed() => false,
        _ = &mut done_rx => true,
    };
    stop.store(true, Ordering::SeqCst);
    if !ended {
        let _ = done_rx.await;
    }
    let _ = thread.join();
    let fatal = shared.fatal.lock().expect("fatal lock").take();
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What the consumer thread reports as it goes: a progress line while
/// there is work, and a warning while this member holds no partition.
struct Watch {
    last_progress: std::time::Instant,
    events: u64,
    findings: u64,
    last_unassigned_warning: Option<std::time::Instant>,
    warn_every: Duration,
}

/// How often `run` logs its progress while it works.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

impl Watch {
    fn new(cfg: &Config) -> Watch {
        Watch {
            last_progress: std::time::Instant::now(),
            events: 0,
            findings: 0,
            last_unassigned_warning: None,
            warn_every: Duration::from_millis(cfg.kafka.unassigned_warning_ms),
        }
    }

    fn tick(&mut self, stats: &LiveStats) {
        match stats.unassigned_too_long() {
            Some(held) => {
                if self
                    .last_unassigned_warning
                    .is_none_or(|t| t.elapsed() >= self.warn_every)
                {
                    self.last_unassigned_warning = Some(std::time::Instant::now());
                    tracing::warn!(
                        "this detector has held no partition for {} s: the group has at least as many members as input partitions, or its rebalance is stuck (is another member failing to join?); /readyz reports not ready",
                        held.as_secs()
                    );
                }
            }
            None => self.last_unassigned_warning = None,
        }
        let elapsed = self.last_progress.elapsed();
        if elapsed < PROGRESS_EVERY {
            return;
        }
        self.last_progress = std::time::Instant::now();
        let events = stats.events.load(Ordering::Relaxed);
        let findings = stats.findings.load(Ordering::Relaxed);
        let lag: i64 = prometheus::core::Collector::collect(&stats.metrics.consumer_lag)
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_gauge().get_value() as i64)
            .sum();
        if events == self.events && lag == 0 {
            return;
        }
        let rate = (events - self.events) as f64 / elapsed.as_secs_f64();
        tracing::info!(
            "progress: {} events applied ({rate:.0}/s over the last {} s), {} behind the end of the input topics, {} finding transitions published ({} since the last line), {} partitions owned",
            events,
            elapsed.as_secs(),
            plural(lag.max(0) as u64, "message"),
            findings,
            findings - self.findings,
            stats.metrics.partitions_assigned.get()
        );
        self.events = events;
        self.findings = findings;
    }
}

/// "1 message", "2 messages".
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The consumer thread: poll for events (rebalances run here), commit
/// every `kafka.commit_interval`, and on stop drain the tasks, commit and
/// leave the group.
fn consume(shared: &Arc<Shared>, consumer: Arc<LiveConsumer>, stop: &AtomicBool) {
    let interval = Duration::from_millis(shared.cfg.kafka.commit_interval_ms);
    let mut last_commit = std::time::Instant::now();
    // A message that reached this queue: its offset must not be committed past.
    let mut missed: Option<(usize, i32, i64)> = None;
    let mut watch = Watch::new(&shared.cfg);
    while !stop.load(Ordering::SeqCst) && !shared.failed.load(Ordering::SeqCst) {
        watch.tick(&shared.stats);
        if last_commit.elapsed() >= interval {
            shared.commit_done(&consumer, None);
            last_commit = std::time::Instant::now();
            shared
                .stats
                .metrics
                .producer_queue
                .set(i64::from(shared.producer.in_flight_count()));
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = match result {
            Ok(m) => m,
            Err(KafkaError::MessageConsumptionFatal(code)) => {
                shared.fail(PipelineError::Kafka(KafkaError::MessageConsumptionFatal(
                    code,
                )));
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "consume error (librdkafka retries)");
                continue;
            }
        };
        let (Some(q), partition) = (shared.topic_index(msg.topic()), msg.partition()) else {
            continue;
        };
        if !shared
            .tasks
            .lock()
            .expect("tasks lock")
            .contains_key(&partition)
        {
            tracing::warn!(
                topic = msg.topic(),
                partition,
                "message of a partition with no task; it is read again by its owner"
            );
            continue;
        }
        // Every assigned partition is read from its own queue, split before
        // the assignment started fetching: a message here would be missed
        // by its task, and committing past it would lose it.
        shared.fail(PipelineError::Topology(format!(
            "{} [{partition}] offset {} arrived on the consumer's queue instead of its partition's; stopping without committing past it",
            msg.topic(),
            msg.offset()
        )));
        missed = Some((q, partition, msg.offset()));
        break;
    }
    shared.stop_tasks(None);
    shared.split.lock().expect("split lock").clear();
    if let Some((q, partition, offset)) = missed {
        shared
            .done
            .lock()
            .expect("done lock")
            .retain(|&(dq, dp), next| !(dq == q && dp == partition && *next > offset));
    }
    shared.commit_done(&consumer, None);
    if shared.txn.is_some() && shared.failed.load(Ordering::SeqCst) {
        // What the failed transaction holds must not become visible.
        if let Err(e) = shared.producer.abort_transaction(Duration::from_secs(30)) {
            tracing::warn!(error = %e, "aborting the transaction failed");
        }
    }
    consumer.unsubscribe();
    // Dropping the last handle closes the consumer and leaves the group.
    drop(consumer);
}
