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
        config,
    } = args;
    let cfg = load_config(config.as_ref())?;
    let opts = driftwatch::tools::bench::BenchOptions {
        bootstrap: bootstrap_servers,
        partitions,
        events,
        rate,
        latency_secs,
        memory_workers,
        changelog,
    };
    let mut stdout = std::io::stdout();
    runtime()?.block_on(driftwatch::tools::bench::run(cfg, opts, &mut stdout))?;
    Ok(())
}
