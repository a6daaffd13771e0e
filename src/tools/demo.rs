//! `driftwatch demo`: the whole pipeline on an embedded Kafka-protocol
//! broker (librdkafka's mock cluster) with a synthetic organisation, so a
//! new user sees findings in one command.
//!
//! Event time in the demo runs fast: each generated change moves the
//! organisation's clock on by up to ten minutes, so SLAs of hours and days
//! expire within seconds of wall time.

use crate::config::Config;
use crate::kafka::{self, LiveStats, PipelineError};
use crate::model::finding::{Finding, Status};
use crate::tools::generate::Generator;
use rdkafka::mocking::MockCluster;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    pub workers: u64,
    /// Generated lifecycle changes per second of wall time.
    pub rate: u64,
    pub partitions: i32,
}

/// Runs the demo, printing to `out`; returns the pipeline's counters.
pub async fn run(
    cfg: Arc<Config>,
    opts: DemoOptions,
    out: &mut (dyn Write + Send),
) -> Result<Arc<LiveStats>, PipelineError> {
    let mock = MockCluster::new(1)?;
    let t = &cfg.topics;
    for topic in
        t.hr.iter()
            .chain(&t.directory)
            .chain(&t.app)
            .chain([&t.findings, &t.dead_letter])
    {
        mock.create_topic(topic, opts.partitions, 1)?;
    }
    let bootstrap = mock.bootstrap_servers();
    let _ = writeln!(
        out,
        "embedded Kafka-protocol broker (librdkafka mock cluster) at {bootstrap}"
    );
    let _ = writeln!(
        out,
        "follow the findings:  kcat -b {bootstrap} -C -t {} -o beginning",
        t.findings
    );
    // The demo's event time runs fast, so the wall clock must not move it.
    let mut demo_cfg = (*cfg).clone();
    demo_cfg.kafka.bootstrap_servers = bootstrap.clone();
    demo_cfg.kafka.group_id = "driftwatch-demo".into();
    demo_cfg.idle_advance_ms = None;
    let cfg = Arc::new(demo_cfg);
    let stats = Arc::new(LiveStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Bound before anything runs: a port in use stops the demo here.
    if let Some(addr) = cfg.admin_listen {
        let listener = crate::ops::admin::bind(addr)
            .await
            .map_err(PipelineError::Admin)?;
        let _ = writeln!(
            out,
            "admin port:  curl http://{addr}/metrics  (also /readyz, /v1/findings, /v1/workers/ID)"
        );
        let (stats, stop_rx, cfg_admin) = (stats.clone(), stop_rx.clone(), cfg.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::ops::admin::serve(
                listener,
                stats,
                crate::ops::admin::Access::of(&cfg_admin),
                stop_rx,
            )
            .await
            {
                tracing::warn!(%addr, error = %e, "admin port stopped");
            }
        });
    }
    let detector = tokio::spawn(kafka::run(cfg.clone(), stats.clone(), stop_rx));

    let producer = kafka::producer(&cfg)?;
    let gen_opts = GenerateOptions {
        seed: 2026,
        workers: opts.workers,
        rate: opts.rate,
        duration: opts.duration,
        step: Duration::from_secs(600),
        start: demo_start(),
    };
    let started = Instant::now();
    let mut next_report = Duration::from_secs(5);
    let (produced, now) = generate(&cfg, &producer, &gen_opts, |event| match event {
        Progress::Baseline(n) => {
            let _ = writeln!(
                out,
                "loading a synthetic organisation: {} workers, {n} events",
                opts.workers
            );
        }
        Progress::Tick { produced, now } => {
            if started.elapsed() >= next_report {
                next_report += Duration::from_secs(5);
                let _ = writeln!(
                    out,
                    "{}",
                    summary_line(&stats, produced, started.elapsed(), now)
                );
            }
        }
    })
    .await?;
    // Let the detector catch up with what was produced, then stop it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.events.load(Ordering::Relaxed) + stats.dead_letters.load(Ordering::Relaxed)
        < produced
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    match detector.await {
        Ok(r) => r?,
        Err(e) => {
            return Err(PipelineError::Publish {
                topic: cfg.topics.findings.clone(),
                reason: format!("detector task failed: {e}"),
                code: None,
            })
        }
    }
    let _ = writeln!(
        out,
        "{}",
        summary_line(&stats, produced, started.elapsed(), now)
    );
    let _ = write!(out, "{}", tables(&stats));
    Ok(stats)
}

/// What `driftwatch generate` (and the demo) produce.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub seed: u64,
    /// Workers in the organisation (each hired with an account and entitlements).
    pub workers: u64,
    /// Lifecycle changes per second of wall time.
    pub rate: u64,
    /// How long to produce changes after the baseline; Ctrl-C stops earlier.
    pub duration: Duration,
    /// Event time between two changes: up to this much.
    pub step: Duration,
    /// Event time of the first change.
    pub start: crate::model::time::Ts,
}

/// What the generator reports while it runs.
pub enum Progress {
    /// The baseline organisation was produced (events).
    Baseline(usize),
    /// About every 100 ms.
    Tick {
        produced: u64,
        now: crate::model::time::Ts,
    },
}

/// Produces a synthetic organisation, then lifecycle changes with injected
/// drift of every rule at `rate` per second, every record acknowledged.
/// Returns the events produced and the final event time.
pub async fn generate(
    cfg: &Config,
    producer: &crate::kafka::Producer,
    opts: &GenerateOptions,
    mut progress: impl FnMut(Progress),
) -> Result<(u64, crate::model::time::Ts), PipelineError> {
    let mut g = Generator::new(opts.seed, opts.workers, opts.start);
    let baseline = g.baseline();
    kafka::produce_events(producer, cfg, &baseline).await?;
    progress(Progress::Baseline(baseline.len()));
    let mut produced = baseline.len() as u64;
    let started = Instant::now();
    let tick = Duration::from_millis(100);
    let step_ms = opts.step.as_millis().max(1) as i64;
    let mut changes = 0u64;
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    while started.elapsed() < opts.duration {
        // Catch up with the rate even when producing took longer than a tick.
        let due = (started.elapsed().as_secs_f64() * opts.rate as f64) as u64 + 1;
        let mut batch = Vec::new();
        while changes < due {
            batch.extend(g.next_batch(step_ms));
            changes += 1;
        }
        kafka::produce_events(producer, cfg, &batch).await?;
        produced += batch.len() as u64;
        progress(Progress::Tick {
            produced,
            now: g.now(),
        });
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = &mut ctrl_c => break,
        }
    }
    Ok((produced, g.now()))
}

/// The demo's organisation clock starts at the current wall-clock hour; from
/// there on the generator's event time drives everything.
pub fn demo_start() -> crate::model::time::Ts {
    let now = crate::model::time::Ts::wall_clock().millis();
    crate::model::time::Ts(now - now.rem_euclid(crate::model::time::MS_PER_HOUR))
}

fn summary_line(
    stats: &LiveStats,
    produced: u64,
    elapsed: Duration,
    now: crate::model::time::Ts,
) -> String {
    let by = stats.by_rule.lock().expect("stats lock");
    let open: u64 = by
        .iter()
        .filter(|((_, _, s), _)| *s == Status::Open)
        .map(|(_, n)| n)
        .sum();
    format!(
        "[{:>4}s] produced {produced} events, detected over {} events (event time {now}); {} finding transitions, {open} opened; {} dead letters",
        elapsed.as_secs(),
        stats.events.load(Ordering::Relaxed),
        stats.findings.load(Ordering::Relaxed),
        stats.dead_letters.load(Ordering::Relaxed)
    )
}

/// Findings by rule and owner, then the latest opened findings.
pub fn tables(stats: &LiveStats) -> String {
    let mut s = String::new();
    let by = stats.by_rule.lock().expect("stats lock");
    let mut rows: BTreeMap<(String, String), [u64; 3]> = BTreeMap::new();
    for ((rule, role, status), n) in by.iter() {
        let row = rows
            .entry((rule.to_string(), role.to_string()))
            .or_default();
        row[*status as usize] += n;
    }
    s.push_str(&format!(
        "\nfinding transitions published during the run, by rule and owner (open now = opened - resolved):\n{:<30} {:<10} {:>6} {:>9} {:>8} {:>8}\n",
        "rule", "owner", "opened", "escalated", "resolved", "open now"
    ));
    for ((rule, role), [o, e, r]) in &rows {
        let now = o.saturating_sub(*r);
        s.push_str(&format!(
            "{rule:<30} {role:<10} {o:>6} {e:>9} {r:>8} {now:>8}\n"
        ));
    }
    let recent = stats.recent.lock().expect("stats lock");
    let opened: Vec<&Finding> = recent
        .iter()
        .filter(|f| f.status == Status::Open)
        .rev()
        .take(12)
        .collect();
    s.push_str(&format!(
        "\nlatest opened findings:\n{:<28} {:<9} {:<10} {:<18} summary\n",
        "rule", "severity", "worker", "team"
    ));
    for f in opened {
        s.push_str(&format!(
            "{:<28} {:<9} {:<10} {:<18} {}\n",
            f.rule.as_str(),
            f.severity.as_str(),
            f.worker_id.as_deref().unwrap_or("-"),
            f.contributing_owner.team,
            f.summary
        ));
    }
    s
}
