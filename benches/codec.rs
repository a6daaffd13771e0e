//! Decoding input and encoding findings, per message, on one thread.
//!
//! `cargo bench --bench codec`: JSON decode and Avro decode of a generated
//! lifecycle stream (all three families), JSON decode plus engine apply, and
//! finding encodes in the three output encodings.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch::codec::avro::{self, SchemaSet};
use driftwatch::codec::json::decode_json;
use driftwatch::codec::json::to_json;
use driftwatch::codec::output::FindingEncoder;
use driftwatch::config::Config;
use driftwatch::detect::engine::Engine;
use driftwatch::model::encoding::Encoding;
use driftwatch::model::event::{Envelope, Origin, System};
use driftwatch::model::finding::Finding;
use driftwatch::model::id::Topic;
use driftwatch::model::time::Ts;
use driftwatch::tools::generate::Generator;
use std::collections::VecDeque;
use std::sync::Arc;

fn stream() -> Vec<(System, String)> {
    let mut g = Generator::new(1, 2_000, Ts::parse("2026-11-02T08:00:00Z").unwrap());
    let mut events = g.baseline();
    for _ in 0..3_000 {
        events.extend(g.next_batch(600_000));
    }
    events.iter().map(|e| (e.system(), to_json(e))).collect()
}

/// Decodes and applies every message to `engine`; the finding transitions.
/// Like the pipeline, it decodes messages before the ones ahead of them are
/// applied, and prefetches the state of the next three.
fn apply_all(engine: &mut Engine, messages: &[(System, String)], topic: &Arc<str>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut decoded = messages
        .iter()
        .enumerate()
        .map(|(i, (sys, json))| Envelope {
            origin: Origin {
                topic: Topic::new(topic),
                partition: 0,
                offset: i as i64,
            },
            event: decode_json(*sys, json.as_bytes()).unwrap(),
        });
    // The merge holds decoded records ahead of the one applied.
    let mut ahead: VecDeque<Envelope> = decoded.by_ref().take(3).collect();
    while let Some(env) = ahead.pop_front() {
        ahead.extend(decoded.next());
        engine.prefetch([ahead.front(), ahead.get(1), ahead.get(2)]);
        engine.apply(env, &mut out);
    }
    out
}

fn bench(c: &mut Criterion) {
    let messages = stream();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.sample_size(10);

    group.bench_function("json_decode", |b| {
        b.iter(|| {
            for (sys, json) in &messages {
                std::hint::black_box(decode_json(*sys, json.as_bytes()).unwrap());
            }
        })
    });

    let mut set = SchemaSet::new();
    let schemas = [System::Hr, System::Directory, System::App].map(avro::input_schema);
    for (i, s) in schemas.iter().enumerate() {
        set.insert_writer(i as u32 + 1, s.clone());
    }
    let framed: Vec<(System, Vec<u8>)> = messages
        .iter()
        .map(|(sys, json)| {
            let e = decode_json(*sys, json.as_bytes()).unwrap();
            let i = match sys {
                System::Hr => 0,
                System::Directory => 1,
                System::App => 2,
            };
            (
                *sys,
                avro::encode_event(i as u32 + 1, &schemas[i], &e).unwrap(),
            )
        })
        .collect();
    group.bench_function("avro_decode", |b| {
        b.iter(|| {
            for (sys, bytes) in &framed {
                std::hint::black_box(set.decode(*sys, bytes).unwrap());
            }
        })
    });

    let cfg = Arc::new(Config::default_config());
    let topic: Arc<str> = "t".into();
    group.bench_function("json_decode_and_engine", |b| {
        b.iter_batched(
            || Engine::new(cfg.clone()),
            |mut engine| apply_all(&mut engine, &messages, &topic).len(),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // Finding encodes: the findings of replaying the stream.
    let findings = apply_all(&mut Engine::new(cfg.clone()), &messages, &topic);
    let mut group = c.benchmark_group("finding_encode");
    group.throughput(Throughput::Elements(findings.len() as u64));
    group.sample_size(10);
    for (name, enc) in [
        ("json", Encoding::Json),
        ("avro", Encoding::Avro { schema_id: 1 }),
        ("ocsf", Encoding::Ocsf),
    ] {
        let encoder = FindingEncoder::new(enc);
        group.bench_function(name, |b| {
            b.iter(|| {
                for f in &findings {
                    std::hint::black_box(encoder.encode(f).unwrap());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
