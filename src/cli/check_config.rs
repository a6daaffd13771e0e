//! `driftwatch check-config`: a configuration validated and printed with
//! secrets redacted.

use crate::CheckConfigArgs;
use anyhow::Result;
use driftwatch::config::Config;
use driftwatch::kafka::plural;

pub(crate) fn run(args: CheckConfigArgs) -> Result<()> {
    let CheckConfigArgs { config } = args;
    let (cfg, table) = Config::load_layered(config.as_deref(), std::env::vars())?;
    print!(
        "{}",
        toml::to_string(&driftwatch::config::redacted(&table))?
    );
    println!(
        "# {}: valid ({} configured, {} of {} rules enabled); keys not shown take their defaults",
        config.as_ref().map_or_else(
            || "built-in config".to_string(),
            |p| p.display().to_string()
        ),
        plural(cfg.apps.len() as u64, "app"),
        cfg.rules.iter().filter(|r| r.enabled).count(),
        cfg.rules.len()
    );
    Ok(())
}
