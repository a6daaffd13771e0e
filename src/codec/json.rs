//! Decoding of input messages: JSON (the default) and Avro with the
//! Confluent wire format (see [`crate::codec::avro`]).
//!
//! Every error names the field at fault and carries a bounded
//! [`DecodeError::error_type`] label for metrics and dead-letter headers.

use crate::model::event::{AppEvent, DirectoryEvent, Event, HrEvent, System};
use serde::de::DeserializeOwned;

/// Why a message could not become an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message (tombstone)")]
    Empty,
    #[error("message is not valid UTF-8 at byte {0}")]
    Utf8(usize),
    #[error("malformed JSON: {0}")]
    Syntax(String),
    #[error("field `{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    Oversize { size: usize, limit: usize },
    #[error("avro: {0}")]
    Avro(String),
    #[error("unknown schema id {0}")]
    UnknownSchema(u32),
}

impl DecodeError {
    /// A bounded label for metrics and the `dw.error.type` header.
    pub fn error_type(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::Utf8(_) => "invalid_utf8",
            DecodeError::Syntax(_) => "malformed_json",
            DecodeError::Field { .. } => "invalid_field",
            DecodeError::Oversize { .. } => "oversize",
            DecodeError::Avro(_) => "invalid_avro",
            DecodeError::UnknownSchema(_) => "unknown_schema",
        }
    }
}

/// Decodes a message already checked to be UTF-8 (so serde does not check
/// each string again).
fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    // Tracking the path costs a third of the decode; a message that fails
    // is decoded again with it, to name the field at fault.
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return DecodeError::Syntax(inner.to_string());
        }
        let msg = inner.to_string();
        // serde reports a missing field at the enclosing path; name it.
        if let Some(rest) = msg.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default().to_string();
            return DecodeError::Field {
                field,
                reason: "required field is missing".into(),
            };
        }
        let reason = match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        let field = if path == "." { "message".into() } else { path };
        DecodeError::Field { field, reason }
    })?;
    de.end().map_err(|e| DecodeError::Syntax(e.to_string()))?;
    Ok(value)
}

/// Decodes one JSON message of the given family.
pub fn decode_json(system: System, bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::Utf8(e.valid_up_to()))?;
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => {
            // serde would accept an array as a struct; the contract says object.
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                    Err(e) => DecodeError::Syntax(e.to_string()),
                    Ok(_) => DecodeError::Field {
                        field: "message".into(),
                        reason: "expected a JSON object".into(),
                    },
                },
            );
        }
        None => return Err(DecodeError::Empty),
    }
    if let Some(event) = super::flat::decode(system, text) {
        return Ok(event);
    }
    event_by_serde(system, text)
}

/// A JSON object of the given family through serde: every message the fast
/// path leaves, and the reference its tests compare it with.
pub(super) fn event_by_serde(system: System, text: &str) -> Result<Event, DecodeError> {
    Ok(match system {
        System::Hr => Event::Hr(from_json::<HrEvent>(text)?),
        System::Directory => Event::Directory(from_json::<DirectoryEvent>(text)?),
        System::App => Event::App(from_json::<AppEvent>(text)?),
    })
}

/// Decodes with a size limit, as the pipeline does.
pub fn decode_json_limited(
    system: System,
    bytes: &[u8],
    limit: usize,
) -> Result<Event, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::Oversize {
            size: bytes.len(),
            limit,
        });
    }
    decode_json(system, bytes)
}

/// Serializes an event as the contract's JSON.
pub fn to_json(e: &Event) -> String {
    match e {
        Event::Hr(e) => serde_json::to_string(e),
        Event::Directory(e) => serde_json::to_string(e),
        Event::App(e) => serde_json::to_string(e),
    }
    .expect("events always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(system: System, json: &str, expect: &str) {
        let got = match decode_json(system, json.as_bytes()) {
            Ok(e) => format!("ok {}", e.event_type()),
            Err(e) => format!("{}: {e}", e.error_type()),
        };
        assert_eq!(got, expect);
    }

    const HIRE: &str = r#"{"event_id":"e1","event_type":"HIRE","occurred_at":"2026-11-03T09:00:00Z","effective_at":"2026-11-03T09:00:00Z","source_system":"workday","worker_id":"w1","worker_type":"EMPLOYEE","unknown_extra":[1,2]}"#;

    #[test]
    fn errors_name_the_field() {
        check(System::Hr, HIRE, "ok HIRE");
        check(
            System::Hr,
            &HIRE.replace("\"HIRE\"", "\"FIRE\""),
            "invalid_field: field `event_type`: unknown variant `FIRE`, expected one of `HIRE`, `REHIRE`, `TRANSFER`, `UPDATE`, `LEAVE_START`, `LEAVE_END`, `TERMINATION`, `CONTRACT_EXTENSION`",
        );
        check(
            System::Hr,
            &HIRE.replace(r#""worker_id":"w1","#, ""),
            "invalid_field: field `worker_id`: required field is missing",
        );
        check(
            System::Hr,
            &HIRE.replace(r#""2026-11-03T09:00:00Z","source"#, r#""soon","source"#),
            "invalid_field: field `effective_at`: `soon` is not an RFC 3339 timestamp (expected e.g. 2026-11-03T09:00:00Z)",
        );
        check(
            System::Hr,
            &HIRE.replace(r#""w1""#, "42"),
            "invalid_field: field `worker_id`: invalid type: integer `42`, expected a string",
        );
        check(
            System::Hr,
            "{\"event_id\":",
            "malformed_json: malformed JSON: EOF while parsing a value at line 1 column 12",
        );
        check(
            System::Hr,
            "[]",
            "invalid_field: field `message`: expected a JSON object",
        );
        check(System::Hr, "", "empty: empty message (tombstone)");
        check(
            System::Hr,
            &format!("{HIRE} {HIRE}"),
            "malformed_json: malformed JSON: trailing characters at line 1 column 204",
        );
        let bad = [b'{', 0xff, b'}'];
        assert_eq!(
            decode_json(System::Hr, &bad).unwrap_err().error_type(),
            "invalid_utf8"
        );
    }

    #[test]
    fn defaults_and_nulls() {
        let json = r#"{"event_id":"d1","event_type":"GROUP_ADDED","occurred_at":"2026-11-03T09:00:00Z","directory":"entra","account_id":"a1","worker_id":null,"account_kind":"HUMAN","privileged":null,"group":"admins"}"#;
        let Event::Directory(e) = decode_json(System::Directory, json.as_bytes()).unwrap() else {
            panic!("not a directory event")
        };
        assert!(!e.privileged);
        assert_eq!(e.worker_id, None);
        assert_eq!(e.group.as_deref(), Some("admins"));
    }

    #[test]
    fn oversize_is_refused_before_parsing() {
        let err = decode_json_limited(System::Hr, HIRE.as_bytes(), 10).unwrap_err();
        assert_eq!(err.error_type(), "oversize");
    }
}
