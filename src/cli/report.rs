//! `driftwatch report`: owners against their remediation deadlines, from a
//! replay output or the findings topic.

use super::{load_config, only_with, sink};
use crate::ReportArgs;
use anyhow::{Context, Result};
use driftwatch::kafka::plural;
use std::io::Write;

pub(crate) fn run(args: ReportArgs) -> Result<()> {
    let ReportArgs {
        input,
        kafka,
        bootstrap_servers,
        from,
        to,
        format,
        oldest,
        output,
        config,
    } = args;
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
    Ok(())
}
