//! `driftwatch bench`: the load harness.

use super::{load_config, runtime};
use crate::BenchArgs;
use anyhow::Result;

pub(crate) fn run(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        bootstrap_servers,
        partitions,
        events,
        rate,
        latency_secs,
        memory_workers,
        changelog,
        checkpoint_interval,
        compaction_wait,
        throughput_pairs,
        restore_runs,
        config,
    } = args;
    let checkpoint_interval_ms = checkpoint_interval
        .map(|s| driftwatch::config::parse_duration_ms("--checkpoint-interval", &s))
        .transpose()?
        .map(|ms| ms.max(0) as u64);
    let compaction_wait_ms = compaction_wait
        .map(|s| driftwatch::config::parse_duration_ms("--compaction-wait", &s))
        .transpose()?
        .map_or(0, |ms| ms.max(0) as u64);
    let cfg = load_config(config.as_ref())?;
    let opts = driftwatch::tools::bench::BenchOptions {
        bootstrap: bootstrap_servers,
        partitions,
        events,
        rate,
        latency_secs,
        memory_workers,
        changelog,
        checkpoint_interval_ms,
        compaction_wait_ms,
        throughput_pairs,
        restore_runs,
    };
    let mut stdout = std::io::stdout();
    runtime()?.block_on(driftwatch::tools::bench::run(cfg, opts, &mut stdout))?;
    Ok(())
}
