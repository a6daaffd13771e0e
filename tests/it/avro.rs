//! Every example event, and every finding of a replay, round-trips through
//! Avro with the Confluent wire format.

use driftwatch::avro::{self, SchemaSet};
use driftwatch::config::Config;
use driftwatch::decode::decode_json;
use driftwatch::event::{Event, System};
use driftwatch::finding::Finding;
use driftwatch::time::Ts;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

fn examples() -> Vec<(System, Event)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    let mut out = Vec::new();
    for (file, system) in [
        ("hr.worker-events.jsonl", System::Hr),
        ("directory.account-changes.jsonl", System::Directory),
        ("app.entitlement-changes.jsonl", System::App),
    ] {
        for (n, line) in std::fs::read_to_string(dir.join(file))
            .unwrap()
            .lines()
            .enumerate()
        {
            let e = decode_json(system, line.as_bytes())
                .unwrap_or_else(|e| panic!("{file}:{}: {e}", n + 1));
            out.push((system, e));
        }
    }
    out
}

fn schemas() -> SchemaSet {
    let mut set = SchemaSet::new();
    set.insert(1, System::Hr, avro::input_schema(System::Hr));
    set.insert(2, System::Directory, avro::input_schema(System::Directory));
    set.insert(3, System::App, avro::input_schema(System::App));
    set
}

#[test]
fn every_example_event_round_trips_through_avro() {
    let set = schemas();
    let mut types = BTreeSet::new();
    for (system, event) in examples() {
        let id = match system {
            System::Hr => 1,
            System::Directory => 2,
            System::App => 3,
        };
        let bytes = avro::encode_event(id, set.get(id).unwrap(), &event).unwrap();
        assert_eq!(bytes[0], 0);
        let back = set
            .decode(system, &bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", event.event_id()));
        assert_eq!(back, event);
        types.insert(event.event_type());
    }
    // The examples cover every event type of the contract.
    assert_eq!(types.len(), 8 + 7 + 6, "{types:?}");
}

#[test]
fn wrong_schema_ids_and_families_are_decode_errors() {
    let set = schemas();
    let (_, hire) = examples().remove(0);
    let bytes = avro::encode_event(1, set.get(1).unwrap(), &hire).unwrap();
    let mut unknown = bytes.clone();
    unknown[4] = 99;
    assert_eq!(
        set.decode(System::Hr, &unknown).unwrap_err().error_type(),
        "unknown_schema"
    );
    assert_eq!(
        set.decode(System::Directory, &bytes)
            .unwrap_err()
            .error_type(),
        "invalid_avro"
    );
    assert_eq!(
        set.decode(System::Hr, &bytes[..7])
            .unwrap_err()
            .error_type(),
        "invalid_avro"
    );
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"xyz");
    assert!(set
        .decode(System::Hr, &trailing)
        .unwrap_err()
        .to_string()
        .contains("3 trailing bytes"));
}

#[test]
fn findings_round_trip_through_avro() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    let mut out = Vec::new();
    let until = Some(Ts::parse("2026-12-01T00:00:00Z").unwrap());
    driftwatch::replay::replay_dir(Arc::new(Config::default_config()), &dir, until, &mut out)
        .unwrap();
    let findings: Vec<Finding> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(findings.len() >= 5, "{} findings", findings.len());
    let schema = avro::schema(avro::FINDING_SCHEMA);
    for f in &findings {
        let bytes = avro::encode_finding(42, &schema, f).unwrap();
        let (id, mut datum) = avro::unframe(&bytes).unwrap();
        assert_eq!(id, 42);
        let value = apache_avro::from_avro_datum(&schema, &mut datum, None).unwrap();
        let back: Finding = apache_avro::from_value(&value).unwrap();
        assert_eq!(&back, f);
    }
}
