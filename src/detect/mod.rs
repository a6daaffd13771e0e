//! Detection: the keyed state store and how each event changes it
//! ([`state`]), the thirteen rules as a pure function of one key's state
//! ([`rules`]), drift episodes ([`episode`]: held in state, moved along by
//! the engine), event-time SLA timers, the finding lifecycle and the
//! SOURCE_STORM guard ([`engine`]), and the event-time merge of a
//! partition's topics ([`merge`]). Plain Rust: no Kafka, no codec, no
//! clock, no I/O. `state` does not use `engine`.

pub mod engine;
pub mod episode;
pub mod merge;
pub mod rules;
pub mod state;
