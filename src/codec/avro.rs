//! Avro with the Confluent wire format: magic byte 0, a 4-byte big-endian
//! schema id, then the Avro binary datum. The schemas are the `.avsc` files
//! in `schemas/`, built into the binary.
//!
//! JSON carries timestamps as RFC 3339 strings; Avro carries them as
//! `timestamp-millis` longs. Encoding converts the known timestamp fields;
//! decoding reads the longs through [`crate::model::time::reading_millis`] (JSON
//! never accepts them).

use crate::codec::json::DecodeError;
use crate::model::event::{AppEvent, DirectoryEvent, Event, HrEvent, System};
use crate::model::finding::Finding;
use apache_avro::types::Value;
use apache_avro::Schema;
use serde::Serialize;
use std::collections::HashMap;

pub const HR_SCHEMA: &str = include_str!("../../schemas/hr.worker-events.avsc");
pub const DIRECTORY_SCHEMA: &str = include_str!("../../schemas/directory.account-changes.avsc");
pub const APP_SCHEMA: &str = include_str!("../../schemas/app.entitlement-changes.avsc");
pub const FINDING_SCHEMA: &str = include_str!("../../schemas/finding.avsc");

/// Fields that hold event time.
const TIMESTAMP_FIELDS: &[&str] = &[
    "occurred_at",
    "effective_at",
    "contract_end",
    "detected_at",
    "remediation_deadline",
    "transitioned_at",
];

/// Avro failures on the encode side (decode failures are [`DecodeError`]s).
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("schema: {0}")]
    Schema(String),
    #[error("encode: {0}")]
    Encode(String),
}

/// Parses one of the built-in schemas.
pub fn schema(text: &str) -> Schema {
    Schema::parse_str(text).expect("the built-in schemas are valid")
}

/// The built-in input schema of a family.
pub fn input_schema(system: System) -> Schema {
    schema(match system {
        System::Hr => HR_SCHEMA,
        System::Directory => DIRECTORY_SCHEMA,
        System::App => APP_SCHEMA,
    })
}

/// An RFC 3339 string (possibly inside a union branch) as `timestamp-millis`.
fn timestamp_to_long(v: Value) -> Value {
    match v {
        Value::String(s) => match crate::model::time::Ts::parse(&s) {
            Ok(t) => Value::TimestampMillis(t.millis()),
            Err(_) => Value::String(s),
        },
        Value::Union(i, inner) => Value::Union(i, Box::new(timestamp_to_long(*inner))),
        other => other,
    }
}

fn timestamps_to_longs(v: Value) -> Value {
    match v {
        Value::Record(fields) => Value::Record(
            fields
                .into_iter()
                .map(|(name, value)| {
                    let value = if TIMESTAMP_FIELDS.contains(&name.as_str()) {
                        timestamp_to_long(value)
                    } else {
                        timestamps_to_longs(value)
                    };
                    (name, value)
                })
                .collect(),
        ),
        Value::Union(i, inner) => Value::Union(i, Box::new(timestamps_to_longs(*inner))),
        Value::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| (k, timestamps_to_longs(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(timestamps_to_longs).collect()),
        other => other,
    }
}

/// Encodes a serializable record as a bare Avro datum against `schema`.
pub fn encode_datum<T: Serialize>(schema: &Schema, value: &T) -> Result<Vec<u8>, AvroError> {
    let v = apache_avro::to_value(value).map_err(|e| AvroError::Encode(e.to_string()))?;
    let v = timestamps_to_longs(v);
    let v = v
        .resolve(schema)
        .map_err(|e| AvroError::Encode(e.to_string()))?;
    apache_avro::to_avro_datum(schema, v).map_err(|e| AvroError::Encode(e.to_string()))
}

/// Frames a datum in the Confluent wire format.
pub fn confluent_frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + datum.len());
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// Encodes an input event in the Confluent wire format.
pub fn encode_event(schema_id: u32, schema: &Schema, event: &Event) -> Result<Vec<u8>, AvroError> {
    let datum = match event {
        Event::Hr(e) => encode_datum(schema, e)?,
        Event::Directory(e) => encode_datum(schema, e)?,
        Event::App(e) => encode_datum(schema, e)?,
    };
    Ok(confluent_frame(schema_id, &datum))
}

/// Encodes a finding in the Confluent wire format against `schemas/finding.avsc`.
pub fn encode_finding(schema_id: u32, schema: &Schema, f: &Finding) -> Result<Vec<u8>, AvroError> {
    Ok(confluent_frame(schema_id, &encode_datum(schema, f)?))
}

/// Splits a Confluent-framed message into schema id and datum.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match bytes {
        [] => Err(DecodeError::Empty),
        [0, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [0, ..] => Err(DecodeError::Avro(
            "message shorter than the 5-byte Confluent header".into(),
        )),
        [m, ..] => Err(DecodeError::Avro(format!(
            "magic byte is {m}, not 0: not Confluent-framed Avro"
        ))),
    }
}

/// Writer schemas known by id. A schema registered for one family is
/// checked against the topic's family; a schema known only by id (from the
/// registry or the id -> file map) is resolved against the built-in schema
/// of the topic's family, so producers may evolve their schemas compatibly.
#[derive(Debug, Clone)]
pub struct SchemaSet {
    by_id: HashMap<u32, (Option<System>, Schema)>,
    /// Built-in reader schemas: HR, directory, app.
    readers: [Schema; 3],
}

impl Default for SchemaSet {
    fn default() -> SchemaSet {
        SchemaSet {
            by_id: HashMap::new(),
            readers: [
                input_schema(System::Hr),
                input_schema(System::Directory),
                input_schema(System::App),
            ],
        }
    }
}

fn reader_index(system: System) -> usize {
    match system {
        System::Hr => 0,
        System::Directory => 1,
        System::App => 2,
    }
}

impl SchemaSet {
    pub fn new() -> SchemaSet {
        SchemaSet::default()
    }

    /// Registers the schema of one family under `id`.
    pub fn insert(&mut self, id: u32, system: System, schema: Schema) {
        self.by_id.insert(id, (Some(system), schema));
    }

    /// Registers a writer schema whose family is the topic's.
    pub fn insert_writer(&mut self, id: u32, schema: Schema) {
        self.by_id.insert(id, (None, schema));
    }

    pub fn contains(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The writer schema registered under `id`.
    pub fn get(&self, id: u32) -> Option<&Schema> {
        self.by_id.get(&id).map(|(_, s)| s)
    }

    /// Decodes a Confluent-framed input message of family `system`.
    pub fn decode(&self, system: System, bytes: &[u8]) -> Result<Event, DecodeError> {
        let (id, mut datum) = unframe(bytes)?;
        let (family, schema) = self.by_id.get(&id).ok_or(DecodeError::UnknownSchema(id))?;
        let value = match family {
            Some(family) if *family != system => {
                return Err(DecodeError::Avro(format!(
                    "schema id {id} is a {} schema, but the message came from a {} topic",
                    family.as_str(),
                    system.as_str()
                )))
            }
            Some(_) => apache_avro::from_avro_datum(schema, &mut datum, None),
            None => apache_avro::from_avro_datum(
                schema,
                &mut datum,
                Some(&self.readers[reader_index(system)]),
            ),
        }
        .map_err(|e| DecodeError::Avro(format!("schema id {id}: {e}")))?;
        if !datum.is_empty() {
            return Err(DecodeError::Avro(format!(
                "{} trailing bytes after the datum",
                datum.len()
            )));
        }
        decode_value(system, &value)
    }
}

/// Turns a decoded Avro record of `schemas/finding.avsc` back into a finding.
pub fn decode_finding(value: &Value) -> Result<Finding, DecodeError> {
    crate::model::time::reading_millis(|| {
        apache_avro::from_value::<Finding>(value).map_err(|e| DecodeError::Avro(e.to_string()))
    })
}

/// Turns a decoded Avro record into an event.
pub fn decode_value(system: System, value: &Value) -> Result<Event, DecodeError> {
    let err = |e: apache_avro::Error| DecodeError::Avro(e.to_string());
    crate::model::time::reading_millis(|| {
        Ok(match system {
            System::Hr => Event::Hr(apache_avro::from_value::<HrEvent>(value).map_err(err)?),
            System::Directory => {
                Event::Directory(apache_avro::from_value::<DirectoryEvent>(value).map_err(err)?)
            }
            System::App => Event::App(apache_avro::from_value::<AppEvent>(value).map_err(err)?),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unframe_checks_the_header() {
        assert_eq!(unframe(&[0, 0, 0, 0, 7, 1, 2]).unwrap(), (7, &[1u8, 2][..]));
        assert_eq!(unframe(&[]).unwrap_err().error_type(), "empty");
        assert_eq!(unframe(&[0, 1]).unwrap_err().error_type(), "invalid_avro");
        assert_eq!(
            unframe(b"{\"a\":1}").unwrap_err().error_type(),
            "invalid_avro"
        );
    }
}
