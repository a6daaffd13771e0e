//! Bad input is refused and nothing is lost: a corpus of more than 10,000
//! malformed messages of every kind, interleaved with good ones, against
//! both brokers.

use crate::harness::{finding_set, Broker, Setup};
use driftwatch::codec::json::to_json;
use driftwatch::tools::generate::Rng;
use rdkafka::producer::FutureRecord;
use std::collections::BTreeMap;
use std::time::Duration;

const CATCH_UP: Duration = Duration::from_secs(240);

/// One malformed message and the dead-letter type it must get.
struct Bad {
    topic: usize,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    expect: &'static str,
}

/// A valid event's JSON, broken in the way `kind` says.
fn corrupt(rng: &mut Rng, good: &str, kind: u64) -> (Option<Vec<u8>>, &'static str) {
    match kind {
        0 => {
            // Truncated JSON.
            let cut = 1 + rng.below(good.len() as u64 - 2) as usize;
            (Some(good.as_bytes()[..cut].to_vec()), "malformed_json")
        }
        1 => (Some(b"not json at all \x01\x02".to_vec()), "malformed_json"),
        2 => {
            // A wrong type.
            let v = good.replacen("\"event_id\":\"", "\"event_id\":42,\"x\":\"", 1);
            (Some(v.into_bytes()), "invalid_field")
        }
        3 => {
            // A missing required field.
            let mut v: serde_json::Value = serde_json::from_str(good).unwrap();
            v.as_object_mut().unwrap().remove("event_type");
            (Some(v.to_string().into_bytes()), "invalid_field")
        }
        4 => {
            // An unknown enum value.
            let mut v: serde_json::Value = serde_json::from_str(good).unwrap();
            v["event_type"] = "FIRED_OUT_OF_A_CANNON".into();
            (Some(v.to_string().into_bytes()), "invalid_field")
        }
        5 => {
            // Invalid UTF-8 inside a string.
            let mut b = good.as_bytes().to_vec();
            let at = b.iter().position(|c| *c == b':').unwrap() + 2;
            b.splice(at..at, [0xff, 0xfe, 0xfd]);
            (Some(b), "invalid_utf8")
        }
        6 => (None, "empty"), // tombstone
        7 => (Some(Vec::new()), "empty"),
        8 => {
            // Avro with a schema id nobody registered.
            let mut b = vec![0, 0, 0, 3, 231];
            b.extend_from_slice(&good.as_bytes()[..20]);
            (Some(b), "unknown_schema")
        }
        _ => {
            // Wrong timestamp text.
            let v = good.replacen("\"occurred_at\":\"", "\"occurred_at\":\"yesterday", 1);
            (Some(v.into_bytes()), "invalid_field")
        }
    }
}

async fn bad_input_corpus_is_dead_lettered_and_nothing_is_lost(broker: Broker) {
    let limit = 16 * 1024;
    let s = Setup::new(&broker, "corpus").await.edit_config(|t| {
        *t = t.replace(
            "[detector]\n",
            &format!("[detector]\nmax_message_bytes = {limit}\n"),
        )
    });
    let topics = [
        s.cfg.topics.hr[0].clone(),
        s.cfg.topics.directory[0].clone(),
        s.cfg.topics.app[0].clone(),
    ];
    let good = s.produce_generated(101, 200, 0).await;
    let mut rng = Rng::new(7);
    let mut bad: Vec<Bad> = Vec::new();
    for i in 0..10_200u64 {
        let sample = &good[rng.below(good.len() as u64) as usize];
        let json = to_json(sample);
        // To its own family's topic, so the expected error type is exact.
        let topic = match sample.system() {
            driftwatch::model::event::System::Hr => 0,
            driftwatch::model::event::System::Directory => 1,
            driftwatch::model::event::System::App => 2,
        };
        let (payload, expect) = if i % 200 == 0 {
            // Oversize: valid JSON padded past the limit.
            let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
            v["padding"] = "x".repeat(limit + 100).into();
            (Some(v.to_string().into_bytes()), "oversize")
        } else {
            let kind = rng.below(10);
            corrupt(&mut rng, &json, kind)
        };
        // Every fifth one has no key.
        let key = (i % 5 != 0).then(|| sample.key().id().as_bytes().to_vec());
        bad.push(Bad {
            topic,
            key,
            payload,
            expect,
        });
    }
    // Interleave: bad messages between rounds of good lifecycle changes.
    let producer = driftwatch::kafka::producer(&s.cfg).unwrap();
    for chunk in bad.chunks(1000) {
        let mut pending = Vec::new();
        for b in chunk {
            let mut record = FutureRecord::<[u8], [u8]>::to(&topics[b.topic]);
            if let Some(k) = &b.key {
                record = record.key(k);
            }
            if let Some(p) = &b.payload {
                record = record.payload(p);
            }
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for p in pending {
            p.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
        s.produce_more(60).await;
    }
    let mut d = s.detector("detector");
    s.wait_caught_up(CATCH_UP, &mut [&mut d]);
    let samples = s.scrape();
    assert!(d.terminate().success(), "{}", d.log_text());

    let dead = s.read_topic(&s.cfg.topics.dead_letter);
    assert_eq!(dead.len(), bad.len(), "every bad message is a dead letter");
    let mut want: BTreeMap<&str, usize> = BTreeMap::new();
    for b in &bad {
        *want.entry(b.expect).or_default() += 1;
    }
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &dead {
        *got.entry(r.headers["dw.error.type"].as_str()).or_default() += 1;
        assert!(!r.headers["dw.error.reason"].is_empty());
        assert!(topics.contains(&r.headers["dw.source.topic"]));
    }
    assert_eq!(got, want);
    assert_eq!(
        Setup::metric_sum(&samples, "driftwatch_dead_letters_total"),
        bad.len() as f64
    );
    assert_eq!(
        Setup::metric_sum(&samples, "driftwatch_decode_failures_total"),
        bad.len() as f64
    );
    // Every good message was processed: the findings are those of a replay
    // of the same topics (which skips the bad ones).
    let published = finding_set(&s.findings());
    let reference = finding_set(&s.reference_findings());
    assert!(reference.len() > 50, "{}", reference.len());
    let missing: Vec<_> = reference
        .keys()
        .filter(|k| !published.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = published
        .keys()
        .filter(|k| !reference.contains_key(*k))
        .take(5)
        .collect();
    let differ = reference
        .iter()
        .filter(|(k, v)| published.get(*k).is_some_and(|p| p != *v))
        .count();
    assert!(
        missing.is_empty() && extra.is_empty() && differ == 0,
        "missing {missing:?}, extra {extra:?}, {differ} differ; {} published, {} expected",
        published.len(),
        reference.len()
    );
}

mod corpus {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mock_cluster() {
        super::bad_input_corpus_is_dead_lettered_and_nothing_is_lost(crate::harness::Broker::mock()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs the Tansu broker (scripts/test.sh starts it and runs these)"]
    async fn tansu() {
        let b = crate::harness::Broker::tansu();
        let _turn = crate::harness::TANSU_TURN.lock().await;
        super::bad_input_corpus_is_dead_lettered_and_nothing_is_lost(b).await;
    }
}

/// What /readyz says now.
fn readyz(s: &Setup) -> (u16, String) {
    match ureq::get(&format!("http://{}/readyz", s.admin)).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// The broker goes away mid-stream and comes back: the detector waits,
/// says so on /readyz, recovers, and loses nothing.
async fn broker_outage(
    broker: &Broker,
    name: &str,
    outage: Duration,
    down: &dyn Fn(),
    up: &dyn Fn(),
) {
    let s = Setup::new(broker, name).await;
    s.produce_generated(111, 300, 1500).await;
    let mut d = s.detector("detector");
    let deadline = std::time::Instant::now() + CATCH_UP;
    while readyz(&s).0 != 200 {
        d.assert_running();
        assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    down();
    let started = std::time::Instant::now();
    // Every answer of /readyz during the outage: it must say, at some
    // point, that the brokers are down (a rebalance while they are gone
    // may also show the restore, which comes first when they are back).
    let mut answers: Vec<(u16, String)> = Vec::new();
    while started.elapsed() < outage {
        d.assert_running();
        let answer = readyz(&s);
        if answers.last() != Some(&answer) {
            answers.push(answer);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    up();
    assert!(
        answers
            .iter()
            .any(|(code, body)| *code == 503 && body.contains("brokers")),
        "/readyz never said the brokers were down: {answers:?}\n{}",
        d.log_text()
    );
    s.produce_more(500).await;
    s.wait_caught_up(CATCH_UP, &mut [&mut d]);
    let deadline = std::time::Instant::now() + CATCH_UP;
    while readyz(&s).0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready again: {:?}",
            readyz(&s)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.terminate().success(), "{}", d.log_text());
    s.assert_published_as_reference();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_broker_down_and_up() {
    let broker = Broker::mock();
    let Broker::Mock(mock) = &broker else {
        unreachable!()
    };
    broker_outage(
        &broker,
        "down",
        Duration::from_secs(8),
        &|| mock.broker_down(1).unwrap(),
        &|| mock.broker_up(1).unwrap(),
    )
    .await;
}

/// A broker that keeps its connections but stops answering (every
/// response delayed 12 s) is as down as one that closed them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_broker_that_stops_answering() {
    let broker = Broker::mock();
    let Broker::Mock(mock) = &broker else {
        unreachable!()
    };
    broker_outage(
        &broker,
        "mute",
        Duration::from_secs(9),
        &|| {
            mock.broker_round_trip_time(1, Duration::from_secs(12))
                .unwrap()
        },
        &|| mock.broker_round_trip_time(1, Duration::ZERO).unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_request_errors_are_retried() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let broker = Broker::mock();
    // One produce request in flight per connection. With several, the last
    // injected error can fail request R1 while R2, right behind it on the
    // same partition, succeeds: the mock appends R2 (it checks sequence
    // numbers only for transactional producers), and librdkafka, as a real
    // broker would have refused R2 had R1 not been written, takes R2's
    // success as proof that R1 was persisted and acknowledges R1's
    // messages, which the mock never stored.
    let s = Setup::new(&broker, "reqerr").await.edit_config(|toml| {
        toml.push_str("\n\"max.in.flight.requests.per.connection\" = \"1\"\n");
    });
    s.produce_generated(121, 300, 1500).await;
    let Broker::Mock(mock) = &broker else {
        unreachable!()
    };
    // Transient errors on produce, fetch and offset commit.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 30],
    );
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 10],
    );
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 10],
    );
    let mut d = s.detector("detector");
    s.wait_caught_up(CATCH_UP, &mut [&mut d]);
    assert!(d.terminate().success(), "{}", d.log_text());
    s.assert_published_as_reference();
}

/// Tansu killed for 30 seconds and started again on the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Tansu broker (scripts/test.sh starts it and runs these)"]
async fn tansu_stopped_for_30s_and_restarted() {
    let broker = Broker::own_tansu();
    let _turn = crate::harness::TANSU_TURN.lock().await;
    let Broker::OwnTansu(t) = &broker else {
        unreachable!()
    };
    broker_outage(
        &broker,
        "restart",
        Duration::from_secs(30),
        &|| t.lock().unwrap().stop(),
        &|| t.lock().unwrap().restart(),
    )
    .await;
}

/// Tansu compacts the state changelog in its maintenance (run as it
/// starts): records that later checkpoints superseded are deleted. The next
/// detector, forbidden to re-read history, restores from what is left and
/// publishes what one uninterrupted run would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Tansu broker (scripts/test.sh starts it and runs these)"]
async fn a_changelog_compacted_by_tansu_restores() {
    let broker = Broker::own_tansu();
    let _turn = crate::harness::TANSU_TURN.lock().await;
    let Broker::OwnTansu(t) = &broker else {
        unreachable!()
    };
    let s = Setup::with_changelog(&broker, "compacted").await;
    // All input first: the reference is a replay of it. Checkpoints every
    // 200 ms supersede the records of keys that change again.
    s.produce_generated(43, 200, 3_000).await;
    let mut first = s.detector("first");
    s.wait_caught_up(CATCH_UP, &mut [&mut first]);
    assert!(first.terminate().success(), "{}", first.log_text());
    let (written, left) = restart_to_compact(&s, t);
    let mut second = s.detector_env("second", &[("DRIFTWATCH_STATE__HISTORY_FALLBACK", "false")]);
    second.wait_for_log("state restored", CATCH_UP);
    s.wait_caught_up(CATCH_UP, &mut [&mut second]);
    assert!(second.terminate().success(), "{}", second.log_text());
    let log = second.log_text();
    assert!(
        log.contains("source=\"changelog\"") && !log.contains("source=\"history\""),
        "every partition restored from the compacted changelog ({written} records, {left} left): {log}"
    );
    s.assert_published_as_reference();
}

/// A state rebuilt from history over an older changelog begins with a new
/// origin; once Tansu's compaction has removed the older state (its origin
/// with it, so a partition's start moves past offset 0), the changelog
/// still restores: nothing before the newest origin is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Tansu broker (scripts/test.sh starts it and runs these)"]
async fn a_changelog_restores_from_its_newest_origin_once_tansu_compacted_the_older_state() {
    let broker = Broker::own_tansu();
    let _turn = crate::harness::TANSU_TURN.lock().await;
    let Broker::OwnTansu(t) = &broker else {
        unreachable!()
    };
    let s = Setup::with_changelog(&broker, "origin").await;
    // All input first: the reference is a replay of it.
    s.produce_generated(47, 200, 3_000).await;
    // Every partition restored before the stop (the input is committed to
    // its end from the first run on, so caught up says nothing of that).
    let run = |name: &str, env: &[(&str, &str)]| {
        let mut d = s.detector_env(name, env);
        let deadline = std::time::Instant::now() + CATCH_UP;
        while s.metric_total("driftwatch_state_restores_total") < crate::harness::PARTITIONS as f64
        {
            d.assert_running();
            assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        s.wait_caught_up(CATCH_UP, &mut [&mut d]);
        assert!(d.terminate().success(), "{}", d.log_text());
        d.log_text()
    };
    run("first", &[]);
    // Another de-duplication window (part of the state's configuration,
    // no change to the findings of this input): the changelog is not
    // used, and the state rebuilt from history replaces it.
    let window = ("DRIFTWATCH_STATE__DEDUP_CAPACITY", "500000");
    let rebuilt = run("rebuilt", &[window]);
    assert!(rebuilt.contains("source=\"history\""), "{rebuilt}");
    restart_to_compact(&s, t);
    let starts = state_starts(&s);
    assert!(
        starts.iter().any(|&low| low > 0),
        "the older state's origin compacted away, the start moved: starts {starts:?}"
    );
    let last = run(
        "last",
        &[window, ("DRIFTWATCH_STATE__HISTORY_FALLBACK", "false")],
    );
    assert!(
        last.contains("source=\"changelog\"") && !last.contains("source=\"history\""),
        "every partition restored from the changelog (starts {starts:?}): {last}"
    );
    s.assert_published_as_reference();
}

/// Each state partition's first offset.
fn state_starts(s: &Setup) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &s.cfg.kafka.bootstrap_servers)
        .create()
        .unwrap();
    (0..crate::harness::PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(&s.cfg.topics.state, p, Duration::from_secs(10))
                .unwrap()
                .0
        })
        .collect()
}

/// Restarts the test's Tansu, whose maintenance compacts as it starts,
/// and waits until the state topic holds fewer records: (before, after).
fn restart_to_compact(s: &Setup, t: &std::sync::Mutex<crate::harness::OwnTansu>) -> (usize, usize) {
    let written = state_records(s);
    t.lock().unwrap().stop();
    t.lock().unwrap().restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = state_records(s);
        if left < written {
            return (written, left);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Tansu compacted none of the {written} state records"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Records in the state topic, read from each partition's start to its end.
fn state_records(s: &Setup) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &s.cfg.kafka.bootstrap_servers)
        .set("group.id", crate::harness::unique("count"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let topic = &s.cfg.topics.state;
    let mut count = 0;
    for p in 0..crate::harness::PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    use rdkafka::Message;
                    count += 1;
                    if m.offset() + 1 >= high {
                        break;
                    }
                }
                Some(Err(e)) => panic!("reading {topic} [{p}]: {e}"),
                None => assert!(
                    std::time::Instant::now() < deadline,
                    "{topic} [{p}] stalled"
                ),
            }
        }
    }
    count
}

/// A second detector joins while the first works through a backlog, and
/// leaves (SIGTERM) while there is still work: together they publish what
/// one uninterrupted process would. (All input is on the broker first, so
/// the stream order is fixed; see RELIABILITY.md on concurrent producers.)
async fn rebalance_under_load(broker: Broker) {
    let s = Setup::new(&broker, "rebalance").await;
    s.produce_generated(131, 400, 12_000).await;
    let mut a = s.detector("a");
    a.wait_for_log("state restored", CATCH_UP);
    // A second process on the machine: the admin port is the first's.
    let mut b = s.detector_env("b", &[("DRIFTWATCH_ADMIN__LISTEN", "off")]);
    b.wait_for_log("state restored", CATCH_UP);
    assert!(
        !s.behind().is_empty(),
        "B joined after the backlog was done"
    );
    assert!(b.terminate().success(), "{}", b.log_text());
    let left_mid_stream = !s.behind().is_empty();
    s.wait_caught_up(CATCH_UP, &mut [&mut a]);
    assert!(a.terminate().success(), "{}", a.log_text());
    // A gave partitions away when B joined and took them back when B left.
    assert!(
        a.log_text()
            .matches("rebalance: assigned partitions")
            .count()
            >= 3,
        "{}",
        a.log_text()
    );
    s.assert_published_as_reference();
    eprintln!("B left mid-stream: {left_mid_stream}");
}

/// On the mock cluster; on Tansu 0.6 the coordinator stalls in this
/// sequence (see RELIABILITY.md), and `two_detectors_split_the_partitions`
/// covers the consumer group there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_under_load_mock_cluster() {
    rebalance_under_load(Broker::mock()).await;
}

/// Retention outruns a stopped detector: the input records after its
/// committed offsets are deleted before the next detector reads them. It
/// says so (a warning with the range, a metric) and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_deleted_before_it_was_read_is_a_warning_and_a_metric() {
    let broker = Broker::mock();
    let s = Setup::new(&broker, "deleted").await;
    s.produce_generated(71, 60, 100).await;
    let mut first = s.detector("first");
    s.wait_caught_up(CATCH_UP, &mut [&mut first]);
    assert!(first.terminate().success(), "{}", first.log_text());
    // The mock cluster keeps the newest ~5 MB of a partition: 6 MB more of
    // well-formed HR events in one partition trims what was committed.
    let padding = "x".repeat(100_000);
    let topic = s.cfg.topics.hr[0].clone();
    for i in 0..60 {
        let event = format!(
            r#"{{"event_id":"pad-{i}","event_type":"UPDATE","worker_id":"PAD{i}","occurred_at":"2026-01-01T00:00:00Z","effective_at":"2026-01-01T00:00:00Z","source_system":"workday","worker_type":"EMPLOYEE","note":"{padding}"}}"#
        );
        s.produce_raw(&topic, b"PAD", event.as_bytes()).await;
    }
    let mut second = s.detector("second");
    second.wait_for_log("were deleted before this detector read them", CATCH_UP);
    let samples = s.scrape();
    assert!(
        Setup::metric_sum(&samples, "driftwatch_input_records_deleted_unread_total") > 0.0,
        "{}",
        second.log_text()
    );
    second.assert_running();
    assert!(second.terminate().success(), "{}", second.log_text());
}
