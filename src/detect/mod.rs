//! Detection: the keyed state store and how each event changes it
//! ([`state`]), the thirteen rules as a pure function of one key's state
//! ([`rules`]), drift episodes ([`episode`]: held in state, moved along by
//! the engine), event-time SLA timers, the finding lifecycle and the
//! SOURCE_STORM guard ([`engine`]), the event-time merge of a partition's
//! topics ([`merge`]), and the one step that feeds merged records to an
//! engine ([`driver`], used by replay, restore and the live task). Plain Rust: no Kafka, no codec, no
//! clock, no I/O. `state` does not use `engine`.

pub mod driver;
pub mod engine;
pub mod episode;
pub mod merge;
pub mod route;
pub mod rules;
pub mod state;
