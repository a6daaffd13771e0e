//! Event-time timers: a heap of deadlines (each key's next wake-up, and
//! the storms' deadlines and end checks), fired in deadline order as
//! stream time advances, each evaluation at the timer's own time. A key's
//! timer is replaced, not removed: an entry fires only when it matches the
//! key's `wake_at`, and the heap is swept of stale entries when it has
//! doubled.

use super::cause::timer_cause;
use super::Engine;
use crate::detect::episode::Phase;
use crate::detect::rules::{self, Rule};
use crate::detect::state::WorkerState;
use crate::model::event::Key;
use crate::model::finding::Finding;
use crate::model::time::Ts;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a timer entry wakes: a key, or a storm's deadline or end check.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    /// A storm's remediation deadline.
    Storm(Rule),
    /// A moment a storm may end.
    StormEnd(Rule),
    Worker(Key),
}

/// The timer heap is not swept below this many entries.
pub(super) const MIN_TIMER_SWEEP: usize = 1 << 16;

impl Engine {
    /// Drops timer entries no key waits for any more. A key's timer is
    /// replaced, not removed, when its wake-up time changes or its episodes
    /// end, so without a sweep the heap would keep an entry for every key
    /// that ever waited (a worker hired and then provisioned, for one).
    /// Sweeping when the heap has doubled since the last sweep costs at
    /// most one lookup per entry pushed. Runs with no guard of the store
    /// held.
    pub(super) fn sweep_timers(&mut self) {
        if self.timers.len() < self.timers_sweep_at {
            return;
        }
        let store = self.store.clone();
        let mut kept = std::mem::take(&mut self.timers).into_vec();
        kept.retain(|Reverse((at, which))| match which {
            TimerKey::Storm(_) | TimerKey::StormEnd(_) => true,
            TimerKey::Worker(key) => match store.map().get(key) {
                Some(st) => st.wake_at() == Some(*at),
                None => store
                    .frozen()
                    .get(key)
                    .is_some_and(|f| f.wake_at() == Some(*at)),
            },
        });
        kept.shrink_to_fit();
        self.timers_sweep_at = (2 * kept.len()).max(MIN_TIMER_SWEEP);
        self.timers = BinaryHeap::from(kept);
    }

    /// Moves stream time to `t` (never backwards), firing every timer due by
    /// then in deadline order.
    pub fn advance_to(&mut self, t: Ts, out: &mut Vec<Finding>) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > t {
                break;
            }
            let Some(Reverse((at, which))) = self.timers.pop() else {
                break;
            };
            if at > self.now {
                self.now = at;
            }
            let now = self.now;
            match which {
                TimerKey::Worker(key) => {
                    self.thaw(&key);
                    let store = self.store.clone();
                    let entry = store.map().get_mut(&key);
                    if let Some(mut st) = entry {
                        if st.wake_at() == Some(at) {
                            self.touched(&key);
                            self.stats.timers_fired += 1;
                            st.set_wake_at(None);
                            st.catch_up(now);
                            let cause = timer_cause(&st);
                            self.reconcile(&key, &mut st, now, &cause, out);
                        }
                    }
                }
                TimerKey::Storm(rule) => self.storm_escalate(rule, now, out),
                TimerKey::StormEnd(rule) => self.storm_end(rule, out),
            }
        }
        if t > self.now {
            self.now = t;
        }
        self.sweep_timers();
    }

    pub(super) fn reschedule(&mut self, key: &Key, st: &mut WorkerState, at: Ts) {
        let mut wake = rules::next_time_change(st, at);
        let mut consider = |t: Ts| {
            if wake.is_none_or(|w| t < w) {
                wake = Some(t);
            }
        };
        if let Some(t) = st.next_scheduled() {
            consider(t);
        }
        for ep in st.episodes() {
            match ep.phase {
                Phase::Pending => consider(ep.due),
                Phase::Open => {
                    if let Some(f) = &ep.finding {
                        consider(f.remediation_deadline);
                    }
                }
                Phase::Held | Phase::Escalated => {}
            }
        }
        if wake != st.wake_at() {
            st.set_wake_at(wake);
            if let Some(w) = wake {
                self.timers
                    .push(Reverse((w, TimerKey::Worker(key.clone()))));
            }
        }
    }
}
