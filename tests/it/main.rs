//! The integration tests: one binary, a module per area.

mod avro;
mod harness;
mod kafka;
mod pipeline;
mod replay;
mod scenarios;
mod storm;
