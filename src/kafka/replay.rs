//! Replay straight from Kafka: the input topics between two record
//! timestamps (`--from`, `--to`: the broker's clock, turned into offsets
//! with offsets-for-times) and, within those, between two event times
//! (`--from-event-time`, `--to-event-time`: occurred_at, the clock the rest
//! of driftwatch speaks), through the same merge and engines as file
//! replay, partition by partition. No consumer group takes part: partitions are assigned
//! directly and nothing is committed, so production offsets are untouched.
//! State starts empty at `--from`; leave it out to rebuild from the
//! beginning of the topics.

use crate::config::Config;
use crate::kafka::{client_config, InputDecoder, Logs, PipelineError, PlainConsumer, Role};
use crate::model::event::{Envelope, Origin, System};
use crate::model::finding::Finding;
use crate::model::time::Ts;
use crate::replay::{replay_streams, ReplayReport, Stream, WorkerHistory};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct KafkaReplayOptions {
    /// First record timestamp included (default: the beginning).
    pub from: Option<Ts>,
    /// First record timestamp excluded (default: the end at start-up).
    pub to: Option<Ts>,
    /// First event time (occurred_at) included.
    pub from_event_time: Option<Ts>,
    /// First event time (occurred_at) excluded.
    pub to_event_time: Option<Ts>,
    /// Evaluate the state as of this event time at the end.
    pub until: Option<Ts>,
    /// Show progress on stderr.
    pub progress: bool,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// The input topics of a cluster, read partition by partition between
/// two offsets each.
struct Reader {
    consumer: PlainConsumer,
    decoder: InputDecoder,
    /// Input topics and their families, sorted by name.
    topics: Vec<(String, System)>,
    partitions: i32,
    partitioner: crate::model::partitioner::Partitioner,
    /// The offsets read of every topic-partition: [start, end).
    ranges: BTreeMap<(String, i32), (i64, i64)>,
    progress: Progress,
    /// Event times (occurred_at) of the events read, lowest and highest.
    seen: Option<(Ts, Ts)>,
}

impl Reader {
    fn new(cfg: Arc<Config>, opts: &KafkaReplayOptions) -> Result<Reader, PipelineError> {
        let consumer: PlainConsumer = crate::kafka::create_client(
            &cfg,
            client_config(&cfg, Role::Consumer)
                .set("group.id", format!("{}.replay", cfg.kafka.group_id))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "false"),
            Logs::default(),
        )?;
        let partitions = crate::kafka::check_topics(consumer.client(), &cfg)?;
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
        Ok(Reader {
            decoder: InputDecoder::from_config(&cfg)?,
            consumer,
            topics,
            partitions,
            partitioner: cfg.kafka.partitioner,
            ranges,
            progress: Progress::new(opts.progress, total),
            seen: None,
        })
    }

    /// Partition `p` of every input topic, decoded, in offset order; the
    /// events outside the event-time window are counted and left out.
    fn read_partition(
        &mut self,
        p: i32,
        opts: &KafkaReplayOptions,
        report: &mut ReplayReport,
    ) -> Result<Vec<Stream>, PipelineError> {
        let mut streams: Vec<Stream> = Vec::new();
        for (topic, system) in &self.topics {
            let (start, end) = self.ranges[&(topic.clone(), p)];
            let name: Arc<str> = topic.as_str().into();
            let topic_id = crate::model::id::Topic::new(topic);
            let mut envs = Vec::new();
            if start < end {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, p, Offset::Offset(start))?;
                self.consumer.assign(&tpl)?;
                let mut next = start;
                let mut last_progress = Instant::now();
                while next < end {
                    let Some(m) = self.consumer.poll(Duration::from_millis(200)) else {
                        if last_progress.elapsed() > TIMEOUT {
                            return Err(PipelineError::Stalled(format!(
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
                    self.progress.tick();
                    let payload = m.payload().unwrap_or_default();
                    self.decoder.ensure_schema(payload)?;
                    match self.decoder.decode(*system, payload) {
                        Ok(event) => {
                            let at = event.occurred_at();
                            self.seen = Some(match self.seen {
                                Some((lo, hi)) => (lo.min(at), hi.max(at)),
                                None => (at, at),
                            });
                            if opts.from_event_time.is_some_and(|f| at < f)
                                || opts.to_event_time.is_some_and(|t| at >= t)
                            {
                                report.outside_window += 1;
                                continue;
                            }
                            if self.partitioner.partition(&event.key(), self.partitions) != p {
                                report.misplaced += 1;
                            }
                            envs.push(Envelope {
                                origin: Origin {
                                    topic: topic_id,
                                    partition: p,
                                    offset: m.offset(),
                                },
                                event,
                            })
                        }
                        Err(_) => report.bad_messages += 1,
                    }
                }
                self.consumer.unassign()?;
            }
            streams.push((name, envs));
        }
        Ok(streams)
    }

    /// What the topics hold, for a window that selected nothing: their
    /// record timestamps (the first and last record of each partition)
    /// and the event times read.
    fn held(&self, opts: &KafkaReplayOptions) -> Result<String, PipelineError> {
        let mut stamps: Option<(i64, i64)> = None;
        let mut records = 0i64;
        for (topic, p) in self.ranges.keys() {
            let (low, high) = self.consumer.fetch_watermarks(topic, *p, TIMEOUT)?;
            records += (high - low).max(0);
            for offset in [low, high - 1] {
                if offset < low || offset >= high {
                    continue;
                }
                if let Some(ts) = self.timestamp_at(topic, *p, offset)? {
                    stamps = Some(match stamps {
                        Some((a, b)) => (a.min(ts), b.max(ts)),
                        None => (ts, ts),
                    });
                }
            }
        }
        let mut parts = vec![format!(
            "the input topics hold {} in all",
            crate::kafka::plural(records as u64, "record")
        )];
        if let Some((a, b)) = stamps {
            parts.push(format!(
                "record timestamps (--from, --to) from {} to {}",
                Ts(a),
                Ts(b)
            ));
        }
        match self.seen {
            Some((lo, hi)) => parts.push(format!(
                "the records read have event times (--from-event-time, --to-event-time, --until) from {lo} to {hi}"
            )),
            None if opts.from.is_some() || opts.to.is_some() => {
                parts.push("no record falls in the --from/--to range".into())
            }
            None => {}
        }
        Ok(parts.join("; "))
    }

    fn timestamp_at(&self, topic: &str, p: i32, offset: i64) -> Result<Option<i64>, PipelineError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(offset))?;
        self.consumer.assign(&tpl)?;
        let started = Instant::now();
        let mut found = None;
        while started.elapsed() < Duration::from_secs(5) {
            if let Some(m) = self.consumer.poll(Duration::from_millis(200)) {
                found = m?.timestamp().to_millis();
                break;
            }
        }
        self.consumer.unassign()?;
        Ok(found)
    }
}

/// Replays the configured input topics from the cluster of `cfg`.
pub fn replay_kafka(
    cfg: Arc<Config>,
    opts: &KafkaReplayOptions,
) -> Result<(Vec<Finding>, ReplayReport), PipelineError> {
    let mut reader = Reader::new(cfg.clone(), opts)?;
    let started = Instant::now();
    let mut findings = Vec::new();
    let mut report = ReplayReport::default();
    if cfg.kafka.route_by == crate::config::RouteBy::Payload {
        // Partitions exchange records: all are read first.
        let mut streams = Vec::new();
        for p in 0..reader.partitions {
            streams.extend(reader.read_partition(p, opts, &mut report)?);
        }
        let (f, r) = replay_streams(cfg.clone(), streams, opts.until, Some(reader.partitions));
        findings = f;
        report.merge(&r);
    } else {
        // Partition by partition: one partition's input in memory at a time.
        for p in 0..reader.partitions {
            let mut read = ReplayReport::default();
            let streams = reader.read_partition(p, opts, &mut read)?;
            let (f, r) = replay_streams(cfg.clone(), streams, opts.until, None);
            findings.extend(f);
            report.merge(&read);
            report.merge(&r);
        }
    }
    reader.progress.done(started);
    report.files = reader.topics.len();
    report.findings = findings.len() as u64;
    if report.events == 0 {
        report.held = Some(reader.held(opts)?);
    }
    Ok((findings, report))
}

/// Replays the whole input topics of the cluster of `cfg` and keeps what
/// concerns one worker (`explain --kafka`).
pub fn worker_history(
    cfg: Arc<Config>,
    until: Option<Ts>,
    worker_id: &str,
) -> Result<WorkerHistory, PipelineError> {
    let opts = KafkaReplayOptions {
        until,
        progress: std::io::stderr().is_terminal(),
        ..KafkaReplayOptions::default()
    };
    let mut reader = Reader::new(cfg.clone(), &opts)?;
    let started = Instant::now();
    let mut streams: Vec<Stream> = Vec::new();
    let mut report = ReplayReport::default();
    for p in 0..reader.partitions {
        streams.extend(reader.read_partition(p, &opts, &mut report)?);
    }
    reader.progress.done(started);
    Ok(crate::replay::worker_history_of_streams(
        cfg,
        streams,
        until,
        Some(reader.partitions),
        worker_id,
    ))
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
            let _ = write!(
                std::io::stderr(),
                "\r{bar} {pct:5.1}%  {} of {} messages  {rate:.0} events/s   ",
                self.read,
                self.total
            );
        } else {
            let _ = writeln!(
                std::io::stderr(),
                "replay: {pct:.1}% ({} of {} messages, {rate:.0} events/s)",
                self.read,
                self.total
            );
        }
    }

    fn done(&self, started: Instant) {
        if self.on {
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            if self.tty {
                let _ = writeln!(std::io::stderr());
            }
            let _ = writeln!(
                std::io::stderr(),
                "replay: read {} messages in {secs:.1}s ({:.0} events/s)",
                self.read,
                self.read as f64 / secs
            );
        }
    }
}
