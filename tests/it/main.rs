//! The integration tests: one binary, a module per area.

mod avro;
mod replay;
mod scenarios;
mod storm;
