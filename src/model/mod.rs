//! The contract's data: input events and their correlation keys, findings
//! and their ids, rule ids, output encodings, event time, and the interned
//! names they are made of. No I/O and no detection logic: every other
//! layer builds on this one, and it imports none of them.

pub mod encoding;
pub mod event;
pub mod finding;
pub mod id;
pub mod partitioner;
pub mod rule;
pub mod time;
