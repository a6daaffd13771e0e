//! `driftwatch bench`: the load harness. Against one broker (the embedded
//! mock cluster by default, or any bootstrap address) it measures, in one
//! run: the raw librdkafka consume rate of the input topics, the detector's
//! sustained throughput over the same topics and their ratio; detection
//! latency (event produced to finding received from the findings topic) at
//! a fixed offered rate for a zero-SLA rule; the state restore rate after a
//! restart; and resident memory per tracked worker with 1 account and 5
//! grants each (and with a second account).

mod changelog;
mod latency;
mod memory;
mod usage;

pub use usage::{cpu_seconds, rss_bytes};

use crate::config::Config;
use crate::kafka::{self, LiveStats, PipelineError};
use crate::model::time::Ts;
use crate::tools::generate::Generator;
use latency::latency;
use memory::memory_phase;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use usage::cpu_per_event;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// `None`: the embedded mock cluster.
    pub bootstrap: Option<String>,
    pub partitions: i32,
    /// Input events for the throughput and restore phases.
    pub events: u64,
    /// Offered rate (events/s) of the latency phase, and its length.
    pub rate: u64,
    pub latency_secs: u64,
    /// Workers of the memory phase (0 skips it).
    pub memory_workers: u64,
    /// Also measure the state changelog: throughput with it, restore from
    /// it beside restore from history, and with ten times the history.
    pub changelog: bool,
    /// How often the detector keeping the changelog writes it; `None`: 2 s.
    pub checkpoint_interval_ms: Option<u64>,
    /// How long to wait for the broker to compact the changelog before
    /// the restore with tenfold history (0: not at all).
    pub compaction_wait_ms: u64,
    /// Pairs of passes over the same input, without the changelog and
    /// with it, to compare throughput.
    pub throughput_pairs: u32,
    /// Restarts restoring from the changelog (at least one); the median
    /// is compared with the restore from history.
    pub restore_runs: u32,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// How long the detector phase may go without progress before the bench
/// gives up on it.
const STALL: Duration = Duration::from_secs(120);

/// Runs every phase, printing results to `out` as they come.
pub async fn run(
    mut cfg: Config,
    opts: BenchOptions,
    out: &mut (dyn Write + Send),
) -> Result<(), PipelineError> {
    if opts.memory_workers > 0 {
        memory_phase(&cfg, opts.memory_workers, out);
    }
    let id = format!("bench-{}", Ts::wall_clock().millis() % 1_000_000_000);
    cfg.topics.hr = vec![format!("{id}.hr")];
    cfg.topics.directory = vec![format!("{id}.dir")];
    cfg.topics.app = vec![format!("{id}.app")];
    cfg.topics.findings = format!("{id}.findings");
    cfg.topics.dead_letter = format!("{id}.dlq");
    // Groups of the run's own, as its topics are: a shared broker may hold
    // other detectors' groups, and another run's.
    cfg.kafka.group_id = id.clone();
    cfg.idle_advance_ms = None;
    cfg.admin_listen = None;
    cfg.kafka.commit_interval_ms = 500;
    // The zero-SLA rule must page per worker: no storm guard in the bench.
    cfg.storm.enabled = false;
    // The mock cluster answers an empty fetch only when fetch.wait.max.ms
    // has passed, even if data arrives meanwhile (Kafka wakes the fetch):
    // without this, latency on the mock measures its long-poll, not us.
    if opts.bootstrap.is_none() {
        cfg.kafka
            .librdkafka
            .entry("fetch.wait.max.ms".into())
            .or_insert_with(|| "5".into());
        // After the last member leaves, the mock cluster waits a session
        // timeout less one second before a new member's join completes
        // (Kafka completes it at once): 44 s at the default, 5 s at this.
        cfg.kafka
            .librdkafka
            .entry("session.timeout.ms".into())
            .or_insert_with(|| "6000".into());
    }
    let mock = match &opts.bootstrap {
        None => {
            let m = MockCluster::new(1)?;
            cfg.kafka.bootstrap_servers = m.bootstrap_servers();
            for t in kafka::all_topics(&cfg) {
                m.create_topic(&t, opts.partitions, 1)?;
            }
            Some(m)
        }
        Some(b) => {
            cfg.kafka.bootstrap_servers = b.clone();
            kafka::create_topics(&cfg, opts.partitions, 1).await?;
            None
        }
    };
    let broker = if mock.is_some() {
        "librdkafka mock cluster"
    } else {
        "broker"
    };
    let _ = writeln!(
        out,
        "broker: {broker} at {}, {} partitions per topic",
        cfg.kafka.bootstrap_servers, opts.partitions
    );

    // Input.
    let producer = kafka::producer(&cfg)?;
    let mut g = Generator::new(7, 20_000, Ts(Ts::wall_clock().millis() - 30 * 86_400_000));
    let mut events = g.baseline();
    while (events.len() as u64) < opts.events {
        events.extend(g.next_batch(60_000));
    }
    events.truncate(opts.events as usize);
    let t = Instant::now();
    for chunk in events.chunks(50_000) {
        kafka::produce_events(&producer, &cfg, chunk).await?;
    }
    let n = events.len() as u64;
    let _ = writeln!(
        out,
        "produced {n} events in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    drop(events);

    // Raw consume rate of the same topics.
    let inputs: Vec<&String> = cfg
        .topics
        .hr
        .iter()
        .chain(&cfg.topics.directory)
        .chain(&cfg.topics.app)
        .collect();
    let (raw, raw_cpu) =
        tokio::task::block_in_place(|| raw_consume(&cfg, &inputs, opts.partitions, n))?;
    let _ = writeln!(out, "raw librdkafka consume: {raw:.0} msgs/s; {raw_cpu}");

    // Detector throughput.
    let cfg = Arc::new(cfg);
    let stats = Arc::new(LiveStats::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let detector = tokio::spawn(kafka::run(cfg.clone(), stats.clone(), stop_rx));
    let mut first: Option<Instant> = None;
    let mut cpu0 = None;
    let mut progress = (0, Instant::now());
    loop {
        // Done means applied and every output acknowledged by the broker.
        let done =
            stats.confirmed.load(Ordering::Relaxed) + stats.dead_letters.load(Ordering::Relaxed);
        if done > 0 && first.is_none() {
            first = Some(Instant::now());
            cpu0 = cpu_seconds();
        }
        if done >= n {
            break;
        }
        if detector.is_finished() {
            break;
        }
        if done != progress.0 {
            progress = (done, Instant::now());
        } else if progress.1.elapsed() > STALL {
            // A bench that hangs measures nothing: say what is known.
            let m = &stats.metrics;
            let _ = stop.send(true);
            let _ = finish(detector).await;
            return Err(PipelineError::Stalled(format!(
                "the detector made no progress for {}s: {done} of {n} events done, {} applied, {} partitions assigned, {} restoring",
                STALL.as_secs(),
                stats.events.load(Ordering::Relaxed),
                m.partitions_assigned.get(),
                m.partitions_restoring.get()
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let throughput = n as f64 / elapsed.max(1e-9);
    // The CPU count starts with the first acknowledged batch, as the clock
    // does: a few batches' work before it is not counted.
    let _ = writeln!(
        out,
        "detector: {n} events in {elapsed:.2}s = {throughput:.0} events/s ({:.2} of the raw consume rate); {} finding transitions; {}",
        throughput / raw,
        stats.findings.load(Ordering::Relaxed),
        cpu_per_event(cpu0, n)
    );
    let _ = stop.send(true);
    finish(detector).await?;

    // Restore after a restart: same group, everything committed.
    let stats = Arc::new(LiveStats::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let detector = tokio::spawn(kafka::run(cfg.clone(), stats.clone(), stop_rx));
    let mut restore_started: Option<Instant> = None;
    let mut cpu0 = None;
    let restore_elapsed = loop {
        let m = &stats.metrics;
        if m.partitions_restoring.get() > 0 && restore_started.is_none() {
            restore_started = Some(Instant::now());
            cpu0 = cpu_seconds();
        }
        if restore_started.is_some()
            && m.partitions_restoring.get() == 0
            && m.partitions_assigned.get() > 0
        {
            break restore_started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        }
        if detector.is_finished() || started.elapsed() > Duration::from_secs(600) {
            break 0.0;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let restored = stats.restored.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "restore: {restored} events in {restore_elapsed:.2}s = {:.0} events/s; {}",
        restored as f64 / restore_elapsed.max(1e-9),
        cpu_per_event(cpu0, restored)
    );
    let baseline = changelog::Baseline {
        throughput,
        restore_events: restored,
        restore_secs: restore_elapsed,
    };

    // Latency at a fixed offered rate, for UNAPPROVED_PRIVILEGED_GRANT (SLA
    // 0), in the steady state: a second after the restore, when its
    // consumers have closed (they close in the background for up to 100
    // ms, and starting at once put that hiccup into p99.9; BENCHMARKS.md).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let latencies = latency(
        &cfg,
        &producer,
        opts.rate,
        opts.latency_secs,
        opts.partitions,
    )
    .await?;
    let mut sorted = latencies;
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let _ = writeln!(
        out,
        "latency at {} events/s offered ({} findings): p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        opts.rate,
        sorted.len(),
        percentile(&sorted, 50.0),
        percentile(&sorted, 99.0),
        percentile(&sorted, 99.9),
        sorted.last().copied().unwrap_or(f64::NAN)
    );
    let _ = stop.send(true);
    finish(detector).await?;

    if opts.changelog {
        changelog::changelog_phase(&cfg, mock.as_ref(), &opts, n, &baseline, out).await?;
    }
    Ok(())
}

async fn finish(
    detector: tokio::task::JoinHandle<Result<(), PipelineError>>,
) -> Result<(), PipelineError> {
    detector
        .await
        .map_err(|e| PipelineError::Client(format!("detector task: {e}")))?
}

/// A consumer of the bench's own (group `<group_id>.<role>`, nothing
/// committed), assigned partitions by hand.
fn plain_consumer(cfg: &Config, role: &str) -> Result<crate::kafka::PlainConsumer, PipelineError> {
    kafka::create_client(
        cfg,
        kafka::client_config(cfg, kafka::Role::Consumer)
            .set("group.id", format!("{}.{role}", cfg.kafka.group_id))
            .set("enable.auto.commit", "false"),
        crate::kafka::Logs::default(),
    )
}

/// Reads every input message once with a plain consumer; messages/s from
/// the first message to the last, and the CPU each took.
fn raw_consume(
    cfg: &Config,
    topics: &[&String],
    partitions: i32,
    n: u64,
) -> Result<(f64, String), PipelineError> {
    let consumer = plain_consumer(cfg, "raw")?;
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..partitions {
            tpl.add_partition_offset(t, p, Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let mut count = 0u64;
    let mut first: Option<Instant> = None;
    let mut cpu0 = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while count < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            std::hint::black_box(m.payload());
            if first.is_none() {
                first = Some(Instant::now());
                cpu0 = cpu_seconds();
            }
            count += 1;
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok((count as f64 / secs.max(1e-9), cpu_per_event(cpu0, count)))
}
