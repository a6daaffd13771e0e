//! The detection engine of one partition task: applies events to the keyed
//! state, runs the rules, keeps each drift episode's lifecycle and fires
//! event-time timers.
//!
//! Invariants:
//! - no I/O, no async, no wall clock: time comes only from events
//!   (`occurred_at`) and from [`Engine::advance_to`];
//! - stream time never goes backwards, and timers fire in deadline order;
//! - an episode (one rule on one subject from the moment its condition
//!   became true) emits each status at most once: OPEN, then maybe
//!   ESCALATED, then RESOLVED;
//! - no DashMap guard is held while another key is looked up;
//! - a SOURCE_STORM counts findings as their SLA expires, holds only the
//!   findings of its own burst, and ends at the latest `storm.max_hold`
//!   after it opened.
//!
//! Where each part lives:
//! - this module: the [`Engine`], applying an event, and prefetching the
//!   state of the events that come next;
//! - `lifecycle`: comparing the conditions that hold with a key's
//!   episodes, and moving each along (Pending -> Open -> Escalated, or
//!   Held in a storm, then resolved);
//! - `timers`: the event-time timer heap, advancing stream time, and each
//!   key's next wake-up;
//! - `storm`: the SOURCE_STORM guard of each rule;
//! - `owners`: which key holds each account, and moving an account to
//!   the key its newest event names;
//! - `cause`: the source event behind a finding, for storm attribution and
//!   the evidence of a resolution;
//! - `finding`: building a finding (owners, deadlines, its id, subject,
//!   evidence and summary).

mod cause;
#[cfg(test)]
mod cut_tests;
mod finding;
mod lifecycle;
mod owners;
mod restore;
#[cfg(test)]
mod restore_tests;
mod snapshot;
mod storm;
#[cfg(test)]
mod tests;
mod timers;

use crate::config::Config;
pub use crate::detect::episode::{Episode, Phase};
use crate::detect::rules::{Condition, Rule};
pub use crate::detect::state::emptied_record;
use crate::detect::state::{AccountRef, Attrs, Dedup, EvRef, Store, WorkerState};
use crate::model::event::{Envelope, Event, Key, Origin};
use crate::model::finding::{Finding, OpenFinding};
use crate::model::id::{EventId, Sym};
use crate::model::time::Ts;
use cause::Cause;
pub use owners::{encode_note, pack_notes, Note, To};
pub use snapshot::{
    config_fingerprint, read_ids, window_ids, Checkpoint, PartitionRecord, RestoreError, WindowIds,
    FORMAT_VERSION, MAX_FORWARDS_BYTES, MAX_PIECE_BYTES, READ_FORMATS,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use storm::Storm;
use timers::{TimerKey, MIN_TIMER_SWEEP};

/// Counters of one engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub duplicates: u64,
    pub timers_fired: u64,
    pub opened: u64,
    pub escalated: u64,
    pub resolved: u64,
    /// Per-worker openings held back by a storm so far.
    pub held: u64,
}

/// The detection engine of one partition task.
pub struct Engine {
    cfg: Arc<Config>,
    store: Arc<Store>,
    now: Ts,
    timers: BinaryHeap<Reverse<(Ts, TimerKey)>>,
    /// Timer entries beyond which the heap is swept of stale ones.
    timers_sweep_at: usize,
    dedup: Dedup,
    storms: Vec<Storm>,
    buf: Vec<Condition>,
    /// (episode, condition) pairs of one reconcile, reused.
    matched: Vec<(usize, usize)>,
    generation: u64,
    interner: HashSet<Sym, ahash::RandomState>,
    /// Keys in the store (read without locking it).
    tracked: usize,
    /// Keys HR has sent an event for: the tracked workers of the storm limit.
    workers: usize,
    entries: usize,
    /// Keys a restore left encoded in the store, not touched since.
    frozen: usize,
    opening_serial: u64,
    stats: EngineStats,
    /// Transitions change state as usual but are not copied out (a restore
    /// publishes nothing).
    quiet: bool,
    /// What changed since the last checkpoint, when the state changelog
    /// is kept.
    changes: Option<snapshot::Changes>,
    /// The key holding each account.
    owners: owners::Owners,
    /// Notes for other partitions' engines, when routing by payload.
    notes: Option<Vec<(To, Note)>>,
    /// Accounts let go to another partition lately.
    forwards: owners::Forwards,
    forwards_sweep_at: usize,
    /// Copies of accounts a checkpoint cut short wrote, waiting for the
    /// event that moved the account.
    waiting: owners::Waiting,
    /// What a restore from the changelog found open or escalated, read
    /// with each key's summary.
    restored_open: Option<Vec<OpenFinding>>,
}

const INTERNER_LIMIT: usize = 1 << 20;
/// Entries in state from which `Engine::prefetch` works in stages: at
/// about a hundred bytes each, past the last-level cache of a server.
const STAGED_PREFETCH_ENTRIES: usize = 256 * 1024;

impl Engine {
    pub fn new(cfg: Arc<Config>) -> Engine {
        let dedup = Dedup::new(cfg.dedup_capacity, cfg.dedup_max_age_ms);
        Engine {
            cfg,
            store: Arc::new(Store::new()),
            now: Ts::MIN,
            timers: BinaryHeap::new(),
            timers_sweep_at: MIN_TIMER_SWEEP,
            dedup,
            storms: Rule::ALL.iter().map(|_| Storm::default()).collect(),
            buf: Vec::new(),
            matched: Vec::new(),
            generation: 0,
            interner: HashSet::default(),
            tracked: 0,
            workers: 0,
            entries: 0,
            frozen: 0,
            opening_serial: 0,
            stats: EngineStats::default(),
            quiet: false,
            changes: None,
            owners: owners::Owners::default(),
            notes: None,
            forwards: owners::Forwards::default(),
            forwards_sweep_at: owners::MIN_FORWARDS_SWEEP,
            waiting: owners::Waiting::default(),
            restored_open: None,
        }
    }

    /// Stream time: the highest event time seen or advanced to.
    pub fn now(&self) -> Ts {
        self.now
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// The state store, shareable with readers.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The findings the state holds open or escalated, as the owner
    /// gauges count them; asked before the first event. A restore from the
    /// changelog read them already, else the store is read for them.
    pub fn take_open_findings(&mut self) -> Vec<OpenFinding> {
        self.restored_open
            .take()
            .unwrap_or_else(|| self.store.open_findings())
    }

    /// Keys in the state store.
    pub fn tracked(&self) -> usize {
        self.tracked
    }

    /// Tracked workers: keys HR has sent an event for (uncorrelated
    /// accounts and worker_ids HR has never sent are not workers).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Entries held in state: HR records, accounts, grants, episodes.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Rule and severity of every finding open or escalated now (a walk
    /// over the whole store: for restores, not for the hot path).
    pub fn open_findings(&self) -> Vec<(Rule, crate::model::finding::Severity)> {
        self.store
            .open_findings()
            .into_iter()
            .map(|f| (f.rule, f.severity))
            .collect()
    }

    /// Decodes `key`'s state if a restore left it encoded: before any
    /// change to it. A record that cannot be decoded (the broker checks
    /// records' CRCs and the restore their format version, so only a
    /// defect gets here) is logged and the key starts again empty.
    #[inline]
    pub(super) fn thaw(&mut self, key: &Key) {
        if self.frozen > 0 {
            self.thaw_frozen(key);
        }
    }

    fn thaw_frozen(&mut self, key: &Key) {
        let store = self.store.clone();
        {
            // The record leaves the frozen keys only once its state is in
            // the map: a `/v1` reader looks in the map first, then here.
            let Some(frozen) = store.frozen().get(key) else {
                return;
            };
            let summary = frozen.summary();
            let st = match frozen.thaw(&mut |s| self.intern(s)) {
                Ok(st) => {
                    debug_assert_eq!(Ok(st.summary()), summary, "{key}");
                    st
                }
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "a key's state in the changelog cannot be decoded: the key starts again empty");
                    if let Ok(summary) = summary {
                        self.entries -= summary.entries as usize;
                        self.workers -= usize::from(summary.known_to_hr);
                    }
                    // Its next checkpoint replaces the record.
                    self.touched(key);
                    WorkerState::default()
                }
            };
            store.map().insert(key.clone(), st);
        }
        store.frozen().remove(key);
        self.frozen -= 1;
    }

    /// Decodes every key a restore left encoded.
    pub fn thaw_all(&mut self) {
        let keys: Vec<Key> = self
            .store
            .frozen()
            .iter()
            .map(|e| e.key().clone())
            .collect();
        for key in keys {
            self.thaw_frozen(&key);
        }
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Per-worker findings currently held back by storms.
    pub fn held(&self) -> usize {
        self.storms.iter().map(|s| s.held).sum()
    }

    /// Rules with a SOURCE_STORM open now.
    pub fn active_storms(&self) -> Vec<Rule> {
        Rule::ALL
            .iter()
            .copied()
            .filter(|r| self.storms[r.index()].active.is_some())
            .collect()
    }

    fn intern(&mut self, s: &str) -> Sym {
        if let Some(a) = self.interner.get(s) {
            return a.clone();
        }
        let a = Sym::new(s);
        if self.interner.len() < INTERNER_LIMIT {
            self.interner.insert(a.clone());
        }
        a
    }

    /// While quiet, finding transitions change the state exactly as they
    /// otherwise would, but nothing is appended to `out`: a restore, which
    /// publishes nothing, skips copying every finding it rebuilds.
    pub fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// Makes room at once for about `events` more events (a restore knows
    /// how many it will apply), where the de-duplication table would
    /// otherwise double, in fresh memory, several times on the way.
    pub fn reserve(&mut self, events: usize) {
        self.dedup.reserve(events);
    }

    /// Starts loading the state the coming records will touch, without
    /// waiting for it: call it before applying each record, with the next
    /// three (`ahead[0]` the next). Each stage reads only what the stage
    /// before brought into the cache one record earlier: the third record's
    /// map entry and de-duplication slot (addresses computed, nothing
    /// read), the second's HR records, accounts and episodes, the next's
    /// grant lists and attributes. A state that fits in the CPU caches
    /// gains nothing from the stages and pays for their lookups: there,
    /// the next record's state is requested in one go.
    pub fn prefetch(&self, ahead: [Option<&Envelope>; 3]) {
        if self.entries < STAGED_PREFETCH_ENTRIES {
            if let Some(env) = ahead[0] {
                self.dedup
                    .prefetch(env.event.system(), env.event.event_id());
                self.store.prefetch_lists(&env.event.key());
            }
            return;
        }
        if let Some(env) = ahead[2] {
            self.dedup
                .prefetch(env.event.system(), env.event.event_id());
            self.store.prefetch_entry(&env.event.key());
        }
        if let Some(env) = ahead[1] {
            self.store.prefetch_lists(&env.event.key());
        }
        if let Some(env) = ahead[0] {
            self.store.prefetch(&env.event.key());
        }
    }

    /// Takes one event its key's state already reflects (restored from a
    /// checkpoint written after it): its id is remembered and stream time
    /// moves to it, as when it was applied, but the key is not touched.
    pub fn skip(&mut self, env: &Envelope, out: &mut Vec<Finding>) {
        let Some(event_id) = self.admit(&env.event, out) else {
            return;
        };
        // The move it made, if any, of an account from a key whose record
        // is older.
        if let (cause, Some(id)) = self.cause_of(&env.origin, &env.event, event_id) {
            let key = env.event.key();
            self.settle_move(&id, &key, (env.event.occurred_at(), true), &cause, out);
        }
    }

    /// What an event's transitions cite, and the account it names.
    fn cause_of(
        &mut self,
        origin: &Origin,
        event: &Event,
        event_id: EventId,
    ) -> (Cause, Option<AccountRef>) {
        let scope = match event {
            Event::Hr(e) => self.intern(&e.source_system),
            Event::Directory(e) => self.intern(&e.directory),
            Event::App(e) => self.intern(&e.app_id),
        };
        let account = match event {
            Event::Directory(e) => Some(&e.account_id),
            Event::App(e) => Some(&e.account_id),
            Event::Hr(_) => None,
        }
        .map(|id| AccountRef {
            system: event.system(),
            scope: scope.clone(),
            account_id: id.clone(),
        });
        let ev = EvRef::new(origin, event_id, event.kind(), event.occurred_at());
        let cause = Cause {
            system: event.system(),
            scope,
            ev: Some(ev),
        };
        (cause, account)
    }

    /// Remembers `event`'s id and moves stream time to it; the id as held,
    /// or `None` (counted) for a duplicate.
    #[inline]
    fn admit(&mut self, event: &Event, out: &mut Vec<Finding>) -> Option<EventId> {
        let t = event.occurred_at();
        let Some(event_id) = self
            .dedup
            .insert(event.system(), event.event_id(), self.now.max(t))
        else {
            self.stats.duplicates += 1;
            return None;
        };
        self.stats.events += 1;
        if t > self.now {
            self.advance_to(t, out);
        }
        Some(event_id)
    }

    /// Applies one event; finding transitions are appended to `out`.
    pub fn apply(&mut self, env: Envelope, out: &mut Vec<Finding>) {
        let Envelope { origin, event } = env;
        let Some(event_id) = self.admit(&event, out) else {
            return;
        };
        let t = event.occurred_at();
        let key = event.key();
        let (cause, account) = self.cause_of(&origin, &event, event_id);
        let ev = cause.ev.clone().expect("an event's cause cites it");
        let named = match &event {
            Event::Directory(e) => e
                .group
                .as_deref()
                .filter(|g| !g.is_empty())
                .map(|g| self.intern(g)),
            Event::App(e) => e
                .entitlement
                .as_deref()
                .filter(|g| !g.is_empty())
                .map(|g| self.intern(g)),
            Event::Hr(_) => None,
        };
        let stated = match &event {
            Event::Hr(e) => Attrs::stated(&e.email, &e.department, &e.title, &e.manager_id, |s| {
                self.intern(s)
            }),
            Event::Directory(e) => {
                Attrs::stated(&e.email, &e.department, &e.title, &e.manager_id, |s| {
                    self.intern(s)
                })
            }
            Event::App(_) => Attrs::default(),
        };
        if let (Some(id), false) = (&account, self.waiting.is_empty()) {
            self.settle_move(id, &key, (t, false), &cause, out);
        }
        let (key, moved) = match &account {
            Some(id) => match self.take_account(id, &key, t, &cause, out) {
                Ok(moved) => (key, moved),
                // The account's state under another key is newer: the
                // event applies to it there, each part of it only where
                // newer, as any late event.
                Err(holder) => (holder, None),
            },
            None => (key, None),
        };
        let now = self.now;
        self.thaw(&key);
        let store = self.store.clone();
        {
            let mut st = match store.map().get_mut(&key) {
                Some(st) => st,
                None => {
                    self.tracked += 1;
                    store.map().entry(key.clone()).or_default()
                }
            };
            if let Some(account) = moved {
                self.entries = self
                    .entries
                    .saturating_add_signed(st.adopt_account(account));
            }
            if matches!(event, Event::Hr(_)) && !st.known_to_hr() {
                self.workers += 1;
            }
            self.entries += match event {
                Event::Hr(e) => st.apply_hr(e, &origin, &cause.scope, &stated, &ev, now),
                Event::Directory(e) => st.apply_directory(e, &stated, &ev, &cause.scope, named),
                Event::App(e) => st.apply_app(e, &ev, &cause.scope, named),
            };
            if let Some(a) = account.as_ref().and_then(|id| st.account_mut(id)) {
                a.saw(&ev);
            }
            st.catch_up(now);
            self.reconcile(&key, &mut st, now, &cause, out);
        }
        self.touched(&key);
        self.sweep_timers();
    }
}
