//! The binary encoding of a key's state, for the state changelog: compact,
//! versioned by the record that holds it (`detect::engine::snapshot`), and
//! written and read by hand so that every field is named once here, next
//! to the types, with no format that guesses.
//!
//! Integers are LEB128 varints (signed ones zigzagged), strings a length
//! and their bytes, enums their index, options a presence byte; a finding
//! an episode holds, field by field. The future-dated HR events a record
//! parks are rare and already have a faithful encoding: their JSON.

use super::account::GrantMore;
use super::hr::HrMore;
use super::{
    Account, AccountAttrs, Attrs, EvRef, Grant, HrRecord, Watch, WorkerState, WorkerStatus,
};
use crate::detect::episode::{Episode, Phase};
use crate::model::event::{
    AccountKind, AppEventType, DirectoryEventType, EventType, HrEvent, HrEventType, Key, Origin,
    System, WorkerType,
};
use crate::model::finding::{
    AccountableOwner, ContributingOwner, Detector, Escalation, Evidence, Finding, OwnerRole,
    Severity, Status, Subject,
};
use crate::model::id::{EventId, Name, Sym, Topic};
use crate::model::rule::Rule;
use crate::model::time::{OptTs, Ts};
use std::borrow::Cow;
use std::sync::Arc;
use thin_vec::ThinVec;

/// Why a state record cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state record unreadable at byte {at}: {what}")]
pub struct CodecError {
    pub at: usize,
    pub what: String,
}

/// Appends the encoding of values to a buffer. Event references name
/// their topic by its index in a table the record carries once
/// ([`Writer::with_topics`]).
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
    topics: Vec<Topic>,
}

impl Writer {
    /// Appends the topic table that `body` needed, then `body`'s bytes.
    pub fn with_topics(&mut self, body: impl FnOnce(&mut Writer)) {
        let mut b = Writer::default();
        body(&mut b);
        let names: Vec<&str> = b.topics.iter().map(|t| t.as_str()).collect();
        self.seq(&names, |w, n| w.str(n));
        self.buf.extend_from_slice(&b.buf);
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    pub fn u64(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn i64(&mut self, v: i64) {
        self.u64(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.buf.extend_from_slice(b);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn ts(&mut self, t: Ts) {
        self.i64(t.millis());
    }

    pub fn opt_ts(&mut self, t: Option<Ts>) {
        self.opt(t.as_ref(), |w, t| w.ts(*t));
    }

    pub fn opt<T: ?Sized>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Writer, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }

    pub fn seq<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Writer, &T)) {
        self.count(items.len());
        for x in items {
            f(self, x);
        }
    }

    pub fn key(&mut self, k: &Key) {
        self.bool(k.uncorrelated());
        self.str(k.id());
    }

    pub fn sym(&mut self, s: &Sym) {
        self.str(s.as_str());
    }

    pub fn event_id(&mut self, id: &EventId) {
        match id {
            EventId::Uuid(b) => {
                self.u8(0);
                self.buf.extend_from_slice(b);
            }
            EventId::Other(n) => {
                self.u8(1);
                self.str(n.as_str());
            }
        }
    }

    pub fn system(&mut self, s: System) {
        self.u8(s as u8);
    }

    pub fn rule(&mut self, r: Rule) {
        self.u8(r.index() as u8);
    }

    /// A finding, field by field (its JSON's names would double it).
    pub fn finding(&mut self, f: &Finding) {
        let opt = |w: &mut Writer, s: &Option<Arc<str>>| w.opt(s.as_deref(), |w, s: &str| w.str(s));
        self.str(&f.finding_id);
        self.u8(f.status as u8);
        self.rule(f.rule);
        self.u8(f.severity as u8);
        opt(self, &f.worker_id);
        self.system(f.subject.system);
        opt(self, &f.subject.directory);
        opt(self, &f.subject.app_id);
        opt(self, &f.subject.account_id);
        opt(self, &f.subject.entitlement);
        self.str(&f.summary);
        self.u8(f.accountable_owner.role as u8);
        self.str(&f.accountable_owner.team);
        self.u8(f.contributing_owner.role as u8);
        self.str(&f.contributing_owner.team);
        opt(self, &f.contributing_owner.contact);
        self.ts(f.detected_at);
        self.ts(f.remediation_deadline);
        self.str(&f.escalation.target);
        self.u8(f.escalation.level);
        self.seq(&f.evidence, |w, e| {
            w.str(&e.topic);
            w.i64(e.partition as i64);
            w.i64(e.offset);
            w.str(&e.event_id);
            w.str(&e.event_type);
            w.ts(e.occurred_at);
        });
        self.seq(&f.frameworks, |w, s| w.str(s));
        self.str(&f.detector.version);
        self.str(&f.detector.instance);
        self.ts(f.transitioned_at);
    }

    pub fn ev(&mut self, e: &EvRef) {
        self.i64(e.offset);
        self.ts(e.occurred_at);
        self.event_id(&e.event_id);
        self.i64(e.partition as i64);
        let i = match self.topics.iter().position(|t| *t == e.topic) {
            Some(i) => i,
            None => {
                self.topics.push(e.topic);
                self.topics.len() - 1
            }
        };
        self.count(i);
        match e.event_type {
            EventType::Hr(t) => {
                self.u8(0);
                self.u8(t as u8);
            }
            EventType::Directory(t) => {
                self.u8(1);
                self.u8(t as u8);
            }
            EventType::App(t) => {
                self.u8(2);
                self.u8(t as u8);
            }
        }
    }
}

/// Reads what a [`Writer`] wrote.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    topics: Vec<Topic>,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            at: 0,
            topics: Vec::new(),
        }
    }

    /// Reads the topic table [`Writer::with_topics`] wrote; the event
    /// references after it name their topics by index in it.
    pub fn topics(&mut self) -> Result<(), CodecError> {
        self.topics = self.seq(|r| Ok(Topic::new(r.str()?)))?;
        Ok(())
    }

    pub fn fail<T>(&self, what: impl Into<String>) -> Result<T, CodecError> {
        Err(CodecError {
            at: self.at,
            what: what.into(),
        })
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    pub fn is_done(&self) -> bool {
        self.at == self.buf.len()
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.is_done() {
            Ok(())
        } else {
            self.fail(format!("{} bytes left over", self.buf.len() - self.at))
        }
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        match self.buf.get(self.at) {
            Some(&b) => {
                self.at += 1;
                Ok(b)
            }
            None => self.fail("ends early"),
        }
    }

    pub fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => self.fail(format!("{b} is not a boolean")),
        }
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        self.fail("a varint longer than 64 bits")
    }

    pub fn i64(&mut self) -> Result<i64, CodecError> {
        let v = self.u64()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let v = self.u64()?;
        u32::try_from(v).or_else(|_| self.fail(format!("{v} does not fit 32 bits")))
    }

    pub fn count(&mut self) -> Result<usize, CodecError> {
        let n = self.u64()? as usize;
        // Every element takes at least a byte: a longer length is corrupt.
        if n > self.buf.len() - self.at {
            return self.fail(format!("a length of {n} past the end"));
        }
        Ok(n)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.count()?;
        let b = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(b)
    }

    pub fn str(&mut self) -> Result<&'a str, CodecError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).or_else(|_| self.fail("a string that is not UTF-8"))
    }

    pub fn ts(&mut self) -> Result<Ts, CodecError> {
        Ok(Ts(self.i64()?))
    }

    pub fn opt_ts(&mut self) -> Result<Option<Ts>, CodecError> {
        self.opt(Reader::ts)
    }

    pub fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Reader<'a>) -> Result<T, CodecError>,
    ) -> Result<Option<T>, CodecError> {
        if self.bool()? {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn seq<T, C: Default + Extend<T>>(
        &mut self,
        mut f: impl FnMut(&mut Reader<'a>) -> Result<T, CodecError>,
    ) -> Result<C, CodecError> {
        let n = self.count()?;
        let mut out = C::default();
        for _ in 0..n {
            out.extend(std::iter::once(f(self)?));
        }
        Ok(out)
    }

    pub fn key(&mut self) -> Result<Key, CodecError> {
        let uncorrelated = self.bool()?;
        let id = self.str()?;
        Ok(if uncorrelated {
            Key::account(id)
        } else {
            Key::worker(id)
        })
    }

    pub fn sym(&mut self) -> Result<Sym, CodecError> {
        Ok(Sym::new(self.str()?))
    }

    pub fn name(&mut self) -> Result<Name, CodecError> {
        Ok(Name::new(self.str()?))
    }

    pub fn event_id(&mut self) -> Result<EventId, CodecError> {
        match self.u8()? {
            0 => {
                let Some(b) = self.buf.get(self.at..self.at + 16) else {
                    return self.fail("ends early");
                };
                self.at += 16;
                Ok(EventId::Uuid(b.try_into().expect("16 bytes")))
            }
            1 => Ok(EventId::Other(self.name()?)),
            t => self.fail(format!("event id kind {t}")),
        }
    }

    /// The `n`th of `all`.
    pub fn pick<T: Copy>(&mut self, all: &[T], what: &str) -> Result<T, CodecError> {
        let i = self.u8()? as usize;
        match all.get(i) {
            Some(&x) => Ok(x),
            None => self.fail(format!("{what} {i} unknown")),
        }
    }

    pub fn system(&mut self) -> Result<System, CodecError> {
        self.pick(&[System::Hr, System::Directory, System::App], "system")
    }

    pub fn rule(&mut self) -> Result<Rule, CodecError> {
        self.pick(Rule::ALL, "rule")
    }

    pub fn finding(&mut self) -> Result<Finding, CodecError> {
        fn arc(r: &mut Reader<'_>) -> Result<Arc<str>, CodecError> {
            Ok(Arc::from(r.str()?))
        }
        fn opt(r: &mut Reader<'_>) -> Result<Option<Arc<str>>, CodecError> {
            r.opt(arc)
        }
        Ok(Finding {
            finding_id: self.str()?.to_string(),
            status: self.pick(Status::ALL, "status")?,
            rule: self.rule()?,
            severity: self.pick(Severity::ALL, "severity")?,
            worker_id: opt(self)?,
            subject: Subject {
                system: self.system()?,
                directory: opt(self)?,
                app_id: opt(self)?,
                account_id: opt(self)?,
                entitlement: opt(self)?,
            },
            summary: self.str()?.to_string(),
            accountable_owner: AccountableOwner {
                role: self.pick(OwnerRole::ALL, "owner role")?,
                team: arc(self)?,
            },
            contributing_owner: ContributingOwner {
                role: self.pick(OwnerRole::ALL, "owner role")?,
                team: arc(self)?,
                contact: opt(self)?,
            },
            detected_at: self.ts()?,
            remediation_deadline: self.ts()?,
            escalation: Escalation {
                target: arc(self)?,
                level: self.u8()?,
            },
            evidence: self.seq(|r| {
                Ok(Evidence {
                    topic: Cow::Owned(r.str()?.to_string()),
                    partition: r.i64()? as i32,
                    offset: r.i64()?,
                    event_id: arc(r)?,
                    event_type: Cow::Owned(r.str()?.to_string()),
                    occurred_at: r.ts()?,
                })
            })?,
            frameworks: self.seq(|r| Ok(Cow::Owned(r.str()?.to_string())))?,
            detector: Detector {
                version: arc(self)?,
                instance: arc(self)?,
            },
            transitioned_at: self.ts()?,
        })
    }

    pub fn ev(&mut self) -> Result<EvRef, CodecError> {
        let offset = self.i64()?;
        let occurred_at = self.ts()?;
        let event_id = self.event_id()?;
        let partition = self.i64()? as i32;
        let i = self.count()?;
        let Some(&topic) = self.topics.get(i) else {
            return self.fail(format!("topic {i} is not in the record's table"));
        };
        let event_type = match self.u8()? {
            0 => EventType::Hr(self.pick(HrEventType::ALL, "HR event type")?),
            1 => EventType::Directory(self.pick(DirectoryEventType::ALL, "directory event type")?),
            2 => EventType::App(self.pick(AppEventType::ALL, "app event type")?),
            f => return self.fail(format!("event family {f}")),
        };
        Ok(EvRef {
            offset,
            occurred_at,
            event_id,
            partition,
            topic,
            event_type,
        })
    }
}

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

impl WorkerState {
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
