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

mod batch;
mod changelog;
pub mod client;
mod error;
mod group;
mod input;
mod publish;
pub mod replay;
mod restore;
mod task;
mod topics;

pub use crate::ops::live::LiveStats;
pub use client::{client_config, Logs, PlainConsumer, Producer, Role};
pub use error::PipelineError;
pub use input::InputDecoder;
pub use publish::{dead_letter_headers, produce_events, topic_for, FindingsPublisher};
/// The most input records a partition task applies between two publishes
/// (a batch).
pub use task::MAX_BATCH;
pub use topics::{
    all_topics, check_topics, create_topics, input_topics, require_topics, TopicOutcome,
};

use group::{Ctx, LiveConsumer, Shared, Txn, RESTORES_PER_CORE};
use input::InputTopic;

use crate::codec::avro::SchemaSet;
use crate::codec::json::DecodeError;
use crate::config::{Config, Delivery};
use crate::model::event::{Event, System};
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

/// Creates a librdkafka client. librdkafka's configuration errors quote
/// the offending value, so they pass through [`Config::redact`].
pub fn create_client<T: rdkafka::config::FromClientConfigAndContext<C>, C: ClientContext>(
    cfg: &Config,
    config: &ClientConfig,
    context: C,
) -> Result<T, PipelineError> {
    config
        .create_with_context(context)
        .map_err(|e| PipelineError::Config(format!("kafka client: {}", cfg.redact(&e.to_string()))))
}

/// A producer of input events (`demo`, `generate`, the load harness):
/// keyed records go where `kafka.partitioner` puts their key, so events
/// keyed by their correlation key land in their key's partition.
pub fn producer(cfg: &Config) -> Result<Producer, PipelineError> {
    let context = Logs::default();
    create_client(
        cfg,
        producer_config(cfg, &context)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("partitioner", cfg.kafka.partitioner.librdkafka_name()),
        context,
    )
}

/// A producer's configuration; one whose context watches the brokers gets
/// statistics (its own polling thread reads them, so an outage shows while
/// the consumer waits in a rebalance or on a full output).
fn producer_config(cfg: &Config, context: &Logs) -> ClientConfig {
    let mut config = client_config(cfg, Role::Producer);
    if context.watches() && !cfg.kafka.librdkafka.contains_key("statistics.interval.ms") {
        config.set("statistics.interval.ms", client::WATCH_STATISTICS_MS);
    }
    config
}

fn producer_with(cfg: &Config, context: Logs) -> Result<Producer, PipelineError> {
    create_client(
        cfg,
        producer_config(cfg, &context)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5"),
        context,
    )
}

/// The exactly-once producer: transactional, with an id unique to this
/// process (fencing of zombies comes from the consumer group generation
/// sent with the offsets, KIP-447).
fn transactional_producer(cfg: &Config, context: Logs) -> Result<Producer, PipelineError> {
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
        producer_config(cfg, &context)
            .set("transactional.id", &id)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5"),
        context,
    )
}

/// Runs the detector until `shutdown` turns true or a fatal error occurs.
/// A counter no registry exports.
fn unexported_counter() -> prometheus::IntCounter {
    prometheus::IntCounter::new("driftwatch_unexported", "not exported").expect("a valid name")
}

pub async fn run(
    cfg: Arc<Config>,
    stats: Arc<LiveStats>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let routed = cfg.kafka.route_by == crate::config::RouteBy::Payload;
    // Records outside their key's partition: moved, or joined apart.
    let outside = if routed {
        &stats.metrics.records_moved
    } else {
        &stats.metrics.records_misplaced
    };
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
                misplaced: outside.with_label_values(&[name]),
            });
        }
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    // Routing by payload: the repartition topic is read beside the inputs
    // (its records are not merged with them), after them.
    let repartition = routed.then(|| {
        let name = &cfg.topics.repartition;
        topics.push(InputTopic {
            name: name.as_str().into(),
            id: crate::model::id::Topic::new(name),
            c_name: CString::new(name.as_str()).expect("topic names hold no NUL"),
            system: System::Hr,
            // Not input: counted by neither input metric.
            consumed: unexported_counter(),
            misplaced: unexported_counter(),
        });
        topics.len() - 1
    });
    let index = topics
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.to_string(), i))
        .collect();
    let exactly_once = cfg.kafka.delivery == Delivery::ExactlyOnce;
    let producer = if exactly_once {
        let p = transactional_producer(&cfg, Logs::watching(stats.producer_brokers_down.clone()))?;
        tokio::task::block_in_place(|| {
            p.init_transactions(Duration::from_secs(60))?;
            p.begin_transaction()
        })
        .map_err(|e| {
            // A broker without transactions needs another setting; any other
            // failure (no broker answering, a coordinator not ready) passes.
            let unsupported = matches!(
                e.rdkafka_error_code(),
                Some(RDKafkaErrorCode::UnsupportedVersion | RDKafkaErrorCode::UnsupportedFeature)
            );
            if unsupported {
                PipelineError::Config(format!(
                    "kafka.delivery = exactly_once needs a broker with transactions (Apache Kafka 2.5 or later): {e}"
                ))
            } else {
                PipelineError::Kafka(e)
            }
        })?;
        p
    } else {
        producer_with(&cfg, Logs::watching(stats.producer_brokers_down.clone()))?
    };
    // Avro findings with a registry and no configured id: the id the
    // registry gives schemas/finding.avsc under `<findings topic>-value`.
    let output = tokio::task::block_in_place(|| {
        crate::codec::registry::settle_output(&cfg, &cfg.topics.findings)
    })
    .map_err(|e| {
        let text = cfg.redact(&e.to_string());
        if e.retryable() {
            PipelineError::Registry(text)
        } else {
            // Refused (an incompatible schema, a subject it will not take):
            // a restart would be refused the same.
            PipelineError::Config(text)
        }
    })?;
    let partitions = tokio::task::block_in_place(|| check_topics(producer.client(), &cfg))?;
    if routed {
        tracing::info!(
            partitioner = cfg.kafka.partitioner.as_str(),
            repartition = %cfg.topics.repartition,
            "routing by payload: each record is applied in the partition kafka.partitioner gives its correlation key; records found elsewhere move there through the repartition topic and are counted in driftwatch_input_records_moved_total; an account whose key changes leaves its old key in any partition"
        );
    } else {
        tracing::info!(
            partitioner = cfg.kafka.partitioner.as_str(),
            "the join expects each record in the partition kafka.partitioner gives its payload's correlation key; records found elsewhere are counted in driftwatch_input_records_misplaced_total, and an account whose key changes leaves its old key only within one partition (kafka.route_by = \"payload\" moves records and accounts across partitions)"
        );
    }
    let restore_slots =
        RESTORES_PER_CORE * std::thread::available_parallelism().map_or(1, |n| n.get());
    let shared = Arc::new(Shared {
        decoder: InputDecoder::from_config(&cfg)?,
        partitions,
        repartition,
        encoder: crate::codec::output::FindingEncoder::new(output),
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
        restore_slots: Arc::new(tokio::sync::Semaphore::new(restore_slots)),
        changelog_readers: restore::Readers::new(restore_slots),
        logs: client::LogLimiter::default(),
        lost: Mutex::new(std::collections::BTreeSet::new()),
        cfg: cfg.clone(),
    });
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
    // Static membership for the group consumer only: the restore and
    // replay consumers are not members of this group.
    if let Some(id) = &cfg.kafka.group_instance_id {
        consumer_config.set("group.instance.id", id);
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
        instance = %cfg.kafka.group_instance_id.as_deref().unwrap_or("none (dynamic member)"),
        partitions,
        "input topics are co-partitioned; joining the group"
    );
    *shared.stats.unassigned_warning.lock().expect("stats lock") =
        Some(Duration::from_millis(cfg.kafka.unassigned_warning_ms));
    shared.stats.set_unassigned(true);
    let names: Vec<&str> = shared.topics.iter().map(|t| &*t.name).collect();
    consumer.subscribe(&names)?;
    // Readers of the state changelog for the first restores, made while
    // the consumer joins its group.
    let preparing = cfg.state_changelog.then(|| {
        let (shared, n) = (
            shared.clone(),
            restore_slots.min(partitions.max(1) as usize),
        );
        tokio::task::spawn_blocking(move || shared.changelog_readers.prepare(&shared.cfg, n))
    });

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
    // Closing a consumer with a group id waits for the group: the idle
    // changelog readers close together, off this thread (once the one
    // being prepared, if any, is made: at most a second).
    let readers = shared.changelog_readers.close();
    if let Some(preparing) = preparing {
        if let Err(e) = preparing.await {
            tracing::warn!(error = %e, "preparing the state changelog readers failed");
        }
    }
    if !readers.is_empty() {
        let _ = tokio::task::spawn_blocking(move || {
            std::thread::scope(|s| {
                for r in readers {
                    s.spawn(move || drop(r));
                }
            })
        })
        .await;
    }
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
        shared.fail(PipelineError::Client(format!(
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
