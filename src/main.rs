//! The `driftwatch` command line: every command's arguments (clap), and
//! the dispatch to its body in `cli/`, which calls the library.

mod cli;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use driftwatch::model::time::Ts;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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
    Replay(ReplayArgs),
    /// Run generator and detector on an embedded Kafka-protocol broker (librdkafka's mock cluster).
    Demo(DemoArgs),
    /// Run the detector against a Kafka cluster until SIGTERM or Ctrl-C.
    Run(RunArgs),
    /// Produce a synthetic organisation and a stream of lifecycle changes with injected drift to a Kafka cluster.
    Generate(GenerateArgs),
    /// The load harness: raw consume rate vs detector throughput, latency at a fixed rate, restore rate, memory per worker.
    Bench(BenchArgs),
    /// Create the configured input, findings and dead-letter topics that do not exist yet; existing input topics must have the partition count asked for.
    CreateTopics(CreateTopicsArgs),
    /// One worker: timeline across HR, directory and app events, merged state, and every finding with owners, deadlines and evidence.
    #[command(group(clap::ArgGroup::new("source").args(["input", "kafka", "admin"])))]
    Explain(ExplainArgs),
    /// How each contributing owner performs against its remediation deadlines over a period, per team and rule, from finding transitions: a replay output (--input FILE) or the findings topic (--kafka).
    #[command(group(clap::ArgGroup::new("source").required(true).args(["input", "kafka"])))]
    Report(ReportArgs),
    /// Validate a configuration (file plus DRIFTWATCH_* environment overrides) and print the effective config with secrets redacted.
    CheckConfig(CheckConfigArgs),
}

// The arguments of each command: a doc comment on a field is its flag's
// help; the command's own help is its variant's doc comment above.

#[derive(Args)]
struct ReplayArgs {
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
    /// With --input and kafka.route_by = "payload": the input topics' partition count, which decides each key's partition (default: the highest partition in the dump plus one).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=100000))]
    partitions: Option<i32>,
    /// Output file; `-` or absent for standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Configuration file (default: the built-in config/driftwatch.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// json (the contract, one per line), ocsf (OCSF Detection Finding JSON lines) or avro (an Avro object container file of schemas/finding.avsc; Confluent-framed with output.avro_schema_id on --to-topic).
    #[arg(long, default_value = "json", value_parser = ["json", "ocsf", "avro"])]
    format: String,
}

#[derive(Args)]
struct DemoArgs {
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
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file (default: the built-in config/driftwatch.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides kafka.bootstrap_servers.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Overrides kafka.group_id.
    #[arg(long)]
    group_id: Option<String>,
}

#[derive(Args)]
struct GenerateArgs {
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
}

#[derive(Args)]
struct BenchArgs {
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
    /// Also measure the state changelog: detector throughput with it,
    /// restore from it beside restore from history, and again with ten
    /// times the history from the same generator.
    #[arg(long)]
    changelog: bool,
    /// With --changelog: how often the detector keeping the changelog
    /// writes it (`0s`: after every batch) [default: 2s]
    #[arg(long, requires = "changelog")]
    checkpoint_interval: Option<String>,
    /// With --changelog: before the restore with tenfold history, wait up
    /// to this long for the broker to compact the state changelog (Tansu
    /// compacts in its maintenance, as it starts and every 10 minutes)
    #[arg(long, requires = "changelog")]
    compaction_wait: Option<String>,
    /// With --changelog: pairs of detector passes over the same input,
    /// without the changelog and with it, taken in turn; the throughput
    /// ratio of each pair and their median are reported
    #[arg(long, requires = "changelog", default_value_t = 5)]
    throughput_pairs: u32,
    /// With --changelog: restarts that restore from the changelog; each
    /// is reported, and the median compared with the restore from history
    #[arg(long, requires = "changelog", default_value_t = 3)]
    restore_runs: u32,
    /// Configuration file (default: the built-in config/driftwatch.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct CreateTopicsArgs {
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
}

#[derive(Args)]
struct ExplainArgs {
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
}

#[derive(Args)]
struct ReportArgs {
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
}

#[derive(Args)]
struct CheckConfigArgs {
    /// Configuration file (default: the built-in config/driftwatch.toml).
    #[arg(long)]
    config: Option<PathBuf>,
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

/// The exit code of an error that running again may cure (sysexits'
/// EX_TEMPFAIL).
const EXIT_TRANSIENT: u8 = 75;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            let text = cli::SECRETS.get().map_or(text.clone(), |c| c.redact(&text));
            let _ = writeln!(std::io::stderr(), "error: {text}");
            // A supervisor may restart at once after a transient error
            // (EX_TEMPFAIL); anything else needs a change first.
            let transient = e
                .chain()
                .find_map(|c| c.downcast_ref::<driftwatch::kafka::PipelineError>())
                .is_some_and(driftwatch::kafka::PipelineError::retryable);
            ExitCode::from(if transient { EXIT_TRANSIENT } else { 2 })
        }
    }
}

fn run() -> Result<()> {
    let parsed = Cli::parse();
    // The demo's screen is its summary and tables; its logs stay quiet unless asked.
    let default_level = match parsed.command {
        Command::Demo(_) | Command::Bench(_) => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    let format = parsed
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
    match parsed.command {
        Command::Replay(args) => cli::replay::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::CreateTopics(args) => cli::create_topics::run(args),
        Command::Explain(args) => cli::explain::run(args),
        Command::Report(args) => cli::report::run(args),
        Command::CheckConfig(args) => cli::check_config::run(args),
    }
}
