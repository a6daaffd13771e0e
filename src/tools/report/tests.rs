//! Hand-made transitions with known answers.

use super::render::{self, duration};
use super::*;
use crate::model::event::System;
use crate::model::finding::{Detector, Escalation};
use crate::model::time::MS_PER_HOUR;

const H: i64 = MS_PER_HOUR;

/// Hour 0 of the tests' period: 2026-11-02T00:00:00Z.
fn hour(h: i64) -> Ts {
    Ts::parse("2026-11-02T00:00:00Z").unwrap().plus(h * H)
}

/// A transition of finding `id` of `team`, detected at hour `detected`
/// with its deadline at hour `deadline`, at hour `at`.
#[allow(clippy::too_many_arguments)]
fn t(
    id: &str,
    status: Status,
    team: &str,
    role: OwnerRole,
    rule: Rule,
    detected: i64,
    deadline: i64,
    at: i64,
) -> Finding {
    Finding {
        finding_id: id.to_string(),
        status,
        rule,
        severity: Severity::High,
        worker_id: Some(format!("W-{id}").into()),
        subject: Subject {
            system: System::Directory,
            directory: Some("ad".into()),
            app_id: None,
            account_id: Some(format!("acct-{id}").into()),
            entitlement: None,
        },
        summary: format!("finding {id}"),
        accountable_owner: AccountableOwner {
            role: OwnerRole::IdentityGovernanceProcessOwner,
            team: "identity-governance".into(),
        },
        contributing_owner: ContributingOwner {
            role,
            team: team.into(),
            contact: Some(format!("{team}@example.com").into()),
        },
        detected_at: hour(detected),
        remediation_deadline: hour(deadline),
        escalation: Escalation {
            target: team.into(),
            level: if status == Status::Escalated { 2 } else { 1 },
        },
        evidence: Vec::new(),
        frameworks: Vec::new(),
        detector: Detector {
            version: "test".into(),
            instance: "test".into(),
        },
        transitioned_at: hour(at),
    }
}

use OwnerRole::{AppOwner, Hr, It};
use Status::{Escalated as E, Open as O, Resolved as R};

const IT_TEAM: &str = "it-identity";
const LDA: Rule = Rule::LeaverDirectoryAccess;
const HR_TEAM: &str = "hr-operations";
const CEA: Rule = Rule::ContractExpiredAccess;
const APP_TEAM: &str = "sales-operations";
const LAA: Rule = Rule::LeaverAppAccess;

/// The period is hours 0 to 168 (one week). Each finding's fate is in
/// its comment.
fn transitions() -> Vec<Finding> {
    let it = |id, s, d, dl, at| t(id, s, IT_TEAM, It, LDA, d, dl, at);
    let hr = |id, s, d, dl, at| t(id, s, HR_TEAM, Hr, CEA, d, dl, at);
    let app = |id, s, d, dl, at| t(id, s, APP_TEAM, AppOwner, LAA, d, dl, at);
    let mut resolved_with_level_2 = app("m", R, -10, 14, 180);
    resolved_with_level_2.escalation.level = 2;
    vec![
        // a: opened, resolved within (4h).
        it("a", O, 1, 25, 1),
        it("a", R, 1, 25, 5),
        // b: opened, resolved within (10h).
        it("b", O, 2, 26, 2),
        it("b", R, 2, 26, 12),
        // c: opened, escalated, resolved late (27h).
        it("c", O, 3, 27, 3),
        it("c", E, 3, 27, 27),
        it("c", R, 3, 27, 30),
        // d: opened, escalated, open and overdue at the end.
        it("d", O, 4, 28, 4),
        it("d", E, 4, 28, 28),
        // e: opened near the end, open, its deadline after the end.
        it("e", O, 160, 184, 160),
        // f: opened before the period, resolved late in it (58h).
        it("f", O, -48, -24, -48),
        it("f", E, -48, -24, -24),
        it("f", R, -48, -24, 10),
        // g: opened and resolved before the period: not in the report.
        it("g", O, -100, -76, -100),
        it("g", E, -100, -76, -76),
        it("g", R, -100, -76, -50),
        // h: opened, escalated, resolved after the end: open and overdue.
        it("h", O, 100, 124, 100),
        it("h", E, 100, 124, 124),
        it("h", R, 100, 124, 170),
        // i: opened, resolved after the end, its deadline after it: open.
        it("i", O, 150, 174, 150),
        it("i", R, 150, 174, 200),
        // j: resolved exactly at its deadline: within (4h).
        hr("j", O, 10, 14, 10),
        hr("j", R, 10, 14, 14),
        // k: delivered twice (at-least-once): counted once, within (1h).
        hr("k", O, 20, 44, 20),
        hr("k", O, 20, 44, 20),
        hr("k", R, 20, 44, 21),
        hr("k", R, 20, 44, 21),
        // l: only its ESCALATED transition read: opened, open, overdue.
        app("l", E, 50, 74, 74),
        // m: detected before the period, resolved after it, escalated
        // (level 2 on its RESOLVED transition, the only one read):
        // open and overdue at the end, not opened in the period.
        resolved_with_level_2,
    ]
}

fn week() -> ReportOptions {
    ReportOptions {
        from: Some(hour(0)),
        to: Some(hour(168)),
        oldest: 3,
    }
}

fn collect(ts: Vec<Finding>) -> Collector {
    let mut c = Collector::new();
    for t in ts {
        c.add(t);
    }
    c
}

fn row<'a>(r: &'a Report, team: &str, rule: Rule) -> &'a Outcome {
    &r.teams
        .iter()
        .find(|t| t.team == team)
        .unwrap_or_else(|| panic!("no team {team}"))
        .rows
        .iter()
        .find(|row| row.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} row for {team}"))
        .outcome
}

/// (opened, within, late, open, overdue, median h, p90 h)
fn counts(o: &Outcome) -> (u64, u64, u64, u64, u64, Option<f64>, Option<f64>) {
    let hours = |ms: Option<i64>| ms.map(|ms| ms as f64 / H as f64);
    (
        o.opened,
        o.resolved_within,
        o.resolved_late,
        o.open_at_end,
        o.overdue_at_end,
        hours(o.median_ms()),
        hours(o.p90_ms()),
    )
}

#[test]
fn percentiles_interpolate_between_ranks_as_percentile_inc() {
    assert_eq!(percentile(&[], 0.5), None);
    assert_eq!(percentile(&[7], 0.5), Some(7));
    assert_eq!(percentile(&[7], 0.9), Some(7));
    let ten: Vec<i64> = (1..=10).map(|h| h * H).collect();
    assert_eq!(percentile(&ten, 0.5), Some(5 * H + H / 2)); // 5.5h
    assert_eq!(percentile(&ten, 0.9), Some(9 * H + H / 10)); // 9.1h
    assert_eq!(percentile(&[10, 20, 30], 0.5), Some(20));
    assert_eq!(percentile(&[10, 20, 30], 0.9), Some(28));
    assert_eq!(percentile(&[1000, 2000, 3000, 4000], 0.9), Some(3700));
    assert_eq!(percentile(&[1, 2], 0.0), Some(1));
    assert_eq!(percentile(&[1, 2], 1.0), Some(2));
}

#[test]
fn a_week_per_team_and_rule() {
    let r = collect(transitions()).report(&week());
    assert_eq!(r.transitions, 29);
    assert_eq!(r.duplicates, 2);
    assert_eq!(r.findings, 13);
    assert_eq!(r.as_of, Some(hour(168)));
    let names: Vec<&str> = r.teams.iter().map(|t| t.team.as_str()).collect();
    assert_eq!(names, [HR_TEAM, IT_TEAM, APP_TEAM]);

    // opened a b c d e h i; within a b; late c f; open d e h i; overdue
    // d h; times 4h 10h 27h 58h: median 18.5h, p90 27h + 0.7 x 31h.
    assert_eq!(
        counts(row(&r, IT_TEAM, LDA)),
        (7, 2, 2, 4, 2, Some(18.5), Some(48.7))
    );
    // j at its deadline and k once: times 1h 4h.
    assert_eq!(
        counts(row(&r, HR_TEAM, CEA)),
        (2, 2, 0, 0, 0, Some(2.5), Some(3.7))
    );
    assert_eq!(counts(row(&r, APP_TEAM, LAA)), (1, 0, 0, 2, 2, None, None));
    // All teams: times 1h 4h 4h 10h 27h 58h.
    assert_eq!(counts(&r.total), (10, 4, 2, 6, 4, Some(7.0), Some(42.5)));
    assert_eq!(r.total.within_share(), Some(4.0 / 6.0));

    // The oldest open findings, oldest first, three at most.
    let it = &r.teams[1];
    assert_eq!(it.roles, [It]);
    let oldest: Vec<(&str, bool, i64)> = it
        .oldest_open
        .iter()
        .map(|f| (f.finding_id.as_str(), f.overdue, f.age_ms / H))
        .collect();
    assert_eq!(
        oldest,
        [("d", true, 164), ("h", true, 68), ("i", false, 18)]
    );
    let app: Vec<&str> = r.teams[2]
        .oldest_open
        .iter()
        .map(|f| f.finding_id.as_str())
        .collect();
    assert_eq!(app, ["m", "l"]);
    assert_eq!(
        r.teams[2].oldest_open[0]
            .contributing_owner
            .contact
            .as_deref(),
        Some("sales-operations@example.com")
    );
}

#[test]
fn without_a_period_everything_read_counts_up_to_its_stream_time() {
    let r = collect(transitions()).report(&ReportOptions::default());
    assert_eq!(r.from, Some(hour(-100)));
    assert_eq!(r.to, None);
    assert_eq!(r.as_of, Some(hour(200)));
    // Resolved: a b c f g h i j k m; open: d e l; overdue: d l.
    let o = &r.total;
    assert_eq!(o.opened, 13);
    assert_eq!(o.resolved(), 10);
    assert_eq!((o.open_at_end, o.overdue_at_end), (3, 2));
    // h and i resolved after their deadlines, at 170h and 200h: late.
    assert_eq!(row(&r, IT_TEAM, LDA).resolved_late, 5); // c f g h i
}

#[test]
fn the_order_of_transitions_and_their_redelivery_change_nothing() {
    let mut ts = transitions();
    let forward = collect(ts.clone()).report(&week());
    ts.reverse();
    let mut again = ts.clone();
    again.extend(ts);
    let c = collect(again);
    let backward = c.report(&week());
    assert_eq!(backward.duplicates, 29 + 2);
    assert_eq!(backward.teams, forward.teams);
    assert_eq!(backward.total, forward.total);
}

#[test]
fn a_period_boundary_includes_its_start_and_excludes_its_end() {
    let ts = vec![
        t("x", O, IT_TEAM, It, LDA, 0, 24, 0),
        t("x", E, IT_TEAM, It, LDA, 0, 24, 24),
        t("y", O, IT_TEAM, It, LDA, 24, 48, 24),
    ];
    let c = collect(ts);
    // [0, 24): x opened; its escalation at 24 is not before the end.
    let r = c.report(&ReportOptions {
        from: Some(hour(0)),
        to: Some(hour(24)),
        oldest: 10,
    });
    assert_eq!(counts(&r.total), (1, 0, 0, 1, 0, None, None));
    // [24, 25): y opened; x is open and overdue.
    let r = c.report(&ReportOptions {
        from: Some(hour(24)),
        to: Some(hour(25)),
        oldest: 10,
    });
    assert_eq!(counts(&r.total), (1, 0, 0, 2, 1, None, None));
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(duration(0), "0s");
    assert_eq!(duration(45_000), "45s");
    assert_eq!(duration(12 * 60_000), "12m");
    assert_eq!(duration(5 * H + H / 2), "5h 30m");
    assert_eq!(duration(24 * H), "1d");
    assert_eq!(duration(76 * H), "3d 4h");
    assert_eq!(duration(-5), "0s");
    // Rounded to the smaller unit shown.
    assert_eq!(duration(59_600), "1m");
    assert_eq!(duration(48 * H + 42 * 60_000), "2d 1h");
    assert_eq!(duration(23 * H + 59 * 60_000 + 40_000), "1d");
}

#[test]
fn markdown_has_a_summary_and_a_section_per_team() {
    let r = collect(transitions()).report(&week());
    let md = render::markdown(&r);
    assert!(md.starts_with("# Control performance by owner\n"), "{md}");
    assert!(md.contains("Period: 2026-11-02T00:00:00Z to 2026-11-09T00:00:00Z."));
    assert!(md.contains("Read: 29 finding transitions of 13 findings (2 duplicates ignored)."));
    for line in [
        "| it-identity | IT | 7 | 2 | 2 | 50% | 4 | 2 | 18h 30m | 2d 1h |",
        "| hr-operations | HR | 2 | 2 | 0 | 100% | 0 | 0 | 2h 30m | 3h 42m |",
        "| sales-operations | APP_OWNER | 1 | 0 | 0 | – | 2 | 2 | – | – |",
        "| All teams | | 10 | 4 | 2 | 67% | 6 | 4 | 7h | 1d 19h |",
        "## it-identity (IT)",
        "| LEAVER_DIRECTORY_ACCESS | 7 | 2 | 2 | 50% | 4 | 2 | 18h 30m | 2d 1h |",
        "Oldest open findings (3 of 4 open):",
        "No finding open at the end of the period.",
    ] {
        assert!(md.contains(line), "{line}\nnot in\n{md}");
    }
    assert!(md.contains(
        "| 2026-11-02T04:00:00Z | 2026-11-03T04:00:00Z | 6d 20h | yes | LEAVER_DIRECTORY_ACCESS | HIGH | W-d | ad/acct-d | `d` | IT it-identity (it-identity@example.com) | identity-governance |"
    ), "{md}");
}

#[test]
fn csv_has_a_row_per_team_and_rule_then_per_team_then_all() {
    let r = collect(transitions()).report(&week());
    let csv = render::csv(&r);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], render::CSV_HEADER);
    let p = "2026-11-02T00:00:00Z,2026-11-09T00:00:00Z";
    assert_eq!(
        lines[1..],
        [
            format!("rule,hr-operations,HR,CONTRACT_EXPIRED_ACCESS,{p},2,2,0,0,0,9000,13320"),
            format!("rule,it-identity,IT,LEAVER_DIRECTORY_ACCESS,{p},7,2,2,4,2,66600,175320"),
            format!("rule,sales-operations,APP_OWNER,LEAVER_APP_ACCESS,{p},1,0,0,2,2,,"),
            format!("team,hr-operations,HR,,{p},2,2,0,0,0,9000,13320"),
            format!("team,it-identity,IT,,{p},7,2,2,4,2,66600,175320"),
            format!("team,sales-operations,APP_OWNER,,{p},1,0,0,2,2,,"),
            format!("all,,,,{p},10,4,2,6,4,25200,153000"),
        ]
    );
}

#[test]
fn html_is_one_page_with_a_chart_per_team_and_no_url() {
    let mut ts = transitions();
    // A team name that would be markup.
    ts.push(t("z", O, "<b>&team", It, LDA, 5, 29, 5));
    let r = collect(ts).report(&week());
    let html = render::html(&r);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg class=\"team-chart\"").count(), 4);
    assert_eq!(html.matches("</svg>").count(), 4);
    assert_eq!(html.matches("<section class=\"team\"").count(), 4);
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("<img"));
    assert!(!html.contains("<b>&team"));
    assert!(html.contains("&lt;b&gt;&amp;team"));
    // it-identity's bar: 2 within, 2 late, 2 open, 2 overdue.
    for class in ["within", "late", "open", "overdue"] {
        assert!(
            html.contains(&format!("<rect class=\"bar bar-{class}\"")),
            "{class}"
        );
    }
    assert!(html.contains("<title>LEAVER_DIRECTORY_ACCESS: 2 resolved late</title>"));
}

#[test]
fn an_empty_period_says_so() {
    let r = collect(transitions()).report(&ReportOptions {
        from: Some(hour(-1000)),
        to: Some(hour(-900)),
        oldest: 10,
    });
    assert!(r.is_empty());
    assert!(render::markdown(&r).contains("No finding was open or changed in the period."));
    assert!(!render::html(&r).contains("<svg"));
    assert_eq!(render::csv(&r).lines().count(), 2);
}

#[test]
fn input_lines_are_read_with_blank_ones_passed_over_and_bad_ones_named() {
    // A transition as `replay --output` writes it (of the shipped examples).
    let line = r#"{"finding_id":"bf39a2d42eea42e100bf11dc64776ab1","status":"OPEN","rule":"ATTRIBUTE_MISMATCH","severity":"LOW","worker_id":"W000001","subject":{"system":"directory","directory":"ad","app_id":null,"account_id":"acct-0-HUMAN","entitlement":null},"summary":"Directory account `acct-0-HUMAN` in `ad` disagrees with HR on department for worker `W000001`.","accountable_owner":{"role":"IDENTITY_GOVERNANCE_PROCESS_OWNER","team":"identity-governance"},"contributing_owner":{"role":"IT","team":"it-identity","contact":"it-identity@example.com"},"detected_at":"2026-11-03T13:05:00Z","remediation_deadline":"2026-11-10T13:05:00Z","escalation":{"target":"it-identity","level":1},"evidence":[{"topic":"hr.worker-events","partition":0,"offset":0,"event_id":"hr-ex-1","event_type":"HIRE","occurred_at":"2026-11-03T09:00:00Z"},{"topic":"directory.account-changes","partition":0,"offset":0,"event_id":"dir-ex-ACCOUNT_CREATED-HUMAN","event_type":"ACCOUNT_CREATED","occurred_at":"2026-11-03T09:05:00Z"}],"frameworks":["NIST CSF 2.0 GV.RR-02","NIST CSF 2.0 PR.AA-01","NIST SP 800-63"],"detector":{"version":"0.1.0","instance":"driftwatch"},"transitioned_at":"2026-11-03T13:05:00Z"}"#;
    let text = format!("{line}\n\n   \nnot json\n{line}\n");
    let mut c = Collector::new();
    let bad = read_lines(text.as_bytes(), &mut c).unwrap();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].line, 4);
    assert_eq!(c.read(), 2);
    let r = c.report(&ReportOptions::default());
    assert_eq!((r.duplicates, r.findings), (1, 1));

    let err = read_lines(&b"Obj\x01\x04rest"[..], &mut Collector::new()).unwrap_err();
    assert!(matches!(err, InputError::AvroContainer), "{err}");
    let ocsf = br#"{"class_uid":2004,"activity_id":1}"#;
    let err = read_lines(&ocsf[..], &mut Collector::new()).unwrap_err();
    assert!(matches!(err, InputError::Ocsf), "{err}");
}
