//! Accounts that no worker HR knows answers for: a HUMAN account with no
//! worker, a SERVICE or SHARED_ADMIN account with no owner in office.

use super::{AccountAt, Cx, Out, Rule, SubjectRef};
use crate::detect::state::WorkerStatus;
use crate::model::event::AccountKind;

/// ORPHAN_ACCOUNT: an enabled HUMAN directory or app account with no
/// worker_id, or a worker_id HR has never sent (an app account holding
/// entitlements counts as enabled). Since the account was last enabled;
/// elevated when the account or one of its grants is privileged.
#[inline]
pub(super) fn orphan_account(cx: &Cx, AccountAt { i, a }: AccountAt, out: &mut Out) {
    if a.kind != AccountKind::Human {
        return;
    }
    if (!a.has_worker_id || cx.key.uncorrelated() || !cx.known) && a.holds_access() {
        out.push(
            Rule::OrphanAccount,
            SubjectRef::Account(i),
            a.enabled_since,
            a.privileged || a.has_privileged_grant(),
        );
    }
}

/// ORPHANED_NON_HUMAN_IDENTITY: an enabled SERVICE or SHARED_ADMIN account
/// whose owner is missing, unknown to HR, or TERMINATED (OWASP NHI1). Since
/// the account was last enabled, or for an owner HR knows who left, since
/// the later of that and the termination; elevated for SHARED_ADMIN.
#[inline]
pub(super) fn orphaned_non_human_identity(cx: &Cx, AccountAt { i, a }: AccountAt, out: &mut Out) {
    if !matches!(a.kind, AccountKind::Service | AccountKind::SharedAdmin) || !a.holds_access() {
        return;
    }
    let owner_gone = a.owner_worker_id.is_none() || cx.key.uncorrelated() || !cx.known;
    let owner_left = cx.status == Some(WorkerStatus::Terminated);
    if owner_gone || owner_left {
        let since = if owner_left && !owner_gone {
            cx.status_since.max(a.enabled_since)
        } else {
            a.enabled_since
        };
        out.push(
            Rule::OrphanedNonHumanIdentity,
            SubjectRef::Account(i),
            since,
            a.kind == AccountKind::SharedAdmin,
        );
    }
}
