//! Finding encodings, selectable per output: the contract's JSON, Avro
//! (`schemas/finding.avsc`, Confluent wire format on topics, an Avro object
//! container file in replay files), and OCSF Detection Finding (class_uid
//! 2004) for SIEMs.

use crate::codec::avro::{self, AvroError};
use crate::model::encoding::Encoding;
use crate::model::finding::{Finding, Severity, Status};
use apache_avro::Schema;
use serde_json::{json, Value};

/// The OCSF schema version the OCSF encoding follows.
pub const OCSF_VERSION: &str = "1.3.0";

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

/// A finding as an OCSF 1.3 Detection Finding (class_uid 2004) with the
/// incident profile's assignee fields for the owners.
pub fn to_ocsf(f: &Finding) -> Value {
    let (activity_id, activity_name, status_id, status) = activity(f.status);
    let (severity_id, severity) = severity_id(f.severity);
    let subject = &f.subject;
    let mut resources = Vec::new();
    if let Some(worker) = &f.worker_id {
        resources.push(json!({
            "type": "User",
            "uid": worker,
            "name": worker,
        }));
    }
    if let Some(account) = &subject.account_id {
        resources.push(json!({
            "type": "Account",
            "uid": account,
            "name": account,
            "data": {
                "system": subject.system.as_str(),
                "directory": subject.directory,
                "app_id": subject.app_id,
                "entitlement": subject.entitlement,
            },
        }));
    }
    let evidences: Vec<Value> = f
        .evidence
        .iter()
        .map(|e| {
            json!({
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
    let owner = &f.contributing_owner;
    json!({
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
        "time": f.transitioned_at.millis(),
        "message": f.summary,
        "finding_info": {
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
        },
        "resources": resources,
        "evidences": evidences,
        "assignee_group": {
            "name": owner.team,
            "desc": format!("{} (contributing owner)", owner.role.as_str()),
        },
        "assignee": {
            "name": owner.contact.as_deref().unwrap_or(&owner.team),
        },
        "metadata": {
            "version": OCSF_VERSION,
            "uid": format!("{}:{}", f.finding_id, f.status.as_str()),
            "profiles": ["incident"],
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
    })
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
            let expected = match f.status {
                Status::Open => 1,
                Status::Escalated => 2,
                Status::Resolved => 3,
            };
            assert_eq!(activity, expected);
        }
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
