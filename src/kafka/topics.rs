//! Topics: creation (`create-topics`), the checks made before anything is
//! read or produced (every topic exists, inputs co-partitioned), and the
//! configured topic lists.

use super::*;

/// Partition counts of the topics of the cluster, by name.
fn topic_counts<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    cfg: &Config,
) -> Result<HashMap<String, usize>, PipelineError> {
    let md = client::metadata(client, cfg)?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect())
}

/// Checks that `topics` exist, before anything is read or produced.
pub fn require_topics<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    cfg: &Config,
    topics: &[String],
) -> Result<(), PipelineError> {
    let counts = topic_counts(client, cfg)?;
    let missing: Vec<&str> = topics
        .iter()
        .filter(|t| !counts.contains_key(t.as_str()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PipelineError::Topics(format!(
        "{} missing on {}: {}; create {} (`driftwatch create-topics`, or your cluster's tooling) or fix the name",
        if missing.len() == 1 { "topic" } else { "topics" },
        cfg.kafka.bootstrap_servers,
        missing.join(", "),
        if missing.len() == 1 { "it" } else { "them" },
    )))
}

/// What `create-topics` found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOutcome {
    pub name: String,
    pub partitions: usize,
    pub created: bool,
}

/// Creates the configured topics that do not exist yet (brokers such as
/// Tansu do not auto-create). Existing topics are left as they are, but
/// existing input topics must have the partition count asked for: the
/// inputs are co-partitioned, so a count that differs is refused before
/// anything is created.
pub async fn create_topics(
    cfg: &Config,
    partitions: i32,
    replication: i32,
) -> Result<Vec<TopicOutcome>, PipelineError> {
    let admin: AdminClient<Logs> =
        create_client(cfg, &client_config(cfg, Role::Admin), Logs::default())?;
    let md = tokio::task::block_in_place(|| client::metadata(admin.inner(), cfg))?;
    let existing: HashMap<String, usize> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect();
    let inputs = input_topics(cfg);
    let wrong: Vec<String> = inputs
        .iter()
        .filter_map(|t| {
            let n = *existing.get(t.as_str())?;
            (n != partitions as usize).then(|| format!("{t} has {n}"))
        })
        .collect();
    if !wrong.is_empty() {
        return Err(PipelineError::Topics(format!(
            "input topics exist with another partition count than {partitions} ({}); input topics must be co-partitioned: create the missing ones with --partitions equal to the existing ones, or recreate the topics",
            wrong.join(", ")
        )));
    }
    let names = all_topics(cfg);
    let new: Vec<NewTopic> = names
        .iter()
        .filter(|n| !existing.contains_key(n.as_str()))
        .map(|n| {
            let topic = NewTopic::new(n, partitions, TopicReplication::Fixed(replication));
            // The changelog keeps each key's newest state, not its history.
            if cfg.state_changelog && *n == cfg.topics.state {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let mut created = BTreeSet::new();
    if !new.is_empty() {
        let results = admin
            .create_topics(
                &new,
                &AdminOptions::new()
                    .operation_timeout(Some(Duration::from_secs(30)))
                    .request_timeout(Some(client::CONNECT_TIMEOUT)),
            )
            .await
            .map_err(|e| client::unreachable(cfg, &e))?;
        for r in results {
            match r {
                Ok(name) => {
                    created.insert(name);
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(PipelineError::Topics(format!(
                        "cannot create topic `{name}`: {code}"
                    )))
                }
            }
        }
    }
    Ok(names
        .into_iter()
        .map(|name| TopicOutcome {
            partitions: existing.get(&name).copied().unwrap_or(partitions as usize),
            created: created.contains(&name),
            name,
        })
        .collect())
}

/// The input topics, in configuration order.
pub fn input_topics(cfg: &Config) -> Vec<String> {
    let t = &cfg.topics;
    t.hr.iter()
        .chain(&t.directory)
        .chain(&t.app)
        .cloned()
        .collect()
}

/// Input, findings and dead-letter topics, the state changelog when it is
/// kept, and the repartition topic when records are routed by payload.
pub fn all_topics(cfg: &Config) -> Vec<String> {
    let t = &cfg.topics;
    t.hr.iter()
        .chain(&t.directory)
        .chain(&t.app)
        .chain([&t.findings, &t.dead_letter])
        .chain(cfg.state_changelog.then_some(&t.state))
        .chain((cfg.kafka.route_by == crate::config::RouteBy::Payload).then_some(&t.repartition))
        .cloned()
        .collect()
}

/// Checks that every input topic exists with the same partition count and
/// that the output topics exist; returns the partition count.
pub fn check_topics<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    cfg: &Config,
) -> Result<i32, PipelineError> {
    let counts = topic_counts(client, cfg)?;
    let missing: Vec<String> = all_topics(cfg)
        .into_iter()
        .filter(|t| !counts.contains_key(t.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(PipelineError::Topics(format!(
            "topics missing on {}: {}; create them (`driftwatch create-topics --config FILE`) or fix [topics] in the config",
            cfg.kafka.bootstrap_servers,
            missing.join(", ")
        )));
    }
    let t = &cfg.topics;
    let inputs: Vec<(&str, usize)> =
        t.hr.iter()
            .chain(&t.directory)
            .chain(&t.app)
            .map(|n| (n.as_str(), counts[n.as_str()]))
            .collect();
    let first = inputs[0].1;
    if inputs.iter().any(|(_, n)| *n != first) {
        let list: Vec<String> = inputs.iter().map(|(n, c)| format!("{n}={c}")).collect();
        return Err(PipelineError::Topics(format!(
            "input topics are not co-partitioned ({}): a worker's HR, directory and app events must land in the same partition number; give every input topic the same partition count and the same key (worker_id)",
            list.join(", ")
        )));
    }
    if cfg.state_changelog && counts[t.state.as_str()] != first {
        return Err(PipelineError::Topics(format!(
            "the state changelog `{}` has {} partitions and the input topics {first}: it holds the state of each input partition in the partition of the same number; recreate it with {first} partitions (`driftwatch create-topics`)",
            t.state,
            counts[t.state.as_str()]
        )));
    }
    if cfg.kafka.route_by == crate::config::RouteBy::Payload
        && counts[t.repartition.as_str()] != first
    {
        return Err(PipelineError::Topics(format!(
            "the repartition topic `{}` has {} partitions and the input topics {first}: a record moves to the partition of its key's number; recreate it with {first} partitions (`driftwatch create-topics`)",
            t.repartition,
            counts[t.repartition.as_str()]
        )));
    }
    Ok(first as i32)
}
