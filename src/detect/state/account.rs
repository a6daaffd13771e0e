//! Directory and application accounts and their grants (group
//! memberships, entitlements), and how directory and app events change
//! them: an older event never overwrites newer account state, attributes
//! or a grant; an account keeps its count of active privileged grants.

use super::{push_compact, Attrs, EvRef, WorkerState};
use crate::model::event::{
    AccountKind, AppEvent, AppEventType, DirectoryEvent, DirectoryEventType, System,
};
use crate::model::id::{Name, Sym};
use crate::model::time::{OptTs, Ts};
use thin_vec::ThinVec;

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
    pub(super) more: Option<Box<GrantMore>>,
}

/// The parts of a [`Grant`] most grants never have.
#[derive(Clone, Debug, Default)]
pub(super) struct GrantMore {
    pub(super) recertified_at: Option<Ts>,
    pub(super) approved_by: Option<Box<str>>,
    /// The newest event that re-asserted the grant without changing it.
    pub(super) touched_at: Option<Ts>,
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
    pub(super) ev: Option<Box<EvRef>>,
}

/// An account's identity (directory + account_id, or app_id +
/// account_id): one entity, held under one correlation key at a time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountRef {
    pub system: System,
    /// The directory or the app_id.
    pub scope: Sym,
    pub account_id: Name,
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
    pub(super) privileged_grants: u32,
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

    /// The account's identity.
    pub fn identity(&self) -> AccountRef {
        AccountRef {
            system: self.system,
            scope: self.scope.clone(),
            account_id: self.account_id.clone(),
        }
    }

    pub fn is(&self, id: &AccountRef) -> bool {
        self.system == id.system && self.scope == id.scope && self.account_id == id.account_id
    }

    /// Time of the newest event applied to the account: its state, its
    /// attributes or a grant.
    pub fn last_at(&self) -> Ts {
        self.grants
            .iter()
            .map(Grant::updated_at)
            .fold(self.state_at.max(self.attrs_at()), Ts::max)
            .max(self.state_ev.occurred_at)
    }

    /// Before the state event changes: attributes that the state event
    /// set (held as "the same event") name it themselves.
    fn pin_attrs_ev(&mut self) {
        if let Some(s) = self.stated.as_mut() {
            if s.ev.is_none() {
                s.ev = Some(Box::new(self.state_ev.clone()));
            }
        }
    }

    /// After an event of the account: one newer than anything it set
    /// (a link or an owner change that states nothing else) becomes the
    /// account's state event, so that [`Account::last_at`], which decides
    /// which key holds the account, counts it.
    pub fn saw(&mut self, ev: &EvRef) {
        if ev.occurred_at > self.last_at() {
            self.pin_attrs_ev();
            self.state_ev = ev.clone();
        }
    }

    /// Takes in what `other`, a copy of this account another key held,
    /// knows newer than this copy: its state, its attributes, each grant.
    /// Returns the grants added.
    pub fn absorb(&mut self, other: Account) -> usize {
        let both_enabled = self.enabled && other.enabled;
        if other.state_at > self.state_at {
            self.pin_attrs_ev();
            self.enabled = other.enabled;
            self.deleted = other.deleted;
            self.enabled_since = other.enabled_since;
            self.removed_at = other.removed_at;
            self.state_at = other.state_at;
            self.state_ev = other.state_ev.clone();
        }
        if both_enabled {
            // Enabled all along: since the earlier of the two.
            self.enabled_since = self.enabled_since.min(other.enabled_since);
        }
        self.privileged |= other.privileged;
        if other.attrs_at() > self.attrs_at() {
            if let Some(mut s) = other.stated {
                let ev = s.ev.take().map_or(other.state_ev, |e| *e);
                s.ev = (ev != self.state_ev).then(|| Box::new(ev));
                self.stated = Some(s);
            }
        }
        let mut added = 0;
        for g in other.grants {
            match self.grants.iter().position(|x| x.name == g.name) {
                // Held all along: granted when the older copy says.
                Some(i) if g.active && self.grants[i].active => {
                    if g.granted_at() < self.grants[i].granted_at() {
                        self.grants[i] = g;
                    }
                }
                Some(i) if g.updated_at() > self.grants[i].updated_at() => self.grants[i] = g,
                Some(_) => {}
                None => {
                    push_compact(&mut self.grants, g);
                    added += 1;
                }
            }
        }
        self.privileged_grants = self
            .grants
            .iter()
            .filter(|g| g.active && g.privileged)
            .count() as u32;
        added
    }

    /// Holds access: enabled, or (for app accounts) still holding entitlements.
    pub fn holds_access(&self) -> bool {
        !self.deleted
            && (self.enabled
                || (self.system == System::App && self.active_grants().next().is_some()))
    }
}

impl WorkerState {
    /// The account `id` held under this key, if any.
    pub fn account(&self, id: &AccountRef) -> Option<&Account> {
        self.accounts.iter().find(|a| a.is(id))
    }

    pub fn account_mut(&mut self, id: &AccountRef) -> Option<&mut Account> {
        self.accounts.iter_mut().find(|a| a.is(id))
    }

    /// Removes the account `id` (it now belongs to another key).
    pub fn remove_account(&mut self, id: &AccountRef) -> Option<Account> {
        let i = self.accounts.iter().position(|a| a.is(id))?;
        Some(self.accounts.remove(i))
    }

    /// Takes in an account another key let go, as it was there (the event
    /// that moved it applies next). A copy already here (the index said
    /// another key held it: only a damaged record gets here) is replaced
    /// when older. Returns the change in entries.
    pub fn adopt_account(&mut self, account: Account) -> isize {
        let size = |a: &Account| 1 + a.grants.len() as isize;
        let id = account.identity();
        match self.accounts.iter().position(|a| a.is(&id)) {
            Some(i) if self.accounts[i].last_at() < account.last_at() => {
                let delta = size(&account) - size(&self.accounts[i]);
                self.accounts[i] = account;
                delta
            }
            Some(_) => 0,
            None => {
                let added = size(&account);
                push_compact(&mut self.accounts, account);
                added
            }
        }
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
            // Who the account belongs to: as its newest event says.
            if ev.occurred_at >= a.last_at() {
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
