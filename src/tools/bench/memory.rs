//! The memory phase: resident memory per tracked worker of each shape,
//! loaded straight into an engine.

use super::usage::rss_bytes;
use crate::config::Config;
use crate::detect::engine::Engine;
use crate::model::event::{
    AccountKind, AppEvent, AppEventType, DirectoryEvent, DirectoryEventType, Envelope, Event,
    HrEvent, HrEventType, Origin, WorkerType,
};
use crate::model::time::Ts;
use crate::tools::generate::Generator;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// Resident memory per worker of each shape. Runs first, before the
/// broker starts and before anything else has allocated and freed (memory
/// freed earlier would be reused and hide part of the growth), with the
/// configuration as given (storm guard included). Each shape is measured
/// while the engines before it are still alive, so no page freed by one is
/// counted again by the next; all are dropped at the end.
pub(super) fn memory_phase(cfg: &Config, n: u64, out: &mut (dyn Write + Send)) {
    let cfg = Arc::new(cfg.clone());
    let mut kept = Vec::new();
    for shape in [Shape::DirectoryGroups, Shape::DirectoryAndApp] {
        let before = rss_bytes().unwrap_or(0);
        let started = Instant::now();
        let engine = load_workers(&cfg, n, shape);
        let secs = started.elapsed().as_secs_f64();
        let bytes = rss_bytes().unwrap_or(0).saturating_sub(before) as f64 / n as f64;
        let _ = writeln!(
            out,
            "memory: {n} workers ({} each) in state: {bytes:.0} bytes per worker resident ({secs:.1}s to load)",
            shape.describe()
        );
        kept.push(engine);
    }
}

/// What each worker of the memory phase holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// A hire and a directory account with 5 group memberships: one
    /// provisioned worker with one account and five grants.
    DirectoryGroups,
    /// A hire, a directory account, and an app account with 5
    /// entitlements.
    DirectoryAndApp,
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Shape::DirectoryGroups => "an HR record and 1 directory account with 5 groups",
            Shape::DirectoryAndApp => {
                "an HR record, 1 directory account, 1 app account with 5 entitlements"
            }
        }
    }
}

const GRANTS: [&str; 5] = ["Reports", "Leads", "Cases", "Quotes", "Orders"];

/// Loads `workers` workers of `shape` into one engine, one worker a second
/// of stream time (a million workers over eleven days: the storm guard's
/// window holds a few minutes of onsets, as it would in a live org, not a
/// burst of all of them).
fn load_workers(cfg: &Arc<Config>, workers: u64, shape: Shape) -> Engine {
    let mut engine = Engine::new(cfg.clone());
    let topic = crate::model::id::Topic::new("mem");
    let mut out = Vec::new();
    let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
    let mut offset = 0i64;
    let mut apply = |engine: &mut Engine, event: Event| {
        offset += 1;
        let origin = Origin {
            topic,
            partition: 0,
            offset,
        };
        engine.apply(Envelope { origin, event }, &mut out);
        out.clear();
    };
    let directory = |w: u64, wid: &str, at: Ts, n: usize| {
        let (event_type, group) = match n {
            0 => (DirectoryEventType::AccountCreated, None),
            g => (DirectoryEventType::GroupAdded, Some(GRANTS[g - 1].into())),
        };
        Event::Directory(DirectoryEvent {
            event_id: format!("m-d-{w}-{n}").into(),
            event_type,
            occurred_at: at,
            directory: "entra".into(),
            account_id: format!("u{w:07}").into(),
            worker_id: Some(wid.into()),
            account_kind: AccountKind::Human,
            owner_worker_id: None,
            enabled: Some(true),
            email: None,
            department: (n == 0).then(|| "Sales".into()),
            title: None,
            manager_id: None,
            group,
            privileged: false,
            approved_by: None,
            approval_ref: None,
            actor: None,
        })
    };
    for w in 0..workers {
        let wid = Generator::worker_id(w);
        let at = t0.plus(w as i64 * 1_000);
        let hire = Event::Hr(HrEvent {
            event_id: format!("m-h-{w}").into(),
            event_type: HrEventType::Hire,
            occurred_at: at,
            effective_at: at,
            source_system: "workday".into(),
            worker_id: wid.clone().into(),
            worker_type: WorkerType::Employee,
            email: None,
            department: Some("Sales".into()),
            title: None,
            manager_id: None,
            cost_center: None,
            contract_end: None,
        });
        apply(&mut engine, hire);
        apply(&mut engine, directory(w, &wid, at, 0));
        for (g, grant) in GRANTS.iter().enumerate() {
            let event = match shape {
                Shape::DirectoryGroups => directory(w, &wid, at, g + 1),
                Shape::DirectoryAndApp => Event::App(AppEvent {
                    event_id: format!("m-a-{w}-{g}").into(),
                    event_type: AppEventType::EntitlementGranted,
                    occurred_at: at,
                    app_id: "salesforce".into(),
                    account_id: format!("salesforce-{w:07}").into(),
                    worker_id: Some(wid.clone().into()),
                    account_kind: AccountKind::Human,
                    owner_worker_id: None,
                    entitlement: Some((*grant).into()),
                    privileged: false,
                    approved_by: None,
                    approval_ref: None,
                }),
            };
            apply(&mut engine, event);
        }
    }
    engine
}
