//! Tools around the detector, apart from its core: the embedded demo
//! ([`demo`]), the synthetic organisation generator ([`generate`]), the
//! load harness ([`bench`]), `explain` ([`explain`]) and the governance
//! report of owners against their deadlines ([`report`]).

pub mod bench;
pub mod demo;
pub mod explain;
pub mod generate;
pub mod report;
