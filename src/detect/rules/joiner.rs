//! An ACTIVE worker with no enabled HUMAN directory account: a joiner not
//! yet provisioned, or accounts removed while HR still says ACTIVE
//! (`Cx::unprovisioned` holds what both look at).

use super::{Cx, Out, Rule, SubjectRef};
use crate::model::event::HrEventType;
use crate::model::time::Ts;

/// UNRECONCILED_TERMINATION: all of a worker's HUMAN directory accounts
/// disabled or deleted while HR still says ACTIVE (the emergency-removal
/// edge case): the last removal came after the worker became ACTIVE. Since
/// that removal.
pub(super) fn unreconciled_termination(cx: &Cx, out: &mut Out) {
    if let Some(Some(removed)) = cx.unprovisioned {
        if removed > cx.status_since {
            out.push(
                Rule::UnreconciledTermination,
                SubjectRef::Worker,
                removed,
                false,
            );
        }
    }
}

/// JOINER_NOT_PROVISIONED: worker ACTIVE after HIRE, REHIRE or LEAVE_END,
/// no enabled HUMAN directory account, and none removed since the worker
/// became ACTIVE (that is UNRECONCILED_TERMINATION). The clock starts when
/// the event makes the worker ACTIVE: after HIRE or REHIRE, the later of
/// the latest hire and the last removal; after LEAVE_END, the return, so a
/// worker back from leave whose account was disabled meanwhile needs it
/// again. TRANSFER, UPDATE and CONTRACT_EXTENSION never start it.
pub(super) fn joiner_not_provisioned(cx: &Cx, out: &mut Out) {
    let (Some(p), Some(last_removal)) = (cx.primary, cx.unprovisioned) else {
        return;
    };
    if last_removal.is_some_and(|removed| removed > cx.status_since) {
        return;
    }
    let since = match p.status_cause {
        Some(HrEventType::Hire | HrEventType::Rehire) => cx
            .st
            .hr
            .iter()
            .filter_map(|r| r.hired_at.get())
            .max()
            .map(|hired| hired.max(last_removal.unwrap_or(Ts::MIN))),
        Some(HrEventType::LeaveEnd) => Some(cx.status_since),
        _ => None,
    };
    if let Some(since) = since {
        out.push(Rule::JoinerNotProvisioned, SubjectRef::Worker, since, false);
    }
}
