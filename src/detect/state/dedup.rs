//! The bounded memory of recently seen event ids that makes a redelivered
//! event a no-op.

use super::cpu::prefetch;
use crate::model::event::System;
use std::collections::VecDeque;

/// A bounded memory of recently seen event ids (FIFO eviction), so that a
/// redelivered event is ignored.
///
/// The ids are held as 64-bit fingerprints in an open-addressing table
/// with linear probing, at most half full, and deletion by backward shift
/// (no tombstones). At a million ids both the table and the arrival order
/// are far larger than the CPU caches, so an insert and the eviction it
/// causes each cost a cache miss: the slot of the next id to be evicted is
/// known one insert ahead and is prefetched then.
#[derive(Debug)]
pub struct Dedup {
    capacity: usize,
    /// Fingerprints in arrival order, oldest first.
    order: VecDeque<u64>,
    /// Fingerprints (never 0) or 0 for an empty slot; a power of two long.
    slots: Box<[u64]>,
    /// log2 of `slots.len()`.
    bits: u32,
}

/// The table's first size; it doubles when half full.
const DEDUP_MIN_BITS: u32 = 10;

impl Dedup {
    pub fn new(capacity: usize) -> Dedup {
        Dedup {
            capacity,
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            slots: vec![0; 1 << DEDUP_MIN_BITS].into_boxed_slice(),
            bits: DEDUP_MIN_BITS,
        }
    }

    /// Returns false when `id` was seen recently.
    pub fn insert(&mut self, system: System, id: &str) -> bool {
        let h = fingerprint(system, id);
        let mut i = self.home(h);
        loop {
            match self.slots[i] {
                0 => break,
                v if v == h => return false,
                _ => i = (i + 1) & self.mask(),
            }
        }
        self.slots[i] = h;
        self.order.push_back(h);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.remove(old);
            }
        } else if 2 * self.order.len() > self.slots.len() {
            self.grow();
        }
        if let Some(&next) = self.order.front() {
            prefetch(&self.slots[self.home(next)]);
        }
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Starts loading the slot `id` will probe first.
    pub fn prefetch(&self, system: System, id: &str) {
        let h = fingerprint(system, id);
        prefetch(&self.slots[self.home(h)]);
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot a fingerprint probes first: the top bits of a Fibonacci
    /// hash (FNV's low bits mix poorly).
    fn home(&self, h: u64) -> usize {
        (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits)) as usize
    }

    /// Removes `h`, which is in the table, shifting back the entries that
    /// probed past its slot so that every entry stays reachable from its home.
    fn remove(&mut self, h: u64) {
        let mask = self.mask();
        let mut hole = self.home(h);
        while self.slots[hole] != h {
            hole = (hole + 1) & mask;
        }
        self.slots[hole] = 0;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let v = self.slots[j];
            if v == 0 {
                break;
            }
            // The entry may fill the hole if the hole lies between its
            // home and where it sits.
            let home = self.home(v);
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.slots[hole] = v;
                self.slots[j] = 0;
                hole = j;
            }
        }
    }

    /// Makes room for `n` more ids at once (as many as a restore is about to
    /// apply), instead of doubling the table step by step on the way.
    pub fn reserve(&mut self, n: usize) {
        let want = (self.order.len() + n).min(self.capacity);
        let bits = self.want_bits(want);
        if bits > self.bits {
            self.rehash(bits);
        }
    }

    /// The table size (log2) that holds `n` ids at most half full.
    fn want_bits(&self, n: usize) -> u32 {
        let slots = (2 * n).next_power_of_two().max(1 << DEDUP_MIN_BITS);
        slots.trailing_zeros().max(self.bits)
    }

    fn grow(&mut self) {
        self.rehash(self.bits + 1);
    }

    fn rehash(&mut self, bits: u32) {
        self.bits = bits;
        let old = std::mem::replace(&mut self.slots, vec![0; 1 << self.bits].into_boxed_slice());
        let mask = self.mask();
        for h in old.iter().copied().filter(|&h| h != 0) {
            let mut i = self.home(h);
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = h;
        }
    }
}

fn fingerprint(system: System, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in std::iter::once(&(system as u8)).chain(id.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // 0 marks an empty slot of the table.
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_is_bounded_and_forgets_oldest() {
        let mut d = Dedup::new(2);
        assert!(d.insert(System::Hr, "a"));
        assert!(!d.insert(System::Hr, "a"));
        assert!(
            d.insert(System::Directory, "a"),
            "families have their own ids"
        );
        assert!(d.insert(System::Hr, "b"));
        assert_eq!(d.len(), 2);
        assert!(d.insert(System::Hr, "a"), "evicted, so accepted again");
    }

    /// The table answers as a plain set with FIFO eviction would, through
    /// growth, evictions and the backward shifts they cause, with ids drawn
    /// from a small universe so that many repeat inside the window.
    #[test]
    fn dedup_matches_a_fifo_set() {
        use crate::tools::generate::Rng;
        use std::collections::HashSet;
        let mut rng = Rng::new(11);
        for capacity in [1, 7, 600, 5_000] {
            let mut d = Dedup::new(capacity);
            let mut order = VecDeque::new();
            let mut seen = HashSet::new();
            for step in 0..40_000 {
                if step == 20_000 {
                    d.reserve(3 * capacity);
                }
                let id = format!("e{}", rng.below(2 * capacity as u64 + 50));
                let fresh = seen.insert(id.clone());
                if fresh {
                    order.push_back(id.clone());
                    if order.len() > capacity {
                        let old = order.pop_front().expect("non-empty");
                        seen.remove(&old);
                    }
                }
                assert_eq!(
                    d.insert(System::App, &id),
                    fresh,
                    "capacity {capacity}, step {step}, id {id}"
                );
                assert_eq!(d.len(), order.len());
            }
        }
    }

    #[test]
    fn dedup_reserve_sizes_the_table_once() {
        let mut d = Dedup::new(100_000);
        d.reserve(12_000);
        assert_eq!(d.slots.len(), 1 << 15);
        for i in 0..12_000 {
            assert!(d.insert(System::Hr, &format!("r{i}")));
        }
        assert_eq!(d.slots.len(), 1 << 15, "no growth within the reserve");
        assert!(!d.insert(System::Hr, "r0"));
        d.insert(System::Hr, "one more");
        d.reserve(5_000_000);
        assert_eq!(d.slots.len(), 1 << 18, "never past the capacity");
        d.reserve(10);
        assert_eq!(d.slots.len(), 1 << 18, "never shrinks");
        assert!(!d.insert(System::Hr, "r11999"));
    }
}
