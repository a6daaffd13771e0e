//! `driftwatch explain`: one worker, from a replay of dumps or topics, or
//! from a running instance's live state.

use super::{load_config, only_with};
use crate::ExplainArgs;
use anyhow::Result;
use driftwatch::replay;
use std::sync::Arc;

pub(crate) fn run(args: ExplainArgs) -> Result<()> {
    let ExplainArgs {
        worker_id,
        input,
        kafka,
        bootstrap_servers,
        until,
        admin,
        json,
        config,
    } = args;
    if !kafka {
        only_with(
            "--kafka",
            &[("--bootstrap-servers", bootstrap_servers.is_some())],
        )?;
    }
    if admin.is_some() {
        only_with("--input or --kafka", &[("--until", until.is_some())])?;
    }
    let value = if let Some(dir) = input {
        let cfg = Arc::new(load_config(config.as_ref())?);
        let history = replay::worker_history(cfg, &dir, until, &worker_id)?;
        if history.state.is_none() && history.timeline.is_empty() {
            anyhow::bail!("worker `{worker_id}` does not appear in {}", dir.display());
        }
        driftwatch::tools::explain::history_json(&worker_id, &history)
    } else if kafka {
        let mut cfg = load_config(config.as_ref())?;
        if let Some(b) = bootstrap_servers {
            cfg.kafka.bootstrap_servers = b;
        }
        let cfg = Arc::new(cfg);
        let history = driftwatch::kafka::replay::worker_history(cfg.clone(), until, &worker_id)?;
        if history.state.is_none() && history.timeline.is_empty() {
            anyhow::bail!(
                "worker `{worker_id}` does not appear in the input topics at {}",
                cfg.kafka.bootstrap_servers
            );
        }
        driftwatch::tools::explain::history_json(&worker_id, &history)
    } else if let Some(url) = admin {
        // The instance's /v1 token, when it has one: admin.token of
        // the config (or DRIFTWATCH_ADMIN__TOKEN).
        let cfg = load_config(config.as_ref())?;
        let token = cfg.admin_token.as_ref().map(|t| t.expose().to_string());
        driftwatch::tools::explain::from_instance(&url, &worker_id, token.as_deref())
            .map_err(anyhow::Error::msg)?
    } else {
        anyhow::bail!(
            "say where to look for `{worker_id}`: --input DIR (a replay of topic dumps), --kafka (a replay of the input topics) or --admin URL (a running instance's live state, e.g. http://127.0.0.1:9464)"
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", driftwatch::tools::explain::render_text(&value));
    }
    Ok(())
}
