//! driftwatch: a streaming identity-drift detector.
//!
//! # Layout
//!
//! The data flows ingest -> decode -> state -> rules -> findings:
//!
//! - [`event`]: the input event model of the three topic families and the
//!   correlation [`event::Key`].
//! - [`decode`]: JSON decoding with errors that name the field; [`avro`]:
//!   Avro (Confluent wire format) against the schemas in `schemas/`.
//! - [`state`]: the keyed state store (`DashMap`) and how each event changes
//!   it, with out-of-order and effective-time guards.
//! - [`rules`]: the thirteen drift rules as a pure function of one key's state.
//! - [`engine`]: episodes, event-time SLA timers, the finding lifecycle and the
//!   SOURCE_STORM guard, for one partition task.
//! - [`finding`]: the published finding and its deterministic id.
//! - [`config`]: `config/driftwatch.toml`, raw then validated.
//! - [`replay`]: topic dumps in, finding transitions out, deterministically.
//! - [`time`]: event time and RFC 3339.
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

pub mod admin;
pub mod avro;
pub mod config;
pub mod decode;
pub mod demo;
pub mod engine;
pub mod event;
pub mod explain;
pub mod finding;
pub mod generate;
pub mod id;
pub mod kafka_replay;
pub mod loadtest;
pub mod merge;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod query;
pub mod registry;
pub mod replay;
pub mod rules;
pub mod state;
pub mod time;
