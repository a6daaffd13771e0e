//! The state changelog (`state.changelog`): each partition's engine state
//! in partition `p` of the compacted `topics.state` topic, and a
//! partition's engine rebuilt from it.
//!
//! Four kinds of record, told apart by the first byte of the key:
//! - `k` + uncorrelated flag + correlation key: that key's whole state;
//! - `d` + first id number (8 bytes, big-endian): a piece of the
//!   de-duplication window (deleted by a tombstone once out of it);
//! - `p`: the partition record (stream time, storms, the window's bounds,
//!   where accounts let go to other partitions in the last day went);
//! - `o`: the origin, first record of a state not restored from the
//!   changelog (fresh, or rebuilt from history), never rewritten by it:
//!   nothing before the newest origin is needed. A changelog whose start
//!   is gone (retention, a trimming broker) is usable only while its
//!   newest origin is still there; a broker whose log start moves as it
//!   compacts (Tansu) removes only superseded records before it.
//!
//! Each value starts with the input offsets its checkpoint reflects (the
//! next offset of each input topic, in configuration order) and the
//! format version. A checkpoint is written after the findings and dead
//! letters of the events it reflects are acknowledged, in two steps: key
//! records, deleted keys and the ids piece; once those are acknowledged,
//! the partition record and the deletion of pieces out of its window.
//! Input offsets are committed only once it is all acknowledged. So
//! a restore starts each topic at the partition record's offsets (not
//! before: its events are in the state), never past the committed ones.
//! Key records written after the newest partition record (a checkpoint cut
//! short) reflect later offsets: the events of their key before those
//! offsets only advance stream time ([`Restored::ahead`]). A key an account
//! moved off and left with nothing is written as the state of no worker
//! ([`emptied_record`]) before it is deleted: not restored as a key, it
//! still tells which of its events are in the state of the key the
//! account went to. Accounts that changed hands within a checkpoint cut
//! short are settled by [`Engine::settle_moves`].

use super::batch::Batch;
use super::publish::{confirm, enqueue_to};
use super::{PipelineError, Shared};
use crate::detect::engine::{
    emptied_record, read_ids, window_ids, Checkpoint, Engine, PartitionRecord, RestoreError,
    FORMAT_VERSION, READ_FORMATS,
};
use crate::detect::state::{CodecError, Frozen, Head, Heads, Reader, Writer};
use crate::model::event::Key;
use rdkafka::consumer::Consumer;
use rdkafka::producer::DeliveryFuture;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A key record as read: its state left encoded with its head read,
/// `None` for an emptied key, or why it cannot be read.
type KeyRead = Result<Option<(Frozen, Head)>, CodecError>;

/// How long reading the changelog may go without progress: longer than a
/// transaction of a killed exactly-once detector stays open (librdkafka's
/// default `transaction.timeout.ms` is 60 s), which holds readers back.
const READ_STALL: Duration = Duration::from_secs(180);

/// The Kafka key of a key record.
fn key_record_key(key: &Key) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + key.id().len());
    k.push(b'k');
    k.push(key.uncorrelated() as u8);
    k.extend_from_slice(key.id().as_bytes());
    k
}

/// The correlation key of a key record's Kafka key.
fn state_key(k: &[u8]) -> Option<Key> {
    let (b'k', [flag @ (0 | 1), id @ ..]) = (*k.first()?, &k[1..]) else {
        return None;
    };
    let id = std::str::from_utf8(id).ok()?;
    Some(if *flag == 1 {
        Key::account(id)
    } else {
        Key::worker(id)
    })
}

fn piece_key(first: u64) -> Vec<u8> {
    let mut k = vec![b'd'];
    k.extend_from_slice(&first.to_be_bytes());
    k
}

/// A value: the offsets its checkpoint reflects, the version, the body.
/// The engine writes the key records of a checkpoint after
/// `frame(offsets, &[])` itself ([`Engine::checkpoint_after`]).
pub(super) fn frame(offsets: &[i64], body: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.seq(offsets, |w, o| w.i64(*o));
    w.u8(FORMAT_VERSION);
    w.buf.extend_from_slice(body);
    w.buf
}

/// A value's offsets, body and format version.
type Framed<'v> = (Rc<[i64]>, &'v [u8], u8);

/// Reads values: the offsets their checkpoint reflects, their format
/// version and their body.
/// The records of one checkpoint all carry the same offsets, so one copy
/// of them is shared by every record until they change.
#[derive(Default)]
struct Unframe {
    offsets: Rc<[i64]>,
    read: Vec<i64>,
}

impl Unframe {
    /// The offsets, body and version of a value; `None` for a version
    /// not read ([`READ_FORMATS`]).
    fn read<'v>(&mut self, value: &'v [u8]) -> Result<Option<Framed<'v>>, String> {
        let mut r = Reader::new(value);
        let n = r.count().map_err(|e| e.to_string())?;
        self.read.clear();
        for _ in 0..n {
            self.read.push(r.i64().map_err(|e| e.to_string())?);
        }
        let version = r.u8().map_err(|e| e.to_string())?;
        if !READ_FORMATS.contains(&version) {
            return Ok(None);
        }
        if *self.offsets != self.read[..] {
            self.offsets = Rc::from(&self.read[..]);
        }
        let at = value.len() - r.remaining();
        Ok(Some((self.offsets.clone(), &value[at..], version)))
    }
}

/// A checkpoint's records in the order they must reach the broker: first
/// the keys, the keys deleted and the ids piece; then, once those are
/// acknowledged, the partition record (the state is complete only with
/// it) and the deletions of pieces out of its window (which the previous
/// partition record may still need).
struct Records {
    first: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    last: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn records(checkpoint: Checkpoint, offsets: &[i64]) -> Records {
    let mut first = Vec::with_capacity(checkpoint.keys.len() + 3);
    if checkpoint.origin {
        first.push((b"o".to_vec(), Some(frame(offsets, &[]))));
    }
    // A state rebuilt from history replaces the old one: without its
    // partition record, the old state cannot be paired with these keys.
    if checkpoint.supersedes {
        first.push((b"p".to_vec(), None));
    }
    for n in &checkpoint.dedup_orphaned {
        first.push((piece_key(*n), None));
    }
    // The engine wrote each key record after its frame.
    debug_assert!({
        let prefix = frame(offsets, &[]);
        checkpoint.prefix == prefix.len()
            && checkpoint.keys.iter().all(|(_, r)| r.starts_with(&prefix))
    });
    for (key, framed) in checkpoint.keys {
        first.push((key_record_key(&key), Some(framed)));
    }
    for key in &checkpoint.deleted {
        first.push((key_record_key(key), None));
    }
    for (n, piece) in &checkpoint.dedup {
        first.push((piece_key(*n), Some(frame(offsets, piece))));
    }
    let mut last = vec![(
        b"p".to_vec(),
        Some(frame(offsets, &checkpoint.partition[1..])),
    )];
    for n in &checkpoint.dedup_expired {
        last.push((piece_key(*n), None));
    }
    Records { first, last }
}

async fn enqueue_all(
    shared: &Shared,
    partition: i32,
    records: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Result<Vec<DeliveryFuture>, PipelineError> {
    let topic = &shared.cfg.topics.state;
    let mut out = Vec::with_capacity(records.len());
    for (key, value) in records {
        out.push(enqueue_to(&shared.producer, topic, partition, key, value.as_deref()).await?);
    }
    shared
        .stats
        .metrics
        .state_records_written
        .inc_by(out.len() as u64);
    Ok(out)
}

/// Writes a checkpoint to partition `partition` of the state topic and
/// waits until it is acknowledged: its keys, deletions and ids piece, and
/// only once the broker has them, its partition record and the deletion
/// of pieces out of the window. `offsets` are the next input offsets it
/// reflects.
pub(super) async fn write(
    shared: &Shared,
    partition: i32,
    checkpoint: Checkpoint,
    offsets: &[i64],
) -> Result<(), PipelineError> {
    let Records { first, last } = records(checkpoint, offsets);
    let sent = enqueue_all(shared, partition, &first).await?;
    confirm_all(shared, sent).await?;
    // Lost meanwhile: the next owner's state is not to be completed.
    if !shared.owns_state(partition) {
        return Ok(());
    }
    let sent = enqueue_all(shared, partition, &last).await?;
    confirm_all(shared, sent).await
}

/// Exactly-once: queues a checkpoint's records into the open transaction,
/// which makes them visible together (or not at all).
pub(super) async fn write_in_transaction(
    shared: &Shared,
    partition: i32,
    checkpoint: Checkpoint,
    offsets: &[i64],
) -> Result<Vec<DeliveryFuture>, PipelineError> {
    let Records { mut first, last } = records(checkpoint, offsets);
    first.extend(last);
    enqueue_all(shared, partition, &first).await
}

/// Waits for a checkpoint's acknowledgements.
async fn confirm_all(
    shared: &Shared,
    deliveries: Vec<DeliveryFuture>,
) -> Result<(), PipelineError> {
    for d in deliveries {
        confirm(&shared.cfg.topics.state, d).await?;
    }
    Ok(())
}

/// An engine rebuilt from the changelog.
pub(super) struct Restored {
    pub(super) engine: Engine,
    /// Where each input topic's reading starts: the offsets the state
    /// reflects.
    pub(super) start: Vec<i64>,
    /// Routing by payload: the round at which the partition's input
    /// resumes (its offsets in `start` are where that round starts).
    pub(super) round: u64,
    /// Keys whose record reflects later offsets than `start` (a checkpoint
    /// cut short): their events before those offsets are in their state.
    pub(super) ahead: HashMap<Key, Vec<i64>>,
    /// Routing by payload: the events a checkpoint cut short holds in its
    /// key records (its ids piece was written, its partition record not).
    pub(super) cut_short:
        std::collections::HashSet<(crate::model::event::System, crate::model::id::EventId)>,
    pub(super) keys: usize,
    pub(super) records: u64,
    pub(super) bytes: u64,
}

/// The reason given for a changelog partition with nothing in it.
pub(super) const EMPTY: &str = "the changelog is empty";

/// Why the changelog cannot restore a partition: the restore re-reads the
/// input history instead, and says so. `pieces`: the de-duplication pieces
/// it holds (first number, end), which the new state numbers its own after
/// and deletes.
#[derive(Debug)]
pub(super) struct Unusable {
    pub(super) reason: String,
    pub(super) pieces: Vec<(u64, u64)>,
    /// The keys it holds, which the new state deletes unless it has them.
    pub(super) keys: Vec<Key>,
}

/// Reads partition `partition` of the state topic to its end (its high
/// watermark when the read begins) and rebuilds the engine. `Ok(Err(_))`
/// when the changelog cannot be used (none written, another format or
/// rules configuration, a gap, offsets behind the committed ones);
/// `Ok(Ok(None))` when stopped meanwhile.
pub(super) fn read(
    shared: &Shared,
    partition: i32,
    committed: &[Option<i64>],
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Result<Option<Restored>, Unusable>, PipelineError> {
    let consumer = shared
        .changelog_readers
        .take(&shared.cfg, Duration::from_secs(30))
        .map_err(|e| match e {
            PipelineError::Client(reason) => PipelineError::Restore { partition, reason },
            e => e,
        })?;
    let read = scan(shared, &consumer, partition, committed, stop);
    if consumer.unassign().is_ok() {
        shared.changelog_readers.give_back(shared, consumer);
    } else {
        // Closing a consumer with a group id waits for the group (up to
        // 100 ms): done apart, it holds neither the restore slot nor the
        // resume.
        shared.changelog_readers.discard(shared, consumer);
    }
    read
}

fn scan(
    shared: &Shared,
    consumer: &super::PlainConsumer,
    partition: i32,
    committed: &[Option<i64>],
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Result<Option<Restored>, Unusable>, PipelineError> {
    let cfg = &shared.cfg;
    let topic = cfg.topics.state.as_str();
    let err = |reason: String| PipelineError::Restore { partition, reason };
    let asked = Instant::now();
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(30))
        .map_err(|e| err(format!("the end of {topic} [{partition}]: {e}")))?;
    tracing::debug!(
        low,
        high,
        elapsed_ms = asked.elapsed().as_millis() as u64,
        "state changelog bounds"
    );
    // Nearly one key per record in a compacted changelog (capped: a
    // changelog not compacted yet may hold many records per key).
    let mut keys: HashMap<Key, (Rc<[i64]>, KeyRead), ahash::RandomState> =
        HashMap::with_capacity_and_hasher(
            (high - low).clamp(0, 1 << 16) as usize,
            ahash::RandomState::new(),
        );
    let mut unframe = Unframe::default();
    // The engine the restore fills: each key record's head is read into it
    // as the record comes, while its bytes are in cache.
    let mut engine = Engine::new(cfg.clone());
    let mut heads = Heads::default();
    let mut pieces: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut last: Option<(Vec<i64>, Vec<u8>)> = None;
    let (mut records, mut bytes) = (0u64, 0u64);
    // The first reason found not to use it; the scan goes on, to learn
    // every piece of ids it holds.
    let mut unusable: Option<String> = None;
    // The newest origin record read: before it, nothing is needed.
    let mut origin: Option<i64> = None;
    if high > low {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(low))?;
        // Split before the assignment, so that all its records come there.
        let mut batch = Batch::for_partition(consumer, topic, partition).map_err(err)?;
        consumer.assign(&tpl)?;
        // When a record last came, and how many had then; the clock is
        // read only when the partition's queue is found empty.
        let mut progress = (Instant::now(), 0u64);
        let mut next = low;
        while next < high {
            if *stop.borrow() {
                return Ok(Ok(None));
            }
            let taken = batch.refill(Duration::from_millis(200));
            // The consumer's own queue: librdkafka's logs and client
            // errors, through the client's context.
            if let Some(Err(e)) = consumer.poll(Duration::ZERO) {
                tracing::warn!(error = %e, "state changelog consumer error (librdkafka retries)");
            }
            if taken == 0 {
                if let Ok(pos) = consumer.position() {
                    if let Some(Offset::Offset(o)) = pos.elements().first().map(|e| e.offset()) {
                        next = next.max(o);
                    }
                }
                if progress.1 != records {
                    progress = (Instant::now(), records);
                } else if progress.0.elapsed() > READ_STALL {
                    return Err(err(format!(
                        "no progress reading {topic} [{partition}] for {}s, at offset {next} of {high}",
                        READ_STALL.as_secs()
                    )));
                }
                continue;
            }
            for m in batch.iter() {
                if let Some(e) = m.error() {
                    tracing::warn!(error = %e, "state changelog consumer error (librdkafka retries)");
                    continue;
                }
                if m.partition() != partition || m.topic() != topic {
                    // Fetched for the reader's previous restore.
                    continue;
                }
                if m.offset() >= high {
                    // Written since the restore began: the state is read as of
                    // `high`, and everything before it has come.
                    next = high;
                    break;
                }
                next = m.offset() + 1;
                records += 1;
                let (Some(key), value) = (m.key(), m.payload()) else {
                    continue;
                };
                bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
                let piece = (key.first() == Some(&b'd') && key.len() == 9)
                    .then(|| u64::from_be_bytes(key[1..].try_into().expect("8 bytes")));
                let Some(value) = value else {
                    // A tombstone: the key is gone.
                    if let Some(first) = piece {
                        pieces.remove(&first);
                    } else if key == b"p" {
                        last = None;
                    } else if let Some(k) = state_key(key) {
                        keys.remove(&k);
                    }
                    continue;
                };
                let framed = match unframe.read(value) {
                    Ok(Some(f)) => f,
                    Ok(None) => {
                        unusable.get_or_insert_with(|| {
                            format!(
                                "records of a format version other than {} to {}",
                                READ_FORMATS.start(),
                                READ_FORMATS.end()
                            )
                        });
                        if let Some(first) = piece {
                            // Its length unknown: deleted with the others.
                            pieces.insert(first, Vec::new());
                        }
                        continue;
                    }
                    Err(e) => {
                        unusable.get_or_insert_with(|| format!("offset {}: {e}", m.offset()));
                        continue;
                    }
                };
                match (key.first(), piece) {
                    (Some(b'o'), None) if key.len() == 1 => origin = Some(m.offset()),
                    (_, Some(first)) => {
                        pieces.insert(first, framed.1.to_vec());
                    }
                    (Some(b'k'), None) => match state_key(key) {
                        Some(k) => {
                            let read = if framed.1 == emptied_record() {
                                Ok(None)
                            } else {
                                engine.read_key(&mut heads, framed.1.to_vec()).map(Some)
                            };
                            keys.insert(k, (framed.0, read));
                        }
                        None => {
                            unusable.get_or_insert_with(|| {
                                format!("offset {}: a malformed key record key", m.offset())
                            });
                        }
                    },
                    (Some(b'p'), None) if key.len() == 1 => {
                        let mut body = vec![framed.2];
                        body.extend_from_slice(framed.1);
                        last = Some((framed.0.to_vec(), body));
                    }
                    _ => {}
                }
            }
        }
    }
    if low > 0 && origin.is_none() {
        // The start is gone with the origin: some keys' records may be too.
        unusable = Some(format!(
            "{topic} [{partition}] starts at offset {low} and its origin record is gone: records were deleted (retention, or a broker that trims), so some keys' state may be missing; the topic must be compacted, not deleted"
        ));
    }
    shared.stats.metrics.state_records_read.inc_by(records);
    shared.stats.metrics.state_bytes_read.inc_by(bytes);
    // Every piece's bounds, for a state rebuilt from history to number its
    // ids after and delete (a piece of unknown length counts as empty).
    let bounds = |pieces: &HashMap<u64, Vec<u8>>| -> Vec<(u64, u64)> {
        pieces
            .iter()
            .map(|(first, p)| {
                let n = Reader::new(p).count().unwrap_or(0) as u64;
                (*first, first + n.max(1))
            })
            .collect()
    };
    let give_up = |reason: String, pieces: &HashMap<u64, Vec<u8>>, keys: &HashMap<Key, _, _>| {
        Ok(Err(Unusable {
            reason,
            pieces: bounds(pieces),
            keys: keys.keys().cloned().collect(),
        }))
    };
    if let Some(reason) = unusable {
        return give_up(reason, &pieces, &keys);
    }
    let Some((start, body)) = last else {
        let reason = if high > low {
            "the changelog holds no partition record"
        } else {
            EMPTY
        };
        return give_up(reason.into(), &pieces, &keys);
    };
    let topics = shared.topics.len();
    // Routing by payload: after the topics' offsets, the round the source
    // resumes at.
    let width = topics + usize::from(shared.repartition.is_some());
    if start.len() != width {
        return give_up(
            format!(
                "it holds {} positions and this configuration {width} (input topics, and with routing by payload the repartition topic and the round)",
                start.len()
            ),
            &pieces,
            &keys,
        );
    }
    let mut start = start;
    let round = if shared.repartition.is_some() {
        start.pop().unwrap_or(0).max(0) as u64
    } else {
        0
    };
    if let Some(q) = (0..topics).find(|&q| committed[q].is_some_and(|c| c > start[q])) {
        return give_up(
            format!(
                "{} is committed at {} but the changelog reflects it only to {} (written by a run without the changelog?)",
                shared.topics[q].name,
                committed[q].unwrap_or(0),
                start[q]
            ),
            &pieces,
            &keys,
        );
    }
    let record = match PartitionRecord::read(body, cfg) {
        Ok(r) => r,
        Err(e) => return give_up(e.to_string(), &pieces, &keys),
    };
    let all = bounds(&pieces);
    // Routing by payload: the ids a checkpoint cut short wrote past the
    // window (after its key records, before the partition record it never
    // wrote) are events its key records hold.
    let mut cut_short = std::collections::HashSet::new();
    if shared.repartition.is_some() {
        for (_, piece) in pieces
            .iter()
            .filter(|(first, _)| **first >= record.dedup_window.end)
        {
            if let Ok(ids) = read_ids(piece) {
                cut_short.extend(ids);
            }
        }
    }
    let unusable = |reason: String, keys: &HashMap<Key, _, _>| {
        Ok(Err(Unusable {
            reason,
            pieces: all.clone(),
            keys: keys.keys().cloned().collect(),
        }))
    };
    let (ids, written) = match window_ids(record.dedup_window.clone(), pieces) {
        Ok(ids) => ids,
        Err(e) => return unusable(e.to_string(), &keys),
    };
    let unreadable = keys.iter().find_map(|(k, (_, read))| {
        let source = read.as_ref().err()?.clone();
        Some(RestoreError::Key {
            key: k.to_string(),
            source,
        })
    });
    if let Some(e) = unreadable {
        return unusable(e.to_string(), &keys);
    }
    let read_ms = asked.elapsed().as_millis() as u64;
    let decoding = Instant::now();
    let mut engine = match engine.restore_partition(&record, &ids, written) {
        Ok(e) => e,
        Err(e) => return unusable(e.to_string(), &keys),
    };
    let mut ahead = HashMap::new();
    let mut emptied = Vec::new();
    let mut count = 0;
    let states = keys.into_iter().filter_map(|(k, (offsets, read))| {
        if offsets.len() == width && offsets.iter().zip(&start).any(|(o, s)| o > s) {
            ahead.insert(k.clone(), offsets.to_vec());
        }
        match read {
            Ok(Some(r)) => {
                count += 1;
                Some((k, r))
            }
            // An emptied key holds nothing; its offsets still tell what
            // its events are reflected in.
            Ok(None) => {
                emptied.push(k);
                None
            }
            // None: each was checked above.
            Err(_) => None,
        }
    });
    engine.restore_keys(states, heads);
    // Deleted once the partition record is past them: until then a second
    // crash would re-read events they tell are in another key's state.
    engine.delete_emptied(
        emptied
            .into_iter()
            .filter(|k| !ahead.contains_key(k))
            .collect(),
    );
    // A checkpoint cut short after the key taking an account, before the
    // key letting it go: the account moves when the input re-read reaches
    // the move.
    let waiting = engine.settle_moves(&ahead);
    if waiting > 0 {
        tracing::info!(
            waiting,
            "accounts a checkpoint cut short wrote under the key they moved to and left under the key they moved off: they move when the input re-read reaches their move"
        );
    }
    tracing::debug!(
        read_ms,
        decode_ms = decoding.elapsed().as_millis() as u64,
        "state changelog read and decoded"
    );
    Ok(Ok(Some(Restored {
        engine,
        start,
        round,
        ahead,
        cut_short,
        keys: count,
        records,
        bytes,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_and_frames_read_back() {
        for key in [Key::worker("W1"), Key::account("W1"), Key::worker("")] {
            assert_eq!(state_key(&key_record_key(&key)), Some(key));
        }
        assert_eq!(state_key(b"k\x02W1"), None);
        assert_eq!(state_key(b"k"), None);
        assert_eq!(state_key(b"p"), None);
        let value = frame(&[3, 0, 17], b"body");
        let mut unframe = Unframe::default();
        let (offsets, body, _) = unframe.read(&value).unwrap().unwrap();
        assert_eq!((&offsets[..], body), (&[3, 0, 17][..], &b"body"[..]));
        // The next record of the checkpoint shares its offsets.
        let (again, _, _) = unframe.read(&frame(&[3, 0, 17], b"more")).unwrap().unwrap();
        assert!(Rc::ptr_eq(&offsets, &again));
        let (next, _, _) = unframe
            .read(&frame(&[3, 1, 17], b"later"))
            .unwrap()
            .unwrap();
        assert_eq!(&next[..], &[3, 1, 17]);
        let mut older = frame(&[1], b"x");
        older[2] = *READ_FORMATS.start();
        assert_eq!(
            unframe.read(&older).unwrap().map(|f| f.2),
            Some(*READ_FORMATS.start()),
            "an older version still read is read as such"
        );
        let mut other = frame(&[1], b"x");
        other[2] = FORMAT_VERSION + 1;
        assert_eq!(
            unframe.read(&other),
            Ok(None),
            "another version is not read"
        );
        assert!(
            unframe.read(&[0x80]).is_err(),
            "a damaged frame is an error"
        );
    }
}
