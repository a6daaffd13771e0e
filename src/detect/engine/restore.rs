//! An engine rebuilt from the state changelog: its partition record, the
//! newest record of each key (left encoded, its head read) and the ids of
//! the de-duplication window.

use super::owners::MIN_FORWARDS_SWEEP;
use super::snapshot::{read_storm, Changes, PartitionRecord, RestoreError};
use super::storm::Storm;
use super::timers::{TimerKey, MIN_TIMER_SWEEP};
use super::{Engine, EngineStats};
use crate::config::Config;
use crate::detect::rules::Rule;
use crate::detect::state::{CodecError, Dedup, Frozen, Head, Heads, Reader, Store};
use crate::model::event::{Key, System};
use crate::model::id::EventId;
use crate::model::time::Ts;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

impl Engine {
    /// An engine holding what a checkpointing engine held at its last
    /// checkpoint: its partition record, the newest record of each key
    /// (`keys`, in any order), and the ids of the de-duplication window
    /// (`dedup`, oldest first: the pieces covering
    /// `partition.dedup_window`, joined) with the bounds of every piece
    /// written (`pieces`, as [`window_ids`](super::window_ids) gives
    /// them: those out of the window are deleted at the next checkpoint).
    /// It tracks changes from there.
    pub fn restore(
        cfg: Arc<Config>,
        partition: &PartitionRecord,
        keys: impl IntoIterator<Item = (Key, Vec<u8>)>,
        dedup: &[(System, EventId)],
        pieces: Vec<(u64, u64)>,
    ) -> Result<Engine, RestoreError> {
        let mut engine = Engine::new(cfg);
        let mut heads = Heads::default();
        let mut read = Vec::new();
        for (key, record) in keys {
            match engine.read_key(&mut heads, record) {
                Ok(r) => read.push((key, r)),
                Err(source) => {
                    return Err(RestoreError::Key {
                        key: key.to_string(),
                        source,
                    })
                }
            }
        }
        engine.restore_read(partition, read, heads, dedup, pieces)
    }

    /// Reads the head of a key record (its summary, accounts and open
    /// findings) into `heads` as the changelog is read, while its bytes
    /// are still in cache; scopes and teams go through this engine's
    /// interner. The engine, new, is then given every key read so, and
    /// `heads`, to [`Engine::restore_read`].
    pub fn read_key(
        &mut self,
        heads: &mut Heads,
        record: Vec<u8>,
    ) -> Result<(Frozen, Head), CodecError> {
        Frozen::with_head(record, heads, &mut |s| self.intern(s))
    }

    /// [`Engine::restore`] of key records read by [`Engine::read_key`] of
    /// this engine, which holds nothing else yet: the newest record of
    /// each key, and the `heads` they were read into.
    pub fn restore_read(
        self,
        partition: &PartitionRecord,
        keys: impl IntoIterator<Item = (Key, (Frozen, Head))>,
        heads: Heads,
        dedup: &[(System, EventId)],
        pieces: Vec<(u64, u64)>,
    ) -> Result<Engine, RestoreError> {
        let mut engine = self.restore_partition(partition, dedup, pieces)?;
        engine.restore_keys(keys, heads);
        Ok(engine)
    }

    /// The first half of [`Engine::restore_read`], the half that can
    /// fail: the partition record and the de-duplication window.
    pub fn restore_partition(
        self,
        partition: &PartitionRecord,
        dedup: &[(System, EventId)],
        pieces: Vec<(u64, u64)>,
    ) -> Result<Engine, RestoreError> {
        debug_assert!(self.tracked == 0 && self.changes.is_none());
        let mut engine = self;
        let mut r = Reader::new(&partition.bytes);
        // The header, read and checked by `PartitionRecord::read`.
        r.u8()?;
        r.u64()?;
        let (start, end) = (r.u64()?, r.u64()?);
        r.seq::<_, Vec<_>>(|r| Ok((r.u64()?, r.ts()?)))?;
        r.topics()?;
        engine.now = r.ts()?;
        engine.generation = r.u64()? + 1;
        engine.opening_serial = r.u64()?;
        engine.stats = EngineStats {
            events: r.u64()?,
            duplicates: r.u64()?,
            timers_fired: r.u64()?,
            opened: r.u64()?,
            escalated: r.u64()?,
            resolved: r.u64()?,
            held: r.u64()?,
        };
        let storms: Vec<Storm> = r.seq(read_storm)?;
        if storms.len() != engine.storms.len() {
            return r
                .fail(format!(
                    "{} storms for {} rules",
                    storms.len(),
                    engine.storms.len()
                ))
                .map_err(RestoreError::Codec);
        }
        engine.storms = storms;
        let timers: Vec<(Ts, u8, Rule)> = r.seq(|r| {
            let at = r.ts()?;
            let kind = r.pick(&[0u8, 1], "storm timer kind")?;
            Ok((at, kind, r.rule()?))
        })?;
        if partition.version >= 6 {
            let forwards: super::owners::Forwards = r.seq(|r| {
                let at = r.ts()?;
                let key = r.key()?;
                Ok((engine.read_account_ref(r)?, (key, at)))
            })?;
            engine.forwards = forwards;
            engine.forwards_sweep_at = (2 * engine.forwards.len()).max(MIN_FORWARDS_SWEEP);
        }
        r.finish()?;
        let mut heap = Vec::with_capacity(timers.len());
        for (at, kind, rule) in timers {
            heap.push(Reverse((
                at,
                if kind == 0 {
                    TimerKey::Storm(rule)
                } else {
                    TimerKey::StormEnd(rule)
                },
            )));
        }
        if dedup.len() as u64 != end - start {
            return Err(RestoreError::DedupGap {
                from: start + dedup.len() as u64,
                to: end,
            });
        }
        engine.dedup = Dedup::restored(
            engine.cfg.dedup_capacity,
            engine.cfg.dedup_max_age_ms,
            dedup.iter().map(|(s, id)| (*s, id)),
            end,
            &partition.dedup_stretches,
        );
        engine.timers_sweep_at = (2 * heap.len()).max(MIN_TIMER_SWEEP);
        engine.timers = BinaryHeap::from(heap);
        engine.changes = Some(Changes::restored(end, pieces));
        Ok(engine)
    }

    /// The second half of [`Engine::restore_read`]: the keys, each left
    /// encoded until first touched; its head gives what the engine's
    /// totals, index of accounts and timers need of it.
    pub fn restore_keys(
        &mut self,
        keys: impl IntoIterator<Item = (Key, (Frozen, Head))>,
        mut heads: Heads,
    ) {
        debug_assert!(self.tracked == 0);
        let keys = keys.into_iter();
        // Sized once for the keys coming, not grown key by key; the index
        // of accounts for their share of the accounts read (a changelog
        // not compacted yet holds older records of some keys).
        let (read, coming) = (heads.read_count(), keys.size_hint());
        let coming = coming.1.unwrap_or(coming.0).min(read);
        if Arc::strong_count(&self.store) == 1 {
            self.store = Arc::new(Store::with_capacity(coming));
        }
        self.owners
            .reserve(heads.owned_count() * coming / read.max(1));
        let store = self.store.clone();
        let mut heap = std::mem::take(&mut self.timers).into_vec();
        for (key, (frozen, head)) in keys {
            for id in heads.owned(&head) {
                self.owners.set(id, None, &key, &store);
            }
            heads.keep(&head);
            let summary = head.summary;
            self.entries += summary.entries as usize;
            // Serials of openings a key's record holds (one written after
            // the partition record) are never given out again.
            self.opening_serial = self.opening_serial.max(summary.opening);
            if summary.known_to_hr {
                self.workers += 1;
            }
            if let Some(at) = summary.wake_at {
                heap.push(Reverse((at, TimerKey::Worker(key.clone()))));
            }
            if store.frozen().insert(key, frozen).is_none() {
                self.tracked += 1;
                self.frozen += 1;
            }
        }
        self.restored_open = Some(heads.into_open());
        self.timers_sweep_at = (2 * heap.len()).max(MIN_TIMER_SWEEP);
        self.timers = BinaryHeap::from(heap);
    }
}
