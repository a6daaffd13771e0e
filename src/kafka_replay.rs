//! Replay straight from Kafka: the input topics between two record
//! timestamps (`--from`, `--to`, turned into offsets with offsets-for-times)
//! through the same merge and engines as file replay, partition by
//! partition. No consumer group takes part: partitions are assigned
//! directly and nothing is committed, so production offsets are untouched.
//! State starts empty at `--from`; leave it out to rebuild from the
//! beginning of the topics.

use crate::config::Config;
use crate::event::{Envelope, Origin, System};
use crate::finding::Finding;
use crate::pipeline::{client_config, InputDecoder, PipelineError};
use crate::replay::{replay_streams, ReplayReport};
use crate::time::Ts;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct KafkaReplayOptions {
    /// First record timestamp included (default: the beginning).
    pub from: Option<Ts>,
    /// First record timestamp excluded (default: the end at start-up).
    pub to: Option<Ts>,
    /// Evaluate the state as of this event time at the end.
    pub until: Option<Ts>,
    /// Show progress on stderr.
    pub progress: bool,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Replays the configured input topics from the cluster of `cfg`.
pub fn replay_kafka(
    cfg: Arc<Config>,
    opts: &KafkaReplayOptions,
) -> Result<(Vec<Finding>, ReplayReport), PipelineError> {
    let consumer: BaseConsumer = crate::pipeline::create_client(
        &cfg,
        client_config(&cfg)
            .set("group.id", format!("{}.replay", cfg.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false"),
        rdkafka::consumer::DefaultConsumerContext,
    )?;
    let partitions = crate::pipeline::check_topics(consumer.client(), &cfg)?;
    let t = &cfg.topics;
    let mut topics: Vec<(String, System)> = Vec::new();
    for (system, list) in [
        (System::Hr, &t.hr),
        (System::Directory, &t.directory),
        (System::App, &t.app),
    ] {
        topics.extend(list.iter().map(|n| (n.clone(), system)));
    }
    topics.sort();
    // The offset range of every topic-partition.
    let mut ranges: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
    for (topic, _) in &topics {
        for p in 0..partitions {
            let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
            ranges.insert((topic.clone(), p), (low, high));
        }
    }
    for (bound, is_start) in [(opts.from, true), (opts.to, false)] {
        let Some(ts) = bound else { continue };
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in ranges.keys() {
            tpl.add_partition_offset(topic, *p, Offset::Offset(ts.millis()))?;
        }
        let found = consumer.offsets_for_times(tpl, TIMEOUT)?;
        for e in found.elements() {
            let range = ranges
                .get_mut(&(e.topic().to_string(), e.partition()))
                .expect("asked for it");
            // No record at or after the time: the range ends (or starts) at the end.
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => range.1,
            };
            if is_start {
                range.0 = range.0.max(offset);
            } else {
                range.1 = range.1.min(offset);
            }
        }
    }
    let total: i64 = ranges.values().map(|(a, b)| (b - a).max(0)).sum();
    let decoder = InputDecoder::from_config(&cfg)?;
    let started = Instant::now();
    let mut progress = Progress::new(opts.progress, total);
    let mut findings = Vec::new();
    let mut report = ReplayReport::default();
    for p in 0..partitions {
        let mut streams: Vec<(Arc<str>, Vec<Envelope>)> = Vec::new();
        for (topic, system) in &topics {
            let (start, end) = ranges[&(topic.clone(), p)];
            let name: Arc<str> = topic.as_str().into();
            let topic_id = crate::id::Topic::new(topic);
            let mut envs = Vec::new();
            if start < end {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, p, Offset::Offset(start))?;
                consumer.assign(&tpl)?;
                let mut next = start;
                let mut last_progress = Instant::now();
                while next < end {
                    let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                        if last_progress.elapsed() > TIMEOUT {
                            return Err(PipelineError::Topology(format!(
                                "replay of {topic}[{p}] stalled at offset {next} of {end}"
                            )));
                        }
                        continue;
                    };
                    let m = m?;
                    last_progress = Instant::now();
                    next = m.offset() + 1;
                    if m.offset() >= end {
                        break;
                    }
                    progress.tick();
                    let payload = m.payload().unwrap_or_default();
                    decoder.ensure_schema(payload)?;
                    match decoder.decode(*system, payload) {
                        Ok(event) => envs.push(Envelope {
                            origin: Origin {
                                topic: topic_id,
                                partition: p,
                                offset: m.offset(),
                            },
                            event,
                        }),
                        Err(_) => report.bad_messages += 1,
                    }
                }
                consumer.unassign()?;
            }
            streams.push((name, envs));
        }
        let (f, r) = replay_streams(cfg.clone(), streams, opts.until);
        findings.extend(f);
        report.merge(&r);
    }
    progress.done(started);
    report.files = topics.len();
    report.findings = findings.len() as u64;
    Ok((findings, report))
}

/// A one-line progress bar on a terminal, a line every 5 s otherwise.
struct Progress {
    on: bool,
    tty: bool,
    total: i64,
    read: i64,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(on: bool, total: i64) -> Progress {
        Progress {
            on,
            tty: std::io::stderr().is_terminal(),
            total: total.max(1),
            read: 0,
            started: Instant::now(),
            last: Instant::now(),
        }
    }

    fn tick(&mut self) {
        self.read += 1;
        if !self.on {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let rate = self.read as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let pct = 100.0 * self.read as f64 / self.total as f64;
        let width = 30usize;
        let filled = ((pct / 100.0) * width as f64) as usize;
        let bar = format!(
            "[{}{}]",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width))
        );
        if self.tty {
            eprint!(
                "\r{bar} {pct:5.1}%  {} of {} messages  {rate:.0} events/s   ",
                self.read, self.total
            );
        } else {
            eprintln!(
                "replay: {pct:.1}% ({} of {} messages, {rate:.0} events/s)",
                self.read, self.total
            );
        }
    }

    fn done(&self, started: Instant) {
        if self.on {
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            if self.tty {
                eprintln!();
            }
            eprintln!(
                "replay: read {} messages in {secs:.1}s ({:.0} events/s)",
                self.read,
                self.read as f64 / secs
            );
        }
    }
}
