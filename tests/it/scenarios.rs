//! Data-driven scenarios: `tests/scenarios/*.scn`, events in, finding
//! transitions out.
//!
//! A file holds cases; each starts with `case <name>` and runs on a fresh
//! engine. Lines of a case:
//!
//! - `hr|dir|app <occurred_at> <json>`: an event; the JSON gives the fields
//!   that matter and the harness fills the rest (`event_id` from the line
//!   number, `effective_at` = `occurred_at`, `source_system` workday,
//!   `worker_type` EMPLOYEE, `directory` entra, `app_id` salesforce,
//!   `account_kind` HUMAN). Times may be written `+<duration>` after the
//!   previous event or advance.
//! - `advance <time>`: move stream time with no input (the idle clock).
//! - `config` ... `end`: TOML merged over the shipped config.
//! - `expect <STATUS> <RULE> <worker|-> <SEVERITY> <ROLE> at=<time>`: the
//!   transitions, all of them, in order. A case with no `expect` must emit
//!   nothing.

use driftwatch::config::Config;
use driftwatch::detect::engine::Engine;
use driftwatch::model::event::{Envelope, Origin, System};
use driftwatch::model::finding::Finding;
use driftwatch::model::time::Ts;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

struct Case {
    name: String,
    config: String,
    steps: Vec<Step>,
    expect: Vec<String>,
}

enum Step {
    Event(System, Value, usize),
    Advance(Ts),
}

fn parse_time(s: &str, last: Ts) -> Ts {
    match s.strip_prefix('+') {
        Some(d) => last.plus(
            humantime::parse_duration(d)
                .unwrap_or_else(|e| panic!("bad duration {d}: {e}"))
                .as_millis() as i64,
        ),
        None => Ts::parse(s).unwrap_or_else(|e| panic!("{e}")),
    }
}

fn parse_file(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut cases: Vec<Case> = Vec::new();
    let mut in_config = false;
    let mut last = Ts(0);
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if in_config {
            if line == "end" {
                in_config = false;
            } else {
                let c = cases.last_mut().expect("config inside a case");
                c.config.push_str(raw);
                c.config.push('\n');
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        if verb == "case" {
            cases.push(Case {
                name: rest.to_string(),
                config: String::new(),
                steps: Vec::new(),
                expect: Vec::new(),
            });
            continue;
        }
        let case = cases
            .last_mut()
            .unwrap_or_else(|| panic!("{}:{}: line before the first case", path.display(), n + 1));
        match verb {
            "config" => in_config = true,
            "advance" => {
                last = parse_time(rest, last);
                case.steps.push(Step::Advance(last));
            }
            "expect" => case
                .expect
                .push(rest.split_whitespace().collect::<Vec<_>>().join(" ")),
            "hr" | "dir" | "app" => {
                let (t, body) = rest.split_once(' ').unwrap_or((rest, "{}"));
                last = parse_time(t, last);
                let mut v: Value = serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1));
                let o = v.as_object_mut().unwrap();
                let at = Value::String(last.to_string());
                o.entry("event_id").or_insert(json!(format!("L{}", n + 1)));
                o.entry("occurred_at").or_insert(at.clone());
                let system = match verb {
                    "hr" => {
                        o.entry("effective_at").or_insert(at);
                        o.entry("source_system").or_insert(json!("workday"));
                        o.entry("worker_type").or_insert(json!("EMPLOYEE"));
                        System::Hr
                    }
                    "dir" => {
                        o.entry("directory").or_insert(json!("entra"));
                        o.entry("account_kind").or_insert(json!("HUMAN"));
                        System::Directory
                    }
                    _ => {
                        o.entry("app_id").or_insert(json!("salesforce"));
                        o.entry("account_kind").or_insert(json!("HUMAN"));
                        System::App
                    }
                };
                case.steps.push(Step::Event(system, v, n + 1));
            }
            other => panic!("{}:{}: unknown verb {other}", path.display(), n + 1),
        }
    }
    cases
}

fn describe(f: &Finding) -> String {
    format!(
        "{} {} {} {} {} at={}",
        f.status,
        f.rule,
        f.worker_id.as_deref().unwrap_or("-"),
        f.severity,
        f.contributing_owner.role,
        f.transitioned_at
    )
}

fn run_case(case: &Case) -> Vec<Finding> {
    let cfg = if case.config.is_empty() {
        Config::default_config()
    } else {
        // The case's TOML replaces whole tables of the shipped config.
        let mut base: toml::Table = toml::from_str(driftwatch::config::DEFAULT_TOML).unwrap();
        let over: toml::Table = toml::from_str(&case.config).unwrap();
        merge(&mut base, over);
        Config::from_toml(&toml::to_string(&base).unwrap()).unwrap()
    };
    let mut engine = Engine::new(Arc::new(cfg));
    let mut out = Vec::new();
    for step in &case.steps {
        match step {
            Step::Event(system, v, line) => {
                let bytes = serde_json::to_vec(v).unwrap();
                let event = driftwatch::codec::json::decode_json(*system, &bytes)
                    .unwrap_or_else(|e| panic!("case {}: line {line}: {e}", case.name));
                let topic = match system {
                    System::Hr => "hr.worker-events",
                    System::Directory => "directory.account-changes",
                    System::App => "app.entitlement-changes",
                };
                engine.apply(
                    Envelope {
                        origin: Origin {
                            topic: topic.into(),
                            partition: 0,
                            offset: *line as i64,
                        },
                        event,
                    },
                    &mut out,
                );
            }
            Step::Advance(t) => engine.advance_to(*t, &mut out),
        }
    }
    out
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "scn"))
    {
        for case in parse_file(file) {
            ran += 1;
            let got: Vec<String> = run_case(&case).iter().map(describe).collect();
            if got != case.expect {
                failures.push(format!(
                    "{} / {}:\n  expected:\n    {}\n  got:\n    {}",
                    file.file_name().unwrap().to_string_lossy(),
                    case.name,
                    case.expect.join("\n    "),
                    got.join("\n    ")
                ));
            }
        }
    }
    assert!(ran >= 26, "only {ran} scenario cases found");
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every rule id of the contract has a case that fires it.
#[test]
fn every_rule_has_a_firing_scenario() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut text = String::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        text.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    for rule in driftwatch::detect::rules::Rule::ALL
        .iter()
        .filter(|r| **r != driftwatch::detect::rules::Rule::SourceStorm)
    {
        assert!(
            text.contains(&format!("expect OPEN {rule} ")),
            "no scenario opens {rule}"
        );
    }
}
