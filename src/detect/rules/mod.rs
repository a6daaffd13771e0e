//! The thirteen drift rules (`BRIEF.md`, "Drift rules").
//!
//! [`evaluate`] looks at one key's merged state as of a moment of event time
//! and lists every drift condition that holds, with the moment each became
//! true (`since`). It does no I/O, keeps no state of its own and never reads
//! a clock: the engine compares its answer with the episodes it already
//! tracks. Ids, owners, default SLAs and severities are the contract's.
//! SOURCE_STORM is no condition of one key: the engine decides it.
//!
//! One function per rule, grouped by what the rules look at:
//! - `orphan`: accounts no worker HR knows answers for (ORPHAN_ACCOUNT,
//!   ORPHANED_NON_HUMAN_IDENTITY);
//! - `leaver`: access a worker who left, is on leave or whose contract has
//!   ended still holds (LEAVER_DIRECTORY_ACCESS, ACCESS_DURING_LEAVE,
//!   LEAVER_APP_ACCESS, CONTRACT_EXPIRED_ACCESS);
//! - `joiner`: an ACTIVE worker with no enabled HUMAN directory account
//!   (JOINER_NOT_PROVISIONED, UNRECONCILED_TERMINATION);
//! - `privilege`: privileged grants (UNAPPROVED_PRIVILEGED_GRANT,
//!   MOVER_RETAINED_PRIVILEGE);
//! - `records`: records that disagree (ATTRIBUTE_MISMATCH,
//!   CONFLICTING_SOURCE_RECORDS).
//!
//! Every rule function takes the evaluation's context (`Cx`: the
//! configuration, the key, its state, the moment and what several rules
//! derive from them, computed once), the subject it looks at when it has
//! one per account (`AccountAt`) or per grant (`GrantAt`), and the output
//! (`Out`, which drops the conditions of rules switched off). The calls
//! are direct, with no dynamic dispatch, and nothing is allocated but room
//! in the caller's vector.
//!
//! # Order
//!
//! The engine takes the conditions up in the order they come: a key's new
//! episodes join its list in that order, and the findings that open or
//! escalate together are counted towards a storm and published in it. The
//! order is part of the output, so [`evaluate`] fixes it (a unit test
//! holds it):
//! 1. each account, in state order: ORPHAN_ACCOUNT, LEAVER_DIRECTORY_ACCESS,
//!    ACCESS_DURING_LEAVE, ATTRIBUTE_MISMATCH, ORPHANED_NON_HUMAN_IDENTITY;
//! 2. each active privileged grant of an account not deleted, accounts and
//!    grants in state order: UNAPPROVED_PRIVILEGED_GRANT,
//!    MOVER_RETAINED_PRIVILEGE;
//! 3. LEAVER_APP_ACCESS, each app at its first account holding access;
//! 4. the worker: UNRECONCILED_TERMINATION, JOINER_NOT_PROVISIONED,
//!    CONTRACT_EXPIRED_ACCESS, CONFLICTING_SOURCE_RECORDS.

mod joiner;
mod leaver;
mod orphan;
mod privilege;
mod records;
#[cfg(test)]
mod tests;

use crate::config::Config;
use crate::detect::state::{Account, Grant, HrRecord, WorkerState, WorkerStatus};
use crate::model::event::{AccountKind, Key, System};
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

/// Lists the conditions that hold for `key` as of `now` into `out`, in the
/// order the module documentation gives.
pub fn evaluate(cfg: &Config, key: &Key, st: &WorkerState, now: Ts, out: &mut Vec<Condition>) {
    out.clear();
    let out = &mut Out { cfg, conds: out };
    let cx = &Cx::new(cfg, key, st, now);

    for (i, a) in st.accounts.iter().enumerate() {
        let at = AccountAt { i, a };
        orphan::orphan_account(cx, at, out);
        leaver::leaver_directory_access(cx, at, out);
        leaver::access_during_leave(cx, at, out);
        records::attribute_mismatch(cx, at, out);
        orphan::orphaned_non_human_identity(cx, at, out);
    }

    for (i, a) in st.accounts.iter().enumerate() {
        if a.deleted || !a.has_privileged_grant() {
            continue;
        }
        for (g, grant) in a.grants.iter().enumerate() {
            if !grant.active || !grant.privileged {
                continue;
            }
            let at = GrantAt { i, a, g, grant };
            privilege::unapproved_privileged_grant(cx, at, out);
            privilege::mover_retained_privilege(cx, at, out);
        }
    }

    leaver::leaver_app_access(cx, out);

    joiner::unreconciled_termination(cx, out);
    joiner::joiner_not_provisioned(cx, out);
    leaver::contract_expired_access(cx, out);
    records::conflicting_source_records(cx, out);
}

/// What the rules read, computed once per evaluation.
struct Cx<'a> {
    cfg: &'a Config,
    key: &'a Key,
    st: &'a WorkerState,
    now: Ts,
    /// The HR record that decides the worker's status, if any has one.
    primary: Option<&'a HrRecord>,
    status: Option<WorkerStatus>,
    /// Effective time of the primary record's latest status change
    /// (`Ts::MIN` with no primary record).
    status_since: Ts,
    /// HR has sent an event for this key, and the key is a worker id.
    known: bool,
    /// For an ACTIVE or ON_LEAVE worker, the effective time of the latest
    /// TRANSFER any source has sent.
    transfer: Option<Ts>,
    /// For an ACTIVE worker none of whose HUMAN directory accounts is
    /// enabled: `Some`, with the latest moment one of them was disabled or
    /// deleted (`None` if never).
    unprovisioned: Option<Option<Ts>>,
}

impl<'a> Cx<'a> {
    fn new(cfg: &'a Config, key: &'a Key, st: &'a WorkerState, now: Ts) -> Cx<'a> {
        let primary = st.primary();
        let status = primary.map(|p| p.status);
        let transfer = primary
            .filter(|p| matches!(p.status, WorkerStatus::Active | WorkerStatus::OnLeave))
            .and_then(|_| {
                st.hr
                    .iter()
                    .filter_map(|r| r.transfer().map(|(t, _)| *t))
                    .max()
            });
        let unprovisioned = (status == Some(WorkerStatus::Active))
            .then(|| {
                let human_dir = || {
                    st.accounts
                        .iter()
                        .filter(|a| a.system == System::Directory && a.kind == AccountKind::Human)
                };
                (!human_dir().any(|a| a.enabled))
                    .then(|| human_dir().filter_map(|a| a.removed_at.get()).max())
            })
            .flatten();
        Cx {
            cfg,
            key,
            st,
            now,
            primary,
            status,
            status_since: primary.map_or(Ts::MIN, |p| p.status_stamp().0),
            known: st.known_to_hr() && !key.uncorrelated(),
            transfer,
            unprovisioned,
        }
    }
}

/// One account of the key, with its position in the state.
#[derive(Clone, Copy)]
struct AccountAt<'a> {
    i: usize,
    a: &'a Account,
}

impl AccountAt<'_> {
    /// An enabled HUMAN directory account: what the directory rules of a
    /// worker's status look at.
    #[inline]
    fn enabled_human_directory(self) -> bool {
        self.a.kind == AccountKind::Human && self.a.system == System::Directory && self.a.enabled
    }
}

/// One active privileged grant of an account that is not deleted, with
/// their positions in the state.
#[derive(Clone, Copy)]
struct GrantAt<'a> {
    i: usize,
    a: &'a Account,
    g: usize,
    grant: &'a Grant,
}

/// Where the rules put the conditions that hold; those of a rule switched
/// off in the configuration are dropped.
struct Out<'a> {
    cfg: &'a Config,
    conds: &'a mut Vec<Condition>,
}

impl Out<'_> {
    #[inline]
    fn push(&mut self, rule: Rule, subject: SubjectRef, since: Ts, elevated: bool) {
        if self.cfg.rule(rule).enabled {
            self.conds.push(Condition {
                rule,
                subject,
                since,
                elevated,
            });
        }
    }
}

/// When a HUMAN directory account's attributes started to differ from HR's,
/// if they differ on department, title or manager_id (both sides non-null).
fn mismatch_since(st: &WorkerState, a: &Account) -> Option<Ts> {
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
