//! Read-only views of the state store for people: one worker's merged
//! state and the findings currently open. Used by the admin port's `/v1`
//! queries (reading the live stores without stopping the pipeline: DashMap
//! readers take one shard lock at a time) and by `driftwatch explain`.

use crate::engine::Phase;
use crate::event::Key;
use crate::finding::Finding;
use crate::state::{Attrs, Store, WorkerState};
use serde_json::{json, Value};

fn attrs(a: &Attrs) -> Value {
    json!({
        "email": a.email.as_deref(),
        "department": a.department.as_deref(),
        "title": a.title.as_deref(),
        "manager_id": a.manager_id.as_deref(),
    })
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "PENDING",
        Phase::Held => "HELD",
        Phase::Open => "OPEN",
        Phase::Escalated => "ESCALATED",
    }
}

/// One key's merged state: HR records, accounts with their grants, and the
/// drift episodes with their findings.
pub fn worker_view(key: &Key, st: &WorkerState) -> Value {
    let hr: Vec<Value> = st
        .hr
        .iter()
        .map(|r| {
            json!({
                "source_system": &*r.source_system,
                "status": r.status,
                "worker_type": r.worker_type.as_str(),
                "hired_at": r.hired_at.get().map(|t| t.to_string()),
                "transferred_at": r.transfer().map(|(t, _)| t.to_string()),
                "contract_end": r.contract_end.get().map(|t| t.to_string()),
                "attributes": attrs(&r.attrs),
                "scheduled_events": r.scheduled().len(),
            })
        })
        .collect();
    let accounts: Vec<Value> = st
        .accounts
        .iter()
        .map(|a| {
            json!({
                "system": a.system.as_str(),
                "scope": &*a.scope,
                "account_id": &*a.account_id,
                "kind": a.kind.as_str(),
                "owner_worker_id": a.owner_worker_id.as_deref(),
                "enabled": a.enabled,
                "deleted": a.deleted,
                "privileged": a.privileged,
                "attributes": attrs(a.attrs()),
                "grants": a.grants.iter().map(|g| json!({
                    "name": &*g.name,
                    "privileged": g.privileged,
                    "active": g.active,
                    "granted_at": g.active.then(|| g.granted_at().to_string()),
                    "revoked_at": (!g.active).then(|| g.ev.occurred_at.to_string()),
                    "approved_by": g.approved_by(),
                    "recertified_at": g.recertified_at().map(|t| t.to_string()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let episodes: Vec<Value> = st
        .episodes()
        .iter()
        .map(|e| {
            json!({
                "rule": e.rule.as_str(),
                "phase": phase(e.phase),
                "since": e.since.to_string(),
                "due": e.due.to_string(),
                "finding": e.finding.as_deref(),
            })
        })
        .collect();
    json!({
        "key": key.id(),
        "uncorrelated": key.uncorrelated(),
        "status": st.status(),
        "hr": hr,
        "accounts": accounts,
        "episodes": episodes,
    })
}

/// Which findings a query wants.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct FindingFilter {
    /// OPEN or ESCALATED (the finding's current status).
    pub status: Option<String>,
    pub rule: Option<String>,
    pub severity: Option<String>,
    pub worker_id: Option<String>,
    /// At most this many (default 1000).
    pub limit: Option<usize>,
}

impl FindingFilter {
    fn matches(&self, f: &Finding) -> bool {
        self.status
            .as_deref()
            .is_none_or(|s| f.status.as_str() == s)
            && self.rule.as_deref().is_none_or(|r| f.rule.as_str() == r)
            && self
                .severity
                .as_deref()
                .is_none_or(|s| f.severity.as_str() == s)
            && self
                .worker_id
                .as_deref()
                .is_none_or(|w| f.worker_id.as_deref() == Some(w))
    }
}

/// The findings open or escalated now in `store` that match, up to the
/// limit; the flag says whether more matched.
pub fn open_findings(store: &Store, filter: &FindingFilter, out: &mut Vec<Finding>) -> bool {
    let limit = filter.limit.unwrap_or(1000);
    for st in store.map().iter() {
        for ep in st.episodes() {
            if !matches!(ep.phase, Phase::Open | Phase::Escalated) {
                continue;
            }
            if let Some(f) = ep.finding.as_deref() {
                if filter.matches(f) {
                    if out.len() == limit {
                        return true;
                    }
                    out.push(f.clone());
                }
            }
        }
    }
    false
}
