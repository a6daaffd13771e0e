//! The binary encoding of the state changelog (values, event references,
//! findings; `record.rs` writes a key's whole state with them): compact,
//! versioned by the record that holds it (`detect::engine::snapshot`), and
//! written and read by hand so that every field is named once here, next
//! to the types, with no format that guesses.
//!
//! Integers are LEB128 varints (signed ones zigzagged), strings a length
//! and their bytes, enums their index, options a presence byte; a finding
//! an episode holds, field by field. The future-dated HR events a record
//! parks are rare and already have a faithful encoding: their JSON.

use super::EvRef;
use crate::model::event::{AppEventType, DirectoryEventType, EventType, HrEventType, Key, System};
use crate::model::finding::{
    AccountableOwner, ContributingOwner, Detector, Escalation, Evidence, Finding, OwnerRole,
    Severity, Status, Subject,
};
use crate::model::id::{EventId, Name, Sym, Topic};
use crate::model::rule::Rule;
use crate::model::time::Ts;
use std::borrow::Cow;
use std::sync::Arc;

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
        let start = self.buf.len();
        let outer = std::mem::take(&mut self.topics);
        body(self);
        let topics = std::mem::replace(&mut self.topics, outer);
        // The table, a few bytes, is written after the body and turned to
        // the front: no second buffer for the body.
        let end = self.buf.len();
        self.count(topics.len());
        for t in &topics {
            self.str(t.as_str());
        }
        let table = self.buf.len() - end;
        self.buf[start..].rotate_right(table);
    }

    /// Appends what `body` writes as [`Writer::bytes`] would: its length
    /// first (turned to the front once known).
    pub fn prefixed(&mut self, body: impl FnOnce(&mut Writer)) {
        let start = self.buf.len();
        body(self);
        let end = self.buf.len();
        self.count(end - start);
        let length = self.buf.len() - end;
        self.buf[start..].rotate_right(length);
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    pub fn u64(&mut self, mut v: u64) {
        // Byte by byte into room made once: no copy of a varying length.
        self.buf.reserve(10);
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
        f: impl FnMut(&mut Reader<'a>) -> Result<T, CodecError>,
    ) -> Result<C, CodecError> {
        let mut out = C::default();
        self.seq_into(&mut out, f)?;
        Ok(out)
    }

    /// [`Reader::seq`] appending to `out`; after a failure, `out` holds
    /// the items read before it.
    pub fn seq_into<T, C: Extend<T>>(
        &mut self,
        out: &mut C,
        f: impl FnMut(&mut Reader<'a>) -> Result<T, CodecError>,
    ) -> Result<(), CodecError> {
        let n = self.count()?;
        let mut items = Items {
            reader: self,
            f,
            left: n,
            failed: None,
        };
        // One extend: the collection reserves for all `n` at once.
        out.extend(&mut items);
        match items.failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
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

/// The items of a sequence as an iterator that knows how many are left;
/// the first that fails to read ends it and is kept in `failed`.
struct Items<'r, 'a, F> {
    reader: &'r mut Reader<'a>,
    f: F,
    left: usize,
    failed: Option<CodecError>,
}

impl<'a, T, F: FnMut(&mut Reader<'a>) -> Result<T, CodecError>> Iterator for Items<'_, 'a, F> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match (self.f)(self.reader) {
            Ok(x) => Some(x),
            Err(e) => {
                self.left = 0;
                self.failed = Some(e);
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // A damaged count is bounded by the bytes left, not by the items'
        // size in memory: what is reserved at once is capped.
        (self.left.min(1 << 16), Some(self.left))
    }
}
