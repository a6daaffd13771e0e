use super::*;
use crate::model::event::{
    AccountKind, AppEvent, AppEventType, DirectoryEvent, DirectoryEventType, HrEvent, HrEventType,
    Key, WorkerType,
};

fn ev_at(t: i64, kind: EventType) -> EvRef {
    let origin = Origin {
        topic: Topic::new("state-test"),
        partition: 0,
        offset: t,
    };
    EvRef::new(&origin, EventId::new(&format!("e{t}")), kind, Ts(t))
}

fn app(t: i64, event_type: AppEventType, approved_by: Option<&str>) -> (AppEvent, EvRef) {
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
        approved_by: approved_by.map(Into::into),
        approval_ref: None,
    };
    (e, ev_at(t, EventType::App(event_type)))
}

#[test]
fn a_grant_keeps_its_grant_time_approver_and_newest_update() {
    use AppEventType as A;
    let mut st = WorkerState::default();
    let scope = Sym::new("crm");
    let name = Sym::new("Admin");
    let mut apply = |t, kind, by| {
        let (e, ev) = app(t, kind, by);
        st.apply_app(e, &ev, &scope, Some(name.clone()));
        st.accounts[0].grants[0].clone()
    };
    let g = apply(10, A::EntitlementGranted, Some("boss"));
    assert_eq!((g.granted_at(), g.approved_by()), (Ts(10), Some("boss")));
    // Granted again while active: the grant time stays, the update moves.
    let g = apply(30, A::EntitlementGranted, None);
    assert_eq!((g.granted_at(), g.updated_at()), (Ts(10), Ts(30)));
    assert_eq!(g.approved_by(), Some("boss"));
    // A revocation older than the newest update changes nothing.
    let g = apply(20, A::EntitlementRevoked, None);
    assert!(g.active);
    let g = apply(40, A::AccessRecertified, Some("auditor"));
    assert_eq!(g.recertified_at(), Some(Ts(40)));
    assert_eq!((g.approved_by(), g.updated_at()), (Some("auditor"), Ts(40)));
    let g = apply(50, A::EntitlementRevoked, None);
    assert!(!g.active);
    assert_eq!(g.ev.event_id.to_string(), "e50");
    // Granted anew: nothing of the old grant carries over.
    let g = apply(60, A::EntitlementGranted, None);
    assert!(g.active);
    assert_eq!(g.granted_at(), Ts(60));
    assert_eq!((g.recertified_at(), g.approved_by()), (None, None));
}

/// The account's count of active privileged grants follows grants,
/// revocations (in and out of order), re-grants and recertifications
/// of grants that turn privileged later, as a scan of the list says.
#[test]
fn privileged_grant_count_follows_the_grants() {
    use crate::tools::generate::Rng;
    use AppEventType as A;
    let mut rng = Rng::new(5);
    let mut st = WorkerState::default();
    let scope = Sym::new("crm");
    let names: Vec<Sym> = (0..6).map(|i| Sym::new(&format!("role-{i}"))).collect();
    let kinds = [
        A::EntitlementGranted,
        A::EntitlementRevoked,
        A::AccessRecertified,
    ];
    let mut held_some = false;
    for step in 0..3_000i64 {
        // Mostly forward in time, sometimes late.
        let t = step - rng.below(5) as i64;
        let (mut e, ev) = app(t, kinds[rng.below(3) as usize], None);
        e.privileged = rng.below(3) == 0;
        let name = names[rng.below(names.len() as u64) as usize].clone();
        // A fresh copy of the text now and then: found by its text.
        let name = if rng.below(4) == 0 {
            Sym::new(name.as_str())
        } else {
            name
        };
        st.apply_app(e, &ev, &scope, Some(name));
        let a = &st.accounts[0];
        let scanned = a.active_grants().any(|g| g.privileged);
        assert_eq!(a.has_privileged_grant(), scanned, "step {step}");
        assert_eq!(
            a.privileged_grants as usize,
            a.active_grants().filter(|g| g.privileged).count()
        );
        assert!(a.grants.len() <= names.len(), "one grant per name");
        held_some |= scanned;
    }
    assert!(held_some);
}

#[test]
fn hr_attributes_point_at_the_event_that_set_them() {
    use HrEventType as H;
    let hr = |t: i64, event_type, dept: &str| HrEvent {
        event_id: format!("e{t}").into(),
        event_type,
        occurred_at: Ts(t),
        effective_at: Ts(t),
        source_system: "workday".into(),
        worker_id: "w1".into(),
        worker_type: WorkerType::Employee,
        email: None,
        department: Some(dept.into()),
        title: None,
        manager_id: None,
        cost_center: None,
        contract_end: None,
    };
    let mut st = WorkerState::default();
    let source = Sym::new("workday");
    let origin = Origin {
        topic: Topic::new("state-test"),
        partition: 0,
        offset: 0,
    };
    let mut apply = |e: HrEvent| {
        let ev = ev_at(e.occurred_at.millis(), EventType::Hr(e.event_type));
        let stated = Attrs::stated(&e.email, &e.department, &e.title, &e.manager_id, Sym::new);
        st.apply_hr(e, &origin, &source, &stated, &ev, Ts(1_000));
        let r = &st.hr[0];
        let id = |e: Option<&EvRef>| e.map(|e| e.event_id.to_string());
        (
            id(r.status_ev.as_ref()),
            id(r.attrs_ev()),
            r.attrs.department.clone(),
        )
    };
    let (status, attrs, _) = apply(hr(10, H::Hire, "Sales"));
    assert_eq!(
        (status.as_deref(), attrs.as_deref()),
        (Some("e10"), Some("e10"))
    );
    let (status, attrs, dept) = apply(hr(30, H::Update, "Support"));
    assert_eq!(
        (status.as_deref(), attrs.as_deref()),
        (Some("e10"), Some("e30"))
    );
    // A late status change moves the status, not the newer attributes.
    let (status, attrs, dept2) = apply(hr(20, H::LeaveStart, "Legal"));
    assert_eq!(
        (status.as_deref(), attrs.as_deref()),
        (Some("e20"), Some("e30"))
    );
    assert_eq!(
        (dept.as_deref(), dept2.as_deref()),
        (Some("Support"), Some("Support"))
    );
    let (status, attrs, _) = apply(hr(40, H::LeaveEnd, "Legal"));
    assert_eq!(
        (status.as_deref(), attrs.as_deref()),
        (Some("e40"), Some("e40"))
    );
    assert_eq!(st.hr[0].hired_at.get(), Some(Ts(10)));
}

#[test]
fn directory_attributes_keep_their_event_as_the_account_state_moves() {
    use DirectoryEventType as D;
    let mut st = WorkerState::default();
    let scope = Sym::new("entra");
    let mut apply = |t: i64, event_type, dept: Option<&str>| {
        let e = DirectoryEvent {
            event_id: format!("e{t}").into(),
            event_type,
            occurred_at: Ts(t),
            directory: "entra".into(),
            account_id: "u1".into(),
            worker_id: Some("w1".into()),
            account_kind: AccountKind::Human,
            owner_worker_id: None,
            enabled: None,
            email: None,
            department: dept.map(Into::into),
            title: None,
            manager_id: None,
            group: None,
            privileged: false,
            approved_by: None,
            approval_ref: None,
            actor: None,
        };
        let ev = ev_at(t, EventType::Directory(event_type));
        let stated = Attrs::stated(&e.email, &e.department, &e.title, &e.manager_id, Sym::new);
        st.apply_directory(e, &stated, &ev, &scope, None);
        let a = &st.accounts[0];
        let id = |e: &EvRef| e.event_id.to_string();
        (id(&a.state_ev), a.attrs_ev().map(id), a.attrs_at())
    };
    assert_eq!(
        apply(10, D::AccountCreated, Some("Sales")),
        ("e10".into(), Some("e10".into()), Ts(10))
    );
    assert_eq!(
        apply(20, D::AccountDisabled, None),
        ("e20".into(), Some("e10".into()), Ts(10))
    );
    assert_eq!(
        apply(30, D::AttributesChanged, Some("Legal")),
        ("e20".into(), Some("e30".into()), Ts(30))
    );
    assert_eq!(
        apply(25, D::AttributesChanged, Some("Support")),
        ("e20".into(), Some("e30".into()), Ts(30)),
        "older attributes change nothing"
    );
    assert_eq!(st.accounts[0].attrs().department.as_deref(), Some("Legal"));
}

#[test]
fn a_key_without_episodes_or_timer_holds_no_watch() {
    let mut st = WorkerState::default();
    st.set_wake_at(Some(Ts(5)));
    assert_eq!(st.wake_at(), Some(Ts(5)));
    assert!(st.episodes().is_empty() && st.take_episodes().is_empty());
    st.put_episodes(ThinVec::new());
    assert_eq!(st.wake_at(), Some(Ts(5)), "the timer outlives the episodes");
    st.set_wake_at(None);
    assert!(st.watch.is_none());
    assert!(st.episodes_mut().is_empty());
    assert!(st.watch.is_none(), "reading for change allocates nothing");
}

/// The budget of the structures held per worker (BENCHMARKS.md,
/// "Memory"): a field added to one of them shows up here first.
#[test]
fn state_structures_stay_within_their_budget() {
    use std::mem::size_of;
    assert_eq!(size_of::<EvRef>(), 48);
    assert_eq!(size_of::<Key>(), 24);
    assert_eq!(size_of::<WorkerState>(), 24);
    // With a 16-byte ThinVec header, five grants fit the allocator's
    // 384-byte size class, one account its 160-byte and one HR record
    // its 192-byte class; a directory account's attributes the 64-byte
    // one.
    assert_eq!(size_of::<Grant>(), 72);
    assert!(size_of::<Account>() <= 144, "{}", size_of::<Account>());
    assert!(size_of::<HrRecord>() <= 176, "{}", size_of::<HrRecord>());
    assert!(
        size_of::<AccountAttrs>() <= 64,
        "{}",
        size_of::<AccountAttrs>()
    );
}
