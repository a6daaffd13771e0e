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

use crate::config::Config;
pub use crate::detect::episode::{Episode, Phase};
use crate::detect::rules::{self, Condition, Rule, SubjectRef};
use crate::detect::state::{push_compact, Attrs, Dedup, EvRef, Store, WorkerState};
use crate::model::event::{Envelope, Event, Key, System};
use crate::model::finding::{
    stable_id, AccountableOwner, ContributingOwner, Detector, Escalation, Evidence, Finding,
    OwnerRole, Severity, Status, Subject,
};
use crate::model::id::{EventId, Sym};
use crate::model::time::Ts;
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    /// A storm's remediation deadline.
    Storm(Rule),
    /// A moment a storm may end.
    StormEnd(Rule),
    Worker(Key),
}

/// The source behind a finding: for SOURCE_STORM attribution, and the
/// evidence of a resolution.
#[derive(Clone, Debug)]
struct Cause {
    system: System,
    scope: Sym,
    ev: Option<EvRef>,
}

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

/// A finding of one rule that would open (its SLA expired), kept for the
/// storm window.
#[derive(Debug)]
struct Opening {
    at: Ts,
    serial: u64,
    key: Key,
    cause: Cause,
    /// Still drifting: cleared findings do not count towards a storm.
    alive: bool,
}

/// The mass-change guard of one rule.
#[derive(Debug, Default)]
struct Storm {
    /// Findings that would have opened within the window, oldest first.
    openings: VecDeque<Opening>,
    /// Live openings in the window per key; `len()` is the storm measure.
    distinct: HashMap<Key, u32, ahash::RandomState>,
    active: Option<Box<Finding>>,
    escalated: bool,
    /// When the active storm opened.
    opened_at: Ts,
    /// Serials of the active storm's findings published before it opened:
    /// those in the window when it did.
    before: std::ops::Range<u64>,
    /// The active storm's findings still drifting: those published before
    /// it opened, and its burst.
    drifting: usize,
    /// Findings of the active storm's burst still held.
    held: usize,
    /// The keys those findings belong to.
    held_keys: HashSet<Key, ahash::RandomState>,
    /// When one of its findings last cleared: the storm ends on
    /// remediation only after a quiet window, so a feed being corrected is
    /// not paged half-way.
    last_clear: Ts,
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
    opening_serial: u64,
    stats: EngineStats,
    /// Transitions change state as usual but are not copied out (a restore
    /// publishes nothing).
    quiet: bool,
}

const INTERNER_LIMIT: usize = 1 << 20;
/// The timer heap is not swept below this many entries.
const MIN_TIMER_SWEEP: usize = 1 << 16;
const MAX_EVIDENCE: usize = 32;
/// Entries in state from which `Engine::prefetch` works in stages: at
/// about a hundred bytes each, past the last-level cache of a server.
const STAGED_PREFETCH_ENTRIES: usize = 256 * 1024;

impl Engine {
    pub fn new(cfg: Arc<Config>) -> Engine {
        let dedup = Dedup::new(cfg.dedup_capacity);
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
            opening_serial: 0,
            stats: EngineStats::default(),
            quiet: false,
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
        let mut out = Vec::new();
        for st in self.store.map().iter() {
            for ep in st.episodes() {
                if matches!(ep.phase, Phase::Open | Phase::Escalated) {
                    if let Some(f) = &ep.finding {
                        out.push((f.rule, f.severity));
                    }
                }
            }
        }
        out
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

    /// Applies one event; finding transitions are appended to `out`.
    pub fn apply(&mut self, env: Envelope, out: &mut Vec<Finding>) {
        let Envelope { origin, event } = env;
        if !self.dedup.insert(event.system(), event.event_id()) {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.events += 1;
        let t = event.occurred_at();
        if t > self.now {
            self.advance_to(t, out);
        }
        let key = event.key();
        let scope = match &event {
            Event::Hr(e) => self.intern(&e.source_system),
            Event::Directory(e) => self.intern(&e.directory),
            Event::App(e) => self.intern(&e.app_id),
        };
        let ev = EvRef::new(&origin, EventId::new(event.event_id()), event.kind(), t);
        let cause = Cause {
            system: event.system(),
            scope,
            ev: Some(ev.clone()),
        };
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
        let now = self.now;
        let store = self.store.clone();
        {
            let mut st = match store.map().get_mut(&key) {
                Some(st) => st,
                None => {
                    self.tracked += 1;
                    store.map().entry(key.clone()).or_default()
                }
            };
            if matches!(event, Event::Hr(_)) && !st.known_to_hr() {
                self.workers += 1;
            }
            self.entries += match event {
                Event::Hr(e) => st.apply_hr(e, &origin, &cause.scope, &stated, &ev, now),
                Event::Directory(e) => st.apply_directory(e, &stated, &ev, &cause.scope, named),
                Event::App(e) => st.apply_app(e, &ev, &cause.scope, named),
            };
            st.catch_up(now);
            self.reconcile(&key, &mut st, now, &cause, out);
        }
        self.sweep_timers();
    }

    /// Drops timer entries no key waits for any more. A key's timer is
    /// replaced, not removed, when its wake-up time changes or its episodes
    /// end, so without a sweep the heap would keep an entry for every key
    /// that ever waited (a worker hired and then provisioned, for one).
    /// Sweeping when the heap has doubled since the last sweep costs at
    /// most one lookup per entry pushed. Runs with no guard of the store
    /// held.
    fn sweep_timers(&mut self) {
        if self.timers.len() < self.timers_sweep_at {
            return;
        }
        let store = self.store.clone();
        let mut kept = std::mem::take(&mut self.timers).into_vec();
        kept.retain(|Reverse((at, which))| match which {
            TimerKey::Storm(_) | TimerKey::StormEnd(_) => true,
            TimerKey::Worker(key) => store
                .map()
                .get(key)
                .is_some_and(|st| st.wake_at() == Some(*at)),
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
                    let store = self.store.clone();
                    let entry = store.map().get_mut(&key);
                    if let Some(mut st) = entry {
                        if st.wake_at() == Some(at) {
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

    fn sid(&self, c: &Condition, st: &WorkerState) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        eat(&[c.rule as u8]);
        match c.subject {
            SubjectRef::Worker => eat(b"worker"),
            SubjectRef::Account(i) | SubjectRef::Grant(i, _) => {
                let a = &st.accounts[i];
                eat(&[a.system as u8]);
                eat(a.scope.as_bytes());
                eat(a.account_id.as_bytes());
                if let SubjectRef::Grant(_, g) = c.subject {
                    eat(a.grants[g].name.as_bytes());
                }
            }
            SubjectRef::App(i) => {
                eat(b"app");
                eat(st.accounts[i].scope.as_bytes());
            }
        }
        h
    }

    /// Compares the conditions that hold now with the key's episodes and
    /// moves each episode along its lifecycle.
    fn reconcile(
        &mut self,
        key: &Key,
        st: &mut WorkerState,
        at: Ts,
        cause: &Cause,
        out: &mut Vec<Finding>,
    ) {
        let mut conds = std::mem::take(&mut self.buf);
        rules::evaluate(&self.cfg, key, st, at, &mut conds);
        if conds.is_empty() && st.episodes().is_empty() {
            self.buf = conds;
            self.reschedule(key, st, at);
            return;
        }
        // Out of the state while they move along, back before the timer is set.
        let mut eps = st.take_episodes();
        let held = eps.len();
        self.generation += 1;
        let generation = self.generation;
        let mut matched = std::mem::take(&mut self.matched);
        matched.clear();
        for (ci, c) in conds.iter().enumerate() {
            let sid = self.sid(c, st);
            let ei = match eps.iter().position(|e| e.rule == c.rule && e.sid == sid) {
                Some(ei) => ei,
                None => {
                    let sla = self.cfg.rule(c.rule).sla_ms;
                    push_compact(
                        &mut eps,
                        Episode {
                            rule: c.rule,
                            sid,
                            since: c.since,
                            began: at,
                            due: c.since.plus(sla),
                            phase: Phase::Pending,
                            released: false,
                            opening: 0,
                            seen: 0,
                            finding: None,
                        },
                    );
                    eps.len() - 1
                }
            };
            if eps[ei].seen != generation {
                eps[ei].seen = generation;
                matched.push((ei, ci));
            }
        }

        // Episodes whose condition no longer holds end here.
        let mut i = 0;
        while i < eps.len() {
            if eps[i].seen == generation {
                i += 1;
                continue;
            }
            let ep = eps.remove(i);
            for m in matched.iter_mut() {
                if m.0 > i {
                    m.0 -= 1;
                }
            }
            let storm = &mut self.storms[ep.rule.index()];
            forget_opening(storm, ep.opening);
            let held = ep.phase == Phase::Held;
            if held || (storm.active.is_some() && storm.before.contains(&ep.opening)) {
                // One of the storm's findings no longer drifts.
                storm.held = storm.held.saturating_sub(usize::from(held));
                storm.drifting = storm.drifting.saturating_sub(1);
                storm.last_clear = at;
                let check = at.plus(self.cfg.storm.window_ms);
                self.timers
                    .push(Reverse((check, TimerKey::StormEnd(ep.rule))));
            }
            if let Some(mut f) = ep.finding {
                if matches!(ep.phase, Phase::Open | Phase::Escalated) {
                    f.status = Status::Resolved;
                    f.transitioned_at = at;
                    if let Some(ev) = &cause.ev {
                        push_evidence(&mut f.evidence, ev.to_evidence());
                    }
                    self.stats.resolved += 1;
                    if !self.quiet {
                        out.push(*f);
                    }
                }
            }
        }

        // Episodes whose condition holds move on when their time has come.
        for &(ei, ci) in &matched {
            let c = conds[ci];
            let ep = &mut eps[ei];
            match ep.phase {
                Phase::Pending if at >= ep.due => {
                    // The finding would open now: it counts towards a storm
                    // of its rule, and is held if it is part of one's burst.
                    let held = !ep.released && self.cfg.storm.enabled && {
                        let cause = opening_cause(st, &c);
                        let (serial, held) = self.note_opening(c.rule, at, key, cause, out);
                        eps[ei].opening = serial;
                        held
                    };
                    if held {
                        eps[ei].phase = Phase::Held;
                    } else {
                        let began = eps[ei].began;
                        let f = self.open_finding(key, st, &c, began, at);
                        let ep = &mut eps[ei];
                        ep.phase = Phase::Open;
                        self.stats.opened += 1;
                        if !self.quiet {
                            out.push(f.clone());
                        }
                        ep.finding = Some(Box::new(f));
                    }
                }
                Phase::Open => {
                    let f = ep
                        .finding
                        .as_mut()
                        .expect("an open episode has its finding");
                    if at >= f.remediation_deadline {
                        f.status = Status::Escalated;
                        f.transitioned_at = at;
                        f.escalation = Escalation {
                            target: if f.severity == Severity::Critical {
                                self.cfg.critical_escalation_target.clone()
                            } else {
                                self.cfg.escalation_target.clone()
                            },
                            level: 2,
                        };
                        ep.phase = Phase::Escalated;
                        self.stats.escalated += 1;
                        if !self.quiet {
                            out.push((**f).clone());
                        }
                    }
                }
                _ => {}
            }
        }
        // Most keys have an episode only for a while (a hire awaiting its
        // account): an empty list is freed, not kept for their life.
        self.entries = (self.entries + eps.len()).saturating_sub(held);
        st.put_episodes(eps);
        self.buf = conds;
        self.matched = matched;
        self.reschedule(key, st, at);
    }

    fn reschedule(&mut self, key: &Key, st: &mut WorkerState, at: Ts) {
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

    fn open_finding(
        &self,
        key: &Key,
        st: &WorkerState,
        c: &Condition,
        began: Ts,
        at: Ts,
    ) -> Finding {
        let cfg = &self.cfg;
        let rc = cfg.rule(c.rule);
        let severity = if c.elevated {
            rc.elevated_severity
        } else {
            rc.severity
        };
        let (subject, evidence, summary) = describe(key, st, c);
        let summary = capitalize(summary);
        let role = c.rule.contributing_role(subject.system);
        let team = match role {
            OwnerRole::Hr => &cfg.hr,
            OwnerRole::AppOwner => cfg.app_owner(subject.app_id.as_deref().unwrap_or_default()),
            _ => &cfg.it,
        };
        let id = finding_id(c.rule, key, &subject, c.since, began);
        Finding {
            finding_id: id,
            status: Status::Open,
            rule: c.rule,
            severity,
            worker_id: key.worker_id().map(Into::into),
            subject,
            summary,
            accountable_owner: AccountableOwner {
                role: OwnerRole::IdentityGovernanceProcessOwner,
                team: cfg.governance_team.clone(),
            },
            contributing_owner: ContributingOwner {
                role,
                team: team.team.clone(),
                contact: team.contact.clone(),
            },
            detected_at: at,
            remediation_deadline: at.plus(cfg.remediation_ms(severity)),
            escalation: Escalation {
                target: team.team.clone(),
                level: 1,
            },
            evidence,
            frameworks: c
                .rule
                .frameworks()
                .iter()
                .map(|s| Cow::Borrowed(*s))
                .collect(),
            detector: Detector {
                version: cfg.version.clone(),
                instance: cfg.instance.clone(),
            },
            transitioned_at: at,
        }
    }

    // ---- SOURCE_STORM ------------------------------------------------------

    /// More findings of one rule than this opening within the window is a
    /// storm: max(min_workers, fraction x tracked workers), not rounded.
    fn limit(&self) -> f64 {
        let s = &self.cfg.storm;
        (s.min_workers as f64).max(s.fraction * self.workers as f64)
    }

    /// Records that a finding of `rule` on `key` would open at `at`;
    /// returns its serial in the storm window and whether it is held back.
    /// It is held when it takes the window's count over the limit: it then
    /// opens the storm, or joins the burst of the one already open. A
    /// finding opening while the count is within the limit is published,
    /// storm or not.
    fn note_opening(
        &mut self,
        rule: Rule,
        at: Ts,
        key: &Key,
        cause: Cause,
        out: &mut Vec<Finding>,
    ) -> (u64, bool) {
        if !self.cfg.storm.enabled || rule == Rule::SourceStorm {
            return (0, false);
        }
        let window = self.cfg.storm.window_ms;
        let limit = self.limit();
        self.opening_serial += 1;
        let serial = self.opening_serial;
        let storm = &mut self.storms[rule.index()];
        expire_openings(storm, at, window);
        storm.openings.push_back(Opening {
            at,
            serial,
            key: key.clone(),
            cause,
            alive: true,
        });
        *storm.distinct.entry(key.clone()).or_default() += 1;
        if storm.distinct.len() as f64 <= limit {
            return (serial, false);
        }
        if storm.active.is_none() {
            let f = self.storm_finding(rule, at, limit);
            self.stats.opened += 1;
            if !self.quiet {
                out.push(f.clone());
            }
            self.timers
                .push(Reverse((f.remediation_deadline, TimerKey::Storm(rule))));
            let end = at.plus(self.cfg.storm.max_hold_ms);
            self.timers.push(Reverse((end, TimerKey::StormEnd(rule))));
            let storm = &mut self.storms[rule.index()];
            storm.active = Some(Box::new(f));
            storm.escalated = false;
            storm.opened_at = at;
            storm.last_clear = Ts::MIN;
            let alive = storm.openings.iter().filter(|o| o.alive);
            storm.before = alive.clone().next().map_or(serial, |o| o.serial)..serial;
            storm.drifting = alive.count() - 1;
        }
        let storm = &mut self.storms[rule.index()];
        storm.drifting += 1;
        storm.held += 1;
        storm.held_keys.insert(key.clone());
        self.stats.held += 1;
        // The burst may be over once this finding leaves the window.
        self.timers
            .push(Reverse((at.plus(window), TimerKey::StormEnd(rule))));
        (serial, true)
    }

    fn storm_finding(&self, rule: Rule, at: Ts, limit: f64) -> Finding {
        let cfg = &self.cfg;
        let storm = &self.storms[rule.index()];
        // Attribute the storm to the source behind most of the window's findings.
        let mut by_source: HashMap<(System, Sym), usize> = HashMap::new();
        for o in storm.openings.iter().filter(|o| o.alive) {
            *by_source
                .entry((o.cause.system, o.cause.scope.clone()))
                .or_default() += 1;
        }
        let ((system, scope), _) = by_source
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .expect("a storm has openings");
        let (role, team) = match system {
            System::Hr => (OwnerRole::Hr, &cfg.hr),
            System::Directory => (OwnerRole::It, &cfg.it),
            System::App => (OwnerRole::AppOwner, cfg.app_owner(&scope)),
        };
        let mut evidence = Vec::new();
        for ev in storm
            .openings
            .iter()
            .filter(|o| o.alive && o.cause.system == system && o.cause.scope == scope)
            .filter_map(|o| o.cause.ev.as_ref())
        {
            push_evidence(&mut evidence, ev.to_evidence());
        }
        let subject = Subject {
            system,
            directory: (system == System::Directory).then(|| scope.to_arc()),
            app_id: (system == System::App).then(|| scope.to_arc()),
            account_id: None,
            entitlement: None,
        };
        let severity = cfg.storm.severity;
        let window_min = cfg.storm.window_ms / 60_000;
        let max_hold_h = cfg.storm.max_hold_ms as f64 / 3_600_000.0;
        Finding {
            finding_id: stable_id(&[b"SOURCE_STORM", rule.as_str().as_bytes(), &at.millis().to_le_bytes()]),
            status: Status::Open,
            rule: Rule::SourceStorm,
            severity,
            worker_id: None,
            subject,
            summary: format!(
                "Mass change: {} {} findings would open within {} minutes of event time (limit {}), mostly from {} source `{}`; the findings of this burst are held until it clears, for at most {}h.",
                storm.distinct.len(),
                rule,
                window_min,
                limit,
                system.as_str(),
                scope,
                max_hold_h
            ),
            accountable_owner: AccountableOwner {
                role: OwnerRole::IdentityGovernanceProcessOwner,
                team: cfg.governance_team.clone(),
            },
            contributing_owner: ContributingOwner {
                role,
                team: team.team.clone(),
                contact: team.contact.clone(),
            },
            detected_at: at,
            remediation_deadline: at.plus(cfg.remediation_ms(severity)),
            escalation: Escalation {
                target: team.team.clone(),
                level: 1,
            },
            evidence,
            frameworks: Rule::SourceStorm
                .frameworks()
                .iter()
                .map(|s| Cow::Borrowed(*s))
                .collect(),
            detector: Detector {
                version: cfg.version.clone(),
                instance: cfg.instance.clone(),
            },
            transitioned_at: at,
        }
    }

    fn storm_escalate(&mut self, rule: Rule, now: Ts, out: &mut Vec<Finding>) {
        let target = self.cfg.critical_escalation_target.clone();
        let normal = self.cfg.escalation_target.clone();
        let storm = &mut self.storms[rule.index()];
        if let Some(f) = storm.active.as_mut() {
            if !storm.escalated && now >= f.remediation_deadline {
                storm.escalated = true;
                f.status = Status::Escalated;
                f.transitioned_at = now;
                f.escalation = Escalation {
                    target: if f.severity == Severity::Critical {
                        target
                    } else {
                        normal
                    },
                    level: 2,
                };
                self.stats.escalated += 1;
                if !self.quiet {
                    out.push((**f).clone());
                }
            }
        }
    }

    /// Ends the storm of `rule` if it is over: `max_hold` has passed since
    /// it opened, or it has been remediated (the window's count is back
    /// within the limit, no more than the limit of its findings, those
    /// published in the window before it opened and its burst, still
    /// drift, and none has cleared for one window). The storm resolves
    /// first; then its held findings still drifting open. Runs at the
    /// moments it may end (one window after a finding of its burst joined
    /// or one of its findings cleared; `max_hold` after the start), with no
    /// store guard held.
    fn storm_end(&mut self, rule: Rule, out: &mut Vec<Finding>) {
        let idx = rule.index();
        if self.storms[idx].active.is_none() {
            return;
        }
        let now = self.now;
        let window = self.cfg.storm.window_ms;
        let limit = self.limit();
        let max_hold = self.cfg.storm.max_hold_ms;
        let storm = &mut self.storms[idx];
        expire_openings(storm, now, window);
        let bounded = now >= storm.opened_at.plus(max_hold);
        let remediated = storm.distinct.len() as f64 <= limit
            && storm.drifting as f64 <= limit
            && now >= storm.last_clear.plus(window);
        if !bounded && !remediated {
            return;
        }
        let mut f = storm.active.take().expect("checked active");
        f.status = Status::Resolved;
        f.transitioned_at = now;
        self.stats.resolved += 1;
        if !self.quiet {
            out.push(*f);
        }
        let mut keys: Vec<Key> = std::mem::take(&mut storm.held_keys).into_iter().collect();
        storm.held = 0;
        storm.drifting = 0;
        storm.before = 0..0;
        keys.sort();
        for key in keys {
            let store = self.store.clone();
            let Some(mut st) = store.map().get_mut(&key) else {
                continue;
            };
            for ep in st
                .episodes_mut()
                .iter_mut()
                .filter(|e| e.rule == rule && e.phase == Phase::Held)
            {
                ep.phase = Phase::Pending;
                ep.released = true;
            }
            let cause = timer_cause(&st);
            self.reconcile(&key, &mut st, now, &cause, out);
        }
    }
}

fn expire_openings(storm: &mut Storm, at: Ts, window: i64) {
    while let Some(o) = storm.openings.front() {
        if o.at.plus(window) > at {
            break;
        }
        let o = storm.openings.pop_front().expect("peeked");
        if o.alive {
            uncount(storm, &o.key);
        }
    }
}

/// An episode ended: its opening, if still in the window, no longer counts.
fn forget_opening(storm: &mut Storm, serial: u64) {
    if serial == 0 {
        return;
    }
    let Ok(i) = storm.openings.binary_search_by_key(&serial, |o| o.serial) else {
        return; // already out of the window
    };
    if std::mem::replace(&mut storm.openings[i].alive, false) {
        let key = storm.openings[i].key.clone();
        uncount(storm, &key);
    }
}

fn uncount(storm: &mut Storm, key: &Key) {
    if let Some(n) = storm.distinct.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            storm.distinct.remove(key);
        }
    }
}

/// The source behind a finding about to open, for SOURCE_STORM
/// attribution: of the events its condition rests on, the one that made it
/// true last (the HR status change, or the account, grant or attribute
/// event).
fn opening_cause(st: &WorkerState, c: &Condition) -> Cause {
    let primary = st.primary();
    let hr = |ev: Option<&EvRef>| match primary {
        Some(p) => Cause {
            system: System::Hr,
            scope: p.source_system.clone(),
            ev: ev.or(p.status_ev.as_ref()).cloned(),
        },
        None => timer_cause(st),
    };
    let account = |i: usize, ev: &EvRef| {
        let a = &st.accounts[i];
        Cause {
            system: a.system,
            scope: a.scope.clone(),
            ev: Some(ev.clone()),
        }
    };
    let by_status = primary.is_some_and(|p| p.status_stamp().0 == c.since);
    match (c.rule, c.subject) {
        (Rule::MoverRetainedPrivilege, _) => {
            let transfer = st
                .hr
                .iter()
                .filter_map(|r| r.transfer())
                .max_by_key(|t| t.0);
            hr(transfer.map(|t| &t.1))
        }
        (Rule::AttributeMismatch, SubjectRef::Account(i)) => {
            let a = &st.accounts[i];
            match st.hr_attrs() {
                Some(r) if r.attrs_stamp().0 == c.since => hr(r.attrs_ev()),
                _ => account(i, a.attrs_ev().unwrap_or(&a.state_ev)),
            }
        }
        (Rule::UnapprovedPrivilegedGrant, SubjectRef::Grant(i, g)) => {
            account(i, &st.accounts[i].grants[g].ev)
        }
        (Rule::UnreconciledTermination, _) => st
            .accounts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.removed_at.get() == Some(c.since))
            .map(|(i, a)| account(i, &a.state_ev))
            .next()
            .unwrap_or_else(|| hr(None)),
        (_, SubjectRef::Account(i) | SubjectRef::App(i) | SubjectRef::Grant(i, _))
            if !by_status =>
        {
            account(i, &st.accounts[i].state_ev)
        }
        _ => hr(None),
    }
}

fn timer_cause(st: &WorkerState) -> Cause {
    match st.primary() {
        Some(p) => Cause {
            system: System::Hr,
            scope: p.source_system.clone(),
            ev: p.status_ev.clone(),
        },
        None => Cause {
            system: st.accounts.first().map_or(System::Hr, |a| a.system),
            scope: st
                .accounts
                .first()
                .map_or_else(|| "unknown".into(), |a| a.scope.clone()),
            ev: None,
        },
    }
}

fn push_evidence(list: &mut Vec<Evidence>, e: Evidence) {
    if list.len() >= MAX_EVIDENCE {
        return;
    }
    if !list.iter().any(|x| {
        x.topic == e.topic
            && x.partition == e.partition
            && x.offset == e.offset
            && x.event_id == e.event_id
    }) {
        list.push(e);
    }
}

/// One episode of one rule on one subject: the condition's `since` and the
/// stream time the episode began tell apart two episodes of one subject.
fn finding_id(rule: Rule, key: &Key, s: &Subject, since: Ts, began: Ts) -> String {
    let opt = |o: &Option<Arc<str>>| o.as_deref().unwrap_or("").as_bytes().to_vec();
    stable_id(&[
        rule.as_str().as_bytes(),
        &[u8::from(key.uncorrelated())],
        key.id().as_bytes(),
        s.system.as_str().as_bytes(),
        &opt(&s.directory),
        &opt(&s.app_id),
        &opt(&s.account_id),
        &opt(&s.entitlement),
        &since.millis().to_le_bytes(),
        &began.millis().to_le_bytes(),
    ])
}

/// The subject, evidence and one-sentence summary of a condition.
fn describe(key: &Key, st: &WorkerState, c: &Condition) -> (Subject, Vec<Evidence>, String) {
    let mut ev = Vec::new();
    let who = key
        .worker_id()
        .map_or_else(|| "(uncorrelated)".to_string(), |w| format!("`{w}`"));
    let primary = st.primary();
    let status_ev = |ev: &mut Vec<Evidence>| {
        if let Some(e) = primary.and_then(|p| p.status_ev.as_ref()) {
            push_evidence(ev, e.to_evidence());
        }
    };
    let since = c.since;
    match c.subject {
        SubjectRef::Worker => {
            for r in &st.hr {
                if let Some(e) = &r.status_ev {
                    push_evidence(&mut ev, e.to_evidence());
                }
            }
            if matches!(
                c.rule,
                Rule::UnreconciledTermination
                    | Rule::ContractExpiredAccess
                    | Rule::JoinerNotProvisioned
            ) {
                for a in &st.accounts {
                    push_evidence(&mut ev, a.state_ev.to_evidence());
                }
            }
            let summary = match c.rule {
                Rule::JoinerNotProvisioned
                    if primary.and_then(|p| p.status_cause)
                        == Some(crate::model::event::HrEventType::LeaveEnd) =>
                {
                    format!(
                        "Worker {who} returned from leave on {since} but has no enabled directory account."
                    )
                }
                Rule::JoinerNotProvisioned => format!(
                    "Worker {who} has been active in HR since {since} but has no enabled directory account."
                ),
                Rule::UnreconciledTermination => format!(
                    "Every directory account of worker {who} was disabled or deleted by {since}, but HR still records the worker as active."
                ),
                Rule::ContractExpiredAccess => {
                    let end = st.hr_attrs().and_then(|r| r.contract_end.get()).map_or("?".into(), |t| t.to_string());
                    let wt = st.hr_attrs().map_or("non-employee", |r| r.worker_type.as_str());
                    format!(
                        "Worker {who} ({wt}) passed contract end {end} but HR still records them active and they hold enabled accounts."
                    )
                }
                _ => {
                    let say = |s| {
                        st.hr
                            .iter()
                            .filter(|r| r.status == s)
                            .map(|r| format!("`{}`", r.source_system))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    format!(
                        "HR sources disagree on worker {who}: {} say TERMINATED while {} say ACTIVE.",
                        say(crate::detect::state::WorkerStatus::Terminated),
                        say(crate::detect::state::WorkerStatus::Active)
                    )
                }
            };
            (Subject::hr(), ev, summary)
        }
        SubjectRef::Account(i) => {
            let a = &st.accounts[i];
            let subject = account_subject(a, None);
            let place = format!(
                "{} account `{}` in `{}`",
                a.system.as_str(),
                a.account_id,
                a.scope
            );
            match c.rule {
                Rule::LeaverDirectoryAccess | Rule::AccessDuringLeave => status_ev(&mut ev),
                Rule::AttributeMismatch => {
                    if let Some(e) = st.hr_attrs().and_then(|r| r.attrs_ev()) {
                        push_evidence(&mut ev, e.to_evidence());
                    }
                }
                Rule::OrphanedNonHumanIdentity if key.worker_id().is_some() => status_ev(&mut ev),
                _ => {}
            }
            push_evidence(&mut ev, a.state_ev.to_evidence());
            if let Some(e) = a.attrs_ev() {
                if c.rule == Rule::AttributeMismatch {
                    push_evidence(&mut ev, e.to_evidence());
                }
            }
            if c.elevated {
                for g in a.active_grants().filter(|g| g.privileged) {
                    push_evidence(&mut ev, g.ev.to_evidence());
                }
            }
            let summary = match c.rule {
                Rule::LeaverDirectoryAccess => format!(
                    "Worker {who} is terminated in HR but {place} is still enabled{}.",
                    if c.elevated {
                        " and holds privileged access"
                    } else {
                        ""
                    }
                ),
                Rule::AccessDuringLeave => {
                    format!("Worker {who} is on leave but {place} is enabled.")
                }
                Rule::AttributeMismatch => format!(
                    "{place} disagrees with HR on {} for worker {who}.",
                    rules::mismatched_fields(st, a).join(", ")
                ),
                Rule::OrphanAccount => {
                    if a.has_worker_id && !key.uncorrelated() {
                        format!(
                            "Enabled {place} belongs to worker_id {who}, which HR has never sent."
                        )
                    } else {
                        format!("Enabled {place} has no worker_id and matches no worker.")
                    }
                }
                _ => {
                    let owner = a.owner_worker_id.as_deref();
                    let why = match (owner, key.uncorrelated(), st.known_to_hr()) {
                        (None, _, _) | (_, true, _) => "has no owner".to_string(),
                        (Some(o), _, false) => format!("is owned by `{o}`, whom HR has never sent"),
                        (Some(o), _, true) => format!("is owned by `{o}`, who is terminated"),
                    };
                    format!("Enabled {} {place} {why}.", a.kind.as_str())
                }
            };
            (subject, ev, summary)
        }
        SubjectRef::Grant(i, g) => {
            let a = &st.accounts[i];
            let grant = &a.grants[g];
            let kind = if a.system == System::App {
                "entitlement"
            } else {
                "group"
            };
            let subject = account_subject(a, Some(grant.name.to_arc()));
            push_evidence(&mut ev, grant.ev.to_evidence());
            push_evidence(&mut ev, a.state_ev.to_evidence());
            let summary = if c.rule == Rule::MoverRetainedPrivilege {
                if let Some((_, tev)) = st
                    .hr
                    .iter()
                    .filter_map(|r| r.transfer())
                    .max_by_key(|t| t.0)
                {
                    push_evidence(&mut ev, tev.to_evidence());
                }
                format!(
                    "Worker {who} transferred on {since} but still holds privileged {kind} `{}` on {} account `{}` in `{}`, granted before the transfer and not recertified since.",
                    grant.name, a.system.as_str(), a.account_id, a.scope
                )
            } else {
                let why = match grant.approved_by() {
                    None => "with no approval".to_string(),
                    Some(by) => format!(
                        "approved by `{by}`, who is not a configured approver of `{}`",
                        a.scope
                    ),
                };
                format!(
                    "Privileged {kind} `{}` was granted to {} account `{}` in `{}` {why}.",
                    grant.name,
                    a.system.as_str(),
                    a.account_id,
                    a.scope
                )
            };
            (subject, ev, summary)
        }
        SubjectRef::App(i) => {
            let app = st.accounts[i].scope.clone();
            status_ev(&mut ev);
            let mut n = 0;
            for a in st
                .accounts
                .iter()
                .filter(|a| a.system == System::App && a.scope == app && a.holds_access())
            {
                push_evidence(&mut ev, a.state_ev.to_evidence());
                for g in a.active_grants() {
                    n += 1;
                    push_evidence(&mut ev, g.ev.to_evidence());
                }
            }
            let subject = Subject {
                system: System::App,
                directory: None,
                app_id: Some(app.to_arc()),
                account_id: Some(st.accounts[i].account_id.as_str().into()),
                entitlement: None,
            };
            let summary = format!(
                "Terminated worker {who} still holds access in app `{app}` ({n} entitlement{}{}).",
                if n == 1 { "" } else { "s" },
                if c.elevated { ", privileged" } else { "" }
            );
            (subject, ev, summary)
        }
    }
}

fn capitalize(s: String) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_lowercase() => c.to_uppercase().chain(chars).collect(),
        _ => s,
    }
}

fn account_subject(a: &crate::detect::state::Account, entitlement: Option<Arc<str>>) -> Subject {
    Subject {
        system: a.system,
        directory: (a.system == System::Directory).then(|| a.scope.to_arc()),
        app_id: (a.system == System::App).then(|| a.scope.to_arc()),
        account_id: Some(a.account_id.as_str().into()),
        entitlement,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{
        AccountKind, DirectoryEvent, DirectoryEventType, HrEvent, HrEventType, Origin, WorkerType,
    };
    use crate::model::finding::Status;
    use crate::model::id::Topic;
    use crate::model::time::MS_PER_DAY;

    /// Applies `event` as the next record of one test topic.
    fn apply_next(engine: &mut Engine, offset: &mut i64, event: Event, out: &mut Vec<Finding>) {
        *offset += 1;
        let origin = Origin {
            topic: Topic::new("engine-test"),
            partition: 0,
            offset: *offset,
        };
        engine.apply(Envelope { origin, event }, out);
    }

    /// Sweeping the timer heap drops the entries of keys no longer waiting
    /// and keeps every one a key still waits for.
    #[test]
    fn timer_sweeps_keep_every_live_timer() {
        let mut cfg = Config::default_config();
        cfg.storm.enabled = false;
        let mut engine = Engine::new(Arc::new(cfg));
        let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
        let workers = 3 * MIN_TIMER_SWEEP as i64;
        let mut out = Vec::new();
        let mut offset = 0;
        let mut apply = |engine: &mut Engine, event: Event, out: &mut Vec<Finding>| {
            apply_next(engine, &mut offset, event, out)
        };
        for w in 0..workers {
            // One event a second: the 24-hour joiner SLA of early workers
            // expires while later ones are still being hired.
            let at = t0.plus(w * 1_000);
            let hire = HrEvent {
                event_id: format!("h{w}").into(),
                event_type: HrEventType::Hire,
                occurred_at: at,
                effective_at: at,
                source_system: "workday".into(),
                worker_id: format!("w{w}").into(),
                worker_type: WorkerType::Employee,
                email: None,
                department: None,
                title: None,
                manager_id: None,
                cost_center: None,
                contract_end: None,
            };
            apply(&mut engine, Event::Hr(hire), &mut out);
            // Two of three are provisioned at once, leaving a stale timer.
            if w % 3 != 0 {
                let account = DirectoryEvent {
                    event_id: format!("d{w}").into(),
                    event_type: DirectoryEventType::AccountCreated,
                    occurred_at: at,
                    directory: "entra".into(),
                    account_id: format!("u{w}").into(),
                    worker_id: Some(format!("w{w}").into()),
                    account_kind: AccountKind::Human,
                    owner_worker_id: None,
                    enabled: Some(true),
                    email: None,
                    department: None,
                    title: None,
                    manager_id: None,
                    group: None,
                    privileged: false,
                    approved_by: None,
                    approval_ref: None,
                    actor: None,
                };
                apply(&mut engine, Event::Directory(account), &mut out);
            }
        }
        assert!(
            engine.timers.len() < workers as usize,
            "swept: {} entries",
            engine.timers.len()
        );
        engine.advance_to(t0.plus(workers * 1_000 + 2 * MS_PER_DAY), &mut out);
        let mut opened: Vec<&str> = out
            .iter()
            .filter(|f| f.rule == Rule::JoinerNotProvisioned && f.status == Status::Open)
            .filter_map(|f| f.worker_id.as_deref())
            .collect();
        opened.sort_unstable();
        let mut expected: Vec<String> = (0..workers).step_by(3).map(|w| format!("w{w}")).collect();
        expected.sort_unstable();
        assert_eq!(opened.len(), expected.len(), "joiner findings opened");
        assert!(opened.iter().zip(&expected).all(|(a, b)| a == b));
    }

    /// The entry count the engine keeps from what each apply adds (and
    /// each reconcile opens or ends) matches a walk over the whole store,
    /// through a stream of lifecycle scenarios whose episodes open, escalate
    /// and resolve, with timers firing between events.
    #[test]
    fn maintained_entry_count_matches_a_recount() {
        use crate::tools::generate::Generator;
        let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
        let mut g = Generator::new(7, 300, t0);
        let mut engine = Engine::new(Arc::new(Config::default_config()));
        let mut out = Vec::new();
        let mut offset = 0;
        let mut feed = |engine: &mut Engine, events: Vec<Event>, out: &mut Vec<Finding>| {
            for event in events {
                apply_next(engine, &mut offset, event, out);
            }
        };
        feed(&mut engine, g.baseline(), &mut out);
        let recount =
            |engine: &Engine| -> usize { engine.store.map().iter().map(|st| st.entries()).sum() };
        assert_eq!(engine.entries(), recount(&engine));
        for round in 0..40 {
            for _ in 0..50 {
                let batch = g.next_batch(10 * 60_000);
                feed(&mut engine, batch, &mut out);
            }
            engine.advance_to(engine.now().plus(6 * 3_600_000), &mut out);
            assert_eq!(engine.entries(), recount(&engine), "after round {round}");
        }
        let statuses: HashSet<Status> = out.iter().map(|f| f.status).collect();
        assert!(
            statuses.contains(&Status::Open) && statuses.contains(&Status::Resolved),
            "episodes opened and ended: {statuses:?}"
        );
    }
    /// A quiet engine (a restore) goes through the same transitions into
    /// the same state as one that publishes, and appends nothing; once loud
    /// again, both publish the same from the same input.
    #[test]
    fn a_quiet_engine_reaches_the_same_state_and_publishes_nothing() {
        use crate::tools::generate::Generator;
        let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
        let mut g = Generator::new(5, 300, t0);
        let mut first = g.baseline();
        for _ in 0..400 {
            first.extend(g.next_batch(10 * 60_000));
        }
        let second: Vec<Event> = (0..200).flat_map(|_| g.next_batch(10 * 60_000)).collect();
        let cfg = Arc::new(Config::default_config());
        let (mut loud, mut quiet) = (Engine::new(cfg.clone()), Engine::new(cfg));
        quiet.set_quiet(true);
        let feed = |engine: &mut Engine, events: &[Event]| -> Vec<Finding> {
            let mut out = Vec::new();
            let mut offset = 0;
            for event in events {
                apply_next(engine, &mut offset, event.clone(), &mut out);
            }
            engine.advance_to(engine.now().plus(3 * MS_PER_DAY), &mut out);
            out
        };
        let published = feed(&mut loud, &first);
        let statuses: HashSet<Status> = published.iter().map(|f| f.status).collect();
        assert_eq!(
            statuses.len(),
            3,
            "opened, escalated and resolved: {statuses:?}"
        );
        assert!(feed(&mut quiet, &first).is_empty());
        assert_eq!(loud.stats(), quiet.stats());
        assert_eq!(loud.entries(), quiet.entries());
        let mut open = (loud.open_findings(), quiet.open_findings());
        open.0.sort_unstable();
        open.1.sort_unstable();
        assert_eq!(open.0, open.1);
        quiet.set_quiet(false);
        let (a, b) = (feed(&mut loud, &second), feed(&mut quiet, &second));
        assert!(!a.is_empty());
        assert_eq!(a, b);
    }
}
