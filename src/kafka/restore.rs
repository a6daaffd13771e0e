//! Restoring a partition's state on assignment: its input topics re-read
//! from the beginning up to the committed offsets, in stream order, through
//! a quiet engine that publishes nothing (what it would publish was
//! published before the commit).

use super::{PipelineError, Shared};
use crate::codec::json::DecodeError;
use crate::detect::driver::Driver;
use crate::detect::engine::Engine;
use crate::model::event::{Envelope, Origin};
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long restore waits with no progress before it gives up.
const RESTORE_STALL: Duration = Duration::from_secs(60);

/// A consumer that reads partitions it is assigned (input history, or the
/// state changelog) and commits nothing.
pub(super) fn restore_consumer(
    cfg: &crate::config::Config,
) -> Result<super::PlainConsumer, PipelineError> {
    super::create_client(
        cfg,
        super::client_config(cfg, super::Role::Consumer)
            .set("group.id", format!("{}.restore", cfg.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest"),
        super::Logs::default(),
    )
}

/// A consumer to read the state topic with, which knows the topic's
/// leaders: librdkafka retries a bounds request sent before it knows the
/// leader only after 500 ms.
pub(super) fn state_reader(
    cfg: &crate::config::Config,
    wait: Duration,
) -> Result<super::PlainConsumer, PipelineError> {
    let c = restore_consumer(cfg)?;
    c.fetch_metadata(Some(&cfg.topics.state), wait)
        .map_err(|e| PipelineError::Client(format!("the metadata of {}: {e}", cfg.topics.state)))?;
    Ok(c)
}

/// The consumers of the state changelog between restores: a restore
/// takes one whose connection and metadata are warm instead of starting
/// its own, and gives it back. It keeps at most as many idle as restores
/// may run at once (`cap`), and none once the detector stops.
pub(crate) struct Readers {
    cap: usize,
    pool: Mutex<Pool>,
}

#[derive(Default)]
struct Pool {
    idle: Vec<super::PlainConsumer>,
    /// Readers alive, idle or reading.
    alive: usize,
    closed: bool,
}

impl Readers {
    pub(crate) fn new(cap: usize) -> Readers {
        Readers {
            cap,
            pool: Mutex::default(),
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().expect("readers lock")
    }

    /// An idle reader, or one made now (waiting up to `wait` for the
    /// topic's metadata).
    pub(super) fn take(
        &self,
        cfg: &crate::config::Config,
        wait: Duration,
    ) -> Result<super::PlainConsumer, PipelineError> {
        if let Some(c) = self.pool().idle.pop() {
            return Ok(c);
        }
        let c = state_reader(cfg, wait)?;
        self.pool().alive += 1;
        Ok(c)
    }

    /// Gives back a reader whose partition is unassigned: kept for the
    /// next restore, unless enough are or the detector stopped (then
    /// closed apart: closing waits up to 100 ms for the group).
    pub(super) fn give_back(&self, shared: &Shared, c: super::PlainConsumer) {
        let mut pool = self.pool();
        if !pool.closed && pool.idle.len() < self.cap {
            pool.idle.push(c);
            return;
        }
        pool.alive -= 1;
        drop(pool);
        shared.runtime.spawn_blocking(move || drop(c));
    }

    /// A reader that cannot be given back (its partition would not
    /// unassign), closed apart.
    pub(super) fn discard(&self, shared: &Shared, c: super::PlainConsumer) {
        self.pool().alive -= 1;
        shared.runtime.spawn_blocking(move || drop(c));
    }

    /// Makes readers for the first restores while the consumer joins its
    /// group, up to `n` alive, each waiting at most a second for the
    /// broker; stops at the first failure (a restore then makes its own
    /// and says what fails) or once the detector stops.
    pub(super) fn prepare(&self, cfg: &crate::config::Config, n: usize) {
        loop {
            {
                let mut pool = self.pool();
                if pool.closed || pool.alive >= n.min(self.cap) {
                    return;
                }
                pool.alive += 1;
            }
            match state_reader(cfg, Duration::from_secs(1)) {
                Ok(c) => {
                    let mut pool = self.pool();
                    if pool.closed {
                        pool.alive -= 1;
                        return;
                    }
                    pool.idle.push(c);
                }
                Err(e) => {
                    self.pool().alive -= 1;
                    tracing::debug!(error = %e, "preparing a state changelog reader");
                    return;
                }
            }
        }
    }

    /// At a stop: no reader is kept from now on; the idle ones, to close.
    pub(super) fn close(&self) -> Vec<super::PlainConsumer> {
        let mut pool = self.pool();
        pool.closed = true;
        pool.alive -= pool.idle.len();
        std::mem::take(&mut pool.idle)
    }
}

/// Rebuilds a partition's engine from its input topics, from the beginning
/// up to the committed offsets, in stream order, publishing nothing.
/// Returns `None` when the task was stopped meanwhile.
pub(super) fn restore(
    shared: &Shared,
    partition: i32,
    committed: &[Option<i64>],
    stop: &watch::Receiver<bool>,
) -> Result<Option<(Engine, u64)>, PipelineError> {
    let mut engine = Engine::new(shared.cfg.clone());
    let topics = &shared.topics;
    let mut done: Vec<bool> = committed.iter().map(|c| c.is_none_or(|c| c <= 0)).collect();
    if done.iter().all(|d| *d) {
        return Ok(Some((engine, 0)));
    }
    let err = |reason: String| PipelineError::Restore { partition, reason };
    // A restore publishes nothing.
    engine.set_quiet(true);
    // At most this many records (fewer where retention removed the start).
    engine.reserve(committed.iter().flatten().map(|&c| c.max(0) as usize).sum());
    let consumer = restore_consumer(&shared.cfg)?;
    let mut tpl = TopicPartitionList::new();
    for (q, d) in done.iter().enumerate() {
        if !d {
            // Offset 0, not the logical beginning: librdkafka resolves a
            // logical offset with a ListOffsets request that, sent before
            // the partition's leader is known, is retried only after 500
            // ms. Where retention has deleted the start, the fetch is out
            // of range and auto.offset.reset moves it to the earliest.
            tpl.add_partition_offset(&topics[q].name, partition, Offset::Offset(0))?;
        }
    }
    consumer.assign(&tpl)?;
    // Records wait undecoded, per topic, until the merge needs them: a
    // fetch brings whole batches of one topic, and holding them decoded
    // (hundreds of bytes each, thousands at a time) cost more in fresh
    // memory than the decoding itself.
    let mut fetched: Vec<VecDeque<BorrowedMessage<'_>>> =
        (0..topics.len()).map(|_| VecDeque::new()).collect();
    let mut driver: Driver<Envelope> = Driver::new(engine, topics.len());
    let mut scratch = Vec::new();
    let mut applied = 0u64;
    let mut last_progress = Instant::now();
    let mut progressed = false;
    // Decodes topic `q`'s fetched records into the merge until one is
    // queued there or none is left; a topic is done once its record before
    // the committed offset is taken.
    let refill = |q: usize,
                  fetched: &mut [VecDeque<BorrowedMessage<'_>>],
                  driver: &mut Driver<Envelope>,
                  done: &mut [bool]|
     -> Result<(), PipelineError> {
        while driver.merge().is_drained(q) && !done[q] {
            let Some(m) = fetched[q].pop_front() else {
                break;
            };
            let end = committed[q].unwrap_or(0);
            if m.offset() < end {
                if let Some(p) = m.payload() {
                    shared.decoder.ensure_schema(p)?;
                }
                // Records that were dead letters change no state.
                if let Ok(event) = m.payload().map_or(Err(DecodeError::Empty), |p| {
                    shared.decoder.decode(topics[q].system, p)
                }) {
                    driver.push(
                        q,
                        m.offset(),
                        Envelope {
                            origin: Origin {
                                topic: topics[q].id,
                                partition,
                                offset: m.offset(),
                            },
                            event,
                        },
                    );
                }
            }
            if m.offset() + 1 >= end {
                done[q] = true;
            }
        }
        Ok(())
    };
    loop {
        while let Some((q, _, env)) = driver.pop(|q| done[q]) {
            // Refill the topic just taken from first, so that the prefetch
            // sees the record that really goes next.
            refill(q, &mut fetched, &mut driver, &mut done)?;
            driver.apply(env, &mut scratch);
            scratch.clear();
            applied += 1;
        }
        if done.iter().all(|d| *d) {
            break;
        }
        if *stop.borrow() {
            return Ok(None);
        }
        // The merge waits on a topic with nothing queued: decode what was
        // fetched for it, or else fetch more.
        let waiting = |q: usize, driver: &Driver<Envelope>, done: &[bool]| {
            !done[q] && driver.merge().is_drained(q)
        };
        if (0..topics.len()).any(|q| waiting(q, &driver, &done) && !fetched[q].is_empty()) {
            for q in 0..topics.len() {
                if waiting(q, &driver, &done) {
                    refill(q, &mut fetched, &mut driver, &mut done)?;
                }
            }
            continue;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                // Read the clock when the poll comes back empty, not per
                // record (a clock read per record was 3% of a restore).
                progressed = true;
                if let Some(q) = shared.topic_index(m.topic()) {
                    fetched[q].push_back(m);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "restore consumer error (librdkafka retries)")
            }
            None => {
                if std::mem::take(&mut progressed) {
                    last_progress = Instant::now();
                }
                // Control records or deleted records can leave a gap before
                // the committed offset: the position tells, once everything
                // fetched of the topic is taken.
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements() {
                        if let (Some(q), Offset::Offset(o)) =
                            (shared.topic_index(e.topic()), e.offset())
                        {
                            if o >= committed[q].unwrap_or(0) && fetched[q].is_empty() {
                                done[q] = true;
                            }
                        }
                    }
                }
                if last_progress.elapsed() > RESTORE_STALL {
                    return Err(err(format!(
                        "no progress for {}s before reaching the committed offsets {committed:?}",
                        RESTORE_STALL.as_secs()
                    )));
                }
            }
        }
    }
    drop(fetched);
    let mut engine = driver.into_engine();
    // Closing a group consumer waits up to 100 ms for the group to
    // terminate (it only assigned, so there is nothing to leave): done
    // apart, it holds neither the restore slot nor the partition's resume.
    shared.runtime.spawn_blocking(move || drop(consumer));
    shared.stats.restored.fetch_add(applied, Ordering::Relaxed);
    shared.stats.metrics.restore_events.inc_by(applied);
    engine.set_quiet(false);
    Ok(Some((engine, applied)))
}
