//! OCSF Detection Finding (class_uid 2004) for SIEMs: the attribute
//! mapping of docs/findings.md ("Encodings").

use crate::model::event::System;
use crate::model::finding::{Finding, Severity, Status, Subject};
use crate::model::rule::Rule;
use serde_json::{json, Value};

/// The OCSF release the OCSF encoding follows. Its JSON Schema for
/// Detection Finding with [`OCSF_PROFILES`] is committed as
/// `tests/fixtures/ocsf/<version>/detection_finding.schema.json`
/// (`scripts/ocsf-schema.py` makes it from the release's export).
pub const OCSF_VERSION: &str = "1.8.0";

/// The profiles the records declare (`metadata.profiles`): `incident`
/// (`assignee`, `assignee_group`, `priority_id`) and `host`, the profile
/// that gives Detection Finding its `actor`.
pub const OCSF_PROFILES: [&str; 2] = ["host", "incident"];

fn severity_id(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// OCSF activity and status of a transition: OPEN creates the finding,
/// ESCALATED updates it (still in progress), RESOLVED closes it.
fn activity(s: Status) -> (u8, &'static str, u8, &'static str) {
    match s {
        Status::Open => (1, "Create", 1, "New"),
        Status::Escalated => (2, "Update", 2, "In Progress"),
        Status::Resolved => (3, "Close", 4, "Resolved"),
    }
}

/// OCSF priority of a severity (incident profile): the remediation
/// deadline follows the severity, so the urgency does too.
fn priority_id(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Low => (1, "Low"),
        Severity::Medium => (2, "Medium"),
        Severity::High => (3, "High"),
        Severity::Critical => (4, "Critical"),
    }
}

/// What the contributing owner is to do about a finding of `rule`.
fn remediation_action(rule: Rule) -> &'static str {
    match rule {
        Rule::LeaverDirectoryAccess => "Disable the directory account of the terminated worker.",
        Rule::LeaverAppAccess => {
            "Revoke the terminated worker's entitlements and disable their account in the app."
        }
        Rule::JoinerNotProvisioned => "Provision and enable a directory account for the worker.",
        Rule::OrphanAccount => {
            "Correlate the account to a worker HR knows (its worker_id), or disable it."
        }
        Rule::AttributeMismatch => {
            "Correct the directory account's department, title or manager to match HR."
        }
        Rule::MoverRetainedPrivilege => {
            "Revoke the privileged access granted before the transfer, or recertify it."
        }
        Rule::UnreconciledTermination => {
            "Record the termination in HR, or re-enable the account if its removal was a mistake."
        }
        Rule::AccessDuringLeave => "Disable the directory account for the duration of the leave.",
        Rule::OrphanedNonHumanIdentity => {
            "Assign an active owner to the non-human account, or disable it."
        }
        Rule::UnapprovedPrivilegedGrant => {
            "Have a configured owner approve the privileged grant, or revoke it."
        }
        Rule::ContractExpiredAccess => {
            "Extend the contract in HR, or terminate the worker and disable their accounts."
        }
        Rule::ConflictingSourceRecords => {
            "Reconcile the worker's status between the HR source systems."
        }
        Rule::SourceStorm => {
            "Check the source behind the mass change; the findings it holds are published when it clears."
        }
    }
}

/// OCSF account type of the subject's account: the directory's where OCSF
/// names it, else Other with the directory or app as the source's type.
fn account_type(subject: &Subject) -> (u8, String) {
    let source = match subject.system {
        System::Directory => subject.directory.as_deref(),
        _ => subject.app_id.as_deref(),
    }
    .unwrap_or(subject.system.as_str());
    if subject.system == System::Directory {
        match source.to_ascii_lowercase().as_str() {
            "ad" | "active_directory" | "activedirectory" => {
                return (19, "ActiveDirectory Account".into())
            }
            "entra" | "entra_id" | "azure_ad" | "azuread" | "aad" => {
                return (6, "Azure AD Account".into())
            }
            "ldap" => return (1, "LDAP Account".into()),
            _ => {}
        }
    }
    (99, source.to_string())
}

/// OCSF's `email_t`: `^[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$`.
fn is_ocsf_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let Some((host, rest)) = domain.split_once('.') else {
        return false;
    };
    let all = |s: &str, f: &dyn Fn(char) -> bool| !s.is_empty() && s.chars().all(f);
    all(local, &|c| {
        c.is_ascii_alphanumeric() || "!#$%&'*+,-./=?^_`{|}~".contains(c)
    }) && all(host, &|c| c.is_ascii_alphanumeric() || c == '-')
        && all(rest, &|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// A worker as an OCSF user: a person, so user type User.
fn worker_user(worker: &str) -> Value {
    json!({ "uid": worker, "type_id": 1, "type": "User" })
}

/// A finding as an OCSF Detection Finding (class_uid 2004) of
/// [`OCSF_VERSION`] with [`OCSF_PROFILES`]. The attribute mapping is in
/// docs/findings.md ("Encodings").
pub fn to_ocsf(f: &Finding) -> Value {
    let (activity_id, activity_name, status_id, status) = activity(f.status);
    let (severity_id, severity) = severity_id(f.severity);
    let (priority_id, priority) = priority_id(f.severity);
    let subject = &f.subject;
    let worker = f.worker_id.as_deref();
    let non_human = f.rule == Rule::OrphanedNonHumanIdentity;
    let subject_data = json!({
        "system": subject.system.as_str(),
        "directory": subject.directory,
        "app_id": subject.app_id,
        "entitlement": subject.entitlement,
    });

    // The identity the finding is about: the worker (for SERVICE and
    // SHARED_ADMIN accounts, the owner: the contract's worker_id) with the
    // account concerned. Of a non-human identity, the account alone.
    let account = subject.account_id.as_deref().map(|uid| {
        let (type_id, kind) = account_type(subject);
        json!({ "uid": uid, "name": uid, "type_id": type_id, "type": kind })
    });
    let mut user = match (worker, non_human) {
        (Some(w), false) => worker_user(w),
        _ => json!({}),
    };
    if let Some(a) = &account {
        user["account"] = a.clone();
    }

    let mut resources = Vec::new();
    if let Some(w) = worker {
        // The worker is the target when no account is; else related.
        let (role_id, role) = match account {
            None => (1, "Target"),
            Some(_) => (4, "Related"),
        };
        resources.push(json!({
            "type": "User",
            "uid": w,
            "name": w,
            "role_id": role_id,
            "role": role,
        }));
    }
    if let Some(uid) = &subject.account_id {
        let mut r = json!({
            "type": "Account",
            "uid": uid,
            "name": uid,
            "role_id": 1,
            "role": "Target",
            "data": subject_data,
        });
        if let Some(w) = worker {
            r["owner"] = worker_user(w);
        }
        if let Some(e) = &subject.entitlement {
            r["group"] = json!({ "name": e });
        }
        resources.push(r);
    } else if worker.is_none() {
        // A source (SOURCE_STORM): the directory or app behind it.
        let source = match subject.system {
            System::Directory => subject.directory.as_deref().map(|d| (d, "Directory")),
            System::App => subject.app_id.as_deref().map(|a| (a, "Application")),
            System::Hr => None,
        };
        if let Some((uid, kind)) = source {
            resources.push(json!({
                "type": kind,
                "uid": uid,
                "name": uid,
                "role_id": 1,
                "role": "Target",
                "data": subject_data,
            }));
        }
    }

    let evidences: Vec<Value> = f
        .evidence
        .iter()
        .map(|e| {
            json!({
                "uid": e.event_id,
                "name": e.event_type,
                "data": {
                    "topic": e.topic,
                    "partition": e.partition,
                    "offset": e.offset,
                    "event_id": e.event_id,
                    "event_type": e.event_type,
                    "occurred_at": e.occurred_at.to_string(),
                }
            })
        })
        .collect();
    let mut data_sources: Vec<&str> = Vec::new();
    for e in &f.evidence {
        if !data_sources.contains(&&*e.topic) {
            data_sources.push(&e.topic);
        }
    }

    let owner = &f.contributing_owner;
    let mut finding_info = json!({
        "uid": f.finding_id,
        "title": format!("{}: {}", f.rule.as_str(), f.summary),
        "desc": f.summary,
        "types": [f.rule.as_str()],
        "created_time": f.detected_at.millis(),
        "modified_time": f.transitioned_at.millis(),
        "analytic": {
            "uid": f.rule.as_str(),
            "name": f.rule.as_str(),
            "type_id": 1,
            "type": "Rule",
        },
    });
    if !data_sources.is_empty() {
        finding_info["data_sources"] = json!(data_sources);
    }
    let mut o = json!({
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 200400 + u32::from(activity_id),
        "type_name": format!("Detection Finding: {activity_name}"),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "is_alert": f.status != Status::Resolved,
        "time": f.transitioned_at.millis(),
        "message": f.summary,
        "finding_info": finding_info,
        "remediation": {
            "desc": format!(
                "{} Deadline {}, for {} ({}).",
                remediation_action(f.rule),
                f.remediation_deadline,
                owner.role.as_str(),
                owner.team
            ),
        },
        "priority_id": priority_id,
        "priority": priority,
        "assignee_group": {
            "name": owner.team,
            "desc": format!("{} (contributing owner)", owner.role.as_str()),
        },
        "metadata": {
            "version": OCSF_VERSION,
            "profiles": OCSF_PROFILES,
            "uid": format!("{}:{}", f.finding_id, f.status.as_str()),
            "correlation_uid": f.finding_id,
            "product": {
                "name": "driftwatch",
                "vendor_name": "driftwatch",
                "version": f.detector.version,
            },
        },
        "unmapped": {
            "rule": f.rule.as_str(),
            "accountable_owner": {
                "role": f.accountable_owner.role.as_str(),
                "team": f.accountable_owner.team,
            },
            "remediation_deadline": f.remediation_deadline.to_string(),
            "escalation": { "target": f.escalation.target, "level": f.escalation.level },
            "frameworks": f.frameworks,
            "detector_instance": f.detector.instance,
        },
    });
    if user.as_object().is_some_and(|u| !u.is_empty()) {
        o["actor"] = json!({ "user": user });
    }
    if !resources.is_empty() {
        o["resources"] = Value::Array(resources);
    }
    if !evidences.is_empty() {
        o["evidences"] = Value::Array(evidences);
    }
    if let Some(contact) = &owner.contact {
        let mut assignee = json!({ "name": contact });
        if is_ocsf_email(contact) {
            assignee["email_addr"] = json!(contact);
        }
        o["assignee"] = assignee;
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_are_emails_only_in_ocsf_email_form() {
        assert!(is_ocsf_email("it-identity@example.com"));
        assert!(is_ocsf_email("a.b+c@mail.example.co.uk"));
        assert!(!is_ocsf_email("#it-identity"));
        assert!(!is_ocsf_email("ops@localhost"));
        assert!(!is_ocsf_email("a b@example.com"));
        assert!(!is_ocsf_email("@example.com"));
    }
}
