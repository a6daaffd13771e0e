//! `driftwatch run`: the detector against a Kafka cluster, with its admin
//! port, until SIGTERM or Ctrl-C (a second signal exits at once).

use super::{load_config, runtime, say_apps, wait_for_signal};
use crate::RunArgs;
use anyhow::Result;
use driftwatch::kafka as pipeline;
use driftwatch::kafka::plural;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) fn run(args: RunArgs) -> Result<()> {
    let RunArgs {
        config,
        bootstrap_servers,
        group_id,
    } = args;
    let mut cfg = load_config(config.as_ref())?;
    if let Some(b) = bootstrap_servers {
        cfg.kafka.bootstrap_servers = b;
    }
    if let Some(g) = group_id {
        cfg.kafka.group_id = g;
    }
    let cfg = Arc::new(cfg);
    say_apps(&cfg);
    runtime()?.block_on(async {
        let stats = Arc::new(pipeline::LiveStats::default());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let drain = std::time::Duration::from_millis(cfg.shutdown_timeout_ms);
        // The admin port is bound first: a port in use stops here.
        let admin = match cfg.admin_listen {
            Some(addr) => Some(driftwatch::ops::admin::bind(addr).await?),
            None => None,
        };
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                "stopping: publishing pending findings and committing, within {} s (a second signal exits at once)",
                drain.as_secs()
            );
            let _ = stop_tx.send(true);
            tokio::select! {
                _ = wait_for_signal() => {
                    tracing::warn!("second signal: exiting now");
                    std::process::exit(130);
                }
                _ = tokio::time::sleep(drain) => {
                    tracing::error!("graceful stop took longer than detector.shutdown_timeout; exiting");
                    std::process::exit(1);
                }
            }
        });
        if let Some(listener) = admin {
            let (stats, stop) = (stats.clone(), stop_rx.clone());
            let access = driftwatch::ops::admin::Access::of(&cfg);
            tokio::spawn(async move {
                if let Err(e) = driftwatch::ops::admin::serve(listener, stats, access, stop).await {
                    tracing::error!(error = %e, "admin port failed");
                }
            });
        }
        let result = pipeline::run(cfg, stats.clone(), stop_rx).await;
        tracing::info!(
            "stopped: {} applied, {} re-applied by restores, {} published, {}",
            plural(stats.events.load(Ordering::Relaxed), "event"),
            plural(stats.restored.load(Ordering::Relaxed), "event"),
            plural(stats.findings.load(Ordering::Relaxed), "finding transition"),
            plural(stats.dead_letters.load(Ordering::Relaxed), "dead letter"),
        );
        result.map_err(anyhow::Error::from)
    })?;
    Ok(())
}
