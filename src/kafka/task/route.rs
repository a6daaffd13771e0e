//! Routing by payload in a partition task (`kafka.route_by = "payload"`):
//! the task is a source of rounds and a target that applies them
//! ([`crate::detect::route`]).
//!
//! As a source it pops its input merge as always, numbers the events into
//! rounds, keeps those whose correlation key is its own partition's and
//! produces the others to the repartition topic, in their key's partition,
//! as the event's JSON with headers naming the source partition, the
//! round and the original topic and offset (the evidence keeps those).
//! When a round closes (full, or early when the input has nothing more)
//! it produces a mark to every other partition: "rounds below `b` are
//! closed". A source pops at most one round beyond what its own target
//! has applied, so no target falls far behind.
//!
//! As a target it reads its partition of the repartition topic and
//! applies round after round once every source has closed it.
//!
//! Accounts that change hands: what the engine tells other partitions
//! while the target applies round `r` (claims on accounts new to it,
//! answers to claims: [`crate::detect::engine::Note`]) is produced to
//! their partitions as one record per round and partition, opening the
//! task's round `r + 2` there (its source closes no round beyond two past
//! what its target applied, so that round is still open). A task whose
//! notes may still be answered closes empty rounds up to the answers'
//! and says it is busy, and says it has nothing more to read only once
//! its target applied every round it closed: no target moves its stream
//! time with the wall clock while a note is on its way to it.
//!
//! What is committed: an input topic's offsets at the end of the last
//! round its own target applied (the forwarded records before them are
//! acknowledged: their batch went to the confirmer earlier), and the
//! repartition topic's lowest offset not applied yet (a record, or the
//! newest mark of a source for a round not reached). The changelog stores
//! the round the input resumes at beside the offsets. A restart re-sends
//! rounds a target may have applied already: it applies those again at
//! the round in progress and the engine's de-duplication window drops
//! them.

use super::confirm::{Batch, Output};
use super::inputs::caught_up;
use super::{PartitionTask, MAX_BATCH};
use crate::detect::engine::{Note, To};
use crate::detect::merge::Timed;
use crate::detect::route::{Assembly, Rounds};
use crate::kafka::publish::{dead_letter_headers, enqueue, enqueue_with};
use crate::kafka::PipelineError;
use crate::model::event::{Envelope, Origin};
use crate::model::time::Ts;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Header of every repartition record: the source partition.
pub(super) const SOURCE: &str = "driftwatch.source";
/// Header of a moved event: its round.
pub(super) const ROUND: &str = "driftwatch.round";
/// Header of a moved event: its input topic and offset.
const TOPIC: &str = "driftwatch.topic";
const OFFSET: &str = "driftwatch.offset";
/// Header of a mark: the rounds below this are closed.
const CLOSED: &str = "driftwatch.closed";
/// Header of a mark: "1" when the source has nothing more to read.
const IDLE: &str = "driftwatch.idle";
/// Header of a record of notes about accounts (its round in `ROUND`).
pub(super) const NOTES: &str = "driftwatch.notes";

/// Repartition records read per batch.
const READ: usize = 4096;

/// What a routed record carries.
// Events are nearly all of them: not boxed.
#[allow(clippy::large_enum_variant)]
enum Load {
    Event(Envelope),
    /// Notes of another partition's engine: they open their round.
    Notes(Vec<Note>),
}

/// An event, or notes, on its way to being applied.
pub(super) struct Routed {
    load: Load,
    received: Instant,
    /// The input topic it was read from, for its own partition's events;
    /// `None` for one read from the repartition topic.
    own_topic: Option<usize>,
    /// Its repartition offset, if it came that way.
    offset: Option<i64>,
}

impl Timed for Routed {
    fn order_time(&self) -> Option<Ts> {
        match &self.load {
            Load::Event(env) => env.order_time(),
            Load::Notes(_) => None,
        }
    }
}

/// The task's rounds as source and as target.
pub(super) struct Router {
    rounds: Rounds,
    assembly: Assembly<Routed>,
    /// Per input topic: the next offset after the last record popped.
    popped_next: Vec<Option<i64>>,
    /// Rounds closed and not yet applied: where each ends (rounds below
    /// the first are closed) and the input offsets there.
    ends: VecDeque<(u64, Vec<Option<i64>>)>,
    /// The round the committed input offsets resume at.
    resume_round: u64,
    /// Repartition offsets still needed: records not applied and each
    /// source's newest mark for a round not reached.
    pending: BTreeSet<i64>,
    /// Per source: its newest mark (closed below, offset).
    marks: Vec<Option<(u64, i64)>>,
    /// Per source: its newest mark said it had nothing more to read (this
    /// one's own: as of its last announcement).
    idle: Vec<bool>,
    /// This source announced it had nothing more to read, and popped
    /// nothing since.
    announced_idle: bool,
    /// When this source last popped a record.
    last_pop: Instant,
    /// Moved events that could not be read back, for the dead-letter
    /// topic.
    unreadable: Vec<Unreadable>,
    /// The engine's notes not produced yet, with the round they open.
    pub(super) outbox: Vec<(u64, To, Note)>,
    /// One past the highest round this task's notes opened (0: none).
    pub(super) notes_until: u64,
}

/// A repartition record with driftwatch's headers whose event does not
/// decode: it goes to the dead-letter topic.
pub(super) struct Unreadable {
    error: crate::codec::json::DecodeError,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    offset: i64,
}

impl Router {
    pub(super) fn new(partitions: i32, round: u64, start: &[Option<i64>]) -> Router {
        Router {
            rounds: Rounds::at(round),
            assembly: Assembly::new(partitions as usize, round),
            popped_next: start.to_vec(),
            ends: VecDeque::new(),
            resume_round: round,
            pending: BTreeSet::new(),
            marks: vec![None; partitions as usize],
            idle: vec![false; partitions as usize],
            announced_idle: false,
            last_pop: Instant::now(),
            unreadable: Vec::new(),
            outbox: Vec::new(),
            notes_until: 0,
        }
    }

    /// Answers to this task's notes may still come (they open a round up
    /// to two past the notes').
    fn awaits_answers(&self) -> bool {
        self.notes_until > 0 && self.assembly.next_round() <= self.notes_until + 1
    }

    /// The target applied every round the source closed, and awaits no
    /// answer: what the source may call having nothing more to read.
    fn settled(&self) -> bool {
        self.assembly.next_round() >= self.rounds.closed_below() && !self.awaits_answers()
    }

    /// The source may pop: it is at most one round ahead of its target.
    pub(super) fn may_pop(&self) -> bool {
        self.rounds.round <= self.assembly.next_round() + 1
    }

    /// Nothing waits to be applied and every source, this one included,
    /// last said it had nothing more to read: stream time may follow the
    /// wall clock (`detector.idle_advance`) without running ahead of
    /// events still on their way.
    pub(super) fn is_idle(&self) -> bool {
        self.assembly.is_empty() && self.idle.iter().all(|i| *i)
    }

    /// How long ago this source last popped a record.
    pub(super) fn since_last_pop(&self) -> std::time::Duration {
        self.last_pop.elapsed()
    }

    /// Events waiting for their round.
    pub(super) fn waiting(&self) -> usize {
        self.assembly.len()
    }

    /// The round the committed offsets resume at, stored with them.
    pub(super) fn resume_round(&self) -> u64 {
        self.resume_round
    }

    /// Records a popped record's position.
    pub(super) fn popped(&mut self, q: usize, offset: i64) {
        self.popped_next[q] = Some(offset + 1);
        self.announced_idle = false;
        self.last_pop = Instant::now();
    }
}

impl PartitionTask {
    /// Reads this partition's records and marks from the repartition topic.
    pub(super) fn read_repartition(&mut self) {
        let Some(rq) = self.shared.repartition else {
            return;
        };
        let shared = self.shared.clone();
        let router = self.router.as_mut().expect("routing");
        let engine = self.driver.engine_mut();
        let mut bad = 0u64;
        self.inputs.drain(rq, READ, |m| match take(&shared, m) {
            Some(Taken::Notes { source, round }) => {
                match engine.decode_notes(m.payload().unwrap_or_default()) {
                    Ok(notes) => {
                        router.pending.insert(m.offset());
                        router.assembly.push_first(
                            source,
                            round,
                            Routed {
                                load: Load::Notes(notes),
                                received: Instant::now(),
                                own_topic: None,
                                offset: Some(m.offset()),
                            },
                        );
                    }
                    Err(e) => {
                        tracing::error!(offset = m.offset(), error = %e, "notes about accounts from another partition do not decode: passed over");
                        bad += 1;
                    }
                }
            }
            Some(Taken::Mark {
                source,
                below,
                idle,
            }) => {
                if let Some((_, old)) = router.marks[source].replace((below, m.offset())) {
                    router.pending.remove(&old);
                }
                router.pending.insert(m.offset());
                router.assembly.close(source, below);
                router.idle[source] = idle;
            }
            Some(Taken::Event { source, round, env }) => {
                router.pending.insert(m.offset());
                router.assembly.push(
                    source,
                    round,
                    Routed {
                        load: Load::Event(env),
                        received: Instant::now(),
                        own_topic: None,
                        offset: Some(m.offset()),
                    },
                );
            }
            Some(Taken::Unreadable(error)) => router.unreadable.push(Unreadable {
                error,
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                offset: m.offset(),
            }),
            None => bad += 1,
        });
        if bad > 0 {
            tracing::warn!(
                topic = %shared.cfg.topics.repartition,
                records = bad,
                "records of the repartition topic without driftwatch's headers were passed over: only driftwatch should write to that topic"
            );
        }
    }

    /// Moved events that did not decode again go to the dead-letter topic
    /// with the reason and their repartition coordinates (they decoded
    /// from their input, so this means a record driftwatch did not write,
    /// or a bug).
    pub(super) async fn dead_letter_unreadable(
        &mut self,
        batch: &mut Batch,
    ) -> Result<(), PipelineError> {
        let shared = self.shared.clone();
        let router = self.router.as_mut().expect("routing");
        let unreadable = std::mem::take(&mut router.unreadable);
        let topic = &shared.cfg.topics.repartition;
        for u in unreadable {
            let headers = dead_letter_headers(&u.error, topic, self.partition, u.offset);
            tracing::warn!(
                topic = %topic,
                offset = u.offset,
                error = %u.error,
                "a moved event did not decode again: sent to the dead-letter topic"
            );
            shared
                .stats
                .metrics
                .decode_failures
                .with_label_values(&[u.error.error_type()])
                .inc();
            let delivery = enqueue(
                &shared.producer,
                &shared.cfg.topics.dead_letter,
                u.key.as_deref(),
                &u.payload,
                Some(&headers),
            )
            .await?;
            batch.deliveries.push((delivery, Output::DeadLetter));
        }
        Ok(())
    }

    /// An event popped from the partition's own input: kept for its own
    /// target or moved to its key's partition.
    pub(super) async fn route(
        &mut self,
        q: usize,
        offset: i64,
        target: i32,
        env: Envelope,
        received: Instant,
        batch: &mut Batch,
    ) -> Result<(), PipelineError> {
        let shared = self.shared.clone();
        let own = self.partition;
        if self.router.as_ref().expect("routing").idle[own as usize] {
            // Input again after saying there was none: targets must not
            // move their stream time with the wall clock meanwhile.
            self.announce(batch, false).await?;
        }
        let router = self.router.as_mut().expect("routing");
        let (round, full) = router.rounds.pop();
        if target == own {
            router.assembly.push(
                own as usize,
                round,
                Routed {
                    load: Load::Event(env),
                    received,
                    own_topic: Some(q),
                    offset: None,
                },
            );
        } else {
            let topic = &shared.cfg.topics.repartition;
            let payload = crate::codec::json::to_json(&env.event);
            let (source, round, at) = (own.to_string(), round.to_string(), offset.to_string());
            let headers = OwnedHeaders::new()
                .insert(header(SOURCE, &source))
                .insert(header(ROUND, &round))
                .insert(header(TOPIC, &shared.topics[q].name))
                .insert(header(OFFSET, &at));
            let key = env.event.key();
            let delivery = enqueue_with(
                &shared.producer,
                topic,
                Some(target),
                Some(key.id().as_bytes()),
                payload.as_bytes(),
                Some(&headers),
            )
            .await?;
            batch.deliveries.push((delivery, Output::Routed));
        }
        if full {
            self.announce(batch, false).await?;
        }
        Ok(())
    }

    /// The input has nothing more for now: the round in progress closes
    /// early, or, with none open, the source follows the rounds the others
    /// closed so that no target waits for it.
    pub(super) async fn input_idle(&mut self, batch: &mut Batch) -> Result<(), PipelineError> {
        let router = self.router.as_mut().expect("routing");
        // Rounds up to those answering this task's notes, and never more
        // than two past what its target applied (the notes it emits open
        // the round two past).
        let ahead = router
            .assembly
            .max_closed()
            .max(router.notes_until + 2)
            .min(router.assembly.next_round() + 2);
        let moved = router.rounds.close() || router.rounds.follow(ahead);
        let idle = router.settled();
        if moved || router.announced_idle != idle {
            self.announce(batch, idle).await?;
        }
        Ok(())
    }

    /// Tells every target (this one directly) that the rounds below the
    /// source's are closed.
    async fn announce(&mut self, batch: &mut Batch, idle: bool) -> Result<(), PipelineError> {
        let shared = self.shared.clone();
        let own = self.partition;
        let router = self.router.as_mut().expect("routing");
        let below = router.rounds.closed_below();
        router.assembly.close(own as usize, below);
        // Where the closed rounds end (nothing popped since, when no round
        // closed: a mark that only says whether the source is idle).
        if router.ends.back().is_none_or(|(b, _)| *b < below) && below > router.resume_round {
            router.ends.push_back((below, router.popped_next.clone()));
        }
        router.idle[own as usize] = idle;
        router.announced_idle = idle;
        let (source, below) = (own.to_string(), below.to_string());
        let headers = OwnedHeaders::new()
            .insert(header(SOURCE, &source))
            .insert(header(CLOSED, &below))
            .insert(header(IDLE, if idle { "1" } else { "0" }));
        for t in (0..shared.partitions).filter(|&t| t != own) {
            let delivery = enqueue_with(
                &shared.producer,
                &shared.cfg.topics.repartition,
                Some(t),
                None,
                &[],
                Some(&headers),
            )
            .await?;
            batch.deliveries.push((delivery, Output::Routed));
        }
        Ok(())
    }

    /// The end of a batch's reading: a source with nothing more to read
    /// (merge empty, and every topic caught up or nothing read for
    /// `kafka.max_task_idle`: a topic whose end is a transaction marker
    /// never looks caught up) closes its round, then the target applies
    /// what is closed. Returns the batch's count for the task's loop.
    pub(super) async fn end_routed_batch(
        &mut self,
        batch: &mut Batch,
        popped: usize,
        max_idle: std::time::Duration,
    ) -> Result<usize, PipelineError> {
        let shared = self.shared.clone();
        let router = self.router.as_ref().expect("routing");
        if !router.may_pop() {
            // Held back by its own target, not by a lagging topic.
            self.lag.waiting_since = None;
        }
        let quiet = router.since_last_pop() >= max_idle;
        let idle = self.driver.merge().is_empty()
            && (quiet
                || (0..shared.inputs()).all(|q| {
                    caught_up(
                        &self.consumer,
                        &shared,
                        self.partition,
                        &self.inputs.next,
                        q,
                    )
                }));
        if idle && popped < MAX_BATCH {
            self.input_idle(batch).await?;
        }
        let applied = self.apply_rounds(batch);
        self.send_notes(batch).await?;
        Ok(popped.max(applied).min(MAX_BATCH))
    }

    /// Applies what the sources have closed, whole rounds (a checkpoint
    /// never holds part of one: the partition's own events are committed
    /// at round ends), and sets the offsets the batch completes. Returns
    /// how many were applied.
    pub(super) fn apply_rounds(&mut self, batch: &mut Batch) -> usize {
        let shared = self.shared.clone();
        let rq = shared.repartition.expect("routing");
        let mut applied = 0;
        loop {
            let router = self.router.as_mut().expect("routing");
            let Some((source, r)) = router.assembly.pop() else {
                break;
            };
            if let Some(o) = r.offset {
                router.pending.remove(&o);
            }
            let round = router.assembly.next_round();
            let env = match r.load {
                Load::Event(env) => env,
                Load::Notes(notes) => {
                    let engine = self.driver.engine_mut();
                    for note in notes {
                        engine.receive(note, &mut self.out);
                    }
                    self.out_received.resize(self.out.len(), r.received);
                    self.collect_notes(round);
                    continue;
                }
            };
            tracing::trace!(
                target: "driftwatch::order",
                source,
                round,
                event = env.event.event_id(),
                at = %env.event.occurred_at(),
                "apply"
            );
            let held = !self.cut_short.is_empty()
                && self.cut_short.remove(&(
                    env.event.system(),
                    crate::model::id::EventId::new(env.event.event_id()),
                ));
            let skip = held
                || match (r.own_topic, r.offset) {
                    (Some(q), _) => self.reflected(q, &env),
                    (None, Some(o)) => self.reflected_at(rq, &env, o),
                    (None, None) => false,
                };
            if skip {
                self.driver.engine_mut().skip(&env, &mut self.out);
            } else {
                self.driver.engine_mut().apply(env, &mut self.out);
            }
            self.out_received.resize(self.out.len(), r.received);
            self.collect_notes(round);
            shared.stats.events.fetch_add(1, Ordering::Relaxed);
            batch.events += 1;
            applied += 1;
        }
        if applied > 0 {
            self.lag.last_input = Instant::now();
        }
        let router = self.router.as_mut().expect("routing");
        let next = router.assembly.next_round();
        // Marks of rounds reached are not needed again.
        for slot in &mut router.marks {
            if let Some((below, o)) = *slot {
                if below <= next {
                    router.pending.remove(&o);
                    *slot = None;
                }
            }
        }
        // The input offsets of the last round applied.
        while router.ends.front().is_some_and(|(below, _)| *below <= next) {
            let (below, offsets) = router.ends.pop_front().expect("a front");
            router.resume_round = below;
            for (q, o) in offsets.into_iter().enumerate() {
                if let Some(o) = o {
                    batch.offsets[q] = Some(o - 1);
                }
            }
        }
        tracing::debug!(
            round = router.rounds.round,
            pops = router.rounds.pops,
            next,
            closed = ?router.assembly.closed(),
            waiting = router.assembly.len(),
            pending = router.pending.len(),
            ends = router.ends.len(),
            applied,
            "rounds"
        );
        let position = router
            .pending
            .first()
            .copied()
            .unwrap_or(self.inputs.next[rq]);
        if position > 0 && position > self.applied_next[rq] {
            batch.offsets[rq] = Some(position - 1);
        }
        applied
    }
}

pub(super) fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// What a repartition record holds (taken apart at once: not boxed).
#[allow(clippy::large_enum_variant)]
enum Taken {
    /// Notes about accounts, opening the source's round `round`.
    Notes { source: usize, round: u64 },
    Mark {
        source: usize,
        below: u64,
        idle: bool,
    },
    /// An event with driftwatch's headers that does not decode.
    Unreadable(crate::codec::json::DecodeError),
    Event {
        source: usize,
        round: u64,
        env: Envelope,
    },
}

/// Reads a repartition record; `None` for one driftwatch did not write.
fn take(shared: &crate::kafka::Shared, m: &impl Message) -> Option<Taken> {
    let headers = m.headers()?;
    let get = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let number = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
    let source = number(SOURCE)? as usize;
    if source >= shared.partitions as usize {
        return None;
    }
    if let Some(below) = number(CLOSED) {
        let idle = get(IDLE) == Some("1");
        return Some(Taken::Mark {
            source,
            below,
            idle,
        });
    }
    let round = number(ROUND)?;
    if get(NOTES).is_some() {
        return Some(Taken::Notes { source, round });
    }
    let q = shared
        .topic_index(get(TOPIC)?)
        .filter(|&q| q < shared.inputs())?;
    let offset = number(OFFSET)? as i64;
    let topic = &shared.topics[q];
    // The event as its source wrote it: JSON, whatever the input's
    // encoding (its size was checked there, on the original).
    let payload = m.payload().unwrap_or_default();
    let event = match crate::codec::json::decode_json(topic.system, payload) {
        Ok(event) => event,
        Err(e) => return Some(Taken::Unreadable(e)),
    };
    Some(Taken::Event {
        source,
        round,
        env: Envelope {
            origin: Origin {
                topic: topic.id,
                partition: source as i32,
                offset,
            },
            event,
        },
    })
}
