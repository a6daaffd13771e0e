//! driftwatch: a streaming identity-drift detector.
//!
//! # Layout
//!
//! The data flows ingest -> decode -> state -> rules -> findings. Each
//! layer imports only the layers above it in this list:
//!
//! - [`model`]: the contract's data: events and correlation keys, findings
//!   and their ids, rule ids, output encodings, event time, interned names.
//! - [`config`]: `config/driftwatch.toml`, raw then validated, with
//!   environment overrides and redaction of secrets.
//! - [`detect`]: the state store, the rules, the engine (episodes, SLA
//!   timers, finding lifecycle, SOURCE_STORM), the event-time merge and the
//!   driver that feeds merged records to an engine. Pure: no Kafka, no
//!   codec, no clock, no I/O.
//! - [`codec`]: JSON and Avro input, the schema registry client, and the
//!   finding encodings (JSON, Avro, OCSF).
//! - [`ops`]: metrics, the admin HTTP port and its live-state queries.
//! - [`replay`]: topic dumps in, finding transitions out, deterministically.
//! - [`kafka`]: the Kafka shell: clients, the consumer group, one task per
//!   partition, publishing, topic checks, and replay from a cluster.
//! - [`tools`]: the demo, the generator, the load harness and `explain`,
//!   apart from the detector's core.
//!
//! The engine does no I/O and never reads a clock; everything around it
//! (files, Kafka, HTTP) lives at the edges.
#![deny(unreachable_pub)]

/// mimalloc, for every binary built on this crate (the detector, tests and
/// benches alike): the state store is millions of small allocations, where
/// it is faster than the system allocator and wastes less per object (see
/// BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod codec;
pub mod config;
pub mod detect;
pub mod kafka;
pub mod model;
pub mod ops;
pub mod replay;
pub mod tools;
