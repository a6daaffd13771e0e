use super::*;

#[track_caller]
fn check_err(toml: &str, expect: &str) {
    let err = Config::from_toml(toml).unwrap_err().to_string();
    assert!(err.contains(expect), "{err}\n does not contain\n{expect}");
}

#[test]
fn shipped_config_is_valid() {
    let c = Config::default_config();
    assert_eq!(c.rule(Rule::LeaverDirectoryAccess).sla_ms, 3_600_000);
    assert_eq!(c.topics.hr, vec!["hr.worker-events".to_string()]);
    assert_eq!(c.remediation_ms(Severity::Low), 7 * 86_400_000);
    // The shipped storm guard is the one a config that leaves it out gets.
    let (shipped, default) = (&c.storm, &Config::from_toml("").unwrap().storm);
    assert_eq!(
        (shipped.enabled, shipped.min_workers, shipped.window_ms),
        (default.enabled, default.min_workers, default.window_ms)
    );
    assert_eq!(shipped.fraction, default.fraction);
    assert_eq!(shipped.max_hold_ms, default.max_hold_ms);
    assert_eq!(shipped.max_hold_ms, 24 * 3_600_000);
}

#[test]
fn the_shipped_file_says_what_the_defaults_are() {
    // Every key the shipped file sets holds the value a config that leaves
    // it out gets. Its own are only the example organisation: the [apps]
    // sections, the teams' contacts and the escalation targets.
    let shipped = Config::default_config();
    let mut empty = Config::from_toml("").unwrap();
    assert!(!shipped.apps.is_empty() && empty.apps.is_empty());
    empty.apps = shipped.apps.clone();
    for (e, s) in [
        (&mut empty.hr, &shipped.hr),
        (&mut empty.it, &shipped.it),
        (&mut empty.default_app, &shipped.default_app),
    ] {
        assert_eq!(e.team, s.team);
        e.contact = s.contact.clone();
    }
    empty.escalation_target = shipped.escalation_target.clone();
    empty.critical_escalation_target = shipped.critical_escalation_target.clone();
    assert_eq!(format!("{shipped:#?}"), format!("{empty:#?}"));
}

#[test]
fn admin_listen_takes_host_names() {
    let c = Config::from_toml("[admin]\nlisten = \"localhost:9464\"\n").unwrap();
    let addr = c.admin_listen.unwrap();
    assert!(addr.ip().is_loopback() && addr.port() == 9464, "{addr}");
    check_err(
        "[admin]\nlisten = \"localhost\"\n",
        "`admin.listen`: `localhost` has no port",
    );
    check_err(
        "[admin]\nlisten = \"localhost:http\"\n",
        "`admin.listen`: `localhost:http` is not host:port",
    );
}

#[test]
fn empty_config_takes_contract_defaults() {
    let c = Config::from_toml("").unwrap();
    for rule in Rule::ALL {
        assert_eq!(*c.rule(*rule), RuleConfig::default_of(*rule), "{rule}");
    }
    assert_eq!(c.topics.findings, "identity.drift-findings");
}

#[test]
fn checkpoint_interval_defaults_to_the_commit_interval() {
    let c = Config::from_toml("[kafka]\ncommit_interval = \"250ms\"").unwrap();
    assert_eq!(c.checkpoint_interval_ms, 250);
    let c = Config::from_toml("[state]\ncheckpoint_interval = \"0s\"").unwrap();
    assert_eq!(
        (c.checkpoint_interval_ms, c.kafka.commit_interval_ms),
        (0, 1_000)
    );
    check_err(
        "[state]\ncheckpoint_interval = \"often\"",
        "`state.checkpoint_interval`: `often` is not a duration",
    );
}

#[test]
fn bad_values_name_the_field() {
    check_err(
        "[rules.LEAVER_DIRECTORY_ACCESS]\nsla = \"an hour\"",
        "`rules.LEAVER_DIRECTORY_ACCESS.sla`: `an hour` is not a duration",
    );
    check_err(
        "[rules.LEAVER_DIRECTORY_ACCES]\nsla = \"1h\"",
        "`rules.LEAVER_DIRECTORY_ACCES`: unknown rule id",
    );
    check_err(
        "[rules.ORPHAN_ACCOUNT]\nseverity = \"SEVERE\"",
        "`rules.ORPHAN_ACCOUNT.severity`: `SEVERE` is not a severity",
    );
    check_err("[storm]\nfraction = 5.0", "`storm.fraction`");
    check_err(
        "[storm]\nwindow = \"10m\"\nmax_hold = \"5m\"",
        "`storm.max_hold`: must be at least storm.window",
    );
    check_err("[topics]\nhr = \"bad topic!\"", "`topics.hr`");
    check_err(
        "[topics]\nhr = \"x\"\napp = \"x\"",
        "`topics.app`: topic `x` is also listed in `topics.hr`",
    );
    check_err("[owners]\ngovernance = \"x\"", "unknown field `governance`");
    check_err(
        "[rules.LEAVER_APP_ACCESS]\nseverity = \"CRITICAL\"\nelevated_severity = \"LOW\"",
        "`rules.LEAVER_APP_ACCESS.elevated_severity`",
    );
    check_err("[apps.crm]\ncontact = \"x\"", "missing field `team`");
    check_err(
        "[kafka]\ndelivery = \"twice\"",
        "`kafka.delivery`: `twice` is not a delivery mode",
    );
    check_err(
        "[kafka.librdkafka]\n\"group.id\" = \"x\"",
        "use kafka.group_id",
    );
    check_err("[schemas.ids]\nhr = \"x.avsc\"", "`schemas.ids.hr`");
    check_err(
        "[detector]\nidle_advance = \"soon\"",
        "`detector.idle_advance`",
    );
    check_err("[state]\ndedup_max_age = \"0s\"", "`state.dedup_max_age`");
    check_err("[kafka]\npartitioner = \"random\"", "`kafka.partitioner`");
}

#[test]
fn environment_overrides_name_their_keys() {
    let vars = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let (c, table) = Config::load_layered(
        None,
        vars(&[
            ("DRIFTWATCH_KAFKA__BOOTSTRAP_SERVERS", "b1:9092,b2:9092"),
            ("DRIFTWATCH_KAFKA__LIBRDKAFKA__SASL_PASSWORD", "hunter2"),
            // librdkafka values stay text, even where they read as numbers.
            ("DRIFTWATCH_KAFKA__LIBRDKAFKA__LINGER_MS", "7"),
            (
                "DRIFTWATCH_KAFKA__LIBRDKAFKA__BROKER_VERSION_FALLBACK",
                "0.10",
            ),
            ("DRIFTWATCH_RULES__ORPHAN_ACCOUNT__SLA", "2h"),
            ("DRIFTWATCH_STORM__MIN_WORKERS", "7"),
            ("DRIFTWATCH_TANSU_BOOTSTRAP", "not a config key"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(c.kafka.bootstrap_servers, "b1:9092,b2:9092");
    assert_eq!(c.kafka.librdkafka["sasl.password"], "hunter2");
    assert_eq!(c.kafka.librdkafka["linger.ms"], "7");
    assert_eq!(c.kafka.librdkafka["broker.version.fallback"], "0.10");
    assert_eq!(c.rule(Rule::OrphanAccount).sla_ms, 2 * 3_600_000);
    assert_eq!(c.storm.min_workers, 7);
    let shown = toml::to_string(&redacted(&table)).unwrap();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("sasl.password"), "{shown}");
    let err = Config::load_layered(None, vars(&[("DRIFTWATCH_KAFKA__BOOTSTRAP", "x")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `bootstrap`"), "{err}");
    assert!(err.contains("DRIFTWATCH_KAFKA__BOOTSTRAP"), "{err}");
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let c = Config::from_toml(
        "[kafka.librdkafka]\n\"sasl.password\" = \"hunter2\"\n\"sasl.username\" = \"svc\"",
    )
    .unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("svc"), "{shown}");
    assert_eq!(
        Config::from_toml("[detector]\nidle_advance = \"off\"")
            .unwrap()
            .idle_advance_ms,
        None
    );
}

#[test]
fn dedup_max_age_and_partitioner_defaults_and_choices() {
    let default = Config::from_toml("").unwrap();
    assert_eq!(default.dedup_max_age_ms, Some(7 * 86_400_000));
    assert_eq!(default.kafka.partitioner.as_str(), "murmur2");
    let off = Config::from_toml("[state]\ndedup_max_age = \"off\"").unwrap();
    assert_eq!(off.dedup_max_age_ms, None);
    let crc = Config::from_toml("[kafka]\npartitioner = \"crc32\"").unwrap();
    assert_eq!(crc.kafka.partitioner.as_str(), "crc32");
}

#[test]
fn routing_by_payload_needs_the_changelog_and_at_least_once() {
    use crate::config::RouteBy;
    let default = Config::from_toml("").unwrap();
    assert_eq!(default.kafka.route_by, RouteBy::KafkaKey);
    assert_eq!(default.topics.repartition, "driftwatch.repartition");
    let routed =
        Config::from_toml("[kafka]\nroute_by = \"payload\"\n[state]\nchangelog = true\n").unwrap();
    assert_eq!(routed.kafka.route_by, RouteBy::Payload);
    for (toml, says) in [
        ("[kafka]\nroute_by = \"payload\"\n", "state.changelog = true"),
        (
            "[kafka]\nroute_by = \"payload\"\ndelivery = \"exactly_once\"\n[state]\nchangelog = true\n",
            "at_least_once",
        ),
        ("[kafka]\nroute_by = \"key\"\n", "kafka_key"),
    ] {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains("kafka.route_by") && err.contains(says), "{err}");
    }
    for clash in [
        "driftwatch.state",
        "identity.drift-findings",
        "hr.worker-events",
    ] {
        let err = Config::from_toml(&format!("[topics]\nrepartition = \"{clash}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("topics.repartition"), "{err}");
    }
    // Routing decides where a key's state lives: part of the fingerprint.
    use crate::detect::engine::config_fingerprint;
    let unrouted = Config::from_toml("[state]\nchangelog = true\n").unwrap();
    assert_ne!(config_fingerprint(&unrouted), config_fingerprint(&routed));
    assert_eq!(config_fingerprint(&unrouted), config_fingerprint(&default));
}

#[test]
fn group_instance_id_is_checked_and_only_set_through_its_field() {
    let c = Config::from_toml("[kafka]\ngroup_instance_id = \"detector-eu-1\"\n").unwrap();
    assert_eq!(c.kafka.group_instance_id.as_deref(), Some("detector-eu-1"));
    assert_eq!(Config::from_toml("").unwrap().kafka.group_instance_id, None);
    // A pod ordinal from the environment stays a string.
    let (c, _) = Config::load_layered(
        None,
        [(
            "DRIFTWATCH_KAFKA__GROUP_INSTANCE_ID".to_string(),
            "0".to_string(),
        )],
    )
    .unwrap();
    assert_eq!(c.kafka.group_instance_id.as_deref(), Some("0"));
    for bad in ["", "two words", "tab\there"] {
        let err = Config::from_toml(&format!("[kafka]\ngroup_instance_id = \"{bad}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka.group_instance_id"), "{err}");
    }
    let err = Config::from_toml("[kafka.librdkafka]\n\"group.instance.id\" = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("use kafka.group_instance_id"), "{err}");
}
