//! The source behind a finding: the system, scope and event that made its
//! condition true last, for SOURCE_STORM attribution and the evidence of
//! a resolution.

use crate::detect::rules::{Condition, Rule, SubjectRef};
use crate::detect::state::{EvRef, WorkerState};
use crate::model::event::System;
use crate::model::id::Sym;

/// The source behind a finding: for SOURCE_STORM attribution, and the
/// evidence of a resolution.
#[derive(Clone, Debug)]
pub(super) struct Cause {
    pub(super) system: System,
    pub(super) scope: Sym,
    pub(super) ev: Option<EvRef>,
}

/// The source behind a finding about to open, for SOURCE_STORM
/// attribution: of the events its condition rests on, the one that made it
/// true last (the HR status change, or the account, grant or attribute
/// event).
pub(super) fn opening_cause(st: &WorkerState, c: &Condition) -> Cause {
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

pub(super) fn timer_cause(st: &WorkerState) -> Cause {
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
