//! The store of one partition task: a `DashMap` from correlation key to
//! [`WorkerState`], the keys a restore left encoded ([`Frozen`], decoded
//! when first touched), and the staged prefetch of what a coming event
//! will touch (its map entry, located from hashbrown's memory layout
//! through DashMap's `raw-api`, then its lists, then its grant lists).

use super::cpu::{prefetch, prefetch_lines};
use super::record::{read_open, Head, Heads, Summary};
use super::{CodecError, Reader, WorkerState};
use crate::model::event::Key;
use crate::model::finding::OpenFinding;
use crate::model::id::Sym;
use crate::model::time::Ts;
use dashmap::DashMap;

/// A key's record as the state changelog holds it, not decoded yet: a
/// restore reads only its [`Summary`], and the engine decodes the rest
/// when an event, a timer or a storm first touches the key.
#[derive(Debug)]
pub struct Frozen {
    record: Box<[u8]>,
    wake_at: Option<Ts>,
}

impl Frozen {
    /// Keeps `record` (a key record of the changelog) after reading its
    /// head (summary, accounts, open findings) into `heads`; scopes and
    /// teams go through `intern`.
    pub fn with_head(
        record: Vec<u8>,
        heads: &mut Heads,
        intern: &mut dyn FnMut(&str) -> Sym,
    ) -> Result<(Frozen, Head), CodecError> {
        let head = heads.read(&record, intern)?;
        let frozen = Frozen {
            record: record.into_boxed_slice(),
            wake_at: head.summary.wake_at,
        };
        Ok((frozen, head))
    }

    /// The time the key's timer is set for, if any.
    pub fn wake_at(&self) -> Option<Ts> {
        self.wake_at
    }

    /// The record, as the changelog holds it.
    pub fn record(&self) -> &[u8] {
        &self.record
    }

    /// The summary read at restore.
    pub fn summary(&self) -> Result<Summary, CodecError> {
        Summary::read(&mut Reader::new(&self.record))
    }

    /// The findings the key holds open or escalated.
    pub fn open_findings(&self) -> Result<Vec<OpenFinding>, CodecError> {
        let mut r = Reader::new(&self.record);
        Summary::read(&mut r)?;
        read_open(&mut r)
    }

    /// Whether the key holds findings open or escalated (read from the
    /// record's list of them, not decoded).
    pub fn holds_open(&self) -> Result<bool, CodecError> {
        let mut r = Reader::new(&self.record);
        Summary::read(&mut r)?;
        Ok(Reader::new(r.bytes()?).count()? > 0)
    }

    /// Decodes the key's state; texts go through `intern`.
    pub fn thaw(&self, intern: &mut dyn FnMut(&str) -> Sym) -> Result<WorkerState, CodecError> {
        thaw_record(&self.record, intern)
    }
}

/// Decodes the state in a key record, past its summary and open findings.
fn thaw_record(
    record: &[u8],
    intern: &mut dyn FnMut(&str) -> Sym,
) -> Result<WorkerState, CodecError> {
    let mut r = Reader::new(record);
    Summary::read(&mut r)?;
    r.bytes()?;
    let st = WorkerState::decode(&mut r, intern)?;
    r.finish()?;
    Ok(st)
}

/// The store of one partition task. Both maps hash keys alike, so a key's
/// hash finds it in either ([`Store::holder`]).
#[derive(Debug)]
pub struct Store {
    map: DashMap<Key, WorkerState, ahash::RandomState>,
    frozen: DashMap<Key, Frozen, ahash::RandomState>,
}

impl Default for Store {
    fn default() -> Store {
        Store::with_capacity(0)
    }
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// A store sized for `keys` keys left encoded (a restore's).
    pub fn with_capacity(keys: usize) -> Store {
        let hasher = ahash::RandomState::new();
        Store {
            map: DashMap::with_hasher(hasher.clone()),
            frozen: DashMap::with_capacity_and_hasher(keys, hasher),
        }
    }

    /// The hash of `key` in both maps.
    pub fn key_hash(&self, key: &Key) -> u64 {
        self.map.hash_usize(key) as u64
    }

    /// A key of hash `hash` whose state `in_state` accepts, or (left
    /// encoded by a restore) whose record `in_record` accepts.
    pub fn holder(
        &self,
        hash: u64,
        mut in_state: impl FnMut(&WorkerState) -> bool,
        mut in_record: impl FnMut(&Frozen) -> bool,
    ) -> Option<Key> {
        let shard = self.map.shards()[self.map.determine_shard(hash as usize)].read();
        if let Some((key, _)) = shard.get(hash, |(_, st)| in_state(st.get())) {
            return Some(key.clone());
        }
        drop(shard);
        let shard = self.frozen.shards()[self.frozen.determine_shard(hash as usize)].read();
        shard
            .get(hash, |(_, f)| in_record(f.get()))
            .map(|(key, _)| key.clone())
    }

    /// Keys a restore left encoded (the engine alone takes them out).
    pub fn frozen(&self) -> &DashMap<Key, Frozen, ahash::RandomState> {
        &self.frozen
    }

    /// Whether `key` has state, decoded or not.
    pub fn contains(&self, key: &Key) -> bool {
        self.map.contains_key(key) || self.frozen.contains_key(key)
    }

    /// Calls `f` with `key`'s state, decoding it for the call (not in
    /// place) if it is still encoded. Readers outside the engine use this;
    /// a state that cannot be decoded is logged and passed over. The
    /// frozen keys are looked at first: the engine puts a decoded state in
    /// the map before it takes the record out of them, so a key being
    /// decoded meanwhile is found in one or the other.
    pub fn with_state<R>(&self, key: &Key, f: impl FnOnce(&WorkerState) -> R) -> Option<R> {
        let record = self.frozen.get(key).map(|e| e.record.clone());
        if let Some(record) = record {
            return match thaw_record(&record, &mut Sym::new) {
                Ok(st) => Some(f(&st)),
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "a key's state in the changelog cannot be decoded");
                    None
                }
            };
        }
        self.map.get(key).map(|st| f(&st))
    }

    /// Calls `f` with the state of every key that may hold open findings:
    /// the encoded keys whose record lists some, decoded for the call,
    /// then every decoded key (a walk over the whole store: for queries,
    /// not for the hot path). A key the engine decodes meanwhile may be
    /// passed twice, never missed: callers drop repeats.
    pub fn for_each_with_open_findings(&self, mut f: impl FnMut(&WorkerState)) {
        // Copied out first: decoding under the frozen keys' locks would
        // hold up the engine taking decoded keys out of them.
        let mut records: Vec<(Key, Box<[u8]>)> = Vec::new();
        for e in self.frozen.iter() {
            match e.value().holds_open() {
                Ok(true) => records.push((e.key().clone(), e.value().record.clone())),
                Ok(false) => {}
                Err(err) => {
                    tracing::error!(key = %e.key(), error = %err, "a key's state in the changelog cannot be decoded")
                }
            }
        }
        for (key, record) in records {
            match thaw_record(&record, &mut Sym::new) {
                Ok(st) => f(&st),
                Err(err) => {
                    tracing::error!(key = %key, error = %err, "a key's state in the changelog cannot be decoded")
                }
            }
        }
        for e in self.map.iter() {
            f(e.value());
        }
    }

    /// The findings open or escalated, as the owner gauges count them
    /// (read from the records of keys still encoded).
    pub fn open_findings(&self) -> Vec<OpenFinding> {
        let mut out: Vec<OpenFinding> = Vec::new();
        for e in self.map.iter() {
            out.extend(e.value().open_findings().map(OpenFinding::from));
        }
        for e in self.frozen.iter() {
            match e.value().open_findings() {
                Ok(open) => out.extend(open),
                Err(err) => {
                    tracing::error!(key = %e.key(), error = %err, "a key's state in the changelog cannot be decoded")
                }
            }
        }
        out
    }

    /// Starts loading the map entry of `key` (the control bytes of its
    /// home group and the entries of its home slot and the two after,
    /// where it almost always is) without reading either: the first of
    /// three stages, for the event three ahead of the one being applied.
    pub fn prefetch_entry(&self, key: &Key) {
        let (ctrl, entries) = self.home(key);
        prefetch(ctrl);
        prefetch_lines(entries.start as *const u8, 3);
    }

    /// Where `key` should be found: the address of its home group of
    /// control bytes, and the bytes of the entries in its home slot and
    /// the two after. In hashbrown's layout control bytes start at
    /// `data_end`, entries lie below it in reverse order, and a probe
    /// starts at `hash & mask`. Addresses are computed (wrapping), nothing
    /// is read; a unit test checks that keys are found there.
    fn home(&self, key: &Key) -> (*const u8, std::ops::Range<usize>) {
        let hash = self.map.hash_usize(key);
        let table = self.map.shards()[self.map.determine_shard(hash)].read();
        let home = hash & (table.buckets() - 1);
        let end = table.data_end().as_ptr();
        let ctrl = end.cast::<u8>().wrapping_add(home).cast_const();
        // The slots after home are below it.
        let entries = end.wrapping_sub(home + 3) as usize..end.wrapping_sub(home) as usize;
        (ctrl, entries)
    }

    /// Looks `key` up (its entry is in cache after `prefetch_entry`) and
    /// starts loading its HR records, accounts and episodes: the second
    /// stage, two events ahead.
    pub fn prefetch_lists(&self, key: &Key) {
        if let Some(st) = self.map.get(key) {
            prefetch_lines(st.hr.as_ptr(), 3);
            prefetch_lines(st.accounts.as_ptr(), 3);
            if let Some(w) = &st.watch {
                prefetch(&**w);
            }
        }
    }

    /// Looks `key` up and starts loading what its accounts point to (grant
    /// lists, attributes): the last stage, for the next event.
    pub fn prefetch(&self, key: &Key) {
        if let Some(st) = self.map.get(key) {
            for a in st.accounts.iter().take(2) {
                prefetch(a.grants.as_ptr());
                if let Some(attrs) = &a.stated {
                    prefetch(&**attrs);
                }
            }
        }
    }

    pub fn map(&self) -> &DashMap<Key, WorkerState, ahash::RandomState> {
        &self.map
    }

    /// Keys held, decoded or not.
    pub fn len(&self) -> usize {
        self.map.len() + self.frozen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.frozen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefetch of a map entry aims where hashbrown puts it: were the
    /// layout to change under `Store::home`, prefetching would go on
    /// silently loading the wrong lines.
    #[test]
    fn keys_are_found_where_their_entry_is_prefetched() {
        let store = Store::new();
        let keys: Vec<Key> = (0..50_000).map(|i| Key::worker(&format!("w{i}"))).collect();
        for k in &keys {
            store.map().entry(k.clone()).or_default();
        }
        let at_home = keys
            .iter()
            .filter(|k| {
                let (_, entries) = store.home(k);
                let entry = store.map().get(*k).expect("inserted");
                let addr = &*entry as *const WorkerState as usize;
                entries.contains(&addr)
            })
            .count();
        // Most keys sit in their home slot or just after it (84% here,
        // where the tables are three quarters full); a wrong layout would
        // find almost none there.
        assert!(at_home * 4 > keys.len() * 3, "{at_home} of {}", keys.len());
    }
}
