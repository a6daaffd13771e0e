//! `report --kafka`: the findings topic read whole, every partition from
//! its beginning to its end at start. No consumer group takes part:
//! partitions are assigned directly and nothing is committed. The period
//! (`--from`, `--to`) is chosen on the transitions' event time afterwards,
//! since a finding open at the end of the period may have opened long
//! before it.
//!
//! Messages in the contract's JSON are read, and Confluent-framed Avro
//! against `schemas/finding.avsc`; anything else (OCSF) is counted and
//! left out.

use crate::codec::avro;
use crate::config::Config;
use crate::kafka::{client_config, Logs, PipelineError, PlainConsumer, Role};
use crate::model::finding::Finding;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

/// What reading the topic found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicRead {
    pub topic: String,
    pub partitions: i32,
    /// Records read.
    pub records: u64,
    /// Records that are not a finding in JSON or Avro.
    pub undecodable: u64,
}

/// Decodes one message of the findings topic.
pub fn decode(payload: &[u8]) -> Result<Finding, String> {
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(payload).map_err(|e| e.to_string()),
        Some(0) => {
            let schema = avro::schema(avro::FINDING_SCHEMA);
            let (_, mut datum) = avro::unframe(payload).map_err(|e| e.to_string())?;
            let value = apache_avro::from_avro_datum(&schema, &mut datum, None)
                .map_err(|e| e.to_string())?;
            avro::decode_finding(&value).map_err(|e| e.to_string())
        }
        _ => Err("neither a JSON finding nor a Confluent-framed Avro one".into()),
    }
}

/// Reads the findings topic of `cfg` from the beginning to its end at
/// start, handing each decoded transition to `each`.
pub fn read_findings(
    cfg: &Config,
    mut each: impl FnMut(Finding),
) -> Result<TopicRead, PipelineError> {
    let topic = cfg.topics.findings.clone();
    let consumer: PlainConsumer = crate::kafka::create_client(
        cfg,
        client_config(cfg, Role::Consumer)
            .set("group.id", format!("{}.report", cfg.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false"),
        Logs::default(),
    )?;
    let md = crate::kafka::client::metadata(consumer.client(), cfg)?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len() as i32)
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            PipelineError::Topics(format!(
                "the findings topic {topic} (topics.findings) does not exist at {}",
                cfg.kafka.bootstrap_servers
            ))
        })?;
    let mut read = TopicRead {
        topic: topic.clone(),
        partitions,
        ..TopicRead::default()
    };
    // The end of each partition at start: what is published later is
    // not waited for.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, p, TIMEOUT)?;
        if low < high {
            ends.insert(p, high);
            tpl.add_partition_offset(&topic, p, Offset::Offset(low))?;
        }
    }
    if ends.is_empty() {
        return Ok(read);
    }
    consumer.assign(&tpl)?;
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            if last_progress.elapsed() > TIMEOUT {
                let left: Vec<String> = ends.keys().map(|p| format!("{topic}[{p}]")).collect();
                return Err(PipelineError::Stalled(format!(
                    "reading {} stalled: nothing for {} s",
                    left.join(", "),
                    TIMEOUT.as_secs()
                )));
            }
            continue;
        };
        let m = m?;
        last_progress = Instant::now();
        let p = m.partition();
        let Some(&end) = ends.get(&p) else { continue };
        if m.offset() >= end {
            ends.remove(&p);
            continue;
        }
        read.records += 1;
        match decode(m.payload().unwrap_or_default()) {
            Ok(t) => each(t),
            Err(reason) => {
                if read.undecodable == 0 {
                    tracing::warn!(
                        partition = p,
                        offset = m.offset(),
                        %reason,
                        "a record of the findings topic is not a finding in JSON or Avro; left out (more are counted, not logged)"
                    );
                }
                read.undecodable += 1;
            }
        }
        if m.offset() + 1 >= end {
            ends.remove(&p);
        }
    }
    consumer.unassign()?;
    Ok(read)
}
