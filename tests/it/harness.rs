//! Brokers, detector processes and topic readers for the pipeline tests.
//!
//! Two real Kafka-protocol brokers: librdkafka's mock cluster (in this
//! process, over TCP) and Tansu (started by `scripts/test.sh`, found
//! through `DRIFTWATCH_TANSU_BOOTSTRAP`). Detectors run as child processes
//! of the `driftwatch` binary so they can be killed for real.

use driftwatch::config::Config;
use driftwatch::kafka::{self, InputDecoder};
use driftwatch::model::event::{Envelope, Event, Origin, System};
use driftwatch::model::finding::Finding;
use driftwatch::tools::generate::Generator;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PARTITIONS: i32 = 3;
/// Partitions of the findings topic on the mock cluster, which keeps only
/// the newest ~5 MB of each partition: findings carry their evidence, and the
/// long tests publish more than 15 MB of them. Findings are keyed by
/// finding_id, so their partition count is free.
pub const MOCK_FINDINGS_PARTITIONS: i32 = 12;

/// A broker the tests talk to.
pub enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    Tansu(String),
    /// A Tansu process of the test's own, which it may stop and restart.
    OwnTansu(std::sync::Mutex<OwnTansu>),
}

/// A Tansu broker on its own port and sqlite file.
pub struct OwnTansu {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnTansu {
    fn start(&mut self) {
        let child = Command::new("tansu")
            .args(["broker", "--storage-engine", "sqlite://broker.db"])
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("tansu.log")).unwrap())
            .spawn()
            .expect("start tansu (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker (SIGKILL: no goodbye to anyone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.start();
    }
}

impl Drop for OwnTansu {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Broker {
    pub fn mock() -> Broker {
        Broker::Mock(MockCluster::new(1).expect("start the mock cluster"))
    }

    /// Tansu at `DRIFTWATCH_TANSU_BOOTSTRAP`. The tests that use it are
    /// `#[ignore]`d, so that a plain `cargo test` reports them as ignored;
    /// `scripts/test.sh` starts Tansu and runs them. Run without a broker,
    /// such a test fails: it never passes without having run.
    pub fn tansu() -> Broker {
        match std::env::var("DRIFTWATCH_TANSU_BOOTSTRAP") {
            Ok(b) if !b.is_empty() => Broker::Tansu(b),
            _ => panic!(
                "no Tansu broker: set DRIFTWATCH_TANSU_BOOTSTRAP (scripts/test.sh starts Tansu and sets it)"
            ),
        }
    }

    /// A Tansu of the test's own (needs the `tansu` binary, as for
    /// [`Broker::tansu`]).
    pub fn own_tansu() -> Broker {
        Broker::tansu();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(unique("tansu"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = OwnTansu {
            port,
            dir,
            child: None,
        };
        t.start();
        Broker::OwnTansu(std::sync::Mutex::new(t))
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Tansu(b) => b.clone(),
            Broker::OwnTansu(t) => format!("127.0.0.1:{}", t.lock().unwrap().port),
        }
    }

    /// Creates the topics of `cfg` with [`PARTITIONS`] partitions each (the
    /// findings topic of the mock cluster with [`MOCK_FINDINGS_PARTITIONS`]).
    pub async fn create_topics(&self, cfg: &Config) {
        match self {
            Broker::Mock(m) => {
                for t in kafka::all_topics(cfg) {
                    let n = if t == cfg.topics.findings {
                        MOCK_FINDINGS_PARTITIONS
                    } else {
                        PARTITIONS
                    };
                    m.create_topic(&t, n, 1).expect("create topic");
                }
            }
            Broker::Tansu(_) | Broker::OwnTansu(_) => {
                let outcome = kafka::create_topics(cfg, PARTITIONS, 1)
                    .await
                    .expect("create topics on Tansu");
                assert_eq!(outcome.len(), kafka::all_topics(cfg).len(), "{outcome:?}");
                assert!(outcome.iter().all(|t| t.created), "{outcome:?}");
            }
        }
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Tansu tests take turns: one shared Tansu under several detector fleets
/// at once stops answering in time on a two-core machine.
pub static TANSU_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A name no other test (or earlier run on the same broker) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's world: its topics, its config file, its scratch directory.
pub struct Setup {
    pub cfg: Arc<Config>,
    /// The detector's admin port.
    pub admin: std::net::SocketAddr,
    pub dir: PathBuf,
    generator: std::sync::Mutex<Option<Generator>>,
    /// Produce events as Confluent-framed Avro (ids 1, 2, 3 by family).
    avro: bool,
}

impl Setup {
    pub async fn new(broker: &Broker, name: &str) -> Setup {
        Setup::with(broker, name, false, "", "off", "").await
    }

    /// A setup with more `[kafka]` keys (appended to that section).
    pub async fn with_kafka(broker: &Broker, name: &str, kafka: &str) -> Setup {
        Setup::with(broker, name, false, kafka, "off", "").await
    }

    /// A setup whose findings topic carries Avro (schema id 77).
    pub async fn with_avro_output(broker: &Broker, name: &str) -> Setup {
        Setup::with(broker, name, false, "", "off", "")
            .await
            .edit_config(|t| t.push_str("\n[output]\nencoding = \"avro\"\navro_schema_id = 77\n"))
    }

    /// Rewrites the config file (for detectors and the reference alike).
    pub fn edit_config(self, edit: impl FnOnce(&mut String)) -> Setup {
        let mut toml = std::fs::read_to_string(self.config_path()).unwrap();
        edit(&mut toml);
        std::fs::write(self.config_path(), toml).unwrap();
        Setup {
            cfg: Arc::new(Config::load(&self.config_path()).unwrap()),
            ..self
        }
    }

    /// A setup whose detector advances idle partitions with the wall clock.
    pub async fn with_idle_advance(broker: &Broker, name: &str, idle: &str) -> Setup {
        Setup::with(broker, name, false, "", idle, "").await
    }

    /// A setup whose producers write Avro, with the id -> file map configured.
    pub async fn avro(broker: &Broker, name: &str) -> Setup {
        Setup::with(broker, name, true, "", "off", "").await
    }

    /// A setup whose detectors keep the state changelog (`{id}.state`).
    pub async fn with_changelog(broker: &Broker, name: &str) -> Setup {
        Setup::with_state(broker, name, "changelog = true").await
    }

    /// A setup whose detectors route records by payload (with the state
    /// changelog, which that needs).
    pub async fn routed(broker: &Broker, name: &str) -> Setup {
        Setup::routed_with_state(broker, name, "changelog = true").await
    }

    /// A setup routing by payload whose `[state]` section is `state`.
    pub async fn routed_with_state(broker: &Broker, name: &str, state: &str) -> Setup {
        Setup::with(broker, name, false, "route_by = \"payload\"", "off", state).await
    }

    /// A setup whose `[state]` section is `state`.
    pub async fn with_state(broker: &Broker, name: &str, state: &str) -> Setup {
        Setup::with(broker, name, false, "", "off", state).await
    }

    async fn with(
        broker: &Broker,
        name: &str,
        avro: bool,
        kafka: &str,
        idle: &str,
        state: &str,
    ) -> Setup {
        let id = unique(name);
        let admin = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("driftwatch-it-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let toml = format!(
            r#"
[detector]
instance = "it"
idle_advance = "{idle}"

[admin]
listen = "{admin}"

[topics]
hr = "{id}.hr"
directory = "{id}.dir"
app = "{id}.app"
findings = "{id}.findings"
dead_letter = "{id}.dlq"
state = "{id}.state"
repartition = "{id}.repartition"

[state]
{state}

[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{id}.detector"
commit_interval = "200ms"
# Every test compares with a replay, which needs strict event-time order
# across topics: on this shared two-core machine a topic's fetch can lag
# for seconds, and the default 2s would then (correctly) apply the other
# topics without it and diverge from the replay.
max_task_idle = "60s"
{kafka}

[kafka.librdkafka]

# A killed member leaves the group after this long (the broker's minimum).
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"#,
            bootstrap = broker.bootstrap()
        );
        let mut toml = toml;
        if avro {
            let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
            toml.push_str(&format!(
                "\n[schemas.ids]\n1 = \"{}\"\n2 = \"{}\"\n3 = \"{}\"\n",
                schemas.join("hr.worker-events.avsc").display(),
                schemas.join("directory.account-changes.avsc").display(),
                schemas.join("app.entitlement-changes.avsc").display()
            ));
        }
        let path = dir.join("driftwatch.toml");
        std::fs::write(&path, &toml).unwrap();
        let cfg = Arc::new(Config::load(&path).unwrap());
        broker.create_topics(&cfg).await;
        Setup {
            cfg,
            admin,
            dir,
            generator: std::sync::Mutex::new(None),
            avro,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("driftwatch.toml")
    }

    /// Starts a detector process; its log goes to `DIR/<name>.log`.
    pub fn detector(&self, name: &str) -> Detector {
        let level = std::env::var("DRIFTWATCH_IT_LOG").unwrap_or_else(|_| "info".into());
        self.detector_logging(name, &level)
    }

    /// A detector process logging at `level` (a RUST_LOG filter).
    pub fn detector_logging(&self, name: &str, level: &str) -> Detector {
        self.detector_env(name, &[("RUST_LOG", level)])
    }

    /// A detector process with more environment variables (RUST_LOG is
    /// `info` unless given).
    pub fn detector_env(&self, name: &str, env: &[(&str, &str)]) -> Detector {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start driftwatch run");
        Detector {
            child: Some(child),
            log,
        }
    }

    /// Produces the generated organisation and `changes` lifecycle changes
    /// (every rule's drift injected); returns the events.
    pub async fn produce_generated(&self, seed: u64, workers: u64, changes: usize) -> Vec<Event> {
        let mut g = Generator::new(
            seed,
            workers,
            driftwatch::model::time::Ts::parse("2026-11-02T08:00:00Z").unwrap(),
        );
        let baseline = g.baseline();
        *self.generator.lock().unwrap() = Some(g);
        self.produce(&baseline).await;
        let mut events = self.produce_more(changes).await;
        events.splice(0..0, baseline);
        events
    }

    /// `changes` more lifecycle changes from the same organisation.
    pub async fn produce_more(&self, changes: usize) -> Vec<Event> {
        let events: Vec<Event> = {
            let mut guard = self.generator.lock().unwrap();
            let g = guard.as_mut().expect("produce_generated first");
            (0..changes)
                .flat_map(|_| g.next_batch(10 * 60_000))
                .collect()
        };
        self.produce(&events).await;
        events
    }

    async fn produce(&self, events: &[Event]) {
        let producer = kafka::producer(&self.cfg).unwrap();
        if self.avro {
            let schemas = [System::Hr, System::Directory, System::App]
                .map(driftwatch::codec::avro::input_schema);
            let mut pending = Vec::new();
            for e in events {
                let (id, schema) = match e.system() {
                    System::Hr => (1, &schemas[0]),
                    System::Directory => (2, &schemas[1]),
                    System::App => (3, &schemas[2]),
                };
                let payload = driftwatch::codec::avro::encode_event(id, schema, e).unwrap();
                let key = e.key();
                let topic = kafka::topic_for(&self.cfg, e.system()).to_string();
                let record = rdkafka::producer::FutureRecord::to(&topic)
                    .key(key.id().as_bytes())
                    .payload(&payload);
                pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
            }
            for p in pending {
                p.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
            return;
        }
        kafka::produce_events(&producer, &self.cfg, events)
            .await
            .unwrap();
    }

    /// Input events the running detector has consumed, from its /metrics
    /// (0 while it is not up yet).
    pub fn consumed(&self) -> f64 {
        self.metric_total("driftwatch_events_consumed_total")
    }

    /// The sum of metric `name` over its labels in the running detector's
    /// /metrics (0 while it is not up yet).
    pub fn metric_total(&self, name: &str) -> f64 {
        let prefix = format!("{name}{{");
        ureq::get(&format!("http://{}/metrics", self.admin))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .map(|text| {
                text.lines()
                    .filter(|l| l.starts_with(&prefix))
                    .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                    .sum::<f64>()
            })
            .unwrap_or(0.0)
    }

    /// One scrape of the detector's /metrics: each sample line's value by
    /// its name and labels.
    pub fn scrape(&self) -> BTreeMap<String, f64> {
        let text = ureq::get(&format!("http://{}/metrics", self.admin))
            .call()
            .expect("scrape /metrics")
            .into_string()
            .unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// Sum of a metric over its label sets.
    pub fn metric_sum(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
        samples
            .iter()
            .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }

    /// Produces events as they are (JSON).
    pub async fn produce_events(&self, events: &[Event]) {
        self.produce(events).await;
    }

    /// Produces events as JSON with HR events keyed by their correlation
    /// key and directory and app events by their event id, as a
    /// change-data-capture connector keyed by primary key does: most land
    /// outside their key's partition. Returns how many.
    pub async fn produce_keyed_by_event_id(&self, events: &[Event]) -> usize {
        use driftwatch::model::partitioner::Partitioner;
        let producer = kafka::producer(&self.cfg).unwrap();
        let mut pending = Vec::new();
        let mut misplaced = 0;
        for e in events {
            let topic = kafka::topic_for(&self.cfg, e.system()).to_string();
            let key = e.key();
            let by = match e.system() {
                System::Hr => key.id().as_bytes().to_vec(),
                _ => e.event_id().as_bytes().to_vec(),
            };
            if Partitioner::Murmur2.partition_of_bytes(&by, PARTITIONS)
                != Partitioner::Murmur2.partition(&key, PARTITIONS)
            {
                misplaced += 1;
            }
            let payload = driftwatch::codec::json::to_json(e);
            let record = rdkafka::producer::FutureRecord::to(&topic)
                .key(&by)
                .payload(&payload);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for p in pending {
            p.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
        misplaced
    }

    /// Produces raw bytes to a topic (for malformed input).
    pub async fn produce_raw(&self, topic: &str, key: &[u8], payload: &[u8]) {
        let producer = kafka::producer(&self.cfg).unwrap();
        let record = rdkafka::producer::FutureRecord::to(topic)
            .key(key)
            .payload(payload);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    fn reader(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.cfg.kafka.bootstrap_servers)
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    }

    /// How many partitions `topic` has.
    fn partitions(consumer: &BaseConsumer, topic: &str) -> i32 {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        md.topics()[0].partitions().len() as i32
    }

    /// Every record of a topic, partition by partition; panics if the
    /// broker trimmed the start of one.
    pub fn read_topic(&self, topic: &str) -> Vec<Record> {
        let consumer = self.reader();
        let mut tpl = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in 0..Self::partitions(&consumer, topic) {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            // The mock cluster keeps only the newest ~5 MB of a partition:
            // a whole-topic comparison is void once it trimmed one.
            assert_eq!(
                low, 0,
                "the broker trimmed the start of {topic} partition {p}: \
                 the test wrote more than the mock cluster keeps"
            );
            if high > low {
                tpl.add_partition_offset(topic, p, Offset::Offset(low))
                    .unwrap();
                ends.insert(p, high);
            }
        }
        let mut out = Vec::new();
        if ends.is_empty() {
            return out;
        }
        consumer.assign(&tpl).unwrap();
        let mut consumer = consumer;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last_record = Instant::now();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        while ends
            .iter()
            .any(|(p, end)| next.get(p).copied().unwrap_or(0) < *end)
        {
            assert!(
                Instant::now() < deadline,
                "reading {topic} timed out at {next:?} of {ends:?}"
            );
            // Tansu has been seen to leave a fresh reader without any record
            // for a minute although the high watermarks show them: a reader
            // that has received nothing for 20 s starts again from where it
            // is, with a new connection. (What is read is checked all the
            // same; only the reader is replaced.)
            if last_record.elapsed() > Duration::from_secs(20) {
                eprintln!("reader of {topic} stalled at {next:?} of {ends:?}: reconnecting");
                consumer = self.reader();
                let mut tpl = TopicPartitionList::new();
                for (p, end) in &ends {
                    let from = next.get(p).copied().unwrap_or(0);
                    if from < *end {
                        tpl.add_partition_offset(topic, *p, Offset::Offset(from))
                            .unwrap();
                    }
                }
                consumer.assign(&tpl).unwrap();
                last_record = Instant::now();
            }
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            last_record = Instant::now();
            let m = m.unwrap();
            next.insert(m.partition(), m.offset() + 1);
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
        out
    }

    /// Records in a topic so far (sum of high watermarks): cheap to poll.
    pub fn count(&self, consumer: &BaseConsumer, topic: &str) -> i64 {
        (0..Self::partitions(consumer, topic))
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap();
                high - low
            })
            .sum()
    }

    /// A consumer for [`Setup::count`].
    pub fn counter(&self) -> BaseConsumer {
        self.reader()
    }

    /// The published findings, decoded.
    pub fn findings(&self) -> Vec<Finding> {
        self.read_topic(&self.cfg.topics.findings)
            .into_iter()
            .map(|r| serde_json::from_slice(&r.payload).expect("a finding in the contract's JSON"))
            .collect()
    }

    /// Writes the input topics as `kcat -J` dumps into `dir`, as a data
    /// team would for a file replay.
    pub fn dump_inputs(&self, dir: &std::path::Path) {
        self.dump_inputs_after(dir, &BTreeMap::new());
    }

    /// The end offset of every input partition now.
    pub fn input_ends(&self) -> BTreeMap<(String, i32), i64> {
        let consumer = self.reader();
        let t = &self.cfg.topics;
        let mut ends = BTreeMap::new();
        // Routing by payload: records moved between partitions are applied
        // once the repartition topic is committed to its end too.
        let routed = self.cfg.kafka.route_by == driftwatch::config::RouteBy::Payload;
        for topic in
            t.hr.iter()
                .chain(&t.directory)
                .chain(&t.app)
                .chain(routed.then_some(&t.repartition))
        {
            for p in 0..PARTITIONS {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap();
                ends.insert((topic.clone(), p), high);
            }
        }
        ends
    }

    /// Like [`Setup::dump_inputs`], keeping only records at or after `start`
    /// (per topic and partition).
    pub fn dump_inputs_after(&self, dir: &std::path::Path, start: &BTreeMap<(String, i32), i64>) {
        std::fs::create_dir_all(dir).unwrap();
        let t = &self.cfg.topics;
        for topic in t.hr.iter().chain(&t.directory).chain(&t.app) {
            let mut text = String::new();
            for r in self.read_topic(topic) {
                if r.offset
                    < start
                        .get(&(topic.clone(), r.partition))
                        .copied()
                        .unwrap_or(0)
                {
                    continue;
                }
                let line = serde_json::json!({
                    "topic": topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "payload": String::from_utf8_lossy(&r.payload),
                });
                text.push_str(&line.to_string());
                text.push('\n');
            }
            std::fs::write(dir.join(format!("{topic}.jsonl")), text).unwrap();
        }
    }

    /// Runs the `driftwatch` binary with this setup's config; its stdout.
    pub fn cli(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "driftwatch {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// What one uninterrupted process must publish: the input topics as
    /// they are on the broker, replayed (same partitions, offsets, merge).
    pub fn reference_findings(&self) -> Vec<Finding> {
        self.reference_findings_with(self.cfg.clone())
    }

    /// The input topics replayed under `cfg`.
    pub fn reference_findings_with(&self, cfg: Arc<Config>) -> Vec<Finding> {
        let decoder = InputDecoder::from_config(&self.cfg).unwrap();
        let t = &self.cfg.topics;
        let mut streams = Vec::new();
        for (system, topic) in [
            (System::Hr, &t.hr[0]),
            (System::Directory, &t.directory[0]),
            (System::App, &t.app[0]),
        ] {
            let name: Arc<str> = topic.as_str().into();
            let envs = self
                .read_topic(topic)
                .into_iter()
                .filter_map(|r| {
                    decoder
                        .decode(system, &r.payload)
                        .ok()
                        .map(|event| Envelope {
                            origin: Origin {
                                topic: topic.as_str().into(),
                                partition: r.partition,
                                offset: r.offset,
                            },
                            event,
                        })
                })
                .collect();
            streams.push((name, envs));
        }
        driftwatch::replay::replay_streams(cfg, streams, None, Some(PARTITIONS)).0
    }

    /// The findings topic holds exactly the reference's transitions, with
    /// duplicates only as identical redeliveries.
    #[track_caller]
    pub fn assert_published_as_reference(&self) {
        let published = self.findings();
        assert_duplicates_are_identical(&published);
        assert_same_findings(&published, &self.reference_findings());
    }

    /// Waits until the detector group has committed the end of every input
    /// partition.
    pub fn wait_caught_up(&self, timeout: Duration, detectors: &mut [&mut Detector]) {
        let deadline = Instant::now() + timeout;
        loop {
            for d in detectors.iter_mut() {
                d.assert_running();
            }
            let behind = self.behind();
            if behind.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "detectors did not catch up: {behind:?}\n{}",
                joined_logs(detectors.iter().map(|d| &**d))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The input partitions whose committed offset is short of their end.
    pub fn behind(&self) -> Vec<String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.cfg.kafka.bootstrap_servers)
            .set("group.id", &self.cfg.kafka.group_id)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let t = &self.cfg.topics;
        let mut ends = TopicPartitionList::new();
        let mut tpl = TopicPartitionList::new();
        // Routing by payload: records moved between partitions are applied
        // once the repartition topic is committed to its end too.
        let routed = self.cfg.kafka.route_by == driftwatch::config::RouteBy::Payload;
        for topic in
            t.hr.iter()
                .chain(&t.directory)
                .chain(&t.app)
                .chain(routed.then_some(&t.repartition))
        {
            for p in 0..PARTITIONS {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap();
                ends.add_partition_offset(topic, p, Offset::Offset(high))
                    .unwrap();
                tpl.add_partition(topic, p);
            }
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        ends.elements()
            .iter()
            .filter(|e| {
                let end = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                };
                let at = match committed
                    .find_partition(e.topic(), e.partition())
                    .map(|c| c.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                at < end
            })
            .map(|e| format!("{}[{}]", e.topic(), e.partition()))
            .collect()
    }
}

/// A record read back from a topic.
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// The logs of several detectors, one after the other.
pub fn joined_logs<'a>(detectors: impl IntoIterator<Item = &'a Detector>) -> String {
    detectors
        .into_iter()
        .map(Detector::log_text)
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// A `driftwatch run` child process.
pub struct Detector {
    child: Option<Child>,
    log: PathBuf,
}

impl Detector {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!("detector exited early ({status}):\n{}", self.log_text());
        }
    }

    /// Waits until the log says `needle` (e.g. that partitions are restored).
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(needle) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let c = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no flush, no commit, no goodbye to the group.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, and the exit status of a graceful stop.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let id = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(id.to_string())
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit(Duration::from_secs(60))
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Findings as a set of (finding_id, status) with the whole JSON, so two
/// runs compare exactly while at-least-once duplicates collapse.
pub fn finding_set(findings: &[Finding]) -> BTreeMap<(String, String), String> {
    findings
        .iter()
        .map(|f| ((f.finding_id.clone(), f.status.to_string()), f.to_json()))
        .collect()
}

/// Every duplicate in a findings topic is the same transition again: the
/// same finding_id and status with the same content.
pub fn assert_duplicates_are_identical(findings: &[Finding]) {
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    for f in findings {
        let json = f.to_json();
        if let Some(prev) = seen.insert((f.finding_id.clone(), f.status.to_string()), json.clone())
        {
            assert_eq!(prev, json, "a redelivered transition differs");
        }
    }
}

/// The contributing-owner roles (families) the findings cover.
pub fn roles(findings: &[Finding]) -> BTreeSet<String> {
    findings
        .iter()
        .map(|f| f.contributing_owner.role.to_string())
        .collect()
}

/// Asserts that two runs published the same transitions (as sets), with a
/// short report of what differs.
#[track_caller]
pub fn assert_same_findings(published: &[Finding], reference: &[Finding]) {
    let got = finding_set(published);
    let want = finding_set(reference);
    if got == want {
        return;
    }
    let brief = |f: &Finding| {
        format!(
            "{} {} {} {:?} at {} detected {}",
            f.rule.as_str(),
            f.status.as_str(),
            f.worker_id.as_deref().unwrap_or("-"),
            f.subject.account_id.as_deref(),
            f.transitioned_at,
            f.detected_at
        )
    };
    let by_key = |fs: &[Finding]| -> BTreeMap<(String, String), Finding> {
        fs.iter()
            .map(|f| ((f.finding_id.clone(), f.status.to_string()), f.clone()))
            .collect()
    };
    let (g, w) = (by_key(published), by_key(reference));
    let missing: Vec<String> = w
        .iter()
        .filter(|(k, _)| !g.contains_key(*k))
        .map(|(_, f)| brief(f))
        .take(8)
        .collect();
    if std::env::var_os("DRIFTWATCH_IT_DIFF").is_some() {
        for (k, f) in w.iter().filter(|(k, _)| !g.contains_key(*k)) {
            eprintln!("missing {k:?}: {}", f.to_json());
        }
        for (k, f) in g.iter().filter(|(k, _)| !w.contains_key(*k)) {
            eprintln!("extra {k:?}: {}", f.to_json());
        }
    }
    let extra: Vec<String> = g
        .iter()
        .filter(|(k, _)| !w.contains_key(*k))
        .map(|(_, f)| brief(f))
        .take(8)
        .collect();
    let differ: Vec<String> = g
        .iter()
        .filter_map(|(k, f)| {
            w.get(k)
                .filter(|r| r.to_json() != f.to_json())
                .map(|r| format!("{} vs {}", brief(f), brief(r)))
        })
        .take(8)
        .collect();
    panic!(
        "findings differ ({} published, {} expected)\nmissing: {missing:#?}\nextra: {extra:#?}\ndiffer: {differ:#?}",
        got.len(),
        want.len()
    );
}

/// A loopback port that refuses connections for as long as the returned
/// socket lives: it is bound but never listens, so no other test (a mock
/// cluster binding port 0, say) can be given it meanwhile.
pub fn closed_port() -> (socket2::Socket, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    (socket, port)
}
