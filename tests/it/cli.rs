//! The command line as a new user meets it: commands that stop when told
//! to, errors that say what to do, flags that do what they say or are
//! refused, logs a person can read.
//!
//! Bounds on waiting here (a minute for a process to stop) detect a hang;
//! they assert nothing about speed.

use crate::harness::{Broker, Setup};
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_driftwatch"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Runs a command that must end by itself within `limit` (else it hangs).
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not end within {limit:?}; its stderr:\n{}",
                String::from_utf8_lossy(&err_reader.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

fn examples() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples"))
}

#[test]
fn nonsense_arguments_are_refused_before_anything_runs() {
    for args in [
        &["demo", "--partitions", "0"][..],
        &["demo", "--rate", "0"],
        &["demo", "--workers", "0"],
        &["demo", "--duration", "0s"],
        &["generate", "--rate", "0"],
        &["generate", "--duration", "0s"],
        &["bench", "--partitions", "0"],
        &["create-topics", "--partitions", "0"],
    ] {
        let out = run_bounded(bin().args(args), Duration::from_secs(30));
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(args[1]), "{args:?} names the flag: {t}");
    }
}

#[test]
fn flags_of_another_mode_are_refused() {
    let input = examples().to_str().unwrap();
    for (args, flag) in [
        (
            vec!["replay", "--input", input, "--to-topic", "x"],
            "--to-topic",
        ),
        (
            vec!["replay", "--input", input, "--from", "2026-11-01T00:00:00Z"],
            "--from",
        ),
        (
            vec!["replay", "--input", input, "--bootstrap-servers", "k:9092"],
            "--bootstrap-servers",
        ),
        (
            vec!["replay", "--kafka", "--partitions", "3"],
            "--partitions",
        ),
        (
            vec![
                "replay",
                "--input",
                input,
                "--from-event-time",
                "2026-11-01T00:00:00Z",
            ],
            "--from-event-time",
        ),
        (
            vec![
                "explain",
                "W1",
                "--admin",
                "http://127.0.0.1:1",
                "--until",
                "2026-11-01T00:00:00Z",
            ],
            "--until",
        ),
    ] {
        let out = run_bounded(bin().args(&args), Duration::from_secs(30));
        let t = text(&out);
        assert!(!out.status.success(), "{args:?} must fail: {t}");
        assert!(t.contains(flag), "{args:?}: {t}");
    }
    // explain with no source says where it can look.
    let out = run_bounded(bin().args(["explain", "W1"]), Duration::from_secs(30));
    let t = text(&out);
    assert!(!out.status.success());
    for source in ["--input", "--kafka", "--admin"] {
        assert!(t.contains(source), "{t}");
    }
    // Avro on a topic needs a schema id: refused, not framed with id 0.
    let out = run_bounded(
        bin().args(["replay", "--kafka", "--format", "avro", "--to-topic", "x"]),
        Duration::from_secs(30),
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("avro_schema_id"), "{t}");
}

#[test]
fn every_option_has_a_description_and_help_begins_with_its_own_command() {
    let out = run_bounded(bin().arg("--help"), Duration::from_secs(30));
    let top = text(&out);
    assert!(
        top.contains("--kafka"),
        "replay's summary names --kafka: {top}"
    );
    for cmd in [
        "replay",
        "demo",
        "run",
        "generate",
        "bench",
        "create-topics",
        "explain",
        "check-config",
    ] {
        let out = run_bounded(bin().args([cmd, "--help"]), Duration::from_secs(30));
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        let lines: Vec<&str> = t.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let l = line.trim_start();
            if !l.starts_with('-') || l.starts_with("-h,") || l.starts_with("-V") {
                continue;
            }
            // "--flag <VALUE>  Description": something after the flag.
            let words: Vec<&str> = l.split_whitespace().collect();
            let described = words
                .iter()
                .skip(1)
                .any(|w| !w.starts_with('<') && !w.starts_with('-') && !w.ends_with(','));
            // Long descriptions go on the next line.
            let next = lines.get(i + 1).map_or("", |n| n.trim());
            let below = !next.is_empty() && !next.starts_with('-');
            assert!(
                described || below,
                "`{cmd} --help`: `{l}` has no description"
            );
        }
    }
    let out = run_bounded(bin().args(["explain", "--help"]), Duration::from_secs(30));
    assert!(
        text(&out).starts_with("One worker"),
        "explain's help is its own: {}",
        text(&out)
    );
}

#[test]
fn a_missing_config_file_is_reported_once() {
    let out = run_bounded(
        bin().args(["check-config", "--config", "/nonexistent/driftwatch.toml"]),
        Duration::from_secs(30),
    );
    let t = text(&out);
    assert!(!out.status.success());
    assert_eq!(t.matches("No such file").count(), 1, "{t}");
}

#[test]
fn an_unreachable_cluster_is_one_error_that_names_it() {
    let (_held, port) = crate::harness::closed_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(crate::harness::unique("unreachable"));
    std::fs::create_dir_all(&dir).unwrap();
    // A config that sets only [kafka]: no apps.
    let config = dir.join("only-kafka.toml");
    std::fs::write(
        &config,
        format!("[kafka]\nbootstrap_servers = \"{bootstrap}\"\n\n[admin]\nlisten = \"off\"\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    for args in [
        vec!["generate", "--duration", "2s", "--config", config],
        vec!["run", "--config", config],
        vec!["create-topics", "--config", config],
        vec!["replay", "--kafka", "--config", config],
        vec!["explain", "W1", "--kafka", "--config", config],
    ] {
        let out = run_bounded(bin().args(&args), Duration::from_secs(90));
        let t = text(&out);
        // Transient: a supervisor may simply restart it.
        assert_eq!(out.status.code(), Some(75), "{args:?}: {t}");
        let last = t.lines().last().unwrap_or_default();
        assert!(
            last.contains("no Kafka broker answered") && last.contains(&bootstrap),
            "{args:?} ends with one line naming the bootstrap servers: {t}"
        );
        assert_eq!(
            t.matches("no Kafka broker answered").count(),
            1,
            "{args:?}: {t}"
        );
        // librdkafka's connection errors, once per cause, not a flood.
        assert!(t.lines().count() < 20, "{args:?}: {t}");
        if args[0] == "run" {
            assert!(t.contains("no [apps.<app_id>] section"), "{t}");
        }
    }
}

#[test]
fn replay_until_is_the_state_as_of_that_time() {
    // A hire with an account on the 3rd and the worker's termination on
    // the 10th, and an orphan account on the 3rd (ORPHAN_ACCOUNT an hour
    // later).
    let dir = crate::explain::leaver_dumps("until");
    let mut dir_file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("directory.account-changes.jsonl"))
        .unwrap();
    std::io::Write::write_all(
        &mut dir_file,
        concat!(
            r#"{"event_id":"d0","event_type":"ACCOUNT_CREATED","occurred_at":"2026-11-03T09:00:00Z","directory":"entra","account_id":"stray","worker_id":null,"account_kind":"HUMAN","owner_worker_id":null,"enabled":true,"privileged":false}"#,
            "\n",
        )
        .as_bytes(),
    )
    .unwrap();
    let input = dir.to_str().unwrap().to_string();
    let replay = |until: &str, out: &str| -> (String, Vec<serde_json::Value>) {
        let o = run_bounded(
            bin()
                .args(["replay", "--input", &input, "--until", until, "--output"])
                .arg(dir.join(out)),
            Duration::from_secs(60),
        );
        assert!(o.status.success(), "{}", text(&o));
        let findings = std::fs::read_to_string(dir.join(out))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (text(&o), findings)
    };
    let (summary, full) = replay("2026-11-12T00:00:00Z", "full.jsonl");
    assert!(!summary.contains("after --until"), "{summary}");
    assert!(
        summary.contains("in 1 partition task "),
        "singular: {summary}"
    );
    let rules = |f: &[serde_json::Value]| -> Vec<String> {
        f.iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["rule"].as_str().unwrap(),
                    f["status"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        rules(&full),
        [
            "ORPHAN_ACCOUNT OPEN",
            "ORPHAN_ACCOUNT ESCALATED",
            "LEAVER_DIRECTORY_ACCESS OPEN",
            "LEAVER_DIRECTORY_ACCESS ESCALATED"
        ],
        "{full:?}"
    );
    // As of the 5th, the termination had not happened: no leaver finding,
    // and nothing dated after the 5th.
    let until = "2026-11-05T00:00:00Z";
    let (summary, early) = replay(until, "early.jsonl");
    assert!(
        summary.contains("1 event after --until not applied"),
        "the summary counts what was left out: {summary}"
    );
    assert_eq!(rules(&early), ["ORPHAN_ACCOUNT OPEN"], "{early:?}");
    for f in &early {
        assert!(f["transitioned_at"].as_str().unwrap() <= until, "{f}");
    }
    // explain answers as of the same time.
    let o = run_bounded(
        bin().args(["explain", "W000042", "--input", &input, "--until", until]),
        Duration::from_secs(60),
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("current state: status ACTIVE"), "{t}");
    assert!(!t.contains("TERMINATION"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_on_sigterm_when_its_stderr_is_gone() {
    let broker = Broker::mock();
    let s = Setup::new(&broker, "stderr-gone").await;
    s.produce_generated(3, 50, 50).await;
    let mut child = bin()
        .args(["run", "--config"])
        .arg(s.config_path())
        // Logs on every poll: writes to the closed pipe for sure.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read a little, as `| head -1` does, then close the pipe.
    let mut stderr = child.stderr.take().unwrap();
    let mut first = [0u8; 64];
    let _ = stderr.read(&mut first).unwrap();
    drop(stderr);
    // Running and serving: ready once its partitions are restored.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(child.try_wait().unwrap().is_none(), "exited early");
        if ureq::get(&format!("http://{}/readyz", s.admin))
            .call()
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("SIGTERM ignored with stderr closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "a graceful stop: {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_admin_port_stops_run_and_demo_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let broker = Broker::mock();
    let s = Setup::new(&broker, "port-taken").await;
    let out = run_bounded(
        bin()
            .args(["run", "--config"])
            .arg(s.config_path())
            .env("DRIFTWATCH_ADMIN__LISTEN", &addr),
        Duration::from_secs(60),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&addr) && t.contains("admin.listen"), "{t}");
    let out = run_bounded(
        bin()
            .args(["demo", "--duration", "5s"])
            .env("DRIFTWATCH_ADMIN__LISTEN", &addr),
        Duration::from_secs(60),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&addr), "{t}");
    assert!(
        !t.contains("curl http"),
        "no URL of a port it did not get: {t}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_checks_the_partitions_of_existing_topics() {
    // The mock cluster has no admin API: every topic exists already, so
    // create-topics only checks them.
    let broker = Broker::mock();
    let s = Setup::new(&broker, "create-topics").await;
    let config = s.config_path();
    let out = run_bounded(
        bin()
            .args(["create-topics", "--partitions", "6", "--config"])
            .arg(&config),
        Duration::from_secs(60),
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(".hr has 3") && t.contains("co-partitioned"),
        "{t}"
    );
    let out = run_bounded(
        bin()
            .args(["create-topics", "--partitions", "3", "--config"])
            .arg(&config),
        Duration::from_secs(60),
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(".hr: exists (3 partitions)"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_a_missing_topic_and_generate_to_missing_topics_fail_first() {
    let broker = Broker::mock();
    let s = Setup::new(&broker, "missing-topic").await;
    let config = s.config_path();
    let out = run_bounded(
        bin()
            .args([
                "replay",
                "--kafka",
                "--to-topic",
                "no-such-topic",
                "--config",
            ])
            .arg(&config),
        Duration::from_secs(60),
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("no-such-topic"), "{t}");
    assert!(!t.contains("replayed"), "checked before reading: {t}");
    let toml = std::fs::read_to_string(&config)
        .unwrap()
        .replace(".hr\"", ".hr-missing\"");
    let other = s.dir.join("missing-hr.toml");
    std::fs::write(&other, toml).unwrap();
    let out = run_bounded(
        bin()
            .args(["generate", "--duration", "60s", "--config"])
            .arg(&other),
        Duration::from_secs(60),
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains(".hr-missing"), "{t}");
    assert!(!t.contains("produced"), "checked before producing: {t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_kafka_selects_by_event_time_and_says_what_is_there() {
    let broker = Broker::mock();
    let s = Setup::new(&broker, "event-window").await;
    let events = s.produce_generated(11, 40, 200).await;
    let config = s.config_path();
    let mut times: Vec<String> = events.iter().map(|e| e.occurred_at().to_string()).collect();
    times.sort();
    let from = times[times.len() / 2].clone();
    let out = run_bounded(
        bin()
            .args(["replay", "--kafka", "--from-event-time", &from, "--config"])
            .arg(&config),
        Duration::from_secs(120),
    );
    let t = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{t}");
    let expected_applied = times.iter().filter(|t| **t >= from).count();
    assert!(
        t.contains(&format!("replayed {expected_applied} events")),
        "{expected_applied} applied: {t}"
    );
    assert!(
        t.contains(&format!(
            "{} events outside the event-time window",
            times.len() - expected_applied
        )),
        "{} events produced: {t}",
        times.len()
    );
    // A window that selects nothing says what the topics hold.
    let out = run_bounded(
        bin()
            .args([
                "replay",
                "--kafka",
                "--from-event-time",
                "2100-01-01T00:00:00Z",
                "--config",
            ])
            .arg(&config),
        Duration::from_secs(120),
    );
    let t = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{t}");
    assert!(t.contains("no event selected"), "{t}");
    assert!(t.contains(&format!("from {}", times[0])), "{t}");
    assert!(t.contains(&format!("to {}", times[times.len() - 1])), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_are_logged_and_a_member_without_partitions_warns() {
    let broker = Broker::mock();
    // Four members, three partitions: one holds none.
    let s = Setup::with_kafka(&broker, "unassigned", "unassigned_warning = \"2s\"").await;
    s.produce_generated(5, 60, 100).await;
    let mut detectors: Vec<_> = (0..4)
        .map(|i| {
            let admin = if i == 0 {
                s.admin.to_string()
            } else {
                "off".into()
            };
            s.detector_env(
                &format!("d{i}"),
                &[("DRIFTWATCH_ADMIN__LISTEN", admin.as_str())],
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let warned = loop {
        for d in detectors.iter_mut() {
            d.assert_running();
        }
        if let Some(d) = detectors
            .iter()
            .find(|d| d.log_text().contains("has held no partition for"))
        {
            break d.log_text();
        }
        assert!(
            Instant::now() < deadline,
            "no member warned:\n{}",
            crate::harness::joined_logs(&detectors)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(warned.contains("/readyz reports not ready"), "{warned}");
    // A progress line while there is work.
    while !detectors
        .iter()
        .any(|d| d.log_text().contains("progress: "))
    {
        assert!(Instant::now() < deadline, "no progress line");
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs: Vec<String> = detectors.iter().map(|d| d.log_text()).collect();
    let all = logs.join("\n");
    assert!(all.contains("rebalance: assigned partitions "), "{all}");
    // Readable text: no colour codes in a log file, no Rust debug maps,
    // no librdkafka warnings about properties of the other client kind.
    assert!(!all.contains('\u{1b}'), "ANSI codes in a file: {all}");
    assert!(!all.contains("committed={"), "{all}");
    assert!(!all.contains("CONFWARN"), "{all}");
    // The admin line names the routes, the /v1 queries included.
    assert!(all.contains("/v1/findings"), "{all}");
    for d in detectors.iter_mut() {
        assert!(d.terminate().success());
    }
}

/// `replay --input --partitions N` with `kafka.route_by = "payload"`:
/// plain lines all sit in partition 0, and routing spreads them over the
/// partitions their keys belong to among N.
#[test]
fn replay_routes_dumps_over_the_partitions_given() {
    let dir = std::env::temp_dir().join(crate::harness::unique("routed-replay"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("driftwatch.toml");
    std::fs::write(
        &config,
        "[kafka]\nroute_by = \"payload\"\n[state]\nchangelog = true\n",
    )
    .unwrap();
    let input = examples().to_str().unwrap();
    let summary = |partitions: &str| {
        let out = run_bounded(
            bin()
                .args(["replay", "--input", input, "--config"])
                .arg(&config)
                .args(["--partitions", partitions, "--output", "-"]),
            Duration::from_secs(30),
        );
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        t
    };
    assert!(
        summary("1").contains("in 1 partition task"),
        "{}",
        summary("1")
    );
    let spread = summary("4");
    assert!(spread.contains("partition tasks"), "{spread}");
    let _ = std::fs::remove_dir_all(&dir);
}
