//! Routing by payload: the order in which a partition applies records that
//! other partitions' tasks read (`kafka.route_by = "payload"`).
//!
//! Every partition task is a source and a target. As a source it merges its
//! own topics as always ([`crate::detect::merge`]) and numbers what it pops
//! into rounds of [`ROUND`] records ([`Rounds`]); a round also closes early
//! when the source has nothing more to read. Each record goes to the target
//! its correlation key belongs to, tagged with its round; a source that
//! closes a round tells every target so. As a target a task applies round
//! `r` once every source has closed it: the round's records of all sources,
//! its own included, merged by event time across sources as the topics of
//! one partition are ([`Assembly`]), all of round `r` before any of `r + 1`.
//! What a target's engine tells other partitions about accounts while
//! applying round `r` opens round `r + 2` there, before its records.
//!
//! Rounds depend only on each source's input, so a replay computes the
//! same ones (`replay.rs`, round by round across partitions); when every
//! record already sits in its key's partition and no account changes
//! partition, each target's order is exactly its own merge's.

use crate::detect::merge::Timed;
use std::collections::{BTreeMap, VecDeque};

/// Records a source pops per round.
pub const ROUND: u32 = 1024;

/// A source's numbering of its pops: the round in progress and how many
/// records it holds so far. Rounds below `round` are closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rounds {
    pub round: u64,
    pub pops: u32,
}

impl Rounds {
    /// Rounds resumed at the start of `round`.
    pub fn at(round: u64) -> Rounds {
        Rounds { round, pops: 0 }
    }

    /// Numbers the next pop: its round, and whether that round is full
    /// (closed) with it.
    pub fn pop(&mut self) -> (u64, bool) {
        let r = self.round;
        self.pops += 1;
        if self.pops == ROUND {
            *self = Rounds::at(r + 1);
            (r, true)
        } else {
            (r, false)
        }
    }

    /// Closes the round in progress early (the source has nothing more to
    /// read); false when it holds no record (nothing to close).
    pub fn close(&mut self) -> bool {
        if self.pops == 0 {
            return false;
        }
        *self = Rounds::at(self.round + 1);
        true
    }

    /// An idle source closes empty rounds up to `below`, so that targets
    /// need not wait for it; false when it was there already.
    pub fn follow(&mut self, below: u64) -> bool {
        if self.pops > 0 || below <= self.round {
            return false;
        }
        self.round = below;
        true
    }

    /// Rounds below this are closed.
    pub fn closed_below(&self) -> u64 {
        self.round
    }
}

/// The round of a late record: it goes at once.
const LATE: u64 = u64::MAX;

/// A target's records of every source, applied round by round.
#[derive(Debug)]
pub struct Assembly<T> {
    /// Per source: (round, record) in the source's order.
    queues: Vec<VecDeque<(u64, T)>>,
    /// Records that open a round, by (round, source), each source's in
    /// the order pushed: what a target emitted while applying an earlier
    /// round (see [`Assembly::push_first`]).
    firsts: BTreeMap<(u64, usize), VecDeque<T>>,
    /// Per source: rounds below this are closed.
    closed: Vec<u64>,
    /// The round being applied; all before it are done.
    next: u64,
    len: usize,
}

impl<T: Timed> Assembly<T> {
    /// An assembly of `sources` sources starting at round `next`.
    pub fn new(sources: usize, next: u64) -> Assembly<T> {
        Assembly {
            queues: (0..sources).map(|_| VecDeque::new()).collect(),
            closed: vec![next; sources],
            firsts: BTreeMap::new(),
            next,
            len: 0,
        }
    }

    /// Queues a record that opens `source`'s round `round`, before the
    /// source's records of that round whenever it arrives: a target's
    /// notes about accounts. One of a round already applied opens the
    /// round in progress (or goes next, if that one has begun).
    pub fn push_first(&mut self, source: usize, round: u64, record: T) {
        let round = round.max(self.next);
        self.firsts
            .entry((round, source))
            .or_default()
            .push_back(record);
        self.len += 1;
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The round being applied (all before it are done).
    pub fn next_round(&self) -> u64 {
        self.next
    }

    /// Per source: the rounds below this are closed.
    pub fn closed(&self) -> &[u64] {
        &self.closed
    }

    /// The highest round any source has closed, plus one.
    pub fn max_closed(&self) -> u64 {
        self.closed.iter().copied().max().unwrap_or(self.next)
    }

    /// Queues a record of `source`'s round `round`. A record of a round
    /// already applied (re-sent by a source that restarted, most often a
    /// duplicate) is late: it goes as soon as it heads its queue, without
    /// waiting for the round in progress to close.
    pub fn push(&mut self, source: usize, round: u64, record: T) {
        let round = if round < self.next { LATE } else { round };
        self.queues[source].push_back((round, record));
        self.len += 1;
    }

    /// `source` has closed every round below `below`.
    pub fn close(&mut self, source: usize, below: u64) {
        let c = &mut self.closed[source];
        *c = (*c).max(below);
    }

    /// The next record to apply as `(source, record)`, or `None` until the
    /// sources close the round in progress.
    pub fn pop(&mut self) -> Option<(usize, T)> {
        if let Some(s) = self
            .queues
            .iter()
            .position(|q| q.front().is_some_and(|(round, _)| *round == LATE))
        {
            return self.take(s);
        }
        loop {
            if self.closed.iter().any(|&c| c <= self.next) {
                return None;
            }
            if let Some(mut first) = self.firsts.first_entry() {
                if first.key().0 <= self.next {
                    let source = first.key().1;
                    let record = first.get_mut().pop_front().expect("never left empty");
                    if first.get().is_empty() {
                        first.remove();
                    }
                    self.len -= 1;
                    return Some((source, record));
                }
            }
            let mut best: Option<(Option<crate::model::time::Ts>, usize)> = None;
            for (s, q) in self.queues.iter().enumerate() {
                let Some((round, item)) = q.front() else {
                    continue;
                };
                if *round > self.next {
                    continue;
                }
                match (item.order_time(), best) {
                    (None, _) => {
                        best = Some((None, s));
                        break;
                    }
                    (Some(t), Some((Some(bt), _))) if t >= bt => {}
                    (Some(_), Some((None, _))) => {}
                    (t, _) => best = Some((t, s)),
                }
            }
            match best {
                Some((_, s)) => return self.take(s),
                // Every source closed this round and none holds more of it.
                None => self.next += 1,
            }
        }
    }

    fn take(&mut self, s: usize) -> Option<(usize, T)> {
        let (_, item) = self.queues[s].pop_front()?;
        self.len -= 1;
        Some((s, item))
    }

    /// Drops everything waiting.
    pub fn clear(&mut self) {
        self.queues.iter_mut().for_each(VecDeque::clear);
        self.firsts.clear();
        self.len = 0;
    }
}

/// Routes whole inputs with no notes between targets (the order the
/// unit tests hold; a replay runs it round by round with engines):
/// `sources[s]` is what source `s` pops, in order; `target_of` names each record's target among
/// `sources.len()`. Returns each target's records in the order it applies
/// them, each with its source.
#[cfg(test)]
fn route<T: Timed>(
    sources: Vec<Vec<T>>,
    mut target_of: impl FnMut(&T) -> usize,
) -> Vec<Vec<(usize, T)>> {
    let n = sources.len();
    let mut targets: Vec<Assembly<T>> = (0..n).map(|_| Assembly::new(n, 0)).collect();
    let mut end = 0;
    for (s, records) in sources.into_iter().enumerate() {
        let mut rounds = Rounds::default();
        for record in records {
            let (round, _) = rounds.pop();
            let t = target_of(&record);
            targets[t].push(s, round, record);
        }
        // The end of a source's input closes its last round.
        rounds.close();
        end = end.max(rounds.closed_below());
    }
    // Sources with nothing more to read follow the one that closed most.
    targets
        .into_iter()
        .map(|mut t| {
            for s in 0..n {
                t.close(s, end);
            }
            std::iter::from_fn(|| t.pop()).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::time::Ts;

    /// A record: (source, serial) ordered by time, with its target.
    #[derive(Debug, Clone, PartialEq)]
    struct R {
        t: i64,
        target: usize,
        id: (usize, usize),
    }
    impl Timed for R {
        fn order_time(&self) -> Option<Ts> {
            Some(Ts(self.t))
        }
    }

    fn feed(sources: usize, per_source: usize, seed: u64, home: bool) -> Vec<Vec<R>> {
        let mut rng = crate::tools::generate::Rng::new(seed);
        (0..sources)
            .map(|s| {
                (0..per_source)
                    .map(|i| R {
                        t: (i as i64) * 3 + rng.below(40) as i64,
                        target: if home {
                            s
                        } else {
                            rng.below(sources as u64) as usize
                        },
                        id: (s, i),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn rounds_close_when_full_early_or_to_follow() {
        let mut r = Rounds::default();
        for _ in 0..ROUND - 1 {
            assert_eq!(r.pop(), (0, false));
        }
        assert_eq!(r.pop(), (0, true));
        assert_eq!(r, Rounds::at(1));
        assert!(!r.close(), "an empty round does not close early");
        r.pop();
        assert!(!r.follow(5), "a round holding records is not skipped");
        assert!(r.close());
        assert_eq!(r.closed_below(), 2);
        assert!(r.follow(5));
        assert_eq!(r.pop(), (5, false));
    }

    #[test]
    fn records_already_home_keep_their_sources_order() {
        let sources = feed(3, 3_000, 1, true);
        let routed = route(sources.clone(), |r| r.target);
        for (s, records) in sources.into_iter().enumerate() {
            let got: Vec<R> = routed[s].iter().map(|(_, r)| r.clone()).collect();
            assert_eq!(got, records);
        }
    }

    /// A target applies round by round; within a round, sources merge by
    /// time, each source keeping its order.
    #[test]
    fn a_target_applies_round_by_round_merging_sources_by_time() {
        let sources = feed(3, 5_000, 2, false);
        let routed = route(sources.clone(), |r| r.target);
        let round_of = |r: &R| (r.id.1 / ROUND as usize) as u64;
        let mut seen = 0;
        for (t, applied) in routed.iter().enumerate() {
            let expected: usize = sources.iter().flatten().filter(|r| r.target == t).count();
            assert_eq!(applied.len(), expected);
            seen += applied.len();
            for w in applied.windows(2) {
                let (a, b) = (&w[0].1, &w[1].1);
                assert!(round_of(a) <= round_of(b), "rounds in order");
                if a.id.0 == b.id.0 {
                    assert!(a.id.1 < b.id.1, "a source's order is kept");
                }
            }
            // Within a round, the next record is the earliest head.
            for round in 0..5 {
                let of_round: Vec<&R> = applied
                    .iter()
                    .map(|(_, r)| r)
                    .filter(|r| round_of(r) == round)
                    .collect();
                let mut heads: Vec<VecDeque<&R>> = vec![VecDeque::new(); 3];
                for r in &of_round {
                    heads[r.id.0].push_back(r);
                }
                for r in of_round {
                    let earliest = heads
                        .iter()
                        .filter_map(|q| q.front())
                        .map(|h| h.t)
                        .min()
                        .expect("a head");
                    assert_eq!(r.t, earliest);
                    heads[r.id.0].pop_front();
                }
            }
        }
        assert_eq!(seen, 15_000);
    }

    /// What a live target sees, pushed in any interleaving of the sources
    /// with their closes, it applies in the order `route` computes.
    #[test]
    fn live_interleaving_gives_the_routed_order() {
        let sources = feed(3, 4_000, 3, false);
        let routed = route(sources.clone(), |r| r.target);
        let mut rng = crate::tools::generate::Rng::new(9);
        let mut targets: Vec<Assembly<R>> = (0..3).map(|_| Assembly::new(3, 0)).collect();
        let mut applied: Vec<Vec<(usize, R)>> = vec![Vec::new(); 3];
        let mut cursors = [0usize; 3];
        let mut rounds = [Rounds::default(); 3];
        while cursors.iter().zip(&sources).any(|(c, s)| *c < s.len()) {
            let s = rng.below(3) as usize;
            if cursors[s] < sources[s].len() {
                let r = sources[s][cursors[s]].clone();
                cursors[s] += 1;
                let (round, closed) = rounds[s].pop();
                targets[r.target].push(s, round, r);
                let ended = cursors[s] == sources[s].len() && rounds[s].close();
                if closed || ended {
                    for t in &mut targets {
                        t.close(s, rounds[s].closed_below());
                    }
                }
            }
            if rng.below(4) == 0 {
                let t = rng.below(3) as usize;
                while let Some(x) = targets[t].pop() {
                    applied[t].push(x);
                }
            }
        }
        // Idle sources follow the one that closed most.
        let end = rounds.iter().map(Rounds::closed_below).max().unwrap();
        for (s, r) in rounds.iter_mut().enumerate() {
            r.follow(end);
            for t in &mut targets {
                t.close(s, r.closed_below());
            }
        }
        for (t, a) in targets.iter_mut().enumerate() {
            while let Some(x) = a.pop() {
                applied[t].push(x);
            }
        }
        assert_eq!(applied, routed);
    }

    #[test]
    fn a_round_waits_for_every_source() {
        let mut a: Assembly<R> = Assembly::new(2, 0);
        let r = |t| R {
            t,
            target: 0,
            id: (0, 0),
        };
        a.push(0, 0, r(5));
        a.close(0, 1);
        assert_eq!(a.pop(), None, "the first round waits for source 1");
        a.push(1, 1, r(1));
        a.close(1, 1);
        assert_eq!(a.pop().map(|(s, x)| (s, x.t)), Some((0, 5)));
        assert_eq!(a.pop(), None, "the second round waits for source 0");
        a.close(0, 2);
        a.close(1, 2);
        assert_eq!(a.pop().map(|(s, x)| (s, x.t)), Some((1, 1)));
        // A record of a round already applied goes at once, without
        // waiting for the round in progress to close.
        a.push(0, 0, r(0));
        assert_eq!(a.pop().map(|(s, x)| (s, x.t)), Some((0, 0)));
        assert_eq!(a.pop(), None);
        a.close(0, 3);
        a.close(1, 3);
        assert_eq!(a.pop(), None);
        assert_eq!(a.next_round(), 3, "rounds 1 and 2 are done");
    }

    /// Records pushed first open their round, by source and in the order
    /// pushed, whenever they arrive; a late one opens the round in
    /// progress.
    #[test]
    fn records_pushed_first_open_their_round() {
        let mut a: Assembly<R> = Assembly::new(2, 0);
        let r = |t, s| R {
            t,
            target: 0,
            id: (s, 0),
        };
        a.push(0, 0, r(1, 0));
        a.push(0, 1, r(2, 0));
        a.push(1, 1, r(3, 1));
        // Pushed after the source's records of that round, applied before.
        a.push_first(1, 1, r(9, 1));
        a.push_first(0, 1, r(8, 0));
        a.push_first(0, 1, r(7, 0));
        a.close(0, 2);
        a.close(1, 2);
        let order: Vec<i64> = std::iter::from_fn(|| a.pop()).map(|(_, x)| x.t).collect();
        assert_eq!(order, vec![1, 8, 7, 9, 2, 3]);
        assert_eq!(a.next_round(), 2);
        a.push_first(1, 0, r(4, 1));
        assert_eq!(a.pop(), None, "late, it waits for the round in progress");
        a.close(0, 3);
        a.close(1, 3);
        assert_eq!(a.pop().map(|(s, x)| (s, x.t)), Some((1, 4)));
        assert!(a.is_empty());
    }
}
