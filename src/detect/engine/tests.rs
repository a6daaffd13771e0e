use super::*;
use crate::detect::state::Account;
use crate::model::event::{
    AccountKind, DirectoryEvent, DirectoryEventType, HrEvent, HrEventType, Origin, WorkerType,
};
use crate::model::finding::Status;
use crate::model::id::Topic;
use crate::model::time::MS_PER_DAY;

/// Applies `event` as the next record of one test topic.
fn apply_next(engine: &mut Engine, offset: &mut i64, event: Event, out: &mut Vec<Finding>) {
    *offset += 1;
    let origin = Origin {
        topic: Topic::new("engine-test"),
        partition: 0,
        offset: *offset,
    };
    engine.apply(Envelope { origin, event }, out);
}

/// Sweeping the timer heap drops the entries of keys no longer waiting
/// and keeps every one a key still waits for.
#[test]
fn timer_sweeps_keep_every_live_timer() {
    let mut cfg = Config::default_config();
    cfg.storm.enabled = false;
    let mut engine = Engine::new(Arc::new(cfg));
    let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
    let workers = 3 * MIN_TIMER_SWEEP as i64;
    let mut out = Vec::new();
    let mut offset = 0;
    let mut apply = |engine: &mut Engine, event: Event, out: &mut Vec<Finding>| {
        apply_next(engine, &mut offset, event, out)
    };
    for w in 0..workers {
        // One event a second: the 24-hour joiner SLA of early workers
        // expires while later ones are still being hired.
        let at = t0.plus(w * 1_000);
        let hire = HrEvent {
            event_id: format!("h{w}").into(),
            event_type: HrEventType::Hire,
            occurred_at: at,
            effective_at: at,
            source_system: "workday".into(),
            worker_id: format!("w{w}").into(),
            worker_type: WorkerType::Employee,
            email: None,
            department: None,
            title: None,
            manager_id: None,
            cost_center: None,
            contract_end: None,
        };
        apply(&mut engine, Event::Hr(hire), &mut out);
        // Two of three are provisioned at once, leaving a stale timer.
        if w % 3 != 0 {
            let account = DirectoryEvent {
                event_id: format!("d{w}").into(),
                event_type: DirectoryEventType::AccountCreated,
                occurred_at: at,
                directory: "entra".into(),
                account_id: format!("u{w}").into(),
                worker_id: Some(format!("w{w}").into()),
                account_kind: AccountKind::Human,
                owner_worker_id: None,
                enabled: Some(true),
                email: None,
                department: None,
                title: None,
                manager_id: None,
                group: None,
                privileged: false,
                approved_by: None,
                approval_ref: None,
                actor: None,
            };
            apply(&mut engine, Event::Directory(account), &mut out);
        }
    }
    assert!(
        engine.timers.len() < workers as usize,
        "swept: {} entries",
        engine.timers.len()
    );
    engine.advance_to(t0.plus(workers * 1_000 + 2 * MS_PER_DAY), &mut out);
    let mut opened: Vec<&str> = out
        .iter()
        .filter(|f| f.rule == Rule::JoinerNotProvisioned && f.status == Status::Open)
        .filter_map(|f| f.worker_id.as_deref())
        .collect();
    opened.sort_unstable();
    let mut expected: Vec<String> = (0..workers).step_by(3).map(|w| format!("w{w}")).collect();
    expected.sort_unstable();
    assert_eq!(opened.len(), expected.len(), "joiner findings opened");
    assert!(opened.iter().zip(&expected).all(|(a, b)| a == b));
}

/// The entry count the engine keeps from what each apply adds (and
/// each reconcile opens or ends) matches a walk over the whole store,
/// through a stream of lifecycle scenarios whose episodes open, escalate
/// and resolve, with timers firing between events.
#[test]
fn maintained_entry_count_matches_a_recount() {
    use crate::tools::generate::Generator;
    let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
    let mut g = Generator::new(7, 300, t0);
    let mut engine = Engine::new(Arc::new(Config::default_config()));
    let mut out = Vec::new();
    let mut offset = 0;
    let mut feed = |engine: &mut Engine, events: Vec<Event>, out: &mut Vec<Finding>| {
        for event in events {
            apply_next(engine, &mut offset, event, out);
        }
    };
    feed(&mut engine, g.baseline(), &mut out);
    let recount =
        |engine: &Engine| -> usize { engine.store.map().iter().map(|st| st.entries()).sum() };
    assert_eq!(engine.entries(), recount(&engine));
    for round in 0..40 {
        for _ in 0..50 {
            let batch = g.next_batch(10 * 60_000);
            feed(&mut engine, batch, &mut out);
        }
        engine.advance_to(engine.now().plus(6 * 3_600_000), &mut out);
        assert_eq!(engine.entries(), recount(&engine), "after round {round}");
    }
    let statuses: HashSet<Status> = out.iter().map(|f| f.status).collect();
    assert!(
        statuses.contains(&Status::Open) && statuses.contains(&Status::Resolved),
        "episodes opened and ended: {statuses:?}"
    );
}
/// A quiet engine (a restore) goes through the same transitions into
/// the same state as one that publishes, and appends nothing; once loud
/// again, both publish the same from the same input.
#[test]
fn a_quiet_engine_reaches_the_same_state_and_publishes_nothing() {
    use crate::tools::generate::Generator;
    let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
    let mut g = Generator::new(5, 300, t0);
    let mut first = g.baseline();
    for _ in 0..400 {
        first.extend(g.next_batch(10 * 60_000));
    }
    let second: Vec<Event> = (0..200).flat_map(|_| g.next_batch(10 * 60_000)).collect();
    let cfg = Arc::new(Config::default_config());
    let (mut loud, mut quiet) = (Engine::new(cfg.clone()), Engine::new(cfg));
    quiet.set_quiet(true);
    let feed = |engine: &mut Engine, events: &[Event]| -> Vec<Finding> {
        let mut out = Vec::new();
        let mut offset = 0;
        for event in events {
            apply_next(engine, &mut offset, event.clone(), &mut out);
        }
        engine.advance_to(engine.now().plus(3 * MS_PER_DAY), &mut out);
        out
    };
    let published = feed(&mut loud, &first);
    let statuses: HashSet<Status> = published.iter().map(|f| f.status).collect();
    assert_eq!(
        statuses.len(),
        3,
        "opened, escalated and resolved: {statuses:?}"
    );
    assert!(feed(&mut quiet, &first).is_empty());
    assert_eq!(loud.stats(), quiet.stats());
    assert_eq!(loud.entries(), quiet.entries());
    let mut open = (loud.open_findings(), quiet.open_findings());
    open.0.sort_unstable();
    open.1.sort_unstable();
    assert_eq!(open.0, open.1);
    quiet.set_quiet(false);
    let (a, b) = (feed(&mut loud, &second), feed(&mut quiet, &second));
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

/// Engines of three partitions, each applying the events of its keys and
/// exchanging notes at once (their stream time kept together), publish
/// what one engine publishes for the whole feed: accounts correlated later or handed to another owner leave
/// their old key wherever it lives, with their state. Without the notes
/// they would not.
#[test]
fn partitions_exchanging_notes_move_accounts_as_one_engine_does() {
    use std::collections::BTreeMap;
    let (cfg, events, last) = moving_feed();
    let end = last.plus(30 * MS_PER_DAY);
    type Seen = BTreeMap<String, usize>;
    let tally = |out: &[Finding]| {
        let mut seen = Seen::new();
        for f in out {
            let k = format!(
                "{} {:?} {:?} {:?}",
                f.rule, f.status, f.worker_id, f.subject
            );
            *seen.entry(k).or_default() += 1;
        }
        seen
    };
    let mut one = Engine::new(cfg.clone());
    let mut whole = Vec::new();
    let mut offset = 0;
    for e in &events {
        apply_next(&mut one, &mut offset, e.clone(), &mut whole);
    }
    one.advance_to(end, &mut whole);

    let run = |notes: bool| {
        let mut parts = Partitions::new(&cfg, 3, notes);
        for e in &events {
            parts.apply(e);
        }
        for e in &mut parts.engines {
            e.advance_to(end, &mut parts.out);
        }
        parts.out
    };
    let (moved, whole) = (tally(&run(true)), tally(&whole));
    let differ: Vec<_> = moved
        .keys()
        .chain(whole.keys())
        .filter(|k| moved.get(*k) != whole.get(*k))
        .map(|k| format!("{k}: {:?} vs {:?}", moved.get(k), whole.get(k)))
        .collect();
    assert!(differ.is_empty(), "{differ:#?}");
    let orphans = |out: &[Finding]| {
        out.iter()
            .filter(|f| f.rule == Rule::OrphanAccount && f.status == Status::Resolved)
            .count()
    };
    let resolved = orphans(&run(true));
    assert!(resolved > 0);
    assert!(
        orphans(&run(false)) < resolved,
        "without notes, correlated accounts stay orphans in their old partition"
    );
}

/// A generated feed of three weeks in which accounts change keys (orphans
/// correlated later, service accounts handed to another owner), the
/// configuration with the storm guard off, and the feed's last time.
fn moving_feed() -> (Arc<Config>, Vec<Event>, Ts) {
    let mut cfg = Config::default_config();
    cfg.storm.enabled = false;
    let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
    let mut g = crate::tools::generate::Generator::new(5, 400, t0);
    let mut events = g.baseline();
    for _ in 0..3_000 {
        events.extend(g.next_batch(10 * 60_000));
    }
    (Arc::new(cfg), events, g.now())
}

/// Engines of `n` partitions of one feed, routed by payload: each event
/// goes to its key's partition, with one clock for all (as one engine
/// has), and notes and the replies they make are delivered at once.
struct Partitions {
    cfg: Arc<Config>,
    engines: Vec<Engine>,
    out: Vec<Finding>,
    offset: i64,
    /// Each handover sent, with the partition that sent it.
    handovers: Vec<(usize, Account)>,
}

impl Partitions {
    fn new(cfg: &Arc<Config>, n: usize, notes: bool) -> Partitions {
        let mut engines: Vec<Engine> = (0..n).map(|_| Engine::new(cfg.clone())).collect();
        if notes {
            engines.iter_mut().for_each(Engine::send_notes);
        }
        Partitions {
            cfg: cfg.clone(),
            engines,
            out: Vec::new(),
            offset: 0,
            handovers: Vec::new(),
        }
    }

    fn part(&self, k: &Key) -> usize {
        let n = self.engines.len() as i32;
        self.cfg.kafka.partitioner.partition(k, n) as usize
    }

    /// Applies `e` where its key lives; returns that partition.
    fn apply(&mut self, e: &Event) -> usize {
        let p = self.part(&e.key());
        let out = &mut self.out;
        apply_next(&mut self.engines[p], &mut self.offset, e.clone(), out);
        let now = self.engines[p].now();
        for e in &mut self.engines {
            e.advance_to(now, out);
        }
        let mut queue: Vec<(usize, To, Note)> = self.engines[p]
            .take_notes()
            .into_iter()
            .map(|(to, n)| (p, to, n))
            .collect();
        while let Some((from, to, note)) = queue.pop() {
            if let Note::Handover(copy) = &note {
                self.handovers.push((from, copy.clone()));
            }
            let targets: Vec<usize> = match &to {
                To::Every => (0..self.engines.len()).filter(|&q| q != from).collect(),
                To::KeyOf(k) => vec![self.part(k)],
            };
            for q in targets {
                self.engines[q].receive(note.clone(), &mut self.out);
                queue.extend(
                    self.engines[q]
                        .take_notes()
                        .into_iter()
                        .map(|(to, n)| (q, to, n)),
                );
            }
        }
        p
    }
}

/// A partition restored from its checkpoint still knows where it let
/// accounts go in the last day: a handover reaching it afterwards (two
/// partitions claimed the account at once) follows the account there, as
/// it does from the partition that wrote the checkpoint.
#[test]
fn a_restored_partition_forwards_handovers_of_accounts_it_let_go() {
    use super::restore_tests::Log;
    let (cfg, events, _) = moving_feed();
    let mut parts = Partitions::new(&cfg, 3, true);
    parts.engines.iter_mut().for_each(Engine::track_changes);
    let mut logs: Vec<Log> = vec![Log::default(); 3];
    let mut checked = 0;
    for e in &events {
        let sent = parts.handovers.len();
        parts.apply(e);
        let Some((from, copy)) = parts.handovers.get(sent).cloned() else {
            continue;
        };
        // A partition just let an account go: checkpoint, restore, and
        // hand the account to the restored partition again.
        let engine = &mut parts.engines[from];
        logs[from].write(engine.checkpoint());
        let mut restored = logs[from].restore(&cfg).expect("restores");
        restored.send_notes();
        let day = |f: &owners::Forwards, now: Ts| -> Vec<String> {
            let mut v: Vec<String> = f
                .iter()
                .filter(|(_, (_, at))| at.plus(MS_PER_DAY) >= now)
                .map(|(a, (k, at))| format!("{a:?} {k} {at:?}"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            day(&restored.forwards, restored.now()),
            day(&engine.forwards, engine.now())
        );
        let to = engine.forwards[&copy.identity()].0.clone();
        let mut out = Vec::new();
        restored.receive(Note::Handover(copy.clone()), &mut out);
        let sent: Vec<(To, Vec<u8>)> = restored
            .take_notes()
            .into_iter()
            .map(|(to, n)| (to, encode_note(&n)))
            .collect();
        assert_eq!(
            sent,
            vec![(To::KeyOf(to), encode_note(&Note::Handover(copy.clone())))]
        );
        assert!(out.is_empty());
        checked += 1;
        if checked == 20 {
            // A day on, neither the partition nor its restored copy
            // forwards a handover of the account any more.
            let later = engine.now().plus(MS_PER_DAY + 1);
            let mut out = Vec::new();
            for engine in [engine, &mut restored] {
                engine.advance_to(later, &mut out);
                engine.take_notes();
                engine.receive(Note::Handover(copy.clone()), &mut out);
                assert!(engine.take_notes().is_empty());
            }
            break;
        }
    }
    assert_eq!(checked, 20, "the feed moves accounts between partitions");
}

/// A changelog of format 5, whose partition record does not list the
/// accounts let go to other partitions, restores as one of format 6
/// listing none; read as format 6, it is an error.
#[test]
fn a_partition_record_of_format_5_restores_as_having_let_no_account_go() {
    use super::restore_tests::{checkpointed, config, feed, run};
    let cfg = config();
    let events = feed(3);
    let half = events.len() / 2;
    let (_, _, log, _) = checkpointed(&cfg, &events, half, half);
    let six = log.partition.clone().expect("written");
    assert_eq!(six[0], 6);
    // Its last byte: no account let go (key routing).
    assert_eq!(six.last(), Some(&0));
    let mut five = six[..six.len() - 1].to_vec();
    five[0] = 5;
    let mut old = log.clone();
    old.partition = Some(five.clone());
    let mut from_five = old.restore(&cfg).expect("format 5 is read");
    let mut from_six = log.restore(&cfg).expect("restores");
    assert_eq!(
        run(&mut from_five, &events[half..], half),
        run(&mut from_six, &events[half..], half)
    );
    five[0] = 6;
    old.partition = Some(five);
    assert!(matches!(old.restore(&cfg), Err(RestoreError::Codec(_))));
}

/// Notes survive encoding, in order, split into records of bounded size.
#[test]
fn notes_round_trip_in_records_of_bounded_size() {
    use crate::detect::state::AccountRef;
    let ev = EvRef {
        offset: 7,
        occurred_at: Ts(1_000),
        event_id: EventId::new("e-1"),
        partition: 2,
        topic: Topic::new("directory.account-changes"),
        event_type: crate::model::event::EventType::Directory(
            DirectoryEventType::AttributesChanged,
        ),
    };
    let notes: Vec<Note> = (0..500)
        .map(|i| Note::Claim {
            account: AccountRef {
                system: crate::model::event::System::Directory,
                scope: Sym::new("entra"),
                account_id: format!("account-{i}").as_str().into(),
            },
            key: Key::worker(&format!("W{i:06}")),
            at: Ts(i),
            ev: ev.clone(),
        })
        .collect();
    let encoded: Vec<Vec<u8>> = notes.iter().map(encode_note).collect();
    let records = pack_notes(encoded.iter().map(Vec::as_slice), 4_096);
    assert!(records.len() > 5, "{} records", records.len());
    assert!(records.iter().all(|r| r.len() <= 4_096 + 200));
    let mut engine = Engine::new(Arc::new(Config::default_config()));
    let mut back = Vec::new();
    for r in &records {
        back.extend(engine.decode_notes(r).expect("decodes"));
    }
    assert_eq!(back.len(), notes.len());
    for (a, b) in back.iter().zip(&notes) {
        match (a, b) {
            (
                Note::Claim {
                    account,
                    key,
                    at,
                    ev: e,
                },
                Note::Claim {
                    account: a2,
                    key: k2,
                    at: t2,
                    ev: e2,
                },
            ) => assert_eq!((account, key, at, e), (a2, k2, t2, e2)),
            _ => panic!("not a claim"),
        }
    }
}

/// A restore reading a key twice (an older record, then a newer one, as a
/// changelog not yet compacted holds them) lists the accounts and open
/// findings of the newer record only, also after a record it could not
/// read.
#[test]
fn heads_keep_what_each_keys_newest_record_holds() {
    use super::restore_tests::{config, feed, run};
    use crate::detect::state::{Frozen, Heads, Summary};
    use crate::model::id::Sym;
    let cfg = config();
    let mut engine = Engine::new(cfg.clone());
    engine.track_changes();
    let events = feed(5);
    run(&mut engine, &events[..events.len() / 2], 0);
    let checkpoint = engine.checkpoint();
    let open = |record: &[u8]| -> Vec<String> {
        let (frozen, _) = Frozen::with_head(record.to_vec(), &mut Heads::default(), &mut Sym::new)
            .expect("readable");
        let mut ids: Vec<String> = frozen
            .open_findings()
            .expect("readable")
            .into_iter()
            .map(|f| f.finding_id)
            .collect();
        ids.sort();
        ids
    };
    let mut with = checkpoint.keys.iter().filter(|(_, r)| !open(r).is_empty());
    let (a, b) = (
        with.next().expect("a key with findings open"),
        with.next().expect("two"),
    );
    let without = checkpoint
        .keys
        .iter()
        .find(|(_, r)| open(r).is_empty())
        .expect("a key without");
    assert_ne!(open(&a.1), open(&b.1));
    let ids = |open: Vec<crate::model::finding::OpenFinding>| {
        let mut ids: Vec<String> = open.into_iter().map(|f| f.finding_id).collect();
        ids.sort();
        ids
    };
    // The key of `without` read with `a`'s record first, a record cut
    // short, then its own; then `b`'s key.
    let mut heads = Heads::default();
    let read = |heads: &mut Heads, record: &[u8]| {
        Frozen::with_head(record.to_vec(), heads, &mut Sym::new)
            .expect("readable")
            .1
    };
    let older = read(&mut heads, &a.1);
    // Cut within its head's last part, its open findings: its accounts
    // were read, and are taken back.
    let cut = (1..b.1.len())
        .rev()
        .find(|&n| {
            Frozen::with_head(b.1[..n].to_vec(), &mut Heads::default(), &mut Sym::new).is_err()
        })
        .expect("a cut within the head");
    let before = (heads.read_count(), heads.owned_count());
    assert!(Frozen::with_head(b.1[..cut].to_vec(), &mut heads, &mut Sym::new).is_err());
    assert_eq!((heads.read_count(), heads.owned_count()), before);
    let newer = read(&mut heads, &without.1);
    let other = read(&mut heads, &b.1);
    for (head, record) in [(&older, &a.1), (&newer, &without.1), (&other, &b.1)] {
        assert_eq!(
            heads.owned(head),
            &Summary::owned(record, &mut Sym::new).expect("readable")[..]
        );
    }
    heads.keep(&newer);
    heads.keep(&other);
    assert_eq!(
        ids(heads.into_open()),
        open(&b.1),
        "the older record's are dropped"
    );
    // The same through an engine's restore.
    let partition = PartitionRecord::read(checkpoint.partition, &cfg).expect("readable");
    let (window, written) =
        window_ids(partition.dedup_window.clone(), checkpoint.dedup).expect("whole window");
    let mut restoring = Engine::new(cfg.clone());
    let mut heads = Heads::default();
    let mut read = |record: &[u8]| {
        restoring
            .read_key(&mut heads, record.to_vec())
            .expect("readable")
    };
    let (_older, newer, other) = (read(&a.1), read(&without.1), read(&b.1));
    let mut restored = restoring
        .restore_read(
            &partition,
            [(without.0.clone(), newer), (b.0.clone(), other)],
            heads,
            &window,
            written,
        )
        .expect("restores");
    assert_eq!(restored.tracked(), 2);
    assert_eq!(ids(restored.take_open_findings()), open(&b.1));
}

/// Checkpoints asked for with a prefix (the frame of a changelog record)
/// write each key record after it, and otherwise the records a checkpoint
/// without one writes: keys emptied by moves and keys of a restored state
/// included.
#[test]
fn key_records_follow_the_prefix_asked_for() {
    use super::restore_tests::{config, feed, run, Log};
    let cfg = config();
    let events = feed(6);
    let mut plain = Engine::new(cfg.clone());
    let mut framed = Engine::new(cfg.clone());
    plain.track_changes();
    framed.track_changes();
    let mut log = Log::default();
    let (mut records, mut emptied) = (0, 0);
    for (i, chunk) in events.chunks(500).enumerate() {
        let at = i * 500;
        assert_eq!(run(&mut plain, chunk, at), run(&mut framed, chunk, at));
        let (a, b) = (plain.checkpoint(), framed.checkpoint_after(b"frame"));
        assert_eq!(a.prefix, 0);
        assert_eq!(b.prefix, 5);
        assert!(b.keys.iter().all(|(_, r)| r.starts_with(b"frame")));
        assert!(a.key_records().eq(b.key_records()));
        assert_eq!(a.partition, b.partition);
        records += a.keys.len();
        emptied += a.keys.iter().filter(|(_, r)| r == emptied_record()).count();
        log.write(a);
        if i == 20 {
            // Both go on from the state the changelog holds.
            plain = log.restore(&cfg).expect("restores");
            framed = log.restore(&cfg).expect("restores");
        }
    }
    assert!(
        records > 500 && emptied > 0,
        "{records} records, {emptied} emptied"
    );
}

/// However many accounts a partition let go in the last day, its
/// partition record holds the newest of them within a bound, and a
/// restore knows those.
#[test]
fn a_mass_move_keeps_the_partition_record_bounded() {
    use super::restore_tests::Log;
    use crate::detect::state::AccountRef;
    let cfg = Arc::new(Config::default_config());
    let mut engine = Engine::new(cfg.clone());
    engine.track_changes();
    let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
    let moved = 20_000;
    engine.advance_to(t0.plus(moved), &mut Vec::new());
    for i in 0..moved {
        let account = AccountRef {
            system: crate::model::event::System::Directory,
            scope: Sym::new("entra"),
            account_id: format!("account-{i:06}").as_str().into(),
        };
        let key = Key::worker(&format!("W{i:06}"));
        engine.forwards.insert(account, (key, t0.plus(i)));
    }
    let checkpoint = engine.checkpoint();
    let size = checkpoint.partition.len();
    assert!(
        size > MAX_FORWARDS_BYTES / 2 && size < MAX_FORWARDS_BYTES + 1_024,
        "{size} bytes"
    );
    let mut log = Log::default();
    log.write(checkpoint);
    let restored = log.restore(&cfg).expect("restores");
    let kept = restored.forwards.len() as i64;
    assert!(kept > 1_000 && kept < moved, "{kept} kept");
    // The newest, every one of them.
    let oldest = restored.forwards.values().map(|(_, at)| *at).min();
    assert_eq!(oldest, Some(t0.plus(moved - kept)));
}
