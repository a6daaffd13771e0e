use super::*;
use crate::detect::state::{Attrs, EvRef};
use crate::model::event::{
    AppEvent, AppEventType, DirectoryEvent, DirectoryEventType, EventType, HrEvent, HrEventType,
    Origin, WorkerType,
};
use crate::model::id::{EventId, Sym, Topic};

fn origin(t: i64) -> Origin {
    Origin {
        topic: Topic::new("rules-test"),
        partition: 0,
        offset: t,
    }
}

fn ev_at(t: i64, kind: EventType) -> EvRef {
    EvRef::new(&origin(t), EventId::new(&format!("e{t}")), kind, Ts(t))
}

fn hr(st: &mut WorkerState, t: i64, source: &str, event_type: HrEventType, contract_end: i64) {
    let e = HrEvent {
        event_id: format!("e{t}").into(),
        event_type,
        occurred_at: Ts(t),
        effective_at: Ts(t),
        source_system: source.into(),
        worker_id: "w1".into(),
        worker_type: if contract_end > 0 {
            WorkerType::Contractor
        } else {
            WorkerType::Employee
        },
        email: None,
        department: None,
        title: None,
        manager_id: None,
        cost_center: None,
        contract_end: (contract_end > 0).then_some(Ts(contract_end)),
    };
    let ev = ev_at(t, EventType::Hr(event_type));
    let stated = Attrs::stated(&e.email, &e.department, &e.title, &e.manager_id, Sym::new);
    st.apply_hr(e, &origin(t), &Sym::new(source), &stated, &ev, Ts(t));
}

/// A directory event on `account`; `worker` is the HUMAN account's
/// worker_id or the SERVICE account's owner.
fn dir(
    st: &mut WorkerState,
    t: i64,
    event_type: DirectoryEventType,
    (account, kind, worker): (&str, AccountKind, Option<&str>),
    group: Option<&str>,
) {
    let human = kind == AccountKind::Human;
    let e = DirectoryEvent {
        event_id: format!("e{t}").into(),
        event_type,
        occurred_at: Ts(t),
        directory: "entra".into(),
        account_id: account.into(),
        worker_id: worker.filter(|_| human).map(Into::into),
        account_kind: kind,
        owner_worker_id: worker.filter(|_| !human).map(Into::into),
        enabled: Some(true),
        email: None,
        department: None,
        title: None,
        manager_id: None,
        group: group.map(Into::into),
        privileged: group.is_some(),
        approved_by: None,
        approval_ref: None,
        actor: None,
    };
    let ev = ev_at(t, EventType::Directory(event_type));
    let stated = Attrs::stated(&e.email, &e.department, &e.title, &e.manager_id, Sym::new);
    st.apply_directory(e, &stated, &ev, &Sym::new("entra"), group.map(Sym::new));
}

/// A privileged entitlement, granted with no approver.
fn unapproved_entitlement(st: &mut WorkerState, t: i64) {
    let event_type = AppEventType::EntitlementGranted;
    let e = AppEvent {
        event_id: format!("e{t}").into(),
        event_type,
        occurred_at: Ts(t),
        app_id: "crm".into(),
        account_id: "crm-1".into(),
        worker_id: Some("w1".into()),
        account_kind: AccountKind::Human,
        owner_worker_id: None,
        entitlement: Some("Admin".into()),
        privileged: true,
        approved_by: None,
        approval_ref: None,
    };
    let ev = ev_at(t, EventType::App(event_type));
    st.apply_app(e, &ev, &Sym::new("crm"), Some(Sym::new("Admin")));
}

fn check(cfg: &Config, st: &WorkerState, now: Ts, expected: &[(Rule, SubjectRef, Ts, bool)]) {
    let mut out = vec![Condition {
        rule: Rule::SourceStorm,
        subject: SubjectRef::Worker,
        since: Ts(0),
        elevated: false,
    }];
    evaluate(cfg, &Key::worker("w1"), st, now, &mut out);
    let got: Vec<_> = out
        .iter()
        .map(|c| (c.rule, c.subject, c.since, c.elevated))
        .collect();
    assert_eq!(got, expected);
}

/// Conditions come per account first (rules interleaved account by
/// account), then per grant, then per app, then for the worker; a rule
/// switched off drops out and leaves the rest in place.
#[test]
fn conditions_come_in_the_documented_order() {
    use AccountKind::{Human, Service};
    use DirectoryEventType::{AccountCreated, GroupAdded};
    let mut st = WorkerState::default();
    dir(&mut st, 5, AccountCreated, ("u1", Human, Some("w1")), None);
    dir(
        &mut st,
        6,
        GroupAdded,
        ("u1", Human, Some("w1")),
        Some("admins"),
    );
    dir(
        &mut st,
        7,
        AccountCreated,
        ("svc1", Service, Some("w1")),
        None,
    );
    unapproved_entitlement(&mut st, 8);
    dir(&mut st, 9, AccountCreated, ("u2", Human, None), None);
    hr(&mut st, 10, "workday", HrEventType::Hire, 0);
    hr(&mut st, 20, "vendor_mgmt", HrEventType::Hire, 0);
    hr(&mut st, 100, "workday", HrEventType::Termination, 0);

    let expected = [
        (
            Rule::LeaverDirectoryAccess,
            SubjectRef::Account(0),
            Ts(100),
            true,
        ),
        (
            Rule::OrphanedNonHumanIdentity,
            SubjectRef::Account(1),
            Ts(100),
            false,
        ),
        (Rule::OrphanAccount, SubjectRef::Account(3), Ts(9), false),
        (
            Rule::LeaverDirectoryAccess,
            SubjectRef::Account(3),
            Ts(100),
            false,
        ),
        (
            Rule::UnapprovedPrivilegedGrant,
            SubjectRef::Grant(0, 0),
            Ts(6),
            false,
        ),
        (
            Rule::UnapprovedPrivilegedGrant,
            SubjectRef::Grant(2, 0),
            Ts(8),
            false,
        ),
        (Rule::LeaverAppAccess, SubjectRef::App(2), Ts(100), true),
        (
            Rule::ConflictingSourceRecords,
            SubjectRef::Worker,
            Ts(100),
            false,
        ),
    ];
    let mut cfg = Config::default_config();
    check(&cfg, &st, Ts(200), &expected);

    cfg.rules[Rule::LeaverDirectoryAccess.index()].enabled = false;
    let rest: Vec<_> = expected
        .into_iter()
        .filter(|c| c.0 != Rule::LeaverDirectoryAccess)
        .collect();
    check(&cfg, &st, Ts(200), &rest);
}

/// The grant rules come grant by grant, and the worker rules after them.
#[test]
fn grant_rules_interleave_and_worker_rules_follow() {
    let mut st = WorkerState::default();
    hr(&mut st, 10, "workday", HrEventType::Hire, 50);
    unapproved_entitlement(&mut st, 20);
    hr(&mut st, 30, "workday", HrEventType::Transfer, 50);
    check(
        &Config::default_config(),
        &st,
        Ts(60),
        &[
            (
                Rule::UnapprovedPrivilegedGrant,
                SubjectRef::Grant(0, 0),
                Ts(20),
                false,
            ),
            (
                Rule::MoverRetainedPrivilege,
                SubjectRef::Grant(0, 0),
                Ts(30),
                false,
            ),
            (
                Rule::JoinerNotProvisioned,
                SubjectRef::Worker,
                Ts(10),
                false,
            ),
            (
                Rule::ContractExpiredAccess,
                SubjectRef::Worker,
                Ts(50),
                false,
            ),
        ],
    );
}
