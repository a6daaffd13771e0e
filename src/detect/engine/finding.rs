//! Building a finding as it opens: severity, accountable and contributing
//! owners, remediation deadline and escalation target, its stable id, and
//! the subject, evidence and one-sentence summary of its condition.

use super::Engine;
use crate::detect::rules::{self, Condition, Rule, SubjectRef};
use crate::detect::state::WorkerState;
use crate::model::event::{Key, System};
use crate::model::finding::{
    stable_id, AccountableOwner, ContributingOwner, Detector, Escalation, Evidence, Finding,
    OwnerRole, Status, Subject,
};
use crate::model::time::Ts;
use std::borrow::Cow;
use std::sync::Arc;

/// The most evidence entries a finding carries.
const MAX_EVIDENCE: usize = 32;

impl Engine {
    pub(super) fn open_finding(
        &self,
        key: &Key,
        st: &WorkerState,
        c: &Condition,
        began: Ts,
        at: Ts,
    ) -> Finding {
        let cfg = &self.cfg;
        let rc = cfg.rule(c.rule);
        let severity = if c.elevated {
            rc.elevated_severity
        } else {
            rc.severity
        };
        let (subject, evidence, summary) = describe(key, st, c);
        let summary = capitalize(summary);
        let role = c.rule.contributing_role(subject.system);
        let team = match role {
            OwnerRole::Hr => &cfg.hr,
            OwnerRole::AppOwner => cfg.app_owner(subject.app_id.as_deref().unwrap_or_default()),
            _ => &cfg.it,
        };
        let new = NewFinding {
            finding_id: finding_id(c.rule, key, &subject, c.since, began),
            rule: c.rule,
            severity,
            worker_id: key.worker_id().map(Into::into),
            subject,
            summary,
            evidence,
        };
        new.finding(cfg, role, team, at)
    }
}

/// What tells one new finding from another; [`NewFinding::finding`] adds what
/// follows from its rule, owner and severity.
pub(super) struct NewFinding {
    pub(super) finding_id: String,
    pub(super) rule: Rule,
    pub(super) severity: crate::model::finding::Severity,
    pub(super) worker_id: Option<Arc<str>>,
    pub(super) subject: Subject,
    pub(super) summary: String,
    pub(super) evidence: Vec<Evidence>,
}

impl NewFinding {
    /// The finding as it opens at `at`: the identity governance process
    /// owner accountable, `team` contributing as `role` and first to be
    /// escalated to, the remediation deadline of its severity, the rule's
    /// frameworks.
    pub(super) fn finding(
        self,
        cfg: &crate::config::Config,
        role: OwnerRole,
        team: &crate::config::Team,
        at: Ts,
    ) -> Finding {
        Finding {
            finding_id: self.finding_id,
            status: Status::Open,
            rule: self.rule,
            severity: self.severity,
            worker_id: self.worker_id,
            subject: self.subject,
            summary: self.summary,
            accountable_owner: AccountableOwner {
                role: OwnerRole::IdentityGovernanceProcessOwner,
                team: cfg.governance_team.clone(),
            },
            contributing_owner: ContributingOwner {
                role,
                team: team.team.clone(),
                contact: team.contact.clone(),
            },
            detected_at: at,
            remediation_deadline: at.plus(cfg.remediation_ms(self.severity)),
            escalation: Escalation {
                target: team.team.clone(),
                level: 1,
            },
            evidence: self.evidence,
            frameworks: self
                .rule
                .frameworks()
                .iter()
                .map(|s| Cow::Borrowed(*s))
                .collect(),
            detector: Detector {
                version: cfg.version.clone(),
                instance: cfg.instance.clone(),
            },
            transitioned_at: at,
        }
    }
}

pub(super) fn push_evidence(list: &mut Vec<Evidence>, e: Evidence) {
    if list.len() >= MAX_EVIDENCE {
        return;
    }
    if !list.iter().any(|x| {
        x.topic == e.topic
            && x.partition == e.partition
            && x.offset == e.offset
            && x.event_id == e.event_id
    }) {
        list.push(e);
    }
}

/// One episode of one rule on one subject: the condition's `since` and the
/// stream time the episode began tell apart two episodes of one subject.
fn finding_id(rule: Rule, key: &Key, s: &Subject, since: Ts, began: Ts) -> String {
    let opt = |o: &Option<Arc<str>>| o.as_deref().unwrap_or("").as_bytes().to_vec();
    stable_id(&[
        rule.as_str().as_bytes(),
        &[u8::from(key.uncorrelated())],
        key.id().as_bytes(),
        s.system.as_str().as_bytes(),
        &opt(&s.directory),
        &opt(&s.app_id),
        &opt(&s.account_id),
        &opt(&s.entitlement),
        &since.millis().to_le_bytes(),
        &began.millis().to_le_bytes(),
    ])
}

/// The subject, evidence and one-sentence summary of a condition.
fn describe(key: &Key, st: &WorkerState, c: &Condition) -> (Subject, Vec<Evidence>, String) {
    let mut ev = Vec::new();
    let who = key
        .worker_id()
        .map_or_else(|| "(uncorrelated)".to_string(), |w| format!("`{w}`"));
    let primary = st.primary();
    let status_ev = |ev: &mut Vec<Evidence>| {
        if let Some(e) = primary.and_then(|p| p.status_ev.as_ref()) {
            push_evidence(ev, e.to_evidence());
        }
    };
    let since = c.since;
    match c.subject {
        SubjectRef::Worker => {
            for r in &st.hr {
                if let Some(e) = &r.status_ev {
                    push_evidence(&mut ev, e.to_evidence());
                }
            }
            if matches!(
                c.rule,
                Rule::UnreconciledTermination
                    | Rule::ContractExpiredAccess
                    | Rule::JoinerNotProvisioned
            ) {
                for a in &st.accounts {
                    push_evidence(&mut ev, a.state_ev.to_evidence());
                }
            }
            let summary = match c.rule {
                Rule::JoinerNotProvisioned
                    if primary.and_then(|p| p.status_cause)
                        == Some(crate::model::event::HrEventType::LeaveEnd) =>
                {
                    format!(
                        "Worker {who} returned from leave on {since} but has no enabled directory account."
                    )
                }
                Rule::JoinerNotProvisioned => format!(
                    "Worker {who} has been active in HR since {since} but has no enabled directory account."
                ),
                Rule::UnreconciledTermination => format!(
                    "Every directory account of worker {who} was disabled or deleted by {since}, but HR still records the worker as active."
                ),
                Rule::ContractExpiredAccess => {
                    let end = st.hr_attrs().and_then(|r| r.contract_end.get()).map_or("?".into(), |t| t.to_string());
                    let wt = st.hr_attrs().map_or("non-employee", |r| r.worker_type.as_str());
                    format!(
                        "Worker {who} ({wt}) passed contract end {end} but HR still records them active and they hold enabled accounts."
                    )
                }
                _ => {
                    let say = |s| {
                        st.hr
                            .iter()
                            .filter(|r| r.status == s)
                            .map(|r| format!("`{}`", r.source_system))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    format!(
                        "HR sources disagree on worker {who}: {} say TERMINATED while {} say ACTIVE.",
                        say(crate::detect::state::WorkerStatus::Terminated),
                        say(crate::detect::state::WorkerStatus::Active)
                    )
                }
            };
            (Subject::hr(), ev, summary)
        }
        SubjectRef::Account(i) => {
            let a = &st.accounts[i];
            let subject = account_subject(a, None);
            let place = format!(
                "{} account `{}` in `{}`",
                a.system.as_str(),
                a.account_id,
                a.scope
            );
            match c.rule {
                Rule::LeaverDirectoryAccess | Rule::AccessDuringLeave => status_ev(&mut ev),
                Rule::AttributeMismatch => {
                    if let Some(e) = st.hr_attrs().and_then(|r| r.attrs_ev()) {
                        push_evidence(&mut ev, e.to_evidence());
                    }
                }
                Rule::OrphanedNonHumanIdentity if key.worker_id().is_some() => status_ev(&mut ev),
                _ => {}
            }
            push_evidence(&mut ev, a.state_ev.to_evidence());
            if let Some(e) = a.attrs_ev() {
                if c.rule == Rule::AttributeMismatch {
                    push_evidence(&mut ev, e.to_evidence());
                }
            }
            if c.elevated {
                for g in a.active_grants().filter(|g| g.privileged) {
                    push_evidence(&mut ev, g.ev.to_evidence());
                }
            }
            let summary = match c.rule {
                Rule::LeaverDirectoryAccess => format!(
                    "Worker {who} is terminated in HR but {place} is still enabled{}.",
                    if c.elevated {
                        " and holds privileged access"
                    } else {
                        ""
                    }
                ),
                Rule::AccessDuringLeave => {
                    format!("Worker {who} is on leave but {place} is enabled.")
                }
                Rule::AttributeMismatch => format!(
                    "{place} disagrees with HR on {} for worker {who}.",
                    rules::mismatched_fields(st, a).join(", ")
                ),
                Rule::OrphanAccount => {
                    if a.has_worker_id && !key.uncorrelated() {
                        format!(
                            "Enabled {place} belongs to worker_id {who}, which HR has never sent."
                        )
                    } else {
                        format!("Enabled {place} has no worker_id and matches no worker.")
                    }
                }
                _ => {
                    let owner = a.owner_worker_id.as_deref();
                    let why = match (owner, key.uncorrelated(), st.known_to_hr()) {
                        (None, _, _) | (_, true, _) => "has no owner".to_string(),
                        (Some(o), _, false) => format!("is owned by `{o}`, whom HR has never sent"),
                        (Some(o), _, true) => format!("is owned by `{o}`, who is terminated"),
                    };
                    format!("Enabled {} {place} {why}.", a.kind.as_str())
                }
            };
            (subject, ev, summary)
        }
        SubjectRef::Grant(i, g) => {
            let a = &st.accounts[i];
            let grant = &a.grants[g];
            let kind = if a.system == System::App {
                "entitlement"
            } else {
                "group"
            };
            let subject = account_subject(a, Some(grant.name.to_arc()));
            push_evidence(&mut ev, grant.ev.to_evidence());
            push_evidence(&mut ev, a.state_ev.to_evidence());
            let summary = if c.rule == Rule::MoverRetainedPrivilege {
                if let Some((_, tev)) = st
                    .hr
                    .iter()
                    .filter_map(|r| r.transfer())
                    .max_by_key(|t| t.0)
                {
                    push_evidence(&mut ev, tev.to_evidence());
                }
                format!(
                    "Worker {who} transferred on {since} but still holds privileged {kind} `{}` on {} account `{}` in `{}`, granted before the transfer and not recertified since.",
                    grant.name, a.system.as_str(), a.account_id, a.scope
                )
            } else {
                let why = match grant.approved_by() {
                    None => "with no approval".to_string(),
                    Some(by) => format!(
                        "approved by `{by}`, who is not a configured approver of `{}`",
                        a.scope
                    ),
                };
                format!(
                    "Privileged {kind} `{}` was granted to {} account `{}` in `{}` {why}.",
                    grant.name,
                    a.system.as_str(),
                    a.account_id,
                    a.scope
                )
            };
            (subject, ev, summary)
        }
        SubjectRef::App(i) => {
            let app = st.accounts[i].scope.clone();
            status_ev(&mut ev);
            let mut n = 0;
            for a in st
                .accounts
                .iter()
                .filter(|a| a.system == System::App && a.scope == app && a.holds_access())
            {
                push_evidence(&mut ev, a.state_ev.to_evidence());
                for g in a.active_grants() {
                    n += 1;
                    push_evidence(&mut ev, g.ev.to_evidence());
                }
            }
            let subject = Subject {
                system: System::App,
                directory: None,
                app_id: Some(app.to_arc()),
                account_id: Some(st.accounts[i].account_id.as_str().into()),
                entitlement: None,
            };
            let summary = format!(
                "Terminated worker {who} still holds access in app `{app}` ({n} entitlement{}{}).",
                if n == 1 { "" } else { "s" },
                if c.elevated { ", privileged" } else { "" }
            );
            (subject, ev, summary)
        }
    }
}

fn capitalize(s: String) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_lowercase() => c.to_uppercase().chain(chars).collect(),
        _ => s,
    }
}

fn account_subject(a: &crate::detect::state::Account, entitlement: Option<Arc<str>>) -> Subject {
    Subject {
        system: a.system,
        directory: (a.system == System::Directory).then(|| a.scope.to_arc()),
        app_id: (a.system == System::App).then(|| a.scope.to_arc()),
        account_id: Some(a.account_id.as_str().into()),
        entitlement,
    }
}
