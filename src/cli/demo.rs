//! `driftwatch demo`: generator and detector on librdkafka's mock cluster.

use super::{load_config, runtime, say_apps};
use crate::DemoArgs;
use anyhow::Result;
use std::sync::Arc;

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let DemoArgs {
        duration,
        workers,
        rate,
        partitions,
        config,
    } = args;
    let cfg = Arc::new(load_config(config.as_ref())?);
    say_apps(&cfg);
    let opts = driftwatch::tools::demo::DemoOptions {
        duration,
        workers,
        rate,
        partitions,
    };
    let mut stdout = std::io::stdout();
    runtime()?.block_on(driftwatch::tools::demo::run(cfg, opts, &mut stdout))?;
    Ok(())
}
