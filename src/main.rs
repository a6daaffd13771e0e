//! The `driftwatch` command line: parses arguments and calls the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use driftwatch::config::Config;
use driftwatch::replay;
use driftwatch::time::Ts;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "driftwatch",
    version,
    about = "Streaming identity-drift detector"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay topic dumps (DIR/<topic>.jsonl) and write every finding transition as a JSON line.
    Replay {
        /// Directory of <topic>.jsonl files, one message (or kcat -J envelope) per line.
        #[arg(long)]
        input: PathBuf,
        /// Evaluate the state as of this event time at the end of the input (RFC 3339).
        #[arg(long, value_parser = parse_ts)]
        until: Option<Ts>,
        /// Output file (JSON lines); `-` or absent for standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Configuration file (default: the built-in config/driftwatch.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run generator and detector on an embedded Kafka-protocol broker (librdkafka's mock cluster).
    Demo {
        /// How long to run (e.g. 60s, 5m); Ctrl-C stops earlier.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Workers in the synthetic organisation.
        #[arg(long, default_value_t = 2000)]
        workers: u64,
        /// Lifecycle changes generated per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Partitions per topic.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Configuration file (default: the built-in config/driftwatch.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30s, 5m)"))
}

fn parse_ts(s: &str) -> Result<Ts, String> {
    Ts::parse(s).map_err(|e| e.to_string())
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default_config(),
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Replay {
            input,
            until,
            output,
            config,
        } => {
            let cfg = Arc::new(load_config(config.as_ref())?);
            let mut sink: Box<dyn Write> = match output.as_ref().filter(|p| p.as_os_str() != "-") {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let report = replay::replay_dir(cfg, &input, until, &mut sink)?;
            drop(sink);
            for name in &report.ignored_files {
                eprintln!("ignored {name}: not a configured input topic");
            }
            for bad in &report.bad_lines {
                eprintln!(
                    "{}:{}: skipped: {} ({})",
                    bad.file,
                    bad.line,
                    bad.error,
                    bad.error.error_type()
                );
            }
            let s = &report.stats;
            eprintln!(
                "replayed {} events from {} files in {} partition tasks ({} duplicates ignored); {} finding transitions: {} opened, {} escalated, {} resolved ({} held by storms); {} undecodable lines skipped",
                report.events,
                report.files,
                report.tasks,
                s.duplicates,
                report.findings,
                s.opened,
                s.escalated,
                s.resolved,
                s.held,
                report.bad_lines.len()
            );
        }
        Command::Demo {
            duration,
            workers,
            rate,
            partitions,
            config,
        } => {
            let cfg = Arc::new(load_config(config.as_ref())?);
            let opts = driftwatch::demo::DemoOptions {
                duration,
                workers,
                rate,
                partitions,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let mut stdout = std::io::stdout();
            runtime.block_on(driftwatch::demo::run(cfg, opts, &mut stdout))?;
        }
        Command::CheckConfig { config } => {
            let cfg = Config::load(&config)?;
            println!(
                "{}: valid ({} apps configured, {} of {} rules enabled)",
                config.display(),
                cfg.apps.len(),
                cfg.rules.iter().filter(|r| r.enabled).count(),
                cfg.rules.len()
            );
        }
    }
    Ok(())
}
