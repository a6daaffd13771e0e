//! What one HR source system says about a worker ([`HrRecord`]), and how
//! HR events change it: each at its effective time (one ahead of stream
//! time is parked and applied when stream time reaches it), an older
//! event never overwriting a newer status or newer attributes; the
//! worker's status is that of the source whose latest change is newest.

use super::{push_compact, Attrs, EvRef, WorkerState};
use crate::model::event::{EventType, HrEvent, HrEventType, Origin, WorkerType};
use crate::model::id::{EventId, Sym};
use crate::model::time::{OptTs, Ts};

/// A worker's status by one source of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerStatus {
    PreHire,
    Active,
    OnLeave,
    Terminated,
}

/// Event-time order of an HR change: effective time, then record time, then id.
type Stamp = (Ts, Ts);

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
    pub(super) attrs_from_status: bool,
    /// Effective time of the latest status change.
    pub(super) status_effective: Ts,
    pub status_ev: Option<EvRef>,
    /// Effective time of the latest HIRE or REHIRE.
    pub hired_at: OptTs,
    pub attrs: Attrs,
    pub(super) attrs_effective: Ts,
    pub(super) attrs_ev: Option<Box<EvRef>>,
    pub contract_end: OptTs,
    pub(super) more: Option<Box<HrMore>>,
}

/// The parts of an [`HrRecord`] most workers never have.
#[derive(Clone, Debug, Default)]
pub(super) struct HrMore {
    /// Effective time and event of the latest TRANSFER.
    pub(super) transfer: Option<(Ts, EvRef)>,
    /// Future-dated events, applied when stream time reaches `effective_at`.
    pub(super) scheduled: Vec<(HrEvent, Origin)>,
}

impl WorkerState {
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
