//! Property-based fuzzing of the decoders: whatever bytes arrive, decoding
//! returns an event or a classified error, never panics. Cases per property:
//! `DRIFTWATCH_FUZZ_CASES` (default 512; CI runs a longer bounded round).

use driftwatch::codec::avro::{self, SchemaSet};
use driftwatch::codec::json::decode_json;
use driftwatch::codec::json::to_json;
use driftwatch::config::Config;
use driftwatch::kafka::InputDecoder;
use driftwatch::model::event::System;
use driftwatch::tools::generate::Generator;
use proptest::prelude::*;

const TYPES: &[&str] = &[
    "empty",
    "invalid_utf8",
    "malformed_json",
    "invalid_field",
    "oversize",
    "invalid_avro",
    "unknown_schema",
];

fn cases() -> u32 {
    std::env::var("DRIFTWATCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn system(i: u8) -> System {
    match i % 3 {
        0 => System::Hr,
        1 => System::Directory,
        _ => System::App,
    }
}

/// Valid events of every family to mutate.
fn seeds() -> &'static [(System, String)] {
    static SEEDS: std::sync::OnceLock<Vec<(System, String)>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(make_seeds)
}

fn make_seeds() -> Vec<(System, String)> {
    let mut g = Generator::new(
        3,
        20,
        driftwatch::model::time::Ts::parse("2026-11-02T08:00:00Z").unwrap(),
    );
    let mut events = g.baseline();
    for _ in 0..200 {
        events.extend(g.next_batch(600_000));
    }
    events.iter().map(|e| (e.system(), to_json(e))).collect()
}

fn decoder() -> InputDecoder {
    let cfg = Config::from_toml("[detector]\nmax_message_bytes = 4096").unwrap();
    let mut d = InputDecoder::from_config(&cfg).unwrap();
    d.max_message_bytes = 4096;
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), fam in any::<u8>()) {
        if let Err(e) = decode_json(system(fam), &bytes) {
            prop_assert!(TYPES.contains(&e.error_type()));
        }
        if let Err(e) = decoder().decode(system(fam), &bytes) {
            prop_assert!(TYPES.contains(&e.error_type()));
        }
    }

    #[test]
    fn mutated_events_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let seeds = seeds();
        let (sys, json) = &seeds[pick.index(seeds.len())];
        let mut bytes = json.clone().into_bytes();
        for (at, b, op) in edits {
            let len = bytes.len();
            let i = at.index(len.max(1));
            match op {
                0 if len > 0 => bytes[i.min(len - 1)] = b,
                1 => bytes.insert(i.min(len), b),
                _ if len > 0 => {
                    bytes.remove(i.min(len - 1));
                }
                _ => {}
            }
        }
        if let Err(e) = decode_json(*sys, &bytes) {
            prop_assert!(TYPES.contains(&e.error_type()));
        }
    }

    #[test]
    fn avro_datums_never_panic(
        id in 0u32..4,
        datum in proptest::collection::vec(any::<u8>(), 0..256),
        fam in any::<u8>(),
    ) {
        let mut set = SchemaSet::new();
        set.insert(1, System::Hr, avro::input_schema(System::Hr));
        set.insert_writer(2, avro::input_schema(System::Directory));
        set.insert_writer(3, avro::input_schema(System::App));
        let framed = avro::confluent_frame(id, &datum);
        if let Err(e) = set.decode(system(fam), &framed) {
            prop_assert!(TYPES.contains(&e.error_type()));
        }
    }

    #[test]
    fn truncated_avro_events_never_panic(pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let seeds = seeds();
        let (sys, json) = &seeds[pick.index(seeds.len())];
        let event = decode_json(*sys, json.as_bytes()).unwrap();
        let framed = avro::encode_event(9, &avro::input_schema(*sys), &event).unwrap();
        let mut set = SchemaSet::new();
        set.insert_writer(9, avro::input_schema(*sys));
        let cut = cut.index(framed.len());
        if let Err(e) = set.decode(*sys, &framed[..cut]) {
            prop_assert!(TYPES.contains(&e.error_type()));
        }
        prop_assert_eq!(set.decode(*sys, &framed).unwrap(), event);
    }
}
