//! Finding encodings, selectable per output: the contract's JSON, Avro
//! (`schemas/finding.avsc`, Confluent wire format on topics, an Avro object
//! container file in replay files), and OCSF Detection Finding (class_uid
//! 2004) for SIEMs.

use crate::codec::avro::{self, AvroError};
use crate::model::encoding::Encoding;
use crate::model::event::System;
use crate::model::finding::{Finding, Severity, Status, Subject};
use crate::model::rule::Rule;
use apache_avro::Schema;
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

/// Encodes findings as message values.
pub struct FindingEncoder {
    encoding: Encoding,
    schema: Schema,
}

impl FindingEncoder {
    pub fn new(encoding: Encoding) -> FindingEncoder {
        FindingEncoder {
            encoding,
            schema: avro::schema(avro::FINDING_SCHEMA),
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// One finding as a message value.
    pub fn encode(&self, f: &Finding) -> Result<Vec<u8>, AvroError> {
        Ok(match self.encoding {
            Encoding::Json => f.to_json_bytes(),
            Encoding::Avro { schema_id } => avro::encode_finding(schema_id, &self.schema, f)?,
            Encoding::Ocsf => to_ocsf(f).to_string().into_bytes(),
        })
    }
}

/// Writes findings to a file or stdout: JSON lines, OCSF JSON lines, or an
/// Avro object container file. The container's sync marker is fixed, so the
/// same findings give the same bytes.
pub fn write_findings(
    encoding: Encoding,
    findings: &[Finding],
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    match encoding {
        Encoding::Json | Encoding::Ocsf => {
            for f in findings {
                let line = match encoding {
                    Encoding::Json => f.to_json(),
                    _ => to_ocsf(f).to_string(),
                };
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
        }
        Encoding::Avro { .. } => {
            let bytes = object_container(findings).map_err(|e| e.to_string())?;
            out.write_all(&bytes).map_err(|e| e.to_string())?;
        }
    }
    out.flush().map_err(|e| e.to_string())
}

/// The sync marker of driftwatch's container files: fixed, so the same
/// findings give the same bytes.
const OCF_MARKER: [u8; 16] = *b"driftwatch-ocf-1";

/// Avro's zig-zag variable-length `long`.
fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

/// An Avro object container file of `schemas/finding.avsc`, written by hand
/// so the header's metadata comes in a fixed order (apache-avro keeps it in
/// a hash map) and the bytes depend on the findings alone.
pub fn object_container(findings: &[Finding]) -> Result<Vec<u8>, AvroError> {
    let schema = avro::schema(avro::FINDING_SCHEMA);
    let mut out = b"Obj\x01".to_vec();
    write_long(2, &mut out);
    write_bytes(b"avro.codec", &mut out);
    write_bytes(b"null", &mut out);
    write_bytes(b"avro.schema", &mut out);
    write_bytes(avro::FINDING_SCHEMA.as_bytes(), &mut out);
    write_long(0, &mut out);
    out.extend_from_slice(&OCF_MARKER);
    for block in findings.chunks(1000) {
        let mut data = Vec::new();
        for f in block {
            data.extend(avro::encode_datum(&schema, f)?);
        }
        write_long(block.len() as i64, &mut out);
        write_bytes(&data, &mut out);
        out.extend_from_slice(&OCF_MARKER);
    }
    Ok(out)
}

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

    /// The findings of the shipped example topics.
    fn example_findings() -> Vec<Finding> {
        let cfg = std::sync::Arc::new(crate::config::Config::default_config());
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
        let mut out = Vec::new();
        let until = crate::model::time::Ts::parse("2026-12-01T00:00:00Z").ok();
        crate::replay::replay_dir(cfg, &dir, until, &mut out).unwrap();
        let findings: Vec<Finding> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!findings.is_empty());
        findings
    }

    #[test]
    fn ocsf_detection_finding_has_the_required_attributes() {
        for f in &example_findings() {
            let o = to_ocsf(f);
            for k in [
                "activity_id",
                "category_uid",
                "class_uid",
                "finding_info",
                "metadata",
                "severity_id",
                "time",
                "type_uid",
            ] {
                assert!(o.get(k).is_some(), "{k} missing");
            }
            assert_eq!(o["class_uid"], 2004);
            let activity = o["activity_id"].as_u64().unwrap();
            assert_eq!(o["type_uid"].as_u64().unwrap(), 200400 + activity);
            assert_eq!(o["finding_info"]["uid"], f.finding_id.as_str());
            assert_eq!(o["assignee_group"]["name"], &*f.contributing_owner.team);
            assert_eq!(o["metadata"]["version"], OCSF_VERSION);
            assert_eq!(o["metadata"]["profiles"], json!(OCSF_PROFILES));
            let deadline = f.remediation_deadline.to_string();
            assert!(o["remediation"]["desc"]
                .as_str()
                .unwrap()
                .contains(&deadline));
            let expected = match f.status {
                Status::Open => 1,
                Status::Escalated => 2,
                Status::Resolved => 3,
            };
            assert_eq!(activity, expected);
        }
    }

    /// The committed JSON Schema of [`OCSF_VERSION`] and the profiles its
    /// `$id` names (`...?profiles=host,incident`).
    fn committed_schema() -> (Value, Vec<String>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ocsf")
            .join(OCSF_VERSION)
            .join("detection_finding.schema.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}: run scripts/ocsf-schema.py", path.display()));
        let schema: Value = serde_json::from_str(&text).unwrap();
        let id = schema["$id"].as_str().unwrap();
        let (url, query) = id.split_once('?').unwrap_or((id, ""));
        assert!(
            url.ends_with(&format!("/schema/{OCSF_VERSION}/classes/detection_finding")),
            "{id}"
        );
        let profiles = query
            .strip_prefix("profiles=")
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        (schema, profiles)
    }

    /// What in `v` breaks `schema`, for the part of JSON Schema 2020-12 the
    /// generated OCSF schema uses (`$ref` into `$defs`, `type`, `enum`,
    /// `const`, `required`, `properties` with `additionalProperties: false`,
    /// `items`, `anyOf` / `oneOf` of required attributes); not `pattern`.
    /// CI validates with Python's jsonschema, all of it.
    fn violations(root: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
        let schema = match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => &root["$defs"][r.trim_start_matches("#/$defs/")],
            None => schema,
        };
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => t.as_str().into_iter().collect(),
            };
            let fits = |t: &str| match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                "null" => v.is_null(),
                _ => false,
            };
            if !types.into_iter().any(fits) {
                out.push(format!("{at}: {v} is not of type {t}"));
                return;
            }
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                out.push(format!("{at}: {v} is not one of {e:?}"));
            }
        }
        if let Some(c) = schema.get("const") {
            if c != v {
                out.push(format!("{at}: {v} is not {c}"));
            }
        }
        if let Value::Object(m) = v {
            let has_all = |alt: &Value| {
                alt["required"]
                    .as_array()
                    .is_some_and(|r| r.iter().all(|k| m.contains_key(k.as_str().unwrap())))
            };
            for k in schema["required"].as_array().into_iter().flatten() {
                if !m.contains_key(k.as_str().unwrap()) {
                    out.push(format!("{at}: required {k} missing"));
                }
            }
            if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
                if !any.iter().any(has_all) {
                    out.push(format!("{at}: none of {any:?}"));
                }
            }
            if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
                if one.iter().filter(|alt| has_all(alt)).count() != 1 {
                    out.push(format!("{at}: not exactly one of {one:?}"));
                }
            }
            for (k, x) in m {
                match schema["properties"].get(k) {
                    Some(s) => violations(root, s, x, &format!("{at}/{k}"), out),
                    None if schema["additionalProperties"] == false => {
                        out.push(format!("{at}: {k} is not an attribute here"))
                    }
                    None => {}
                }
            }
        }
        if let (Value::Array(a), Some(items)) = (v, schema.get("items")) {
            for (i, x) in a.iter().enumerate() {
                violations(root, items, x, &format!("{at}/{i}"), out);
            }
        }
    }

    /// The example findings, and findings of every rule in every status
    /// made from one of them with each shape of subject: the worker alone,
    /// a directory account with a group, an uncorrelated app account of a
    /// team with no contact, a non-human identity, a storm on a directory
    /// and one on HR with no evidence.
    fn findings_of_every_shape() -> Vec<Finding> {
        use crate::model::finding::Subject;
        let examples = example_findings();
        let base = examples[0].clone();
        let mut out = examples;
        let arc = |s: &str| Some(std::sync::Arc::from(s));
        let account = |system, directory, app_id, entitlement| Subject {
            system,
            directory,
            app_id,
            account_id: arc("acct-1"),
            entitlement,
        };
        let shapes = [
            (arc("W1"), Subject::hr()),
            (
                arc("W1"),
                account(System::Directory, arc("entra"), None, arc("Domain Admins")),
            ),
            (
                None,
                account(System::App, None, arc("github"), arc("admin")),
            ),
            (
                arc("W1"),
                account(System::Directory, arc("okta"), None, None),
            ),
            (
                None,
                Subject {
                    directory: arc("ad"),
                    account_id: None,
                    ..account(System::Directory, None, None, None)
                },
            ),
            (None, Subject::hr()),
        ];
        for (i, rule) in Rule::ALL.iter().enumerate() {
            for status in Status::ALL {
                let (worker, subject) = shapes[i % shapes.len()].clone();
                let mut f = base.clone();
                f.rule = *rule;
                f.status = *status;
                f.severity = Severity::ALL[i % Severity::ALL.len()];
                f.worker_id = worker;
                f.subject = subject;
                if i % shapes.len() >= 2 {
                    f.contributing_owner.contact = None;
                }
                if i % shapes.len() == 5 {
                    f.evidence.clear();
                }
                out.push(f);
            }
        }
        out
    }

    #[test]
    fn ocsf_records_satisfy_the_committed_schema_of_their_version() {
        let (schema, profiles) = committed_schema();
        let mut declared: Vec<String> = OCSF_PROFILES.iter().map(|p| p.to_string()).collect();
        declared.sort();
        assert_eq!(declared, profiles, "the fixture is for other profiles");
        for f in &findings_of_every_shape() {
            let o = to_ocsf(f);
            assert_eq!(o["metadata"]["version"], OCSF_VERSION);
            let mut said: Vec<String> =
                serde_json::from_value(o["metadata"]["profiles"].clone()).unwrap();
            said.sort();
            assert_eq!(said, profiles, "a profile the schema was not made for");
            let mut out = Vec::new();
            violations(&schema, &schema, &o, "", &mut out);
            assert!(out.is_empty(), "{} {}: {out:#?}\n{o}", f.rule, f.status);
        }
        // A wrong profile attribute, an unknown nested attribute, a value
        // outside an enum and a missing required attribute are caught.
        let mut o = to_ocsf(&example_findings()[0]);
        o["assignee_team"] = json!({});
        o["metadata"]["product"]["team"] = json!("x");
        o["severity_id"] = json!(7);
        o["finding_info"].as_object_mut().unwrap().remove("uid");
        let mut out = Vec::new();
        violations(&schema, &schema, &o, "", &mut out);
        assert_eq!(out.len(), 4, "{out:#?}");
    }

    #[test]
    fn contacts_are_emails_only_in_ocsf_email_form() {
        assert!(is_ocsf_email("it-identity@example.com"));
        assert!(is_ocsf_email("a.b+c@mail.example.co.uk"));
        assert!(!is_ocsf_email("#it-identity"));
        assert!(!is_ocsf_email("ops@localhost"));
        assert!(!is_ocsf_email("a b@example.com"));
        assert!(!is_ocsf_email("@example.com"));
    }

    #[test]
    fn avro_container_files_are_byte_identical_and_readable() {
        let findings = example_findings();
        let a = object_container(&findings).unwrap();
        for _ in 0..5 {
            assert!(object_container(&findings).unwrap() == a);
        }
        let reader = apache_avro::Reader::new(&a[..]).unwrap();
        let back: Vec<Finding> = reader
            .map(|v| crate::codec::avro::decode_finding(&v.unwrap()).unwrap())
            .collect();
        assert_eq!(back, findings);
    }
}
