//! The Kafka shell around the engine: one consumer group over the input
//! topics, one engine per assigned partition, findings and dead letters
//! produced back to Kafka.
//!
//! Offsets (at-least-once): auto-commit is on but `enable.auto.offset.store`
//! is off; a message's offset is stored only after every finding (or the
//! dead letter) it produced is acknowledged by the broker, in order per
//! partition, so nothing is committed before its findings are safe.
//!
//! This is the first step of the pipeline: state restore on assignment,
//! co-partitioning checks, Avro input and exactly-once mode come next.

use crate::config::Config;
use crate::decode::{decode_json_limited, DEFAULT_MAX_MESSAGE_BYTES};
use crate::engine::Engine;
use crate::event::{Envelope, Origin, System};
use crate::finding::{Finding, OwnerRole, Status};
use crate::rules::Rule;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("publishing to {topic} failed: {reason}")]
    Publish { topic: String, reason: String },
}

/// Counters shared with whoever reports on the pipeline.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub events: AtomicU64,
    pub dead_letters: AtomicU64,
    pub findings: AtomicU64,
    /// Transitions by rule, contributing owner role and status.
    pub by_rule: Mutex<BTreeMap<(Rule, OwnerRole, Status), u64>>,
    /// The most recent transitions, newest last.
    pub recent: Mutex<Vec<Finding>>,
}

const RECENT: usize = 200;

impl LiveStats {
    fn record(&self, f: &Finding) {
        self.findings.fetch_add(1, Ordering::Relaxed);
        *self
            .by_rule
            .lock()
            .expect("stats lock")
            .entry((f.rule, f.contributing_owner.role, f.status))
            .or_default() += 1;
        let mut recent = self.recent.lock().expect("stats lock");
        if recent.len() == RECENT {
            recent.remove(0);
        }
        recent.push(f.clone());
    }
}

/// Where and how the pipeline connects.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub bootstrap: String,
    pub group_id: String,
    /// librdkafka settings passed through as they are.
    pub librdkafka: BTreeMap<String, String>,
}

fn client_config(opts: &PipelineOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &opts.bootstrap);
    for (k, v) in &opts.librdkafka {
        c.set(k, v);
    }
    c
}

/// A producer for findings, dead letters and generated events.
pub fn producer(opts: &PipelineOptions) -> Result<FutureProducer, PipelineError> {
    Ok(client_config(opts)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?)
}

/// Runs the detector until `shutdown` turns true.
pub async fn run(
    cfg: Arc<Config>,
    opts: PipelineOptions,
    stats: Arc<LiveStats>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let consumer: StreamConsumer = client_config(&opts)
        .set("group.id", &opts.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let producer = producer(&opts)?;
    let mut families: HashMap<String, (System, Arc<str>)> = HashMap::new();
    for (system, list) in [
        (System::Hr, &cfg.topics.hr),
        (System::Directory, &cfg.topics.directory),
        (System::App, &cfg.topics.app),
    ] {
        for t in list {
            families.insert(t.clone(), (system, t.as_str().into()));
        }
    }
    let topics: Vec<&str> = families.keys().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let mut engines: HashMap<i32, Engine> = HashMap::new();
    let mut out: Vec<Finding> = Vec::new();
    loop {
        let msg = tokio::select! {
            _ = shutdown.changed() => break,
            m = consumer.recv() => m?,
        };
        let Some((system, topic)) = families.get(msg.topic()).cloned() else {
            continue;
        };
        let origin = Origin {
            topic,
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let payload = msg.payload().unwrap_or_default();
        match decode_json_limited(system, payload, DEFAULT_MAX_MESSAGE_BYTES) {
            Ok(event) => {
                stats.events.fetch_add(1, Ordering::Relaxed);
                let engine = engines
                    .entry(origin.partition)
                    .or_insert_with(|| Engine::new(cfg.clone()));
                engine.apply(Envelope { origin, event }, &mut out);
                publish_findings(&producer, &cfg.topics.findings, &mut out, &stats).await?;
            }
            Err(e) => {
                let partition = msg.partition().to_string();
                let offset = msg.offset().to_string();
                let reason = e.to_string();
                let mut headers = OwnedHeaders::new();
                for (key, value) in [
                    ("dw.error.type", e.error_type()),
                    ("dw.error.reason", reason.as_str()),
                    ("dw.source.topic", msg.topic()),
                    ("dw.source.partition", partition.as_str()),
                    ("dw.source.offset", offset.as_str()),
                ] {
                    headers = headers.insert(Header {
                        key,
                        value: Some(value),
                    });
                }
                let mut record = FutureRecord::to(&cfg.topics.dead_letter)
                    .payload(payload)
                    .headers(headers);
                if let Some(k) = msg.key() {
                    record = record.key(k);
                }
                producer
                    .send(record, Timeout::Never)
                    .await
                    .map_err(|(err, _)| publish_error(&cfg.topics.dead_letter, err))?;
                stats.dead_letters.fetch_add(1, Ordering::Relaxed);
            }
        }
        consumer.store_offset_from_message(&msg)?;
    }
    // Every message's findings were published before its offset was stored:
    // commit what was stored, and say so if that fails.
    if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        tracing::warn!(error = %e, "final offset commit failed; the next owner re-reads from the last commit");
    }
    Ok(())
}

fn publish_error(topic: &str, reason: impl ToString) -> PipelineError {
    PipelineError::Publish {
        topic: topic.to_string(),
        reason: reason.to_string(),
    }
}

/// Queues one record, waiting while the producer queue is full
/// (backpressure), and returns its delivery future.
async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> Result<DeliveryFuture, PipelineError> {
    loop {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err((e, _)) => return Err(publish_error(topic, e)),
        }
    }
}

/// Waits for the broker's acknowledgement of one queued record.
async fn confirm(topic: &str, delivery: DeliveryFuture) -> Result<(), PipelineError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(publish_error(topic, e)),
        Err(_) => Err(publish_error(topic, "producer dropped the delivery")),
    }
}

/// Publishes the transitions in `out`, keyed by finding_id, and waits for
/// every acknowledgement before returning.
async fn publish_findings(
    producer: &FutureProducer,
    topic: &str,
    out: &mut Vec<Finding>,
    stats: &LiveStats,
) -> Result<(), PipelineError> {
    let mut pending = Vec::with_capacity(out.len());
    for f in out.iter() {
        pending.push(enqueue(producer, topic, &f.finding_id, f.to_json().as_bytes()).await?);
    }
    for (f, delivery) in out.iter().zip(pending) {
        confirm(topic, delivery).await?;
        stats.record(f);
    }
    out.clear();
    Ok(())
}

/// Produces events to their family's first topic, keyed by correlation key.
pub async fn produce_events(
    producer: &FutureProducer,
    cfg: &Config,
    events: &[crate::event::Event],
) -> Result<(), PipelineError> {
    let mut pending = Vec::with_capacity(events.len());
    for e in events {
        let topic = match e.system() {
            System::Hr => &cfg.topics.hr[0],
            System::Directory => &cfg.topics.directory[0],
            System::App => &cfg.topics.app[0],
        };
        let payload = crate::generate::to_json(e);
        pending.push((
            topic,
            enqueue(producer, topic, &e.key().id, payload.as_bytes()).await?,
        ));
    }
    for (topic, delivery) in pending {
        confirm(topic, delivery).await?;
    }
    Ok(())
}
