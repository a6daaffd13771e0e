//! The bodies of the commands `main.rs` defines, one module each, and
//! what they share: the configuration (whose secrets are kept to redact
//! errors), the runtime, the wait for a signal, lines on stderr and the
//! check that flags fit the mode.

/// A line on stderr. A closed stderr (a pipe whose reader went away) is
/// not an error worth dying or hanging for: the line is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub(crate) mod bench;
pub(crate) mod check_config;
pub(crate) mod create_topics;
pub(crate) mod demo;
pub(crate) mod explain;
pub(crate) mod generate;
pub(crate) mod replay;
pub(crate) mod report;
pub(crate) mod run;

use anyhow::{Context, Result};
use driftwatch::config::Config;
use driftwatch::kafka::plural;
use std::io::Write;
use std::path::PathBuf;

/// Secret values of the loaded config, so that no error ever prints them.
pub(crate) static SECRETS: std::sync::OnceLock<Config> = std::sync::OnceLock::new();

/// The config file (or the built-in one) with DRIFTWATCH_* environment overrides.
pub(crate) fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    let cfg = Config::load_layered(path.map(PathBuf::as_path), std::env::vars())?.0;
    let _ = SECRETS.set(cfg.clone());
    Ok(cfg)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Refuses flags given to a mode they do not apply to.
pub(crate) fn only_with(mode: &str, given: &[(&str, bool)]) -> Result<()> {
    let wrong: Vec<&str> = given.iter().filter(|(_, g)| *g).map(|(f, _)| *f).collect();
    if wrong.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{} only with {mode}; leave {} out or add {mode}",
        wrong.join(", ")
            + if wrong.len() == 1 {
                " applies"
            } else {
                " apply"
            },
        if wrong.len() == 1 { "it" } else { "them" }
    )
}

/// The output file, or standard output for `-` or none.
pub(crate) fn sink(output: Option<&PathBuf>) -> Result<Box<dyn Write>> {
    Ok(match output.filter(|p| p.as_os_str() != "-") {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

/// Says which apps the config names, and warns when none does (a config
/// file with no [apps] section replaces the shipped one's).
pub(crate) fn say_apps(cfg: &Config) {
    if cfg.apps.is_empty() {
        tracing::warn!("no [apps.<app_id>] section configured: every app finding goes to owners.default_app, and no approver of a privileged grant is known (every privileged grant is UNAPPROVED_PRIVILEGED_GRANT); copy the [apps] sections of config/driftwatch.toml into your config");
    } else {
        let names: Vec<&str> = cfg.apps.keys().map(|k| k.as_str()).collect();
        tracing::info!(
            "{} configured: {}",
            plural(names.len() as u64, "app"),
            names.join(", ")
        );
    }
}
