//! Messages of one partition taken many at a time, in one call to
//! librdkafka (`rd_kafka_consume_batch_queue`), for the state changelog's
//! restore. Its records come by the thousand, already fetched, and taking
//! them one poll at a time (rust-rdkafka's `poll`: an event, its handle
//! and a clock reading per message) costs as much CPU as decoding them.
//!
//! The partition's messages are split from the consumer's queue into the
//! partition's own before it is assigned (as rust-rdkafka's
//! `split_partition_queue` does), so that every one of them comes here, in
//! order; librdkafka's logs and client errors stay on the consumer's queue,
//! which its owner polls as usual. Only for consumers that `assign`: a
//! batch serves no rebalance. Messages are borrowed from the batch and
//! destroyed when it is refilled or dropped.

use super::PlainConsumer;
use rdkafka::bindings as rd;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::ffi::{CStr, CString};
use std::time::Duration;

/// The most messages taken at once.
const BATCH: usize = 1024;

/// Messages taken from the queue of one partition of a consumer; lives no
/// longer than the consumer.
pub(super) struct Batch<'c> {
    queue: *mut rd::rd_kafka_queue_t,
    taken: Vec<*mut rd::rd_kafka_message_t>,
    _consumer: std::marker::PhantomData<&'c PlainConsumer>,
}

/// One message of a [`Batch`].
pub(super) struct Taken<'b> {
    m: &'b rd::rd_kafka_message_t,
}

impl<'c> Batch<'c> {
    /// A batch reading partition `partition` of `topic`, split from
    /// `consumer`'s queue: to be called before the partition is assigned.
    /// The split lasts for the consumer's life (librdkafka never forwards
    /// an application's queue again), so every later reader of that
    /// partition through this consumer must be a batch too.
    pub(super) fn for_partition(
        consumer: &'c PlainConsumer,
        topic: &str,
        partition: i32,
    ) -> Result<Batch<'c>, String> {
        let name = CString::new(topic).map_err(|_| format!("topic {topic:?} holds a NUL"))?;
        // SAFETY: the client pointer is valid while `consumer` lives, which
        // outlives the batch; the queue handle returned holds its own
        // reference, released in `drop`. Forwarding it nowhere keeps the
        // partition's messages in it.
        let queue = unsafe {
            let q = rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                name.as_ptr(),
                partition,
            );
            if !q.is_null() {
                rd::rd_kafka_queue_forward(q, std::ptr::null_mut());
            }
            q
        };
        if queue.is_null() {
            return Err(format!(
                "librdkafka gave no queue for {topic} [{partition}]"
            ));
        }
        Ok(Batch {
            queue,
            taken: Vec::with_capacity(BATCH),
            _consumer: std::marker::PhantomData,
        })
    }

    /// Destroys the messages taken before, then takes those waiting in the
    /// queue (up to [`BATCH`]); if none is, waits up to `wait` for one.
    /// The number taken.
    pub(super) fn refill(&mut self, wait: Duration) -> usize {
        self.release();
        // What is queued already; then, when nothing is, one message as
        // soon as it comes (a batch call waits for a full batch or the
        // timeout, so asking for one is what returns at once).
        self.take(0, BATCH);
        if self.taken.is_empty() {
            self.take(wait.as_millis().min(i32::MAX as u128) as i32, 1);
        }
        self.taken.len()
    }

    fn take(&mut self, timeout_ms: i32, n: usize) {
        debug_assert!(self.taken.is_empty());
        // SAFETY: `taken` is empty (every caller releases first) and has
        // room for `n` pointers (n <= BATCH <= its capacity); librdkafka
        // writes the count it returns from the start, each message owned
        // by us until `rd_kafka_message_destroy`.
        unsafe {
            let got = rd::rd_kafka_consume_batch_queue(
                self.queue,
                timeout_ms,
                self.taken.as_mut_ptr(),
                n.min(self.taken.capacity()),
            );
            if got > 0 {
                self.taken.set_len(got as usize);
            }
        }
    }

    /// The messages taken by the last [`Batch::refill`].
    pub(super) fn iter(&self) -> impl Iterator<Item = Taken<'_>> {
        // SAFETY: each pointer is a live message until the next refill or
        // drop, which the borrow of `self` rules out meanwhile.
        self.taken.iter().map(|&m| Taken { m: unsafe { &*m } })
    }

    fn release(&mut self) {
        for m in self.taken.drain(..) {
            // SAFETY: taken from `rd_kafka_consume_batch_queue`, destroyed once.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.release();
        // SAFETY: the reference `rd_kafka_queue_get_partition` gave.
        unsafe { rd::rd_kafka_queue_destroy(self.queue) };
    }
}

impl Taken<'_> {
    /// The error the message carries instead of a record, if any.
    pub(super) fn error(&self) -> Option<KafkaError> {
        if self.m.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        Some(KafkaError::MessageConsumption(RDKafkaErrorCode::from(
            self.m.err,
        )))
    }

    pub(super) fn topic(&self) -> &str {
        if self.m.rkt.is_null() {
            return "";
        }
        // SAFETY: a message's topic handle and its name live as long as
        // the message.
        unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.m.rkt)) }
            .to_str()
            .unwrap_or("")
    }

    pub(super) fn partition(&self) -> i32 {
        self.m.partition
    }

    pub(super) fn offset(&self) -> i64 {
        self.m.offset
    }

    pub(super) fn key(&self) -> Option<&[u8]> {
        bytes(self.m.key, self.m.key_len)
    }

    pub(super) fn payload(&self) -> Option<&[u8]> {
        bytes(self.m.payload, self.m.len)
    }
}

fn bytes<'a>(p: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: librdkafka's pointer and length of a key or payload, valid
    // while the message is.
    Some(unsafe { std::slice::from_raw_parts(p as *const u8, len) })
}
