//! An engine restored from its checkpoints continues exactly as the engine
//! that wrote them.

use super::*;
use crate::model::event::{Key, Origin};
use crate::model::finding::Status;
use crate::model::id::{Sym, Topic};
use crate::model::time::MS_PER_DAY;
use crate::tools::generate::Generator;
use std::collections::{BTreeMap, HashMap};

/// A compacted changelog: the newest record per key, the pieces of ids
/// not deleted, the newest partition record.
#[derive(Default, Clone)]
pub(super) struct Log {
    pub(super) keys: HashMap<Key, Vec<u8>>,
    pieces: BTreeMap<u64, Vec<u8>>,
    pub(super) partition: Option<Vec<u8>>,
    records: usize,
}

impl Log {
    pub(super) fn write(&mut self, c: Checkpoint) {
        self.records += c.keys.len() + 1;
        for first in c.dedup_orphaned {
            self.pieces.remove(&first);
        }
        self.keys.extend(c.keys);
        for k in c.deleted {
            self.keys.remove(&k);
        }
        self.pieces.extend(c.dedup);
        for first in c.dedup_expired {
            self.pieces.remove(&first);
        }
        self.partition = Some(c.partition);
    }

    pub(super) fn restore(&self, cfg: &Arc<Config>) -> Result<Engine, RestoreError> {
        let partition = PartitionRecord::read(self.partition.clone().expect("written"), cfg)?;
        let (ids, pieces) = window_ids(
            partition.dedup_window.clone(),
            self.pieces.iter().map(|(f, p)| (*f, p.clone())),
        )?;
        let (emptied, keys): (Vec<_>, Vec<_>) = self
            .keys
            .clone()
            .into_iter()
            .partition(|(_, s)| s == emptied_record());
        let mut engine = Engine::restore(cfg.clone(), &partition, keys, &ids, pieces)?;
        engine.delete_emptied(emptied.into_iter().map(|(k, _)| k).collect());
        Ok(engine)
    }
}

/// A feed with storms, duplicates and timers: a generated population,
/// with each tenth event sent twice, some of them again much later.
pub(super) fn feed(seed: u64) -> Vec<Event> {
    let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
    let mut g = Generator::new(seed, 300, t0);
    let mut events = g.baseline();
    for i in 0..600 {
        let batch = g.next_batch(20 * 60_000);
        for (j, e) in batch.into_iter().enumerate() {
            if (i + j) % 10 == 0 {
                events.push(e.clone());
            }
            events.push(e);
        }
        if i % 50 == 49 {
            let again = events[events.len() / 2].clone();
            events.push(again);
        }
    }
    events
}

pub(super) fn config() -> Arc<Config> {
    config_with_window(2_000)
}

/// [`config`] remembering `ids` event ids.
fn config_with_window(ids: usize) -> Arc<Config> {
    let mut cfg = Config::default_config();
    // A small population still makes storms.
    cfg.storm.min_workers = 3;
    cfg.storm.fraction = 0.0;
    cfg.dedup_capacity = ids;
    Arc::new(cfg)
}

/// What the engine publishes for `events`, numbered from `offset`, with a
/// day of idle time after every 400.
pub(super) fn run(engine: &mut Engine, events: &[Event], offset: usize) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let n = offset + i;
        let origin = Origin {
            topic: Topic::new("restore-test"),
            partition: 0,
            offset: n as i64,
        };
        engine.apply(
            Envelope {
                origin,
                event: event.clone(),
            },
            &mut out,
        );
        if n % 400 == 399 {
            engine.advance_to(engine.now().plus(MS_PER_DAY), &mut out);
        }
    }
    out
}

/// An engine keeping its changelog, run over `events` up to `b` with a
/// checkpoint after `a` (in the log) and one at `b` (returned, for the
/// caller to write in part): the engine, what it published, the log and
/// the checkpoint at `b`.
pub(super) fn checkpointed(
    cfg: &Arc<Config>,
    events: &[Event],
    a: usize,
    b: usize,
) -> (Engine, Vec<Finding>, Log, Checkpoint) {
    let mut engine = Engine::new(cfg.clone());
    engine.track_changes();
    let mut published = run(&mut engine, &events[..a], 0);
    let mut log = Log::default();
    log.write(engine.checkpoint());
    published.extend(run(&mut engine, &events[a..b], a));
    let cut = engine.checkpoint();
    (engine, published, log, cut)
}

/// What `restored` publishes for `events` from `a` on, resumed as the
/// partition task resumes after a checkpoint cut short at `b`: an event
/// before `b` of a key in `ahead` (written past the partition record)
/// only moves stream time. A day of idle time after every 400, as [`run`].
pub(super) fn resume(
    restored: &mut Engine,
    events: &[Event],
    a: usize,
    b: usize,
    ahead: &HashSet<Key>,
) -> Vec<Finding> {
    let mut again = Vec::new();
    for (i, event) in events[a..].iter().enumerate() {
        let n = a + i;
        let env = Envelope {
            origin: Origin {
                topic: Topic::new("restore-test"),
                partition: 0,
                offset: n as i64,
            },
            event: event.clone(),
        };
        if n < b && ahead.contains(&env.event.key()) {
            restored.skip(&env, &mut again);
        } else {
            restored.apply(env, &mut again);
        }
        if n % 400 == 399 {
            restored.advance_to(restored.now().plus(MS_PER_DAY), &mut again);
        }
    }
    again
}

/// For cuts all along a feed and checkpoints every `every` events: the
/// findings before the cut and those of the restored engine after it are
/// those of one uninterrupted engine.
fn continues_exactly(every: usize) {
    continues_exactly_with(&config(), every);
}

fn continues_exactly_with(cfg: &Arc<Config>, every: usize) {
    let cfg = cfg.clone();
    let events = feed(11);
    let mut uninterrupted = Engine::new(cfg.clone());
    let whole = run(&mut uninterrupted, &events, 0);
    assert!(
        whole.iter().any(|f| f.rule == Rule::SourceStorm),
        "the feed makes a storm"
    );
    assert!(whole.iter().any(|f| f.status == Status::Escalated));
    // Orphan accounts the generator correlates later move to their
    // worker's key (nothing else resolves an orphan of the feed).
    assert!(whole
        .iter()
        .any(|f| f.rule == Rule::OrphanAccount && f.status == Status::Resolved));
    for cut in (0..events.len()).step_by(events.len() / 7).skip(1) {
        let mut log = Log::default();
        let mut engine = Engine::new(cfg.clone());
        engine.track_changes();
        let mut published = Vec::new();
        let mut at = 0;
        while at < cut {
            let end = (at + every).min(cut);
            published.extend(run(&mut engine, &events[at..end], at));
            log.write(engine.checkpoint());
            at = end;
        }
        let mut restored = log.restore(&cfg).expect("restores");
        assert_eq!(restored.now(), engine.now(), "cut {cut}");
        assert_eq!(
            (restored.tracked(), restored.workers(), restored.entries()),
            (engine.tracked(), engine.workers(), engine.entries()),
            "cut {cut}"
        );
        assert_eq!(restored.stats(), engine.stats(), "cut {cut}");
        published.extend(run(&mut restored, &events[cut..], cut));
        assert_eq!(published.len(), whole.len(), "cut {cut}, every {every}");
        for (i, (a, b)) in published.iter().zip(&whole).enumerate() {
            assert_eq!(a, b, "finding {i}, cut {cut}, every {every}");
        }
        // Duplicates sent after the cut of events before it are known.
        assert_eq!(restored.stats(), uninterrupted.stats(), "cut {cut}");
    }
}

#[test]
fn a_restored_engine_continues_exactly_checkpointing_every_event() {
    continues_exactly(1);
}

#[test]
fn a_restored_engine_continues_exactly_checkpointing_every_batch() {
    continues_exactly(97);
}

#[test]
fn a_restored_engine_continues_exactly_from_one_checkpoint() {
    continues_exactly(usize::MAX);
}

/// With a maximum age bounding the window (not its capacity), a restored
/// engine forgets the ids the uninterrupted one forgets, when it does: the
/// window's stretches of arrival are part of the checkpoint.
#[test]
fn a_restored_engine_forgets_ids_by_age_as_the_uninterrupted_one() {
    let with_age = |age: Option<i64>| {
        let mut cfg = (*config_with_window(1_000_000)).clone();
        cfg.dedup_max_age_ms = age;
        Arc::new(cfg)
    };
    let aged = with_age(Some(2 * MS_PER_DAY));
    // The age makes a difference on this feed: some redeliveries come
    // later than two days, and are applied again.
    let duplicates = |cfg: &Arc<Config>| {
        let mut e = Engine::new(cfg.clone());
        run(&mut e, &feed(11), 0);
        (e.stats().duplicates, e.dedup.window_start())
    };
    let (kept, _) = duplicates(&with_age(None));
    let (forgot, start) = duplicates(&aged);
    assert!(
        forgot < kept,
        "{forgot} duplicates with the age, {kept} without"
    );
    assert!(start > 0, "ids were forgotten by age");
    continues_exactly_with(&aged, 97);
}

/// A checkpoint holds only the keys changed since the one before, and ids
/// pieces out of the window are deleted, so the log stays the size of the
/// state.
#[test]
fn checkpoints_write_what_changed() {
    let cfg = config_with_window(200);
    let events = feed(3);
    let mut engine = Engine::new(cfg.clone());
    engine.track_changes();
    let mut log = Log::default();
    let half = events.len() / 2;
    run(&mut engine, &events[..half], 0);
    let first = engine.checkpoint();
    assert_eq!(first.keys.len(), engine.tracked());
    log.write(first);
    let mut out = Vec::new();
    let one = events[half].clone();
    let key = one.key();
    let inserted = engine.dedup.inserted();
    engine.apply(
        Envelope {
            origin: Origin {
                topic: Topic::new("restore-test"),
                partition: 0,
                offset: half as i64,
            },
            event: one,
        },
        &mut out,
    );
    let second = engine.checkpoint();
    if engine.dedup.inserted() > inserted {
        assert_eq!(
            second.keys.iter().map(|k| &k.0).collect::<Vec<_>>(),
            vec![&key]
        );
        assert_eq!(second.dedup.first().map(|d| d.0), Some(inserted));
    } else {
        assert!(
            second.keys.is_empty() && second.dedup.is_empty(),
            "a duplicate changes nothing"
        );
    }
    log.write(second);
    run(&mut engine, &events[half + 1..], half + 1);
    log.write(engine.checkpoint());
    assert!(
        engine.dedup.window_start() > inserted,
        "{} {} {}",
        engine.dedup.window_start(),
        inserted,
        events.len()
    );
    assert_eq!(
        log.pieces.len(),
        1,
        "pieces wholly out of the window are deleted"
    );
    log.restore(&cfg).expect("restores");
}

/// State written under another rules configuration, or in another format,
/// is refused with the reason, never read as if it were this one's.
#[test]
fn state_of_another_configuration_or_format_is_refused() {
    let cfg = config();
    let mut engine = Engine::new(cfg.clone());
    engine.track_changes();
    run(&mut engine, &feed(5)[..500], 0);
    let mut log = Log::default();
    log.write(engine.checkpoint());
    let mut other = (*cfg).clone();
    other.storm.min_workers = 4;
    assert!(matches!(
        log.restore(&Arc::new(other)),
        Err(RestoreError::Config { .. })
    ));
    let mut bytes = log.partition.clone().unwrap();
    bytes[0] = FORMAT_VERSION + 1;
    assert!(matches!(
        PartitionRecord::read(bytes, &cfg),
        Err(RestoreError::Version { found }) if found == FORMAT_VERSION + 1
    ));
    // A piece of ids lost: the window cannot be rebuilt.
    let first = *log.pieces.keys().next().unwrap();
    log.pieces.remove(&first);
    assert!(matches!(
        log.restore(&cfg),
        Err(RestoreError::DedupGap { .. })
    ));
    // A corrupt key record names its key.
    let mut log = Log::default();
    log.write(engine.checkpoint());
    let mut engine2 = Engine::new(cfg.clone());
    engine2.track_changes();
    run(&mut engine2, &feed(5)[..50], 0);
    let mut c = engine2.checkpoint();
    c.keys[0].1.truncate(3);
    let name = c.keys[0].0.to_string();
    log.write(c);
    match log.restore(&cfg) {
        Err(RestoreError::Key { key, .. }) => assert_eq!(key, name),
        other => panic!("{:?}", other.err()),
    }
}

/// Damaged key records are errors, never panics: every prefix of real
/// records, and each with a byte changed.
#[test]
fn damaged_key_records_are_errors() {
    let mut engine = Engine::new(config());
    engine.track_changes();
    run(&mut engine, &feed(9)[..600], 0);
    let records = engine.checkpoint().keys;
    // One `Heads` for all, as in a restore: a head that fails to read
    // leaves nothing in it.
    let mut heads = crate::detect::state::Heads::default();
    let mut decode = |b: &[u8]| {
        let before = (heads.read_count(), heads.owned_count());
        let read = crate::detect::state::Frozen::with_head(b.to_vec(), &mut heads, &mut Sym::new);
        if read.is_err() {
            assert_eq!((heads.read_count(), heads.owned_count()), before);
        }
        read.and_then(|(frozen, _)| frozen.thaw(&mut Sym::new).map(|st| (frozen, st)))
            .and_then(|(frozen, st)| frozen.open_findings().map(|_| st))
    };
    for (_, bytes) in records.iter().take(40) {
        assert!(decode(bytes).is_ok());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "a record cut at {n}");
            let mut changed = bytes.clone();
            changed[n] ^= 0xa5;
            let _ = decode(&changed);
        }
    }
}

/// A state rebuilt from history over a changelog it cannot use (another
/// configuration wrote it) numbers its ids after the pieces there, deletes
/// them at its first checkpoint, and is then restored from what it wrote.
#[test]
fn a_state_rebuilt_over_an_old_changelog_replaces_it() {
    let cfg = config();
    let events = feed(4);
    let mut old = Engine::new(cfg.clone());
    old.track_changes();
    let mut log = Log::default();
    for chunk in events[..600].chunks(50) {
        run(&mut old, chunk, 0);
        log.write(old.checkpoint());
    }
    let written: Vec<(u64, u64)> = log
        .pieces
        .iter()
        .map(|(first, p)| {
            let n = crate::detect::state::Reader::new(p).count().unwrap() as u64;
            (*first, first + n)
        })
        .collect();
    assert!(!written.is_empty());
    let mut rebuilt = Engine::new(cfg.clone());
    run(&mut rebuilt, &events[..300], 0);
    rebuilt.track_changes_after(written.clone(), log.keys.keys().cloned().collect());
    let first = rebuilt.checkpoint();
    let old_firsts: Vec<u64> = written.iter().map(|p| p.0).collect();
    let mut expired = first.dedup_expired.clone();
    expired.sort_unstable();
    assert_eq!(expired, old_firsts, "every old piece is deleted");
    let max_end = written.iter().map(|p| p.1).max().unwrap();
    assert!(first.dedup.first().is_some_and(|d| d.0 >= max_end));
    assert!(!first.deleted.is_empty(), "keys only the old run held go");
    log.write(first);
    let mut restored = log.restore(&cfg).expect("restores");
    let (a, b) = (
        run(&mut rebuilt, &events[300..], 300),
        run(&mut restored, &events[300..], 300),
    );
    assert_eq!(a, b);
    assert_eq!(rebuilt.stats(), restored.stats());
}

/// Every finding an engine publishes reads back equal from its encoding.
#[test]
fn findings_read_back_equal() {
    let mut engine = Engine::new(config());
    let out = run(&mut engine, &feed(8), 0);
    assert!(out.len() > 100);
    for f in &out {
        let mut w = crate::detect::state::Writer::default();
        w.finding(f);
        let mut r = crate::detect::state::Reader::new(&w.buf);
        assert_eq!(&r.finding().expect("reads back"), f);
        assert!(r.is_done());
    }
}

/// A checkpoint cut short leaves a piece of ids past the window of the
/// partition record restored; the restored state numbers its ids from
/// there, replaces or deletes that piece, and later restores still find
/// every id of their window.
#[test]
fn a_piece_left_by_a_cut_short_checkpoint_is_replaced() {
    let cfg = config_with_window(300);
    let events = feed(12);
    let third = events.len() / 3;
    let mut a = Engine::new(cfg.clone());
    a.track_changes();
    run(&mut a, &events[..third], 0);
    let mut log = Log::default();
    log.write(a.checkpoint());
    run(&mut a, &events[third..third + 20], third);
    // Phase one only: keys and the ids piece, no partition record.
    let cut = a.checkpoint();
    log.keys.extend(cut.keys);
    assert!(!cut.dedup.is_empty(), "ids were added");
    log.pieces.extend(cut.dedup);
    let mut b = log.restore(&cfg).expect("restores");
    let mut at = third;
    for chunk in events[third..].chunks(97) {
        run(&mut b, chunk, at);
        at += chunk.len();
        log.write(b.checkpoint());
        log.restore(&cfg).expect("every window stays whole");
    }
}

/// A first start over an old changelog (nothing committed, the changelog
/// unusable): the keys that come back before the first checkpoint are
/// written, not deleted with the ones that did not.
#[test]
fn keys_that_come_back_before_the_first_checkpoint_are_kept() {
    let cfg = config();
    let events = feed(13);
    let mut old = Engine::new(cfg.clone());
    old.track_changes();
    run(&mut old, &events[..600], 0);
    let mut log = Log::default();
    log.write(old.checkpoint());
    let old_keys: Vec<Key> = log.keys.keys().cloned().collect();
    let mut fresh = Engine::new(cfg.clone());
    fresh.track_changes_after(Vec::new(), old_keys);
    run(&mut fresh, &events[..300], 0);
    let first = fresh.checkpoint();
    assert!(!first.deleted.is_empty(), "keys not seen again are deleted");
    assert!(first
        .deleted
        .iter()
        .all(|k| !first.keys.iter().any(|(w, _)| w == k)));
    log.write(first);
    let restored = log.restore(&cfg).expect("restores");
    assert_eq!(
        (restored.tracked(), restored.entries()),
        (fresh.tracked(), fresh.entries())
    );
}

/// A checkpoint adding more ids than one record should hold (a catch-up)
/// writes them in contiguous pieces below a broker's largest message, and
/// the restored window, joined from them, still knows every id.
#[test]
fn many_ids_go_in_pieces_a_broker_accepts() {
    // The feed spans more stream time than the default maximum age.
    let mut cfg = (*config_with_window(100_000)).clone();
    cfg.dedup_max_age_ms = None;
    let cfg = Arc::new(cfg);
    let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
    let mut g = Generator::new(5, 2_000, t0);
    let mut events = g.baseline();
    while events.len() < 45_000 {
        events.extend(g.next_batch(60_000));
    }
    let cut = events.len() - 2_000;
    // After the cut, every tenth event before it is sent again.
    let mut after = events.split_off(cut);
    after.extend(events.iter().step_by(10).take(2_000).cloned());
    let mut engine = Engine::new(cfg.clone());
    engine.track_changes();
    run(&mut engine, &events, 0);
    let checkpoint = engine.checkpoint();
    assert!(
        checkpoint.dedup.len() >= 2,
        "{} pieces",
        checkpoint.dedup.len()
    );
    let mut next = checkpoint.dedup[0].0;
    for (first, piece) in &checkpoint.dedup {
        assert_eq!(*first, next, "pieces are contiguous");
        assert!(
            piece.len() <= MAX_PIECE_BYTES + 1_024,
            "a piece of {} bytes",
            piece.len()
        );
        next += crate::detect::state::Reader::new(piece).count().unwrap() as u64;
    }
    let mut log = Log::default();
    log.write(checkpoint);
    let mut restored = log.restore(&cfg).expect("restores");
    let (a, b) = (
        run(&mut engine, &after, cut),
        run(&mut restored, &after, cut),
    );
    assert_eq!(a, b);
    assert_eq!(restored.stats(), engine.stats());
    assert!(engine.stats().duplicates >= 2_000, "{:?}", engine.stats());
}

/// A restore leaves every key's state encoded, with what the engine and
/// the gauges need read from its summary; a key is decoded when first
/// touched, and readers see the same state either way.
#[test]
fn a_restored_key_is_decoded_when_first_touched() {
    let cfg = config();
    let events = feed(5);
    let cut = events.len() / 2;
    let mut engine = Engine::new(cfg.clone());
    engine.track_changes();
    run(&mut engine, &events[..cut], 0);
    let mut log = Log::default();
    log.write(engine.checkpoint());
    let mut restored = log.restore(&cfg).expect("restores");
    let store = restored.store().clone();
    assert_eq!(store.frozen().len(), restored.tracked());
    assert_eq!(store.map().len(), 0, "nothing decoded by the restore");
    let sorted = |mut v: Vec<crate::model::finding::OpenFinding>| {
        v.sort_by(|a, b| a.finding_id.cmp(&b.finding_id));
        v
    };
    let open = sorted(store.open_findings());
    assert!(!open.is_empty(), "the feed leaves findings open");
    assert_eq!(open, sorted(engine.store().open_findings()));
    let query = |store: &crate::detect::state::Store| {
        let all = crate::ops::query::FindingFilter::all();
        crate::ops::query::open_findings(std::iter::once(store), &all).0
    };
    assert_eq!(
        query(&store),
        query(engine.store()),
        "the /v1 findings query"
    );
    for e in engine.store().map().iter() {
        let view =
            |st: &crate::detect::state::WorkerState| crate::ops::query::worker_view(e.key(), st);
        assert_eq!(store.with_state(e.key(), view), Some(view(e.value())));
    }
    // The rest of the feed touches some keys, not all.
    let rest = &events[cut..cut + 300];
    run(&mut restored, rest, cut);
    let left = store.frozen().len();
    assert!(
        left > 0 && left < restored.tracked(),
        "{left} still encoded"
    );
    assert_eq!(store.map().len() + left, restored.tracked());
    restored.thaw_all();
    assert_eq!(store.frozen().len(), 0);
    let entries: usize = store.map().iter().map(|st| st.entries()).sum();
    assert_eq!(entries, restored.entries());
    run(&mut engine, rest, cut);
    assert_eq!(
        (restored.tracked(), restored.workers(), restored.entries()),
        (engine.tracked(), engine.workers(), engine.entries())
    );
}

/// The first checkpoint of a state not restored from the changelog (fresh,
/// or rebuilt over one) begins with an origin; no other does.
#[test]
fn only_a_state_not_restored_from_the_changelog_writes_an_origin() {
    let cfg = config();
    let events = feed(3);
    let mut engine = Engine::new(cfg.clone());
    engine.track_changes();
    run(&mut engine, &events[..300], 0);
    let mut log = Log::default();
    let first = engine.checkpoint();
    assert!(first.origin);
    log.write(first);
    run(&mut engine, &events[300..600], 300);
    let second = engine.checkpoint();
    assert!(!second.origin);
    log.write(second);
    let mut restored = log.restore(&cfg).expect("restores");
    run(&mut restored, &events[600..900], 600);
    assert!(!restored.checkpoint().origin);
    let mut rebuilt = Engine::new(cfg.clone());
    run(&mut rebuilt, &events[..300], 0);
    rebuilt.track_changes_after(Vec::new(), log.keys.keys().cloned().collect());
    assert!(rebuilt.checkpoint().origin);
}

/// A key record whose summary reads but whose state does not (a defect:
/// the broker checks records) fails neither the restore nor the engine:
/// when first touched the key starts again empty, the totals stay those of
/// the state held, and the next checkpoint replaces the record.
#[test]
fn a_key_record_damaged_past_its_summary_starts_the_key_again() {
    let cfg = config();
    let mut engine = Engine::new(cfg.clone());
    engine.track_changes();
    run(&mut engine, &feed(9)[..600], 0);
    let mut log = Log::default();
    log.write(engine.checkpoint());
    let (key, record) = log
        .keys
        .iter()
        .max_by_key(|(_, r)| r.len())
        .map(|(k, r)| (k.clone(), r.clone()))
        .expect("keys");
    log.keys
        .insert(key.clone(), record[..record.len() - 1].to_vec());
    let mut restored = log.restore(&cfg).expect("the summary reads");
    restored.thaw_all();
    let store = restored.store().clone();
    assert_eq!(store.map().get(&key).map(|st| st.entries()), Some(0));
    let entries: usize = store.map().iter().map(|st| st.entries()).sum();
    assert_eq!(entries, restored.entries());
    assert!(restored.checkpoint().keys.iter().any(|(k, _)| *k == key));
}
