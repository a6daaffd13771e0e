//! Producing findings, dead letters and generated events.

use super::PipelineError;
use crate::codec::json::DecodeError;
use crate::config::Config;
use crate::model::event::System;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};

/// A record the broker did not take.
pub(crate) fn publish_error(topic: &str, error: KafkaError) -> PipelineError {
    PipelineError::Publish {
        topic: topic.to_string(),
        reason: error.to_string(),
        code: error.rdkafka_error_code(),
    }
}

/// Queues one record, waiting while the producer queue is full
/// (backpressure), and returns its delivery future.
pub(crate) async fn enqueue(
    producer: &super::Producer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: Option<&OwnedHeaders>,
) -> Result<DeliveryFuture, PipelineError> {
    enqueue_with(producer, topic, None, key, payload, headers).await
}

/// Queues one record, to `partition` when given (else the producer's
/// partitioner places it), waiting while the producer queue is full.
pub(crate) async fn enqueue_with(
    producer: &super::Producer,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: Option<&OwnedHeaders>,
) -> Result<DeliveryFuture, PipelineError> {
    loop {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h.clone());
        }
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(publish_error(topic, e)),
        }
    }
}

/// Queues one record to partition `partition` (a tombstone when `payload`
/// is `None`), waiting while the producer queue is full.
pub(crate) async fn enqueue_to(
    producer: &super::Producer,
    topic: &str,
    partition: i32,
    key: &[u8],
    payload: Option<&[u8]>,
) -> Result<DeliveryFuture, PipelineError> {
    loop {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .key(key)
            .partition(partition);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(publish_error(topic, e)),
        }
    }
}

/// Waits for the broker's acknowledgement of one queued record.
pub(crate) async fn confirm(topic: &str, delivery: DeliveryFuture) -> Result<(), PipelineError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(publish_error(topic, e)),
        Err(_) => Err(PipelineError::Publish {
            topic: topic.to_string(),
            reason: "producer dropped the delivery".into(),
            code: None,
        }),
    }
}

/// The headers of a dead letter: why it was refused and where it came from.
pub fn dead_letter_headers(
    error: &DecodeError,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OwnedHeaders {
    let partition = partition.to_string();
    let offset = offset.to_string();
    let reason = error.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(5);
    for (key, value) in [
        ("dw.error.type", error.error_type()),
        ("dw.error.reason", reason.as_str()),
        ("dw.source.topic", topic),
        ("dw.source.partition", partition.as_str()),
        ("dw.source.offset", offset.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}

/// The topic an event of a family is produced to: the family's first topic.
pub fn topic_for(cfg: &Config, system: System) -> &str {
    match system {
        System::Hr => &cfg.topics.hr[0],
        System::Directory => &cfg.topics.directory[0],
        System::App => &cfg.topics.app[0],
    }
}

/// Produces events as JSON to their family's first topic, keyed by
/// correlation key, and waits for every acknowledgement.
pub async fn produce_events(
    producer: &super::Producer,
    cfg: &Config,
    events: &[crate::model::event::Event],
) -> Result<(), PipelineError> {
    let mut pending = Vec::with_capacity(events.len());
    for e in events {
        let topic = topic_for(cfg, e.system());
        let payload = crate::codec::json::to_json(e);
        let key = e.key();
        pending.push((
            topic,
            enqueue(
                producer,
                topic,
                Some(key.id().as_bytes()),
                payload.as_bytes(),
                None,
            )
            .await?,
        ));
    }
    for (topic, delivery) in pending {
        confirm(topic, delivery).await?;
    }
    Ok(())
}

/// Publishes findings (e.g. of a replay) to a topic, keyed by
/// finding_id. Made before the work that produces the findings, so that a
/// missing topic or an unreachable cluster is known at once.
pub struct FindingsPublisher {
    producer: super::Producer,
    topic: String,
}

impl FindingsPublisher {
    /// A producer for `topic`, which must exist.
    pub async fn new(cfg: &Config, topic: &str) -> Result<FindingsPublisher, PipelineError> {
        let producer = super::producer(cfg)?;
        tokio::task::block_in_place(|| {
            super::require_topics(
                rdkafka::producer::Producer::client(&producer),
                cfg,
                &[topic.to_string()],
            )
        })?;
        Ok(FindingsPublisher {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Publishes `findings` and waits for every acknowledgement; returns how many.
    pub async fn publish(
        &self,
        encoding: crate::model::encoding::Encoding,
        findings: &[crate::model::finding::Finding],
    ) -> Result<usize, PipelineError> {
        let topic = &self.topic;
        let encoder = crate::codec::output::FindingEncoder::new(encoding);
        let mut pending = Vec::with_capacity(findings.len());
        for f in findings {
            let value = encoder.encode(f).map_err(|e| PipelineError::Encode {
                topic: topic.clone(),
                reason: format!("finding {}: {e}", f.finding_id),
            })?;
            pending.push(
                enqueue(
                    &self.producer,
                    topic,
                    Some(f.finding_id.as_bytes()),
                    &value,
                    None,
                )
                .await?,
            );
        }
        for d in pending {
            confirm(topic, d).await?;
        }
        Ok(findings.len())
    }
}

/// Logs dead letters at most once a second per partition, with how many
/// were not logged in between.
#[derive(Default)]
pub(crate) struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    pub(crate) fn note(&mut self, topic: &str, offset: i64, error: &DecodeError) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            topic,
            offset,
            error_type = error.error_type(),
            %error,
            suppressed = self.suppressed,
            "message sent to the dead-letter topic"
        );
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}
