//! Access a worker should no longer hold: after a termination, during a
//! leave, past the end of a contract.

use super::{AccountAt, Cx, Out, Rule, SubjectRef};
use crate::detect::state::WorkerStatus;
use crate::model::event::{AccountKind, System, WorkerType};

/// LEAVER_DIRECTORY_ACCESS: worker TERMINATED, a HUMAN directory account
/// still enabled. Since the later of the termination and the account's last
/// enabling; elevated when the account or one of its groups is privileged.
#[inline]
pub(super) fn leaver_directory_access(cx: &Cx, at: AccountAt, out: &mut Out) {
    if cx.status == Some(WorkerStatus::Terminated) && at.enabled_human_directory() {
        let a = at.a;
        out.push(
            Rule::LeaverDirectoryAccess,
            SubjectRef::Account(at.i),
            cx.status_since.max(a.enabled_since),
            a.privileged || a.has_privileged_grant(),
        );
    }
}

/// ACCESS_DURING_LEAVE: worker ON_LEAVE, a HUMAN directory account
/// enabled. Since the later of the leave's start and the account's last
/// enabling.
#[inline]
pub(super) fn access_during_leave(cx: &Cx, at: AccountAt, out: &mut Out) {
    if cx.status == Some(WorkerStatus::OnLeave) && at.enabled_human_directory() {
        out.push(
            Rule::AccessDuringLeave,
            SubjectRef::Account(at.i),
            cx.status_since.max(at.a.enabled_since),
            false,
        );
    }
}

/// LEAVER_APP_ACCESS: worker TERMINATED, still holds entitlements or an
/// enabled account in an app; one finding per app, at the app's first
/// HUMAN account holding access. Since the later of the termination and
/// the earliest access among the app's accounts (an enabled account's last
/// enabling, else its first active grant); elevated when any of them, or
/// any of their grants, is privileged.
pub(super) fn leaver_app_access(cx: &Cx, out: &mut Out) {
    if cx.status != Some(WorkerStatus::Terminated) {
        return;
    }
    let st = cx.st;
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
            .unwrap_or(cx.status_since);
        let privileged = same_app().any(|b| b.privileged || b.has_privileged_grant());
        out.push(
            Rule::LeaverAppAccess,
            SubjectRef::App(i),
            cx.status_since.max(access_since),
            privileged,
        );
    }
}

/// CONTRACT_EXPIRED_ACCESS: a non-EMPLOYEE past contract_end, HR still
/// ACTIVE, any enabled account. The worker type and contract end are those
/// of the newest HR attributes (else the status record's); any HUMAN
/// account holding access counts. Since the later of the contract end and
/// the earliest enabling among those accounts.
pub(super) fn contract_expired_access(cx: &Cx, out: &mut Out) {
    let Some(p) = cx.primary else {
        return;
    };
    if p.status != WorkerStatus::Active {
        return;
    }
    let attrs = cx.st.hr_attrs().unwrap_or(p);
    if attrs.worker_type == WorkerType::Employee {
        return;
    }
    let Some(end) = attrs.contract_end.get().filter(|end| *end <= cx.now) else {
        return;
    };
    let first_enabled = cx
        .st
        .accounts
        .iter()
        .filter(|a| a.kind == AccountKind::Human && a.holds_access())
        .map(|a| a.enabled_since)
        .min();
    if let Some(first) = first_enabled {
        out.push(
            Rule::ContractExpiredAccess,
            SubjectRef::Worker,
            end.max(first),
            false,
        );
    }
}
