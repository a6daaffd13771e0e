//! Every example event, and every finding of a replay, round-trips through
//! Avro with the Confluent wire format.

use driftwatch::codec::avro::{self, SchemaSet};
use driftwatch::codec::json::decode_json;
use driftwatch::config::Config;
use driftwatch::model::event::{Event, System};
use driftwatch::model::finding::Finding;
use driftwatch::model::time::Ts;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

fn examples() -> Vec<(System, Event)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    let mut out = Vec::new();
    for (file, system) in [
        ("hr.worker-events.jsonl", System::Hr),
        ("directory.account-changes.jsonl", System::Directory),
        ("app.entitlement-changes.jsonl", System::App),
    ] {
        for (n, line) in std::fs::read_to_string(dir.join(file))
            .unwrap()
            .lines()
            .enumerate()
        {
            let e = decode_json(system, line.as_bytes())
                .unwrap_or_else(|e| panic!("{file}:{}: {e}", n + 1));
            out.push((system, e));
        }
    }
    out
}

fn schemas() -> SchemaSet {
    let mut set = SchemaSet::new();
    set.insert(1, System::Hr, avro::input_schema(System::Hr));
    set.insert(2, System::Directory, avro::input_schema(System::Directory));
    set.insert(3, System::App, avro::input_schema(System::App));
    set
}

#[test]
fn every_example_event_round_trips_through_avro() {
    let set = schemas();
    let mut types = BTreeSet::new();
    for (system, event) in examples() {
        let id = match system {
            System::Hr => 1,
            System::Directory => 2,
            System::App => 3,
        };
        let bytes = avro::encode_event(id, set.get(id).unwrap(), &event).unwrap();
        assert_eq!(bytes[0], 0);
        let back = set
            .decode(system, &bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", event.event_id()));
        assert_eq!(back, event);
        types.insert(event.event_type());
    }
    // The examples cover every event type of the contract.
    assert_eq!(types.len(), 8 + 7 + 6, "{types:?}");
}

#[test]
fn wrong_schema_ids_and_families_are_decode_errors() {
    let set = schemas();
    let (_, hire) = examples().remove(0);
    let bytes = avro::encode_event(1, set.get(1).unwrap(), &hire).unwrap();
    let mut unknown = bytes.clone();
    unknown[4] = 99;
    assert_eq!(
        set.decode(System::Hr, &unknown).unwrap_err().error_type(),
        "unknown_schema"
    );
    assert_eq!(
        set.decode(System::Directory, &bytes)
            .unwrap_err()
            .error_type(),
        "invalid_avro"
    );
    assert_eq!(
        set.decode(System::Hr, &bytes[..7])
            .unwrap_err()
            .error_type(),
        "invalid_avro"
    );
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"xyz");
    assert!(set
        .decode(System::Hr, &trailing)
        .unwrap_err()
        .to_string()
        .contains("3 trailing bytes"));
}

#[test]
fn findings_round_trip_through_avro() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    let mut out = Vec::new();
    let until = Some(Ts::parse("2026-12-01T00:00:00Z").unwrap());
    driftwatch::replay::replay_dir(Arc::new(Config::default_config()), &dir, until, &mut out)
        .unwrap();
    let findings: Vec<Finding> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(findings.len() >= 5, "{} findings", findings.len());
    let schema = avro::schema(avro::FINDING_SCHEMA);
    for f in &findings {
        let bytes = avro::encode_finding(42, &schema, f).unwrap();
        let (id, mut datum) = avro::unframe(&bytes).unwrap();
        assert_eq!(id, 42);
        let value = apache_avro::from_avro_datum(&schema, &mut datum, None).unwrap();
        let back: Finding = avro::decode_finding(&value).unwrap();
        assert_eq!(&back, f);
    }
}

/// A schema registry speaking the Confluent API for one id, on a real socket.
async fn registry_serving(id: u32, schema: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = if path == format!("/schemas/ids/{id}") {
                (
                    "200 OK",
                    serde_json::json!({ "schema": schema }).to_string(),
                )
            } else {
                (
                    "404 Not Found",
                    r#"{"error_code":40403,"message":"Schema not found"}"#.to_string(),
                )
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_ids_resolve_through_the_schema_registry() {
    use driftwatch::kafka::InputDecoder;
    let url = registry_serving(42, avro::HR_SCHEMA).await;
    let cfg = Config::from_toml(&format!("[schemas]\nregistry_url = \"{url}\"")).unwrap();
    let decoder = InputDecoder::from_config(&cfg).unwrap();
    let (system, hire) = examples()
        .into_iter()
        .find(|(s, _)| *s == System::Hr)
        .unwrap();
    let known = avro::encode_event(42, &avro::input_schema(system), &hire).unwrap();
    decoder.ensure_schema(&known).unwrap();
    assert_eq!(decoder.decode(system, &known).unwrap(), hire);
    // An id the registry does not know is a dead letter, not a failure.
    let unknown = avro::encode_event(43, &avro::input_schema(system), &hire).unwrap();
    decoder.ensure_schema(&unknown).unwrap();
    let err = decoder.decode(system, &unknown).unwrap_err();
    assert_eq!(err.error_type(), "unknown_schema", "{err}");
    // JSON needs no registry.
    assert!(decoder.ensure_schema(b"{}").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_stops_decoding_instead_of_dead_lettering() {
    use driftwatch::kafka::InputDecoder;
    let (_held, port) = crate::harness::closed_port();
    let cfg = Config::from_toml(&format!(
        "[schemas]\nregistry_url = \"http://127.0.0.1:{port}\""
    ))
    .unwrap();
    let mut decoder = InputDecoder::from_config(&cfg).unwrap();
    decoder.registry_patience = std::time::Duration::from_millis(500);
    let framed = avro::confluent_frame(5, &[2, 0]);
    let err = decoder.ensure_schema(&framed).unwrap_err().to_string();
    assert!(err.contains("schema registry unavailable"), "{err}");
}

/// A schema registry that takes registrations the way a real one checks
/// them: the subject, a body whose `schema` is a valid Avro schema, and its
/// compatibility with the subject's versions (the test says which answer).
/// It records each registration's subject and schema.
async fn registering_registry(
    compatible: bool,
) -> (String, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen: Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            // Read the head, then the body of Content-Length bytes.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (buf.len(), 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    break (i + 4, len);
                }
            };
            while buf.len() < head_end + length {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
            let mut words = head.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let subject = path
                .strip_prefix("/subjects/")
                .and_then(|p| p.strip_suffix("/versions"));
            let (status, reply) = match (method, subject) {
                ("POST", Some(subject)) => {
                    let schema = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["schema"].as_str().map(str::to_string));
                    match schema.filter(|s| apache_avro::Schema::parse_str(s).is_ok()) {
                        None => (
                            "422 Unprocessable Entity",
                            r#"{"error_code":42201,"message":"Invalid schema"}"#.to_string(),
                        ),
                        Some(s) => {
                            log.lock().unwrap().push((subject.to_string(), s));
                            if compatible {
                                ("200 OK", r#"{"id":123}"#.to_string())
                            } else {
                                ("409 Conflict", r#"{"error_code":409,"message":"Schema being registered is incompatible with an earlier schema for subject"}"#.to_string())
                            }
                        }
                    }
                }
                _ => (
                    "404 Not Found",
                    r#"{"error_code":404,"message":"HTTP 404 Not Found"}"#.to_string(),
                ),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_findings_take_their_schema_id_from_the_registry() {
    use driftwatch::model::encoding::Encoding;
    let (url, seen) = registering_registry(true).await;
    let toml = format!(
        "[topics]\nfindings = \"soc.findings\"\n[output]\nencoding = \"avro\"\n[schemas]\nregistry_url = \"{url}\"\n"
    );
    // No avro_schema_id: valid with a registry.
    let cfg = Config::from_toml(&toml).unwrap();
    let enc = tokio::task::spawn_blocking(move || {
        driftwatch::codec::registry::settle_output(&cfg, &cfg.topics.findings)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(enc, Encoding::Avro { schema_id: 123 });
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "soc.findings-value", "TopicNameStrategy");
    assert_eq!(
        apache_avro::Schema::parse_str(&seen[0].1)
            .unwrap()
            .canonical_form(),
        avro::schema(avro::FINDING_SCHEMA).canonical_form(),
        "the registered schema is schemas/finding.avsc"
    );
    // A configured id is used as it is: the registry is not asked.
    let cfg = Config::from_toml(&format!("{toml}\n")).unwrap();
    let cfg = Config {
        output: Encoding::Avro { schema_id: 7 },
        output_schema_id_given: true,
        ..cfg
    };
    assert_eq!(
        driftwatch::codec::registry::settle_output(&cfg, "soc.findings").unwrap(),
        Encoding::Avro { schema_id: 7 }
    );
    // Without a registry, the id is required.
    let err = Config::from_toml("[output]\nencoding = \"avro\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("output.avro_schema_id") && err.contains("registry_url"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_finding_schema_stops_the_start_with_the_registry_answer() {
    let (url, _) = registering_registry(false).await;
    let cfg = Config::from_toml(&format!(
        "[output]\nencoding = \"avro\"\n[schemas]\nregistry_url = \"{url}\"\n"
    ))
    .unwrap();
    let err = tokio::task::spawn_blocking(move || {
        driftwatch::codec::registry::settle_output(&cfg, "identity.drift-findings")
    })
    .await
    .unwrap()
    .unwrap_err()
    .to_string();
    assert!(err.contains("incompatible"), "{err}");
    assert!(err.contains("identity.drift-findings-value"), "{err}");
    assert!(err.contains("HTTP 409"), "{err}");
}
