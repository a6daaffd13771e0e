//! Finding encodings, selectable per output: the contract's JSON, Avro
//! (`schemas/finding.avsc`, Confluent wire format on topics, an Avro object
//! container file in replay files), and OCSF Detection Finding (class_uid
//! 2004) for SIEMs.
//!
//! The contract's JSON is `Finding::to_json`, and an Avro datum with its
//! Confluent framing is in `codec::avro`; the OCSF mapping is in `ocsf.rs`
//! and the Avro object container file in `container.rs`.

mod container;
mod ocsf;

pub use container::object_container;
pub use ocsf::{to_ocsf, OCSF_PROFILES, OCSF_VERSION};

use crate::codec::avro::{self, AvroError};
use crate::model::encoding::Encoding;
use crate::model::finding::Finding;
use apache_avro::Schema;

/// Encodes findings as message values.
pub struct FindingEncoder {
    encoding: Encoding,
    schema: Schema,
}

impl FindingEncoder {
    pub fn new(encoding: Encoding) -> FindingEncoder {
        FindingEncoder {
            encoding,
            schema: avro::schema(avro::FINDING_SCHEMA),
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// One finding as a message value.
    pub fn encode(&self, f: &Finding) -> Result<Vec<u8>, AvroError> {
        Ok(match self.encoding {
            Encoding::Json => f.to_json_bytes(),
            Encoding::Avro { schema_id } => avro::encode_finding(schema_id, &self.schema, f)?,
            Encoding::Ocsf => to_ocsf(f).to_string().into_bytes(),
        })
    }
}

/// Writes findings to a file or stdout: JSON lines, OCSF JSON lines, or an
/// Avro object container file. The container's sync marker is fixed, so the
/// same findings give the same bytes.
pub fn write_findings(
    encoding: Encoding,
    findings: &[Finding],
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    match encoding {
        Encoding::Json | Encoding::Ocsf => {
            for f in findings {
                let line = match encoding {
                    Encoding::Json => f.to_json(),
                    _ => to_ocsf(f).to_string(),
                };
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
        }
        Encoding::Avro { .. } => {
            let bytes = object_container(findings).map_err(|e| e.to_string())?;
            out.write_all(&bytes).map_err(|e| e.to_string())?;
        }
    }
    out.flush().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
