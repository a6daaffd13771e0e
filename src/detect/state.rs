//! The keyed state store: one [`WorkerState`] per correlation key, in a
//! `DashMap` so that read-only queries can look at it while the owning task
//! writes.
//!
//! Applying an event is pure data manipulation with two guards:
//! - out of order: each entity (HR status, HR attributes, account state,
//!   account attributes, each grant) remembers the time of the event that
//!   last set it, and an older event never overwrites it;
//! - effective time: an HR event whose `effective_at` lies ahead of stream
//!   time is parked in `scheduled` and applied when stream time reaches it.

use crate::detect::episode::Episode;
use crate::model::event::{
    AccountKind, AppEvent, AppEventType, DirectoryEvent, DirectoryEventType, EventType, HrEvent,
    HrEventType, Key, Origin, System, WorkerType,
};
use crate::model::finding::Evidence;
use crate::model::id::{EventId, Name, Sym, Topic};
use crate::model::time::{OptTs, Ts};
use dashmap::DashMap;
use std::collections::VecDeque;
use thin_vec::ThinVec;

/// Pushes onto a vector that is usually tiny: the first few slots grow one
/// at a time (a worker has one or two accounts, an account a handful of
/// grants; the doubling growth would leave most of their capacity empty
/// in every one of a million workers), then geometrically. The vectors of
/// state are `ThinVec`s: one pointer wide, with nothing allocated while
/// empty.
pub(crate) fn push_compact<T>(v: &mut ThinVec<T>, x: T) {
    if v.len() == v.capacity() && v.len() < 8 {
        v.reserve_exact(1);
    }
    v.push(x);
}

/// A worker's status by one source of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerStatus {
    PreHire,
    Active,
    OnLeave,
    Terminated,
}

/// A pointer to the source event behind a piece of state: 48 bytes, held
/// about ten times per worker (no allocation for an event id of up to 22
/// bytes or a canonical UUID; a longer id is shared by every copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvRef {
    pub offset: i64,
    pub occurred_at: Ts,
    pub event_id: EventId,
    pub partition: i32,
    pub topic: Topic,
    pub event_type: EventType,
}

impl EvRef {
    pub fn new(origin: &Origin, event_id: EventId, event_type: EventType, occurred_at: Ts) -> Self {
        EvRef {
            offset: origin.offset,
            occurred_at,
            event_id,
            partition: origin.partition,
            topic: origin.topic,
            event_type,
        }
    }

    pub fn to_evidence(&self) -> Evidence {
        Evidence {
            topic: self.topic.as_str().into(),
            partition: self.partition,
            offset: self.offset,
            event_id: self.event_id.to_arc(),
            event_type: self.event_type.as_str().into(),
            occurred_at: self.occurred_at,
        }
    }
}

/// Event-time order of an HR change: effective time, then record time, then id.
type Stamp = (Ts, Ts);

/// Department, title, manager and e-mail as one source states them.
///
/// Departments, titles and managers are few and shared by many workers:
/// the engine interns them, so comparing HR's with a directory account's
/// (done for every event of the key) usually compares two pointers, and
/// each costs eight bytes. E-mail addresses are each worker's own, inline
/// [`Name`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    pub email: Option<Name>,
    pub department: Option<Sym>,
    pub title: Option<Sym>,
    pub manager_id: Option<Sym>,
}

impl Attrs {
    /// The attributes an event states; `intern` shares department, title
    /// and manager.
    pub fn stated(
        email: &Option<Name>,
        dept: &Option<Name>,
        title: &Option<Name>,
        mgr: &Option<Name>,
        mut intern: impl FnMut(&str) -> Sym,
    ) -> Attrs {
        Attrs {
            email: email.clone(),
            department: dept.as_deref().map(&mut intern),
            title: title.as_deref().map(&mut intern),
            manager_id: mgr.as_deref().map(&mut intern),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.department.is_none()
            && self.title.is_none()
            && self.manager_id.is_none()
    }

    /// Takes every attribute `new` states; keeps the others.
    fn merge(&mut self, new: &Attrs) {
        if new.email.is_some() {
            self.email.clone_from(&new.email);
        }
        if new.department.is_some() {
            self.department.clone_from(&new.department);
        }
        if new.title.is_some() {
            self.title.clone_from(&new.title);
        }
        if new.manager_id.is_some() {
            self.manager_id.clone_from(&new.manager_id);
        }
    }
}

/// What one HR source system says about a worker.
///
/// Held for every worker, so kept to 176 bytes: the event time half of
/// each stamp is its event reference's, and the rare parts (a transfer,
/// future-dated events) share one box.
#[derive(Clone, Debug)]
pub struct HrRecord {
    pub source_system: Sym,
    pub status: WorkerStatus,
    pub status_cause: Option<HrEventType>,
    pub worker_type: WorkerType,
    /// The attributes were last set by the status's event (`attrs_ev` is
    /// then not held separately).
    attrs_from_status: bool,
    /// Effective time of the latest status change.
    status_effective: Ts,
    pub status_ev: Option<EvRef>,
    /// Effective time of the latest HIRE or REHIRE.
    pub hired_at: OptTs,
    pub attrs: Attrs,
    attrs_effective: Ts,
    attrs_ev: Option<Box<EvRef>>,
    pub contract_end: OptTs,
    more: Option<Box<HrMore>>,
}

/// The parts of an [`HrRecord`] most workers never have.
#[derive(Clone, Debug, Default)]
struct HrMore {
    /// Effective time and event of the latest TRANSFER.
    transfer: Option<(Ts, EvRef)>,
    /// Future-dated events, applied when stream time reaches `effective_at`.
    scheduled: Vec<(HrEvent, Origin)>,
}

/// A grant: a directory group membership or an application entitlement.
///
/// Five of these per worker are the largest part of state, so the grant
/// holds only what every grant needs; recertification, approver and a
/// later re-assertion are boxed in [`GrantMore`], allocated for the grants
/// that have them.
#[derive(Clone, Debug)]
pub struct Grant {
    pub name: Sym,
    pub privileged: bool,
    pub active: bool,
    /// The event that granted it (while active; its time is the grant's)
    /// or that revoked it.
    pub ev: EvRef,
    more: Option<Box<GrantMore>>,
}

/// The parts of a [`Grant`] most grants never have.
#[derive(Clone, Debug, Default)]
struct GrantMore {
    recertified_at: Option<Ts>,
    approved_by: Option<Box<str>>,
    /// The newest event that re-asserted the grant without changing it.
    touched_at: Option<Ts>,
}

impl Grant {
    /// When the grant was (last) granted; meaningful while active.
    pub fn granted_at(&self) -> Ts {
        self.ev.occurred_at
    }

    /// Time of the newest event applied to the grant.
    pub fn updated_at(&self) -> Ts {
        let more = self.more.as_deref();
        [
            more.and_then(|m| m.touched_at),
            more.and_then(|m| m.recertified_at),
        ]
        .into_iter()
        .flatten()
        .fold(self.ev.occurred_at, Ts::max)
    }

    pub fn recertified_at(&self) -> Option<Ts> {
        self.more.as_deref().and_then(|m| m.recertified_at)
    }

    pub fn approved_by(&self) -> Option<&str> {
        self.more.as_deref().and_then(|m| m.approved_by.as_deref())
    }

    fn more(&mut self) -> &mut GrantMore {
        self.more.get_or_insert_with(Box::default)
    }

    fn set_approver(&mut self, approved_by: Option<Box<str>>) {
        if approved_by.is_some() {
            self.more().approved_by = approved_by;
        }
    }

    fn recertify(&mut self, t: Ts, approved_by: Option<Box<str>>) {
        self.more().recertified_at = Some(t);
        self.set_approver(approved_by);
    }
}

/// Attributes a directory account states, with the event that last set
/// them (boxed in [`Account`]: application accounts never carry any).
#[derive(Clone, Debug)]
pub struct AccountAttrs {
    pub attrs: Attrs,
    /// None: the event that set them is the account's `state_ev` (an
    /// account is usually created with its attributes), held once.
    ev: Option<Box<EvRef>>,
}

/// A directory or application account.
#[derive(Clone, Debug)]
pub struct Account {
    pub system: System,
    /// The directory or the app_id.
    pub scope: Sym,
    pub account_id: Name,
    pub kind: AccountKind,
    /// The owner of a non-human account (rare: shared, not inline).
    pub owner_worker_id: Option<Sym>,
    pub has_worker_id: bool,
    pub enabled: bool,
    pub deleted: bool,
    pub privileged: bool,
    /// When the account was last enabled (created enabled, or re-enabled).
    pub enabled_since: Ts,
    /// When an enabled account was last disabled or deleted.
    pub removed_at: OptTs,
    /// Time of the event that last set enabled/deleted.
    pub state_at: Ts,
    pub state_ev: EvRef,
    pub stated: Option<Box<AccountAttrs>>,
    pub grants: ThinVec<Grant>,
    /// Grants both active and privileged, kept by `set_grant` (the only
    /// place a grant's active or privileged flag changes), so that the
    /// rules skip the grant list of an account that has none.
    privileged_grants: u32,
}

static NO_ATTRS: Attrs = Attrs {
    email: None,
    department: None,
    title: None,
    manager_id: None,
};

impl Account {
    /// The attributes the account states (none stated: all empty).
    pub fn attrs(&self) -> &Attrs {
        self.stated.as_deref().map_or(&NO_ATTRS, |s| &s.attrs)
    }

    /// Time of the event that last set the attributes.
    pub fn attrs_at(&self) -> Ts {
        self.attrs_ev().map_or(Ts::MIN, |e| e.occurred_at)
    }

    pub fn attrs_ev(&self) -> Option<&EvRef> {
        self.stated
            .as_deref()
            .map(|s| s.ev.as_deref().unwrap_or(&self.state_ev))
    }

    pub fn active_grants(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter().filter(|g| g.active)
    }

    pub fn has_privileged_grant(&self) -> bool {
        self.privileged_grants > 0
    }

    /// Holds access: enabled, or (for app accounts) still holding entitlements.
    pub fn holds_access(&self) -> bool {
        !self.deleted
            && (self.enabled
                || (self.system == System::App && self.active_grants().next().is_some()))
    }
}

/// Everything known under one correlation key.
#[derive(Clone, Debug, Default)]
pub struct WorkerState {
    pub hr: ThinVec<HrRecord>,
    pub accounts: ThinVec<Account>,
    /// Episodes and the timer, boxed together: most keys have neither for
    /// most of their life, and the map entry stays 24 bytes.
    watch: Option<Box<Watch>>,
}

#[derive(Clone, Debug, Default)]
struct Watch {
    episodes: ThinVec<Episode>,
    /// The time this key's timer is set for, if any.
    wake_at: OptTs,
}

impl WorkerState {
    pub fn episodes(&self) -> &[Episode] {
        self.watch.as_deref().map_or(&[], |w| &w.episodes)
    }

    /// The episodes, to change in place (none allocated for a key without).
    pub fn episodes_mut(&mut self) -> &mut [Episode] {
        match self.watch.as_deref_mut() {
            Some(w) => &mut w.episodes,
            None => &mut [],
        }
    }

    /// Moves the episodes out, to be put back with [`Self::put_episodes`].
    pub fn take_episodes(&mut self) -> ThinVec<Episode> {
        self.watch
            .as_deref_mut()
            .map(|w| std::mem::take(&mut w.episodes))
            .unwrap_or_default()
    }

    /// Holds `episodes`; an empty list is freed.
    pub fn put_episodes(&mut self, episodes: ThinVec<Episode>) {
        if episodes.is_empty() {
            if let Some(w) = self.watch.as_deref_mut() {
                w.episodes = ThinVec::new();
            }
            self.tidy();
        } else {
            self.watch.get_or_insert_with(Box::default).episodes = episodes;
        }
    }

    /// The time this key's timer is set for, if any.
    pub fn wake_at(&self) -> Option<Ts> {
        self.watch.as_deref().and_then(|w| w.wake_at.get())
    }

    pub fn set_wake_at(&mut self, at: Option<Ts>) {
        match at {
            Some(_) => self.watch.get_or_insert_with(Box::default).wake_at = at.into(),
            None => {
                if let Some(w) = self.watch.as_deref_mut() {
                    w.wake_at = OptTs::NONE;
                }
                self.tidy();
            }
        }
    }

    fn tidy(&mut self) {
        if self
            .watch
            .as_deref()
            .is_some_and(|w| w.episodes.is_empty() && w.wake_at.get().is_none())
        {
            self.watch = None;
        }
    }

    /// The record whose latest status change is newest: the worker's status.
    pub fn primary(&self) -> Option<&HrRecord> {
        self.hr
            .iter()
            .filter(|r| r.status_ev.is_some())
            .max_by(|a, b| {
                a.status_stamp()
                    .cmp(&b.status_stamp())
                    .then_with(|| b.source_system.cmp(&a.source_system))
            })
    }

    pub fn status(&self) -> Option<WorkerStatus> {
        self.primary().map(|r| r.status)
    }

    /// Whether any HR source has ever sent an event for this key.
    pub fn known_to_hr(&self) -> bool {
        !self.hr.is_empty()
    }

    /// The newest attributes across sources.
    pub fn hr_attrs(&self) -> Option<&HrRecord> {
        self.hr
            .iter()
            .filter(|r| r.attrs_ev().is_some())
            .max_by_key(|r| r.attrs_stamp())
    }

    /// Earliest effective time of a parked HR event.
    pub fn next_scheduled(&self) -> Option<Ts> {
        self.hr
            .iter()
            .flat_map(|r| r.scheduled().iter().map(|(e, _)| e.effective_at))
            .min()
    }

    /// Applies parked HR events whose effective time has come.
    pub fn catch_up(&mut self, now: Ts) {
        for rec in &mut self.hr {
            if rec.scheduled().iter().all(|(e, _)| e.effective_at > now) {
                continue;
            }
            let more = rec.more.as_deref_mut().expect("has scheduled events");
            let (mut due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut more.scheduled)
                .into_iter()
                .partition(|(e, _)| e.effective_at <= now);
            more.scheduled = later;
            if more.scheduled.is_empty() && more.transfer.is_none() {
                rec.more = None;
            }
            due.sort_by(|a, b| {
                (a.0.effective_at, a.0.occurred_at).cmp(&(b.0.effective_at, b.0.occurred_at))
            });
            for (e, o) in &due {
                let ev = EvRef::new(
                    o,
                    EventId::new(&e.event_id),
                    EventType::Hr(e.event_type),
                    e.occurred_at,
                );
                let stated = Attrs::stated(&e.email, &e.department, &e.title, &e.manager_id, |s| {
                    s.into()
                });
                rec.apply_effective(e, &ev, &stated);
            }
        }
    }

    /// Applies an HR event from `source` (the interned source system)
    /// stating `stated`; `ev` points at it. Returns the entries it added
    /// (a first record from this source).
    pub fn apply_hr(
        &mut self,
        e: HrEvent,
        origin: &Origin,
        source: &Sym,
        stated: &Attrs,
        ev: &EvRef,
        now: Ts,
    ) -> usize {
        let mut added = 0;
        let idx = match self
            .hr
            .iter()
            .position(|r| *r.source_system == *e.source_system)
        {
            Some(i) => i,
            None => {
                push_compact(
                    &mut self.hr,
                    HrRecord {
                        source_system: source.clone(),
                        status: WorkerStatus::PreHire,
                        status_cause: None,
                        worker_type: e.worker_type,
                        attrs_from_status: false,
                        status_effective: Ts::MIN,
                        status_ev: None,
                        hired_at: OptTs::NONE,
                        attrs: Attrs::default(),
                        attrs_effective: Ts::MIN,
                        attrs_ev: None,
                        contract_end: OptTs::NONE,
                        more: None,
                    },
                );
                added = 1;
                self.hr.len() - 1
            }
        };
        let rec = &mut self.hr[idx];
        if e.effective_at > now {
            rec.more
                .get_or_insert_with(Box::default)
                .scheduled
                .push((e, origin.clone()));
        } else {
            rec.apply_effective(&e, ev, stated);
        }
        added
    }

    #[allow(clippy::too_many_arguments)]
    fn account_entry(
        &mut self,
        system: System,
        scope: &Sym,
        account_id: &str,
        kind: AccountKind,
        has_worker_id: bool,
        owner: Option<&str>,
        ev: &EvRef,
    ) -> (&mut Account, usize) {
        if let Some(i) = self
            .accounts
            .iter()
            .position(|a| a.system == system && a.scope == *scope && *a.account_id == *account_id)
        {
            let a = &mut self.accounts[i];
            if ev.occurred_at >= a.state_at {
                a.kind = kind;
                a.has_worker_id = has_worker_id;
                if owner.is_some() {
                    a.owner_worker_id = owner.map(Into::into);
                }
            }
            return (a, 0);
        }
        push_compact(
            &mut self.accounts,
            Account {
                system,
                scope: scope.clone(),
                account_id: account_id.into(),
                kind,
                owner_worker_id: owner.map(Into::into),
                has_worker_id,
                enabled: false,
                deleted: false,
                privileged: false,
                enabled_since: ev.occurred_at,
                removed_at: OptTs::NONE,
                state_at: Ts::MIN,
                state_ev: ev.clone(),
                stated: None,
                grants: ThinVec::new(),
                privileged_grants: 0,
            },
        );
        (self.accounts.last_mut().expect("just pushed"), 1)
    }

    /// Applies a directory event. Returns the entries it added (an
    /// account, a group).
    pub fn apply_directory(
        &mut self,
        e: DirectoryEvent,
        stated: &Attrs,
        ev: &EvRef,
        scope: &Sym,
        group: Option<Sym>,
    ) -> usize {
        let t = e.occurred_at;
        let (acct, mut added) = self.account_entry(
            System::Directory,
            scope,
            &e.account_id,
            e.account_kind,
            e.worker_id.as_deref().is_some_and(|w| !w.is_empty()),
            e.owner_worker_id.as_deref(),
            ev,
        );
        use DirectoryEventType as D;
        // `enabled` is the account's state after any event that states it;
        // the four state events say it by their type.
        let enabled = match e.event_type {
            D::AccountCreated => Some(e.enabled.unwrap_or(true)),
            D::AccountEnabled => Some(true),
            D::AccountDisabled | D::AccountDeleted => Some(false),
            D::AttributesChanged | D::GroupAdded | D::GroupRemoved => e.enabled,
        };
        if let Some(enabled) = enabled {
            set_state(acct, enabled, e.event_type == D::AccountDeleted, ev);
        }
        match e.event_type {
            D::GroupAdded | D::GroupRemoved => {
                // `privileged` here is the group's.
                if let Some(name) = group {
                    added += set_grant(
                        acct,
                        name,
                        e.event_type == D::GroupAdded,
                        e.privileged,
                        e.approved_by,
                        false,
                        ev,
                    );
                }
            }
            D::AccountDeleted => {}
            _ if t >= acct.state_at => {
                // The account's own flag: a creation sets it afresh, any
                // other account event can only raise it.
                acct.privileged =
                    e.privileged || (acct.privileged && e.event_type != D::AccountCreated);
            }
            _ => {}
        }
        if t >= acct.attrs_at() && !stated.is_empty() {
            let own_ev = (acct.state_ev != *ev).then(|| Box::new(ev.clone()));
            let s = acct.stated.get_or_insert_with(|| {
                Box::new(AccountAttrs {
                    attrs: Attrs::default(),
                    ev: None,
                })
            });
            s.attrs.merge(stated);
            s.ev = own_ev;
        }
        added
    }

    /// Applies an application event. Returns the entries it added (an
    /// account, an entitlement).
    pub fn apply_app(
        &mut self,
        e: AppEvent,
        ev: &EvRef,
        scope: &Sym,
        entitlement: Option<Sym>,
    ) -> usize {
        let (acct, mut added) = self.account_entry(
            System::App,
            scope,
            &e.account_id,
            e.account_kind,
            e.worker_id.as_deref().is_some_and(|w| !w.is_empty()),
            e.owner_worker_id.as_deref(),
            ev,
        );
        use AppEventType as A;
        match e.event_type {
            A::AppAccountCreated => {
                set_state(acct, true, false, ev);
                if e.privileged {
                    acct.privileged = true;
                }
            }
            A::AppAccountDisabled => {
                set_state(acct, false, false, ev);
                if e.privileged {
                    acct.privileged = true;
                }
            }
            A::AppAccountDeleted => set_state(acct, false, true, ev),
            A::EntitlementGranted | A::EntitlementRevoked | A::AccessRecertified => {
                // A grant on an account never seen before implies the account exists.
                if acct.state_at == Ts::MIN && e.event_type == A::EntitlementGranted {
                    set_state(acct, true, false, ev);
                }
                if let Some(name) = entitlement {
                    added += match e.event_type {
                        A::EntitlementGranted => {
                            set_grant(acct, name, true, e.privileged, e.approved_by, false, ev)
                        }
                        A::EntitlementRevoked => {
                            set_grant(acct, name, false, e.privileged, e.approved_by, false, ev)
                        }
                        _ => set_grant(acct, name, true, e.privileged, e.approved_by, true, ev),
                    };
                } else if e.event_type == A::AccessRecertified {
                    // Recertification of the whole account covers every grant on it.
                    let by = approver(e.approved_by);
                    for g in acct.grants.iter_mut().filter(|g| g.active) {
                        if g.recertified_at().is_none_or(|r| r < ev.occurred_at) {
                            g.recertify(ev.occurred_at, by.clone());
                        }
                    }
                }
            }
        }
        added
    }

    /// Number of entries held (accounts, grants, HR records, episodes): a
    /// walk over every list of the key, for checks; the engine keeps its
    /// total from what each apply reports it added.
    pub fn entries(&self) -> usize {
        self.hr.len()
            + self.episodes().len()
            + self
                .accounts
                .iter()
                .map(|a| 1 + a.grants.len())
                .sum::<usize>()
    }
}

fn set_state(acct: &mut Account, enabled: bool, deleted: bool, ev: &EvRef) {
    if ev.occurred_at < acct.state_at {
        return; // an older event never overwrites newer state
    }
    let was_enabled = acct.enabled && !acct.deleted;
    let now_enabled = enabled && !deleted;
    if now_enabled && !was_enabled {
        acct.enabled_since = ev.occurred_at;
    }
    if was_enabled && !now_enabled {
        acct.removed_at = ev.occurred_at.into();
    }
    if now_enabled != was_enabled || acct.state_at == Ts::MIN || deleted != acct.deleted {
        if let Some(s) = acct.stated.as_deref_mut() {
            // The attributes keep their evidence as the state moves on.
            s.ev.get_or_insert_with(|| Box::new(acct.state_ev.clone()));
        }
        acct.state_ev = ev.clone();
    }
    acct.enabled = enabled && !deleted;
    acct.deleted = deleted;
    acct.state_at = ev.occurred_at;
}

/// An approver as held in state: an empty one is none.
fn approver(approved_by: Option<Name>) -> Option<Box<str>> {
    approved_by
        .filter(|s| !s.is_empty())
        .map(|s| s.as_str().into())
}

/// Sets one grant of `acct`; returns 1 when it is a new entry.
#[allow(clippy::too_many_arguments)]
fn set_grant(
    acct: &mut Account,
    name: Sym,
    active: bool,
    privileged: bool,
    approved_by: Option<Name>,
    recertify: bool,
    ev: &EvRef,
) -> usize {
    let t = ev.occurred_at;
    let approved_by = approver(approved_by);
    // Names are interned, so the pointer decides but for names interned
    // once the interner was full: only a miss compares the text.
    let found = acct
        .grants
        .iter()
        .position(|g| g.name.ptr_eq(&name))
        .or_else(|| acct.grants.iter().position(|g| g.name == name));
    let (i, held_before, added) = match found {
        Some(i) => {
            let g = &mut acct.grants[i];
            if t < g.updated_at() {
                return 0;
            }
            let held_before = g.active && g.privileged;
            if recertify {
                g.recertify(t, approved_by);
                g.privileged |= privileged;
            } else if active {
                if g.active {
                    g.more().touched_at = Some(t);
                } else {
                    // Granted again: a new grant, nothing carried over.
                    g.more = None;
                    g.ev = ev.clone();
                }
                g.set_approver(approved_by);
                g.privileged |= privileged;
                g.active = true;
            } else {
                g.active = false;
                g.ev = ev.clone();
            }
            (i, held_before, 0)
        }
        None => {
            let mut g = Grant {
                name,
                privileged,
                active,
                ev: ev.clone(),
                more: None,
            };
            if recertify {
                g.recertify(t, approved_by);
            } else {
                g.set_approver(approved_by);
            }
            push_compact(&mut acct.grants, g);
            (acct.grants.len() - 1, false, 1)
        }
    };
    let held = acct.grants[i].active && acct.grants[i].privileged;
    match (held_before, held) {
        (false, true) => acct.privileged_grants += 1,
        (true, false) => acct.privileged_grants -= 1,
        _ => {}
    }
    added
}

impl HrRecord {
    /// Applies an HR event whose effective time has come.
    fn apply_effective(&mut self, e: &HrEvent, ev: &EvRef, stated: &Attrs) {
        let stamp = (e.effective_at, e.occurred_at);
        use HrEventType as H;
        let new_status = match e.event_type {
            H::Hire | H::Rehire | H::LeaveEnd => Some(WorkerStatus::Active),
            H::LeaveStart => Some(WorkerStatus::OnLeave),
            H::Termination => Some(WorkerStatus::Terminated),
            // A worker first seen through an attribute change is evidently employed.
            H::Transfer | H::Update | H::ContractExtension if self.status_ev.is_none() => {
                Some(WorkerStatus::Active)
            }
            _ => None,
        };
        let sets_attrs = stamp >= self.attrs_stamp();
        let mut sets_status = false;
        if let Some(status) = new_status {
            if stamp >= self.status_stamp() {
                if self.attrs_from_status && !sets_attrs {
                    // The attributes keep their evidence as the status moves on.
                    self.attrs_ev = self.status_ev.clone().map(Box::new);
                    self.attrs_from_status = false;
                }
                sets_status = true;
                self.status = status;
                self.status_effective = e.effective_at;
                self.status_cause = Some(e.event_type);
                self.status_ev = Some(ev.clone());
                self.worker_type = e.worker_type;
            }
        }
        if matches!(e.event_type, H::Hire | H::Rehire)
            && self.hired_at.get().is_none_or(|h| h <= e.effective_at)
        {
            self.hired_at = e.effective_at.into();
        }
        if e.event_type == H::Transfer && self.transfer().is_none_or(|(t, _)| *t <= e.effective_at)
        {
            self.more.get_or_insert_with(Box::default).transfer =
                Some((e.effective_at, ev.clone()));
        }
        if sets_attrs {
            self.attrs.merge(stated);
            self.attrs_effective = e.effective_at;
            self.attrs_from_status = sets_status;
            self.attrs_ev = (!sets_status).then(|| Box::new(ev.clone()));
            self.worker_type = e.worker_type;
            if e.contract_end.is_some() {
                self.contract_end = e.contract_end.into();
            }
        }
    }

    /// Effective time, then event time, of the latest status change.
    pub fn status_stamp(&self) -> Stamp {
        let at = self.status_ev.as_ref().map_or(Ts::MIN, |e| e.occurred_at);
        (self.status_effective, at)
    }

    /// Effective time, then event time, of the latest attribute change.
    pub fn attrs_stamp(&self) -> Stamp {
        let at = self.attrs_ev().map_or(Ts::MIN, |e| e.occurred_at);
        (self.attrs_effective, at)
    }

    /// Effective time and event of the latest TRANSFER.
    pub fn transfer(&self) -> Option<&(Ts, EvRef)> {
        self.more.as_deref().and_then(|m| m.transfer.as_ref())
    }

    /// Future-dated events waiting for their effective time.
    pub fn scheduled(&self) -> &[(HrEvent, Origin)] {
        self.more.as_deref().map_or(&[], |m| &m.scheduled)
    }

    /// The event that last set the attributes.
    pub fn attrs_ev(&self) -> Option<&EvRef> {
        if self.attrs_from_status {
            self.status_ev.as_ref()
        } else {
            self.attrs_ev.as_deref()
        }
    }
}

/// The store of one partition task.
#[derive(Debug, Default)]
pub struct Store {
    map: DashMap<Key, WorkerState, ahash::RandomState>,
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Starts loading the map entry of `key` (the control bytes of its
    /// home group and the entries of its home slot and the two after,
    /// where it almost always is) without reading either: the first of
    /// three stages, for the event three ahead of the one being applied.
    pub fn prefetch_entry(&self, key: &Key) {
        let (ctrl, entries) = self.home(key);
        prefetch(ctrl);
        prefetch_lines(entries.start as *const u8, 3);
    }

    /// Where `key` should be found: the address of its home group of
    /// control bytes, and the bytes of the entries in its home slot and
    /// the two after. In hashbrown's layout control bytes start at
    /// `data_end`, entries lie below it in reverse order, and a probe
    /// starts at `hash & mask`. Addresses are computed (wrapping), nothing
    /// is read; a unit test checks that keys are found there.
    fn home(&self, key: &Key) -> (*const u8, std::ops::Range<usize>) {
        let hash = self.map.hash_usize(key);
        let table = self.map.shards()[self.map.determine_shard(hash)].read();
        let home = hash & (table.buckets() - 1);
        let end = table.data_end().as_ptr();
        let ctrl = end.cast::<u8>().wrapping_add(home).cast_const();
        // The slots after home are below it.
        let entries = end.wrapping_sub(home + 3) as usize..end.wrapping_sub(home) as usize;
        (ctrl, entries)
    }

    /// Looks `key` up (its entry is in cache after `prefetch_entry`) and
    /// starts loading its HR records, accounts and episodes: the second
    /// stage, two events ahead.
    pub fn prefetch_lists(&self, key: &Key) {
        if let Some(st) = self.map.get(key) {
            prefetch_lines(st.hr.as_ptr(), 3);
            prefetch_lines(st.accounts.as_ptr(), 3);
            if let Some(w) = &st.watch {
                prefetch(&**w);
            }
        }
    }

    /// Looks `key` up and starts loading what its accounts point to (grant
    /// lists, attributes): the last stage, for the next event.
    pub fn prefetch(&self, key: &Key) {
        if let Some(st) = self.map.get(key) {
            for a in st.accounts.iter().take(2) {
                prefetch(a.grants.as_ptr());
                if let Some(attrs) = &a.stated {
                    prefetch(&**attrs);
                }
            }
        }
    }

    pub fn map(&self) -> &DashMap<Key, WorkerState, ahash::RandomState> {
        &self.map
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A bounded memory of recently seen event ids (FIFO eviction), so that a
/// redelivered event is ignored.
///
/// The ids are held as 64-bit fingerprints in an open-addressing table
/// with linear probing, at most half full, and deletion by backward shift
/// (no tombstones). At a million ids both the table and the arrival order
/// are far larger than the CPU caches, so an insert and the eviction it
/// causes each cost a cache miss: the slot of the next id to be evicted is
/// known one insert ahead and is prefetched then.
#[derive(Debug)]
pub struct Dedup {
    capacity: usize,
    /// Fingerprints in arrival order, oldest first.
    order: VecDeque<u64>,
    /// Fingerprints (never 0) or 0 for an empty slot; a power of two long.
    slots: Box<[u64]>,
    /// log2 of `slots.len()`.
    bits: u32,
}

/// The table's first size; it doubles when half full.
const DEDUP_MIN_BITS: u32 = 10;

impl Dedup {
    pub fn new(capacity: usize) -> Dedup {
        Dedup {
            capacity,
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            slots: vec![0; 1 << DEDUP_MIN_BITS].into_boxed_slice(),
            bits: DEDUP_MIN_BITS,
        }
    }

    /// Returns false when `id` was seen recently.
    pub fn insert(&mut self, system: System, id: &str) -> bool {
        let h = fingerprint(system, id);
        let mut i = self.home(h);
        loop {
            match self.slots[i] {
                0 => break,
                v if v == h => return false,
                _ => i = (i + 1) & self.mask(),
            }
        }
        self.slots[i] = h;
        self.order.push_back(h);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.remove(old);
            }
        } else if 2 * self.order.len() > self.slots.len() {
            self.grow();
        }
        if let Some(&next) = self.order.front() {
            prefetch(&self.slots[self.home(next)]);
        }
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Starts loading the slot `id` will probe first.
    pub fn prefetch(&self, system: System, id: &str) {
        let h = fingerprint(system, id);
        prefetch(&self.slots[self.home(h)]);
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot a fingerprint probes first: the top bits of a Fibonacci
    /// hash (FNV's low bits mix poorly).
    fn home(&self, h: u64) -> usize {
        (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits)) as usize
    }

    /// Removes `h`, which is in the table, shifting back the entries that
    /// probed past its slot so that every entry stays reachable from its home.
    fn remove(&mut self, h: u64) {
        let mask = self.mask();
        let mut hole = self.home(h);
        while self.slots[hole] != h {
            hole = (hole + 1) & mask;
        }
        self.slots[hole] = 0;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let v = self.slots[j];
            if v == 0 {
                break;
            }
            // The entry may fill the hole if the hole lies between its
            // home and where it sits.
            let home = self.home(v);
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.slots[hole] = v;
                self.slots[j] = 0;
                hole = j;
            }
        }
    }

    /// Makes room for `n` more ids at once (as many as a restore is about to
    /// apply), instead of doubling the table step by step on the way.
    pub fn reserve(&mut self, n: usize) {
        let want = (self.order.len() + n).min(self.capacity);
        let bits = self.want_bits(want);
        if bits > self.bits {
            self.rehash(bits);
        }
    }

    /// The table size (log2) that holds `n` ids at most half full.
    fn want_bits(&self, n: usize) -> u32 {
        let slots = (2 * n).next_power_of_two().max(1 << DEDUP_MIN_BITS);
        slots.trailing_zeros().max(self.bits)
    }

    fn grow(&mut self) {
        self.rehash(self.bits + 1);
    }

    fn rehash(&mut self, bits: u32) {
        self.bits = bits;
        let old = std::mem::replace(&mut self.slots, vec![0; 1 << self.bits].into_boxed_slice());
        let mask = self.mask();
        for h in old.iter().copied().filter(|&h| h != 0) {
            let mut i = self.home(h);
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = h;
        }
    }
}

/// Asks the CPU to bring the cache line at `p` in, without waiting for it.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is a hint
    // that reads nothing and cannot fault, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches `lines` cache lines from `p` on.
#[inline(always)]
fn prefetch_lines<T>(p: *const T, lines: usize) {
    for i in 0..lines {
        prefetch(p.cast::<u8>().wrapping_add(i * 64));
    }
}

fn fingerprint(system: System, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in std::iter::once(&(system as u8)).chain(id.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // 0 marks an empty slot of the table.
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_is_bounded_and_forgets_oldest() {
        let mut d = Dedup::new(2);
        assert!(d.insert(System::Hr, "a"));
        assert!(!d.insert(System::Hr, "a"));
        assert!(
            d.insert(System::Directory, "a"),
            "families have their own ids"
        );
        assert!(d.insert(System::Hr, "b"));
        assert_eq!(d.len(), 2);
        assert!(d.insert(System::Hr, "a"), "evicted, so accepted again");
    }

    /// The table answers as a plain set with FIFO eviction would, through
    /// growth, evictions and the backward shifts they cause, with ids drawn
    /// from a small universe so that many repeat inside the window.
    #[test]
    fn dedup_matches_a_fifo_set() {
        use crate::tools::generate::Rng;
        use std::collections::HashSet;
        let mut rng = Rng::new(11);
        for capacity in [1, 7, 600, 5_000] {
            let mut d = Dedup::new(capacity);
            let mut order = VecDeque::new();
            let mut seen = HashSet::new();
            for step in 0..40_000 {
                if step == 20_000 {
                    d.reserve(3 * capacity);
                }
                let id = format!("e{}", rng.below(2 * capacity as u64 + 50));
                let fresh = seen.insert(id.clone());
                if fresh {
                    order.push_back(id.clone());
                    if order.len() > capacity {
                        let old = order.pop_front().expect("non-empty");
                        seen.remove(&old);
                    }
                }
                assert_eq!(
                    d.insert(System::App, &id),
                    fresh,
                    "capacity {capacity}, step {step}, id {id}"
                );
                assert_eq!(d.len(), order.len());
            }
        }
    }

    #[test]
    fn dedup_reserve_sizes_the_table_once() {
        let mut d = Dedup::new(100_000);
        d.reserve(12_000);
        assert_eq!(d.slots.len(), 1 << 15);
        for i in 0..12_000 {
            assert!(d.insert(System::Hr, &format!("r{i}")));
        }
        assert_eq!(d.slots.len(), 1 << 15, "no growth within the reserve");
        assert!(!d.insert(System::Hr, "r0"));
        d.insert(System::Hr, "one more");
        d.reserve(5_000_000);
        assert_eq!(d.slots.len(), 1 << 18, "never past the capacity");
        d.reserve(10);
        assert_eq!(d.slots.len(), 1 << 18, "never shrinks");
        assert!(!d.insert(System::Hr, "r11999"));
    }

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

    /// The prefetch of a map entry aims where hashbrown puts it: were the
    /// layout to change under `Store::home`, prefetching would go on
    /// silently loading the wrong lines.
    #[test]
    fn keys_are_found_where_their_entry_is_prefetched() {
        let store = Store::new();
        let keys: Vec<Key> = (0..50_000).map(|i| Key::worker(&format!("w{i}"))).collect();
        for k in &keys {
            store.map().entry(k.clone()).or_default();
        }
        let at_home = keys
            .iter()
            .filter(|k| {
                let (_, entries) = store.home(k);
                let entry = store.map().get(*k).expect("inserted");
                let addr = &*entry as *const WorkerState as usize;
                entries.contains(&addr)
            })
            .count();
        // Most keys sit in their home slot or just after it (84% here,
        // where the tables are three quarters full); a wrong layout would
        // find almost none there.
        assert!(at_home * 4 > keys.len() * 3, "{at_home} of {}", keys.len());
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
}
