//! Decoded events through state and rules, with 1,000,000 workers in state.
//!
//! `cargo bench --bench engine`. Setup loads the organisation (a hire, a
//! directory account and an app entitlement per worker); each measured batch
//! is 100,000 fresh events on random workers: directory attribute changes,
//! group grants and removals, HR updates and entitlement changes, with
//! event time moving forward, so dedup, timers and all rules run as live.
//! The same batches on 10,000 workers show what the size of the state
//! costs (each of them then takes ten events of every batch, and its
//! directory account soon holds all 50 groups). As in the pipeline, the
//! state of the next three events is prefetched before an event is applied.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch::config::Config;
use driftwatch::detect::engine::Engine;
use driftwatch::model::event::{
    AccountKind, AppEvent, AppEventType, DirectoryEvent, DirectoryEventType, Envelope, Event,
    HrEvent, HrEventType, Origin, WorkerType,
};
use driftwatch::model::id::Topic;
use driftwatch::model::time::Ts;
use driftwatch::tools::generate::{Generator, Rng};
use std::cell::RefCell;
use std::sync::Arc;

const BENCH_WORKERS: u64 = 1_000_000;
const BENCH_BATCH: usize = 100_000;

/// `cargo test --all-targets` runs each bench once as a smoke test; it
/// does not pass `--bench`, and gets a small organisation.
fn sizes() -> (u64, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (BENCH_WORKERS, BENCH_BATCH)
    } else {
        (10_000, 1_000)
    }
}

fn origin(topic: &Arc<str>, offset: i64) -> Origin {
    Origin {
        topic: Topic::new(topic),
        partition: 0,
        offset,
    }
}

struct Source {
    workers: u64,
    batch: usize,
    rng: Rng,
    seq: u64,
    now: Ts,
    topic: Arc<str>,
}

impl Source {
    fn batch(&mut self) -> Vec<Envelope> {
        let mut out = Vec::with_capacity(self.batch);
        for _ in 0..self.batch {
            self.seq += 1;
            self.now = self.now.plus(2);
            let w = self.rng.below(self.workers);
            let wid = Generator::worker_id(w);
            let event = match self.seq % 4 {
                0 => Event::Hr(HrEvent {
                    event_id: format!("b-{}", self.seq).into(),
                    event_type: HrEventType::Update,
                    occurred_at: self.now,
                    effective_at: self.now,
                    source_system: "workday".into(),
                    worker_id: wid.into(),
                    worker_type: WorkerType::Employee,
                    email: None,
                    department: None,
                    title: None,
                    manager_id: None,
                    cost_center: Some(format!("CC{}", self.seq % 97).into()),
                    contract_end: None,
                }),
                1 | 2 => Event::Directory(DirectoryEvent {
                    event_id: format!("b-{}", self.seq).into(),
                    event_type: if self.seq % 4 == 1 {
                        DirectoryEventType::GroupAdded
                    } else {
                        DirectoryEventType::GroupRemoved
                    },
                    occurred_at: self.now,
                    directory: "entra".into(),
                    account_id: format!("u{w:06}").into(),
                    worker_id: Some(wid.into()),
                    account_kind: AccountKind::Human,
                    owner_worker_id: None,
                    enabled: None,
                    email: None,
                    department: None,
                    title: None,
                    manager_id: None,
                    group: Some(format!("team-{}", self.seq % 50).into()),
                    privileged: false,
                    approved_by: None,
                    approval_ref: None,
                    actor: None,
                }),
                _ => Event::App(AppEvent {
                    event_id: format!("b-{}", self.seq).into(),
                    event_type: AppEventType::EntitlementGranted,
                    occurred_at: self.now,
                    app_id: "salesforce".into(),
                    account_id: format!("salesforce-{w:06}").into(),
                    worker_id: Some(wid.into()),
                    account_kind: AccountKind::Human,
                    owner_worker_id: None,
                    entitlement: Some("Reports".into()),
                    privileged: false,
                    approved_by: None,
                    approval_ref: None,
                }),
            };
            out.push(Envelope {
                origin: origin(&self.topic, self.seq as i64),
                event,
            });
        }
        out
    }
}

fn loaded_engine(workers: u64) -> (Engine, Ts) {
    let start = Ts::parse("2026-11-02T09:00:00Z").unwrap();
    let mut g = Generator::new(1, workers, start);
    let mut engine = Engine::new(Arc::new(Config::default_config()));
    let topic: Arc<str> = "bench".into();
    let mut out = Vec::new();
    for (i, e) in g.baseline().into_iter().enumerate() {
        engine.apply(
            Envelope {
                origin: origin(&topic, i as i64),
                event: e,
            },
            &mut out,
        );
    }
    (engine, start)
}

/// One engine of `workers` workers, fed batches of fresh events.
fn bench_workers(c: &mut Criterion, name: &str, workers: u64, batch: usize) {
    let (engine, start) = loaded_engine(workers);
    assert_eq!(engine.tracked(), workers as usize);
    let engine = RefCell::new(engine);
    let mut source = Source {
        workers,
        batch,
        rng: Rng::new(42),
        seq: 0,
        now: start,
        topic: "bench".into(),
    };
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(name, |b| {
        b.iter_batched(
            || source.batch(),
            |batch| {
                let mut engine = engine.borrow_mut();
                let mut out = Vec::new();
                // Peek in place, as the pipeline's merge does (`Peekable`
                // would move each 344-byte envelope once more).
                let mut events = batch.into_iter();
                while let Some(env) = events.next() {
                    let ahead = events.as_slice();
                    engine.prefetch([ahead.first(), ahead.get(1), ahead.get(2)]);
                    engine.apply(env, &mut out);
                }
                out.len()
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn engine_apply(c: &mut Criterion) {
    let (workers, batch) = sizes();
    bench_workers(c, "apply_1m_workers", workers, batch);
    // The same work on a state that fits in the CPU caches: the ratio of
    // the two is what random access to a large state costs.
    bench_workers(c, "apply_10k_workers", workers.min(10_000), batch);
}

criterion_group!(benches, engine_apply);
criterion_main!(benches);
