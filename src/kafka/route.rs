//! Routing by payload: a record read from partition `p` of an input topic
//! whose correlation key belongs to another partition (its producer keyed
//! it otherwise, by account id for example, or partitioned with another
//! hash) is produced, unchanged, to that partition of `topics.repartition`,
//! with its family and source coordinates in headers. Every task reads its
//! partition of the repartition topic as one more input, merged by event
//! time with the others; evidence names the source coordinates.

use super::{PipelineError, Shared};
use crate::codec::json::DecodeError;
use crate::model::event::{Origin, System};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

/// The family of the event a repartition record carries.
const FAMILY: &str = "dw.family";
/// Where the record was first read.
const SOURCE_TOPIC: &str = "dw.source.topic";
const SOURCE_PARTITION: &str = "dw.source.partition";
const SOURCE_OFFSET: &str = "dw.source.offset";

/// An input record that belongs to another partition, on its way there.
pub(crate) struct Forward {
    /// The partition of its correlation key.
    pub(crate) to: i32,
    /// The correlation key, as the repartition record's Kafka key.
    pub(crate) key: String,
    pub(crate) system: System,
    pub(crate) payload: Vec<u8>,
}

/// The headers of a repartition record.
pub(crate) fn headers(system: System, topic: &str, partition: i32, offset: i64) -> OwnedHeaders {
    let partition = partition.to_string();
    let offset = offset.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(4);
    for (key, value) in [
        (FAMILY, system.as_str()),
        (SOURCE_TOPIC, topic),
        (SOURCE_PARTITION, partition.as_str()),
        (SOURCE_OFFSET, offset.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}

/// The family and source coordinates a repartition record carries. The
/// source topic must be one of the input topics.
pub(crate) fn source(shared: &Shared, m: &impl Message) -> Result<(System, Origin), DecodeError> {
    let bad = |reason: String| DecodeError::Repartition(reason);
    let headers = m
        .headers()
        .ok_or_else(|| bad("no headers".to_string()))?;
    let get = |name: &str| -> Result<&str, DecodeError> {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .ok_or_else(|| bad(format!("header `{name}` missing or not UTF-8")))
    };
    let system = match get(FAMILY)? {
        "hr" => System::Hr,
        "directory" => System::Directory,
        "app" => System::App,
        other => return Err(bad(format!("header `{FAMILY}` is `{other}`"))),
    };
    let topic = get(SOURCE_TOPIC)?;
    let input = shared
        .topic_index(topic)
        .map(|q| &shared.topics[q])
        .filter(|t| t.system == Some(system))
        .ok_or_else(|| bad(format!("`{topic}` is not a {} input topic", system.as_str())))?;
    let number = |name: &str| -> Result<i64, DecodeError> {
        get(name)?
            .parse()
            .map_err(|_| bad(format!("header `{name}` is not a number")))
    };
    Ok((
        system,
        Origin {
            topic: input.id,
            partition: number(SOURCE_PARTITION)? as i32,
            offset: number(SOURCE_OFFSET)?,
        },
    ))
}

impl Shared {
    /// The partition that owns `key`.
    pub(crate) fn partition_of(&self, key: &crate::model::event::Key) -> i32 {
        self.cfg.kafka.partitioner.partition(key, self.partitions)
    }

    /// Queues a record to the repartition topic.
    pub(crate) async fn forward(
        &self,
        f: &Forward,
        origin: (&str, i32, i64),
    ) -> Result<rdkafka::producer::DeliveryFuture, PipelineError> {
        let headers = headers(f.system, origin.0, origin.1, origin.2);
        super::publish::enqueue_to(
            &self.producer,
            &self.cfg.topics.repartition,
            Some(f.to),
            Some(f.key.as_bytes()),
            &f.payload,
            Some(&headers),
        )
        .await
    }
}

/// What a record read from an input or the repartition topic is to a task.
pub(crate) enum Read {
    /// An event of this partition.
    Here(crate::model::event::Envelope),
    /// An event of another partition, to forward there.
    Elsewhere(Forward),
    /// A record that cannot be decoded, for the dead-letter topic.
    Bad(DecodeError),
}

impl Shared {
    /// Decodes message `m`, read from partition `partition` of topic `q`,
    /// and says where its event belongs. A repartition record's event is
    /// this partition's (it was sent here), with its source coordinates.
    pub(crate) fn read(&self, partition: i32, q: usize, m: &impl Message) -> Read {
        let topic = &self.topics[q];
        let Some(payload) = m.payload() else {
            return Read::Bad(DecodeError::Empty);
        };
        let (system, origin) = match topic.system {
            Some(system) => (
                system,
                Origin {
                    topic: topic.id,
                    partition,
                    offset: m.offset(),
                },
            ),
            None => match source(self, m) {
                Ok(found) => found,
                Err(e) => return Read::Bad(e),
            },
        };
        let event = match self.decoder.decode(system, payload) {
            Ok(event) => event,
            Err(e) => return Read::Bad(e),
        };
        if topic.system.is_some() {
            let key = event.key();
            let to = self.partition_of(&key);
            if to != partition {
                return Read::Elsewhere(Forward {
                    to,
                    key: key.id().to_string(),
                    system,
                    payload: payload.to_vec(),
                });
            }
        }
        Read::Here(crate::model::event::Envelope { origin, event })
    }
}
