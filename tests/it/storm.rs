//! SOURCE_STORM: a broken HR feed gives one critical finding, not a page per
//! worker; the storm counts findings as they would open, over tracked workers,
//! holds only its own burst and ends.

use driftwatch::config::Config;
use driftwatch::detect::engine::Engine;
use driftwatch::detect::rules::Rule;
use driftwatch::model::event::{Envelope, Origin, System};
use driftwatch::model::finding::{Finding, OwnerRole, Severity, Status};
use driftwatch::model::time::Ts;
use serde_json::json;
use std::sync::Arc;

struct Feed {
    engine: Engine,
    out: Vec<Finding>,
    offset: i64,
}

impl Feed {
    fn new() -> Feed {
        Feed::with_config(Config::default_config())
    }

    fn with_config(cfg: Config) -> Feed {
        Feed {
            engine: Engine::new(Arc::new(cfg)),
            out: Vec::new(),
            offset: 0,
        }
    }

    /// Hires `n` workers, each with a directory account.
    fn populate(&mut self, n: usize) {
        let start = t("2026-11-02T09:00:00Z");
        for w in 0..n {
            self.hr("HIRE", w, start);
            self.account(w, start.plus(60_000));
        }
        assert!(self.drain().is_empty());
    }

    fn send(&mut self, system: System, v: serde_json::Value) {
        self.offset += 1;
        let event = driftwatch::codec::json::decode_json(system, v.to_string().as_bytes()).unwrap();
        let topic = match system {
            System::Hr => "hr.worker-events",
            System::Directory => "directory.account-changes",
            System::App => "app.entitlement-changes",
        };
        let origin = Origin {
            topic: topic.into(),
            partition: 0,
            offset: self.offset,
        };
        self.engine.apply(Envelope { origin, event }, &mut self.out);
    }

    fn hr(&mut self, kind: &str, worker: usize, at: Ts) {
        self.send(
            System::Hr,
            json!({"event_id": format!("hr-{}", self.offset), "event_type": kind, "occurred_at": at.to_string(),
                   "effective_at": at.to_string(), "source_system": "workday", "worker_id": format!("w{worker}"),
                   "worker_type": "EMPLOYEE"}),
        );
    }

    fn account(&mut self, worker: usize, at: Ts) {
        self.send(
            System::Directory,
            json!({"event_id": format!("d-{}", self.offset), "event_type": "ACCOUNT_CREATED", "occurred_at": at.to_string(),
                   "directory": "entra", "account_id": format!("a{worker}"), "worker_id": format!("w{worker}"),
                   "account_kind": "HUMAN"}),
        );
    }

    fn disable(&mut self, worker: usize, at: Ts) {
        self.send(
            System::Directory,
            json!({"event_id": format!("d-{}", self.offset), "event_type": "ACCOUNT_DISABLED", "occurred_at": at.to_string(),
                   "directory": "entra", "account_id": format!("a{worker}"), "worker_id": format!("w{worker}"),
                   "account_kind": "HUMAN"}),
        );
    }

    fn drain(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.out)
    }
}

fn t(s: &str) -> Ts {
    Ts::parse(s).unwrap()
}

fn count(fs: &[Finding], rule: Rule, status: Status) -> usize {
    fs.iter()
        .filter(|f| f.rule == rule && f.status == status)
        .count()
}

fn organisation(n: usize) -> Feed {
    let mut feed = Feed::new();
    feed.populate(n);
    feed
}

#[test]
fn termination_storm_pages_up_to_the_limit_then_opens_one_finding() {
    let mut feed = organisation(1000);
    // 300 terminations within two minutes: a broken HR feed.
    let at = t("2026-11-10T17:00:00Z");
    for w in 0..300 {
        feed.hr("TERMINATION", w, at.plus((w as i64) * 400));
    }
    // Nothing would open before the 1h SLA expires.
    assert!(feed.drain().is_empty());

    // The SLAs expire: the first 50 findings are within the limit
    // (max(50, 5% of 1000)) and open; the 51st opens the storm, and it
    // and the rest of the burst are held in state.
    feed.engine
        .advance_to(at.plus(2 * 3_600_000), &mut feed.out);
    let opened = feed.drain();
    assert_eq!(
        count(&opened, Rule::SourceStorm, Status::Open),
        1,
        "{opened:#?}"
    );
    assert_eq!(
        count(&opened, Rule::LeaverDirectoryAccess, Status::Open),
        50,
        "{opened:#?}"
    );
    assert_eq!(opened.len(), 51);
    let storm = opened.last().unwrap();
    assert_eq!(storm.rule, Rule::SourceStorm);
    assert_eq!(storm.detected_at, at.plus(3_600_000 + 50 * 400));
    assert_eq!(storm.severity, Severity::Critical);
    assert_eq!(storm.contributing_owner.role, OwnerRole::Hr);
    assert_eq!(storm.subject.system, System::Hr);
    assert!(
        storm.summary.contains("LEAVER_DIRECTORY_ACCESS"),
        "{}",
        storm.summary
    );
    assert!(storm
        .evidence
        .iter()
        .all(|e| e.event_type.as_ref() == "TERMINATION"));
    assert!(!storm.evidence.is_empty());
    assert_eq!(feed.engine.held(), 250);

    // HR fixes the feed: 290 corrections restore the workers. The 50 open
    // findings resolve; the storm holds while the corrections flow, and
    // one quiet window after the last it clears and the ten still
    // drifting are emitted.
    let fix = at.plus(3 * 3_600_000);
    for w in 0..290 {
        feed.hr("REHIRE", w, fix.plus(w as i64 * 100));
    }
    let fixed = feed.drain();
    assert_eq!(
        count(&fixed, Rule::LeaverDirectoryAccess, Status::Resolved),
        50
    );
    assert_eq!(fixed.len(), 50, "no page while the feed is being corrected");
    feed.engine.advance_to(fix.plus(10 * 60_000), &mut feed.out);
    let after = feed.drain();
    assert_eq!(
        count(&after, Rule::SourceStorm, Status::Resolved),
        1,
        "{after:#?}"
    );
    assert_eq!(
        count(&after, Rule::LeaverDirectoryAccess, Status::Open),
        10,
        "{after:#?}"
    );
    let cleared = fix.plus(289 * 100 + 5 * 60_000);
    assert!(after.iter().all(|f| f.transitioned_at == cleared));
    assert_eq!(
        after[0].rule,
        Rule::SourceStorm,
        "the storm closes before the held findings open"
    );
    let mut workers: Vec<_> = after.iter().filter_map(|f| f.worker_id.clone()).collect();
    workers.sort();
    workers.dedup();
    assert_eq!(workers.len(), 10);
    assert!(workers
        .iter()
        .all(|w| w[1..].parse::<usize>().unwrap() >= 290));
    assert_eq!(feed.engine.held(), 0);
}

#[test]
fn storm_escalates_when_it_outlasts_its_deadline() {
    let mut feed = organisation(200);
    let at = t("2026-11-10T17:00:00Z");
    for w in 0..120 {
        feed.hr("TERMINATION", w, at.plus(w as i64 * 1000));
    }
    feed.engine
        .advance_to(at.plus(6 * 3_600_000), &mut feed.out);
    let fs = feed.drain();
    assert_eq!(count(&fs, Rule::SourceStorm, Status::Open), 1);
    let esc: Vec<_> = fs
        .iter()
        .filter(|f| f.status == Status::Escalated)
        .collect();
    assert_eq!(esc.len(), 1, "{fs:#?}");
    assert_eq!(esc[0].rule, Rule::SourceStorm);
    assert_eq!(esc[0].escalation.level, 2);
    assert_eq!(
        esc[0].transitioned_at,
        esc[0].detected_at.plus(4 * 3_600_000)
    );
    // The 51st finding to open (more than max(50, 5% of 200) = 50) started
    // it, when its SLA expired.
    assert_eq!(esc[0].detected_at, at.plus(3_600_000 + 50 * 1000));
}

#[test]
fn below_the_threshold_every_worker_is_paged() {
    let mut feed = organisation(200);
    let at = t("2026-11-10T17:00:00Z");
    for w in 0..50 {
        feed.hr("TERMINATION", w, at.plus(w as i64 * 1000));
    }
    feed.engine
        .advance_to(at.plus(2 * 3_600_000), &mut feed.out);
    let fs = feed.drain();
    assert_eq!(count(&fs, Rule::SourceStorm, Status::Open), 0);
    assert_eq!(count(&fs, Rule::LeaverDirectoryAccess, Status::Open), 50);
}

/// `n` terminations a second apart from 17:00, then the SLAs expire.
fn leavers(feed: &mut Feed, n: usize) -> Vec<Finding> {
    let at = t("2026-11-10T17:00:00Z");
    for w in 0..n {
        feed.hr("TERMINATION", w, at.plus(w as i64 * 1000));
    }
    feed.engine
        .advance_to(at.plus(3_600_000 + 4 * 60_000), &mut feed.out);
    feed.drain()
}

#[test]
fn over_1010_workers_51_findings_are_a_storm() {
    // 5% of 1,010 is 50.5: 51 findings are more than the limit.
    let mut feed = organisation(1010);
    let fs = leavers(&mut feed, 51);
    assert_eq!(count(&fs, Rule::SourceStorm, Status::Open), 1, "{fs:#?}");
    assert_eq!(count(&fs, Rule::LeaverDirectoryAccess, Status::Open), 50);
    assert_eq!(feed.engine.held(), 1);
}

#[test]
fn over_1010_workers_50_findings_are_not_a_storm() {
    let mut feed = organisation(1010);
    let fs = leavers(&mut feed, 50);
    assert_eq!(count(&fs, Rule::SourceStorm, Status::Open), 0, "{fs:#?}");
    assert_eq!(count(&fs, Rule::LeaverDirectoryAccess, Status::Open), 50);
}

#[test]
fn uncorrelated_accounts_and_unknown_worker_ids_are_not_tracked_workers() {
    let mut feed = organisation(1000);
    // 200 keys that are not workers: disabled accounts with no worker_id,
    // and with worker_ids HR has never sent. Counted as workers, they
    // would raise the limit to 5% of 1,200 = 60.
    let at = t("2026-11-03T09:00:00Z");
    for i in 0..200 {
        let worker_id = if i % 2 == 0 {
            serde_json::Value::Null
        } else {
            json!(format!("x{i}"))
        };
        feed.send(
            System::Directory,
            json!({"event_id": format!("x-{i}"), "event_type": "ACCOUNT_CREATED", "occurred_at": at.to_string(),
                   "directory": "entra", "account_id": format!("x{i}"), "worker_id": worker_id,
                   "account_kind": "HUMAN", "enabled": false}),
        );
    }
    assert_eq!(feed.engine.tracked(), 1200);
    assert_eq!(feed.engine.workers(), 1000);
    let fs = leavers(&mut feed, 51);
    assert_eq!(count(&fs, Rule::SourceStorm, Status::Open), 1, "{fs:#?}");
}

#[test]
fn a_mass_change_remediated_within_its_sla_opens_nothing() {
    let mut feed = organisation(1000);
    let at = t("2026-11-10T17:00:00Z");
    for w in 0..300 {
        feed.hr("TERMINATION", w, at.plus(w as i64 * 400));
    }
    // IT disables every account within the hour.
    for w in 0..300 {
        feed.disable(w, at.plus(30 * 60_000 + w as i64 * 400));
    }
    feed.engine
        .advance_to(at.plus(3 * 86_400_000), &mut feed.out);
    let fs = feed.drain();
    assert!(fs.is_empty(), "{fs:#?}");
    assert_eq!(feed.engine.stats().held, 0);
}

#[test]
fn only_findings_that_would_open_count_towards_a_storm() {
    let mut feed = organisation(1000);
    let at = t("2026-11-10T17:00:00Z");
    for w in 0..300 {
        feed.hr("TERMINATION", w, at.plus(w as i64 * 400));
    }
    // 260 of the 300 are remediated within the SLA: 40 would open.
    for w in 40..300 {
        feed.disable(w, at.plus(30 * 60_000 + w as i64 * 400));
    }
    feed.engine
        .advance_to(at.plus(2 * 3_600_000), &mut feed.out);
    let fs = feed.drain();
    assert_eq!(count(&fs, Rule::SourceStorm, Status::Open), 0, "{fs:#?}");
    assert_eq!(count(&fs, Rule::LeaverDirectoryAccess, Status::Open), 40);
}

#[test]
fn an_unrelated_finding_after_the_burst_is_published_on_time() {
    let mut feed = organisation(1000);
    let at = t("2026-11-10T17:00:00Z");
    for w in 0..300 {
        feed.hr("TERMINATION", w, at.plus(w as i64 * 400));
    }
    feed.engine
        .advance_to(at.plus(2 * 3_600_000), &mut feed.out);
    assert_eq!(feed.engine.held(), 250);
    feed.drain();
    // Nobody fixes the burst. Three hours later another worker leaves.
    let leaver = at.plus(3 * 3_600_000);
    feed.hr("TERMINATION", 500, leaver);
    feed.engine
        .advance_to(leaver.plus(3_600_000), &mut feed.out);
    let fs = feed.drain();
    assert_eq!(fs.len(), 1, "{fs:#?}");
    assert_eq!(fs[0].rule, Rule::LeaverDirectoryAccess);
    assert_eq!(fs[0].status, Status::Open);
    assert_eq!(fs[0].worker_id.as_deref(), Some("w500"));
    assert_eq!(fs[0].detected_at, leaver.plus(3_600_000));
    // The storm still holds its own burst.
    assert_eq!(
        feed.engine.active_storms(),
        vec![Rule::LeaverDirectoryAccess]
    );
    assert_eq!(feed.engine.held(), 250);
}

#[test]
fn a_storm_nobody_fixes_ends_after_max_hold_and_publishes_its_burst() {
    let mut feed = organisation(1000);
    let at = t("2026-11-10T17:00:00Z");
    for w in 0..300 {
        feed.hr("TERMINATION", w, at.plus(w as i64 * 400));
    }
    let opened_at = at.plus(3_600_000 + 50 * 400);
    let end = opened_at.plus(24 * 3_600_000);
    feed.engine.advance_to(end.plus(-1), &mut feed.out);
    let before = feed.drain();
    assert_eq!(count(&before, Rule::SourceStorm, Status::Open), 1);
    assert_eq!(count(&before, Rule::SourceStorm, Status::Resolved), 0);
    assert_eq!(feed.engine.held(), 250);
    feed.engine.advance_to(end, &mut feed.out);
    let after = feed.drain();
    assert_eq!(after[0].rule, Rule::SourceStorm);
    assert_eq!(after[0].status, Status::Resolved);
    assert_eq!(after[0].transitioned_at, end);
    assert_eq!(
        count(&after, Rule::LeaverDirectoryAccess, Status::Open),
        250,
        "{after:#?}"
    );
    assert!(after
        .iter()
        .all(|f| f.detected_at == end || f.rule == Rule::SourceStorm));
    assert_eq!(feed.engine.held(), 0);
    assert!(feed.engine.active_storms().is_empty());
}

#[test]
fn max_hold_is_configurable() {
    let cfg = Config::from_toml("[storm]\nmax_hold = \"6h\"\n").unwrap();
    let mut feed = Feed::with_config(cfg);
    feed.populate(1000);
    let at = t("2026-11-10T17:00:00Z");
    for w in 0..300 {
        feed.hr("TERMINATION", w, at.plus(w as i64 * 400));
    }
    let end = at.plus(3_600_000 + 50 * 400 + 6 * 3_600_000);
    feed.engine.advance_to(end, &mut feed.out);
    let fs = feed.drain();
    let resolved: Vec<_> = fs
        .iter()
        .filter(|f| f.rule == Rule::SourceStorm && f.status == Status::Resolved)
        .collect();
    assert_eq!(resolved.len(), 1, "{fs:#?}");
    assert_eq!(resolved[0].transitioned_at, end);
    assert_eq!(feed.engine.held(), 0);
}

#[test]
fn duplicates_are_counted_not_applied() {
    let mut feed = organisation(3);
    let before = feed.engine.stats().events;
    let ev = json!({"event_id": "dup-1", "event_type": "TERMINATION", "occurred_at": "2026-11-10T17:00:00Z",
                    "effective_at": "2026-11-10T17:00:00Z", "source_system": "workday", "worker_id": "w1",
                    "worker_type": "EMPLOYEE"});
    for _ in 0..3 {
        feed.send(System::Hr, ev.clone());
    }
    assert_eq!(feed.engine.stats().events, before + 1);
    assert_eq!(feed.engine.stats().duplicates, 2);
}

#[test]
fn a_storm_of_orphan_accounts_is_attributed_to_their_directory() {
    let mut feed = organisation(100);
    // A directory connector drops employeeID: 60 enabled accounts with no
    // worker_id within a minute; their 1h SLAs expire together.
    let at = t("2026-11-10T17:00:00Z");
    for i in 0..60 {
        feed.send(
            System::Directory,
            json!({"event_id": format!("o-{i}"), "event_type": "ACCOUNT_CREATED",
                   "occurred_at": at.plus(i * 1000).to_string(), "directory": "ad",
                   "account_id": format!("o{i}"), "worker_id": null, "account_kind": "HUMAN"}),
        );
    }
    feed.engine
        .advance_to(at.plus(2 * 3_600_000), &mut feed.out);
    let fs = feed.drain();
    // The first 50 open; the storm holds the other ten while more than
    // the limit of its findings still drift.
    assert_eq!(count(&fs, Rule::OrphanAccount, Status::Open), 50);
    assert_eq!(feed.engine.held(), 10);
    let storm: Vec<_> = fs.iter().filter(|f| f.rule == Rule::SourceStorm).collect();
    assert_eq!(storm.len(), 1, "{fs:#?}");
    assert_eq!(storm[0].contributing_owner.role, OwnerRole::It);
    assert_eq!(storm[0].subject.directory.as_deref(), Some("ad"));
    assert!(storm[0].summary.contains("ORPHAN_ACCOUNT"));
    assert!(!storm[0].evidence.is_empty());
    assert!(storm[0]
        .evidence
        .iter()
        .all(|e| e.event_type.as_ref() == "ACCOUNT_CREATED"));
}

#[test]
fn a_storm_ends_once_no_more_than_the_limit_of_its_findings_still_drift() {
    let mut feed = organisation(200);
    let fs = leavers(&mut feed, 60);
    assert_eq!(count(&fs, Rule::SourceStorm, Status::Open), 1);
    assert_eq!(count(&fs, Rule::LeaverDirectoryAccess, Status::Open), 50);
    assert_eq!(feed.engine.held(), 10);
    // Nine of the published findings are fixed: 51 of the storm's 60
    // still drift, more than the limit, and it keeps holding.
    let fix = t("2026-11-10T19:00:00Z");
    for w in 0..9 {
        feed.disable(w, fix.plus(w as i64 * 1000));
    }
    feed.engine.advance_to(fix.plus(3_600_000), &mut feed.out);
    let fs = feed.drain();
    assert_eq!(count(&fs, Rule::LeaverDirectoryAccess, Status::Resolved), 9);
    assert_eq!(fs.len(), 9, "{fs:#?}");
    assert_eq!(feed.engine.held(), 10);
    // A tenth: 50 still drift. One quiet window later the storm clears
    // and the ten it held open.
    let tenth = fix.plus(2 * 3_600_000);
    feed.disable(9, tenth);
    let cleared = tenth.plus(5 * 60_000);
    feed.engine.advance_to(cleared.plus(-1), &mut feed.out);
    assert_eq!(feed.drain().len(), 1, "the tenth resolves, nothing else");
    feed.engine.advance_to(cleared, &mut feed.out);
    let fs = feed.drain();
    assert_eq!(fs[0].rule, Rule::SourceStorm);
    assert_eq!(fs[0].status, Status::Resolved);
    assert_eq!(count(&fs, Rule::LeaverDirectoryAccess, Status::Open), 10);
    assert!(fs.iter().all(|f| f.transitioned_at == cleared));
    assert_eq!(feed.engine.held(), 0);
}
