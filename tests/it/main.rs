//! The integration tests: one binary, a module per area.

mod replay;
mod scenarios;
mod storm;
