//! `driftwatch bench`: the load harness. Against one broker (the embedded
//! mock cluster by default, or any bootstrap address) it measures, in one
//! run: the raw librdkafka consume rate of the input topics, the detector's
//! sustained throughput over the same topics and their ratio; detection
//! latency (event produced to finding received from the findings topic) at
//! a fixed offered rate for a zero-SLA rule; the state restore rate after a
//! restart; and resident memory per tracked worker with 1 account and 5
//! grants each (and with a second account).

use crate::config::Config;
use crate::detect::engine::Engine;
use crate::kafka::{self, LiveStats, PipelineError};
use crate::model::event::{
    AccountKind, AppEvent, AppEventType, DirectoryEvent, DirectoryEventType, Envelope, Event,
    HrEvent, HrEventType, Origin, WorkerType,
};
use crate::model::finding::Finding;
use crate::model::time::Ts;
use crate::tools::generate::Generator;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Resident set size of this process, bytes (Linux).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// CPU seconds, user and system, from a `/proc/.../stat` line (Linux).
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after it.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Clock ticks: 100 a second on Linux.
    Some((utime + stime) / 100.0)
}

/// CPU time of this process (threads that ended included), and of the
/// embedded mock broker's thread, in seconds.
pub fn cpu_seconds() -> Option<(f64, f64)> {
    let all = stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let mut mock = 0.0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if stat.contains("(rdk:mock)") {
            mock += stat_cpu_seconds(&stat).unwrap_or(0.0);
        }
    }
    Some((all, mock))
}

/// Microseconds of CPU per event since `cpu0`, for the output line.
fn cpu_per_event(cpu0: Option<(f64, f64)>, events: u64) -> String {
    match (cpu0, cpu_seconds()) {
        (Some((a, ma)), Some((b, mb))) if events > 0 => {
            let per = |s: f64| s * 1e6 / events as f64;
            let (all, mock) = (per(b - a), per(mb - ma));
            if mock > 0.0 {
                format!(
                    "{all:.1} µs of CPU each, {:.1} without the mock broker's thread",
                    all - mock
                )
            } else {
                format!("{all:.1} µs of CPU each")
            }
        }
        _ => "CPU time unknown".into(),
    }
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
    let (raw, raw_cpu) = tokio::task::block_in_place(|| raw_consume(&cfg, opts.partitions, n))?;
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

    Ok(())
}

/// Resident memory per worker of each shape. Runs first, before the
/// broker starts and before anything else has allocated and freed (memory
/// freed earlier would be reused and hide part of the growth), with the
/// configuration as given (storm guard included). Each shape is measured
/// while the engines before it are still alive, so no page freed by one is
/// counted again by the next; all are dropped at the end.
fn memory_phase(cfg: &Config, n: u64, out: &mut (dyn Write + Send)) {
    let cfg = Arc::new(cfg.clone());
    let mut kept = Vec::new();
    for shape in [Shape::DirectoryGroups, Shape::DirectoryAndApp] {
        let before = rss_bytes().unwrap_or(0);
        let started = Instant::now();
        let engine = load_workers(&cfg, n, shape);
        let secs = started.elapsed().as_secs_f64();
        let bytes = rss_bytes().unwrap_or(0).saturating_sub(before) as f64 / n as f64;
        let _ = writeln!(
            out,
            "memory: {n} workers ({} each) in state: {bytes:.0} bytes per worker resident ({secs:.1}s to load)",
            shape.describe()
        );
        kept.push(engine);
    }
}

async fn finish(
    detector: tokio::task::JoinHandle<Result<(), PipelineError>>,
) -> Result<(), PipelineError> {
    detector
        .await
        .map_err(|e| PipelineError::Client(format!("detector task: {e}")))?
}

/// Reads every input message once with a plain consumer; messages/s from
/// the first message to the last, and the CPU each took.
fn raw_consume(cfg: &Config, partitions: i32, n: u64) -> Result<(f64, String), PipelineError> {
    let consumer: crate::kafka::PlainConsumer = kafka::create_client(
        cfg,
        kafka::client_config(cfg, kafka::Role::Consumer)
            .set("group.id", format!("{}.raw", cfg.kafka.group_id))
            .set("enable.auto.commit", "false"),
        crate::kafka::Logs::default(),
    )?;
    let mut tpl = TopicPartitionList::new();
    for t in cfg
        .topics
        .hr
        .iter()
        .chain(&cfg.topics.directory)
        .chain(&cfg.topics.app)
    {
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

/// Offers `rate` events/s for `secs`, one in ten an unapproved privileged
/// grant (a zero-SLA finding); returns milliseconds from produce to the
/// finding read back from the findings topic.
async fn latency(
    cfg: &Arc<Config>,
    producer: &crate::kafka::Producer,
    rate: u64,
    secs: u64,
    partitions: i32,
) -> Result<Vec<f64>, PipelineError> {
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let reader = {
        let consumer: crate::kafka::PlainConsumer = kafka::create_client(
            cfg,
            kafka::client_config(cfg, kafka::Role::Consumer)
                .set("group.id", format!("{}.latency", cfg.kafka.group_id))
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "5"),
            crate::kafka::Logs::default(),
        )?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&cfg.topics.findings, p, Offset::End)?;
        }
        consumer.assign(&tpl)?;
        let (sent, latencies) = (sent.clone(), latencies.clone());
        std::thread::spawn(move || {
            while stop_rx.try_recv().is_err() {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let at = Instant::now();
                let Ok(f) = serde_json::from_slice::<Finding>(m.payload().unwrap_or_default())
                else {
                    continue;
                };
                if f.status != crate::model::finding::Status::Open {
                    continue;
                }
                let sent = sent.lock().expect("sent lock");
                if let Some(t) = f.evidence.iter().find_map(|e| sent.get(&*e.event_id)) {
                    latencies
                        .lock()
                        .expect("latency lock")
                        .push(at.duration_since(*t).as_secs_f64() * 1000.0);
                }
            }
        })
    };
    // Give the reader its assignment before offering load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let mut offered = 0u64;
    let mut pending = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while offered < due {
            offered += 1;
            let w = offered % 20_000;
            let wid = Generator::worker_id(w);
            let now = Ts::wall_clock();
            let event_id = format!("lat-{offered}");
            let event = if offered % 10 == 0 {
                Event::App(AppEvent {
                    event_id: event_id.clone().into(),
                    event_type: AppEventType::EntitlementGranted,
                    occurred_at: now,
                    app_id: "sap".into(),
                    account_id: format!("sap-{w:06}").into(),
                    worker_id: Some(wid.into()),
                    account_kind: AccountKind::Human,
                    owner_worker_id: None,
                    entitlement: Some(format!("SAP_ALL_{offered}").into()),
                    privileged: true,
                    approved_by: None,
                    approval_ref: None,
                })
            } else {
                Event::Directory(DirectoryEvent {
                    event_id: event_id.clone().into(),
                    event_type: DirectoryEventType::AttributesChanged,
                    occurred_at: now,
                    directory: "entra".into(),
                    account_id: format!("u{w:06}").into(),
                    worker_id: Some(wid.into()),
                    account_kind: AccountKind::Human,
                    owner_worker_id: None,
                    enabled: None,
                    email: None,
                    department: None,
                    title: Some(format!("t{}", offered % 7).into()),
                    manager_id: None,
                    group: None,
                    privileged: false,
                    approved_by: None,
                    approval_ref: None,
                    actor: None,
                })
            };
            let topic = kafka::topic_for(cfg, event.system()).to_string();
            let payload = crate::codec::json::to_json(&event);
            let key = event.key();
            if offered % 10 == 0 {
                sent.lock()
                    .expect("sent lock")
                    .insert(event_id, Instant::now());
            }
            let record = rdkafka::producer::FutureRecord::to(&topic)
                .key(key.id().as_bytes())
                .payload(payload.as_bytes());
            match producer.send_result(record) {
                Ok(d) => pending.push(d),
                Err((e, _)) => return Err(PipelineError::Kafka(e)),
            }
        }
        if pending.len() > 10_000 {
            for d in pending.drain(..) {
                let _ = d.await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for d in pending.drain(..) {
        let _ = d.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(());
    let _ = reader.join();
    let v = latencies.lock().expect("latency lock").clone();
    Ok(v)
}

/// What each worker of the memory phase holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// A hire and a directory account with 5 group memberships: one
    /// provisioned worker with one account and five grants.
    DirectoryGroups,
    /// A hire, a directory account, and an app account with 5
    /// entitlements.
    DirectoryAndApp,
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Shape::DirectoryGroups => "an HR record and 1 directory account with 5 groups",
            Shape::DirectoryAndApp => {
                "an HR record, 1 directory account, 1 app account with 5 entitlements"
            }
        }
    }
}

const GRANTS: [&str; 5] = ["Reports", "Leads", "Cases", "Quotes", "Orders"];

/// Loads `workers` workers of `shape` into one engine, one worker a second
/// of stream time (a million workers over eleven days: the storm guard's
/// window holds a few minutes of onsets, as it would in a live org, not a
/// burst of all of them).
fn load_workers(cfg: &Arc<Config>, workers: u64, shape: Shape) -> Engine {
    let mut engine = Engine::new(cfg.clone());
    let topic = crate::model::id::Topic::new("mem");
    let mut out = Vec::new();
    let t0 = Ts::parse("2026-01-01T00:00:00Z").expect("valid");
    let mut offset = 0i64;
    let mut apply = |engine: &mut Engine, event: Event| {
        offset += 1;
        let origin = Origin {
            topic,
            partition: 0,
            offset,
        };
        engine.apply(Envelope { origin, event }, &mut out);
        out.clear();
    };
    let directory = |w: u64, wid: &str, at: Ts, n: usize| {
        let (event_type, group) = match n {
            0 => (DirectoryEventType::AccountCreated, None),
            g => (DirectoryEventType::GroupAdded, Some(GRANTS[g - 1].into())),
        };
        Event::Directory(DirectoryEvent {
            event_id: format!("m-d-{w}-{n}").into(),
            event_type,
            occurred_at: at,
            directory: "entra".into(),
            account_id: format!("u{w:07}").into(),
            worker_id: Some(wid.into()),
            account_kind: AccountKind::Human,
            owner_worker_id: None,
            enabled: Some(true),
            email: None,
            department: (n == 0).then(|| "Sales".into()),
            title: None,
            manager_id: None,
            group,
            privileged: false,
            approved_by: None,
            approval_ref: None,
            actor: None,
        })
    };
    for w in 0..workers {
        let wid = Generator::worker_id(w);
        let at = t0.plus(w as i64 * 1_000);
        let hire = Event::Hr(HrEvent {
            event_id: format!("m-h-{w}").into(),
            event_type: HrEventType::Hire,
            occurred_at: at,
            effective_at: at,
            source_system: "workday".into(),
            worker_id: wid.clone().into(),
            worker_type: WorkerType::Employee,
            email: None,
            department: Some("Sales".into()),
            title: None,
            manager_id: None,
            cost_center: None,
            contract_end: None,
        });
        apply(&mut engine, hire);
        apply(&mut engine, directory(w, &wid, at, 0));
        for (g, grant) in GRANTS.iter().enumerate() {
            let event = match shape {
                Shape::DirectoryGroups => directory(w, &wid, at, g + 1),
                Shape::DirectoryAndApp => Event::App(AppEvent {
                    event_id: format!("m-a-{w}-{g}").into(),
                    event_type: AppEventType::EntitlementGranted,
                    occurred_at: at,
                    app_id: "salesforce".into(),
                    account_id: format!("salesforce-{w:07}").into(),
                    worker_id: Some(wid.clone().into()),
                    account_kind: AccountKind::Human,
                    owner_worker_id: None,
                    entitlement: Some((*grant).into()),
                    privileged: false,
                    approved_by: None,
                    approval_ref: None,
                }),
            };
            apply(&mut engine, event);
        }
    }
    engine
}
