//! From what the file says to what the detector uses: each value parsed
//! and checked, and the checks across fields, with an error that names the
//! field and the fix.

use super::*;

/// Parses a duration such as `90s`, `1h`, `7d` or `0`.
pub fn parse_duration_ms(field: &str, s: &str) -> Result<i64, ConfigError> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| {
            invalid(
                field,
                format!("`{s}` is not a duration ({e}); write e.g. 0s, 30m, 1h, 7d"),
            )
        })
}

/// A duration above zero (`default` when unset), or `off` (None); `off_means`
/// ends the error's hint.
fn duration_or_off(
    field: &str,
    value: Option<&str>,
    default: &str,
    off_means: &str,
) -> Result<Option<i64>, ConfigError> {
    match value.map(str::trim) {
        Some("off") => Ok(None),
        other => {
            let ms = parse_duration_ms(field, other.unwrap_or(default))?;
            if ms <= 0 {
                return Err(invalid(
                    field,
                    format!("must be longer than zero, or `off`{off_means}"),
                ));
            }
            Ok(Some(ms))
        }
    }
}

fn parse_severity(field: &str, s: &str) -> Result<Severity, ConfigError> {
    Severity::parse(s).ok_or_else(|| {
        invalid(
            field,
            format!("`{s}` is not a severity; use one of LOW, MEDIUM, HIGH, CRITICAL"),
        )
    })
}

fn team(field: &str, raw: Option<RawTeam>, default: &str) -> Result<Team, ConfigError> {
    let raw = raw.unwrap_or(RawTeam {
        team: default.into(),
        contact: None,
    });
    if raw.team.trim().is_empty() {
        return Err(invalid(
            format!("{field}.team"),
            "must name a team; it is published as the finding's owner",
        ));
    }
    Ok(Team {
        team: raw.team.into(),
        contact: raw.contact.map(Into::into),
    })
}

fn topic_list(
    field: &str,
    raw: Option<OneOrMany>,
    default: &str,
) -> Result<Vec<String>, ConfigError> {
    let list = raw
        .map(OneOrMany::into_vec)
        .unwrap_or_else(|| vec![default.into()]);
    if list.is_empty() {
        return Err(invalid(
            field,
            "lists no topic; give at least one topic name",
        ));
    }
    for t in &list {
        if !valid_topic(t) {
            return Err(invalid(
                field,
                format!("`{t}` is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"),
            ));
        }
    }
    Ok(list)
}

fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// `[topics]`: names valid, each input topic in one family, outputs apart.
fn topics_config(t: RawTopics) -> Result<Topics, ConfigError> {
    let topics = Topics {
        hr: topic_list("topics.hr", t.hr, "hr.worker-events")?,
        directory: topic_list("topics.directory", t.directory, "directory.account-changes")?,
        app: topic_list("topics.app", t.app, "app.entitlement-changes")?,
        findings: t
            .findings
            .unwrap_or_else(|| "identity.drift-findings".into()),
        dead_letter: t
            .dead_letter
            .unwrap_or_else(|| "driftwatch.dead-letter".into()),
        state: t.state.unwrap_or_else(|| "driftwatch.state".into()),
        repartition: t
            .repartition
            .unwrap_or_else(|| "driftwatch.repartition".into()),
    };
    for (field, name) in [
        ("topics.findings", &topics.findings),
        ("topics.dead_letter", &topics.dead_letter),
        ("topics.state", &topics.state),
        ("topics.repartition", &topics.repartition),
    ] {
        if !valid_topic(name) {
            return Err(invalid(
                field,
                format!("`{name}` is not a valid Kafka topic name"),
            ));
        }
    }
    let mut seen = BTreeMap::new();
    for (field, list) in [
        ("topics.hr", &topics.hr),
        ("topics.directory", &topics.directory),
        ("topics.app", &topics.app),
    ] {
        for name in list {
            if let Some(other) = seen.insert(name.clone(), field) {
                return Err(invalid(
                    field,
                    format!("topic `{name}` is also listed in `{other}`; each input topic belongs to one family"),
                ));
            }
        }
    }
    for (field, name) in [
        ("topics.findings", &topics.findings),
        ("topics.dead_letter", &topics.dead_letter),
        ("topics.state", &topics.state),
        ("topics.repartition", &topics.repartition),
    ] {
        if let Some(other) = seen.get(name) {
            return Err(invalid(
                field,
                format!("`{name}` is an input topic in `{other}`; findings, dead letters, state and repartitioned records need their own topics"),
            ));
        }
    }
    if topics.state == topics.findings || topics.state == topics.dead_letter {
        return Err(invalid(
            "topics.state",
            format!(
                "`{}` is also the findings or dead-letter topic; the state changelog is compacted and needs a topic of its own",
                topics.state
            ),
        ));
    }
    if [&topics.findings, &topics.dead_letter, &topics.state].contains(&&topics.repartition) {
        return Err(invalid(
            "topics.repartition",
            format!(
                "`{}` is also the findings, dead-letter or state topic; records moving to their key's partition need a topic of their own",
                topics.repartition
            ),
        ));
    }
    Ok(topics)
}

/// `[apps.<app_id>]`: each app's owner and approvers.
fn apps_config(raw: BTreeMap<String, RawApp>) -> Result<BTreeMap<String, AppOwner>, ConfigError> {
    let mut apps = BTreeMap::new();
    for (id, app) in raw {
        let field = format!("apps.{id}");
        let owner = team(
            &field,
            Some(RawTeam {
                team: app.team,
                contact: app.contact,
            }),
            "",
        )?;
        if app.approvers.iter().any(|a| a.trim().is_empty()) {
            return Err(invalid(
                format!("{field}.approvers"),
                "holds an empty worker_id",
            ));
        }
        apps.insert(
            id,
            AppOwner {
                owner,
                approvers: app.approvers,
            },
        );
    }
    Ok(apps)
}

/// `[remediation]`: the deadline of each severity.
fn remediation_config(r: RawRemediation) -> Result<[i64; 4], ConfigError> {
    let mut remediation_ms = [0i64; 4];
    for (sev, field, value, default) in [
        (Severity::Critical, "remediation.critical", r.critical, "4h"),
        (Severity::High, "remediation.high", r.high, "24h"),
        (Severity::Medium, "remediation.medium", r.medium, "72h"),
        (Severity::Low, "remediation.low", r.low, "7d"),
    ] {
        let ms = parse_duration_ms(field, value.as_deref().unwrap_or(default))?;
        if ms <= 0 {
            return Err(invalid(field, "must be longer than zero"));
        }
        remediation_ms[sev as usize] = ms;
    }
    Ok(remediation_ms)
}

/// `[rules.<RULE_ID>]`: the contract's defaults, overridden per rule.
fn rules_config(raw: BTreeMap<String, RawRule>) -> Result<Vec<RuleConfig>, ConfigError> {
    let mut rules: Vec<RuleConfig> = Rule::ALL
        .iter()
        .map(|r| RuleConfig::default_of(*r))
        .collect();
    for (name, rr) in raw {
        let rule = Rule::parse(&name).ok_or_else(|| {
            invalid(
                format!("rules.{name}"),
                format!(
                    "unknown rule id; the rules are {}",
                    Rule::ALL
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let c = &mut rules[rule.index()];
        if let Some(e) = rr.enabled {
            c.enabled = e;
        }
        if let Some(s) = rr.sla {
            c.sla_ms = parse_duration_ms(&format!("rules.{name}.sla"), &s)?;
        }
        if let Some(s) = rr.severity {
            c.severity = parse_severity(&format!("rules.{name}.severity"), &s)?;
        }
        if let Some(s) = rr.elevated_severity {
            c.elevated_severity = parse_severity(&format!("rules.{name}.elevated_severity"), &s)?;
        }
        if c.elevated_severity < c.severity {
            return Err(invalid(
                format!("rules.{name}.elevated_severity"),
                format!(
                    "{} is below the base severity {}; raise it or lower `severity`",
                    c.elevated_severity, c.severity
                ),
            ));
        }
    }
    Ok(rules)
}

/// `[storm]`: the SOURCE_STORM guard, switched off with its rule.
fn storm_config(s: RawStorm, rules: &[RuleConfig]) -> Result<StormConfig, ConfigError> {
    let storm_enabled = s.enabled.unwrap_or(true);
    let fraction = s.fraction.unwrap_or(0.05);
    if !(0.0..=1.0).contains(&fraction) || fraction.is_nan() {
        return Err(invalid(
            "storm.fraction",
            format!("{fraction} is not between 0 and 1"),
        ));
    }
    let window_ms = parse_duration_ms("storm.window", s.window.as_deref().unwrap_or("5m"))?;
    if window_ms <= 0 {
        return Err(invalid("storm.window", "must be longer than zero"));
    }
    let max_hold_ms = parse_duration_ms("storm.max_hold", s.max_hold.as_deref().unwrap_or("24h"))?;
    if max_hold_ms < window_ms {
        return Err(invalid("storm.max_hold", "must be at least storm.window"));
    }
    let storm = StormConfig {
        enabled: storm_enabled && rules[Rule::SourceStorm.index()].enabled,
        min_workers: s.min_workers.unwrap_or(50),
        fraction,
        window_ms,
        max_hold_ms,
        severity: match s.severity {
            Some(v) => parse_severity("storm.severity", &v)?,
            None => rules[Rule::SourceStorm.index()].severity,
        },
    };
    if storm.min_workers == 0 {
        return Err(invalid("storm.min_workers", "must be at least 1"));
    }
    Ok(storm)
}

/// `[admin]`: where the port listens and the token of its `/v1` queries.
fn admin_config(
    a: RawAdmin,
) -> Result<(Option<std::net::SocketAddr>, Option<AdminToken>), ConfigError> {
    let admin_listen = match a.listen.as_deref().map(str::trim) {
        Some("off") => None,
        other => {
            let text = other.unwrap_or("127.0.0.1:9464");
            Some(listen_addr(text).map_err(|why| {
                invalid(
                    "admin.listen",
                    format!("`{text}` {why} (write host:port, e.g. 127.0.0.1:9464, localhost:9464, or 0.0.0.0:9464 to listen on every interface; or `off`)"),
                )
            })?)
        }
    };
    let admin_token = match a.token.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) if t.len() < 16 => return Err(invalid(
            "admin.token",
            "is shorter than 16 characters; use a long random string (e.g. `openssl rand -hex 32`)",
        )),
        Some(t) => Some(AdminToken(t.to_string())),
    };
    Ok((admin_listen, admin_token))
}

/// `[output]`: the findings topic's encoding; whether its Avro schema id
/// was given (else the registry is asked at start).
fn output_config(
    o: RawOutput,
    schemas: &SchemasConfig,
) -> Result<(crate::model::encoding::Encoding, bool), ConfigError> {
    let output_schema_id_given = o.avro_schema_id.is_some();
    let output = {
        let name = o.encoding.as_deref().unwrap_or("json");
        let enc = crate::model::encoding::Encoding::parse(name, o.avro_schema_id)
            .map_err(|e| invalid("output.encoding", e))?;
        if name == "avro" && o.avro_schema_id.is_none() && schemas.registry_url.is_none() {
            return Err(invalid(
                "output.avro_schema_id",
                "is needed with encoding = \"avro\" when no schemas.registry_url is set: the id under which schemas/finding.avsc is registered (the Confluent header carries it); or set schemas.registry_url and driftwatch registers it under `<findings topic>-value` at start",
            ));
        }
        enc
    };
    Ok((output, output_schema_id_given))
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let topics = topics_config(raw.topics)?;

        let governance_team = raw
            .owners
            .governance_team
            .unwrap_or_else(|| "identity-governance".into());
        if governance_team.trim().is_empty() {
            return Err(invalid(
                "owners.governance_team",
                "must name the process owner's team",
            ));
        }
        let hr = team("owners.hr", raw.owners.hr, "hr-operations")?;
        let it = team("owners.it", raw.owners.it, "it-identity")?;
        let default_app = team("owners.default_app", raw.owners.default_app, "app-owners")?;

        let apps = apps_config(raw.apps)?;

        let escalation_target: Arc<str> = raw
            .escalation
            .target
            .unwrap_or_else(|| governance_team.clone())
            .into();
        let critical_escalation_target = raw
            .escalation
            .critical_target
            .map(Into::into)
            .unwrap_or_else(|| escalation_target.clone());

        let remediation_ms = remediation_config(raw.remediation)?;

        let rules = rules_config(raw.rules)?;

        let storm = storm_config(raw.storm, &rules)?;

        let dedup_capacity = raw.state.dedup_capacity.unwrap_or(1_000_000);
        if dedup_capacity == 0 {
            return Err(invalid(
                "state.dedup_capacity",
                "must be at least 1; duplicates would not be detected",
            ));
        }

        let dedup_max_age_ms = duration_or_off(
            "state.dedup_max_age",
            raw.state.dedup_max_age.as_deref(),
            "7d",
            " (only dedup_capacity bounds the window)",
        )?;

        let idle_advance_ms = duration_or_off(
            "detector.idle_advance",
            raw.detector.idle_advance.as_deref(),
            "10s",
            "",
        )?;
        let kafka = kafka_config(raw.kafka)?;
        let checkpoint_interval_ms = match raw.state.checkpoint_interval.as_deref() {
            None => kafka.commit_interval_ms,
            Some(s) => parse_duration_ms("state.checkpoint_interval", s)?.max(0) as u64,
        };
        let (admin_listen, admin_token) = admin_config(raw.admin)?;
        let shutdown_timeout_ms = parse_duration_ms(
            "detector.shutdown_timeout",
            raw.detector.shutdown_timeout.as_deref().unwrap_or("30s"),
        )?;
        if shutdown_timeout_ms <= 0 {
            return Err(invalid(
                "detector.shutdown_timeout",
                "must be longer than zero",
            ));
        }
        let schemas = schemas_config(raw.schemas)?;

        let (output, output_schema_id_given) = output_config(raw.output, &schemas)?;

        let max_message_bytes = raw
            .detector
            .max_message_bytes
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if max_message_bytes == 0 {
            return Err(invalid("detector.max_message_bytes", "must be at least 1"));
        }

        let state_changelog = raw.state.changelog.unwrap_or(false);
        if kafka.route_by == crate::config::RouteBy::Payload {
            if !state_changelog {
                return Err(invalid(
                    "kafka.route_by",
                    "`payload` needs the state changelog: a partition's state then holds records other partitions read, which its own input history cannot rebuild; set state.changelog = true",
                ));
            }
            if kafka.delivery == Delivery::ExactlyOnce {
                return Err(invalid(
                    "kafka.route_by",
                    "`payload` works with kafka.delivery = \"at_least_once\" only (records moving between partitions are not part of a transaction); use kafka_key or at_least_once",
                ));
            }
        }

        Ok(Config {
            max_message_bytes,
            output,
            output_schema_id_given,
            admin_listen,
            admin_token,
            shutdown_timeout_ms: shutdown_timeout_ms as u64,
            idle_advance_ms,
            kafka,
            schemas,
            instance: raw
                .detector
                .instance
                .unwrap_or_else(|| "driftwatch".into())
                .into(),
            version: env!("CARGO_PKG_VERSION").into(),
            topics,
            governance_team: governance_team.into(),
            hr,
            it,
            default_app,
            apps,
            escalation_target,
            critical_escalation_target,
            remediation_ms,
            rules,
            storm,
            dedup_capacity,
            dedup_max_age_ms,
            state_changelog,
            history_fallback: raw.state.history_fallback.unwrap_or(true),
            checkpoint_interval_ms,
        })
    }
}

/// `host:port` to one socket address: an IP literal as it is, a host name
/// through the resolver (`localhost` becomes its first address, IPv4
/// first, so that the port is where a user expects it).
fn listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("has no port".into());
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err("is not host:port".into());
    }
    let addrs: Vec<std::net::SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("does not resolve: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| "resolves to no address".into())
}

fn kafka_config(k: RawKafka) -> Result<KafkaConfig, ConfigError> {
    let bootstrap_servers = k
        .bootstrap_servers
        .unwrap_or_else(|| "localhost:9092".into());
    if bootstrap_servers.trim().is_empty() {
        return Err(invalid(
            "kafka.bootstrap_servers",
            "is empty; give host:port[,host:port...]",
        ));
    }
    let group_id = k.group_id.unwrap_or_else(|| "driftwatch".into());
    if group_id.trim().is_empty() {
        return Err(invalid(
            "kafka.group_id",
            "is empty; name the consumer group",
        ));
    }
    let delivery = match k.delivery.as_deref().unwrap_or("at_least_once") {
        "at_least_once" => Delivery::AtLeastOnce,
        "exactly_once" => Delivery::ExactlyOnce,
        other => {
            return Err(invalid(
                "kafka.delivery",
                format!("`{other}` is not a delivery mode; use at_least_once or exactly_once"),
            ))
        }
    };
    let max_task_idle_ms = parse_duration_ms(
        "kafka.max_task_idle",
        k.max_task_idle.as_deref().unwrap_or("2s"),
    )?;
    let commit_interval_ms = parse_duration_ms(
        "kafka.commit_interval",
        k.commit_interval.as_deref().unwrap_or("1s"),
    )?;
    if commit_interval_ms <= 0 {
        return Err(invalid("kafka.commit_interval", "must be longer than zero"));
    }
    let unassigned_warning_ms = parse_duration_ms(
        "kafka.unassigned_warning",
        k.unassigned_warning.as_deref().unwrap_or("60s"),
    )?;
    if unassigned_warning_ms <= 0 {
        return Err(invalid(
            "kafka.unassigned_warning",
            "must be longer than zero",
        ));
    }
    if let Some(id) = &k.group_instance_id {
        if id.is_empty()
            || id.chars().count() > 249
            || id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "kafka.group_instance_id",
                format!("`{id}` is not a usable id; give 1 to 249 characters without spaces, unique to this detector in the group (a host or pod name)"),
            ));
        }
    }
    let partitioner = k.partitioner.as_deref().unwrap_or("murmur2").trim();
    let partitioner =
        crate::model::partitioner::Partitioner::parse(partitioner).ok_or_else(|| {
            invalid(
                "kafka.partitioner",
                format!("`{partitioner}` is not a partitioner; use murmur2 (the Java client's default) or crc32 (librdkafka's default)"),
            )
        })?;
    let route_by = match k.route_by.as_deref().map(str::trim) {
        None | Some("kafka_key") => crate::config::RouteBy::KafkaKey,
        Some("payload") => crate::config::RouteBy::Payload,
        Some(other) => {
            return Err(invalid(
                "kafka.route_by",
                format!("`{other}` is not a routing; use kafka_key (apply records in the partition producers chose) or payload (move each to its correlation key's partition)"),
            ))
        }
    };
    for key in k.librdkafka.keys() {
        if let Some((_, instead)) = MANAGED_PROPERTIES.iter().find(|(p, _)| p == key) {
            return Err(invalid(
                format!("kafka.librdkafka.\"{key}\""),
                format!("is set by driftwatch; use {instead}"),
            ));
        }
    }
    Ok(KafkaConfig {
        bootstrap_servers,
        group_id,
        delivery,
        max_task_idle_ms: max_task_idle_ms.max(0) as u64,
        commit_interval_ms: commit_interval_ms as u64,
        unassigned_warning_ms: unassigned_warning_ms as u64,
        group_instance_id: k.group_instance_id,
        partitioner,
        route_by,
        librdkafka: k.librdkafka,
    })
}

fn schemas_config(s: RawSchemas) -> Result<SchemasConfig, ConfigError> {
    let registry_url = match s.registry_url {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            return Err(invalid(
                "schemas.registry_url",
                format!("`{u}` is not an http:// or https:// URL"),
            ))
        }
        other => other.map(|u| u.trim_end_matches('/').to_string()),
    };
    let mut ids = BTreeMap::new();
    for (id, file) in s.ids {
        let n: u32 = id.parse().map_err(|_| {
            invalid(
                format!("schemas.ids.{id}"),
                "is not a schema id; keys are the numeric ids of the Confluent header",
            )
        })?;
        ids.insert(n, std::path::PathBuf::from(file));
    }
    Ok(SchemasConfig { registry_url, ids })
}
