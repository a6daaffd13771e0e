//! The `driftwatch` command line: parses arguments and calls the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use driftwatch::config::Config;
use driftwatch::time::Ts;
use driftwatch::{pipeline, replay};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "driftwatch",
    version,
    about = "Streaming identity-drift detector"
)]
struct Cli {
    /// Log format: human (default) or json. Also DRIFTWATCH_LOG_FORMAT; the
    /// level comes from RUST_LOG (default info).
    #[arg(long, global = true, value_parser = ["human", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay topic dumps (DIR/<topic>.jsonl) and write every finding transition as a JSON line.
    Replay {
        /// Directory of <topic>.jsonl files, one message (or kcat -J envelope) per line.
        #[arg(long, required_unless_present = "kafka", conflicts_with = "kafka")]
        input: Option<PathBuf>,
        /// Read the input topics from Kafka instead (kafka.bootstrap_servers); no consumer group commits anything.
        #[arg(long)]
        kafka: bool,
        /// Overrides kafka.bootstrap_servers (with --kafka).
        #[arg(long, requires = "kafka")]
        bootstrap_servers: Option<String>,
        /// First record timestamp replayed (RFC 3339; with --kafka; state starts empty there).
        #[arg(long, value_parser = parse_ts, requires = "kafka")]
        from: Option<Ts>,
        /// First record timestamp not replayed (RFC 3339; with --kafka; default: the end at start).
        #[arg(long, value_parser = parse_ts, requires = "kafka")]
        to: Option<Ts>,
        /// Publish the findings to this topic (keyed by finding_id) instead of writing them out.
        #[arg(long, requires = "kafka")]
        to_topic: Option<String>,
        /// Progress on stderr (default: when stderr is a terminal).
        #[arg(long)]
        progress: bool,
        /// Evaluate the state as of this event time at the end of the input (RFC 3339).
        #[arg(long, value_parser = parse_ts)]
        until: Option<Ts>,
        /// Output file (JSON lines); `-` or absent for standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Configuration file (default: the built-in config/driftwatch.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// json (the contract, one per line), ocsf (OCSF Detection Finding JSON lines) or avro (an Avro object container file of schemas/finding.avsc).
        #[arg(long, default_value = "json", value_parser = ["json", "ocsf", "avro"])]
        format: String,
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
    /// Run the detector against a Kafka cluster until SIGTERM or Ctrl-C.
    Run {
        /// Configuration file (default: the built-in config/driftwatch.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides kafka.bootstrap_servers.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Overrides kafka.group_id.
        #[arg(long)]
        group_id: Option<String>,
    },
    /// Produce a synthetic organisation and a stream of lifecycle changes with injected drift to a Kafka cluster.
    Generate {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides kafka.bootstrap_servers.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Workers in the synthetic organisation.
        #[arg(long, default_value_t = 2000)]
        workers: u64,
        /// Lifecycle changes per second of wall time.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// How long to produce changes (e.g. 60s, 1h); Ctrl-C stops earlier.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Event time between two changes: up to this much (e.g. 10m makes hours of event time pass in seconds).
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        step: std::time::Duration,
        /// Seed of the generator: the same seed produces the same events.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Event time of the first change (RFC 3339; default: the current hour).
        #[arg(long, value_parser = parse_ts)]
        start: Option<Ts>,
    },
    /// The load harness: raw consume rate vs detector throughput, latency at a fixed rate, restore rate, memory per worker.
    Bench {
        /// A broker to measure (default: the embedded mock cluster). Topics with a bench- prefix are created.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Input events for the throughput and restore phases.
        #[arg(long, default_value_t = 300_000)]
        events: u64,
        /// Offered rate of the latency phase (events/s).
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// Length of the latency phase (seconds).
        #[arg(long, default_value_t = 20)]
        latency_secs: u64,
        /// Workers of the memory phase (0 skips it).
        #[arg(long, default_value_t = 1_000_000)]
        memory_workers: u64,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Create the configured input, findings and dead-letter topics that do not exist yet.
    CreateTopics {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides kafka.bootstrap_servers.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Partitions per topic (the same for every input topic: they must be co-partitioned).
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
    },
    /// Validate a configuration file.
    /// One worker: timeline across HR, directory and app events, merged state, and every finding with owners, deadlines and evidence.
    Explain {
        /// The worker_id.
        worker_id: String,
        /// Replay this dump directory (as `replay --input`).
        #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
        input: Option<PathBuf>,
        /// Evaluate the state as of this event time at the end of the input (RFC 3339).
        #[arg(long, value_parser = parse_ts)]
        until: Option<Ts>,
        /// Ask a running instance instead: its admin URL (e.g. http://127.0.0.1:9464).
        #[arg(long)]
        admin: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Configuration file (default: the built-in config/driftwatch.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration (file plus DRIFTWATCH_* environment overrides) and print the effective config with secrets redacted.
    CheckConfig {
        /// Configuration file (default: the built-in config/driftwatch.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30s, 5m)"))
}

fn parse_ts(s: &str) -> Result<Ts, String> {
    Ts::parse(s).map_err(|e| e.to_string())
}

/// The config file (or the built-in one) with DRIFTWATCH_* environment overrides.
fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    let cfg = Config::load_layered(path.map(PathBuf::as_path), std::env::vars())?.0;
    let _ = SECRETS.set(cfg.clone());
    Ok(cfg)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn wait_for_signal() {
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

/// Secret values of the loaded config, so that no error ever prints them.
static SECRETS: std::sync::OnceLock<Config> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            let text = SECRETS.get().map_or(text.clone(), |c| c.redact(&text));
            eprintln!("error: {text}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    // The demo's screen is its summary and tables; its logs stay quiet unless asked.
    let default_level = match cli.command {
        Command::Demo { .. } | Command::Bench { .. } => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    let format = cli
        .log_format
        .clone()
        .or_else(|| std::env::var("DRIFTWATCH_LOG_FORMAT").ok());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.as_deref() {
        Some("json") => logs.json().with_current_span(true).init(),
        Some("human") | None => logs.init(),
        Some(other) => anyhow::bail!("DRIFTWATCH_LOG_FORMAT `{other}`: use human or json"),
    }
    match cli.command {
        Command::Replay {
            input,
            kafka,
            bootstrap_servers,
            from,
            to,
            to_topic,
            progress,
            until,
            output,
            config,
            format,
        } => {
            let mut cfg = load_config(config.as_ref())?;
            if let Some(b) = bootstrap_servers {
                cfg.kafka.bootstrap_servers = b;
            }
            let cfg = Arc::new(cfg);
            let encoding = match (format.as_str(), cfg.output) {
                // On a topic, Avro carries the configured schema id.
                ("avro", enc @ driftwatch::output::Encoding::Avro { .. }) => enc,
                (name, _) => {
                    driftwatch::output::Encoding::parse(name, None).map_err(anyhow::Error::msg)?
                }
            };
            if kafka {
                let opts = driftwatch::kafka_replay::KafkaReplayOptions {
                    from,
                    to,
                    until,
                    progress: progress || std::io::IsTerminal::is_terminal(&std::io::stderr()),
                };
                let (findings, report) =
                    driftwatch::kafka_replay::replay_kafka(cfg.clone(), &opts)?;
                match to_topic {
                    Some(topic) => {
                        let n = runtime()?.block_on(pipeline::publish_findings_to(
                            &cfg, &topic, encoding, &findings,
                        ))?;
                        eprintln!("published {n} finding transitions to {topic}");
                    }
                    None => {
                        let mut sink: Box<dyn Write> =
                            match output.as_ref().filter(|p| p.as_os_str() != "-") {
                                Some(p) => Box::new(std::io::BufWriter::new(
                                    std::fs::File::create(p).with_context(|| {
                                        format!("cannot create {}", p.display())
                                    })?,
                                )),
                                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                            };
                        driftwatch::output::write_findings(encoding, &findings, &mut sink)
                            .map_err(anyhow::Error::msg)?;
                    }
                }
                let s = &report.stats;
                eprintln!(
                    "replayed {} events from {} topics in {} partition tasks ({} duplicates ignored); {} finding transitions: {} opened, {} escalated, {} resolved ({} held by storms); {} undecodable messages skipped",
                    report.events, report.files, report.tasks, s.duplicates, report.findings, s.opened, s.escalated, s.resolved, s.held, report.bad_messages
                );
                return Ok(());
            }
            let input = input.expect("clap requires --input without --kafka");
            let mut sink: Box<dyn Write> = match output.as_ref().filter(|p| p.as_os_str() != "-") {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let report = replay::replay_dir_as(cfg, &input, until, encoding, &mut sink)?;
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
            let mut stdout = std::io::stdout();
            runtime()?.block_on(driftwatch::demo::run(cfg, opts, &mut stdout))?;
        }
        Command::Run {
            config,
            bootstrap_servers,
            group_id,
        } => {
            let mut cfg = load_config(config.as_ref())?;
            if let Some(b) = bootstrap_servers {
                cfg.kafka.bootstrap_servers = b;
            }
            if let Some(g) = group_id {
                cfg.kafka.group_id = g;
            }
            let cfg = Arc::new(cfg);
            runtime()?.block_on(async {
                let stats = Arc::new(pipeline::LiveStats::default());
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let drain = std::time::Duration::from_millis(cfg.shutdown_timeout_ms);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!(
                        timeout_s = drain.as_secs(),
                        "stopping: publishing pending findings and committing (a second signal exits at once)"
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
                if let Some(addr) = cfg.admin_listen {
                    let (stats, stop) = (stats.clone(), stop_rx.clone());
                    tokio::spawn(async move {
                        if let Err(e) = driftwatch::admin::serve(addr, stats, stop).await {
                            tracing::error!(%addr, error = %e, "admin port failed (set admin.listen, or `off`)");
                        }
                    });
                }
                let result = pipeline::run(cfg, stats.clone(), stop_rx).await;
                tracing::info!(
                    events = stats.events.load(Ordering::Relaxed),
                    restored = stats.restored.load(Ordering::Relaxed),
                    findings = stats.findings.load(Ordering::Relaxed),
                    dead_letters = stats.dead_letters.load(Ordering::Relaxed),
                    "stopped"
                );
                result
            })?;
        }
        Command::Generate {
            config,
            bootstrap_servers,
            workers,
            rate,
            duration,
            step,
            seed,
            start,
        } => {
            let mut cfg = load_config(config.as_ref())?;
            if let Some(b) = bootstrap_servers {
                cfg.kafka.bootstrap_servers = b;
            }
            let opts = driftwatch::demo::GenerateOptions {
                seed,
                workers,
                rate,
                duration,
                step,
                start: start.unwrap_or_else(driftwatch::demo::demo_start),
            };
            runtime()?.block_on(async {
                let producer = pipeline::producer(&cfg)?;
                let mut last_report = std::time::Instant::now();
                let (produced, now) =
                    driftwatch::demo::generate(&cfg, &producer, &opts, |p| match p {
                        driftwatch::demo::Progress::Baseline(n) => {
                            eprintln!(
                                "produced the baseline organisation: {workers} workers, {n} events"
                            )
                        }
                        driftwatch::demo::Progress::Tick { produced, now } => {
                            if last_report.elapsed().as_secs() >= 5 {
                                last_report = std::time::Instant::now();
                                eprintln!("produced {produced} events (event time {now})");
                            }
                        }
                    })
                    .await?;
                eprintln!(
                    "produced {produced} events to {}; event time reached {now}",
                    cfg.kafka.bootstrap_servers
                );
                Ok::<_, pipeline::PipelineError>(())
            })?;
        }
        Command::Bench {
            bootstrap_servers,
            partitions,
            events,
            rate,
            latency_secs,
            memory_workers,
            config,
        } => {
            let cfg = load_config(config.as_ref())?;
            let opts = driftwatch::loadtest::BenchOptions {
                bootstrap: bootstrap_servers,
                partitions,
                events,
                rate,
                latency_secs,
                memory_workers,
            };
            let mut stdout = std::io::stdout();
            runtime()?.block_on(driftwatch::loadtest::run(cfg, opts, &mut stdout))?;
        }
        Command::CreateTopics {
            config,
            bootstrap_servers,
            partitions,
            replication_factor,
        } => {
            let mut cfg = load_config(config.as_ref())?;
            if let Some(b) = bootstrap_servers {
                cfg.kafka.bootstrap_servers = b;
            }
            let created = runtime()?.block_on(pipeline::create_topics(
                &cfg,
                partitions,
                replication_factor,
            ))?;
            for t in pipeline::all_topics(&cfg) {
                let state = if created.contains(&t) {
                    "created"
                } else {
                    "exists"
                };
                println!("{t}: {state}");
            }
        }
        Command::Explain {
            worker_id,
            input,
            until,
            admin,
            json,
            config,
        } => {
            let value = match (input, admin) {
                (Some(dir), _) => {
                    let cfg = Arc::new(load_config(config.as_ref())?);
                    let history = replay::worker_history(cfg, &dir, until, &worker_id)?;
                    if history.state.is_none() && history.timeline.is_empty() {
                        anyhow::bail!("worker `{worker_id}` does not appear in {}", dir.display());
                    }
                    driftwatch::explain::history_json(&worker_id, &history)
                }
                (None, Some(url)) => driftwatch::explain::from_instance(&url, &worker_id)
                    .map_err(anyhow::Error::msg)?,
                (None, None) => anyhow::bail!("give --input DIR or --admin URL"),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", driftwatch::explain::render_text(&value));
            }
        }
        Command::CheckConfig { config } => {
            let (cfg, table) = Config::load_layered(config.as_deref(), std::env::vars())?;
            print!(
                "{}",
                toml::to_string(&driftwatch::config::redacted(&table))?
            );
            println!(
                "# {}: valid ({} apps configured, {} of {} rules enabled); keys not shown take their defaults",
                config
                    .as_ref()
                    .map_or_else(|| "built-in config".to_string(), |p| p.display().to_string()),
                cfg.apps.len(),
                cfg.rules.iter().filter(|r| r.enabled).count(),
                cfg.rules.len()
            );
        }
    }
    Ok(())
}
