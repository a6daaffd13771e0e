//! Input records to events: the input topics as a partition task sees
//! them, and decoding (JSON, or Avro through the configured schemas and
//! the schema registry).

use super::*;

/// An input topic as a partition task sees it.
#[derive(Debug)]
pub(crate) struct InputTopic {
    pub(crate) name: Arc<str>,
    /// The name interned for evidence coordinates.
    pub(crate) id: crate::model::id::Topic,
    pub(crate) c_name: CString,
    pub(crate) system: System,
    /// `driftwatch_events_consumed_total{topic}`, looked up once.
    pub(crate) consumed: prometheus::IntCounter,
    /// `driftwatch_input_records_misplaced_total{topic}`, or
    /// `driftwatch_input_records_moved_total{topic}` when routing by
    /// payload.
    pub(crate) misplaced: prometheus::IntCounter,
}

/// Input decoding: JSON, or Avro when the message starts with the
/// Confluent magic byte 0 (no JSON document starts with a NUL byte). Avro
/// schema ids resolve through the `[schemas.ids]` files, then through the
/// schema registry when one is configured.
pub struct InputDecoder {
    pub(crate) schemas: std::sync::RwLock<SchemaSet>,
    pub(crate) registry: Option<crate::codec::registry::Registry>,
    /// Ids the registry did not know, and when it said so.
    pub(crate) unknown: Mutex<HashMap<u32, std::time::Instant>>,
    pub max_message_bytes: usize,
    /// How long the registry may stay unreachable before decoding fails.
    pub registry_patience: Duration,
}

/// How long an id the registry did not know is not asked for again.
const UNKNOWN_ID_TTL: Duration = Duration::from_secs(60);

impl InputDecoder {
    /// A decoder with the configured writer schemas and registry.
    pub fn from_config(cfg: &Config) -> Result<InputDecoder, PipelineError> {
        let mut schemas = SchemaSet::new();
        for (id, path) in &cfg.schemas.ids {
            let text = std::fs::read_to_string(path).map_err(|e| {
                PipelineError::Config(format!(
                    "config field `schemas.ids.{id}`: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let schema = apache_avro::Schema::parse_str(&text).map_err(|e| {
                PipelineError::Config(format!(
                    "config field `schemas.ids.{id}`: {} is not an Avro schema: {e}",
                    path.display()
                ))
            })?;
            schemas.insert_writer(*id, schema);
        }
        Ok(InputDecoder {
            schemas: std::sync::RwLock::new(schemas),
            registry: cfg
                .schemas
                .registry_url
                .as_deref()
                .map(crate::codec::registry::Registry::new),
            unknown: Mutex::new(HashMap::new()),
            max_message_bytes: cfg.max_message_bytes,
            registry_patience: Duration::from_secs(60),
        })
    }

    /// The schema id of a Confluent-framed payload that the registry must
    /// be asked for before the payload can be decoded, if any.
    pub fn pending_schema(&self, payload: &[u8]) -> Option<u32> {
        let (Some(_), [0, a, b, c, d, ..]) = (&self.registry, payload) else {
            return None;
        };
        let id = u32::from_be_bytes([*a, *b, *c, *d]);
        if self.schemas.read().expect("schemas lock").contains(id) {
            return None;
        }
        if let Some(at) = self.unknown.lock().expect("unknown lock").get(&id) {
            if at.elapsed() < UNKNOWN_ID_TTL {
                return None;
            }
        }
        Some(id)
    }

    /// Takes a registry answer in; `None` when it is worth asking again.
    fn settle(
        &self,
        id: u32,
        answer: Result<crate::codec::registry::Lookup, String>,
        started: std::time::Instant,
        backoff: Duration,
    ) -> Option<Result<(), PipelineError>> {
        match answer {
            Ok(crate::codec::registry::Lookup::Found(schema)) => {
                tracing::info!(id, "schema fetched from the registry");
                self.schemas
                    .write()
                    .expect("schemas lock")
                    .insert_writer(id, schema);
                Some(Ok(()))
            }
            Ok(crate::codec::registry::Lookup::Unknown) => {
                self.unknown
                    .lock()
                    .expect("unknown lock")
                    .insert(id, std::time::Instant::now());
                Some(Ok(()))
            }
            Err(reason) if started.elapsed() < self.registry_patience => {
                tracing::warn!(
                    id,
                    %reason,
                    "schema registry unavailable; retrying in {} ms",
                    backoff.as_millis()
                );
                None
            }
            Err(reason) => Some(Err(PipelineError::Registry(format!(
                "schema registry unavailable for {}s: {reason}",
                self.registry_patience.as_secs()
            )))),
        }
    }

    /// Asks the registry for schema `id` without blocking the runtime: the
    /// request runs on a blocking thread, and the task sleeps between
    /// attempts. Fails only when the registry stays unreachable for
    /// `registry_patience`: the message is not a dead letter, the pipeline
    /// stops and its offset is not committed.
    pub async fn fetch_schema(&self, id: u32) -> Result<(), PipelineError> {
        let Some(registry) = self.registry.clone() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            let r = registry.clone();
            let answer = tokio::task::spawn_blocking(move || r.lookup(id))
                .await
                .unwrap_or_else(|e| Err(format!("registry lookup failed: {e}")));
            if let Some(done) = self.settle(id, answer, started, backoff) {
                return done;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Makes sure the schema id of a Confluent-framed payload is known,
    /// asking the registry if need be, on this thread: for threads that
    /// may block (restore, replay). As [`InputDecoder::fetch_schema`]
    /// otherwise.
    pub fn ensure_schema(&self, payload: &[u8]) -> Result<(), PipelineError> {
        let (Some(id), Some(registry)) = (self.pending_schema(payload), &self.registry) else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            if let Some(done) = self.settle(id, registry.lookup(id), started, backoff) {
                return done;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    pub fn decode(&self, system: System, payload: &[u8]) -> Result<Event, DecodeError> {
        if payload.len() > self.max_message_bytes {
            return Err(DecodeError::Oversize {
                size: payload.len(),
                limit: self.max_message_bytes,
            });
        }
        match payload.first() {
            Some(0) => self
                .schemas
                .read()
                .expect("schemas lock")
                .decode(system, payload),
            _ => crate::codec::json::decode_json(system, payload),
        }
    }
}
