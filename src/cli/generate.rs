//! `driftwatch generate`: a synthetic organisation and its lifecycle
//! changes produced to the input topics.

use super::{load_config, runtime};
use crate::GenerateArgs;
use anyhow::Result;
use driftwatch::kafka as pipeline;
use driftwatch::kafka::plural;
use std::io::Write;

pub(crate) fn run(args: GenerateArgs) -> Result<()> {
    let GenerateArgs {
        config,
        bootstrap_servers,
        workers,
        rate,
        duration,
        step,
        seed,
        start,
    } = args;
    let mut cfg = load_config(config.as_ref())?;
    if let Some(b) = bootstrap_servers {
        cfg.kafka.bootstrap_servers = b;
    }
    let opts = driftwatch::tools::demo::GenerateOptions {
        seed,
        workers,
        rate,
        duration,
        step,
        start: start.unwrap_or_else(driftwatch::tools::demo::demo_start),
    };
    runtime()?.block_on(async {
        let producer = pipeline::producer(&cfg)?;
        tokio::task::block_in_place(|| {
            pipeline::require_topics(
                rdkafka::producer::Producer::client(&producer),
                &cfg,
                &pipeline::input_topics(&cfg),
            )
        })?;
        let mut last_report = std::time::Instant::now();
        let work = driftwatch::tools::demo::generate(&cfg, &producer, &opts, |p| match p {
            driftwatch::tools::demo::Progress::Baseline(n) => {
                say!(
                    "produced the baseline organisation: {}, {}",
                    plural(workers, "worker"),
                    plural(n as u64, "event")
                )
            }
            driftwatch::tools::demo::Progress::Tick { produced, now } => {
                if last_report.elapsed().as_secs() >= 5 {
                    last_report = std::time::Instant::now();
                    say!("produced {} (event time {now})", plural(produced, "event"));
                }
            }
        });
        // The duration bounds the whole run: acknowledgements that
        // do not come within a grace period after it are an error.
        let grace = std::time::Duration::from_secs(30);
        let (produced, now) = tokio::select! {
            r = work => r?,
            _ = tokio::time::sleep(duration + grace) => {
                return Err(pipeline::PipelineError::Publish {
                    topic: pipeline::input_topics(&cfg).join(", "),
                    reason: format!(
                        "not every event was acknowledged within {} s after --duration; is the cluster at {} still reachable?",
                        grace.as_secs(),
                        cfg.kafka.bootstrap_servers
                    ),
                    code: None,
                });
            }
        };
        say!(
            "produced {} to {}; event time reached {now}",
            plural(produced, "event"),
            cfg.kafka.bootstrap_servers
        );
        Ok::<_, pipeline::PipelineError>(())
    })?;
    Ok(())
}
