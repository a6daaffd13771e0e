//! `driftwatch demo`: the whole pipeline on an embedded Kafka-protocol
//! broker (librdkafka's mock cluster) with a synthetic organisation, so a
//! new user sees findings in one command.
//!
//! Event time in the demo runs fast: each generated change moves the
//! organisation's clock on by up to ten minutes, so SLAs of hours and days
//! expire within seconds of wall time.

use crate::config::Config;
use crate::finding::{Finding, Status};
use crate::generate::Generator;
use crate::pipeline::{self, LiveStats, PipelineError, PipelineOptions};
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
    let popts = PipelineOptions {
        bootstrap: bootstrap.clone(),
        group_id: "driftwatch-demo".into(),
        librdkafka: BTreeMap::new(),
    };
    let stats = Arc::new(LiveStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let detector = tokio::spawn(pipeline::run(
        cfg.clone(),
        popts.clone(),
        stats.clone(),
        stop_rx,
    ));

    let producer = pipeline::producer(&popts)?;
    let mut g = Generator::new(2026, opts.workers, demo_start());
    let baseline = g.baseline();
    let _ = writeln!(
        out,
        "loading a synthetic organisation: {} workers, {} events",
        opts.workers,
        baseline.len()
    );
    pipeline::produce_events(&producer, &cfg, &baseline).await?;
    let mut produced = baseline.len() as u64;

    let started = Instant::now();
    let mut next_report = Duration::from_secs(5);
    let tick = Duration::from_millis(100);
    let per_tick = (opts.rate / 10).max(1);
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    while started.elapsed() < opts.duration {
        let mut batch = Vec::new();
        for _ in 0..per_tick {
            batch.extend(g.next_batch(10 * 60_000));
        }
        pipeline::produce_events(&producer, &cfg, &batch).await?;
        produced += batch.len() as u64;
        if started.elapsed() >= next_report {
            next_report += Duration::from_secs(5);
            let _ = writeln!(
                out,
                "{}",
                summary_line(&stats, produced, started.elapsed(), g.now())
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = &mut ctrl_c => break,
        }
    }
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
            })
        }
    }
    let _ = writeln!(
        out,
        "{}",
        summary_line(&stats, produced, started.elapsed(), g.now())
    );
    let _ = write!(out, "{}", tables(&stats));
    Ok(stats)
}

/// The demo's organisation clock starts at the current wall-clock hour; from
/// there on the generator's event time drives everything.
fn demo_start() -> crate::time::Ts {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    crate::time::Ts(now - now.rem_euclid(crate::time::MS_PER_HOUR))
}

fn summary_line(
    stats: &LiveStats,
    produced: u64,
    elapsed: Duration,
    now: crate::time::Ts,
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
        "\n{:<30} {:<10} {:>6} {:>9} {:>8}\n",
        "rule", "owner", "open", "escalated", "resolved"
    ));
    for ((rule, role), [o, e, r]) in &rows {
        s.push_str(&format!("{rule:<30} {role:<10} {o:>6} {e:>9} {r:>8}\n"));
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
