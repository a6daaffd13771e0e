//! A synthetic organisation: workers with directory accounts and app
//! entitlements, then a stream of lifecycle events with drift of every rule
//! injected among clean changes. Deterministic for a seed, so that tests,
//! benches and demos are reproducible.

use crate::model::event::{
    AccountKind, AppEvent, AppEventType, DirectoryEvent, DirectoryEventType, Event, HrEvent,
    HrEventType, WorkerType,
};
use crate::model::time::{Ts, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};

/// A small, fast, seedable PRNG (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

const DEPARTMENTS: &[&str] = &[
    "Sales",
    "Finance",
    "Engineering",
    "Marketing",
    "Support",
    "Legal",
];
const TITLES: &[&str] = &["Analyst", "Engineer", "Manager", "Specialist", "Director"];
const APPS: &[(&str, &str, &str)] = &[
    ("salesforce", "Sales User", "Modify All Data"),
    ("github", "member", "org-admin"),
    ("sap", "FI_DISPLAY", "SAP_ALL"),
];
/// Approvers configured in the shipped config, per app.
const APPROVERS: &[&str] = &["W000001", "W000003", "W000004"];

/// The kinds of change the lifecycle stream is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    CleanLeaver,
    Leaver,
    CleanJoiner,
    Joiner,
    Orphan,
    Transfer,
    EmergencyDisable,
    Leave,
    OrphanedService,
    UnapprovedGrant,
    ContractEnd,
    ConflictingSources,
    AttributeUpdate,
}

const MIX: &[(Scenario, u64)] = &[
    (Scenario::CleanLeaver, 14),
    (Scenario::Leaver, 4),
    (Scenario::CleanJoiner, 14),
    (Scenario::Joiner, 3),
    (Scenario::Orphan, 3),
    (Scenario::Transfer, 8),
    (Scenario::EmergencyDisable, 3),
    (Scenario::Leave, 5),
    (Scenario::OrphanedService, 3),
    (Scenario::UnapprovedGrant, 4),
    (Scenario::ContractEnd, 3),
    (Scenario::ConflictingSources, 3),
    (Scenario::AttributeUpdate, 33),
];

/// The synthetic organisation and its event stream.
pub struct Generator {
    rng: Rng,
    workers: u64,
    next_worker: u64,
    seq: u64,
    now: Ts,
    /// Privileged app entitlements per generated worker (every 10th worker).
    privileged_every: u64,
    /// No new workers or accounts: what would add one changes an existing
    /// worker's attributes instead.
    steady: bool,
}

impl Generator {
    /// `workers` existing workers; events start at `start`.
    pub fn new(seed: u64, workers: u64, start: Ts) -> Generator {
        Generator {
            rng: Rng::new(seed),
            workers,
            next_worker: workers,
            seq: 0,
            now: start,
            privileged_every: 10,
            steady: false,
        }
    }

    /// From now on, no new workers or accounts: joiners, contractors and
    /// new orphan or service accounts become attribute updates of existing
    /// workers, so the history grows and the set of keys does not.
    pub fn keep_population(&mut self) {
        self.steady = true;
    }

    pub fn now(&self) -> Ts {
        self.now
    }

    fn id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{:09}", self.seq)
    }

    pub fn worker_id(n: u64) -> String {
        format!("W{n:06}")
    }

    fn hr(&mut self, t: HrEventType, worker: u64, at: Ts, effective: Ts) -> HrEvent {
        let dept = DEPARTMENTS[(worker % DEPARTMENTS.len() as u64) as usize];
        let title = TITLES[(worker % TITLES.len() as u64) as usize];
        HrEvent {
            event_id: self.id("hr").into(),
            event_type: t,
            occurred_at: at,
            effective_at: effective,
            source_system: "workday".into(),
            worker_id: Self::worker_id(worker).into(),
            worker_type: WorkerType::Employee,
            email: Some(format!("{}@example.com", Self::worker_id(worker).to_lowercase()).into()),
            department: Some(dept.into()),
            title: Some(title.into()),
            manager_id: Some(Self::worker_id(worker / 8).into()),
            cost_center: Some(format!("CC{:03}", worker % 97).into()),
            contract_end: None,
        }
    }

    fn dir(
        &mut self,
        t: DirectoryEventType,
        worker: Option<u64>,
        account: &str,
        at: Ts,
    ) -> DirectoryEvent {
        let w = worker.unwrap_or(0);
        DirectoryEvent {
            event_id: self.id("dir").into(),
            event_type: t,
            occurred_at: at,
            directory: "entra".into(),
            account_id: account.into(),
            worker_id: worker.map(|w| Self::worker_id(w).into()),
            account_kind: AccountKind::Human,
            owner_worker_id: None,
            enabled: None,
            email: worker
                .map(|w| format!("{}@example.com", Self::worker_id(w).to_lowercase()).into()),
            department: Some(DEPARTMENTS[(w % DEPARTMENTS.len() as u64) as usize].into()),
            title: Some(TITLES[(w % TITLES.len() as u64) as usize].into()),
            manager_id: Some(Self::worker_id(w / 8).into()),
            group: None,
            privileged: false,
            approved_by: None,
            approval_ref: None,
            actor: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn app(
        &mut self,
        t: AppEventType,
        worker: Option<u64>,
        app: usize,
        account: &str,
        entitlement: Option<&str>,
        privileged: bool,
        approved: bool,
        at: Ts,
    ) -> AppEvent {
        AppEvent {
            event_id: self.id("app").into(),
            event_type: t,
            occurred_at: at,
            app_id: APPS[app].0.into(),
            account_id: account.into(),
            worker_id: worker.map(|w| Self::worker_id(w).into()),
            account_kind: AccountKind::Human,
            owner_worker_id: None,
            entitlement: entitlement.map(Into::into),
            privileged,
            approved_by: approved.then(|| APPROVERS[app].into()),
            approval_ref: approved.then(|| format!("REQ-{}", self.seq).into()),
        }
    }

    /// The existing organisation: each worker hired, with one directory
    /// account and entitlements in one app (every tenth one privileged and
    /// approved), all before `start`.
    pub fn baseline(&mut self) -> Vec<Event> {
        let mut out = Vec::with_capacity(self.workers as usize * 5);
        let base = self.now.plus(-30 * MS_PER_DAY);
        for w in 0..self.workers {
            let at = base.plus((w % 1000) as i64 * MS_PER_MINUTE);
            self.onboard(w, at, true, &mut out);
        }
        out.sort_by_key(Event::occurred_at);
        out
    }

    fn onboard(&mut self, w: u64, at: Ts, provision: bool, out: &mut Vec<Event>) {
        out.push(Event::Hr(self.hr(HrEventType::Hire, w, at, at)));
        if !provision {
            return;
        }
        let acct = format!("u{w:06}");
        out.push(Event::Directory(self.dir(
            DirectoryEventType::AccountCreated,
            Some(w),
            &acct,
            at.plus(5 * MS_PER_MINUTE),
        )));
        let app = (w % APPS.len() as u64) as usize;
        let app_acct = format!("{}-{w:06}", APPS[app].0);
        out.push(Event::App(self.app(
            AppEventType::EntitlementGranted,
            Some(w),
            app,
            &app_acct,
            Some(APPS[app].1),
            false,
            false,
            at.plus(10 * MS_PER_MINUTE),
        )));
        if w % self.privileged_every == 0 {
            out.push(Event::App(self.app(
                AppEventType::EntitlementGranted,
                Some(w),
                app,
                &app_acct,
                Some(APPS[app].2),
                true,
                true,
                at.plus(11 * MS_PER_MINUTE),
            )));
        }
    }

    fn pick(&mut self) -> Scenario {
        let total: u64 = MIX.iter().map(|(_, w)| w).sum();
        let mut r = self.rng.below(total);
        for (s, w) in MIX {
            if r < *w {
                return *s;
            }
            r -= w;
        }
        Scenario::AttributeUpdate
    }

    /// The next batch of lifecycle events (one scenario), in event-time
    /// order within the batch; stream time moves on by up to `step_ms`.
    pub fn next_batch(&mut self, step_ms: i64) -> Vec<Event> {
        self.now = self
            .now
            .plus(1 + self.rng.below(step_ms.max(1) as u64) as i64);
        let t = self.now;
        let w = self.rng.below(self.workers.max(1));
        let acct = format!("u{w:06}");
        let app = (w % APPS.len() as u64) as usize;
        let app_acct = format!("{}-{w:06}", APPS[app].0);
        let mut out = Vec::new();
        let scenario = match self.pick() {
            Scenario::CleanJoiner
            | Scenario::Joiner
            | Scenario::Orphan
            | Scenario::OrphanedService
            | Scenario::ContractEnd
                if self.steady =>
            {
                Scenario::AttributeUpdate
            }
            s => s,
        };
        match scenario {
            Scenario::CleanLeaver => {
                out.push(Event::Hr(self.hr(HrEventType::Termination, w, t, t)));
                out.push(Event::Directory(self.dir(
                    DirectoryEventType::AccountDisabled,
                    Some(w),
                    &acct,
                    t.plus(20 * MS_PER_MINUTE),
                )));
                out.push(Event::App(self.app(
                    AppEventType::AppAccountDeleted,
                    Some(w),
                    app,
                    &app_acct,
                    None,
                    false,
                    false,
                    t.plus(2 * MS_PER_HOUR),
                )));
            }
            Scenario::Leaver => {
                out.push(Event::Hr(self.hr(HrEventType::Termination, w, t, t)));
            }
            Scenario::CleanJoiner | Scenario::Joiner => {
                let n = self.next_worker;
                self.next_worker += 1;
                let provision = self.rng.below(5) != 0;
                self.onboard(n, t, provision, &mut out);
            }
            Scenario::Orphan => {
                let id = self.id("orphan");
                out.push(Event::Directory(self.dir(
                    DirectoryEventType::AccountCreated,
                    None,
                    &id,
                    t,
                )));
                // A third are correlated later, past the orphan's SLA:
                // the account moves to its worker's key.
                if self.seq % 3 == 0 {
                    out.push(Event::Directory(self.dir(
                        DirectoryEventType::AttributesChanged,
                        Some(w),
                        &id,
                        t.plus(90 * MS_PER_MINUTE),
                    )));
                }
            }
            Scenario::Transfer => {
                let mut e = self.hr(HrEventType::Transfer, w, t, t);
                e.department =
                    Some(DEPARTMENTS[((w + 1) % DEPARTMENTS.len() as u64) as usize].into());
                out.push(Event::Hr(e));
                if self.rng.below(2) == 0 {
                    let mut d = self.dir(
                        DirectoryEventType::AttributesChanged,
                        Some(w),
                        &acct,
                        t.plus(30 * MS_PER_MINUTE),
                    );
                    d.department =
                        Some(DEPARTMENTS[((w + 1) % DEPARTMENTS.len() as u64) as usize].into());
                    out.push(Event::Directory(d));
                }
            }
            Scenario::EmergencyDisable => {
                let mut d = self.dir(DirectoryEventType::AccountDisabled, Some(w), &acct, t);
                d.actor = Some("emergency-disable".into());
                out.push(Event::Directory(d));
            }
            Scenario::Leave => {
                out.push(Event::Hr(self.hr(HrEventType::LeaveStart, w, t, t)));
            }
            Scenario::OrphanedService => {
                let id = self.id("svc");
                let mut d = self.dir(DirectoryEventType::AccountCreated, None, &id, t);
                d.account_kind = if self.rng.below(3) == 0 {
                    AccountKind::SharedAdmin
                } else {
                    AccountKind::Service
                };
                d.owner_worker_id = (self.rng.below(2) == 0).then(|| Self::worker_id(w).into());
                d.department = None;
                d.title = None;
                d.manager_id = None;
                // Half of the owned ones are handed to another worker
                // half an hour later (before the SLA of an owner leaving).
                let handed = (d.owner_worker_id.is_some() && self.seq % 2 == 0).then(|| {
                    let mut h = d.clone();
                    h.event_type = DirectoryEventType::AttributesChanged;
                    h.occurred_at = t.plus(30 * MS_PER_MINUTE);
                    h.owner_worker_id = Some(Self::worker_id((w + 1) % self.workers.max(1)).into());
                    h
                });
                out.push(Event::Directory(d));
                if let Some(mut h) = handed {
                    h.event_id = self.id("dir").into();
                    out.push(Event::Directory(h));
                }
                if self.rng.below(2) == 0 {
                    out.push(Event::Hr(self.hr(
                        HrEventType::Termination,
                        w,
                        t.plus(MS_PER_MINUTE),
                        t.plus(MS_PER_MINUTE),
                    )));
                    out.push(Event::Directory(self.dir(
                        DirectoryEventType::AccountDisabled,
                        Some(w),
                        &acct,
                        t.plus(10 * MS_PER_MINUTE),
                    )));
                }
            }
            Scenario::UnapprovedGrant => {
                let approved = self.rng.below(3) == 0;
                out.push(Event::App(self.app(
                    AppEventType::EntitlementGranted,
                    Some(w),
                    app,
                    &app_acct,
                    Some(APPS[app].2),
                    true,
                    approved,
                    t,
                )));
            }
            Scenario::ContractEnd => {
                let n = self.next_worker;
                self.next_worker += 1;
                let mut e = self.hr(HrEventType::Hire, n, t, t);
                e.worker_type = WorkerType::Contractor;
                e.source_system = "vendor_mgmt".into();
                e.contract_end = Some(t.plus(2 * MS_PER_HOUR));
                out.push(Event::Hr(e));
                out.push(Event::Directory(self.dir(
                    DirectoryEventType::AccountCreated,
                    Some(n),
                    &format!("u{n:06}"),
                    t.plus(MS_PER_MINUTE),
                )));
            }
            Scenario::ConflictingSources => {
                let mut e = self.hr(HrEventType::Termination, w, t, t);
                e.source_system = "vendor_mgmt".into();
                out.push(Event::Hr(e));
            }
            Scenario::AttributeUpdate => {
                let mut d = self.dir(DirectoryEventType::AttributesChanged, Some(w), &acct, t);
                d.email = Some(
                    format!(
                        "{}.{}@example.com",
                        Self::worker_id(w).to_lowercase(),
                        self.seq
                    )
                    .into(),
                );
                out.push(Event::Directory(d));
            }
        }
        out.sort_by_key(Event::occurred_at);
        out
    }
}
