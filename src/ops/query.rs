//! Read-only views of the state store for people: one worker's merged
//! state and the findings currently open. Used by the admin port's `/v1`
//! queries (reading the live stores without stopping the pipeline: DashMap
//! readers take one shard lock at a time) and by `driftwatch explain`.

use crate::detect::engine::Phase;
use crate::detect::state::{Attrs, Store, WorkerState};
use crate::model::event::Key;
use crate::model::finding::{Finding, Severity, Status};
use crate::model::rule::Rule;
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

/// Percent-encodes a path segment or a query value (RFC 3986 unreserved
/// characters stay as they are).
pub fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Which findings a query wants, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingFilter {
    /// OPEN or ESCALATED (the finding's current status).
    pub status: Option<Status>,
    pub rule: Option<Rule>,
    pub severity: Option<Severity>,
    pub worker_id: Option<String>,
    /// At most this many (1 to [`MAX_LIMIT`], default [`MAX_LIMIT`]).
    pub limit: usize,
    /// Only findings whose finding_id sorts after this one (paging).
    pub after: Option<String>,
}

impl FindingFilter {
    /// Every open or escalated finding, unpaged.
    pub fn all() -> FindingFilter {
        FindingFilter {
            status: None,
            rule: None,
            severity: None,
            worker_id: None,
            limit: usize::MAX,
            after: None,
        }
    }
}

/// The largest page of `/v1/findings`.
pub const MAX_LIMIT: usize = 1000;

/// A query parameter that is not understood: which, and what it may be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter `{parameter}`: {problem}")]
pub struct BadParameter {
    pub parameter: String,
    pub problem: String,
    /// The values it takes, where they are a list.
    pub allowed: Vec<String>,
}

fn one_of<T: Copy>(
    parameter: &str,
    value: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, BadParameter> {
    all.iter()
        .copied()
        .find(|v| name(*v).eq_ignore_ascii_case(value.trim()))
        .ok_or_else(|| BadParameter {
            parameter: parameter.into(),
            problem: format!(
                "`{value}` is not one of the allowed values (matched case-insensitively)"
            ),
            allowed: all.iter().map(|v| name(*v).to_string()).collect(),
        })
}

impl FindingFilter {
    /// The filter of a query string's parameters. Values of `status`,
    /// `rule` and `severity` are the contract's, matched without regard to
    /// case; an unknown parameter or value is an error that names it.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<FindingFilter, BadParameter> {
        let mut f = FindingFilter {
            status: None,
            rule: None,
            severity: None,
            worker_id: None,
            limit: MAX_LIMIT,
            after: None,
        };
        for (name, value) in params {
            match name {
                "status" => {
                    f.status = Some(one_of(
                        name,
                        value,
                        &[Status::Open, Status::Escalated],
                        Status::as_str,
                    )?)
                }
                "rule" => f.rule = Some(one_of(name, value, Rule::ALL, Rule::as_str)?),
                "severity" => {
                    f.severity = Some(one_of(name, value, Severity::ALL, Severity::as_str)?)
                }
                "worker_id" => f.worker_id = Some(value.to_string()),
                "after" => f.after = Some(value.to_string()),
                "limit" => {
                    f.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| BadParameter {
                            parameter: name.into(),
                            problem: format!(
                                "`{value}` is not a whole number from 1 to {MAX_LIMIT}"
                            ),
                            allowed: Vec::new(),
                        })?
                }
                other => {
                    return Err(BadParameter {
                        parameter: other.into(),
                        problem: "is not a parameter of /v1/findings".into(),
                        allowed: ["status", "rule", "severity", "worker_id", "limit", "after"]
                            .map(String::from)
                            .to_vec(),
                    })
                }
            }
        }
        Ok(f)
    }

    fn matches(&self, f: &Finding) -> bool {
        self.status.is_none_or(|s| f.status == s)
            && self.rule.is_none_or(|r| f.rule == r)
            && self.severity.is_none_or(|s| f.severity == s)
            && self
                .worker_id
                .as_deref()
                .is_none_or(|w| f.worker_id.as_deref() == Some(w))
            && self
                .after
                .as_deref()
                .is_none_or(|a| f.finding_id.as_str() > a)
    }
}

/// The findings open or escalated now in `stores` that match, in
/// finding_id order, at most `filter.limit`; the flag says whether more
/// matched (the next page starts after the last one returned).
pub fn open_findings<'a>(
    stores: impl IntoIterator<Item = &'a Store>,
    filter: &FindingFilter,
) -> (Vec<Finding>, bool) {
    let mut out = Vec::new();
    for store in stores {
        store.for_each_with_open_findings(|st| {
            out.extend(st.open_findings().filter(|f| filter.matches(f)).cloned());
        });
    }
    out.sort_by(|a, b| a.finding_id.cmp(&b.finding_id));
    // A key decoded during the walk is seen twice: its decoded state, the
    // later of the two (the sort is stable), is kept.
    out.reverse();
    out.dedup_by(|a, b| a.finding_id == b.finding_id);
    out.reverse();
    let more = out.len() > filter.limit;
    out.truncate(filter.limit);
    (out, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<FindingFilter, BadParameter> {
        FindingFilter::from_params(q.iter().copied())
    }

    #[test]
    fn filters_take_the_contract_values_in_any_case() {
        let f = parse(&[
            ("status", "open"),
            ("rule", "orphan_account"),
            ("severity", "High"),
        ])
        .unwrap();
        assert_eq!(f.status, Some(Status::Open));
        assert_eq!(f.rule, Some(Rule::OrphanAccount));
        assert_eq!(f.severity, Some(Severity::High));
        assert_eq!(f.limit, MAX_LIMIT);
    }

    #[test]
    fn bad_parameters_name_themselves_and_what_is_allowed() {
        let e = parse(&[("rule", "NOPE")]).unwrap_err();
        assert_eq!(e.parameter, "rule");
        assert!(e.allowed.iter().any(|a| a == "LEAVER_DIRECTORY_ACCESS"));
        let e = parse(&[("status", "RESOLVED")]).unwrap_err();
        assert_eq!(e.allowed, ["OPEN", "ESCALATED"]);
        let e = parse(&[("stauts", "OPEN")]).unwrap_err();
        assert_eq!(e.parameter, "stauts");
        assert!(e.allowed.contains(&"status".to_string()));
        for bad in ["0", "1001", "ten", "-1"] {
            assert_eq!(parse(&[("limit", bad)]).unwrap_err().parameter, "limit");
        }
        assert_eq!(parse(&[("limit", "1000")]).unwrap().limit, 1000);
    }
}
