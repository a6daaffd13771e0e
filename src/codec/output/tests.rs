//! The encodings of the shipped examples' findings and of findings of
//! every shape: OCSF against the committed schema of its version, Avro
//! container files byte for byte.

use super::*;
use crate::model::event::System;
use crate::model::finding::{Severity, Status};
use crate::model::rule::Rule;
use serde_json::{json, Value};

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
