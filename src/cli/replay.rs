//! `driftwatch replay`: topic dumps or the input topics replayed, every
//! finding transition written out or published, and the summary line.

use super::{load_config, only_with, runtime, sink};
use crate::ReplayArgs;
use anyhow::{Context, Result};
use driftwatch::kafka::plural;
use driftwatch::{kafka as pipeline, replay};
use std::io::Write;
use std::sync::Arc;

pub(crate) fn run(args: ReplayArgs) -> Result<()> {
    let ReplayArgs {
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
        partitions,
        output,
        config,
        format,
    } = args;
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
    } else if partitions.is_some() {
        anyhow::bail!("--partitions is for --input: with --kafka the topics' partition count is read from the cluster");
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
        let (findings, report) = driftwatch::kafka::replay::replay_kafka(cfg.clone(), &opts)?;
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
    let report = replay::replay_dir_as(cfg, &input, until, partitions, encoding, &mut out)?;
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
    Ok(())
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
    if report.misplaced > 0 && report.routed {
        line.push_str(&format!(
            "; {} moved to the partition kafka.partitioner gives their correlation key (kafka.route_by = payload), as in a live run",
            plural(report.misplaced, "event")
        ));
    } else if report.misplaced > 0 {
        line.push_str(&format!(
            "; {} outside the partition kafka.partitioner gives their correlation key, joined apart from their worker's other events as in a live run",
            plural(report.misplaced, "event")
        ));
    }
    line
}
