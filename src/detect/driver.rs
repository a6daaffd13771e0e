//! How records reach an engine: taken from the merge in stream order, the
//! state of the next few prefetched, then applied.
//!
//! File replay, state restore and the live partition task each read their
//! records differently (files, a plain consumer up to the committed offsets,
//! the group's partition queues) and decide differently when an empty topic
//! may be passed over, but all three feed their engine through a
//! [`Driver`]: the same merge, the same prefetch, the same apply. That is
//! what makes live equal replay.

use crate::detect::engine::Engine;
use crate::detect::merge::{Merge, Timed};
use crate::model::event::Envelope;
use crate::model::finding::Finding;

/// A record of a partition's merge.
pub trait Record: Timed {
    /// The event it carries; `None` for a record that changes no state (one
    /// that failed to decode, on its way to the dead-letter topic).
    fn event(&self) -> Option<&Envelope>;
}

impl Record for Envelope {
    fn event(&self) -> Option<&Envelope> {
        Some(self)
    }
}

/// One partition's engine and the merge of its topics.
pub struct Driver<T> {
    engine: Engine,
    merge: Merge<T>,
}

impl<T: Record> Driver<T> {
    /// A driver for `topics` input topics.
    pub fn new(engine: Engine, topics: usize) -> Driver<T> {
        Driver {
            engine,
            merge: Merge::new(topics),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn into_engine(self) -> Engine {
        self.engine
    }

    /// The records read and not yet applied.
    pub fn merge(&self) -> &Merge<T> {
        &self.merge
    }

    /// Queues a record of topic `q` read at `offset`.
    pub fn push(&mut self, q: usize, offset: i64, record: T) {
        self.merge.push(q, offset, record);
    }

    /// The next record in stream order as `(topic, offset, record)`; see
    /// [`Merge::pop`] for `settled`.
    pub fn pop(&mut self, settled: impl FnMut(usize) -> bool) -> Option<(usize, i64, T)> {
        self.merge.pop(settled)
    }

    /// Applies `env`, the event of the record just popped, after
    /// prefetching the state of the records that come next (a hint: it is
    /// exact when the popped topic was refilled first, as restore does).
    /// Findings go to `out`.
    pub fn apply(&mut self, env: Envelope, out: &mut Vec<Finding>) {
        self.engine
            .prefetch(self.merge.peek_ahead().map(|r| r.and_then(Record::event)));
        self.engine.apply(env, out);
    }

    /// Drops the records not applied (whoever owns the partition next reads
    /// them again).
    pub fn clear(&mut self) {
        self.merge.clear();
    }
}
