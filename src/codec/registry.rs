//! A Confluent Schema Registry client. For the ids in Avro message headers:
//! `GET {url}/schemas/ids/{id}` returns `{"schema": "<Avro schema JSON>"}`;
//! schemas are fetched once per id and kept, and an unknown id (404) is
//! remembered for a minute so a stream of such messages does not hammer the
//! registry. For the findings topic: `POST
//! {url}/subjects/{topic}-value/versions` registers `schemas/finding.avsc`
//! under the topic's subject (TopicNameStrategy), or finds it registered
//! already, and answers its id; a 409 is the registry refusing it as
//! incompatible with the subject's earlier versions.

use apache_avro::Schema;
use serde::Deserialize;
use std::time::Duration;

/// What the registry said of an id.
#[derive(Debug)]
pub enum Lookup {
    Found(Schema),
    /// The registry does not know the id (the message is a dead letter).
    Unknown,
}

/// A registry at a base URL.
#[derive(Clone)]
pub struct Registry {
    base: String,
    /// `base` without the credentials of its user info, for every message.
    shown: String,
    agent: ureq::Agent,
}

/// A URL with any `user:password@` replaced by `[redacted]@`.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The user info, if any, ends the authority's first part (before `/`).
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

/// Why the finding schema could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the schema registry at {url} refuses schemas/finding.avsc under subject `{subject}` as incompatible with its earlier versions (HTTP 409: {detail}); register a compatible version, change the subject's compatibility level, or set output.avro_schema_id")]
    Incompatible {
        url: String,
        subject: String,
        detail: String,
    },
    #[error("the schema registry at {url} refuses schemas/finding.avsc under subject `{subject}` (HTTP {status}: {detail})")]
    Refused {
        url: String,
        subject: String,
        status: u16,
        detail: String,
    },
    #[error(
        "the schema registry at {url} cannot be reached to register the finding schema: {detail}"
    )]
    Unreachable { url: String, detail: String },
}

impl RegisterError {
    /// Whether asking again may help (the registry was not reachable).
    pub fn retryable(&self) -> bool {
        matches!(self, RegisterError::Unreachable { .. })
    }
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

impl Registry {
    /// Registers `schema` (Avro schema JSON) under `subject`, or finds it
    /// registered already; its global id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegisterError> {
        let url = format!("{}/subjects/{subject}/versions", self.base);
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" }).to_string();
        let refused = |status: u16, text: String| {
            // The registry's {"error_code": .., "message": ..}.
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            if status == 409 {
                RegisterError::Incompatible {
                    url: self.shown.clone(),
                    subject: subject.to_string(),
                    detail,
                }
            } else {
                RegisterError::Refused {
                    url: self.shown.clone(),
                    subject: subject.to_string(),
                    status,
                    detail,
                }
            }
        };
        match self
            .agent
            .post(&url)
            .set("Content-Type", "application/vnd.schemaregistry.v1+json")
            .send_string(&body)
        {
            Ok(resp) => {
                let text = resp.into_string().map_err(|e| RegisterError::Unreachable {
                    url: self.shown.clone(),
                    detail: self.hide(e.to_string()),
                })?;
                serde_json::from_str::<IdResponse>(&text)
                    .map(|r| r.id)
                    .map_err(|e| refused(200, format!("not a registry answer: {e}: {text}")))
            }
            Err(ureq::Error::Status(code, resp)) => {
                Err(refused(code, resp.into_string().unwrap_or_default()))
            }
            Err(e) => Err(RegisterError::Unreachable {
                url: self.shown.clone(),
                detail: self.hide(e.to_string()),
            }),
        }
    }

    /// `text` with the URL's credentials taken out (ureq's errors quote
    /// the URL they were asked).
    fn hide(&self, text: String) -> String {
        text.replace(&self.base, &self.shown)
    }

    pub fn new(base: &str) -> Registry {
        let base = base.trim_end_matches('/').to_string();
        Registry {
            shown: without_credentials(&base),
            base,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
        }
    }

    /// Looks an id up. `Err` is a failure worth retrying (network, 5xx).
    pub fn lookup(&self, id: u32) -> Result<Lookup, String> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let shown = format!("{}/schemas/ids/{id}", self.shown);
        match self.agent.get(&url).call() {
            Ok(resp) => {
                let text = resp
                    .into_string()
                    .map_err(|e| format!("{shown}: unreadable response: {e}"))?;
                let body: SchemaResponse = serde_json::from_str(&text)
                    .map_err(|e| format!("{shown}: not a registry response: {e}"))?;
                if let Some(t) = body.schema_type.as_deref().filter(|t| *t != "AVRO") {
                    return Err(format!("{shown}: schema id {id} is {t}, not Avro"));
                }
                match Schema::parse_str(&body.schema) {
                    Ok(s) => Ok(Lookup::Found(s)),
                    // A schema we cannot read makes its messages dead letters.
                    Err(e) => {
                        tracing::warn!(id, error = %e, "registry schema is not valid Avro");
                        Ok(Lookup::Unknown)
                    }
                }
            }
            Err(ureq::Error::Status(404, _)) => Ok(Lookup::Unknown),
            Err(ureq::Error::Status(code, _)) => Err(format!("{shown}: HTTP {code}")),
            Err(e) => Err(format!("{shown}: {}", self.hide(e.to_string()))),
        }
    }
}

/// The encoding of the findings topic, with the Avro schema id settled:
/// the configured `output.avro_schema_id`, or else the id the registry at
/// `schemas.registry_url` gives `schemas/finding.avsc` under the subject
/// `<topic>-value`. Retries an unreachable registry for a minute.
pub fn settle_output(
    cfg: &crate::config::Config,
    topic: &str,
) -> Result<crate::model::encoding::Encoding, RegisterError> {
    use crate::model::encoding::Encoding;
    let (Encoding::Avro { schema_id: 0 }, Some(url)) = (cfg.output, &cfg.schemas.registry_url)
    else {
        return Ok(cfg.output);
    };
    if cfg.output_schema_id_given {
        return Ok(cfg.output);
    }
    let registry = Registry::new(url);
    let subject = format!("{topic}-value");
    let started = std::time::Instant::now();
    loop {
        match registry.register(&subject, super::avro::FINDING_SCHEMA) {
            Ok(id) => {
                tracing::info!(subject, id, "finding schema registered");
                return Ok(Encoding::Avro { schema_id: id });
            }
            Err(e) if e.retryable() && started.elapsed() < Duration::from_secs(60) => {
                tracing::warn!(error = %e, "retrying in 2 s");
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_show_the_credentials_of_the_url() {
        let r = Registry::new("https://reader:s3cret@registry.example:8081/");
        assert_eq!(r.shown, "https://[redacted]@registry.example:8081");
        // Nothing listens on port 9: the error names the URL without them.
        let r = Registry::new("http://reader:s3cret@127.0.0.1:9");
        let e = r.lookup(1).unwrap_err();
        assert!(!e.contains("s3cret") && e.contains("127.0.0.1:9"), "{e}");
        let e = r.register("t-value", "{}").unwrap_err().to_string();
        assert!(!e.contains("s3cret") && e.contains("127.0.0.1:9"), "{e}");
        assert_eq!(without_credentials("http://h:1/p@x"), "http://h:1/p@x");
    }
}
