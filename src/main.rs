//! The `driftwatch` command line: parses arguments and calls the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use driftwatch::config::Config;
use driftwatch::kafka::plural;
use driftwatch::model::time::Ts;
use driftwatch::{kafka as pipeline, replay};
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
    /// Replay input topics, from dump files (--input DIR) or from Kafka (--kafka), and write every finding transition.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["input", "kafka"])))]
    Replay {
        /// Directory of <topic>.jsonl files, one message (or kcat -J envelope) per line.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Read the input topics from Kafka instead (kafka.bootstrap_servers); no consumer group commits anything.
        #[arg(long)]
        kafka: bool,
        /// With --kafka: overrides kafka.bootstrap_servers.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// With --kafka: first record timestamp (the broker's clock, RFC 3339) read; state starts empty there.
        #[arg(long, value_parser = parse_ts)]
        from: Option<Ts>,
        /// With --kafka: first record timestamp (the broker's clock, RFC 3339) not read (default: the end at start).
        #[arg(long, value_parser = parse_ts)]
        to: Option<Ts>,
        /// With --kafka: replay only events whose occurred_at (event time, RFC 3339) is at or after this; state starts empty there.
        #[arg(long, value_parser = parse_ts)]
        from_event_time: Option<Ts>,
        /// With --kafka: replay only events whose occurred_at (event time, RFC 3339) is before this.
        #[arg(long, value_parser = parse_ts)]
        to_event_time: Option<Ts>,
        /// With --kafka: publish the findings to this existing topic (keyed by finding_id) instead of writing them out.
        #[arg(long)]
        to_topic: Option<String>,
        /// Progress on stderr (default: when stderr is a terminal).
        #[arg(long)]
        progress: bool,
        /// Evaluate as of this event time (RFC 3339): events that occurred after it are not applied, and SLA timers due by then fire.
        #[arg(long, value_parser = parse_ts)]
        until: Option<Ts>,
        /// Output file; `-` or absent for standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Configuration file (default: the built-in config/driftwatch.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// json (the contract, one per line), ocsf (OCSF Detection Finding JSON lines) or avro (an Avro object container file of schemas/finding.avsc; Confluent-framed with output.avro_schema_id on --to-topic).
        #[arg(long, default_value = "json", value_parser = ["json", "ocsf", "avro"])]
        format: String,
    },
    /// Run generator and detector on an embedded Kafka-protocol broker (librdkafka's mock cluster).
    Demo {
        /// How long to run (e.g. 60s, 5m); Ctrl-C stops earlier.
        #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
        duration: std::time::Duration,
        /// Workers in the synthetic organisation.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
        workers: u64,
        /// Lifecycle changes generated per second.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
        rate: u64,
        /// Partitions per topic.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
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
        /// Configuration file (default: the built-in config/driftwatch.toml); its [topics] and [kafka] are used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides kafka.bootstrap_servers.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Workers in the synthetic organisation.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
        workers: u64,
        /// Lifecycle changes per second of wall time.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
        rate: u64,
        /// How long to produce changes (e.g. 60s, 1h); Ctrl-C stops earlier.
        #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
        duration: std::time::Duration,
        /// Event time between two changes: up to this much (e.g. 10m makes hours of event time pass in seconds).
        #[arg(long, default_value = "10m", value_parser = parse_positive_duration)]
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
        /// Partitions of each topic the harness creates.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
        partitions: i32,
        /// Input events for the throughput and restore phases.
        #[arg(long, default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
        events: u64,
        /// Offered rate of the latency phase (events/s).
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
        rate: u64,
        /// Length of the latency phase (seconds).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        latency_secs: u64,
        /// Workers of the memory phase (0 skips it).
        #[arg(long, default_value_t = 1_000_000)]
        memory_workers: u64,
        /// Configuration file (default: the built-in config/driftwatch.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Create the configured input, findings and dead-letter topics that do not exist yet; existing input topics must have the partition count asked for.
    CreateTopics {
        /// Configuration file (default: the built-in config/driftwatch.toml); its [topics] are created.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides kafka.bootstrap_servers.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Partitions per topic (the same for every input topic: they must be co-partitioned).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=100_000))]
        partitions: i32,
        /// Copies of each partition (at most the number of brokers).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100))]
        replication_factor: i32,
    },
    /// One worker: timeline across HR, directory and app events, merged state, and every finding with owners, deadlines and evidence.
    #[command(group(clap::ArgGroup::new("source").args(["input", "kafka", "admin"])))]
    Explain {
        /// The worker_id.
        worker_id: String,
        /// Replay this dump directory (as `replay --input`).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Replay the input topics from Kafka (kafka.bootstrap_servers), as `replay --kafka`.
        #[arg(long)]
        kafka: bool,
        /// With --kafka: overrides kafka.bootstrap_servers.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Ask a running instance for its live state instead: its admin URL (e.g. http://127.0.0.1:9464); admin.token of the config (or DRIFTWATCH_ADMIN__TOKEN) is sent when set. It knows the current state and the open findings, not the timeline.
        #[arg(long)]
        admin: Option<String>,
        /// With --input or --kafka: evaluate as of this event time (RFC 3339), as `replay --until`.
        #[arg(long, value_parser = parse_ts)]
        until: Option<Ts>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Configuration file (default: the built-in config/driftwatch.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// How each contributing owner performs against its remediation deadlines over a period, per team and rule, from finding transitions: a replay output (--input FILE) or the findings topic (--kafka).
    #[command(group(clap::ArgGroup::new("source").required(true).args(["input", "kafka"])))]
    Report {
        /// JSON lines of finding transitions, as `replay --output` writes them; `-` for standard input.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Read the findings topic (topics.findings; JSON or Confluent-framed Avro) from its beginning to its end at start; no consumer group commits anything.
        #[arg(long)]
        kafka: bool,
        /// With --kafka: overrides kafka.bootstrap_servers.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Start of the period (RFC 3339, event time: detected_at, transitioned_at), included (default: the first finding read).
        #[arg(long, value_parser = parse_ts)]
        from: Option<Ts>,
        /// End of the period, excluded; findings open then are counted as open at the end (default: after everything read).
        #[arg(long, value_parser = parse_ts)]
        to: Option<Ts>,
        /// markdown (for the governance review), csv (a row per team and rule) or html (one self-contained page, a chart per team).
        #[arg(long, default_value = "markdown", value_parser = ["markdown", "csv", "html"])]
        format: String,
        /// The oldest open findings listed per team.
        #[arg(long, default_value_t = 10)]
        oldest: usize,
        /// Output file; `-` or absent for standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// With --kafka: configuration file (default: the built-in config/driftwatch.toml); its [topics] and [kafka] are used.
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

fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30s, 5m)"))?;
    if d.is_zero() {
        return Err("must be longer than zero (write e.g. 30s, 5m)".into());
    }
    Ok(d)
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

/// The exit code of an error that running again may cure (sysexits'
/// EX_TEMPFAIL).
const EXIT_TRANSIENT: u8 = 75;

/// Secret values of the loaded config, so that no error ever prints them.
static SECRETS: std::sync::OnceLock<Config> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            let text = SECRETS.get().map_or(text.clone(), |c| c.redact(&text));
            let _ = writeln!(std::io::stderr(), "error: {text}");
            // A supervisor may restart at once after a transient error
            // (EX_TEMPFAIL); anything else needs a change first.
            let transient = e
                .chain()
                .find_map(|c| c.downcast_ref::<pipeline::PipelineError>())
                .is_some_and(pipeline::PipelineError::retryable);
            ExitCode::from(if transient { EXIT_TRANSIENT } else { 2 })
        }
    }
}

/// A line on stderr. A closed stderr (a pipe whose reader went away) is
/// not an error worth dying or hanging for: the line is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Refuses flags given to a mode they do not apply to.
fn only_with(mode: &str, given: &[(&str, bool)]) -> Result<()> {
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
fn sink(output: Option<&PathBuf>) -> Result<Box<dyn Write>> {
    Ok(match output.filter(|p| p.as_os_str() != "-") {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

/// What a replay says when it is done.
fn replay_summary(report: &replay::ReplayReport, source: &str, skipped: &str) -> String {
    let s = &report.stats;
    let mut line = format!(
        "replayed {} from {} in {} ({} ignored); {}: {} opened, {} escalated, {} resolved ({} held by storms); {} skipped",
        plural(report.events, "event"),
        source,
        plural(report.tasks as u64, "partition task"),
        plural(s.duplicates, "duplicate"),
        plural(report.findings, "finding transition"),
        s.opened,
        s.escalated,
        s.resolved,
        s.held,
        plural(report.bad_lines.len() as u64 + report.bad_messages, skipped)
    );
    if report.after_until > 0 {
        line.push_str(&format!(
            "; {} after --until not applied",
            plural(report.after_until, "event")
        ));
    }
    if report.outside_window > 0 {
        line.push_str(&format!(
            "; {} outside the event-time window",
            plural(report.outside_window, "event")
        ));
    }
    line
}

/// Says which apps the config names, and warns when none does (a config
/// file with no [apps] section replaces the shipped one's).
fn say_apps(cfg: &Config) {
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed stderr (its reader gone) must not turn into a panic in
        // whichever task logged, the signal handler's included: lines that
        // cannot be written are dropped.
        .log_internal_errors(false)
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
            from_event_time,
            to_event_time,
            to_topic,
            progress,
            until,
            output,
            config,
            format,
        } => {
            if !kafka {
                only_with(
                    "--kafka",
                    &[
                        ("--bootstrap-servers", bootstrap_servers.is_some()),
                        ("--from", from.is_some()),
                        ("--to", to.is_some()),
                        ("--from-event-time", from_event_time.is_some()),
                        ("--to-event-time", to_event_time.is_some()),
                        ("--to-topic", to_topic.is_some()),
                    ],
                )?;
            }
            if to_topic.is_some() && output.is_some() {
                anyhow::bail!("--output and --to-topic both say where findings go; give one");
            }
            let mut cfg = load_config(config.as_ref())?;
            if let Some(b) = bootstrap_servers {
                cfg.kafka.bootstrap_servers = b;
            }
            let cfg = Arc::new(cfg);
            let encoding = match (format.as_str(), cfg.output, &to_topic) {
                // On a topic, Avro carries the configured schema id, or the
                // one the registry gives the finding schema for that topic.
                ("avro", driftwatch::model::encoding::Encoding::Avro { .. }, Some(topic)) => {
                    driftwatch::codec::registry::settle_output(&cfg, topic)?
                }
                ("avro", enc @ driftwatch::model::encoding::Encoding::Avro { .. }, None) => enc,
                ("avro", _, Some(_)) => anyhow::bail!(
                    "--format avro --to-topic frames each finding with a schema id: set output.encoding = \"avro\" and output.avro_schema_id (the id of schemas/finding.avsc in your registry) in the config"
                ),
                (name, _, _) => {
                    driftwatch::model::encoding::Encoding::parse(name, None).map_err(anyhow::Error::msg)?
                }
            };
            if kafka {
                let opts = driftwatch::kafka::replay::KafkaReplayOptions {
                    from,
                    to,
                    from_event_time,
                    to_event_time,
                    until,
                    progress: progress || std::io::IsTerminal::is_terminal(&std::io::stderr()),
                };
                let publisher = match &to_topic {
                    Some(topic) => {
                        Some(runtime()?.block_on(pipeline::FindingsPublisher::new(&cfg, topic))?)
                    }
                    None => None,
                };
                let (findings, report) =
                    driftwatch::kafka::replay::replay_kafka(cfg.clone(), &opts)?;
                match (publisher, &to_topic) {
                    (Some(publisher), Some(topic)) => {
                        let n = runtime()?.block_on(publisher.publish(encoding, &findings))?;
                        say!(
                            "published {} to {topic}",
                            plural(n as u64, "finding transition")
                        );
                    }
                    _ => {
                        let mut out = sink(output.as_ref())?;
                        driftwatch::codec::output::write_findings(encoding, &findings, &mut out)
                            .map_err(anyhow::Error::msg)?;
                        out.flush().context("cannot write the findings")?;
                    }
                }
                say!(
                    "{}",
                    replay_summary(
                        &report,
                        &plural(report.files as u64, "topic"),
                        "undecodable message"
                    )
                );
                if report.events == 0 {
                    say!("{}", report.empty_hint());
                }
                return Ok(());
            }
            let input = input.expect("clap requires --input or --kafka");
            let mut out = sink(output.as_ref())?;
            let report = replay::replay_dir_as(cfg, &input, until, encoding, &mut out)?;
            out.flush().context("cannot write the findings")?;
            drop(out);
            for name in &report.ignored_files {
                say!("ignored {name}: not a configured input topic");
            }
            for bad in &report.bad_lines {
                say!(
                    "{}:{}: skipped: {} ({})",
                    bad.file,
                    bad.line,
                    bad.error,
                    bad.error.error_type()
                );
            }
            say!(
                "{}",
                replay_summary(
                    &report,
                    &plural(report.files as u64, "file"),
                    "undecodable line"
                )
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
            say_apps(&cfg);
            let opts = driftwatch::tools::demo::DemoOptions {
                duration,
                workers,
                rate,
                partitions,
            };
            let mut stdout = std::io::stdout();
            runtime()?.block_on(driftwatch::tools::demo::run(cfg, opts, &mut stdout))?;
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
            let opts = driftwatch::tools::bench::BenchOptions {
                bootstrap: bootstrap_servers,
                partitions,
                events,
                rate,
                latency_secs,
                memory_workers,
            };
            let mut stdout = std::io::stdout();
            runtime()?.block_on(driftwatch::tools::bench::run(cfg, opts, &mut stdout))?;
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
        }
        Command::Explain {
            worker_id,
            input,
            kafka,
            bootstrap_servers,
            until,
            admin,
            json,
            config,
        } => {
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
                let history =
                    driftwatch::kafka::replay::worker_history(cfg.clone(), until, &worker_id)?;
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
        }
        Command::Report {
            input,
            kafka,
            bootstrap_servers,
            from,
            to,
            format,
            oldest,
            output,
            config,
        } => {
            use driftwatch::tools::report;
            if !kafka {
                only_with(
                    "--kafka",
                    &[
                        ("--bootstrap-servers", bootstrap_servers.is_some()),
                        ("--config", config.is_some()),
                    ],
                )?;
            }
            if let (Some(f), Some(t)) = (from, to) {
                if f >= t {
                    anyhow::bail!("--from {f} is not before --to {t}: the period would be empty");
                }
            }
            let mut collector = report::Collector::new();
            let source = if kafka {
                let mut cfg = load_config(config.as_ref())?;
                if let Some(b) = bootstrap_servers {
                    cfg.kafka.bootstrap_servers = b;
                }
                let read = report::kafka::read_findings(&cfg, |t| collector.add(t))?;
                let mut source = format!(
                    "{} ({} of {})",
                    read.topic,
                    plural(read.records, "record"),
                    plural(read.partitions as u64, "partition")
                );
                if read.undecodable > 0 {
                    source.push_str(&format!(
                        "; {} neither JSON nor Avro findings left out",
                        plural(read.undecodable, "record")
                    ));
                }
                source
            } else {
                let input = input.expect("clap requires --input or --kafka");
                let bad = if input.as_os_str() == "-" {
                    report::read_lines(std::io::stdin().lock(), &mut collector)
                } else {
                    let file = std::fs::File::open(&input)
                        .with_context(|| format!("cannot open {}", input.display()))?;
                    report::read_lines(std::io::BufReader::new(file), &mut collector)
                }
                .with_context(|| input.display().to_string())?;
                for b in bad.iter().take(10) {
                    say!("{}:{}: skipped: {}", input.display(), b.line, b.error);
                }
                let mut source = input.display().to_string();
                if !bad.is_empty() {
                    source.push_str(&format!(
                        "; {} not a finding transition skipped",
                        plural(bad.len() as u64, "line")
                    ));
                }
                source
            };
            let opts = report::ReportOptions { from, to, oldest };
            let r = collector.report(&opts);
            let text = report::render::render(&r, &format).expect("clap checks --format");
            let mut out = sink(output.as_ref())?;
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .context("cannot write the report")?;
            say!(
                "report of {}: {} ({} ignored) of {}; {} with findings in the period",
                source,
                plural(r.transitions, "finding transition"),
                plural(r.duplicates, "duplicate"),
                plural(r.findings as u64, "finding"),
                plural(r.teams.len() as u64, "team")
            );
        }
        Command::CheckConfig { config } => {
            let (cfg, table) = Config::load_layered(config.as_deref(), std::env::vars())?;
            print!(
                "{}",
                toml::to_string(&driftwatch::config::redacted(&table))?
            );
            println!(
                "# {}: valid ({} configured, {} of {} rules enabled); keys not shown take their defaults",
                config
                    .as_ref()
                    .map_or_else(|| "built-in config".to_string(), |p| p.display().to_string()),
                plural(cfg.apps.len() as u64, "app"),
                cfg.rules.iter().filter(|r| r.enabled).count(),
                cfg.rules.len()
            );
        }
    }
    Ok(())
}
