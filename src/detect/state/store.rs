//! The store of one partition task: a `DashMap` from correlation key to
//! [`WorkerState`], and the staged prefetch of what a coming event will
//! touch (its map entry, located from hashbrown's memory layout through
//! DashMap's `raw-api`, then its lists, then its grant lists).

use super::cpu::{prefetch, prefetch_lines};
use super::WorkerState;
use crate::model::event::Key;
use dashmap::DashMap;

/// The store of one partition task.
#[derive(Debug, Default)]
pub struct Store {
    map: DashMap<Key, WorkerState, ahash::RandomState>,
}

impl Store {
    pub fn new() -> Store {
        Store::default()
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

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
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
