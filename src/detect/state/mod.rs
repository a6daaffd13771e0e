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
//!
//! Where each part lives:
//! - this module: the [`WorkerState`] of a key, the event references and
//!   attributes its parts share, and its episodes and timer;
//! - `hr`: what each HR source says about a worker, and applying HR
//!   events (effective time, parked future-dated events);
//! - `account`: directory and application accounts with their grants,
//!   and applying directory and app events;
//! - `store`: the `DashMap` of one partition task, and the staged
//!   prefetch of a coming event's entry and lists;
//! - `dedup`: the bounded memory of recent event ids;
//! - `cpu`: the cache prefetch hint.

mod account;
mod codec;
mod cpu;
mod dedup;
mod hr;
mod record;
mod store;
#[cfg(test)]
mod tests;

pub use account::{Account, AccountAttrs, AccountRef, Grant};
pub use codec::{CodecError, Reader, Writer};
pub use dedup::Dedup;
pub use hr::{HrRecord, WorkerStatus};
pub use record::emptied_record;
pub use record::{Head, Heads, Summary};
pub use store::{Frozen, Store};

use crate::detect::episode::Episode;
use crate::model::event::{EventType, Origin};
use crate::model::finding::Evidence;
use crate::model::id::{EventId, Name, Sym, Topic};
use crate::model::time::{OptTs, Ts};
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
