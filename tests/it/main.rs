//! The integration tests: one binary, a module per area.

mod admin;
mod avro;
mod bench;
mod cli;
mod explain;
mod fuzz;
mod harness;
mod kafka;
mod pipeline;
mod reliability;
mod replay;
mod report;
mod scenarios;
mod security;
mod storm;
