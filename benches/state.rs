//! The state changelog's encoding: an engine restored from the records of
//! every key.
//!
//! `cargo bench --bench state`. Setup feeds one engine the load harness's
//! input (the generator's 20,000 workers, about ten events each, some
//! findings open), so the records are those a restore reads; the restore
//! is measured from records already in memory, without a broker: what the
//! engine costs of a changelog restore (each key's state is left encoded
//! until first touched), and what decoding every key costs on top.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch::config::Config;
use driftwatch::detect::engine::{window_ids, Checkpoint, Engine, PartitionRecord};
use driftwatch::detect::state::Writer;
use driftwatch::model::event::{Envelope, Key, Origin};
use driftwatch::model::id::Topic;
use driftwatch::model::time::Ts;
use driftwatch::tools::generate::Generator;
use std::sync::Arc;

const BENCH_EVENTS: usize = 200_000;

/// `cargo test --all-targets` runs each bench once as a smoke test; it
/// does not pass `--bench`, and gets a small feed.
fn feed_len() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        BENCH_EVENTS
    } else {
        5_000
    }
}

/// An engine fed the harness's input, and its first checkpoint (every key).
fn fed(cfg: &Arc<Config>) -> (Engine, Checkpoint) {
    let mut generator =
        Generator::new(7, 20_000, Ts::parse("2026-01-01T00:00:00Z").expect("valid"));
    let mut events = generator.baseline();
    while events.len() < feed_len() {
        events.extend(generator.next_batch(60_000));
    }
    events.truncate(feed_len());
    let mut engine = Engine::new(cfg.clone());
    engine.track_changes();
    let topic = Topic::new("bench-state");
    let mut out = Vec::new();
    for (offset, event) in events.into_iter().enumerate() {
        let origin = Origin {
            topic,
            partition: 0,
            offset: offset as i64,
        };
        engine.apply(Envelope { origin, event }, &mut out);
        out.clear();
    }
    let checkpoint = engine.checkpoint();
    (engine, checkpoint)
}

fn bench_state(c: &mut Criterion) {
    let mut cfg = Config::default_config();
    // The pipeline's window is per partition; one engine here holds what
    // twelve partitions hold, so it keeps every id of the feed.
    cfg.dedup_capacity = cfg.dedup_capacity.max(feed_len());
    let cfg = Arc::new(cfg);
    let started = std::time::Instant::now();
    let (engine, checkpoint) = fed(&cfg);
    eprintln!(
        "fed and checkpointed in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    drop(engine);
    let keys = checkpoint.keys.len() as u64;
    let bytes: usize = checkpoint.keys.iter().map(|(_, v)| v.len()).sum();
    eprintln!(
        "state: {keys} keys, {bytes} bytes of key records ({} per key)",
        bytes as u64 / keys.max(1)
    );
    let records: Vec<(Key, Vec<u8>)> = checkpoint.keys;
    let pieces: Vec<(u64, Vec<u8>)> = checkpoint.dedup.into_iter().collect();
    let partition = checkpoint.partition;

    let mut group = c.benchmark_group("state");
    group.sample_size(10);
    group.throughput(Throughput::Elements(keys));
    let restore = |(records, pieces, partition): (Vec<(Key, Vec<u8>)>, _, Vec<u8>)| {
        let partition = PartitionRecord::read(partition, &cfg).expect("readable");
        let (ids, written) =
            window_ids(partition.dedup_window.clone(), pieces).expect("whole window");
        Engine::restore(cfg.clone(), &partition, records, &ids, written).expect("restores")
    };
    let inputs = || (records.clone(), pieces.clone(), partition.clone());
    group.bench_function("restore_every_key", |b| {
        b.iter_batched(inputs, restore, BatchSize::PerIteration)
    });
    // The same, then every key decoded as if each were touched once: what
    // a restore cost before keys were left encoded until first touched.
    group.bench_function("restore_and_decode_every_key", |b| {
        b.iter_batched(
            inputs,
            |input| {
                let mut engine = restore(input);
                engine.thaw_all();
                engine
            },
            BatchSize::PerIteration,
        )
    });
    // What a checkpoint writing every key encodes: each key's record, as
    // `Engine::checkpoint` does.
    let mut thawed = restore(inputs());
    thawed.thaw_all();
    group.bench_function("encode_every_key", |b| {
        b.iter(|| {
            let mut w = Writer::default();
            let mut records = Vec::with_capacity(thawed.tracked());
            for e in thawed.store().map().iter() {
                w.buf.clear();
                e.value().encode_record(&mut w);
                records.push(w.buf.clone());
            }
            records
        })
    });
    group.finish();
}

criterion_group!(benches, bench_state);
criterion_main!(benches);
