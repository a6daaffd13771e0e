//! `driftwatch create-topics`: the configured topics that do not exist yet.

use super::{load_config, runtime};
use crate::CreateTopicsArgs;
use anyhow::Result;
use driftwatch::kafka as pipeline;
use driftwatch::kafka::plural;
use std::io::Write;

pub(crate) fn run(args: CreateTopicsArgs) -> Result<()> {
    let CreateTopicsArgs {
        config,
        bootstrap_servers,
        partitions,
        replication_factor,
    } = args;
    let mut cfg = load_config(config.as_ref())?;
    if let Some(b) = bootstrap_servers {
        cfg.kafka.bootstrap_servers = b;
    }
    say!("connecting to {}", cfg.kafka.bootstrap_servers);
    let outcome = runtime()?.block_on(pipeline::create_topics(
        &cfg,
        partitions,
        replication_factor,
    ))?;
    for t in outcome {
        println!(
            "{}: {} ({})",
            t.name,
            if t.created { "created" } else { "exists" },
            plural(t.partitions as u64, "partition")
        );
    }
    Ok(())
}
