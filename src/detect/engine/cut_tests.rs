//! A checkpoint cut short after any of its key records: the engine
//! restored from what reached the changelog continues exactly as the one
//! that wrote it, accounts that changed hands included.

use super::restore_tests::{checkpointed, config, feed, resume, run};
use super::*;
use crate::detect::state::Writer;
use crate::model::event::{DirectoryEventType, Key};
use crate::model::time::Ts;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A checkpoint cut short by a crash: its key records reached the log, its
/// partition record did not. Restored from the previous partition record,
/// with the input re-read from its offsets and each event of a key whose
/// record is newer only moving stream time (as the partition task does),
/// the engine publishes what an uninterrupted one publishes after the
/// complete checkpoint (storm guard off: its window count misses the
/// openings of those keys in the lost interval). Applying those events
/// again instead gives the same here (an older event never overwrites
/// newer state); skipping them does not rely on it.
/// The test configuration with the storm guard off.
fn storms_off() -> Arc<Config> {
    let mut cfg = (*config()).clone();
    cfg.storm.enabled = false;
    Arc::new(cfg)
}

#[test]
fn keys_written_past_the_partition_record_skip_what_they_hold() {
    let cfg = storms_off();
    let events = feed(6);
    let (a, b) = (events.len() / 3, events.len() / 2);
    // Checkpoint b: its keys written, its partition record lost.
    let (engine, published, mut log, cut) = checkpointed(&cfg, &events, a, b);
    let ahead: HashSet<Key> = cut.keys.iter().map(|k| k.0.clone()).collect();
    assert!(!ahead.is_empty());
    log.keys.extend(cut.keys);
    let mut uninterrupted = engine;
    let after_b = run(&mut uninterrupted, &events[b..], b);

    let mut restored = log.restore(&cfg).expect("restores");
    let again = resume(&mut restored, &events, a, b, &ahead);
    // What the restored engine publishes from b on is the uninterrupted
    // one's; before b it may only repeat what was published then.
    let from_b: Vec<&Finding> = again.iter().filter(|f| !published.contains(f)).collect();
    assert_eq!(from_b, after_b.iter().collect::<Vec<_>>());
    assert_eq!(restored.entries(), uninterrupted.entries());
}

/// For moves of an account between keys in a generated feed (an orphan
/// linked to its worker, a service account handed to another): a
/// checkpoint is written after the account's first event, and the next
/// one, after the move, is cut short after each of its key records in
/// turn; its partition record is lost. Restored from the first
/// checkpoint's partition record and the keys written, with the input
/// re-read from its offsets (an event of a key written past them only
/// moves stream time, as the partition task does), the engine publishes
/// what an uninterrupted one publishes after the complete checkpoint, and
/// holds the same state, key for key; also when the account changed under
/// its old key between the checkpoint and the move, or moved on to a
/// third key right after it.
#[test]
fn a_checkpoint_cut_after_any_key_record_restores_exactly() {
    let cfg = storms_off();
    let plain = feed(6);
    let moves = moves(&plain);
    assert!(moves.len() >= 4, "the feed moves accounts: {moves:?}");
    let (mut both, mut checked) = (0, 0);
    // Each move as generated; with a privileged group added to the
    // account under its old key between the checkpoint and the move; and
    // with the account moved on to a third key right after the move.
    let variants = moves.iter().flat_map(|&m| [(m, 0), (m, 1), (m, 2)]);
    for ((first, moved), variant) in variants {
        let mut events = plain.clone();
        let moved = match variant {
            1 => {
                let Some(extra) = group_added(&events[first], &events[moved]) else {
                    continue;
                };
                events.insert(moved, extra);
                moved + 1
            }
            2 => {
                let Some(again) = moved_on(&events[moved]) else {
                    continue;
                };
                events.insert(moved + 1, again);
                moved + 1
            }
            _ => moved,
        };
        let (a, b) = (first + 1, moved + 1);
        let (engine, published, log, cut) = checkpointed(&cfg, &events, a, b);
        let records: Vec<(Key, Option<Vec<u8>>)> = cut
            .key_records()
            .map(|(k, s)| (k.clone(), s.map(<[u8]>::to_vec)))
            .collect();
        let mut uninterrupted = engine;
        let after_b = run(&mut uninterrupted, &events[b..], b);
        let expected = records_of(&uninterrupted);

        let n = records.len();
        for written in 0..=n {
            let mut partial = log.clone();
            let mut ahead = HashMap::new();
            for (k, s) in &records[..written] {
                // A deleted key is not restored: its events apply again. An
                // emptied one, written empty, is not restored either, but its
                // events before its offsets are in the state its account
                // went to.
                match s {
                    Some(s) => {
                        ahead.insert(k.clone(), vec![b as i64]);
                        partial.keys.insert(k.clone(), s.clone());
                    }
                    None => {
                        ahead.remove(k);
                        partial.keys.remove(k);
                    }
                }
            }
            let mut restored = partial.restore(&cfg).expect("restores");
            both += restored.settle_moves(&ahead);
            let keys: HashSet<Key> = ahead.keys().cloned().collect();
            let again = resume(&mut restored, &events, a, b, &keys);
            let from_b: Vec<&Finding> = again.iter().filter(|f| !published.contains(f)).collect();
            assert!(
                from_b == after_b.iter().collect::<Vec<_>>(),
                "move at {moved}, cut after {written} of {n} key records: {} transitions published from the cut on, {} without it",
                from_b.len(),
                after_b.len()
            );
            let got = records_of(&restored);
            let differ: Vec<&Key> = expected
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .map(|(k, _)| k)
                .chain(got.keys().filter(|k| !expected.contains_key(*k)))
                .collect();
            assert!(
                differ.is_empty(),
                "move at {moved}, cut after {written} of {n} key records: the states of {differ:?} differ"
            );
            checked += 1;
        }
    }
    assert!(checked >= 12);
    // Some cuts left an account under two keys, which the restore settled.
    assert!(both > 0);
}

/// Where accounts change hands in `events`: the index of an account's
/// first event and of the first event naming it under another key.
fn moves(events: &[Event]) -> Vec<(usize, usize)> {
    let mut first: HashMap<(String, String), (usize, Key)> = HashMap::new();
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let id = match e {
            Event::Directory(d) => (d.directory.to_string(), d.account_id.to_string()),
            Event::App(a) => (a.app_id.to_string(), a.account_id.to_string()),
            Event::Hr(_) => continue,
        };
        let key = e.key();
        match first.get_mut(&id) {
            None => {
                first.insert(id, (i, key));
            }
            Some((at, held)) if *held != key => {
                out.push((*at, i));
                (*at, *held) = (i, key);
            }
            Some(_) => {}
        }
    }
    out
}

/// An event adding a privileged group to the directory account of
/// `created`, under the same key, just before `moving`.
fn group_added(created: &Event, moving: &Event) -> Option<Event> {
    let Event::Directory(d) = created else {
        return None;
    };
    let mut e = d.clone();
    e.event_id = format!("{}-between", d.event_id).as_str().into();
    e.event_type = DirectoryEventType::GroupAdded;
    e.occurred_at = Ts(moving.occurred_at().millis() - 1);
    e.group = Some("Domain Admins".into());
    e.privileged = true;
    Some(Event::Directory(e))
}

/// The directory account event `moving` names, moved on to another
/// worker a millisecond later.
fn moved_on(moving: &Event) -> Option<Event> {
    let Event::Directory(d) = moving else {
        return None;
    };
    let mut e = d.clone();
    e.event_id = format!("{}-again", d.event_id).as_str().into();
    e.occurred_at = Ts(d.occurred_at.millis() + 1);
    let next = Some("W900001".into());
    if e.worker_id.is_some() {
        e.worker_id = next.clone();
    }
    if e.owner_worker_id.is_some() {
        e.owner_worker_id = next;
    }
    let moved = Event::Directory(e);
    (moved.key() != moving.key()).then_some(moved)
}

/// Every key's state as its changelog record.
fn records_of(engine: &Engine) -> BTreeMap<Key, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in engine.store.map().iter() {
        let mut w = Writer::default();
        e.value().encode_record(&mut w);
        out.insert(e.key().clone(), w.buf);
    }
    for e in engine.store.frozen().iter() {
        out.insert(e.key().clone(), e.value().record().to_vec());
    }
    out
}
