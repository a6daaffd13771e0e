//! A partition task's input: each topic's records read from its own
//! librdkafka queue when the merge needs that topic, decoded straight from
//! librdkafka's buffers.

use crate::codec::json::DecodeError;
use crate::detect::driver::{Driver, Record};
use crate::detect::merge::Timed;
use crate::kafka::{Ctx, PipelineError, Shared};
use crate::model::event::{Envelope, Origin};
use crate::model::time::Ts;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Records read from a topic's queue at a time, when the merge needs it.
const REFILL: usize = 64;

/// A message that could not be decoded, on its way to the dead-letter topic.
pub(super) struct Bad {
    pub(super) error: DecodeError,
    pub(super) key: Option<Vec<u8>>,
    pub(super) payload: Vec<u8>,
}

/// A record of the merge. Events are the common case: not boxed, so
/// decoding does not allocate twice.
#[allow(clippy::large_enum_variant)]
pub(super) enum Item {
    /// An event and when its message arrived.
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

impl Record for Item {
    fn event(&self) -> Option<&Envelope> {
        match self {
            Item::Event(env, _) => Some(env),
            Item::Bad(_) => None,
        }
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
    pub(super) wake: Arc<Notify>,
    /// Per topic: its queue was empty when last read.
    empty: Vec<bool>,
    /// Per topic: the next offset expected, what was received, else the
    /// committed offset.
    pub(super) next: Vec<i64>,
    /// Per topic: where reading started, until its log start is checked
    /// against it (once records have been fetched).
    pub(super) unchecked_start: Vec<Option<i64>>,
}

/// A record held back until the registry is asked for its schema id.
pub(super) type Waiting = (u32, rdkafka::message::OwnedMessage, Instant);

impl Inputs {
    pub(crate) fn new(mut queues: Vec<PartitionQueue<Ctx>>) -> Inputs {
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
            next: vec![0; queues.len()],
            unchecked_start: vec![None; queues.len()],
            queues,
            arrived,
            wake,
        }
    }

    /// Starts reading at `committed` (the offsets the restored state
    /// reflects).
    pub(super) fn start_at(&mut self, committed: &[Option<i64>]) {
        self.next = committed.iter().map(|c| c.unwrap_or(0)).collect();
        self.unchecked_start = committed.iter().map(|c| c.filter(|&c| c > 0)).collect();
    }

    /// Topic `q` may have records in its queue.
    pub(super) fn may_have(&self, q: usize) -> bool {
        !self.empty[q] || self.arrived[q].load(Ordering::Acquire)
    }

    /// Reads up to [`REFILL`] records of topic `q` from its queue into the
    /// merge. Stops at a record whose Avro schema is not known yet and
    /// returns it.
    pub(super) fn refill(
        &mut self,
        shared: &Shared,
        partition: i32,
        q: usize,
        driver: &mut Driver<Item>,
    ) -> Result<Option<Waiting>, PipelineError> {
        // Cleared before reading: a record enqueued from here on sets it again.
        self.arrived[q].store(false, Ordering::Release);
        let received = Instant::now();
        let mut read = 0;
        let mut messages = 0;
        let mut waiting = None;
        self.empty[q] = loop {
            if read == REFILL {
                break false;
            }
            let Some(result) = self.queues[q].poll(Duration::ZERO) else {
                break true;
            };
            read += 1;
            match result {
                Ok(m) => {
                    messages += 1;
                    // Before where the restored state resumes: in it already.
                    if m.offset() < self.next[q] {
                        continue;
                    }
                    if let Some(id) = m.payload().and_then(|p| shared.decoder.pending_schema(p)) {
                        waiting = Some((id, m.detach(), received));
                        break false;
                    }
                    ingest(&mut self.next, shared, partition, q, &m, received, driver);
                }
                Err(e) => tracing::warn!(error = %e, "consume error (librdkafka retries)"),
            }
        };
        if messages > 0 {
            shared.topics[q].consumed.inc_by(messages);
        }
        Ok(waiting)
    }
}

impl Inputs {
    /// Reads up to `max` records of topic `q` and hands each to `f`,
    /// without the merge (the repartition topic); records before where
    /// the restored state resumes are passed over. Returns how many were
    /// read.
    pub(super) fn drain(
        &mut self,
        q: usize,
        max: usize,
        mut f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
    ) -> usize {
        self.arrived[q].store(false, Ordering::Release);
        let mut read = 0;
        self.empty[q] = loop {
            if read == max {
                break false;
            }
            let Some(result) = self.queues[q].poll(Duration::ZERO) else {
                break true;
            };
            read += 1;
            match result {
                Ok(m) => {
                    if m.offset() >= self.next[q] {
                        self.next[q] = m.offset() + 1;
                        f(&m);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "consume error (librdkafka retries)"),
            }
        };
        read
    }
}

/// Decodes message `m` of topic `q` into the merge: an event, or a
/// record for the dead-letter topic.
pub(super) fn ingest(
    next: &mut [i64],
    shared: &Shared,
    partition: i32,
    q: usize,
    m: &impl Message,
    received: Instant,
    driver: &mut Driver<Item>,
) {
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
    driver.push(q, offset, item);
}

/// Whether topic `q` of `partition` is caught up: librdkafka's cached high
/// watermark (as of the last fetch response; no request is sent) is not
/// beyond the next offset to read.
pub(super) fn caught_up<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    partition: i32,
    next: &[i64],
    q: usize,
) -> bool {
    cached_watermarks(consumer, shared, partition, q)
        .is_some_and(|(low, high)| high <= next[q].max(low))
}

/// Topic `q` of `partition`'s low and high watermarks as of the last fetch
/// response (no request is sent); `None` before one.
pub(super) fn cached_watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    partition: i32,
    q: usize,
) -> Option<(i64, i64)> {
    let mut low = -1i64;
    let mut high = -1i64;
    // SAFETY: the client pointer lives as long as `consumer`, the topic name
    // is a NUL-terminated string, and the out-parameters are valid for
    // writes. rd_kafka_get_watermark_offsets only reads local state under
    // its locks.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            shared.topics[q].c_name.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}
