//! File replay: deterministic output, evidence coordinates, bad lines reported.

use driftwatch::codec::json::to_json;
use driftwatch::config::Config;
use driftwatch::detect::rules::Rule;
use driftwatch::model::event::{Event, System};
use driftwatch::model::finding::{Finding, Status};
use driftwatch::model::time::Ts;
use driftwatch::replay::replay_dir;
use driftwatch::tools::generate::Generator;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Writes a generated organisation and lifecycle stream as topic dumps.
pub fn write_dumps(dir: &Path, workers: u64, batches: usize) -> usize {
    let mut g = Generator::new(7, workers, Ts::parse("2026-11-02T09:00:00Z").unwrap());
    let mut events = g.baseline();
    for _ in 0..batches {
        events.extend(g.next_batch(10 * 60_000));
    }
    events.sort_by_key(Event::occurred_at);
    let mut files: Vec<std::fs::File> = [
        "hr.worker-events",
        "directory.account-changes",
        "app.entitlement-changes",
    ]
    .iter()
    .map(|t| std::fs::File::create(dir.join(format!("{t}.jsonl"))).unwrap())
    .collect();
    for e in &events {
        let i = match e.system() {
            System::Hr => 0,
            System::Directory => 1,
            System::App => 2,
        };
        writeln!(files[i], "{}", to_json(e)).unwrap();
    }
    events.len()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("driftwatch-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn replay_twice_gives_identical_bytes() {
    let dir = tempdir("det");
    let n = write_dumps(&dir, 500, 1500);
    assert!(n > 3000, "{n} events");
    let until = Some(Ts::parse("2026-12-31T00:00:00Z").unwrap());
    let run = || {
        let mut out = Vec::new();
        let report = replay_dir(Arc::new(Config::default_config()), &dir, until, &mut out).unwrap();
        (out, report)
    };
    let (a, report) = run();
    let (b, _) = run();
    assert_eq!(a, b, "two replays differ");
    assert_eq!(report.events as usize, n);
    assert!(report.bad_lines.is_empty());

    let findings: Vec<Finding> = String::from_utf8(a)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The generator injects drift of every rule but the storm.
    let rules: BTreeSet<Rule> = findings
        .iter()
        .filter(|f| f.status == Status::Open)
        .map(|f| f.rule)
        .collect();
    for rule in Rule::ALL.iter().filter(|r| **r != Rule::SourceStorm) {
        assert!(
            rules.contains(rule),
            "no {rule} in the replay; saw {rules:?}"
        );
    }
    // Never the same status twice for one finding.
    let mut seen = BTreeSet::new();
    for f in &findings {
        assert!(
            seen.insert((f.finding_id.clone(), f.status)),
            "{} {} twice",
            f.finding_id,
            f.status
        );
        assert!(!f.evidence.is_empty(), "{} has no evidence", f.finding_id);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_lines_are_reported_with_file_and_line_and_skipped() {
    let dir = tempdir("bad");
    std::fs::write(
        dir.join("hr.worker-events.jsonl"),
        concat!(
            r#"{"event_id":"h1","event_type":"HIRE","occurred_at":"2026-11-03T09:00:00Z","effective_at":"2026-11-03T09:00:00Z","source_system":"workday","worker_id":"w1","worker_type":"EMPLOYEE"}"#,
            "\n{not json\n",
            r#"{"event_id":"h2","event_type":"TERMINATION","occurred_at":"2026-11-10T17:00:00Z","effective_at":"2026-11-10T17:00:00Z","source_system":"workday","worker_id":"w1"}"#,
            "\n",
            r#"{"event_id":"h3","event_type":"TERMINATION","occurred_at":"2026-11-10T17:00:00Z","effective_at":"2026-11-10T17:00:00Z","source_system":"workday","worker_id":"w1","worker_type":"EMPLOYEE"}"#,
            "\n"
        ),
    )
    .unwrap();
    // A kcat -J envelope keeps the original partition and offset.
    let inner = r#"{"event_id":"d1","event_type":"ACCOUNT_CREATED","occurred_at":"2026-11-03T09:05:00Z","directory":"entra","account_id":"a1","worker_id":"w1","account_kind":"HUMAN"}"#;
    let env = serde_json::json!({"topic":"directory.account-changes","partition":0,"offset":41,"key":"w1","payload":inner});
    std::fs::write(
        dir.join("directory.account-changes.jsonl"),
        format!("{env}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("notes.jsonl"), "ignored\n").unwrap();

    let mut out = Vec::new();
    let until = Some(Ts::parse("2026-11-11T00:00:00Z").unwrap());
    let report = replay_dir(Arc::new(Config::default_config()), &dir, until, &mut out).unwrap();
    let bad: Vec<String> = report
        .bad_lines
        .iter()
        .map(|b| format!("{}:{} {}", b.file, b.line, b.error.error_type()))
        .collect();
    assert_eq!(
        bad,
        vec![
            "hr.worker-events.jsonl:2 malformed_json",
            "hr.worker-events.jsonl:3 invalid_field"
        ]
    );
    assert!(report.bad_lines[1]
        .error
        .to_string()
        .contains("worker_type"));
    assert_eq!(report.ignored_files, vec!["notes.jsonl".to_string()]);
    let text = String::from_utf8(out).unwrap();
    let f: Finding = serde_json::from_str(text.lines().next().expect("a finding")).unwrap();
    assert_eq!(f.rule, Rule::LeaverDirectoryAccess);
    let coords: Vec<(String, i64, String)> = f
        .evidence
        .iter()
        .map(|e| (e.topic.to_string(), e.offset, e.event_id.to_string()))
        .collect();
    assert_eq!(
        coords,
        vec![
            ("hr.worker-events".to_string(), 3, "h3".to_string()),
            (
                "directory.account-changes".to_string(),
                41,
                "d1".to_string()
            )
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A generated feed as in-memory streams on 3 partitions: every event in
/// its correlation key's partition, or (`by_event_id`) directory and app
/// events in their event id's, as a change-data-capture connector keyed by
/// primary key puts them. With `moves`, orphan accounts correlated later
/// and service accounts handed to another owner change key (without, the
/// events that move them are left out).
fn partitioned_streams(by_event_id: bool, moves: bool) -> Vec<driftwatch::replay::Stream> {
    use driftwatch::model::event::{Envelope, Origin};
    use driftwatch::model::partitioner::Partitioner;
    let mut g = Generator::new(11, 400, Ts::parse("2026-11-02T09:00:00Z").unwrap());
    let mut events = g.baseline();
    for _ in 0..600 {
        events.extend(g.next_batch(10 * 60_000));
    }
    if !moves {
        events.retain(|e| {
            !matches!(e, Event::Directory(d) if d.event_type == driftwatch::model::event::DirectoryEventType::AttributesChanged
                && (d.account_id.starts_with("orphan-") || d.account_id.starts_with("svc-")))
        });
    }
    let names = [
        "hr.worker-events",
        "directory.account-changes",
        "app.entitlement-changes",
    ];
    let mut offsets = [[0i64; 3]; 3];
    let mut streams: Vec<Vec<Envelope>> = vec![Vec::new(); 3];
    for e in events {
        let q = match e.system() {
            System::Hr => 0,
            System::Directory => 1,
            System::App => 2,
        };
        let p = if by_event_id && q > 0 {
            Partitioner::Murmur2.partition_of_bytes(e.event_id().as_bytes(), 3)
        } else {
            Partitioner::Murmur2.partition(&e.key(), 3)
        };
        let offset = offsets[q][p as usize];
        offsets[q][p as usize] += 1;
        streams[q].push(Envelope {
            origin: Origin {
                topic: names[q].into(),
                partition: p,
                offset,
            },
            event: e,
        });
    }
    names.iter().map(|n| (*n).into()).zip(streams).collect()
}

/// What each transition says, without its id and times: those depend on
/// the stream time a partition has reached, and so on the order in which
/// records of several partitions merge.
fn what(findings: &[Finding]) -> Vec<String> {
    let mut w: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{} {:?} {:?} {:?}",
                f.rule, f.status, f.worker_id, f.subject
            )
        })
        .collect();
    w.sort();
    w
}

/// `kafka.route_by = "payload"` in a replay: input already in its keys'
/// partitions replays exactly as without routing while no account changes
/// partition; accounts that move to a key of another partition leave
/// their old one only when routed; and input keyed by event id gives the
/// findings of the well-keyed input (all but the odd finding opened and
/// resolved around its deadline), where without routing it gives others
/// (several times as many transitions).
#[test]
fn routing_by_payload_replays_misplaced_input_as_well_keyed_input() {
    use driftwatch::config::RouteBy;
    use driftwatch::replay::replay_streams;
    let by_key = Arc::new(Config::default_config());
    let mut routed = Config::default_config();
    routed.kafka.route_by = RouteBy::Payload;
    let routed = Arc::new(routed);
    let until = Some(Ts::parse("2026-12-31T00:00:00Z").unwrap());

    let (still, report) = replay_streams(
        by_key.clone(),
        partitioned_streams(false, false),
        until,
        None,
    );
    assert!(report.findings > 100, "{} findings", report.findings);
    let (same, _) = replay_streams(
        routed.clone(),
        partitioned_streams(false, false),
        until,
        Some(3),
    );
    assert_eq!(
        same, still,
        "nothing moves: the order is the partitions' own"
    );

    let resolved_orphans = |f: &[Finding]| {
        f.iter()
            .filter(|f| f.rule == Rule::OrphanAccount && f.status == Status::Resolved)
            .count()
    };
    let (unrouted, _) = replay_streams(
        by_key.clone(),
        partitioned_streams(false, true),
        until,
        None,
    );
    let (reference, _) = replay_streams(
        routed.clone(),
        partitioned_streams(false, true),
        until,
        Some(3),
    );
    assert!(
        resolved_orphans(&reference) > resolved_orphans(&unrouted),
        "accounts correlated under a key of another partition leave their orphan key: {} against {}",
        resolved_orphans(&reference),
        resolved_orphans(&unrouted)
    );

    let (scattered, _) = replay_streams(by_key, partitioned_streams(true, true), until, None);
    assert!(
        scattered.len() > 2 * reference.len(),
        "{} transitions without routing, {} keyed well",
        scattered.len(),
        reference.len()
    );
    let (moved, _) = replay_streams(routed, partitioned_streams(true, true), until, Some(3));
    let (moved_findings, reference_findings) = (moved, reference);
    let (moved, reference) = (what(&moved_findings), what(&reference_findings));
    let mut only: Vec<String> = Vec::new();
    let (mut a, mut b) = (moved.clone(), reference.clone());
    for w in &moved {
        if let Some(i) = b.iter().position(|x| x == w) {
            b.remove(i);
        } else {
            only.push(format!("routed from event-id keys only: {w}"));
        }
    }
    for w in &reference {
        if let Some(i) = a.iter().position(|x| x == w) {
            a.remove(i);
        } else {
            only.push(format!("well keyed only: {w}"));
        }
    }
    // A record that moved is merged at another point of its target's
    // stream than in its key's own partition, so a finding whose fix came
    // minutes after its deadline may open and resolve in one order and
    // not the other; what stands at the end is the same.
    assert!(only.len() * 100 <= moved.len(), "{only:#?}");
    assert_eq!(standing(&moved_findings), standing(&reference_findings));
}

/// The findings open or escalated at the end, without ids and times.
fn standing(findings: &[Finding]) -> Vec<String> {
    let mut last = std::collections::BTreeMap::new();
    for f in findings {
        let what = format!("{} {:?} {:?}", f.rule, f.worker_id, f.subject);
        last.insert(what, f.status);
    }
    last.into_iter()
        .filter(|(_, s)| *s != Status::Resolved)
        .map(|(w, s)| format!("{w} {s:?}"))
        .collect()
}
