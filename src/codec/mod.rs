//! Bytes in and out: JSON input events ([`json`], with its fast path
//! [`flat`]), Avro with the Confluent wire format ([`avro`]) and its schema
//! registry client ([`registry`]), and the finding encodings ([`output`]).

pub mod avro;
mod flat;
pub mod json;
pub mod output;
pub mod registry;
