//! Replay of topic dumps: `DIR/<topic>.jsonl`, one message per line in
//! arrival order, through the engine, writing every finding transition as
//! one JSON line.
//!
//! A line is either the message value itself or a `kcat -J` envelope
//! (`{"topic":..,"partition":..,"offset":..,"key":..,"payload":"<value>"}`),
//! which keeps the original partition and offset for the evidence. Plain
//! lines are partition 0 with the line's index as offset.
//!
//! Each partition is one task with its own engine, as in a live deployment.
//! Within a task the files are merged the way a Kafka Streams task picks
//! its next record: the file whose head has the lowest `occurred_at` goes
//! next (ties to the file whose name sorts first), and each file keeps its
//! own order. Nothing here reads the wall clock, so two runs on the same
//! input write the same bytes.

use crate::codec::json::{decode_json, DecodeError};
use crate::config::Config;
use crate::detect::driver::Driver;
use crate::detect::engine::{Engine, EngineStats, Note, To};
use crate::detect::merge::Timed;
use crate::detect::route::{Assembly, ROUND};
use crate::model::event::{Envelope, Origin, System};
use crate::model::finding::Finding;
use crate::model::time::Ts;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One input topic's decoded messages, in arrival order.
pub type Stream = (Arc<str>, Vec<Envelope>);

/// Why a replay could not run at all (bad lines are not errors: they are skipped and counted).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{0} holds no <topic>.jsonl file of a configured input topic (configured: {1})")]
    NoInput(String, String),
    #[error("cannot write output: {0}")]
    Output(io::Error),
}

/// A line that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub file: String,
    pub line: usize,
    pub error: DecodeError,
}

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct ReplayReport {
    pub files: usize,
    pub tasks: usize,
    pub events: u64,
    pub findings: u64,
    pub bad_lines: Vec<BadLine>,
    /// Undecodable messages skipped by a replay from Kafka.
    pub bad_messages: u64,
    pub stats: EngineStats,
    pub ignored_files: Vec<String>,
    /// Events that occurred after `--until`, not applied.
    pub after_until: u64,
    /// Events read from Kafka outside the event-time window, not applied.
    pub outside_window: u64,
    /// Events read from Kafka in another partition than `kafka.partitioner`
    /// gives their correlation key (applied where they sit, as a live run
    /// applies them).
    pub misplaced: u64,
    /// Records went to their correlation key's partition
    /// (`kafka.route_by = "payload"`).
    pub routed: bool,
    /// What a replay from Kafka found in the topics, for a window that
    /// selected nothing.
    pub held: Option<String>,
}

#[derive(Deserialize)]
struct KcatEnvelope {
    partition: i32,
    offset: i64,
    payload: Option<String>,
}

/// One input file's decoded messages, split by partition.
struct Dump {
    topic: Arc<str>,
    by_partition: BTreeMap<i32, VecDeque<Envelope>>,
}

fn system_of(cfg: &Config, topic: &str) -> Option<System> {
    let t = &cfg.topics;
    if t.hr.iter().any(|x| x == topic) {
        Some(System::Hr)
    } else if t.directory.iter().any(|x| x == topic) {
        Some(System::Directory)
    } else if t.app.iter().any(|x| x == topic) {
        Some(System::App)
    } else {
        None
    }
}

fn read_dump(
    path: &Path,
    topic: Arc<str>,
    system: System,
    bad: &mut Vec<BadLine>,
) -> Result<Dump, ReplayError> {
    let io_err = |source| ReplayError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut reader = io::BufReader::new(file);
    let mut by_partition: BTreeMap<i32, VecDeque<Envelope>> = BTreeMap::new();
    let mut buf = Vec::new();
    let mut index = 0usize;
    let topic_id = crate::model::id::Topic::new(&topic);
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io_err)? == 0 {
            break;
        }
        index += 1;
        let line = trim_line(&buf);
        if line.is_empty() {
            continue;
        }
        let envelope = if is_envelope(line) {
            serde_json::from_slice::<KcatEnvelope>(line).ok()
        } else {
            None
        };
        let (partition, offset, payload): (i32, i64, Vec<u8>) = match envelope {
            Some(env) => (
                env.partition,
                env.offset,
                env.payload.unwrap_or_default().into_bytes(),
            ),
            None => (0, index as i64 - 1, line.to_vec()),
        };
        match decode_json(system, &payload) {
            Ok(event) => by_partition
                .entry(partition)
                .or_default()
                .push_back(Envelope {
                    origin: Origin {
                        topic: topic_id,
                        partition,
                        offset,
                    },
                    event,
                }),
            Err(error) => bad.push(BadLine {
                file: name.clone(),
                line: index,
                error,
            }),
        }
    }
    Ok(Dump {
        topic,
        by_partition,
    })
}

impl ReplayReport {
    /// Adds another report's counts to this one.
    /// Counts a partition task's engine, its input done.
    fn add_task(&mut self, engine: &Engine) {
        self.tasks += 1;
        let s = engine.stats();
        self.stats.events += s.events;
        self.stats.duplicates += s.duplicates;
        self.stats.timers_fired += s.timers_fired;
        self.stats.opened += s.opened;
        self.stats.escalated += s.escalated;
        self.stats.resolved += s.resolved;
        self.stats.held += s.held;
    }

    pub fn merge(&mut self, other: &ReplayReport) {
        self.tasks += other.tasks;
        self.events += other.events;
        self.bad_messages += other.bad_messages;
        self.stats.events += other.stats.events;
        self.stats.duplicates += other.stats.duplicates;
        self.stats.timers_fired += other.stats.timers_fired;
        self.stats.opened += other.stats.opened;
        self.stats.escalated += other.stats.escalated;
        self.stats.resolved += other.stats.resolved;
        self.stats.held += other.stats.held;
        self.after_until += other.after_until;
        self.outside_window += other.outside_window;
        self.misplaced += other.misplaced;
        self.routed |= other.routed;
    }

    /// Why a replay applied nothing, and what the input holds.
    pub fn empty_hint(&self) -> String {
        match &self.held {
            Some(held) => format!("no event selected: {held}"),
            None => "no event selected".to_string(),
        }
    }
}

/// A `kcat -J` line carries the message in `payload` beside its coordinates;
/// no input event has a `payload` field.
fn is_envelope(line: &[u8]) -> bool {
    let has = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
    has(b"\"payload\"") && has(b"\"offset\"") && has(b"\"partition\"")
}

fn trim_line(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &b[..end]
}

/// A dump file: its path, topic and family.
pub type InputFile = (PathBuf, String, System);

/// The input files of a dump directory that belong to configured topics,
/// sorted by name; the others are returned apart.
pub fn input_files(cfg: &Config, dir: &Path) -> Result<(Vec<InputFile>, Vec<String>), ReplayError> {
    let rd = std::fs::read_dir(dir).map_err(|source| ReplayError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files = Vec::new();
    let mut ignored = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| ReplayError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(topic) = name.strip_suffix(".jsonl") else {
            continue;
        };
        match system_of(cfg, topic) {
            Some(system) => files.push((path, topic.to_string(), system)),
            None => ignored.push(name),
        }
    }
    files.sort();
    ignored.sort();
    Ok((files, ignored))
}

/// Replays a dump directory. Findings go to `out` as JSON lines; the
/// report says what was read, skipped and found.
pub fn replay_dir(
    cfg: Arc<Config>,
    dir: &Path,
    until: Option<Ts>,
    out: &mut dyn Write,
) -> Result<ReplayReport, ReplayError> {
    replay_dir_as(
        cfg,
        dir,
        until,
        None,
        crate::model::encoding::Encoding::Json,
        out,
    )
}

/// Replays a dump directory, writing findings in `encoding`. With
/// `kafka.route_by = "payload"`, `partitions` is the topics' partition
/// count (default: the highest partition in the dump, plus one).
pub fn replay_dir_as(
    cfg: Arc<Config>,
    dir: &Path,
    until: Option<Ts>,
    partitions: Option<i32>,
    encoding: crate::model::encoding::Encoding,
    out: &mut dyn Write,
) -> Result<ReplayReport, ReplayError> {
    let (dumps, mut report) = read_dir(&cfg, dir)?;
    let findings = replay_dumps(cfg, dumps, until, partitions, &mut report, &mut |_, _| {});
    crate::codec::output::write_findings(encoding, &findings, out)
        .map_err(|e| ReplayError::Output(io::Error::other(e)))?;
    report.findings = findings.len() as u64;
    Ok(report)
}

/// What a replay knows of one worker: the events keyed to it in stream
/// order, its merged state at the end, and its finding transitions.
#[derive(Debug)]
pub struct WorkerHistory {
    pub partition: Option<i32>,
    pub timeline: Vec<Envelope>,
    pub state: Option<serde_json::Value>,
    pub findings: Vec<Finding>,
}

/// Replays a dump directory and keeps what concerns one worker.
pub fn worker_history(
    cfg: Arc<Config>,
    dir: &Path,
    until: Option<Ts>,
    worker_id: &str,
) -> Result<WorkerHistory, ReplayError> {
    let (dumps, mut report) = read_dir(&cfg, dir)?;
    Ok(history_of(cfg, dumps, until, None, &mut report, worker_id))
}

/// Replays already-decoded streams (as [`replay_streams`]) and keeps what
/// concerns one worker.
pub fn worker_history_of_streams(
    cfg: Arc<Config>,
    streams: Vec<Stream>,
    until: Option<Ts>,
    partitions: Option<i32>,
    worker_id: &str,
) -> WorkerHistory {
    let mut report = ReplayReport::default();
    history_of(
        cfg,
        dumps_of(streams),
        until,
        partitions,
        &mut report,
        worker_id,
    )
}

fn history_of(
    cfg: Arc<Config>,
    dumps: Vec<Dump>,
    until: Option<Ts>,
    partitions: Option<i32>,
    report: &mut ReplayReport,
    worker_id: &str,
) -> WorkerHistory {
    let key = crate::model::event::Key::worker(worker_id);
    let mut timeline: Vec<Envelope> = dumps
        .iter()
        .flat_map(|d| d.by_partition.values().flatten())
        .filter(|e| e.event.key() == key)
        .filter(|e| until.is_none_or(|t| e.event.occurred_at() <= t))
        .cloned()
        .collect();
    timeline.sort_by(|a, b| {
        (a.event.occurred_at(), &a.origin.topic, a.origin.offset).cmp(&(
            b.event.occurred_at(),
            &b.origin.topic,
            b.origin.offset,
        ))
    });
    let mut state = None;
    let mut partition = None;
    let findings = replay_dumps(cfg, dumps, until, partitions, report, &mut |p, engine| {
        if let Some(view) = engine
            .store()
            .with_state(&key, |st| crate::ops::query::worker_view(&key, st))
        {
            state = Some(view);
            partition = Some(p);
        }
    });
    WorkerHistory {
        partition,
        timeline,
        state,
        findings: findings
            .into_iter()
            .filter(|f| f.worker_id.as_deref() == Some(worker_id))
            .collect(),
    }
}

/// Reads every configured input file of a dump directory.
fn read_dir(cfg: &Config, dir: &Path) -> Result<(Vec<Dump>, ReplayReport), ReplayError> {
    let (files, ignored) = input_files(cfg, dir)?;
    if files.is_empty() {
        let all: Vec<&str> = cfg
            .topics
            .hr
            .iter()
            .chain(&cfg.topics.directory)
            .chain(&cfg.topics.app)
            .map(String::as_str)
            .collect();
        return Err(ReplayError::NoInput(
            dir.display().to_string(),
            all.join(", "),
        ));
    }
    let mut report = ReplayReport {
        files: files.len(),
        ignored_files: ignored,
        ..ReplayReport::default()
    };
    let mut dumps = Vec::new();
    for (path, topic, system) in &files {
        dumps.push(read_dump(
            path,
            topic.as_str().into(),
            *system,
            &mut report.bad_lines,
        )?);
    }
    Ok((dumps, report))
}

/// Replays already-decoded streams: one list per input topic, each in
/// arrival order; `partitions` as for [`replay_dir_as`].
pub fn replay_streams(
    cfg: Arc<Config>,
    streams: Vec<Stream>,
    until: Option<Ts>,
    partitions: Option<i32>,
) -> (Vec<Finding>, ReplayReport) {
    let mut report = ReplayReport::default();
    let findings = replay_dumps(
        cfg,
        dumps_of(streams),
        until,
        partitions,
        &mut report,
        &mut |_, _| {},
    );
    report.findings = findings.len() as u64;
    (findings, report)
}

fn dumps_of(streams: Vec<Stream>) -> Vec<Dump> {
    streams
        .into_iter()
        .map(|(topic, envs)| {
            let mut by_partition: BTreeMap<i32, VecDeque<Envelope>> = BTreeMap::new();
            for e in envs {
                by_partition
                    .entry(e.origin.partition)
                    .or_default()
                    .push_back(e);
            }
            Dump {
                topic,
                by_partition,
            }
        })
        .collect()
}

/// Replays dumps partition by partition; `inspect` sees each partition's
/// engine when its input is done.
///
/// With `until`, the replay is the state as of that event time: an event
/// that occurred after it is not applied (it was not known then), and at
/// the end of the input stream time moves to `until`, firing the timers due
/// by then.
fn replay_dumps(
    cfg: Arc<Config>,
    mut dumps: Vec<Dump>,
    until: Option<Ts>,
    partitions: Option<i32>,
    report: &mut ReplayReport,
    inspect: &mut dyn FnMut(i32, &Engine),
) -> Vec<Finding> {
    dumps.sort_by(|a, b| a.topic.cmp(&b.topic));
    let seen: std::collections::BTreeSet<i32> = dumps
        .iter()
        .flat_map(|d| d.by_partition.keys().copied())
        .collect();
    // Each partition's records in the order its task applies them.
    let mut tasks: Vec<(i32, Vec<Envelope>)> = Vec::new();
    for &p in &seen {
        let mut merge = crate::detect::merge::Merge::new(dumps.len());
        for (q, d) in dumps.iter_mut().enumerate() {
            for env in d.by_partition.remove(&p).unwrap_or_default() {
                let offset = env.origin.offset;
                merge.push(q, offset, env);
            }
        }
        // A file has nothing more to come: an empty queue never holds the others back.
        tasks.push((
            p,
            std::iter::from_fn(|| merge.pop(|_| true))
                .map(|(_, _, e)| e)
                .collect(),
        ));
    }
    if cfg.kafka.route_by == crate::config::RouteBy::Payload {
        report.routed = true;
        return replay_routed(&cfg, tasks, partitions, until, report, inspect);
    }
    let mut findings = Vec::new();
    for (p, envs) in tasks {
        // One queue already in order: the driver only prefetches and applies.
        let mut driver = Driver::new(Engine::new(cfg.clone()), 1);
        for env in envs {
            let offset = env.origin.offset;
            driver.push(0, offset, env);
        }
        while let Some((_, _, env)) = driver.pop(|_| true) {
            if until.is_some_and(|t| env.event.occurred_at() > t) {
                report.after_until += 1;
                continue;
            }
            report.events += 1;
            driver.apply(env, &mut findings);
        }
        let mut engine = driver.into_engine();
        if let Some(t) = until {
            engine.advance_to(t, &mut findings);
        }
        inspect(p, &engine);
        report.add_task(&engine);
    }
    findings
}

/// A record of a routed replay's partition: an event, or the notes about
/// accounts another partition's engine emitted.
// Events are nearly all of them: not boxed.
#[allow(clippy::large_enum_variant)]
enum Piece {
    Event(Envelope),
    Notes(Vec<Note>),
}

impl Timed for Piece {
    fn order_time(&self) -> Option<Ts> {
        match self {
            Piece::Event(env) => env.order_time(),
            Piece::Notes(_) => None,
        }
    }
}

/// `kafka.route_by = "payload"`: every partition task as a live run has
/// them ([`crate::detect::route`]). Each partition's records (as its task
/// pops them) go to the partition of their correlation key and apply
/// round by round; what a target's engine tells other partitions about
/// accounts while applying round `r` opens round `r + 2` there, as the
/// live task sends it. The partition count is `partitions`, at least the
/// highest partition seen plus one.
fn replay_routed(
    cfg: &Arc<Config>,
    tasks: Vec<(i32, Vec<Envelope>)>,
    partitions: Option<i32>,
    until: Option<Ts>,
    report: &mut ReplayReport,
    inspect: &mut dyn FnMut(i32, &Engine),
) -> Vec<Finding> {
    let highest = tasks.iter().map(|(p, _)| *p).max().unwrap_or(0);
    let n = partitions.unwrap_or(0).max(highest + 1) as usize;
    let mut sources: Vec<VecDeque<Envelope>> = (0..n).map(|_| VecDeque::new()).collect();
    for (p, envs) in tasks {
        sources[p as usize] = envs.into();
    }
    let rounds = sources
        .iter()
        .map(|s| s.len().div_ceil(ROUND as usize))
        .max()
        .unwrap_or(0) as u64;
    let partitioner = cfg.kafka.partitioner;
    let mut engines: Vec<Engine> = (0..n).map(|_| Engine::new(cfg.clone())).collect();
    engines.iter_mut().for_each(Engine::send_notes);
    let mut assemblies: Vec<Assembly<Piece>> = (0..n).map(|_| Assembly::new(n, 0)).collect();
    let mut out: Vec<Vec<Finding>> = (0..n).map(|_| Vec::new()).collect();
    let mut sent = Vec::new();
    let mut r = 0u64;
    while r < rounds || assemblies.iter().any(|a| !a.is_empty()) {
        for (s, source) in sources.iter_mut().enumerate() {
            let round = source.len().min(ROUND as usize);
            for env in source.drain(..round) {
                let t = partitioner.partition(&env.event.key(), n as i32) as usize;
                assemblies[t].push(s, r, Piece::Event(env));
            }
        }
        for t in 0..n {
            for s in 0..n {
                assemblies[t].close(s, r + 1);
            }
            while let Some((_, piece)) = assemblies[t].pop() {
                match piece {
                    Piece::Event(env) => {
                        if until.is_some_and(|u| env.event.occurred_at() > u) {
                            report.after_until += 1;
                            continue;
                        }
                        report.events += 1;
                        engines[t].apply(env, &mut out[t]);
                    }
                    Piece::Notes(notes) => {
                        for note in notes {
                            engines[t].receive(note, &mut out[t]);
                        }
                    }
                }
                sent.extend(
                    engines[t]
                        .take_notes()
                        .into_iter()
                        .map(|(to, n)| (t, to, n)),
                );
            }
        }
        for (from, to, note) in sent.drain(..) {
            let dest: Vec<usize> = match &to {
                To::Every => (0..n).filter(|&d| d != from).collect(),
                To::KeyOf(k) => vec![partitioner.partition(k, n as i32) as usize],
            };
            for d in dest {
                assemblies[d].push_first(from, r + 2, Piece::Notes(vec![note.clone()]));
            }
        }
        r += 1;
    }
    let mut findings = Vec::new();
    for (p, (mut engine, mut found)) in engines.into_iter().zip(out).enumerate() {
        if engine.stats().events == 0 && engine.tracked() == 0 {
            continue;
        }
        if let Some(t) = until {
            engine.advance_to(t, &mut found);
        }
        inspect(p as i32, &engine);
        report.add_task(&engine);
        findings.append(&mut found);
    }
    findings
}
