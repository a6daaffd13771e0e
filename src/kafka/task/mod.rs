//! One partition task: partition `p` of every input topic, one engine.
//!
//! A task goes through named steps. [`restore_state`] (`recover.rs`)
//! rebuilds the engine from the state changelog or the input history (see
//! [`super::restore`]); [`PartitionTask::resume`] resumes the live
//! partitions and starts the confirmer; then each turn of
//! [`PartitionTask::live`] is one batch:
//!
//! 1. [`PartitionTask::read_and_apply`]: read each topic's records from its
//!    own librdkafka queue when the merge has none of that topic left
//!    ([`inputs`]), decode them, merge the topics by event time and apply
//!    them through the [`Driver`]; undecodable records go to the
//!    dead-letter topic.
//! 2. [`PartitionTask::advance_when_idle`]: move stream time when the
//!    partition has been quiet and caught up (`detector.idle_advance`).
//! 3. [`PartitionTask::publish_findings`]: encode and queue the batch's
//!    findings to the producer.
//! 4. [`PartitionTask::hand_over`]: pass the batch to the confirmer
//!    ([`confirm`]), which waits for the acknowledgements in order and only
//!    then marks the offsets done.
//! 5. [`PartitionTask::wait`]: when nothing could be applied, sleep until
//!    librdkafka puts a record in an empty queue, a stop, or a 20 ms tick.
//!
//! When a topic of the partition has nothing left, in the merge or in its
//! queue, the task takes the next record without it only if the topic is
//! caught up (librdkafka's cached high watermark is not beyond what was
//! read) or has kept the others waiting longer than `kafka.max_task_idle`.

mod confirm;
mod inputs;
mod notes;
mod recover;
mod route;

use recover::{restore_state, Restored};

pub(crate) use inputs::Inputs;

use super::publish::{dead_letter_headers, enqueue, RateLimitedLog};
use super::{Ctx, LiveConsumer, PipelineError, Shared};
use crate::detect::driver::Driver;
use crate::detect::engine::Engine;
use crate::model::event::Key;
use crate::model::finding::Finding;
use crate::model::time::Ts;
use confirm::{confirm_batches, Batch, Output, Saving, IN_FLIGHT_BATCHES};
use inputs::{caught_up, Item};
use prometheus::{Gauge, IntGauge};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

/// Records applied between two publishes.
pub const MAX_BATCH: usize = 1024;

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

async fn run(
    shared: &Arc<Shared>,
    consumer: Arc<LiveConsumer>,
    partition: i32,
    committed: Vec<Option<i64>>,
    inputs: Inputs,
    mut stop: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let Some(restored) = restore_state(shared, partition, &committed, &stop).await? else {
        return Ok(()); // revoked while restoring
    };
    let (mut task, confirmer) =
        PartitionTask::resume(shared.clone(), consumer, partition, inputs, restored)?;
    let result = task.live(&mut stop).await;
    task.finish();
    // A failed task stops the pipeline; only a task that ends well waits
    // for its last batches to be confirmed.
    result?;
    confirmer
        .await
        .map_err(|e| PipelineError::Panicked(format!("the confirmer task failed: {e}")))
}

/// A live partition task between batches.
struct PartitionTask {
    shared: Arc<Shared>,
    consumer: Arc<LiveConsumer>,
    partition: i32,
    inputs: Inputs,
    driver: Driver<Item>,
    lag: Lag,
    /// The findings of the batch in progress, and when the message behind
    /// each arrived.
    out: Vec<Finding>,
    out_received: Vec<Instant>,
    dead_letter_log: RateLimitedLog,
    /// Per topic: whether a record found outside its key's partition was
    /// reported (once per task; the metric counts them all).
    misplaced_reported: Vec<bool>,
    gauges: Gauges,
    batches: mpsc::Sender<Batch>,
    /// The next offset of each topic applied (the offsets a checkpoint
    /// reflects).
    applied_next: Vec<i64>,
    /// Keys restored from a checkpoint cut short, with the offsets their
    /// state reflects: their earlier events are skipped.
    ahead: HashMap<Key, Vec<i64>>,
    /// With the state changelog: when the last checkpoint was taken,
    /// whether anything was applied since, and whether the confirmer is
    /// still writing one (the next waits for it, so checkpoints never
    /// queue up behind each other).
    checkpointed_at: Instant,
    unsaved: bool,
    saving: Arc<Saving>,
    /// Routing by payload: the rounds this task sends and applies.
    router: Option<route::Router>,
    /// Routing by payload: events restored key records hold although the
    /// partition record does not reflect them; each only moves stream
    /// time when it comes again.
    cut_short: recover::CutShort,
}

/// How the partition's topics keep pace with each other.
struct Lag {
    /// Since when records wait in the merge for a topic that has none.
    waiting_since: Option<Instant>,
    /// The previous batch passed over a lagging topic.
    forcing: bool,
    /// When a record was last applied.
    last_input: Instant,
}

/// The partition's gauges, taken back when the task ends.
struct Gauges {
    label: String,
    tracked: IntGauge,
    entries: IntGauge,
    stream_time: Gauge,
    stream_lag: Gauge,
    /// Routing by payload: events waiting for their round.
    waiting: Option<IntGauge>,
}

impl PartitionTask {
    /// Resumes the partition's input, publishes its store for `/v1`
    /// readers, and starts its confirmer.
    fn resume(
        shared: Arc<Shared>,
        consumer: Arc<LiveConsumer>,
        partition: i32,
        mut inputs: Inputs,
        restored: Restored,
    ) -> Result<(PartitionTask, tokio::task::JoinHandle<()>), PipelineError> {
        let Restored {
            mut engine,
            start,
            round,
            ahead,
            cut_short,
        } = restored;
        let topics = &shared.topics;
        let mut tpl = TopicPartitionList::new();
        for t in topics {
            tpl.add_partition(&t.name, partition);
        }
        // Records before `start` (reflected by a restored checkpoint but
        // not committed yet) are fetched and passed over.
        inputs.start_at(&start);
        consumer.resume(&tpl)?;
        // What the restore found open or escalated, for the open-findings gauges.
        let restored_open = engine.take_open_findings();
        shared
            .stats
            .stores
            .write()
            .expect("stores lock")
            .insert(partition, engine.store().clone());
        let (batches, batches_rx) = mpsc::channel::<Batch>(IN_FLIGHT_BATCHES);
        let saving = Arc::new(Saving::default());
        let confirmer = {
            let shared = shared.clone();
            let saving = saving.clone();
            tokio::spawn(async move {
                // A failed acknowledgement stops the pipeline at once: the
                // task hears of it only when it next sends a batch, and an
                // idle one would keep waiting for input, the failure unsaid.
                let confirmed = confirm_batches(
                    shared.clone(),
                    partition,
                    batches_rx,
                    restored_open,
                    &saving,
                )
                .await;
                if let Err(e) = confirmed {
                    shared.fail(e);
                }
            })
        };
        let label = partition.to_string();
        let m = &shared.stats.metrics;
        let gauges = Gauges {
            tracked: m.tracked_workers.with_label_values(&[&label]),
            entries: m.state_entries.with_label_values(&[&label]),
            stream_time: m.stream_time.with_label_values(&[&label]),
            stream_lag: m.stream_lag.with_label_values(&[&label]),
            waiting: shared
                .repartition
                .map(|_| m.routed_waiting.with_label_values(&[&label])),
            label,
        };
        let shared_changelog = shared.cfg.state_changelog;
        let n_topics = topics.len();
        let router = shared
            .repartition
            .map(|rq| route::Router::new(shared.partitions, round, &start[..rq]));
        if router.is_some() {
            // Accounts moving to or from keys of other partitions.
            engine.send_notes();
        }
        let task = PartitionTask {
            driver: Driver::new(engine, topics.len()),
            shared,
            consumer,
            partition,
            inputs,
            lag: Lag {
                waiting_since: None,
                forcing: false,
                last_input: Instant::now(),
            },
            out: Vec::new(),
            out_received: Vec::new(),
            dead_letter_log: RateLimitedLog::default(),
            misplaced_reported: vec![false; n_topics],
            gauges,
            batches,
            applied_next: start.iter().map(|s| s.unwrap_or(0)).collect(),
            ahead,
            checkpointed_at: Instant::now(),
            // A state rebuilt from history is written whole at the first
            // checkpoint, input or not.
            unsaved: shared_changelog,
            saving,
            router,
            cut_short,
        };
        Ok((task, confirmer))
    }

    /// Batch after batch until a stop (or the confirmer fails).
    async fn live(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), PipelineError> {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let shared = self.shared.clone();
        loop {
            // Exactly-once: a batch is applied, produced and marked within
            // one transaction; the committer waits for the batch in progress.
            let gate = match &shared.txn {
                Some(t) => Some(t.gate.read().await),
                None => None,
            };
            let mut batch = Batch::new(shared.topics.len());
            let applied = self.read_and_apply(&mut batch).await?;
            let advanced = self.advance_when_idle();
            self.publish_findings(&mut batch).await?;
            // Routing by payload: a batch may only consume marks, which
            // moves the repartition topic's offset.
            let changed = applied > 0 || advanced || batch.offsets.iter().any(Option::is_some);
            self.checkpoint(&mut batch, changed, false).await?;
            self.mark_in_transaction(&mut batch);
            drop(gate);
            if !self.hand_over(batch).await {
                return Ok(()); // the confirmer failed and has reported it
            }
            self.gauges.update(self.driver.engine());
            if let (Some(g), Some(r)) = (&self.gauges.waiting, &self.router) {
                g.set(r.waiting() as i64);
            }
            if !self.wait(applied == MAX_BATCH, stop, &mut tick).await {
                // What was applied since the last checkpoint, saved before
                // the partition goes (its offsets wait for it).
                let gate = match &shared.txn {
                    Some(t) => Some(t.gate.read().await),
                    None => None,
                };
                let mut last = Batch::new(shared.topics.len());
                self.checkpoint(&mut last, false, true).await?;
                drop(gate);
                self.hand_over(last).await;
                return Ok(());
            }
        }
    }

    /// Step 1: reads, merges and applies up to [`MAX_BATCH`] records.
    /// Returns how many were applied.
    async fn read_and_apply(&mut self, batch: &mut Batch) -> Result<usize, PipelineError> {
        let shared = self.shared.clone();
        let topics = &shared.topics;
        let cfg = &shared.cfg;
        // A lagging topic holds the others back for at most max_task_idle
        // (their records wait in their queues meanwhile, and librdkafka
        // stops fetching a full one).
        let max_idle = Duration::from_millis(cfg.kafka.max_task_idle_ms);
        let force = self
            .lag
            .waiting_since
            .is_some_and(|t| t.elapsed() >= max_idle);
        self.check_start();
        // Topics a forced pop passed over while they were not caught up.
        let mut passed_over: Vec<usize> = Vec::new();
        let routed = self.router.is_some();
        if routed {
            self.read_repartition();
            self.dead_letter_unreadable(batch).await?;
        }
        let inputs = shared.inputs();
        let mut applied = 0;
        while applied < MAX_BATCH && self.router.as_ref().is_none_or(|r| r.may_pop()) {
            // The merge needs the head of every topic: read those it holds
            // none of, unless their queue is known to be empty.
            for q in 0..inputs {
                if self.driver.merge().is_drained(q) && self.inputs.may_have(q) {
                    let waiting =
                        self.inputs
                            .refill(&shared, self.partition, q, &mut self.driver)?;
                    // A record whose Avro schema the registry must be asked
                    // for: asked without blocking the runtime, then taken in
                    // (its topic's later records wait in the queue).
                    if let Some((id, m, received)) = waiting {
                        shared.decoder.fetch_schema(id).await?;
                        inputs::ingest(
                            &mut self.inputs.next,
                            &shared,
                            self.partition,
                            q,
                            &m,
                            received,
                            &mut self.driver,
                        );
                    }
                }
            }
            let (consumer, partition, next) = (&self.consumer, self.partition, &self.inputs.next);
            let Some((q, offset, item)) = self.driver.pop(|q| {
                // The repartition topic is not merged with the inputs.
                if q >= inputs || caught_up(consumer, &shared, partition, next, q) {
                    return true;
                }
                if force && !passed_over.contains(&q) {
                    passed_over.push(q);
                }
                force
            }) else {
                break;
            };
            applied += 1;
            if let Some(router) = &mut self.router {
                // Done at the end of the round its target applies.
                router.popped(q, offset);
            } else {
                batch.offsets[q] = Some(offset);
            }
            match item {
                Item::Event(env, received) if routed => {
                    let home = self.check_placement(q, offset, &env);
                    self.route(q, offset, home, env, received, batch).await?;
                }
                Item::Event(env, received) => {
                    tracing::trace!(target: "driftwatch::order", topic = q, offset, "apply");
                    if self.reflected(q, &env) {
                        // Counted when it was first applied.
                        self.driver.engine_mut().skip(&env, &mut self.out);
                    } else {
                        self.check_placement(q, offset, &env);
                        self.driver.apply(env, &mut self.out);
                    }
                    self.out_received.resize(self.out.len(), received);
                    shared.stats.events.fetch_add(1, Ordering::Relaxed);
                    batch.events += 1;
                }
                Item::Bad(bad) => {
                    let topic = &topics[q].name;
                    self.dead_letter_log.note(topic, offset, &bad.error);
                    let headers = dead_letter_headers(&bad.error, topic, self.partition, offset);
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
        self.note_lag(&passed_over, applied);
        if routed {
            return self.end_routed_batch(batch, applied, max_idle).await;
        }
        Ok(applied)
    }

    /// Counts a record whose correlation key belongs to another partition
    /// (its producer keyed or partitioned it otherwise), and says so the
    /// first time for the topic. Returns the key's partition.
    fn check_placement(
        &mut self,
        q: usize,
        offset: i64,
        env: &crate::model::event::Envelope,
    ) -> i32 {
        let shared = &self.shared;
        let partitioner = shared.cfg.kafka.partitioner;
        let key = env.event.key();
        let home = partitioner.partition(&key, shared.partitions);
        if home == self.partition {
            return home;
        }
        let topic = &shared.topics[q];
        topic.misplaced.inc();
        if self.router.is_some() {
            if !self.misplaced_reported[q] {
                self.misplaced_reported[q] = true;
                tracing::info!(
                    topic = %topic.name,
                    offset,
                    key = %key,
                    belongs_to = home,
                    "records of this topic sit in other partitions than their correlation keys': they move there through the repartition topic (driftwatch_input_records_moved_total counts them)"
                );
            }
            return home;
        }
        if !self.misplaced_reported[q] {
            self.misplaced_reported[q] = true;
            tracing::warn!(
                topic = %topic.name,
                offset,
                key = %key,
                partitioner = partitioner.as_str(),
                belongs_to = home,
                "a record sits in another partition than its correlation key's: the join sees it apart from the rest of its worker's events. Key producers by the correlation key with kafka.partitioner; driftwatch_input_records_misplaced_total counts such records"
            );
        }
        home
    }

    /// Says once per episode of lag, not per batch, that a topic was passed
    /// over; keeps the time records have waited for a topic.
    fn note_lag(&mut self, passed_over: &[usize], applied: usize) {
        if !passed_over.is_empty() && !self.lag.forcing {
            let lagging: Vec<&str> = passed_over
                .iter()
                .map(|&q| &*self.shared.topics[q].name)
                .collect();
            tracing::warn!(
                buffered = self.driver.merge().len(),
                "input topics lag ({}): applying the others' records without waiting for them (kafka.max_task_idle); order across topics may differ from a replay",
                lagging.join(", ")
            );
            self.shared.stats.metrics.merge_forced.inc();
        }
        self.lag.forcing = !passed_over.is_empty();
        if applied > 0 {
            self.lag.last_input = Instant::now();
            self.lag.waiting_since = None;
        } else if !self.driver.merge().is_empty() {
            self.lag.waiting_since.get_or_insert_with(Instant::now);
        }
    }

    /// Step 2: when the partition has been quiet and caught up for
    /// `detector.idle_advance`, stream time moves to the wall clock less
    /// that much, so SLA timers fire with no input. True when it moved.
    fn advance_when_idle(&mut self) -> bool {
        let Some(idle_ms) = self.shared.cfg.idle_advance_ms else {
            return false;
        };
        // The cheap checks first: a watermark lookup per topic only when
        // the partition has been quiet that long.
        if !self.driver.merge().is_empty()
            || self.router.as_ref().is_some_and(|r| !r.is_idle())
            || self.lag.last_input.elapsed() < Duration::from_millis(idle_ms as u64)
        {
            return false;
        }
        let caught_up_all = (0..self.shared.inputs()).all(|q| {
            caught_up(
                &self.consumer,
                &self.shared,
                self.partition,
                &self.inputs.next,
                q,
            )
        });
        if caught_up_all {
            let target = Ts(Ts::wall_clock().millis() - idle_ms);
            if target > self.driver.engine().now() {
                self.driver.engine_mut().advance_to(target, &mut self.out);
                self.out_received.resize(self.out.len(), Instant::now());
                return true;
            }
        }
        false
    }

    /// Step 3: encodes the batch's findings and queues them to the producer.
    async fn publish_findings(&mut self, batch: &mut Batch) -> Result<(), PipelineError> {
        let shared = &self.shared;
        let topic = &shared.cfg.topics.findings;
        for (f, received) in self.out.drain(..).zip(self.out_received.drain(..)) {
            let value = shared
                .encoder
                .encode(&f)
                .map_err(|e| PipelineError::Encode {
                    topic: topic.clone(),
                    reason: format!("finding {}: {e}", f.finding_id),
                })?;
            let delivery = enqueue(
                &shared.producer,
                topic,
                Some(f.finding_id.as_bytes()),
                &value,
                None,
            )
            .await?;
            batch
                .deliveries
                .push((delivery, Output::Finding(f, received)));
        }
        Ok(())
    }

    /// Exactly-once: the batch's offsets go into the open transaction (its
    /// commit flushes the outputs), not through the confirmer.
    fn mark_in_transaction(&self, batch: &mut Batch) {
        let Some(txn) = &self.shared.txn else {
            return;
        };
        if !batch.deliveries.is_empty() || batch.offsets.iter().any(Option::is_some) {
            txn.dirty.store(true, Ordering::SeqCst);
        }
        self.shared.mark_done(self.partition, &batch.next_offsets());
        batch.offsets.iter_mut().for_each(|o| *o = None);
    }

    /// Step 4: passes the batch to the confirmer; false when the confirmer
    /// has failed.
    async fn hand_over(&self, batch: Batch) -> bool {
        batch.is_empty() || self.batches.send(batch).await.is_ok()
    }

    /// Step 5: after a full batch, goes on at once unless stopped (a
    /// backlog does not delay a stop: what is not applied yet is read again
    /// by the next owner); otherwise waits for a record, a stop, or the tick
    /// (lag, idle advance). False when stopped.
    async fn wait(
        &self,
        full: bool,
        stop: &mut watch::Receiver<bool>,
        tick: &mut tokio::time::Interval,
    ) -> bool {
        // A checkpoint after every batch: the next batch waits until the
        // last one's checkpoint is written, so a crash re-publishes at most
        // the findings of the batch in flight.
        let stepwise = self.shared.cfg.state_changelog
            && self.shared.cfg.checkpoint_interval_ms == 0
            && self.shared.txn.is_none();
        if stepwise {
            loop {
                let done = self.saving.done.notified();
                if !self.saving.busy() {
                    break;
                }
                tokio::select! {
                    biased;
                    _ = stop.changed() => return false,
                    _ = done => {}
                }
            }
        }
        if full {
            if stop.has_changed().unwrap_or(true) {
                return false;
            }
            tokio::task::yield_now().await;
            return true;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => false,
            _ = self.inputs.wake.notified() => true,
            _ = tick.tick() => true,
        }
    }

    /// Ends the task: records merged but not applied are dropped (the next
    /// owner reads them), the store leaves the `/v1` readers, the gauges go,
    /// and the confirmer is left to finish the batches it holds.
    fn finish(self) {
        let PartitionTask {
            shared,
            mut driver,
            gauges,
            partition,
            ..
        } = self;
        driver.clear();
        shared
            .stats
            .stores
            .write()
            .expect("stores lock")
            .remove(&partition);
        gauges.remove(&shared.stats.metrics);
    }
}

impl Gauges {
    fn update(&self, engine: &Engine) {
        self.tracked.set(engine.tracked() as i64);
        self.entries.set(engine.entries() as i64);
        if engine.now() > Ts(i64::MIN) {
            let t = engine.now().millis() as f64 / 1000.0;
            self.stream_time.set(t);
            self.stream_lag
                .set(Ts::wall_clock().millis() as f64 / 1000.0 - t);
        }
    }

    /// The partition's gauges belong to its next owner.
    fn remove(self, m: &crate::ops::metrics::Metrics) {
        let label = [self.label.as_str()];
        for g in [&m.tracked_workers, &m.state_entries] {
            let _ = g.remove_label_values(&label);
        }
        if self.waiting.is_some() {
            let _ = m.routed_waiting.remove_label_values(&label);
        }
        for g in [&m.stream_time, &m.stream_lag] {
            let _ = g.remove_label_values(&label);
        }
    }
}
