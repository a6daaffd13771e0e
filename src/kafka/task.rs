//! One partition task: partition `p` of every input topic, one engine.
//!
//! The task first restores its engine (see [`super::restore`]), then resumes the
//! live partitions and loops: read each topic's records from its own
//! librdkafka queue when the merge has none of that topic left ([`Inputs`]),
//! decode them, merge the topics by event time ([`crate::detect::merge`]), apply,
//! and queue the findings and dead letters of each batch to the producer.
//! When nothing can be applied it sleeps until librdkafka puts a record in
//! an empty queue (the queue's non-empty callback), a stop, or a 20 ms
//! tick. A second task,
//! the confirmer, waits for the broker's acknowledgements batch by batch, in
//! order, and only then stores the batch's offsets: an offset is never
//! stored before everything it caused is safe.
//!
//! When a topic of the partition has nothing left, in the merge or in its
//! queue, the task takes the next record without it only if the topic is
//! caught up (librdkafka's cached high watermark is not beyond what was
//! read) or has kept the others waiting longer than `kafka.max_task_idle`.

use super::publish::{confirm, dead_letter_headers, enqueue};
use super::restore::restore;
use super::{Ctx, LiveConsumer, PipelineError, Shared};
use crate::codec::json::DecodeError;
use crate::detect::merge::{Merge, Timed};
use crate::model::event::{Envelope, Origin};
use crate::model::finding::Finding;
use crate::model::time::Ts;
use crate::ops::metrics::{OwnerBook, TeamLabels};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::DeliveryFuture;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tracing::Instrument;

/// A message that could not be decoded, on its way to the dead-letter topic.
struct Bad {
    error: DecodeError,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// Events are the common case: not boxed, so decoding does not allocate twice.
#[allow(clippy::large_enum_variant)]
enum Item {
    Event(Envelope, Instant),
    Bad(Box<Bad>),
}

impl Timed for Item {
    fn order_time(&self) -> Option<Ts> {
        match self {
            Item::Event(env, _) => env.order_time(),
            Item::Bad(_) => None,
        }
    }
}

/// What a queued record is, for the confirmer. Findings are the common
/// case: not boxed.
#[allow(clippy::large_enum_variant)]
enum Output {
    /// A finding transition and when the message that caused it arrived.
    Finding(Finding, Instant),
    DeadLetter,
}

/// What the consumer thread holds of a running task.
pub(crate) struct TaskHandle {
    pub(crate) partition: i32,
    stop: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
}

impl TaskHandle {
    /// Asks the task to stop and waits until it has published what it
    /// applied and stored the offsets.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
    }
}

/// Records read from a topic's queue at a time, when the merge needs it.
const REFILL: usize = 64;
/// Records applied between two publishes.
const MAX_BATCH: usize = 1024;
/// Batches queued to the producer but not yet acknowledged.
const IN_FLIGHT_BATCHES: usize = 64;

pub(crate) fn spawn(
    shared: Arc<Shared>,
    consumer: Arc<LiveConsumer>,
    partition: i32,
    committed: Vec<Option<i64>>,
    queues: Vec<PartitionQueue<Ctx>>,
) -> TaskHandle {
    let (stop, stop_rx) = watch::channel(false);
    let runtime = shared.runtime.clone();
    let inputs = Inputs::new(queues);
    let join = runtime.spawn(
        async move {
            if let Err(e) = run(&shared, consumer, partition, committed, inputs, stop_rx).await {
                shared.fail(e);
            }
        }
        .instrument(tracing::info_span!("partition", partition)),
    );
    TaskHandle {
        partition,
        stop,
        join,
    }
}

/// The partition's input topics, each read from its own librdkafka queue
/// (split from the consumer's), only when the merge needs the topic:
/// unread records wait in librdkafka's fetch buffers, not copied.
pub(crate) struct Inputs {
    queues: Vec<PartitionQueue<Ctx>>,
    /// Per topic: librdkafka found its queue empty and enqueued since.
    arrived: Arc<[AtomicBool]>,
    /// Woken when any of the queues turns non-empty.
    wake: Arc<Notify>,
    /// Per topic: its queue was empty when last read.
    empty: Vec<bool>,
}

impl Inputs {
    fn new(mut queues: Vec<PartitionQueue<Ctx>>) -> Inputs {
        let arrived: Arc<[AtomicBool]> = queues.iter().map(|_| AtomicBool::new(true)).collect();
        let wake = Arc::new(Notify::new());
        for (q, queue) in queues.iter_mut().enumerate() {
            let (arrived, wake) = (arrived.clone(), wake.clone());
            // Called by librdkafka, under the queue's lock, when a message
            // lands in the empty queue: no more than flag and wake.
            queue.set_nonempty_callback(move || {
                arrived[q].store(true, Ordering::Release);
                wake.notify_one();
            });
        }
        Inputs {
            empty: vec![false; queues.len()],
            queues,
            arrived,
            wake,
        }
    }

    /// Topic `q` may have records in its queue.
    fn may_have(&self, q: usize) -> bool {
        !self.empty[q] || self.arrived[q].load(Ordering::Acquire)
    }
}

/// Outputs of a run of records, and the offsets they complete.
#[derive(Default)]
struct Batch {
    deliveries: Vec<(DeliveryFuture, Output)>,
    /// Per topic index: the last offset applied in this batch.
    offsets: Vec<Option<i64>>,
    /// Events (not dead letters) applied in this batch.
    events: u64,
}

async fn run(
    shared: &Arc<Shared>,
    consumer: Arc<LiveConsumer>,
    partition: i32,
    committed: Vec<Option<i64>>,
    mut inputs: Inputs,
    mut stop: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let started = Instant::now();
    shared.stats.metrics.partitions_restoring.inc();
    // Waiting for a restore slot counts as restoring; a stop ends the wait.
    let slot = tokio::select! {
        slot = shared.restore_slots.clone().acquire_owned() => slot.ok(),
        _ = stop.wait_for(|stopped| *stopped) => None,
    };
    let restored = match slot {
        None => Ok(None),
        Some(slot) => {
            let shared = shared.clone();
            let committed = committed.clone();
            let stop = stop.clone();
            tokio::task::spawn_blocking(move || {
                let restored = restore(&shared, partition, &committed, &stop);
                drop(slot);
                restored
            })
            .await
            .map_err(|e| PipelineError::Restore {
                partition,
                reason: e.to_string(),
            })
            .and_then(|r| r)
        }
    };
    shared.stats.metrics.partitions_restoring.dec();
    let restored = restored?;
    let Some((mut engine, events)) = restored else {
        return Ok(()); // revoked while restoring
    };
    tracing::info!(
        events,
        tracked = engine.tracked(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state restored; resuming"
    );
    let topics = &shared.topics;
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        tpl.add_partition(&t.name, partition);
    }
    consumer.resume(&tpl)?;

    let (batches_tx, batches_rx) = mpsc::channel::<Batch>(IN_FLIGHT_BATCHES);
    // What the restore found open or escalated, for the open-findings gauges.
    let restored_open = crate::ops::query::open_findings(
        std::iter::once(&**engine.store()),
        &crate::ops::query::FindingFilter {
            status: None,
            rule: None,
            severity: None,
            worker_id: None,
            limit: usize::MAX,
            after: None,
        },
    )
    .0;
    shared
        .stats
        .stores
        .write()
        .expect("stores lock")
        .insert(partition, engine.store().clone());
    let confirmer = {
        let shared = shared.clone();
        tokio::spawn(async move {
            // A failed acknowledgement stops the pipeline at once: the task
            // hears of it only when it next sends a batch, and an idle one
            // would keep waiting for input, the failure unsaid.
            let confirmed =
                confirm_batches(shared.clone(), partition, batches_rx, restored_open).await;
            if let Err(e) = confirmed {
                shared.fail(e);
            }
        })
    };
    let cfg = shared.cfg.clone();
    let max_idle = Duration::from_millis(cfg.kafka.max_task_idle_ms);
    let idle_advance = cfg.idle_advance_ms;
    let mut merge: Merge<Item> = Merge::new(topics.len());
    // The next offset expected per topic: what was received, else the start.
    let mut next: Vec<i64> = committed.iter().map(|c| c.unwrap_or(0)).collect();
    let mut waiting_since: Option<Instant> = None;
    // The previous batch passed over a lagging topic.
    let mut forcing = false;
    let mut last_input = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut out: Vec<Finding> = Vec::new();
    // When the message behind each finding in `out` arrived.
    let mut out_received: Vec<Instant> = Vec::new();
    let mut dead_letter_log = RateLimitedLog::default();
    let label = partition.to_string();
    let m = &shared.stats.metrics;
    let gauges = (
        m.tracked_workers.with_label_values(&[&label]),
        m.state_entries.with_label_values(&[&label]),
        m.stream_time.with_label_values(&[&label]),
        m.stream_lag.with_label_values(&[&label]),
    );
    let caught_up = |q: usize, next: &[i64]| {
        cached_watermarks(&consumer, &topics[q].c_name, partition)
            .is_some_and(|(low, high)| high <= next[q].max(low))
    };

    loop {
        // Exactly-once: a batch is applied, produced and marked within one
        // transaction; the committer waits for the batch in progress.
        let gate = match &shared.txn {
            Some(t) => Some(t.gate.read().await),
            None => None,
        };
        let mut batch = Batch {
            deliveries: Vec::new(),
            offsets: vec![None; topics.len()],
            events: 0,
        };
        // A lagging topic holds the others back for at most max_task_idle
        // (their records wait in their queues meanwhile, and librdkafka
        // stops fetching a full one).
        let force = waiting_since.is_some_and(|t| t.elapsed() >= max_idle);
        // Topics a forced pop passed over while they were not caught up.
        let passed_over: std::cell::RefCell<Vec<usize>> = Default::default();
        let mut applied = 0;
        while applied < MAX_BATCH {
            // The merge needs the head of every topic: read those it holds
            // none of, unless their queue is known to be empty.
            for q in 0..topics.len() {
                if merge.is_drained(q) && inputs.may_have(q) {
                    let waiting = refill(shared, partition, &mut inputs, q, &mut merge, &mut next)?;
                    // A record whose Avro schema the registry must be asked
                    // for: asked without blocking the runtime, then taken in
                    // (its topic's later records wait in the queue).
                    if let Some((id, m, received)) = waiting {
                        shared.decoder.fetch_schema(id).await?;
                        ingest(shared, partition, q, &m, received, &mut merge, &mut next)?;
                    }
                }
            }
            let Some((q, offset, item)) = merge.pop(|q| {
                if caught_up(q, &next) {
                    return true;
                }
                if force && !passed_over.borrow().contains(&q) {
                    passed_over.borrow_mut().push(q);
                }
                force
            }) else {
                break;
            };
            applied += 1;
            batch.offsets[q] = Some(offset);
            match item {
                Item::Event(env, received) => {
                    tracing::trace!(target: "driftwatch::order", topic = q, offset, "apply");
                    engine.prefetch(merge.peek_ahead().map(|item| match item {
                        Some(Item::Event(next, _)) => Some(next),
                        _ => None,
                    }));
                    engine.apply(env, &mut out);
                    out_received.resize(out.len(), received);
                    shared.stats.events.fetch_add(1, Ordering::Relaxed);
                    batch.events += 1;
                }
                Item::Bad(bad) => {
                    let topic = &topics[q].name;
                    dead_letter_log.note(topic, offset, &bad.error);
                    let headers = dead_letter_headers(&bad.error, topic, partition, offset);
                    let delivery = enqueue(
                        &shared.producer,
                        &cfg.topics.dead_letter,
                        bad.key.as_deref(),
                        &bad.payload,
                        Some(&headers),
                    )
                    .await?;
                    batch.deliveries.push((delivery, Output::DeadLetter));
                }
            }
        }
        // Said once per episode of lag, not per batch.
        let passed_over = passed_over.into_inner();
        if !passed_over.is_empty() && !forcing {
            let lagging: Vec<&str> = passed_over.iter().map(|&q| &*topics[q].name).collect();
            tracing::warn!(
                buffered = merge.len(),
                "input topics lag ({}): applying the others' records without waiting for them (kafka.max_task_idle); order across topics may differ from a replay",
                lagging.join(", ")
            );
            shared.stats.metrics.merge_forced.inc();
        }
        forcing = !passed_over.is_empty();
        if applied > 0 {
            last_input = Instant::now();
            waiting_since = None;
        } else if !merge.is_empty() {
            waiting_since.get_or_insert_with(Instant::now);
        }
        if let Some(idle_ms) = idle_advance {
            if merge.is_empty()
                && last_input.elapsed() >= Duration::from_millis(idle_ms as u64)
                && (0..topics.len()).all(|q| caught_up(q, &next))
            {
                let target = Ts(Ts::wall_clock().millis() - idle_ms);
                if target > engine.now() {
                    engine.advance_to(target, &mut out);
                    out_received.resize(out.len(), Instant::now());
                }
            }
        }
        for (f, received) in out.drain(..).zip(out_received.drain(..)) {
            let value = shared
                .encoder
                .encode(&f)
                .map_err(|e| PipelineError::Publish {
                    topic: cfg.topics.findings.clone(),
                    reason: format!("encoding finding {}: {e}", f.finding_id),
                })?;
            let delivery = enqueue(
                &shared.producer,
                &cfg.topics.findings,
                Some(f.finding_id.as_bytes()),
                &value,
                None,
            )
            .await?;
            batch
                .deliveries
                .push((delivery, Output::Finding(f, received)));
        }
        if let Some(txn) = &shared.txn {
            // The transaction commit flushes the outputs; the offsets go
            // into that same transaction.
            if !batch.deliveries.is_empty() || batch.offsets.iter().any(Option::is_some) {
                txn.dirty.store(true, Ordering::SeqCst);
            }
            let next: Vec<Option<i64>> = batch.offsets.iter().map(|o| o.map(|o| o + 1)).collect();
            shared.mark_done(partition, &next);
            batch.offsets.iter_mut().for_each(|o| *o = None);
        }
        drop(gate);
        let has_work = !batch.deliveries.is_empty()
            || batch.offsets.iter().any(Option::is_some)
            || batch.events > 0;
        if has_work && batches_tx.send(batch).await.is_err() {
            break; // the confirmer failed and has reported it
        }
        gauges.0.set(engine.tracked() as i64);
        gauges.1.set(engine.entries() as i64);
        if engine.now() > Ts(i64::MIN) {
            let t = engine.now().millis() as f64 / 1000.0;
            gauges.2.set(t);
            gauges.3.set(Ts::wall_clock().millis() as f64 / 1000.0 - t);
        }
        if applied == MAX_BATCH {
            // A backlog does not delay a stop: what is not applied yet is
            // read again by the next owner.
            if stop.has_changed().unwrap_or(true) {
                break;
            }
            tokio::task::yield_now().await;
            continue;
        }
        // Nothing can be applied now: wait for a record, a stop, or the
        // tick (lag, idle advance).
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = inputs.wake.notified() => {}
            _ = tick.tick() => {}
        }
    }
    // Records merged but not applied are not stored: the next owner reads them.
    merge.clear();
    shared
        .stats
        .stores
        .write()
        .expect("stores lock")
        .remove(&partition);
    // The partition's gauges belong to its next owner.
    for g in [&m.tracked_workers, &m.state_entries] {
        let _ = g.remove_label_values(&[&label]);
    }
    for g in [&m.stream_time, &m.stream_lag] {
        let _ = g.remove_label_values(&[&label]);
    }
    drop(batches_tx);
    confirmer.await.map_err(|e| PipelineError::Publish {
        topic: cfg.topics.findings.clone(),
        reason: format!("confirmer task failed: {e}"),
    })
}

/// A record held back until the registry is asked for its schema id.
type Waiting = (u32, rdkafka::message::OwnedMessage, Instant);

/// Reads up to [`REFILL`] records of topic `q` from its queue into the
/// merge, decoding them straight from librdkafka's buffers. Stops at a
/// record whose Avro schema is not known yet and returns it.
fn refill(
    shared: &Shared,
    partition: i32,
    inputs: &mut Inputs,
    q: usize,
    merge: &mut Merge<Item>,
    next: &mut [i64],
) -> Result<Option<Waiting>, PipelineError> {
    // Cleared before reading: a record enqueued from here on sets it again.
    inputs.arrived[q].store(false, Ordering::Release);
    let received = Instant::now();
    let mut read = 0;
    let mut messages = 0;
    let mut waiting = None;
    inputs.empty[q] = loop {
        if read == REFILL {
            break false;
        }
        let Some(result) = inputs.queues[q].poll(Duration::ZERO) else {
            break true;
        };
        read += 1;
        match result {
            Ok(m) => {
                messages += 1;
                if let Some(id) = m.payload().and_then(|p| shared.decoder.pending_schema(p)) {
                    waiting = Some((id, m.detach(), received));
                    break false;
                }
                ingest(shared, partition, q, &m, received, merge, next)?;
            }
            Err(e) => tracing::warn!(error = %e, "consume error (librdkafka retries)"),
        }
    };
    if messages > 0 {
        shared.topics[q].consumed.inc_by(messages);
    }
    Ok(waiting)
}

fn ingest(
    shared: &Shared,
    partition: i32,
    q: usize,
    m: &impl Message,
    received: Instant,
    merge: &mut Merge<Item>,
    next: &mut [i64],
) -> Result<(), PipelineError> {
    let topic = &shared.topics[q];
    let offset = m.offset();
    let key = || m.key().map(<[u8]>::to_vec);
    next[q] = offset + 1;
    let item = match m.payload() {
        None => Item::Bad(Box::new(Bad {
            error: DecodeError::Empty,
            key: key(),
            payload: Vec::new(),
        })),
        Some(payload) => match shared.decoder.decode(topic.system, payload) {
            Ok(event) => Item::Event(
                Envelope {
                    origin: Origin {
                        topic: topic.id,
                        partition,
                        offset,
                    },
                    event,
                },
                received,
            ),
            Err(error) => Item::Bad(Box::new(Bad {
                error,
                key: key(),
                payload: payload.to_vec(),
            })),
        },
    };
    if let Item::Bad(bad) = &item {
        shared
            .stats
            .metrics
            .decode_failures
            .with_label_values(&[bad.error.error_type()])
            .inc();
    }
    merge.push(q, offset, item);
    Ok(())
}

/// Waits for each batch's acknowledgements in order, then marks its offsets
/// done. Keeps the open-findings gauges for the partition (by rule and
/// severity, and by owner in an [`OwnerBook`]), starting from what the
/// restore found open, and takes them back when the task ends.
async fn confirm_batches(
    shared: Arc<Shared>,
    partition: i32,
    mut batches: mpsc::Receiver<Batch>,
    restored_open: Vec<Finding>,
) -> Result<(), PipelineError> {
    let cfg = shared.cfg.clone();
    let metrics = &shared.stats.metrics;
    let mut open: std::collections::HashMap<
        (crate::detect::rules::Rule, crate::model::finding::Severity),
        i64,
    > = std::collections::HashMap::new();
    // Dropped when the task ends, on every path: the partition's share of
    // the owner gauges is taken back with it.
    let mut owners = OwnerBook::new(metrics, TeamLabels::of(&cfg));
    for f in &restored_open {
        *open.entry((f.rule, f.severity)).or_default() += 1;
        metrics.open(f.rule, f.severity, 1);
        owners.restored(f);
    }
    drop(restored_open);
    let result = async {
        while let Some(batch) = batches.recv().await {
            for (delivery, output) in batch.deliveries {
                match output {
                    Output::Finding(f, received) => {
                        confirm(&cfg.topics.findings, delivery).await?;
                        metrics
                            .processing_latency
                            .observe(received.elapsed().as_secs_f64());
                        let delta = crate::ops::metrics::Metrics::open_delta(f.status);
                        if delta != 0 {
                            *open.entry((f.rule, f.severity)).or_default() += delta;
                            metrics.open(f.rule, f.severity, delta);
                        }
                        owners.acknowledged(&f);
                        shared.stats.record(f);
                    }
                    Output::DeadLetter => {
                        confirm(&cfg.topics.dead_letter, delivery).await?;
                        shared.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                        metrics.dead_letters.inc();
                    }
                }
            }
            // The committed offset is the next one to read.
            let next: Vec<Option<i64>> = batch.offsets.iter().map(|o| o.map(|o| o + 1)).collect();
            shared.mark_done(partition, &next);
            shared
                .stats
                .confirmed
                .fetch_add(batch.events, Ordering::Relaxed);
        }
        Ok(())
    }
    .await;
    // The partition's findings are someone else's from now on.
    for ((rule, severity), n) in open {
        metrics.open(rule, severity, -n);
    }
    drop(owners);
    result
}

/// Logs dead letters at most once a second per partition, with how many
/// were not logged in between.
#[derive(Default)]
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn note(&mut self, topic: &str, offset: i64, error: &DecodeError) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            topic,
            offset,
            error_type = error.error_type(),
            %error,
            suppressed = self.suppressed,
            "message sent to the dead-letter topic"
        );
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// librdkafka's cached low and high watermarks of a partition, as of the
/// last fetch response (no request is sent).
fn cached_watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &std::ffi::CStr,
    partition: i32,
) -> Option<(i64, i64)> {
    let mut low = -1i64;
    let mut high = -1i64;
    // SAFETY: the client pointer lives as long as `consumer`, `topic` is a
    // NUL-terminated string, and the out-parameters are valid for writes.
    // rd_kafka_get_watermark_offsets only reads local state under its locks.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}
