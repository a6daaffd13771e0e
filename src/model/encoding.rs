//! The encodings of findings the contract names: JSON, Avro, OCSF.

/// How findings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The contract's JSON, one document per message (or line).
    Json,
    /// Avro against `schemas/finding.avsc`; on topics Confluent-framed with
    /// this schema id.
    Avro { schema_id: u32 },
    /// OCSF Detection Finding JSON (the version is `codec::output::OCSF_VERSION`).
    Ocsf,
}

impl Encoding {
    /// Parses `json`, `avro` or `ocsf` (`avro` takes the schema id given).
    pub fn parse(name: &str, avro_schema_id: Option<u32>) -> Result<Encoding, String> {
        match name {
            "json" => Ok(Encoding::Json),
            "ocsf" => Ok(Encoding::Ocsf),
            "avro" => Ok(Encoding::Avro {
                schema_id: avro_schema_id.unwrap_or(0),
            }),
            other => Err(format!(
                "`{other}` is not an encoding; use json, avro or ocsf"
            )),
        }
    }
}
