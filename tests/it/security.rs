//! Secrets in the config never appear in logs, metrics, `check-config`
//! output or errors; the admin port is loopback unless told otherwise.

use crate::harness::{Broker, Setup};
use std::process::Command;
use std::time::Duration;

const SECRETS: [&str; 5] = [
    "hunter2-SASL-secret",
    "hunter2-KEY-secret",
    "hunter2-REGISTRY-secret",
    "hunter2-ENV-secret",
    "hunter2-ADMIN-TOKEN-secret",
];

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows a secret:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_secret() {
    let broker = Broker::mock();
    let s = Setup::new(&broker, "secrets").await.edit_config(|t| {
        *t = t.replace(
            "[kafka.librdkafka]\n",
            "[kafka.librdkafka]\n\"sasl.username\" = \"svc-driftwatch\"\n\"sasl.password\" = \"hunter2-SASL-secret\"\n\"ssl.key.password\" = \"hunter2-KEY-secret\"\n",
        );
        t.push_str("\n[schemas]\nregistry_url = \"http://reader:hunter2-REGISTRY-secret@127.0.0.1:9\"\n");
        *t = t.replace("[admin]\n", "[admin]\ntoken = \"hunter2-ADMIN-TOKEN-secret\"\n");
    });
    let bin = env!("CARGO_BIN_EXE_driftwatch");
    let env_secret = (
        "DRIFTWATCH_KAFKA__LIBRDKAFKA__SSL_KEYSTORE_PASSWORD",
        "hunter2-ENV-secret",
    );

    // check-config prints the effective config, redacted.
    let out = Command::new(bin)
        .args(["check-config", "--config"])
        .arg(s.config_path())
        .env(env_secret.0, env_secret.1)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_clean("check-config", &text);
    assert!(
        text.contains("\"sasl.password\" = \"[redacted]\""),
        "{text}"
    );
    assert!(
        text.contains("\"ssl.keystore.password\" = \"[redacted]\""),
        "{text}"
    );
    assert!(text.contains("token = \"[redacted]\""), "{text}");
    assert!(
        text.contains("svc-driftwatch"),
        "non-secret values stay visible: {text}"
    );

    // A config error elsewhere does not echo the secrets.
    let bad = s.dir.join("bad.toml");
    let mut toml = std::fs::read_to_string(s.config_path()).unwrap();
    toml.push_str("\n[storm]\nfraction = 7.0\n");
    std::fs::write(&bad, toml).unwrap();
    let out = Command::new(bin)
        .args(["run", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_clean("config errors", &String::from_utf8_lossy(&out.stderr));

    // A running detector, at debug level: its logs and metrics.
    let mut d = s.detector_logging("detector", "debug");
    d.wait_for_log("state restored", Duration::from_secs(60));
    let produced = s.produce_generated(5, 20, 20).await.len() as f64;
    // Wait until every event went through, so that what is checked below
    // was really logged and counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while crate::harness::Setup::metric_sum(&s.scrape(), "driftwatch_events_consumed_total")
        < produced
    {
        d.assert_running();
        assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = ureq::get(&format!("http://{}/metrics", s.admin))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("driftwatch_events_consumed_total"),
        "{metrics}"
    );
    assert_clean("/metrics", &metrics);
    assert!(d.terminate().success(), "{}", d.log_text());
    assert_clean("logs", &d.log_text());
}

#[test]
fn the_admin_port_is_loopback_by_default() {
    let cfg = driftwatch::config::Config::default_config();
    let addr = cfg.admin_listen.expect("on by default");
    assert!(addr.ip().is_loopback(), "{addr}");
    let open = driftwatch::config::Config::from_toml("[admin]\nlisten = \"0.0.0.0:9464\"").unwrap();
    assert!(!open.admin_listen.unwrap().ip().is_loopback());
    let off = driftwatch::config::Config::from_toml("[admin]\nlisten = \"off\"").unwrap();
    assert!(off.admin_listen.is_none());
}
