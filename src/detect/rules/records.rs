//! Records that disagree: a directory account with HR on attributes, HR
//! source systems with each other on status.

use super::{mismatch_since, AccountAt, Cx, Out, Rule, SubjectRef};
use crate::detect::state::WorkerStatus;

/// ATTRIBUTE_MISMATCH: worker ACTIVE, an enabled HUMAN directory account's
/// department, title or manager_id differs from HR's (both non-null), HR's
/// being the newest attributes across sources. Since the later of the
/// account's attributes (or enabling) and HR's.
#[inline]
pub(super) fn attribute_mismatch(cx: &Cx, at: AccountAt, out: &mut Out) {
    if cx.status != Some(WorkerStatus::Active) || !at.enabled_human_directory() {
        return;
    }
    if let (Some(since), Some(hr)) = (mismatch_since(cx.st, at.a), cx.st.hr_attrs()) {
        out.push(
            Rule::AttributeMismatch,
            SubjectRef::Account(at.i),
            since.max(hr.attrs_stamp().0),
            false,
        );
    }
}

/// CONFLICTING_SOURCE_RECORDS: two source systems disagree on a worker's
/// status, one TERMINATED and one ACTIVE. Since the later of the two
/// sources' latest status changes.
pub(super) fn conflicting_source_records(cx: &Cx, out: &mut Out) {
    if cx.primary.is_none() {
        return;
    }
    let latest = |status: WorkerStatus| {
        cx.st
            .hr
            .iter()
            .filter(|r| r.status == status)
            .map(|r| r.status_stamp().0)
            .max()
    };
    if let (Some(t), Some(a)) = (
        latest(WorkerStatus::Terminated),
        latest(WorkerStatus::Active),
    ) {
        out.push(
            Rule::ConflictingSourceRecords,
            SubjectRef::Worker,
            t.max(a),
            false,
        );
    }
}
