//! Stream order within one partition task: the topics of a partition are
//! merged the way a Kafka Streams task picks its next record. The queue
//! whose head has the lowest event time goes next (ties to the lower queue
//! index, i.e. the topic name that sorts first), and each queue keeps its
//! own order.
//!
//! The same merge serves file replay, state restore and the live consumer,
//! so all three apply a partition's records in the same order. What differs
//! is when an empty queue may be passed over: a finished file always, a live
//! topic only once it is caught up (nothing more on the broker) or has kept
//! the others waiting too long. The caller says so through `settled`.

use crate::model::event::Envelope;
use crate::model::time::Ts;
use std::collections::VecDeque;

/// Something that can be merged by event time.
pub trait Timed {
    /// The event time to order by; `None` means "take it as soon as it is at
    /// the head of its queue" (undecodable records, which change no state).
    fn order_time(&self) -> Option<Ts>;
}

impl Timed for Envelope {
    fn order_time(&self) -> Option<Ts> {
        Some(self.event.occurred_at())
    }
}

/// `peek_ahead` looks past the next record with at most this many queues
/// (topics per partition).
const PEEK_QUEUES: usize = 16;

/// One queue per topic of a partition, each in offset order.
#[derive(Debug)]
pub struct Merge<T> {
    queues: Vec<VecDeque<(i64, T)>>,
    len: usize,
}

impl<T: Timed> Merge<T> {
    pub fn new(queues: usize) -> Merge<T> {
        Merge {
            queues: (0..queues).map(|_| VecDeque::new()).collect(),
            len: 0,
        }
    }

    /// Appends a record read from queue `q` at `offset`.
    pub fn push(&mut self, q: usize, offset: i64, item: T) {
        self.queues[q].push_back((offset, item));
        self.len += 1;
    }

    /// Records waiting in all queues.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether queue `q` holds nothing.
    pub fn is_drained(&self, q: usize) -> bool {
        self.queues[q].is_empty()
    }

    /// The next record in stream order as `(queue, offset, item)`, or `None`
    /// when nothing is waiting or when an empty queue that is not `settled`
    /// might still bring an earlier record.
    pub fn pop(&mut self, settled: impl FnMut(usize) -> bool) -> Option<(usize, i64, T)> {
        let q = self.choose(settled)?;
        self.take(q)
    }

    /// The records `N` pops would return if every empty queue were
    /// settled: most often the next ones, for prefetching their state.
    /// With more than `PEEK_QUEUES` queues, only the next.
    pub fn peek_ahead<const N: usize>(&self) -> [Option<&T>; N] {
        let mut ahead = [None; N];
        if self.queues.len() > PEEK_QUEUES {
            if let (Some(first), Some(q)) = (ahead.first_mut(), self.choose(|_| true)) {
                *first = self.queues[q].front().map(|(_, item)| item);
            }
            return ahead;
        }
        // How many records of each queue the slots before took.
        let mut taken = [0usize; PEEK_QUEUES];
        for slot in &mut ahead {
            // As `choose`: an untimed record goes at once, else the lowest
            // time, ties to the lower queue.
            let mut best: Option<(Option<Ts>, usize)> = None;
            for (q, queue) in self.queues.iter().enumerate() {
                let Some((_, item)) = queue.get(taken[q]) else {
                    continue;
                };
                match (item.order_time(), best) {
                    (None, _) => {
                        best = Some((None, q));
                        break;
                    }
                    (Some(t), Some((Some(bt), _))) if t >= bt => {}
                    (t, _) => best = Some((t, q)),
                }
            }
            let Some((_, q)) = best else { break };
            *slot = self.queues[q].get(taken[q]).map(|(_, item)| item);
            taken[q] += 1;
        }
        ahead
    }

    /// The queue whose head goes next.
    fn choose(&self, mut settled: impl FnMut(usize) -> bool) -> Option<usize> {
        if let Some(q) = self.queues.iter().position(|q| {
            q.front()
                .is_some_and(|(_, item)| item.order_time().is_none())
        }) {
            return Some(q);
        }
        let mut best: Option<(Ts, usize)> = None;
        for (i, q) in self.queues.iter().enumerate() {
            match q.front() {
                None if !settled(i) => return None,
                None => {}
                Some((_, item)) => {
                    let t = item.order_time().expect("untimed heads were taken above");
                    if best.is_none_or(|(bt, _)| t < bt) {
                        best = Some((t, i));
                    }
                }
            }
        }
        best.map(|(_, q)| q)
    }

    fn take(&mut self, q: usize) -> Option<(usize, i64, T)> {
        let (offset, item) = self.queues[q].pop_front()?;
        self.len -= 1;
        Some((q, offset, item))
    }

    /// Drops everything waiting (records not yet applied are read again by
    /// whoever owns the partition next).
    pub fn clear(&mut self) {
        self.queues.iter_mut().for_each(VecDeque::clear);
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct At(Option<i64>);
    impl Timed for At {
        fn order_time(&self) -> Option<Ts> {
            self.0.map(Ts)
        }
    }

    fn drain(m: &mut Merge<At>, settled: impl Fn(usize) -> bool + Copy) -> Vec<(usize, i64)> {
        std::iter::from_fn(|| m.pop(settled).map(|(q, o, _)| (q, o))).collect()
    }

    #[test]
    fn lowest_head_first_ties_to_the_lower_queue() {
        let mut m = Merge::new(2);
        m.push(0, 0, At(Some(5)));
        m.push(0, 1, At(Some(1)));
        m.push(1, 0, At(Some(5)));
        m.push(1, 1, At(Some(7)));
        // Queue order is kept even when a later record is older.
        assert_eq!(
            drain(&mut m, |_| true),
            vec![(0, 0), (0, 1), (1, 0), (1, 1)]
        );
        assert!(m.is_empty());
    }

    #[test]
    fn an_unsettled_empty_queue_holds_the_others_back() {
        let mut m = Merge::new(2);
        m.push(0, 0, At(Some(5)));
        assert_eq!(m.pop(|_| false), None);
        assert_eq!(m.len(), 1);
        m.push(1, 0, At(Some(3)));
        assert_eq!(drain(&mut m, |_| false), vec![(1, 0)]);
        assert_eq!(drain(&mut m, |q| q == 1), vec![(0, 0)]);
    }

    /// `peek_ahead` shows what the next settled pops take, through random
    /// pushes and pops with ties and untimed records.
    #[test]
    fn peek_ahead_shows_the_next_settled_pops() {
        /// A record known by its serial, ordered by its time.
        struct Serial(Option<i64>, u64);
        impl Timed for Serial {
            fn order_time(&self) -> Option<Ts> {
                self.0.map(Ts)
            }
        }
        let mut rng = crate::tools::generate::Rng::new(3);
        let mut m = Merge::new(3);
        for serial in 0..5_000 {
            if rng.below(3) > 0 {
                let q = rng.below(3) as usize;
                let t = (rng.below(8) > 0).then(|| rng.below(20) as i64);
                m.push(q, serial as i64, Serial(t, serial));
            } else {
                let peeked = m.peek_ahead::<3>().map(|a| a.map(|a| a.1));
                let popped = [(); 3].map(|()| m.pop(|_| true).map(|(_, _, a)| a.1));
                assert_eq!(popped, peeked);
            }
        }
    }

    #[test]
    fn untimed_heads_go_at_once() {
        let mut m = Merge::new(2);
        m.push(1, 0, At(None));
        m.push(1, 1, At(Some(9)));
        assert_eq!(m.pop(|_| false).map(|(q, o, _)| (q, o)), Some((1, 0)));
        assert_eq!(m.pop(|_| false), None);
    }
}
