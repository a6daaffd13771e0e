//! The integration tests: one binary, a module per area.

mod avro;
mod kafka;
mod replay;
mod scenarios;
mod storm;
