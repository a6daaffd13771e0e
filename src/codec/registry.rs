//! A Confluent Schema Registry client for the ids in Avro message headers:
//! `GET {url}/schemas/ids/{id}` returns `{"schema": "<Avro schema JSON>"}`.
//! Schemas are fetched once per id and kept; an unknown id (404) is
//! remembered for a minute so a stream of such messages does not hammer the
//! registry.

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
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

impl Registry {
    pub fn new(base: &str) -> Registry {
        Registry {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
        }
    }

    /// Looks an id up. `Err` is a failure worth retrying (network, 5xx).
    pub fn lookup(&self, id: u32) -> Result<Lookup, String> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        match self.agent.get(&url).call() {
            Ok(resp) => {
                let text = resp
                    .into_string()
                    .map_err(|e| format!("{url}: unreadable response: {e}"))?;
                let body: SchemaResponse = serde_json::from_str(&text)
                    .map_err(|e| format!("{url}: not a registry response: {e}"))?;
                if let Some(t) = body.schema_type.as_deref().filter(|t| *t != "AVRO") {
                    return Err(format!("{url}: schema id {id} is {t}, not Avro"));
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
            Err(ureq::Error::Status(code, _)) => Err(format!("{url}: HTTP {code}")),
            Err(e) => Err(format!("{url}: {e}")),
        }
    }
}
