//! The lifecycle of a key's episodes: the conditions that hold now are
//! matched with the episodes already tracked (by rule and subject); an
//! episode whose condition no longer holds ends (RESOLVED, if it was
//! published), and one whose SLA has expired opens (or is held by a
//! storm), then escalates at its remediation deadline.

use super::cause::{opening_cause, Cause};
use super::finding::push_evidence;
use super::storm::forget_opening;
use super::timers::TimerKey;
use super::Engine;
use crate::detect::episode::{Episode, Phase};
use crate::detect::rules::{self, Condition, SubjectRef};
use crate::detect::state::{push_compact, WorkerState};
use crate::model::event::Key;
use crate::model::finding::{Escalation, Finding, Severity, Status};
use crate::model::time::Ts;
use std::cmp::Reverse;

impl Engine {
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
    pub(super) fn reconcile(
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
}
