//! `driftwatch explain` on a leaver: the termination, the still-enabled
//! account, and the finding with owners and evidence offsets.

use std::process::Command;

fn dumps() -> std::path::PathBuf {
    leaver_dumps("explain")
}

/// A hire on the 3rd with an enabled directory account, and the worker's
/// termination on the 10th, as dumps in a directory of their own.
pub(crate) fn leaver_dumps(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(crate::harness::unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hr.worker-events.jsonl"),
        concat!(
            r#"{"event_id":"h1","event_type":"HIRE","occurred_at":"2026-11-03T09:00:00Z","effective_at":"2026-11-03T09:00:00Z","source_system":"workday","worker_id":"W000042","worker_type":"EMPLOYEE","department":"Sales"}"#,
            "\n",
            r#"{"event_id":"h2","event_type":"TERMINATION","occurred_at":"2026-11-10T17:00:00Z","effective_at":"2026-11-10T17:00:00Z","source_system":"workday","worker_id":"W000042","worker_type":"EMPLOYEE","department":"Sales"}"#,
            "\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("directory.account-changes.jsonl"),
        concat!(
            r#"{"event_id":"d1","event_type":"ACCOUNT_CREATED","occurred_at":"2026-11-03T09:05:00Z","directory":"entra","account_id":"u000042","worker_id":"W000042","account_kind":"HUMAN","owner_worker_id":null,"enabled":true,"department":"Sales","privileged":false}"#,
            "\n",
        ),
    )
    .unwrap();
    dir
}

fn explain(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn explain_shows_a_leaver_with_its_finding() {
    let dir = dumps();
    let input = dir.to_str().unwrap();
    let text = explain(&[
        "explain",
        "W000042",
        "--input",
        input,
        "--until",
        "2026-11-12T00:00:00Z",
    ]);
    assert!(text.contains("TERMINATION"), "{text}");
    assert!(text.contains("hr.worker-events[0]@1"), "{text}");
    assert!(text.contains("current state: status TERMINATED"), "{text}");
    assert!(
        text.contains("directory account entra/u000042 HUMAN ENABLED"),
        "{text}"
    );
    assert!(text.contains("OPEN LEAVER_DIRECTORY_ACCESS HIGH"), "{text}");
    assert!(
        text.contains("ESCALATED LEAVER_DIRECTORY_ACCESS HIGH"),
        "{text}"
    );
    assert!(text.contains("contributing IT it-identity"), "{text}");
    assert!(text.contains("accountable identity-governance"), "{text}");
    assert!(
        text.contains("evidence hr.worker-events[0]@1 TERMINATION h2"),
        "{text}"
    );
    assert!(
        text.contains("evidence directory.account-changes[0]@0"),
        "{text}"
    );

    let json: serde_json::Value = serde_json::from_str(&explain(&[
        "explain",
        "W000042",
        "--input",
        input,
        "--until",
        "2026-11-12T00:00:00Z",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["timeline"].as_array().unwrap().len(), 3);
    assert_eq!(json["state"]["accounts"][0]["enabled"], true);
    let f = &json["findings"][0];
    assert_eq!(f["rule"], "LEAVER_DIRECTORY_ACCESS");
    assert_eq!(f["detected_at"], "2026-11-10T18:00:00Z");
    assert_eq!(f["contributing_owner"]["team"], "it-identity");

    let missing = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["explain", "W999999", "--input", input])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not appear"));
    std::fs::remove_dir_all(&dir).unwrap();
}
