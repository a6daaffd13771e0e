//! An engine's state as records of the state changelog, and an engine
//! rebuilt from them.
//!
//! A [`Checkpoint`] holds what changed since the previous one: the state
//! of each key changed (whole, so the newest record of a key is all a
//! restore needs, as a compacted topic keeps it), the de-duplication ids
//! added (one piece per checkpoint, numbered by the window's insertion
//! count; pieces wholly out of the window are listed for deletion), and
//! the partition record: stream time, the storms, their timers, the
//! counters an engine keeps, where the window starts and ends, and where
//! the accounts let go to other partitions in the last day went.
//!
//! An engine restored from the newest key records, pieces and partition
//! record of an engine's checkpoints, then given the records that engine
//! applied after its last checkpoint, publishes exactly what that engine
//! published after it (a unit test cuts a feed at every point it is given).

use super::cause::Cause;
use super::storm::{Opening, Storm};
use super::timers::TimerKey;
use super::Engine;
use crate::config::Config;
use crate::detect::rules::Rule;
use crate::detect::state::{emptied_record, AccountRef, CodecError, Reader, Writer};
use crate::model::event::{Key, System};
use crate::model::id::EventId;
use crate::model::time::Ts;
use std::cmp::Reverse;
use std::collections::HashSet;

/// The version of the encoding of every state record written.
pub const FORMAT_VERSION: u8 = 6;

/// The versions of state records read: format 5 differs from 6 only in
/// its partition record, which does not list the accounts let go to other
/// partitions (read as none). A record of another version is not read.
pub const READ_FORMATS: std::ops::RangeInclusive<u8> = 5..=FORMAT_VERSION;

/// What changed in an engine since its previous checkpoint.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// Each key changed, with its whole state after the prefix the
    /// checkpoint was asked for ([`Engine::checkpoint_after`]), in the
    /// order to write them ([`Checkpoint::key_records`]).
    pub keys: Vec<(Key, Vec<u8>)>,
    /// The length of that prefix.
    pub prefix: usize,
    /// The de-duplication ids added, in pieces of at most about
    /// [`MAX_PIECE_BYTES`]: the number of each piece's first id, and the
    /// piece.
    pub dedup: Vec<(u64, Vec<u8>)>,
    /// Pieces of ids (by first number) now wholly out of the window.
    pub dedup_expired: Vec<u64>,
    /// Pieces a checkpoint cut short left past the window's end, and (after
    /// a state rebuilt from history) the partition record: deleted with the
    /// keys, before the new partition record.
    pub dedup_orphaned: Vec<u64>,
    /// The state was rebuilt from history over an older changelog: its
    /// partition record is deleted first, so that a crash before the new
    /// one cannot pair it with these keys.
    pub supersedes: bool,
    /// The first checkpoint of a state not restored from the changelog
    /// (fresh, or rebuilt from history): it begins with an origin record,
    /// before which nothing in the changelog is needed.
    pub origin: bool,
    /// Keys a changelog holds that this state does not (written by a run
    /// whose state was not restored, or emptied by the previous
    /// checkpoint): to delete.
    pub deleted: Vec<Key>,
    /// The partition record.
    pub partition: Vec<u8>,
}

impl Checkpoint {
    /// The key records in the order they are written: a deleted key has
    /// no state, a key an account moved off and left with nothing the
    /// state of no worker ([`emptied_record`]: deleted by the next
    /// checkpoint). The keys come first, a key that let an account go to
    /// another after that one, and the deletions last: a checkpoint cut
    /// short between two of them leaves an account that changed hands
    /// under both keys, which the restore settles
    /// ([`Engine::settle_moves`]), never under neither.
    pub fn key_records(&self) -> impl Iterator<Item = (&Key, Option<&[u8]>)> {
        self.keys
            .iter()
            .map(|(k, s)| (k, Some(&s[self.prefix..])))
            .chain(self.deleted.iter().map(|k| (k, None)))
    }
}

/// What the engine keeps to write checkpoints.
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Keys changed since the last checkpoint.
    pub(super) dirty: HashSet<Key, ahash::RandomState>,
    /// Number of the first de-duplication id not yet written.
    dedup_written: u64,
    /// Pieces written and maybe still in the window: first number, end.
    pieces: std::collections::VecDeque<(u64, u64)>,
    /// Keys to delete at the next checkpoint.
    deleted: Vec<Key>,
    /// Pieces past the window's end to delete at the next checkpoint.
    orphaned: Vec<u64>,
    /// The next checkpoint replaces a changelog this state was not
    /// restored from.
    supersedes: bool,
    /// The next checkpoint is the first of a state not restored from the
    /// changelog.
    origin: bool,
    /// Accounts moved between keys since the last checkpoint: the
    /// account, the key letting it go, the key taking it.
    pub(super) moves: Vec<(AccountRef, Key, Key)>,
}

impl Changes {
    /// What a state restored from a checkpoint has written: the window
    /// up to `end`, and the pieces of ids written (first number, end);
    /// those past `end` (a checkpoint cut short) are deleted by the next.
    pub(super) fn restored(end: u64, pieces: Vec<(u64, u64)>) -> Changes {
        let (pieces, orphaned): (Vec<_>, Vec<_>) = pieces.into_iter().partition(|p| p.0 < end);
        Changes {
            dedup_written: end,
            pieces: pieces.into(),
            orphaned: orphaned.into_iter().map(|p| p.0).collect(),
            ..Changes::default()
        }
    }
}

/// Why state records cannot restore an engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("the state was written in format {found}; this version reads formats {} to {}", READ_FORMATS.start(), READ_FORMATS.end())]
    Version { found: u8 },
    #[error("the state was written under another configuration of rules, owners, storm guard, window, instance or input topics (fingerprint {found:016x}, this one {expected:016x}): its findings or offsets would differ")]
    Config { found: u64, expected: u64 },
    #[error("the de-duplication window lacks ids {from}..{to} (a piece is missing)")]
    DedupGap { from: u64, to: u64 },
    #[error("key {key}: {source}")]
    Key { key: String, source: CodecError },
    #[error("{0}")]
    Codec(#[from] CodecError),
}

/// A hash of everything in the configuration that changes what an engine
/// holds or publishes (rules, SLAs, owners, escalation, storm guard,
/// window size, instance) or what its offsets mean (the input topics, in
/// order, and routing by payload). State written under another one is not restored.
pub fn config_fingerprint(cfg: &Config) -> u64 {
    // The input topics too: the offsets a state reflects are theirs, by
    // position.
    let mut text = format!(
        "{:?}|{:?}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{}|{:?}|{:?}|{:?}",
        cfg.rules,
        cfg.storm,
        cfg.remediation_ms,
        cfg.dedup_capacity,
        cfg.dedup_max_age_ms,
        cfg.hr,
        cfg.it,
        cfg.default_app,
        cfg.apps,
        cfg.governance_team,
        cfg.escalation_target,
        cfg.critical_escalation_target,
        cfg.instance,
        cfg.topics.hr,
        cfg.topics.directory,
        cfg.topics.app,
    );
    // Routing by payload decides which partition holds a key, and adds the
    // repartition topic's position to the offsets.
    if cfg.kafka.route_by == crate::config::RouteBy::Payload {
        text.push_str(&format!(
            "|payload|{}|{}",
            cfg.kafka.partitioner.as_str(),
            cfg.topics.repartition
        ));
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn write_cause(w: &mut Writer, c: &Cause) {
    w.system(c.system);
    w.sym(&c.scope);
    w.opt(c.ev.as_ref(), Writer::ev);
}

fn read_cause(r: &mut Reader<'_>) -> Result<Cause, CodecError> {
    Ok(Cause {
        system: r.system()?,
        scope: r.sym()?,
        ev: r.opt(Reader::ev)?,
    })
}

fn write_storm(w: &mut Writer, s: &Storm) {
    w.count(s.openings.len());
    for o in &s.openings {
        w.ts(o.at);
        w.u64(o.serial);
        w.key(&o.key);
        write_cause(w, &o.cause);
        w.bool(o.alive);
    }
    w.opt(s.active.as_deref(), Writer::finding);
    w.bool(s.escalated);
    w.ts(s.opened_at);
    w.u64(s.before.start);
    w.u64(s.before.end);
    w.count(s.drifting);
    w.count(s.held);
    let mut held: Vec<&Key> = s.held_keys.iter().collect();
    held.sort();
    w.seq(&held, |w, k| w.key(k));
    w.ts(s.last_clear);
}

pub(super) fn read_storm(r: &mut Reader<'_>) -> Result<Storm, CodecError> {
    let mut s = Storm {
        openings: r.seq(|r| {
            Ok(Opening {
                at: r.ts()?,
                serial: r.u64()?,
                key: r.key()?,
                cause: read_cause(r)?,
                alive: r.bool()?,
            })
        })?,
        ..Storm::default()
    };
    s.active = r.opt(|r| r.finding().map(Box::new))?;
    s.escalated = r.bool()?;
    s.opened_at = r.ts()?;
    s.before = r.u64()?..r.u64()?;
    s.drifting = r.u64()? as usize;
    s.held = r.u64()? as usize;
    s.held_keys = r.seq(Reader::key)?;
    s.last_clear = r.ts()?;
    // Kept, not stored: the live openings in the window per key.
    for o in s.openings.iter().filter(|o| o.alive) {
        *s.distinct.entry(o.key.clone()).or_default() += 1;
    }
    Ok(s)
}

/// The largest piece of de-duplication ids, give or take one id: a
/// catch-up adds tens of thousands of ids between checkpoints, and one
/// record must stay well below a broker's largest message (1 MB by
/// default).
pub const MAX_PIECE_BYTES: usize = 256 * 1024;

/// The most a partition record gives to the accounts let go to other
/// partitions (about 5,000 of them; the newest are kept).
pub const MAX_FORWARDS_BYTES: usize = 256 * 1024;

/// The ids from number `first` on, in pieces of at most about
/// [`MAX_PIECE_BYTES`]: the first number, the end and the bytes of each.
fn write_pieces<'a>(
    mut first: u64,
    ids: impl Iterator<Item = (System, &'a EventId)>,
) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut body = Writer::default();
    let mut n = 0u64;
    let mut close = |first: &mut u64, n: &mut u64, body: &mut Writer| {
        // As `Reader::seq` reads it: the count, then the ids.
        let mut w = Writer::default();
        w.count(*n as usize);
        w.buf.extend_from_slice(&body.buf);
        out.push((*first, *first + *n, w.buf));
        *first += *n;
        *n = 0;
        body.buf.clear();
    };
    for (system, id) in ids {
        body.system(system);
        body.event_id(id);
        n += 1;
        if body.buf.len() >= MAX_PIECE_BYTES {
            close(&mut first, &mut n, &mut body);
        }
    }
    if n > 0 {
        close(&mut first, &mut n, &mut body);
    }
    out
}

/// Reads a piece of de-duplication ids.
/// The ids of one piece of the de-duplication window, oldest first.
pub fn read_ids(piece: &[u8]) -> Result<Vec<(System, EventId)>, CodecError> {
    let mut r = Reader::new(piece);
    let ids = r.seq(|r| Ok((r.system()?, r.event_id()?)))?;
    r.finish()?;
    Ok(ids)
}

/// De-duplication ids, oldest first.
pub type WindowIds = Vec<(System, EventId)>;

/// The ids of the window `window` from the pieces that hold them (first
/// number, piece; in any order, pieces out of the window included), oldest
/// first, and the bounds of every piece (for [`Engine::restore`]).
pub fn window_ids(
    window: std::ops::Range<u64>,
    pieces: impl IntoIterator<Item = (u64, Vec<u8>)>,
) -> Result<(WindowIds, Vec<(u64, u64)>), RestoreError> {
    let mut pieces: Vec<(u64, Vec<u8>)> = pieces.into_iter().collect();
    pieces.sort_by_key(|p| p.0);
    let mut out = Vec::with_capacity((window.end.saturating_sub(window.start)) as usize);
    let mut bounds = Vec::with_capacity(pieces.len());
    let mut next = window.start;
    for (first, piece) in pieces {
        // Its length from its first varint; one that cannot say counts as
        // one id (it is deleted once out of the window).
        let n = Reader::new(&piece).count().unwrap_or(1) as u64;
        let end = first.saturating_add(n.max(1));
        // A piece past the window's end was written by a checkpoint whose
        // partition record never came: the state goes on numbering from
        // the end, and deletes it ([`Engine::restore`]).
        bounds.push((first, if first >= window.end { first } else { end }));
        if end <= next || next >= window.end || first >= window.end {
            continue;
        }
        let ids = read_ids(&piece)?;
        if first > next {
            return Err(RestoreError::DedupGap {
                from: next,
                to: first,
            });
        }
        let take = (window.end.min(end) - next) as usize;
        out.extend(ids.into_iter().skip((next - first) as usize).take(take));
        next += take as u64;
    }
    if next < window.end {
        return Err(RestoreError::DedupGap {
            from: next,
            to: window.end,
        });
    }
    Ok((out, bounds))
}

/// The parts of a partition record a restore needs before the keys.
#[derive(Debug)]
pub struct PartitionRecord {
    /// Where the de-duplication window starts and ends (ids by number).
    pub dedup_window: std::ops::Range<u64>,
    /// The window's stretches of arrival (`state.dedup_max_age`).
    pub(super) dedup_stretches: Vec<(u64, Ts)>,
    /// Its format ([`READ_FORMATS`]).
    pub(super) version: u8,
    pub(super) bytes: Vec<u8>,
}

impl PartitionRecord {
    /// Reads the header of a partition record: checks its version and the
    /// configuration it was written under.
    pub fn read(bytes: Vec<u8>, cfg: &Config) -> Result<PartitionRecord, RestoreError> {
        let mut r = Reader::new(&bytes);
        let version = r.u8()?;
        if !READ_FORMATS.contains(&version) {
            return Err(RestoreError::Version { found: version });
        }
        let found = r.u64()?;
        let expected = config_fingerprint(cfg);
        if found != expected {
            return Err(RestoreError::Config { found, expected });
        }
        let start = r.u64()?;
        let end = r.u64()?;
        if end < start || end - start > cfg.dedup_capacity as u64 {
            return r
                .fail(format!(
                    "a de-duplication window {start}..{end}: reversed, or longer than state.dedup_capacity"
                ))
                .map_err(RestoreError::Codec);
        }
        let stretches: Vec<(u64, Ts)> = r.seq(|r| Ok((r.u64()?, r.ts()?)))?;
        if stretches
            .windows(2)
            .any(|w| w[1].0 <= w[0].0 || w[1].1 < w[0].1)
            || stretches.iter().any(|s| s.0 < start || s.0 >= end)
        {
            return r
                .fail("stretches of the de-duplication window out of order or outside it")
                .map_err(RestoreError::Codec);
        }
        Ok(PartitionRecord {
            dedup_window: start..end,
            dedup_stretches: stretches,
            version,
            bytes,
        })
    }
}

impl Engine {
    /// From now on, remembers what changes, for [`Engine::checkpoint`];
    /// the first checkpoint holds everything the engine holds already (a
    /// state rebuilt from the input history).
    pub fn track_changes(&mut self) {
        self.track_changes_after(Vec::new(), Vec::new());
    }

    /// [`Engine::track_changes`] over a changelog this engine's state was
    /// not restored from, holding pieces of ids (first number, end) and
    /// `keys`: its ids are numbered after those pieces, and the first
    /// checkpoint deletes them and the keys this state does not hold.
    pub fn track_changes_after(&mut self, written: Vec<(u64, u64)>, keys: Vec<Key>) {
        if self.changes.is_some() {
            return;
        }
        if let Some(end) = written.iter().map(|p| p.1).max() {
            self.dedup.renumber(end);
        }
        let mut pieces: std::collections::VecDeque<(u64, u64)> = written.into();
        pieces.make_contiguous().sort_unstable();
        let dirty = self
            .store
            .map()
            .iter()
            .map(|e| e.key().clone())
            .chain(self.store.frozen().iter().map(|e| e.key().clone()))
            .collect();
        let mut deleted: Vec<Key> = keys
            .into_iter()
            .filter(|k| !self.store.contains(k))
            .collect();
        deleted.sort();
        let supersedes = !pieces.is_empty() || !deleted.is_empty() || !self.store.is_empty();
        self.changes = Some(Changes {
            dirty,
            dedup_written: self.dedup.window_start(),
            pieces,
            deleted,
            orphaned: Vec::new(),
            supersedes,
            origin: true,
            moves: Vec::new(),
        });
    }

    /// Keys a restore read emptied records of (an account moved off and
    /// left them with nothing): the next checkpoint deletes them.
    pub fn delete_emptied(&mut self, keys: Vec<Key>) {
        if let Some(c) = &mut self.changes {
            c.deleted
                .extend(keys.into_iter().filter(|k| !self.store.contains(k)));
        }
    }

    /// Notes that `key`'s state changed.
    #[inline]
    pub(super) fn touched(&mut self, key: &Key) {
        if let Some(c) = &mut self.changes {
            if !c.dirty.contains(key) {
                c.dirty.insert(key.clone());
            }
        }
    }

    /// What changed since the previous checkpoint (everything, for the
    /// first one after [`Engine::track_changes`] on a fresh engine). Keys
    /// come in key order, so the records of a checkpoint do not depend on
    /// hashing.
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.checkpoint_after(&[])
    }

    /// [`Engine::checkpoint`] with each key record after `prefix` (the
    /// frame a changelog record begins with): written in place, not
    /// copied behind it afterwards.
    pub fn checkpoint_after(&mut self, prefix: &[u8]) -> Checkpoint {
        let Some(changes) = self.changes.as_mut() else {
            return Checkpoint::default();
        };
        let mut dirty: Vec<Key> = changes.dirty.drain().collect();
        dirty.sort();
        let dirty = super::owners::receivers_first(dirty, &std::mem::take(&mut changes.moves));
        let mut keys = Vec::with_capacity(dirty.len());
        let mut gone = Vec::new();
        // One buffer grows to the largest record; each is copied out of it
        // at its size.
        let mut w = Writer::default();
        let prefixed = |record: &[u8]| [prefix, record].concat();
        for key in dirty {
            if let Some(st) = self.store.map().get(&key) {
                w.buf.clear();
                w.buf.extend_from_slice(prefix);
                st.encode_record(&mut w);
                keys.push((key, w.buf.clone()));
            } else if let Some(frozen) = self.store.frozen().get(&key) {
                keys.push((key.clone(), prefixed(frozen.record())));
            } else {
                // Removed since (an account moved off and left it empty):
                // written empty, in its place in the order.
                keys.push((key.clone(), prefixed(emptied_record())));
                gone.push(key);
            }
        }
        // Keys the changelog held that this state did not when it began
        // tracking: deleted unless they have come back since (their
        // records are among `keys`).
        let store = &self.store;
        let deleted: Vec<Key> = std::mem::take(&mut changes.deleted)
            .into_iter()
            .filter(|k| !store.contains(k))
            .collect();
        // A key emptied since is written empty now, so that a restore from a
        // checkpoint cut short knows its events before these offsets are
        // in the state of the key the account went to; the next checkpoint
        // deletes it.
        changes.deleted.extend(gone);
        let mut out = Checkpoint {
            keys,
            prefix: prefix.len(),
            deleted,
            supersedes: std::mem::take(&mut changes.supersedes),
            origin: std::mem::take(&mut changes.origin),
            ..Checkpoint::default()
        };
        let start = self.dedup.window_start();
        let end = self.dedup.inserted();
        let from = changes.dedup_written.max(start);
        let pieces = if end > from {
            write_pieces(from, self.dedup.since(from))
        } else {
            Vec::new()
        };
        // Pieces past the end a cut-short checkpoint left, unless one of
        // this one's pieces takes their key.
        out.dedup_orphaned = std::mem::take(&mut changes.orphaned)
            .into_iter()
            .filter(|&f| !pieces.iter().any(|p| p.0 == f))
            .collect();
        changes
            .pieces
            .retain(|p| !pieces.iter().any(|q| q.0 == p.0));
        for (first, end, piece) in pieces {
            changes.pieces.push_back((first, end));
            out.dedup.push((first, piece));
        }
        changes.dedup_written = end;
        while changes.pieces.front().is_some_and(|&(_, e)| e <= start) {
            let (first, _) = changes.pieces.pop_front().expect("peeked");
            out.dedup_expired.push(first);
        }
        out.partition = self.partition_record(start, end);
        out
    }

    fn partition_record(&self, dedup_start: u64, dedup_end: u64) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(FORMAT_VERSION);
        w.u64(config_fingerprint(&self.cfg));
        w.u64(dedup_start);
        w.u64(dedup_end);
        let stretches: Vec<(u64, Ts)> = self.dedup.stretches().collect();
        w.seq(&stretches, |w, &(first, began)| {
            w.u64(first);
            w.ts(began);
        });
        w.with_topics(|w| self.partition_body(w));
        w.buf
    }

    fn partition_body(&self, w: &mut Writer) {
        w.ts(self.now);
        w.u64(self.generation);
        w.u64(self.opening_serial);
        let s = &self.stats;
        for n in [
            s.events,
            s.duplicates,
            s.timers_fired,
            s.opened,
            s.escalated,
            s.resolved,
            s.held,
        ] {
            w.u64(n);
        }
        w.seq(&self.storms, write_storm);
        // The storms' timers, stale ones included: a stale end check of an
        // earlier storm runs against the next one, as it would have.
        let mut timers: Vec<(Ts, u8, Rule)> = self
            .timers
            .iter()
            .filter_map(|Reverse((at, which))| match which {
                TimerKey::Storm(rule) => Some((*at, 0, *rule)),
                TimerKey::StormEnd(rule) => Some((*at, 1, *rule)),
                TimerKey::Worker(_) => None,
            })
            .collect();
        timers.sort();
        w.seq(&timers, |w, (at, kind, rule)| {
            w.ts(*at);
            w.u8(*kind);
            w.rule(*rule);
        });
        // Accounts let go to another partition within the last day: a
        // handover that reaches this partition after a restart still
        // follows the account. The newest first, up to
        // `MAX_FORWARDS_BYTES` (a mass move must not make the record
        // larger than a broker takes), ties in the order of their bytes,
        // so that one state writes one record. The entries are encoded
        // into one buffer, not one allocation each at every checkpoint.
        let mut all = Writer::default();
        let mut forwards: Vec<(Reverse<Ts>, std::ops::Range<usize>)> = self
            .forwards
            .iter()
            .filter(|(_, (_, at))| at.plus(crate::model::time::MS_PER_DAY) >= self.now)
            .map(|(account, (key, at))| {
                let start = all.buf.len();
                all.ts(*at);
                all.key(key);
                super::owners::write_account_ref(&mut all, account);
                (Reverse(*at), start..all.buf.len())
            })
            .collect();
        let bytes = &all.buf;
        forwards.sort_unstable_by(|(a, x), (b, y)| {
            a.cmp(b)
                .then_with(|| bytes[x.clone()].cmp(&bytes[y.clone()]))
        });
        let mut room = MAX_FORWARDS_BYTES;
        let kept = forwards
            .iter()
            .take_while(|(_, one)| match room.checked_sub(one.len()) {
                Some(left) => {
                    room = left;
                    true
                }
                None => false,
            })
            .count();
        w.seq(&forwards[..kept], |w, (_, one)| {
            w.buf.extend_from_slice(&bytes[one.clone()])
        });
    }
}
