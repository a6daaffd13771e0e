//! The thirteen drift rules (`BRIEF.md`, "Drift rules").
//!
//! [`evaluate`] looks at one key's merged state as of a moment of event time
//! and lists every drift condition that holds, with the moment each became
//! true (`since`). It does no I/O, keeps no state of its own and never reads
//! a clock: the engine compares its answer with the episodes it already
//! tracks. Ids, owners, default SLAs and severities are the contract's.

use crate::config::Config;
use crate::detect::state::{Account, WorkerState, WorkerStatus};
use crate::model::event::{AccountKind, HrEventType, Key, System, WorkerType};
pub use crate::model::rule::Rule;
use crate::model::time::Ts;

/// What a condition is about, as positions in the key's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectRef {
    /// The worker as a whole (HR-side rules).
    Worker,
    /// One account.
    Account(usize),
    /// One grant on one account.
    Grant(usize, usize),
    /// Every account of one app (the account index is the first one seen).
    App(usize),
}

/// One drift condition that holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    pub rule: Rule,
    pub subject: SubjectRef,
    /// Event time the condition became true.
    pub since: Ts,
    pub elevated: bool,
}

/// Lists the conditions that hold for `key` as of `now` into `out`.
pub fn evaluate(cfg: &Config, key: &Key, st: &WorkerState, now: Ts, out: &mut Vec<Condition>) {
    out.clear();
    let on = |r: Rule| cfg.rule(r).enabled;
    let mut push = |rule: Rule, subject: SubjectRef, since: Ts, elevated: bool| {
        if on(rule) {
            out.push(Condition {
                rule,
                subject,
                since,
                elevated,
            });
        }
    };
    let primary = st.primary();
    let status = primary.map(|p| p.status);
    let status_since = primary.map_or(Ts::MIN, |p| p.status_stamp().0);
    let known = st.known_to_hr() && !key.uncorrelated();

    // Per account.
    for (i, a) in st.accounts.iter().enumerate() {
        let live = a.holds_access();
        match a.kind {
            AccountKind::Human => {
                if live && (!a.has_worker_id || key.uncorrelated() || !known) {
                    push(
                        Rule::OrphanAccount,
                        SubjectRef::Account(i),
                        a.enabled_since,
                        a.privileged || a.has_privileged_grant(),
                    );
                }
                if a.system != System::Directory || !a.enabled {
                    continue;
                }
                match status {
                    Some(WorkerStatus::Terminated) => push(
                        Rule::LeaverDirectoryAccess,
                        SubjectRef::Account(i),
                        status_since.max(a.enabled_since),
                        a.privileged || a.has_privileged_grant(),
                    ),
                    Some(WorkerStatus::OnLeave) => push(
                        Rule::AccessDuringLeave,
                        SubjectRef::Account(i),
                        status_since.max(a.enabled_since),
                        false,
                    ),
                    Some(WorkerStatus::Active) => {
                        if let (Some(since), Some(hr)) = (attribute_mismatch(st, a), st.hr_attrs())
                        {
                            push(
                                Rule::AttributeMismatch,
                                SubjectRef::Account(i),
                                since.max(hr.attrs_stamp().0),
                                false,
                            );
                        }
                    }
                    _ => {}
                }
            }
            AccountKind::Service | AccountKind::SharedAdmin => {
                if !live {
                    continue;
                }
                let owner_gone = a.owner_worker_id.is_none() || key.uncorrelated() || !known;
                let owner_left = status == Some(WorkerStatus::Terminated);
                if owner_gone || owner_left {
                    let since = if owner_left && !owner_gone {
                        status_since.max(a.enabled_since)
                    } else {
                        a.enabled_since
                    };
                    push(
                        Rule::OrphanedNonHumanIdentity,
                        SubjectRef::Account(i),
                        since,
                        a.kind == AccountKind::SharedAdmin,
                    );
                }
            }
        }
    }

    // Per grant: unapproved privileged grants and retained privileges of movers.
    let transfer = primary
        .filter(|p| matches!(p.status, WorkerStatus::Active | WorkerStatus::OnLeave))
        .and_then(|_| {
            st.hr
                .iter()
                .filter_map(|r| r.transfer().map(|(t, _)| *t))
                .max()
        });
    for (i, a) in st.accounts.iter().enumerate() {
        if a.deleted || !a.has_privileged_grant() {
            continue;
        }
        for (g, grant) in a.grants.iter().enumerate() {
            if !grant.active || !grant.privileged {
                continue;
            }
            let approved = match (grant.approved_by(), a.system) {
                (None, _) => false,
                (Some(by), System::App) => cfg.is_app_approver(&a.scope, by),
                (Some(_), _) => true,
            };
            if !approved {
                push(
                    Rule::UnapprovedPrivilegedGrant,
                    SubjectRef::Grant(i, g),
                    grant.granted_at(),
                    false,
                );
            }
            if let Some(moved) = transfer {
                if grant.granted_at() < moved
                    && grant.recertified_at().is_none_or(|r| r < moved)
                    && a.kind == AccountKind::Human
                {
                    push(
                        Rule::MoverRetainedPrivilege,
                        SubjectRef::Grant(i, g),
                        moved,
                        false,
                    );
                }
            }
        }
    }

    // Per app: a leaver who still holds access there.
    if status == Some(WorkerStatus::Terminated) {
        for (i, a) in st.accounts.iter().enumerate() {
            if a.system != System::App || a.kind != AccountKind::Human || !a.holds_access() {
                continue;
            }
            if st.accounts[..i].iter().any(|b| {
                b.system == System::App
                    && b.kind == AccountKind::Human
                    && b.scope == a.scope
                    && b.holds_access()
            }) {
                continue; // the app was listed at its first account
            }
            let same_app = || {
                st.accounts.iter().filter(|b| {
                    b.system == System::App
                        && b.kind == AccountKind::Human
                        && b.scope == a.scope
                        && b.holds_access()
                })
            };
            let access_since = same_app()
                .map(|b| {
                    let first_grant = b.active_grants().map(|g| g.granted_at()).min();
                    if b.enabled {
                        b.enabled_since
                    } else {
                        first_grant.unwrap_or(b.enabled_since)
                    }
                })
                .min()
                .unwrap_or(status_since);
            let privileged = same_app().any(|b| b.privileged || b.has_privileged_grant());
            push(
                Rule::LeaverAppAccess,
                SubjectRef::App(i),
                status_since.max(access_since),
                privileged,
            );
        }
    }

    // Per worker.
    if let Some(p) = primary {
        let human_dir = || {
            st.accounts
                .iter()
                .filter(|a| a.system == System::Directory && a.kind == AccountKind::Human)
        };
        let any_enabled = human_dir().any(|a| a.enabled);
        if p.status == WorkerStatus::Active && !any_enabled {
            let last_removal = human_dir().filter_map(|a| a.removed_at.get()).max();
            match last_removal {
                Some(removed) if removed > status_since => {
                    push(
                        Rule::UnreconciledTermination,
                        SubjectRef::Worker,
                        removed,
                        false,
                    );
                }
                _ => {
                    // The joiner clock starts when HIRE, REHIRE or LEAVE_END
                    // makes the worker ACTIVE: a worker back from leave whose
                    // account was disabled meanwhile needs it again.
                    let since = match p.status_cause {
                        Some(HrEventType::Hire | HrEventType::Rehire) => st
                            .hr
                            .iter()
                            .filter_map(|r| r.hired_at.get())
                            .max()
                            .map(|hired| hired.max(last_removal.unwrap_or(Ts::MIN))),
                        Some(HrEventType::LeaveEnd) => Some(status_since),
                        _ => None,
                    };
                    if let Some(since) = since {
                        push(Rule::JoinerNotProvisioned, SubjectRef::Worker, since, false);
                    }
                }
            }
        }
        if p.status == WorkerStatus::Active {
            let attrs = st.hr_attrs().unwrap_or(p);
            if attrs.worker_type != WorkerType::Employee {
                if let Some(end) = attrs.contract_end.get().filter(|end| *end <= now) {
                    let first_enabled = st
                        .accounts
                        .iter()
                        .filter(|a| a.kind == AccountKind::Human && a.holds_access())
                        .map(|a| a.enabled_since)
                        .min();
                    if let Some(first) = first_enabled {
                        push(
                            Rule::ContractExpiredAccess,
                            SubjectRef::Worker,
                            end.max(first),
                            false,
                        );
                    }
                }
            }
        }
        let terminated = st
            .hr
            .iter()
            .filter(|r| r.status == WorkerStatus::Terminated)
            .map(|r| r.status_stamp().0)
            .max();
        let active = st
            .hr
            .iter()
            .filter(|r| r.status == WorkerStatus::Active)
            .map(|r| r.status_stamp().0)
            .max();
        if let (Some(t), Some(a)) = (terminated, active) {
            push(
                Rule::ConflictingSourceRecords,
                SubjectRef::Worker,
                t.max(a),
                false,
            );
        }
    }
}

/// When a HUMAN directory account's attributes started to differ from HR's,
/// if they differ on department, title or manager_id (both sides non-null).
fn attribute_mismatch(st: &WorkerState, a: &Account) -> Option<Ts> {
    let hr = st.hr_attrs()?;
    let (x, y) = (&hr.attrs, a.attrs());
    let mismatch = differs(&x.department, &y.department)
        || differs(&x.title, &y.title)
        || differs(&x.manager_id, &y.manager_id);
    mismatch.then_some(a.attrs_at().max(a.enabled_since))
}

/// Both sides state a value and the values differ (interned symbols
/// compare by pointer first).
fn differs<T: PartialEq>(x: &Option<T>, y: &Option<T>) -> bool {
    matches!((x, y), (Some(x), Some(y)) if x != y)
}

/// Which attributes differ, for the summary.
pub fn mismatched_fields(st: &WorkerState, a: &Account) -> Vec<&'static str> {
    let Some(hr) = st.hr_attrs() else {
        return Vec::new();
    };
    let (x, y) = (&hr.attrs, a.attrs());
    [
        ("department", differs(&x.department, &y.department)),
        ("title", differs(&x.title, &y.title)),
        ("manager_id", differs(&x.manager_id, &y.manager_id)),
    ]
    .into_iter()
    .filter_map(|(name, d)| d.then_some(name))
    .collect()
}

/// The earliest future moment at which a rule's answer could change with no
/// new event: a contract end ahead of `now`.
pub fn next_time_change(st: &WorkerState, now: Ts) -> Option<Ts> {
    st.hr
        .iter()
        .filter_map(|r| r.contract_end.get())
        .filter(|t| *t > now)
        .min()
}
