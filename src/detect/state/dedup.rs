//! The bounded memory of recently seen event ids that makes a redelivered
//! event a no-op.

use super::cpu::prefetch;
use crate::model::event::System;
use crate::model::id::EventId;
use crate::model::time::Ts;
use std::collections::VecDeque;

/// A bounded memory of recently seen event ids (FIFO eviction), so that a
/// redelivered event is ignored, and only a redelivered one: two different
/// ids are never taken for one another, however their hashes compare.
///
/// The ids are held whole, in arrival order, as [`EventId`]s (no
/// allocation for an id of up to 22 bytes or a canonical UUID; a longer
/// one shares the event reference's text). An open-addressing table with
/// linear probing, at most half full, and deletion by backward shift (no
/// tombstones) finds them: a slot holds 32 bits of the id's hash (whose
/// top bits are its home slot) and the id's arrival number, which locates
/// it in the arrival order; the id is compared in full only when those 32
/// bits match. At a million ids both the table and the arrival order are
/// far larger than the CPU caches, so an insert and the eviction it causes
/// each cost a cache miss: the slot of the next id to be evicted is known
/// one insert ahead and is prefetched then.
///
/// With a maximum age, an id is also forgotten once stream time has moved
/// that far past its arrival (give or take a 64th of the age): the window
/// then holds the ids of a stretch of stream time, and stays the same size
/// however long the history behind it. Arrivals are grouped in stretches
/// of a 64th of the age, each noted by its first id's number and its start,
/// and forgotten a stretch at a time; the stretches are part of the window,
/// so a restored window forgets exactly as the one it was written from.
#[derive(Debug)]
pub struct Dedup {
    capacity: usize,
    /// `state.dedup_max_age` in milliseconds of stream time (None: only the
    /// capacity bounds the window).
    max_age: Option<i64>,
    /// The number of the first id of each stretch of arrivals, and the
    /// stream time the stretch began, oldest first.
    stretches: VecDeque<(u64, Ts)>,
    /// The ids in arrival order, oldest first.
    order: VecDeque<Seen>,
    /// The arrival number of `order`'s front (wrapping): an id's position
    /// in `order` is its arrival number less this one.
    first: u32,
    /// `tag << 32 | arrival number` of an id, or 0 for an empty slot (a
    /// tag is never 0); a power of two long.
    slots: Box<[u64]>,
    /// log2 of `slots.len()`.
    bits: u32,
    /// Ids inserted since the window began (the state changelog writes the
    /// window in pieces by this number).
    inserted: u64,
}

/// An id in the window: 32 bytes.
#[derive(Debug)]
struct Seen {
    id: EventId,
    /// Its hash bits, as in its slot.
    tag: u32,
    system: System,
}

/// The table's first size; it doubles when half full.
const DEDUP_MIN_BITS: u32 = 10;
/// The most ids remembered: the arrival numbers of a window fit 32 bits,
/// and so does the home slot of a tag (the table is at most twice as long).
const DEDUP_MAX_CAPACITY: usize = 1 << 30;
/// Stretches of arrival per maximum age: how finely ids are forgotten.
const STRETCHES_PER_AGE: i64 = 64;

impl Dedup {
    /// Remembers the last `capacity` ids (at most 2^30), and with
    /// `max_age` (milliseconds) only those that arrived within that much
    /// stream time.
    pub fn new(capacity: usize, max_age: Option<i64>) -> Dedup {
        Dedup {
            capacity: capacity.min(DEDUP_MAX_CAPACITY),
            max_age: max_age.map(|a| a.max(1)),
            stretches: VecDeque::new(),
            order: VecDeque::new(),
            first: 0,
            slots: vec![0; 1 << DEDUP_MIN_BITS].into_boxed_slice(),
            bits: DEDUP_MIN_BITS,
            inserted: 0,
        }
    }

    /// Remembers `id` of an event from `system` that arrives at stream time
    /// `at` (never earlier than the last arrival's), and returns it as held
    /// for the event's references; None when it was seen recently. Ids
    /// older than the maximum age are forgotten first.
    pub fn insert(&mut self, system: System, id: &str, at: Ts) -> Option<EventId> {
        self.expire(at);
        let held = self.insert_hashed(system, id, fingerprint(system, id))?;
        self.note_arrival(at);
        Some(held)
    }

    /// The length of a stretch of arrivals.
    fn stretch(max_age: i64) -> i64 {
        (max_age / STRETCHES_PER_AGE).max(1)
    }

    /// Forgets the stretches whose every id arrived more than the maximum
    /// age before `at`.
    fn expire(&mut self, at: Ts) {
        let Some(age) = self.max_age else {
            return;
        };
        let step = Dedup::stretch(age);
        let cutoff = at.millis().saturating_sub(age);
        while let Some(&(_, began)) = self.stretches.front() {
            if began.millis().saturating_add(step) > cutoff {
                break;
            }
            self.stretches.pop_front();
            let until = self.stretches.front().map_or(self.inserted, |s| s.0);
            while self.window_start() < until {
                self.evict_front();
            }
        }
    }

    /// Notes that the id just inserted (the last number) arrived at `at`:
    /// it begins a stretch when the last one is a stretch long. Stretches
    /// the capacity emptied go.
    fn note_arrival(&mut self, at: Ts) {
        let Some(age) = self.max_age else {
            return;
        };
        let start = self.window_start();
        while self.stretches.get(1).is_some_and(|s| s.0 <= start) {
            self.stretches.pop_front();
        }
        if self.stretches.back().is_none_or(|&(_, began)| {
            at.millis() >= began.millis().saturating_add(Dedup::stretch(age))
        }) {
            self.stretches.push_back((self.inserted - 1, at));
        }
    }

    /// The stretches of arrival of the ids held (first id number, when the
    /// stretch began), oldest first; empty without a maximum age.
    pub fn stretches(&self) -> impl Iterator<Item = (u64, Ts)> + '_ {
        let start = self.window_start();
        self.stretches.iter().map(move |&(n, t)| (n.max(start), t))
    }

    /// Forgets the oldest id.
    fn evict_front(&mut self) {
        if let Some(old) = self.order.pop_front() {
            self.remove(slot(old.tag, self.first));
            self.first = self.first.wrapping_add(1);
        }
    }

    /// [`Self::insert`], with `id`'s fingerprint `h` given.
    fn insert_hashed(&mut self, system: System, id: &str, h: u64) -> Option<EventId> {
        let tag = tag(h);
        let event_id = EventId::new(id);
        let mut i = self.home(tag);
        loop {
            match self.slots[i] {
                0 => break,
                v if slot_tag(v) == tag && self.holds(v, system, &event_id) => return None,
                _ => i = (i + 1) & self.mask(),
            }
        }
        let arrival = self.first.wrapping_add(self.order.len() as u32);
        self.inserted += 1;
        self.slots[i] = slot(tag, arrival);
        self.order.push_back(Seen {
            id: event_id.clone(),
            tag,
            system,
        });
        if self.order.len() > self.capacity {
            self.evict_front();
        } else if 2 * self.order.len() > self.slots.len() {
            self.grow();
        }
        if let Some(next) = self.order.front() {
            prefetch(&self.slots[self.home(next.tag)]);
        }
        Some(event_id)
    }

    /// Whether the id in slot `v` is `id` from `system`.
    fn holds(&self, v: u64, system: System, id: &EventId) -> bool {
        let seen = &self.order[(v as u32).wrapping_sub(self.first) as usize];
        seen.system == system && seen.id == *id
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Ids inserted so far; the `n`th id inserted has number `n - 1`.
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// Numbers the ids held from `base` on (the ids a changelog holds
    /// under lower numbers are then all out of the window).
    pub fn renumber(&mut self, base: u64) {
        // The oldest stretch may begin before the window (the capacity
        // forgot its first ids): it begins at the window's start.
        let start = self.window_start();
        for s in &mut self.stretches {
            s.0 = s.0.max(start) - start + base;
        }
        self.inserted = base + self.order.len() as u64;
    }

    /// The number of the oldest id still held.
    pub fn window_start(&self) -> u64 {
        self.inserted - self.order.len() as u64
    }

    /// The ids still held whose number is `from` or later, oldest first.
    pub fn since(&self, from: u64) -> impl Iterator<Item = (System, &EventId)> {
        let skip = from.saturating_sub(self.window_start()) as usize;
        self.order.iter().skip(skip).map(|s| (s.system, &s.id))
    }

    /// A window holding `ids` (oldest first), of which the last was number
    /// `inserted - 1`, and `stretches` of arrival: as the one that held
    /// them was.
    pub fn restored<'a>(
        capacity: usize,
        max_age: Option<i64>,
        ids: impl ExactSizeIterator<Item = (System, &'a EventId)>,
        inserted: u64,
        stretches: &[(u64, Ts)],
    ) -> Dedup {
        let mut d = Dedup::new(capacity, max_age);
        d.reserve(ids.len());
        let mut text = String::new();
        for (system, id) in ids {
            use std::fmt::Write;
            text.clear();
            let _ = write!(text, "{id}");
            d.insert_hashed(system, &text, fingerprint(system, &text));
        }
        d.inserted = inserted.max(d.order.len() as u64);
        if d.max_age.is_some() {
            d.stretches = stretches.iter().copied().collect();
        }
        d
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Starts loading the slot `id` will probe first.
    pub fn prefetch(&self, system: System, id: &str) {
        let tag = tag(fingerprint(system, id));
        prefetch(&self.slots[self.home(tag)]);
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot a tag probes first: its top bits.
    fn home(&self, tag: u32) -> usize {
        (tag >> (32 - self.bits)) as usize
    }

    /// Removes the slot `v`, which is in the table, shifting back the
    /// entries that probed past it so that every entry stays reachable from
    /// its home.
    fn remove(&mut self, v: u64) {
        let mask = self.mask();
        let mut hole = self.home(slot_tag(v));
        while self.slots[hole] != v {
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
            let home = self.home(slot_tag(v));
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
        self.order.reserve(want.saturating_sub(self.order.len()));
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
        for v in old.iter().copied().filter(|&v| v != 0) {
            let mut i = self.home(slot_tag(v));
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = v;
        }
    }
}

/// FNV-1a of the system and the id: fixed, so that a replay in another
/// process sees the same table.
fn fingerprint(system: System, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in std::iter::once(&(system as u8)).chain(id.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The 32 bits of a fingerprint a slot holds: the top half of a Fibonacci
/// hash (FNV's low bits mix poorly), never 0, which marks an empty slot (0
/// and 1 have the same home).
fn tag(h: u64) -> u32 {
    ((h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32).max(1)
}

fn slot(tag: u32, arrival: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(arrival)
}

fn slot_tag(v: u64) -> u32 {
    (v >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Ts = Ts(0);

    #[test]
    fn dedup_is_bounded_and_forgets_oldest() {
        let mut d = Dedup::new(2, None);
        assert!(d.insert(System::Hr, "a", T0).is_some());
        assert!(d.insert(System::Hr, "a", T0).is_none());
        assert!(
            d.insert(System::Directory, "a", T0).is_some(),
            "families have their own ids"
        );
        assert!(d.insert(System::Hr, "b", T0).is_some());
        assert_eq!(d.len(), 2);
        assert!(
            d.insert(System::Hr, "a", T0).is_some(),
            "evicted, so accepted again"
        );
    }

    #[test]
    fn dedup_returns_the_id_it_holds() {
        let mut d = Dedup::new(8, None);
        let uuid = "0b7e9a52-3c41-4d0f-9a6e-52f1c8d07e31";
        assert_eq!(d.insert(System::Hr, uuid, T0), Some(EventId::new(uuid)));
        assert_eq!(d.insert(System::Hr, "h-1", T0), Some(EventId::new("h-1")));
        assert_eq!(d.insert(System::Hr, uuid, T0), None);
    }

    /// The table answers as a plain set with FIFO eviction would, through
    /// growth, evictions and the backward shifts they cause, with ids drawn
    /// from a small universe so that many repeat inside the window; and so
    /// it does with a fingerprint of a few values only, where most ids
    /// share theirs with others in the window.
    #[test]
    fn dedup_matches_a_fifo_set() {
        for capacity in [1, 7, 600, 5_000] {
            check_fifo(capacity, fingerprint);
        }
        for capacity in [1, 7, 300] {
            check_fifo(capacity, |s, id| fingerprint(s, id) % 13);
        }
    }

    fn check_fifo(capacity: usize, hash: fn(System, &str) -> u64) {
        use crate::tools::generate::Rng;
        use std::collections::HashSet;
        let mut rng = Rng::new(11);
        let mut d = Dedup::new(capacity, None);
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
            let h = hash(System::App, &id);
            assert_eq!(
                d.insert_hashed(System::App, &id, h).is_some(),
                fresh,
                "capacity {capacity}, step {step}, id {id}"
            );
            assert_eq!(d.len(), order.len());
        }
    }

    /// Two different ids with one fingerprint (by chance, or an id made to
    /// collide with one still to come) are two events: a TERMINATION is not
    /// dropped as the duplicate of another event. Each is still told from
    /// a redelivery of itself, and evicting one keeps the other.
    #[test]
    fn ids_with_one_fingerprint_are_told_apart() {
        let mut d = Dedup::new(2, None);
        let h = fingerprint(System::Hr, "e-1");
        let mut insert = |id| d.insert_hashed(System::Hr, id, h).is_some();
        assert!(insert("e-1"));
        assert!(insert("TERMINATION-7"), "a different id is new");
        assert!(!insert("e-1") && !insert("TERMINATION-7"), "redeliveries");
        assert!(insert("e-2"), "evicts e-1");
        assert!(!insert("TERMINATION-7"), "still held");
        assert!(insert("e-1"), "evicted, so accepted again");
        assert!(
            d.insert_hashed(System::Directory, "e-1", h).is_some(),
            "the same id from another family"
        );
    }

    #[test]
    fn dedup_reserve_sizes_the_table_once() {
        let mut d = Dedup::new(100_000, None);
        d.reserve(12_000);
        assert_eq!(d.slots.len(), 1 << 15);
        for i in 0..12_000 {
            assert!(d.insert(System::Hr, &format!("r{i}"), T0).is_some());
        }
        assert_eq!(d.slots.len(), 1 << 15, "no growth within the reserve");
        assert!(d.insert(System::Hr, "r0", T0).is_none());
        d.insert(System::Hr, "one more", T0);
        d.reserve(5_000_000);
        assert_eq!(d.slots.len(), 1 << 18, "never past the capacity");
        d.reserve(10);
        assert_eq!(d.slots.len(), 1 << 18, "never shrinks");
        assert!(d.insert(System::Hr, "r11999", T0).is_none());
    }

    /// Arrival numbers wrap past 2^32 without losing an id.
    #[test]
    fn arrival_numbers_wrap() {
        let mut d = Dedup::new(3, None);
        d.first = u32::MAX - 1;
        for i in 0..10 {
            assert!(d.insert(System::App, &format!("w{i}"), T0).is_some());
            assert!(d.insert(System::App, &format!("w{i}"), T0).is_none());
        }
        assert!(d.insert(System::App, "w7", T0).is_none());
        assert!(d.insert(System::App, "w6", T0).is_some());
    }

    /// The memory of the window (BENCHMARKS.md, "Memory"): 32 bytes per id
    /// in arrival order, and two to four slots of 8 bytes.
    #[test]
    fn an_id_in_the_window_takes_32_bytes() {
        assert_eq!(std::mem::size_of::<Seen>(), 32);
    }

    /// With a maximum age, an id is held for at least that much stream time
    /// after it arrived and forgotten within a stretch (a 64th of the age)
    /// more; the capacity still bounds the window.
    #[test]
    fn ids_are_forgotten_once_older_than_the_max_age() {
        use crate::tools::generate::Rng;
        let age = 6_400;
        let stretch = age / STRETCHES_PER_AGE;
        let mut rng = Rng::new(5);
        let mut d = Dedup::new(100_000, Some(age));
        let mut arrived: Vec<(String, i64)> = Vec::new();
        let mut now = 0i64;
        for i in 0..20_000 {
            now += rng.below(20) as i64;
            let id = format!("e{i}");
            assert!(d.insert(System::Hr, &id, Ts(now)).is_some());
            arrived.push((id, now));
            if i % 97 == 0 {
                // A redelivery of an id seen earlier, judged by its age.
                let (old, at) = arrived[rng.below(arrived.len() as u64) as usize].clone();
                let held = d.insert(System::Hr, &old, Ts(now)).is_none();
                if now - at <= age {
                    assert!(held, "{old} from {at} forgotten at {now}");
                } else if now - at >= age + 2 * stretch {
                    assert!(!held, "{old} from {at} still held at {now}");
                }
            }
        }
        assert!(
            d.len() < 2_000,
            "{} ids held: the window is bounded by age",
            d.len()
        );
        let mut small = Dedup::new(10, Some(age));
        for i in 0..100 {
            small.insert(System::Hr, &format!("s{i}"), T0);
        }
        assert_eq!(small.len(), 10, "and by capacity");
    }

    /// A window restored from its ids and stretches, renumbered as a
    /// restore over another changelog does, forgets exactly as the one it
    /// was taken from.
    #[test]
    fn a_restored_window_forgets_as_the_original() {
        use crate::tools::generate::Rng;
        let mut rng = Rng::new(9);
        let age = 3_200;
        // The capacity forgets ids too (about 700 arrive within the age),
        // so the oldest stretch has lost its first ids.
        let capacity = 300;
        let mut d = Dedup::new(capacity, Some(age));
        let mut now = 0i64;
        let next = |rng: &mut Rng, now: &mut i64| {
            *now += rng.below(10) as i64;
            (format!("e{}", rng.below(4_000)), Ts(*now))
        };
        for _ in 0..6_000 {
            let (id, at) = next(&mut rng, &mut now);
            d.insert(System::App, &id, at);
        }
        let stretches: Vec<(u64, Ts)> = d.stretches().collect();
        let ids: Vec<(System, EventId)> = d.since(0).map(|(s, id)| (s, id.clone())).collect();
        let mut r = Dedup::restored(
            capacity,
            Some(age),
            ids.iter().map(|(s, id)| (*s, id)),
            d.inserted(),
            &stretches,
        );
        assert_eq!((r.len(), r.window_start()), (d.len(), d.window_start()));
        assert_eq!(r.stretches().collect::<Vec<_>>(), stretches);
        // Renumbered below the old window's start, as after a rebuild
        // over a shorter changelog: the stretches follow, in order and
        // within the window.
        assert!(d.window_start() > 5, "{}", d.window_start());
        d.renumber(5);
        r.renumber(5);
        let renumbered: Vec<(u64, Ts)> = d.stretches().collect();
        assert!(
            renumbered.first().is_some_and(|s| s.0 == 5),
            "{renumbered:?}"
        );
        assert!(
            renumbered.windows(2).all(|w| w[0].0 < w[1].0),
            "{renumbered:?}"
        );
        assert!(
            renumbered.iter().all(|s| s.0 < d.inserted()),
            "{renumbered:?}"
        );
        for step in 0..20_000 {
            let (id, at) = next(&mut rng, &mut now);
            assert_eq!(
                d.insert(System::App, &id, at).is_some(),
                r.insert(System::App, &id, at).is_some(),
                "step {step}"
            );
        }
        assert_eq!(
            d.stretches().collect::<Vec<_>>(),
            r.stretches().collect::<Vec<_>>()
        );
    }
}
