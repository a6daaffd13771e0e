//! The SOURCE_STORM guard, one per rule: findings count as they would
//! open (at SLA expiry); the one that takes the window's count of distinct
//! keys over the limit opens a storm, and the storm's burst is held until
//! it is remediated or `storm.max_hold` has passed, when the held findings
//! still drifting open.

use super::cause::{timer_cause, Cause};
use super::finding::{push_evidence, NewFinding};
use super::timers::TimerKey;
use super::Engine;
use crate::detect::episode::Phase;
use crate::detect::rules::Rule;
use crate::model::event::{Key, System};
use crate::model::finding::{stable_id, Escalation, Finding, OwnerRole, Severity, Status, Subject};
use crate::model::id::Sym;
use crate::model::time::Ts;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet, VecDeque};

/// A finding of one rule that would open (its SLA expired), kept for the
/// storm window.
#[derive(Debug)]
pub(super) struct Opening {
    pub(super) at: Ts,
    pub(super) serial: u64,
    pub(super) key: Key,
    pub(super) cause: Cause,
    /// Still drifting: cleared findings do not count towards a storm.
    pub(super) alive: bool,
}

/// The mass-change guard of one rule.
#[derive(Debug, Default)]
pub(super) struct Storm {
    /// Findings that would have opened within the window, oldest first.
    pub(super) openings: VecDeque<Opening>,
    /// Live openings in the window per key; `len()` is the storm measure.
    pub(super) distinct: HashMap<Key, u32, ahash::RandomState>,
    pub(super) active: Option<Box<Finding>>,
    pub(super) escalated: bool,
    /// When the active storm opened.
    pub(super) opened_at: Ts,
    /// Serials of the active storm's findings published before it opened:
    /// those in the window when it did.
    pub(super) before: std::ops::Range<u64>,
    /// The active storm's findings still drifting: those published before
    /// it opened, and its burst.
    pub(super) drifting: usize,
    /// Findings of the active storm's burst still held.
    pub(super) held: usize,
    /// The keys those findings belong to.
    pub(super) held_keys: HashSet<Key, ahash::RandomState>,
    /// When one of its findings last cleared: the storm ends on
    /// remediation only after a quiet window, so a feed being corrected is
    /// not paged half-way.
    pub(super) last_clear: Ts,
}

impl Engine {
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
    pub(super) fn note_opening(
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
        NewFinding {
            finding_id: stable_id(&[b"SOURCE_STORM", rule.as_str().as_bytes(), &at.millis().to_le_bytes()]),
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
            evidence,
        }
        .finding(cfg, role, team, at)
    }

    pub(super) fn storm_escalate(&mut self, rule: Rule, now: Ts, out: &mut Vec<Finding>) {
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
    pub(super) fn storm_end(&mut self, rule: Rule, out: &mut Vec<Finding>) {
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
            self.thaw(&key);
            let store = self.store.clone();
            let Some(mut st) = store.map().get_mut(&key) else {
                continue;
            };
            self.touched(&key);
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
pub(super) fn forget_opening(storm: &mut Storm, serial: u64) {
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
