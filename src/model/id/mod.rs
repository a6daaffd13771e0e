//! Compact identifiers for the state held per worker.
//!
//! Memory per tracked worker is a product feature (BENCHMARKS.md), and the
//! state of a million workers is mostly identifiers: keys, account ids and
//! the event ids of the evidence. Four types keep them small:
//!
//! - [`Name`]: a string of up to 22 bytes stored inline (worker ids,
//!   account ids, generated event ids), a longer one shared on the heap.
//!   Inline names cost no allocation, and comparing keys in a hash-table
//!   probe touches no other cache line.
//! - [`EventId`]: a [`Name`], or a canonical lower-case UUID (the usual
//!   event id) packed into its 16 bytes.
//! - [`Topic`]: a topic name interned for the life of the process, two bytes.
//! - [`Sym`]: a shared string behind one thin pointer, eight bytes, for
//!   the names the engine interns (scopes, source systems, grant names,
//!   departments, titles); equal symbols usually share the pointer.
//!
//! Each string has exactly one representation, so the derived equality and
//! hash of the representation agree with those of the string.

mod event_id;
mod name;
mod sym;
mod topic;

pub use event_id::EventId;
pub use name::Name;
pub use sym::Sym;
pub use topic::Topic;
