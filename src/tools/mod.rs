//! Tools around the detector, apart from its core: the embedded demo
//! ([`demo`]), the synthetic organisation generator ([`generate`]), the
//! load harness ([`bench`]) and `explain` ([`explain`]).

pub mod bench;
pub mod demo;
pub mod explain;
pub mod generate;
