//! A key's state ([`WorkerState`]) in the changelog's encoding
//! ([`super::codec`]): every part of it, field by field, in the order the
//! types declare them, after a [`Summary`] of it and the findings it holds
//! open, which a restore reads without decoding the state.

use super::account::GrantMore;
use super::codec::{CodecError, Reader, Writer};
use super::hr::HrMore;
use super::{
    Account, AccountAttrs, AccountRef, Attrs, Grant, HrRecord, Watch, WorkerState, WorkerStatus,
};
use crate::detect::episode::{Episode, Phase};
use crate::model::event::{AccountKind, HrEvent, HrEventType, Origin, WorkerType};
use crate::model::finding::{OpenFinding, OwnerRole, Severity, Status};
use crate::model::id::{Sym, Topic};
use crate::model::time::{OptTs, Ts};
use std::ops::Range;
use std::sync::Arc;
use thin_vec::ThinVec;

fn write_attrs(w: &mut Writer, a: &Attrs) {
    w.opt(a.email.as_ref(), |w, n| w.str(n));
    w.opt(a.department.as_ref(), Writer::sym);
    w.opt(a.title.as_ref(), Writer::sym);
    w.opt(a.manager_id.as_ref(), Writer::sym);
}

fn read_attrs(
    r: &mut Reader<'_>,
    intern: &mut dyn FnMut(&str) -> Sym,
) -> Result<Attrs, CodecError> {
    Ok(Attrs {
        email: r.opt(Reader::name)?,
        department: r.opt(|r| Ok(intern(r.str()?)))?,
        title: r.opt(|r| Ok(intern(r.str()?)))?,
        manager_id: r.opt(|r| Ok(intern(r.str()?)))?,
    })
}

const STATUSES: [WorkerStatus; 4] = [
    WorkerStatus::PreHire,
    WorkerStatus::Active,
    WorkerStatus::OnLeave,
    WorkerStatus::Terminated,
];

const PHASES: [Phase; 4] = [Phase::Pending, Phase::Held, Phase::Open, Phase::Escalated];

fn write_hr(w: &mut Writer, h: &HrRecord) {
    w.sym(&h.source_system);
    w.u8(h.status as u8);
    w.opt(h.status_cause.as_ref(), |w, t| w.u8(*t as u8));
    w.u8(h.worker_type as u8);
    w.bool(h.attrs_from_status);
    w.ts(h.status_effective);
    w.opt(h.status_ev.as_ref(), Writer::ev);
    w.opt_ts(h.hired_at.get());
    write_attrs(w, &h.attrs);
    w.ts(h.attrs_effective);
    w.opt(h.attrs_ev.as_deref(), Writer::ev);
    w.opt_ts(h.contract_end.get());
    w.opt(h.more.as_deref(), |w, m: &HrMore| {
        w.opt(m.transfer.as_ref(), |w, (t, ev)| {
            w.ts(*t);
            w.ev(ev);
        });
        w.seq(&m.scheduled, |w, (event, origin)| {
            let json = serde_json::to_vec(event).expect("an HR event always serializes");
            w.bytes(&json);
            w.str(origin.topic.as_str());
            w.i64(origin.partition as i64);
            w.i64(origin.offset);
        });
    });
}

fn read_hr(
    r: &mut Reader<'_>,
    intern: &mut dyn FnMut(&str) -> Sym,
) -> Result<HrRecord, CodecError> {
    Ok(HrRecord {
        source_system: intern(r.str()?),
        status: r.pick(&STATUSES, "worker status")?,
        status_cause: r.opt(|r| r.pick(HrEventType::ALL, "HR event type"))?,
        worker_type: r.pick(WorkerType::ALL, "worker type")?,
        attrs_from_status: r.bool()?,
        status_effective: r.ts()?,
        status_ev: r.opt(Reader::ev)?,
        hired_at: OptTs::from(r.opt_ts()?),
        attrs: read_attrs(r, intern)?,
        attrs_effective: r.ts()?,
        attrs_ev: r.opt(|r| r.ev().map(Box::new))?,
        contract_end: OptTs::from(r.opt_ts()?),
        more: r.opt(|r| {
            Ok(Box::new(HrMore {
                transfer: r.opt(|r| Ok((r.ts()?, r.ev()?)))?,
                scheduled: r.seq(|r| {
                    let json = r.bytes()?;
                    let event: HrEvent = serde_json::from_slice(json)
                        .or_else(|e| r.fail(format!("a future-dated HR event: {e}")))?;
                    let origin = Origin {
                        topic: Topic::new(r.str()?),
                        partition: r.i64()? as i32,
                        offset: r.i64()?,
                    };
                    Ok((event, origin))
                })?,
            }))
        })?,
    })
}

fn write_grant(w: &mut Writer, g: &Grant) {
    w.sym(&g.name);
    w.bool(g.privileged);
    w.bool(g.active);
    w.ev(&g.ev);
    w.opt(g.more.as_deref(), |w, m: &GrantMore| {
        w.opt_ts(m.recertified_at);
        w.opt(m.approved_by.as_deref(), |w, s: &str| w.str(s));
        w.opt_ts(m.touched_at);
    });
}

fn read_grant(
    r: &mut Reader<'_>,
    intern: &mut dyn FnMut(&str) -> Sym,
) -> Result<Grant, CodecError> {
    Ok(Grant {
        name: intern(r.str()?),
        privileged: r.bool()?,
        active: r.bool()?,
        ev: r.ev()?,
        more: r.opt(|r| {
            Ok(Box::new(GrantMore {
                recertified_at: r.opt_ts()?,
                approved_by: r.opt(|r| Ok(Box::<str>::from(r.str()?)))?,
                touched_at: r.opt_ts()?,
            }))
        })?,
    })
}

impl Account {
    /// The account alone, as one partition hands it to another.
    pub fn encode(&self, w: &mut Writer) {
        w.with_topics(|w| write_account(w, self));
    }

    /// Reads what [`Account::encode`] wrote.
    pub fn decode(
        r: &mut Reader<'_>,
        intern: &mut dyn FnMut(&str) -> Sym,
    ) -> Result<Account, CodecError> {
        r.topics()?;
        read_account(r, intern)
    }
}

impl super::EvRef {
    /// The reference alone, as a message between partitions carries it.
    pub fn encode(&self, w: &mut Writer) {
        w.with_topics(|w| w.ev(self));
    }

    /// Reads what [`super::EvRef::encode`] wrote.
    pub fn decode(r: &mut Reader<'_>) -> Result<super::EvRef, CodecError> {
        r.topics()?;
        r.ev()
    }
}

fn write_account(w: &mut Writer, a: &Account) {
    w.system(a.system);
    w.sym(&a.scope);
    w.str(&a.account_id);
    w.u8(a.kind as u8);
    w.opt(a.owner_worker_id.as_ref(), Writer::sym);
    w.bool(a.has_worker_id);
    w.bool(a.enabled);
    w.bool(a.deleted);
    w.bool(a.privileged);
    w.ts(a.enabled_since);
    w.opt_ts(a.removed_at.get());
    w.ts(a.state_at);
    w.ev(&a.state_ev);
    w.opt(a.stated.as_deref(), |w, s: &AccountAttrs| {
        write_attrs(w, &s.attrs);
        w.opt(s.ev.as_deref(), Writer::ev);
    });
    w.seq(&a.grants, write_grant);
}

fn read_account(
    r: &mut Reader<'_>,
    intern: &mut dyn FnMut(&str) -> Sym,
) -> Result<Account, CodecError> {
    let mut a = Account {
        system: r.system()?,
        scope: intern(r.str()?),
        account_id: r.name()?,
        kind: r.pick(AccountKind::ALL, "account kind")?,
        owner_worker_id: r.opt(Reader::sym)?,
        has_worker_id: r.bool()?,
        enabled: r.bool()?,
        deleted: r.bool()?,
        privileged: r.bool()?,
        enabled_since: r.ts()?,
        removed_at: OptTs::from(r.opt_ts()?),
        state_at: r.ts()?,
        state_ev: r.ev()?,
        stated: r.opt(|r| {
            Ok(Box::new(AccountAttrs {
                attrs: read_attrs(r, intern)?,
                ev: r.opt(|r| r.ev().map(Box::new))?,
            }))
        })?,
        grants: r.seq(|r| read_grant(r, intern))?,
        privileged_grants: 0,
    };
    // Kept, not stored: recounted as `set_grant` keeps it.
    a.privileged_grants = a.grants.iter().filter(|g| g.active && g.privileged).count() as u32;
    Ok(a)
}

fn write_episode(w: &mut Writer, e: &Episode) {
    w.rule(e.rule);
    w.u64(e.sid);
    w.ts(e.since);
    w.ts(e.began);
    w.ts(e.due);
    w.u8(e.phase as u8);
    w.bool(e.released);
    w.u64(e.opening);
    w.opt(e.finding.as_deref(), Writer::finding);
}

fn read_episode(r: &mut Reader<'_>) -> Result<Episode, CodecError> {
    Ok(Episode {
        rule: r.rule()?,
        sid: r.u64()?,
        since: r.ts()?,
        began: r.ts()?,
        due: r.ts()?,
        phase: r.pick(&PHASES, "episode phase")?,
        released: r.bool()?,
        opening: r.u64()?,
        // Marks one reconcile's matches; the engine's generation is
        // restored past every value it held.
        seen: 0,
        finding: r.opt(|r| r.finding().map(Box::new))?,
    })
}

/// What the engine keeps of a key whose state is still encoded: what a
/// restore adds to the engine's totals and timers for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// [`WorkerState::entries`].
    pub entries: u64,
    /// The highest opening serial among its episodes (0 without one).
    pub opening: u64,
    pub known_to_hr: bool,
    pub wake_at: Option<Ts>,
}

impl Summary {
    /// Reads the summary at the start of a key record.
    pub fn read(r: &mut Reader<'_>) -> Result<Summary, CodecError> {
        let summary = Summary::read_fields(r)?;
        // The accounts the key holds, read by [`Summary::owned`].
        r.bytes()?;
        Ok(summary)
    }

    fn read_fields(r: &mut Reader<'_>) -> Result<Summary, CodecError> {
        Ok(Summary {
            entries: r.u64()?,
            opening: r.u64()?,
            known_to_hr: r.bool()?,
            wake_at: r.opt_ts()?,
        })
    }

    /// The identities of the accounts a key record holds (for the
    /// engine's index of which key holds each account); scopes go through
    /// `intern`.
    pub fn owned(
        record: &[u8],
        intern: &mut dyn FnMut(&str) -> Sym,
    ) -> Result<Vec<AccountRef>, CodecError> {
        let mut r = Reader::new(record);
        Summary::read_fields(&mut r)?;
        read_owned(&mut r, intern)
    }
}

/// What a restore reads of a key record, in one pass over its head: its
/// summary, and where the [`Heads`] that read it keeps the accounts it
/// holds and its open findings.
#[derive(Debug)]
pub struct Head {
    pub summary: Summary,
    owned: Range<usize>,
    open: Range<usize>,
}

/// The heads of the key records a restore reads: the accounts each holds
/// ([`Summary::owned`]) and its open findings ([`read_open`]), kept
/// together for all keys rather than in two lists per key. Those of a
/// key's older records stay until [`Heads::into_open`] (a small part of
/// the records' size; a compacted changelog holds few older records).
#[derive(Debug, Default)]
pub struct Heads {
    owned: Vec<AccountRef>,
    open: Vec<OpenFinding>,
    /// Heads read, and heads kept.
    read: usize,
    kept: usize,
    /// Where the open findings of the heads kept are.
    kept_open: Vec<Range<usize>>,
}

impl Heads {
    /// Reads the head of `record`; scopes and teams go through `intern`.
    pub fn read(
        &mut self,
        record: &[u8],
        intern: &mut dyn FnMut(&str) -> Sym,
    ) -> Result<Head, CodecError> {
        let (owned, open) = (self.owned.len(), self.open.len());
        let head = self.read_at(record, intern);
        if head.is_err() {
            self.owned.truncate(owned);
            self.open.truncate(open);
        }
        head
    }

    fn read_at(
        &mut self,
        record: &[u8],
        intern: &mut dyn FnMut(&str) -> Sym,
    ) -> Result<Head, CodecError> {
        let mut r = Reader::new(record);
        let summary = Summary::read_fields(&mut r)?;
        let start = self.owned.len();
        let mut list = Reader::new(r.bytes()?);
        list.seq_into(&mut self.owned, |r| read_owned_one(r, intern))?;
        list.finish()?;
        let owned = start..self.owned.len();
        let start = self.open.len();
        let mut list = Reader::new(r.bytes()?);
        list.seq_into(&mut self.open, |r| {
            read_open_one(r, &mut |team| intern(team).to_arc())
        })?;
        list.finish()?;
        self.read += 1;
        Ok(Head {
            summary,
            owned,
            open: start..self.open.len(),
        })
    }

    /// The accounts `head`'s key holds.
    pub fn owned(&self, head: &Head) -> &[AccountRef] {
        &self.owned[head.owned.clone()]
    }

    /// How many heads this read.
    pub fn read_count(&self) -> usize {
        self.read
    }

    /// Every account read, for reserving an index of them.
    pub fn owned_count(&self) -> usize {
        self.owned.len()
    }

    /// Marks `head` (one this read, each at most once) as its key's
    /// newest: its open findings are among [`Heads::into_open`]'s.
    pub fn keep(&mut self, head: &Head) {
        self.kept += 1;
        if !head.open.is_empty() {
            self.kept_open.push(head.open.clone());
        }
    }

    /// The open findings of the heads kept; those of heads read and not
    /// kept (a key's older records) are dropped.
    pub fn into_open(self) -> Vec<OpenFinding> {
        if self.kept == self.read {
            // One record a key, as in a compacted changelog.
            return self.open;
        }
        let mut live = vec![false; self.open.len()];
        for range in self.kept_open {
            live[range].fill(true);
        }
        self.open
            .into_iter()
            .zip(live)
            .filter_map(|(f, live)| live.then_some(f))
            .collect()
    }
}

fn read_owned(
    r: &mut Reader<'_>,
    intern: &mut dyn FnMut(&str) -> Sym,
) -> Result<Vec<AccountRef>, CodecError> {
    let mut owned = Reader::new(r.bytes()?);
    let list = owned.seq(|r| read_owned_one(r, intern))?;
    owned.finish()?;
    Ok(list)
}

fn read_owned_one(
    r: &mut Reader<'_>,
    intern: &mut dyn FnMut(&str) -> Sym,
) -> Result<AccountRef, CodecError> {
    Ok(AccountRef {
        system: r.system()?,
        scope: intern(r.str()?),
        account_id: r.name()?,
    })
}

/// Reads the open findings of a key record, after its [`Summary`].
pub(super) fn read_open(r: &mut Reader<'_>) -> Result<Vec<OpenFinding>, CodecError> {
    let mut open = Reader::new(r.bytes()?);
    let list = open.seq(|r| read_open_one(r, &mut |team| team.into()))?;
    open.finish()?;
    Ok(list)
}

fn read_open_one(
    r: &mut Reader<'_>,
    team: &mut dyn FnMut(&str) -> Arc<str>,
) -> Result<OpenFinding, CodecError> {
    Ok(OpenFinding {
        finding_id: r.str()?.to_string(),
        status: r.pick(Status::ALL, "status")?,
        rule: r.rule()?,
        severity: r.pick(Severity::ALL, "severity")?,
        role: r.pick(OwnerRole::ALL, "owner role")?,
        team: team(r.str()?),
    })
}

impl WorkerState {
    pub fn summary(&self) -> Summary {
        Summary {
            entries: self.entries() as u64,
            opening: self.episodes().iter().map(|e| e.opening).max().unwrap_or(0),
            known_to_hr: self.known_to_hr(),
            wake_at: self.wake_at(),
        }
    }

    /// The findings this key holds open or escalated.
    pub fn open_findings(&self) -> impl Iterator<Item = &crate::model::finding::Finding> {
        self.episodes()
            .iter()
            .filter(|e| matches!(e.phase, Phase::Open | Phase::Escalated))
            .filter_map(|e| e.finding.as_deref())
    }

    /// Appends this key's record: its [`Summary`] and the identities of
    /// its accounts, its open findings as
    /// the owner gauges count them, then its state ([`Self::encode`]).
    pub fn encode_record(&self, w: &mut Writer) {
        let s = self.summary();
        w.u64(s.entries);
        w.u64(s.opening);
        w.bool(s.known_to_hr);
        w.opt_ts(s.wake_at);
        w.prefixed(|w| {
            w.seq(&self.accounts, |w, a| {
                w.system(a.system);
                w.sym(&a.scope);
                w.str(&a.account_id);
            })
        });
        w.prefixed(|w| {
            w.count(self.open_findings().count());
            for f in self.open_findings() {
                w.str(&f.finding_id);
                w.u8(f.status as u8);
                w.rule(f.rule);
                w.u8(f.severity as u8);
                w.u8(f.contributing_owner.role as u8);
                w.str(&f.contributing_owner.team);
            }
        });
        self.encode(w);
    }

    /// Appends this key's state to `w`.
    pub fn encode(&self, w: &mut Writer) {
        w.with_topics(|w| {
            w.seq(&self.hr, write_hr);
            w.seq(&self.accounts, write_account);
            w.opt(self.watch.as_deref(), |w, watch: &Watch| {
                w.seq(&watch.episodes, write_episode);
                w.opt_ts(watch.wake_at.get());
            });
        });
    }

    /// Reads what [`Self::encode`] wrote; departments, titles, managers,
    /// HR sources, scopes and grant names go through `intern`.
    pub fn decode(
        r: &mut Reader<'_>,
        intern: &mut dyn FnMut(&str) -> Sym,
    ) -> Result<WorkerState, CodecError> {
        r.topics()?;
        let hr: ThinVec<HrRecord> = r.seq(|r| read_hr(r, intern))?;
        let accounts: ThinVec<Account> = r.seq(|r| read_account(r, intern))?;
        let watch = r.opt(|r| {
            Ok(Box::new(Watch {
                episodes: r.seq(read_episode)?,
                wake_at: OptTs::from(r.opt_ts()?),
            }))
        })?;
        Ok(WorkerState {
            hr,
            accounts,
            watch,
        })
    }
}

/// The record of a key an account moved off and left with nothing: the
/// state of no worker, as any version reads it. A restore does not keep
/// the key, but its events before the record's offsets are in the state
/// of the key the account went to.
pub fn emptied_record() -> &'static [u8] {
    static EMPTY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| {
        let mut w = Writer::default();
        WorkerState::default().encode_record(&mut w);
        w.buf
    })
}
