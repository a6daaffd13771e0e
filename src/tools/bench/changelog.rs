//! The state changelog phase of the load harness, on topics of its own
//! holding input generated as for the other phases: a detector keeping the
//! changelog (its throughput against the one without, in the same run),
//! then a restart restoring from the changelog, side by side with the
//! restore from history; then the history grown tenfold for the same
//! workers and accounts (the generator hires no one and opens no account),
//! optionally a wait for the broker to compact the changelog, and the
//! changelog restore again.

use super::usage::{cpu_per_event_us, cpu_seconds, describe_cpu};
use super::STALL;
use crate::config::Config;
use crate::kafka::{self, LiveStats, PipelineError};
use crate::tools::generate::Generator;
use rdkafka::consumer::Consumer;
use rdkafka::mocking::MockCluster;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the history phases measured, to compare with.
pub(super) struct Baseline {
    /// Detector throughput without the changelog, events/s.
    pub(super) throughput: f64,
    /// Restore from history: events re-read and seconds.
    pub(super) restore_events: u64,
    pub(super) restore_secs: f64,
}

/// A restore measured from the metrics of the restarted detector.
struct Restore {
    secs: f64,
    keys: u64,
    records: u64,
    bytes: u64,
    events: u64,
    from_changelog: f64,
}

pub(super) async fn changelog_phase(
    cfg: &Config,
    mock: Option<&MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    opts: &super::BenchOptions,
    produced: u64,
    baseline: &Baseline,
    out: &mut (dyn Write + Send),
) -> Result<(), PipelineError> {
    let partitions = opts.partitions;
    let mut cfg = cfg.clone();
    let id = format!("{}.changelog", cfg.kafka.group_id);
    cfg.topics.hr = vec![format!("{id}.hr")];
    cfg.topics.directory = vec![format!("{id}.dir")];
    cfg.topics.app = vec![format!("{id}.app")];
    cfg.topics.findings = format!("{id}.findings");
    cfg.topics.dead_letter = format!("{id}.dlq");
    cfg.topics.state = format!("{id}.state");
    cfg.kafka.group_id = id;
    cfg.state_changelog = true;
    // A catch-up rewrites a key at most once per checkpoint interval.
    cfg.kafka.commit_interval_ms = 2_000;
    cfg.checkpoint_interval_ms = opts.checkpoint_interval_ms.unwrap_or(2_000);
    match mock {
        Some(m) => {
            for t in kafka::all_topics(&cfg) {
                m.create_topic(&t, partitions, 1)?;
            }
        }
        None => {
            kafka::create_topics(&cfg, partitions, 1).await?;
        }
    }
    let cfg = Arc::new(cfg);
    // The same population and volume as the other phases.
    let producer = kafka::producer(&cfg)?;
    let mut generator = Generator::new(
        7,
        20_000,
        crate::model::time::Ts(crate::model::time::Ts::wall_clock().millis() - 30 * 86_400_000),
    );
    let mut events = generator.baseline();
    while (events.len() as u64) < produced {
        events.extend(generator.next_batch(60_000));
    }
    events.truncate(produced as usize);
    for chunk in events.chunks(50_000) {
        kafka::produce_events(&producer, &cfg, chunk).await?;
    }
    drop(events);

    // The same input, with the changelog kept.
    let (secs, cpu, _) = catch_up(&cfg, produced, false).await?;
    let throughput = produced as f64 / secs.max(1e-9);
    let _ = writeln!(
        out,
        "detector with the state changelog, a checkpoint every {} ms: {produced} events in {secs:.2}s = {throughput:.0} events/s ({:.2} of the rate without it); {}",
        cfg.checkpoint_interval_ms,
        throughput / baseline.throughput,
        describe_cpu(cpu)
    );
    throughput_in_pairs(&cfg, mock, partitions, produced, opts.throughput_pairs, out).await?;
    // Each restart restores the same state; the median one is compared.
    let runs = opts.restore_runs.max(1);
    let mut restores = Vec::with_capacity(runs as usize);
    for run in 1..=runs {
        let r = restore(&cfg).await?;
        report(
            out,
            &format!("restore from the changelog, run {run} of {runs}"),
            &r,
        );
        restores.push(r);
    }
    // A restart that never finished restoring (its detector ended, or ten
    // minutes passed) measured nothing: the median is of the others.
    if restores.iter().any(|r| r.secs > 0.0) {
        restores.retain(|r| r.secs > 0.0);
    }
    restores.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let first = restores.swap_remove(restores.len() / 2);
    if runs > 1 {
        report(out, "restore from the changelog, median run", &first);
    }
    // What librdkafka alone reads of the same records, one consumer.
    let (raw, raw_cpu) = tokio::task::block_in_place(|| {
        super::raw_consume(&cfg, &[&cfg.topics.state], partitions, first.records)
    })?;
    let _ = writeln!(
        out,
        "raw librdkafka read of the same changelog records: {raw:.0} records/s ({:.0} MB/s); {raw_cpu}; the restore read {:.0} records/s, {:.2} of that",
        raw * first.bytes as f64 / first.records.max(1) as f64 / 1e6,
        first.records as f64 / first.secs.max(1e-9),
        first.records as f64 / first.secs.max(1e-9) / raw.max(1e-9)
    );
    let _ = writeln!(
        out,
        "restore from history of the same input: {} events in {:.2}s; the changelog restore took {:.2} of that time ({:.1}x faster)",
        baseline.restore_events,
        baseline.restore_secs,
        first.secs / baseline.restore_secs.max(1e-9),
        baseline.restore_secs / first.secs.max(1e-9)
    );

    // Nine times as much input again, for the same workers and accounts.
    generator.keep_population();
    let mut more = Vec::new();
    while (more.len() as u64) < 9 * produced {
        more.extend(generator.next_batch(60_000));
    }
    more.truncate(9 * produced as usize);
    for chunk in more.chunks(50_000) {
        kafka::produce_events(&producer, &cfg, chunk).await?;
    }
    let added = more.len() as u64;
    drop(more);
    // The mock cluster keeps only the newest ~5 MB of a partition: what it
    // trimmed before the detector came is never read.
    let (_, _, done) = catch_up(&cfg, added, mock.is_some()).await?;
    if done < added {
        let _ = writeln!(
            out,
            "history 10x: the detector applied {done} of the {added} events added (the broker trimmed the rest before it read them)"
        );
    }
    if opts.compaction_wait_ms > 0 {
        tokio::task::block_in_place(|| {
            wait_for_compaction(&cfg, partitions, opts.compaction_wait_ms, out)
        })?;
    }
    let grown = restore(&cfg).await?;
    report(out, "restore from the changelog, history 10x", &grown);
    let _ = writeln!(
        out,
        "changelog restore time with 10x the history: {:.2}x",
        grown.secs / first.secs.max(1e-9)
    );
    Ok(())
}

/// Passes over the same input by detectors of their own groups, without
/// the changelog and with it (each with a state topic of its own), taken
/// in turn and each first in every other pair, so that both see the
/// machine alike: the ratio of each pair's throughputs, and their median.
async fn throughput_in_pairs(
    cfg: &Arc<Config>,
    mock: Option<&MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    partitions: i32,
    produced: u64,
    pairs: u32,
    out: &mut (dyn Write + Send),
) -> Result<(), PipelineError> {
    if pairs == 0 {
        return Ok(());
    }
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        let mut plain = (**cfg).clone();
        plain.kafka.group_id = format!("{}.plain{pair}", cfg.kafka.group_id);
        plain.state_changelog = false;
        let mut kept = (**cfg).clone();
        kept.kafka.group_id = format!("{}.kept{pair}", cfg.kafka.group_id);
        kept.topics.state = format!("{}{pair}", cfg.topics.state);
        match mock {
            Some(m) => m.create_topic(&kept.topics.state, partitions, 1)?,
            None => {
                kafka::create_topics(&kept, partitions, 1).await?;
            }
        }
        // Each goes first in every other pair: neither gains from its turn.
        let (plain, kept) = (Arc::new(plain), Arc::new(kept));
        let (a, b) = if pair % 2 == 0 {
            let a = catch_up(&plain, produced, false).await?;
            (a, catch_up(&kept, produced, false).await?)
        } else {
            let b = catch_up(&kept, produced, false).await?;
            (catch_up(&plain, produced, false).await?, b)
        };
        without.push(a);
        with.push(b);
    }
    let rate = |p: &Pass| produced as f64 / p.0.max(1e-9);
    let ratios: Vec<f64> = without
        .iter()
        .zip(&with)
        .map(|(a, b)| rate(b) / rate(a))
        .collect();
    let list = |v: Vec<String>| v.join(", ");
    let _ = writeln!(
        out,
        "throughput in {pairs} pairs of passes over the same input, without the changelog and with it: {} and {} events/s; with/without {} (median {:.2})",
        list(without.iter().map(|p| format!("{:.0}", rate(p))).collect()),
        list(with.iter().map(|p| format!("{:.0}", rate(p))).collect()),
        list(ratios.iter().map(|r| format!("{r:.2}")).collect()),
        median(&ratios)
    );
    // What the detector's own threads spent on an event (librdkafka's
    // included, the mock broker's left out): the throughput a core gives
    // it where the broker runs on other machines, less shaken by what
    // else these cores run than the time a pass takes.
    let detector = |p: &Pass| p.1.map(|(all, mock)| all - mock);
    let cpu: Option<Vec<(f64, f64)>> = without
        .iter()
        .zip(&with)
        .map(|(a, b)| Some((detector(a)?, detector(b)?)))
        .collect();
    if let Some(cpu) = cpu.filter(|c| c.iter().all(|&(a, b)| a > 0.0 && b > 0.0)) {
        let per_core: Vec<f64> = cpu.iter().map(|(a, b)| a / b).collect();
        let _ = writeln!(
            out,
            "the detector's CPU per event in those pairs, the mock broker's thread left out: {} and {} µs; events per CPU second with/without {} (median {:.2})",
            list(cpu.iter().map(|(a, _)| format!("{a:.2}")).collect()),
            list(cpu.iter().map(|(_, b)| format!("{b:.2}")).collect()),
            list(per_core.iter().map(|r| format!("{r:.2}")).collect()),
            median(&per_core)
        );
    }
    Ok(())
}

/// The median of `values` (not empty).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn report(out: &mut (dyn Write + Send), what: &str, r: &Restore) {
    let _ = writeln!(
        out,
        "{what}: {} keys, {} records, {} bytes read, {} input events re-read, in {:.3}s = {:.0} keys/s ({} of the partitions from the changelog)",
        r.keys,
        r.records,
        r.bytes,
        r.events,
        r.secs,
        r.keys as f64 / r.secs.max(1e-9),
        r.from_changelog
    );
}

/// A detector's pass: seconds, CPU per event (µs, [`cpu_per_event_us`])
/// and events done.
type Pass = (f64, Option<(f64, f64)>, u64);

/// Runs a detector until `n` more events are done (or, when the broker may
/// have trimmed some, until none is done for five seconds), then stops it.
/// Its [`Pass`].
async fn catch_up(cfg: &Arc<Config>, n: u64, trimmed: bool) -> Result<Pass, PipelineError> {
    let stats = Arc::new(LiveStats::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let detector = tokio::spawn(kafka::run(cfg.clone(), stats.clone(), stop_rx));
    let mut first: Option<Instant> = None;
    let mut cpu0 = None;
    let mut progress = (0, Instant::now());
    loop {
        let done =
            stats.confirmed.load(Ordering::Relaxed) + stats.dead_letters.load(Ordering::Relaxed);
        if done > 0 && first.is_none() {
            first = Some(Instant::now());
            cpu0 = cpu_seconds();
        }
        // The count that ends the wait is the one reported.
        if done != progress.0 {
            progress = (done, Instant::now());
        }
        if done >= n || detector.is_finished() {
            break;
        }
        if trimmed && done > 0 && progress.1.elapsed() > Duration::from_secs(5) {
            break;
        } else if progress.1.elapsed() > STALL {
            let _ = stop.send(true);
            let _ = super::finish(detector).await;
            return Err(PipelineError::Stalled(format!(
                "the detector keeping the changelog made no progress for {}s: {done} of {n} events done",
                STALL.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let done = progress.0;
    let cpu = cpu_per_event_us(cpu0, done);
    let _ = stop.send(true);
    super::finish(detector).await?;
    Ok((secs, cpu, done))
}

/// Waits up to `wait_ms` for the broker to compact the state changelog:
/// until its records are fewer than after the catch-up. A broker busy
/// compacting may not answer for a while (Tansu's maintenance holds its
/// storage): a count that fails is tried again until the wait is over.
fn wait_for_compaction(
    cfg: &Config,
    partitions: i32,
    wait_ms: u64,
    out: &mut (dyn Write + Send),
) -> Result<(), PipelineError> {
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let mut written = None;
    loop {
        match changelog_records(cfg, partitions) {
            Ok(n) => match written {
                None => {
                    let _ = writeln!(
                        out,
                        "waiting up to {} s for the broker to compact the changelog ({n} records)",
                        wait_ms / 1000
                    );
                    written = Some(n);
                }
                Some(w) if n < w => {
                    let _ = writeln!(
                        out,
                        "the broker compacted the changelog: {n} records left of {w}"
                    );
                    return Ok(());
                }
                Some(_) => {}
            },
            Err(e) => {
                tracing::info!(error = %e, "counting the changelog's records (the broker may be compacting)")
            }
        }
        if Instant::now() >= deadline {
            let _ = writeln!(
                out,
                "the broker did not compact the changelog within {} s ({} records)",
                wait_ms / 1000,
                written.map_or("uncounted".to_string(), |w| w.to_string())
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(15).min(Duration::from_millis(wait_ms)));
    }
}

/// The records in the state topic, each partition read to its end.
fn changelog_records(cfg: &Config, partitions: i32) -> Result<u64, PipelineError> {
    let consumer = super::plain_consumer(cfg, "count")?;
    let topic = &cfg.topics.state;
    let mut count = 0;
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(30))?;
        if high <= low {
            continue;
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        let mut progress = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                Some(m) => {
                    let m = m?;
                    count += 1;
                    progress = Instant::now();
                    if rdkafka::Message::offset(&m) + 1 >= high {
                        break;
                    }
                }
                None if progress.elapsed() > STALL => {
                    return Err(PipelineError::Client(format!(
                        "counting {topic} [{p}]: no progress for {}s",
                        STALL.as_secs()
                    )))
                }
                None => {}
            }
        }
    }
    Ok(count)
}

/// Starts a detector, measures its restore, stops it.
async fn restore(cfg: &Arc<Config>) -> Result<Restore, PipelineError> {
    let stats = Arc::new(LiveStats::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let detector = tokio::spawn(kafka::run(cfg.clone(), stats.clone(), stop_rx));
    let mut restore_started: Option<Instant> = None;
    let secs = loop {
        let m = &stats.metrics;
        if m.partitions_restoring.get() > 0 && restore_started.is_none() {
            restore_started = Some(Instant::now());
            tracing::debug!("bench: restore started");
        }
        if restore_started.is_some()
            && m.partitions_restoring.get() == 0
            && m.partitions_assigned.get() > 0
        {
            tracing::debug!("bench: restore done");
            // As the detector saw them: this loop sees them up to a few
            // milliseconds late when the cores are busy.
            let (began, ended) = *stats.restores.lock().expect("stats lock");
            break match (began, ended) {
                (Some(b), Some(e)) if e > b => (e - b).as_secs_f64(),
                _ => restore_started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            };
        }
        if detector.is_finished() || started.elapsed() > Duration::from_secs(600) {
            break 0.0;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let m = &stats.metrics;
    let r = Restore {
        secs,
        keys: m.state_keys_restored.get(),
        records: m.state_records_read.get(),
        bytes: m.state_bytes_read.get(),
        events: m.restore_events.get(),
        from_changelog: m.restores.with_label_values(&["changelog"]).get() as f64,
    };
    let _ = stop.send(true);
    super::finish(detector).await?;
    Ok(r)
}
