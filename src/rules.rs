//! The thirteen drift rules (`BRIEF.md`, "Drift rules").
//!
//! [`evaluate`] looks at one key's merged state as of a moment of event time
//! and lists every drift condition that holds, with the moment each became
//! true (`since`). It does no I/O, keeps no state of its own and never reads
//! a clock: the engine compares its answer with the episodes it already
//! tracks. Ids, owners, default SLAs and severities are the contract's.

use crate::config::{Config, RuleConfig};
use crate::event::{AccountKind, HrEventType, Key, System, WorkerType};
use crate::finding::{OwnerRole, Severity};
use crate::state::{Account, WorkerState, WorkerStatus};
use crate::time::{Ts, MS_PER_DAY, MS_PER_HOUR};
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! rules {
    ($($variant:ident => $s:literal, $sla:expr, $sev:ident, $elev:ident;)+) => {
        /// A rule id of the contract.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum Rule { $($variant),+ }

        impl Rule {
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Rule::$variant => $s),+ }
            }

            pub fn parse(s: &str) -> Option<Rule> {
                match s { $($s => Some(Rule::$variant),)+ _ => None }
            }

            /// The contract's defaults: SLA, base and elevated severity.
            pub fn default_config(self) -> RuleConfig {
                match self {
                    $(Rule::$variant => RuleConfig {
                        enabled: true,
                        sla_ms: $sla,
                        severity: Severity::$sev,
                        elevated_severity: Severity::$elev,
                    }),+
                }
            }
        }
    };
}

rules! {
    LeaverDirectoryAccess => "LEAVER_DIRECTORY_ACCESS", MS_PER_HOUR, High, Critical;
    LeaverAppAccess => "LEAVER_APP_ACCESS", 24 * MS_PER_HOUR, High, Critical;
    JoinerNotProvisioned => "JOINER_NOT_PROVISIONED", 24 * MS_PER_HOUR, Medium, Medium;
    OrphanAccount => "ORPHAN_ACCOUNT", MS_PER_HOUR, Medium, High;
    AttributeMismatch => "ATTRIBUTE_MISMATCH", 4 * MS_PER_HOUR, Low, Low;
    MoverRetainedPrivilege => "MOVER_RETAINED_PRIVILEGE", 7 * MS_PER_DAY, Medium, Medium;
    UnreconciledTermination => "UNRECONCILED_TERMINATION", 24 * MS_PER_HOUR, Medium, Medium;
    AccessDuringLeave => "ACCESS_DURING_LEAVE", 72 * MS_PER_HOUR, Low, Low;
    OrphanedNonHumanIdentity => "ORPHANED_NON_HUMAN_IDENTITY", 72 * MS_PER_HOUR, High, Critical;
    UnapprovedPrivilegedGrant => "UNAPPROVED_PRIVILEGED_GRANT", 0, High, High;
    ContractExpiredAccess => "CONTRACT_EXPIRED_ACCESS", 4 * MS_PER_HOUR, High, High;
    ConflictingSourceRecords => "CONFLICTING_SOURCE_RECORDS", 24 * MS_PER_HOUR, Medium, Medium;
    SourceStorm => "SOURCE_STORM", 0, Critical, Critical;
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Rule {
    pub fn index(self) -> usize {
        self as usize
    }

    /// Framework controls a finding of this rule evidences.
    pub fn frameworks(self) -> &'static [&'static str] {
        const RR: &str = "NIST CSF 2.0 GV.RR-02";
        const OV: &str = "NIST CSF 2.0 GV.OV-01";
        const AA01: &str = "NIST CSF 2.0 PR.AA-01";
        const AA05: &str = "NIST CSF 2.0 PR.AA-05";
        const SP63: &str = "NIST SP 800-63";
        const NHI1: &str = "OWASP NHI1";
        match self {
            Rule::LeaverDirectoryAccess | Rule::LeaverAppAccess => &[RR, AA01, AA05],
            Rule::JoinerNotProvisioned => &[RR, AA01],
            Rule::OrphanAccount => &[RR, AA01, SP63],
            Rule::AttributeMismatch => &[RR, AA01, SP63],
            Rule::MoverRetainedPrivilege | Rule::UnapprovedPrivilegedGrant => &[RR, AA05],
            Rule::UnreconciledTermination | Rule::ConflictingSourceRecords => &[RR, OV, AA01],
            Rule::AccessDuringLeave | Rule::ContractExpiredAccess => &[RR, AA01, AA05],
            Rule::OrphanedNonHumanIdentity => &[RR, AA01, NHI1],
            Rule::SourceStorm => &[RR, OV],
        }
    }

    /// The contributing owner's role for a subject in `system`.
    pub fn contributing_role(self, system: System) -> OwnerRole {
        match self {
            Rule::UnreconciledTermination
            | Rule::ContractExpiredAccess
            | Rule::ConflictingSourceRecords => OwnerRole::Hr,
            Rule::LeaverAppAccess => OwnerRole::AppOwner,
            _ if system == System::App => OwnerRole::AppOwner,
            Rule::SourceStorm if system == System::Hr => OwnerRole::Hr,
            _ => OwnerRole::It,
        }
    }
}

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
