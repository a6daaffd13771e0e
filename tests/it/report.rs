//! `driftwatch report` on replays of the shipped examples and of generated
//! data, on generated transitions with known answers, and against a live
//! detector's owner metrics (`driftwatch_owner_*`) on the mock cluster.

use crate::harness::{Broker, Setup};
use driftwatch::config::Config;
use driftwatch::model::finding::{Finding, Status};
use driftwatch::model::time::{Ts, MS_PER_HOUR};
use driftwatch::replay::replay_dir;
use driftwatch::tools::report::{render, Collector, Outcome, ReportOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "driftwatch-it-report-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `driftwatch report ARGS`: its stdout, or a panic with its stderr.
fn report(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .arg("report")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "driftwatch report {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The rows of a CSV report, without the header.
fn csv_rows(csv: &str) -> Vec<String> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(render::CSV_HEADER));
    lines.map(str::to_string).collect()
}

/// Replays a dump directory, as `replay --output` would write it.
fn replay_to_file(input: &Path, until: &str, file: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let until = Some(Ts::parse(until).unwrap());
    replay_dir(Arc::new(Config::default_config()), input, until, &mut out).unwrap();
    std::fs::write(file, &out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn report_of_the_shipped_examples() {
    let dir = tempdir("examples");
    let file = dir.join("findings.jsonl");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    let findings = replay_to_file(&examples, "2026-12-01T00:00:00Z", &file);
    assert_eq!(findings.len(), 18);
    let input = file.to_str().unwrap();

    // Everything: 9 IT findings (6 joiners, 3 attribute mismatches), none
    // resolved, all escalated by the end of the input.
    let p = "2026-11-03T13:05:00Z,2026-11-17T17:00:00Z";
    assert_eq!(
        csv_rows(&report(&["--input", input, "--format", "csv"])),
        [
            format!("rule,it-identity,IT,JOINER_NOT_PROVISIONED,{p},6,0,0,6,6,,"),
            format!("rule,it-identity,IT,ATTRIBUTE_MISMATCH,{p},3,0,0,3,3,,"),
            format!("team,it-identity,IT,,{p},9,0,0,9,9,,"),
            format!("all,,,,{p},9,0,0,9,9,,"),
        ]
    );
    // Up to 2026-11-08: 4 joiners detected on 11-04 and escalated on 11-07;
    // the mismatches' deadline (11-10) not reached yet; the 2 joiners of
    // 11-14 not detected yet.
    let p = "2026-11-03T13:05:00Z,2026-11-08T00:00:00Z";
    assert_eq!(
        csv_rows(&report(&[
            "--input",
            input,
            "--format",
            "csv",
            "--to",
            "2026-11-08T00:00:00Z"
        ])),
        [
            format!("rule,it-identity,IT,JOINER_NOT_PROVISIONED,{p},4,0,0,4,4,,"),
            format!("rule,it-identity,IT,ATTRIBUTE_MISMATCH,{p},3,0,0,3,0,,"),
            format!("team,it-identity,IT,,{p},7,0,0,7,4,,"),
            format!("all,,,,{p},7,0,0,7,4,,"),
        ]
    );

    let md = report(&["--input", input, "--oldest", "2"]);
    for line in [
        "| it-identity | IT | 9 | 0 | 0 | – | 9 | 9 | – | – |",
        "## it-identity (IT)",
        "| JOINER_NOT_PROVISIONED | 6 | 0 | 0 | – | 6 | 6 | – | – |",
        "Oldest open findings (2 of 9 open):",
        "| 2026-11-03T13:05:00Z | 2026-11-10T13:05:00Z | 14d 4h | yes | ATTRIBUTE_MISMATCH | LOW | W000001 | entra/acct-5-HUMAN | `1f3e168747e657fdde91ddffdd580762` | IT it-identity (it-identity@example.com) | identity-governance |",
    ] {
        assert!(md.contains(line), "{line}\nnot in\n{md}");
    }

    let html_file = dir.join("report.html");
    report(&[
        "--input",
        input,
        "--format",
        "html",
        "--output",
        html_file.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&html_file).unwrap();
    assert_eq!(html.matches("<svg class=\"team-chart\"").count(), 1);
    assert_eq!(html.matches("<rect class=\"bar bar-overdue\"").count(), 2);
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The report recomputed the plain way, for one period: per (team, role,
/// rule), from the transitions as published (each once).
fn recount(findings: &[Finding], from: Ts, to: Ts) -> BTreeMap<(String, String, String), Outcome> {
    let mut by_id: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        by_id.entry(&f.finding_id).or_default().push(f);
    }
    let mut out: BTreeMap<(String, String, String), Outcome> = BTreeMap::new();
    for transitions in by_id.values() {
        let f = transitions[0];
        let at = |s: Status| {
            transitions
                .iter()
                .find(|t| t.status == s)
                .map(|t| t.transitioned_at)
        };
        let resolved = at(Status::Resolved);
        let escalated = at(Status::Escalated);
        let o = Outcome {
            opened: u64::from(from <= f.detected_at && f.detected_at < to),
            resolved_within: u64::from(
                resolved.is_some_and(|r| from <= r && r < to && r <= f.remediation_deadline),
            ),
            resolved_late: u64::from(
                resolved.is_some_and(|r| from <= r && r < to && r > f.remediation_deadline),
            ),
            open_at_end: u64::from(f.detected_at < to && resolved.is_none_or(|r| r >= to)),
            overdue_at_end: u64::from(
                f.detected_at < to
                    && resolved.is_none_or(|r| r >= to)
                    && escalated.is_some_and(|e| e < to),
            ),
            times_ms: resolved
                .filter(|&r| from <= r && r < to)
                .map(|r| r.millis() - f.detected_at.millis())
                .into_iter()
                .collect(),
        };
        if o.opened + o.resolved_within + o.resolved_late + o.open_at_end == 0 {
            continue;
        }
        let key = (
            f.contributing_owner.team.to_string(),
            f.contributing_owner.role.as_str().to_string(),
            f.rule.as_str().to_string(),
        );
        let e = out.entry(key).or_default();
        e.opened += o.opened;
        e.resolved_within += o.resolved_within;
        e.resolved_late += o.resolved_late;
        e.open_at_end += o.open_at_end;
        e.overdue_at_end += o.overdue_at_end;
        e.times_ms.extend(o.times_ms);
    }
    for o in out.values_mut() {
        o.times_ms.sort_unstable();
    }
    out
}

/// Median and p90 the spreadsheet way: the value at rank p x (n - 1),
/// between the two neighbouring values.
fn spreadsheet_percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = p * (sorted.len() - 1) as f64;
    let below = sorted[rank as usize] as f64;
    let above = sorted[(rank as usize + 1).min(sorted.len() - 1)] as f64;
    Some((below + (above - below) * rank.fract()).round() as i64)
}

#[test]
fn report_of_generated_data_agrees_with_a_plain_recount() {
    let dir = tempdir("generated");
    let dumps = dir.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    crate::replay::write_dumps(&dumps, 400, 2000);
    let file = dir.join("findings.jsonl");
    let findings = replay_to_file(&dumps, "2026-12-31T00:00:00Z", &file);
    assert!(findings.len() > 200, "{} transitions", findings.len());
    let resolved = findings
        .iter()
        .filter(|f| f.status == Status::Resolved)
        .count();
    assert!(resolved > 20, "{resolved} resolved");

    let mut collector = Collector::new();
    for f in &findings {
        collector.add(f.clone());
    }
    let first = findings.iter().map(|f| f.detected_at).min().unwrap();
    let last = findings.iter().map(|f| f.transitioned_at).max().unwrap();
    let middle = Ts((first.millis() + last.millis()) / 2);
    // The whole input, a week in the middle, and the first half.
    for (from, to) in [
        (None, None),
        (Some(middle), Some(middle.plus(7 * 24 * MS_PER_HOUR))),
        (None, Some(middle)),
    ] {
        let r = collector.report(&ReportOptions {
            from,
            to,
            oldest: 5,
        });
        let expected = recount(&findings, from.unwrap_or(Ts::MIN), to.unwrap_or(Ts::MAX));
        let mut got = BTreeMap::new();
        for t in &r.teams {
            for row in &t.rows {
                let key = (
                    t.team.clone(),
                    row.role.as_str().to_string(),
                    row.rule.as_str().to_string(),
                );
                got.insert(key, row.outcome.clone());
            }
            let open: Vec<Ts> = t.oldest_open.iter().map(|f| f.detected_at).collect();
            assert!(open.windows(2).all(|w| w[0] <= w[1]), "oldest first");
            assert_eq!(open.len() as u64, t.total.open_at_end.min(5));
        }
        assert_eq!(got, expected, "period {from:?} to {to:?}");
        for (key, o) in &expected {
            assert_eq!(
                (o.median_ms(), o.p90_ms()),
                (
                    spreadsheet_percentile(&o.times_ms, 0.5),
                    spreadsheet_percentile(&o.times_ms, 0.9)
                ),
                "{key:?}"
            );
        }
        let all: u64 = expected.values().map(|o| o.opened).sum();
        assert_eq!(r.total.opened, all);
    }
    // The whole input: what the replay published, in other words.
    let r = collector.report(&ReportOptions::default());
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count() as u64;
    assert_eq!(r.total.opened, count(Status::Open));
    assert_eq!(r.total.resolved(), count(Status::Resolved));
    assert_eq!(
        r.total.open_at_end,
        count(Status::Open) - count(Status::Resolved)
    );

    // The file read twice over (an at-least-once topic) gives the same
    // report, its duplicates counted.
    let twice = dir.join("twice.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&twice, format!("{text}{text}")).unwrap();
    let once = report(&["--input", file.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(
        report(&["--input", twice.to_str().unwrap(), "--format", "csv"]),
        once
    );
    let md = report(&["--input", twice.to_str().unwrap()]);
    assert!(
        md.contains(&format!(
            "Read: {} finding transitions of {} findings ({} duplicates ignored).",
            2 * findings.len(),
            r.findings,
            findings.len()
        )),
        "{md}"
    );
    // One chart per team in the HTML page.
    let html = report(&["--input", file.to_str().unwrap(), "--format", "html"]);
    assert_eq!(
        html.matches("<svg class=\"team-chart\"").count(),
        r.teams.len()
    );
    assert!(
        r.teams.len() >= 3,
        "HR, IT and app teams: {}",
        r.teams.len()
    );
    assert!(!html.contains("http://") && !html.contains("https://"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A transition in the contract's JSON; hours from 2026-11-02T00:00:00Z.
#[allow(clippy::too_many_arguments)]
fn transition(
    id: &str,
    status: &str,
    role: &str,
    team: &str,
    rule: &str,
    detected: i64,
    deadline: i64,
    at: i64,
) -> String {
    let t = |h: i64| {
        Ts::parse("2026-11-02T00:00:00Z")
            .unwrap()
            .plus(h * MS_PER_HOUR)
            .to_string()
    };
    serde_json::json!({
        "finding_id": id, "status": status, "rule": rule, "severity": "HIGH",
        "worker_id": format!("W{id}"),
        "subject": {"system": "directory", "directory": "ad", "app_id": null,
                    "account_id": format!("acct-{id}"), "entitlement": null},
        "summary": format!("Finding {id}."),
        "accountable_owner": {"role": "IDENTITY_GOVERNANCE_PROCESS_OWNER", "team": "identity-governance"},
        "contributing_owner": {"role": role, "team": team, "contact": null},
        "detected_at": t(detected), "remediation_deadline": t(deadline),
        "escalation": {"target": team, "level": if status == "OPEN" { 1 } else { 2 }},
        "evidence": [], "frameworks": [],
        "detector": {"version": "test", "instance": "test"},
        "transitioned_at": t(at),
    })
    .to_string()
}

#[test]
fn generated_transitions_with_known_answers() {
    let dir = tempdir("known");
    let mut lines = Vec::new();
    // it-identity: 100 findings, the i-th detected at hour i, its deadline
    // 24h later, resolved i hours after detection: 24 within (the 24th at
    // its deadline), 76 late; times 1h..100h: median 50.5h, p90 90.1h.
    for i in 1..=100 {
        let id = format!("it-{i}");
        let r = "LEAVER_DIRECTORY_ACCESS";
        lines.push(transition(
            &id,
            "OPEN",
            "IT",
            "it-identity",
            r,
            i,
            i + 24,
            i,
        ));
        if i > 24 {
            lines.push(transition(
                &id,
                "ESCALATED",
                "IT",
                "it-identity",
                r,
                i,
                i + 24,
                i + 24,
            ));
        }
        lines.push(transition(
            &id,
            "RESOLVED",
            "IT",
            "it-identity",
            r,
            i,
            i + 24,
            2 * i,
        ));
    }
    // hr-operations: 10 open findings detected at hours 0, 10, .., 90 with
    // 4h deadlines, the first 6 escalated before hour 60.
    for i in 0..10 {
        let id = format!("hr-{i}");
        let r = "CONTRACT_EXPIRED_ACCESS";
        let d = 10 * i;
        lines.push(transition(
            &id,
            "OPEN",
            "HR",
            "hr-operations",
            r,
            d,
            d + 4,
            d,
        ));
        lines.push(transition(
            &id,
            "ESCALATED",
            "HR",
            "hr-operations",
            r,
            d,
            d + 4,
            d + 4,
        ));
    }
    let file = dir.join("transitions.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let input = file.to_str().unwrap();

    let p = "2026-11-02T00:00:00Z,2026-11-11T00:00:00Z";
    assert_eq!(
        csv_rows(&report(&[
            "--input",
            input,
            "--format",
            "csv",
            "--from",
            "2026-11-02T00:00:00Z",
            "--to",
            "2026-11-11T00:00:00Z"
        ])),
        [
            // 50.5h = 181800 s, 90.1h = 324360 s.
            format!("rule,hr-operations,HR,CONTRACT_EXPIRED_ACCESS,{p},10,0,0,10,10,,"),
            format!("rule,it-identity,IT,LEAVER_DIRECTORY_ACCESS,{p},100,24,76,0,0,181800,324360"),
            format!("team,hr-operations,HR,,{p},10,0,0,10,10,,"),
            format!("team,it-identity,IT,,{p},100,24,76,0,0,181800,324360"),
            format!("all,,,,{p},110,24,76,10,10,181800,324360"),
        ]
    );
    // Up to hour 60: it-identity's findings 1..30 resolved (at 2i < 60),
    // 24 of them within; 30..59 open (30 is resolved at hour 60), those
    // escalated before hour 60 (30..35) overdue. hr-operations: 0..50 detected, 0..50
    // escalated by hour 54 < 60: 6 open, 6 overdue.
    let p = "2026-11-02T00:00:00Z,2026-11-04T12:00:00Z";
    let rows = csv_rows(&report(&[
        "--input",
        input,
        "--format",
        "csv",
        "--from",
        "2026-11-02T00:00:00Z",
        "--to",
        "2026-11-04T12:00:00Z",
    ]));
    // Times 1h..29h (2i < 60: i up to 29): median 15h = 54000 s, p90
    // 1h + 0.9 x 28 x 1h = 26.2h = 94320 s.
    assert_eq!(
        rows[..2],
        [
            format!("rule,hr-operations,HR,CONTRACT_EXPIRED_ACCESS,{p},6,0,0,6,6,,"),
            format!("rule,it-identity,IT,LEAVER_DIRECTORY_ACCESS,{p},59,24,5,30,6,54000,94320"),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sample's labels: `name{a="1",b="2"}` -> (name, {a: 1, b: 2}).
fn parse_sample(key: &str) -> (&str, BTreeMap<&str, &str>) {
    let Some((name, rest)) = key.split_once('{') else {
        return (key, BTreeMap::new());
    };
    let labels = rest
        .trim_end_matches('}')
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k, v.trim_matches('"')))
        })
        .collect();
    (name, labels)
}

/// Per (role, team, rule): a metric's value, summed.
fn by_owner(
    samples: &BTreeMap<String, f64>,
    metric: &str,
    only: &[(&str, &str)],
) -> BTreeMap<(String, String, String), i64> {
    let mut out = BTreeMap::new();
    for (key, v) in samples {
        let (name, labels) = parse_sample(key);
        if name != metric || only.iter().any(|(k, want)| labels.get(k) != Some(want)) {
            continue;
        }
        *out.entry((
            labels["role"].to_string(),
            labels["team"].to_string(),
            labels["rule"].to_string(),
        ))
        .or_default() += *v as i64;
    }
    out.retain(|_, v| *v != 0);
    out
}

/// Per (role, team, rule): a column of the CSV report's rule rows.
fn csv_column(csv: &str, column: &str) -> BTreeMap<(String, String, String), i64> {
    let header: Vec<&str> = render::CSV_HEADER.split(',').collect();
    let i = header.iter().position(|h| *h == column).unwrap();
    csv_rows(csv)
        .iter()
        .filter(|l| l.starts_with("rule,"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                (f[2].into(), f[1].into(), f[3].into()),
                f[i].parse().unwrap(),
            )
        })
        .filter(|(_, v): &(_, i64)| *v != 0)
        .collect()
}

/// A live detector's owner gauges and counters say what the report of its
/// findings topic says; a second detector, restoring the same partitions,
/// starts its gauges from what it restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_owner_metrics_agree_with_the_report_of_the_findings_topic() {
    let broker = Broker::mock();
    let s = Setup::new(&broker, "owners").await;
    s.produce_generated(11, 150, 300).await;
    let mut d = s.detector("first");
    s.wait_caught_up(Duration::from_secs(120), &mut [&mut d]);
    let samples = s.scrape();
    let csv = String::from_utf8(s.cli(&["report", "--kafka", "--format", "csv"])).unwrap();
    let open = csv_column(&csv, "open_at_end");
    let overdue = csv_column(&csv, "overdue_at_end");
    assert!(!open.is_empty() && !overdue.is_empty(), "{csv}");
    assert_eq!(
        by_owner(&samples, "driftwatch_owner_findings_open", &[]),
        open
    );
    assert_eq!(
        by_owner(&samples, "driftwatch_owner_findings_overdue", &[]),
        overdue
    );
    assert_eq!(
        by_owner(
            &samples,
            "driftwatch_owner_findings_resolved_total",
            &[("within_deadline", "true")]
        ),
        csv_column(&csv, "resolved_within_deadline")
    );
    assert_eq!(
        by_owner(
            &samples,
            "driftwatch_owner_findings_resolved_total",
            &[("within_deadline", "false")]
        ),
        csv_column(&csv, "resolved_late")
    );
    let resolved: i64 = csv_column(&csv, "resolved_within_deadline")
        .values()
        .sum::<i64>()
        + csv_column(&csv, "resolved_late").values().sum::<i64>();
    assert!(resolved > 0, "{csv}");
    assert_eq!(
        Setup::metric_sum(&samples, "driftwatch_owner_time_to_resolve_seconds_count"),
        resolved as f64
    );
    // Teams are the configured ones: nothing maps to `other` here.
    assert!(!samples.keys().any(|k| k.contains("team=\"other\"")));
    assert!(d.terminate().success(), "{}", d.log_text());

    // The next owner of the partitions restores them: its gauges start
    // where the first one's ended, with nothing new acknowledged.
    let mut d = s.detector("second");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    loop {
        d.assert_running();
        assert!(
            Instant::now() < deadline,
            "restored gauges (open, overdue) {seen:?}; the report says {open:?} {overdue:?}\n{}",
            d.log_text()
        );
        // Until its admin port is bound, there is nothing to scrape.
        if std::net::TcpStream::connect(s.admin).is_err() {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        let samples = s.scrape();
        let restored = (
            by_owner(&samples, "driftwatch_owner_findings_open", &[]),
            by_owner(&samples, "driftwatch_owner_findings_overdue", &[]),
        );
        if restored == (open.clone(), overdue.clone()) {
            assert_eq!(
                Setup::metric_sum(&samples, "driftwatch_owner_findings_resolved_total"),
                0.0
            );
            break;
        }
        seen = Some(restored);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(d.terminate().success(), "{}", d.log_text());
}
