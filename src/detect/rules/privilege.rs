//! Privileged grants: approved by whom, and kept across a move. Both rules
//! see each active privileged grant of an account that is not deleted.

use super::{Cx, GrantAt, Out, Rule, SubjectRef};
use crate::model::event::{AccountKind, System};

/// UNAPPROVED_PRIVILEGED_GRANT: a privileged entitlement or group added
/// with no approved_by, or (in an app) an approver who is not a configured
/// approver of that app. Since the grant.
#[inline]
pub(super) fn unapproved_privileged_grant(cx: &Cx, at: GrantAt, out: &mut Out) {
    let GrantAt { i, a, g, grant } = at;
    let approved = match (grant.approved_by(), a.system) {
        (None, _) => false,
        (Some(by), System::App) => cx.cfg.is_app_approver(&a.scope, by),
        (Some(_), _) => true,
    };
    if !approved {
        out.push(
            Rule::UnapprovedPrivilegedGrant,
            SubjectRef::Grant(i, g),
            grant.granted_at(),
            false,
        );
    }
}

/// MOVER_RETAINED_PRIVILEGE: after a TRANSFER, a privileged entitlement or
/// group granted before it is neither revoked nor recertified after it.
/// For an ACTIVE or ON_LEAVE worker's HUMAN accounts, against the latest
/// TRANSFER; since that transfer.
#[inline]
pub(super) fn mover_retained_privilege(cx: &Cx, at: GrantAt, out: &mut Out) {
    let GrantAt { i, a, g, grant } = at;
    let Some(moved) = cx.transfer else {
        return;
    };
    if grant.granted_at() < moved
        && grant.recertified_at().is_none_or(|r| r < moved)
        && a.kind == AccountKind::Human
    {
        out.push(
            Rule::MoverRetainedPrivilege,
            SubjectRef::Grant(i, g),
            moved,
            false,
        );
    }
}
