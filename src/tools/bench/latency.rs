//! The latency phase: events offered at a fixed rate, each zero-SLA
//! finding timed from its event's produce to its read from the findings
//! topic.

use crate::config::Config;
use crate::kafka::{self, PipelineError};
use crate::model::event::{
    AccountKind, AppEvent, AppEventType, DirectoryEvent, DirectoryEventType, Event,
};
use crate::model::finding::Finding;
use crate::model::time::Ts;
use crate::tools::generate::Generator;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Offers `rate` events/s for `secs`, one in ten an unapproved privileged
/// grant (a zero-SLA finding); returns milliseconds from produce to the
/// finding read back from the findings topic.
pub(super) async fn latency(
    cfg: &Arc<Config>,
    producer: &crate::kafka::Producer,
    rate: u64,
    secs: u64,
    partitions: i32,
) -> Result<Vec<f64>, PipelineError> {
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let reader = {
        let consumer: crate::kafka::PlainConsumer = kafka::create_client(
            cfg,
            kafka::client_config(cfg, kafka::Role::Consumer)
                .set("group.id", format!("{}.latency", cfg.kafka.group_id))
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "5"),
            crate::kafka::Logs::default(),
        )?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&cfg.topics.findings, p, Offset::End)?;
        }
        consumer.assign(&tpl)?;
        let (sent, latencies) = (sent.clone(), latencies.clone());
        std::thread::spawn(move || {
            while stop_rx.try_recv().is_err() {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let at = Instant::now();
                let Ok(f) = serde_json::from_slice::<Finding>(m.payload().unwrap_or_default())
                else {
                    continue;
                };
                if f.status != crate::model::finding::Status::Open {
                    continue;
                }
                let sent = sent.lock().expect("sent lock");
                if let Some(t) = f.evidence.iter().find_map(|e| sent.get(&*e.event_id)) {
                    latencies
                        .lock()
                        .expect("latency lock")
                        .push(at.duration_since(*t).as_secs_f64() * 1000.0);
                }
            }
        })
    };
    // Give the reader its assignment before offering load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let mut offered = 0u64;
    let mut pending = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while offered < due {
            offered += 1;
            let w = offered % 20_000;
            let wid = Generator::worker_id(w);
            let now = Ts::wall_clock();
            let event_id = format!("lat-{offered}");
            let event = if offered % 10 == 0 {
                Event::App(AppEvent {
                    event_id: event_id.clone().into(),
                    event_type: AppEventType::EntitlementGranted,
                    occurred_at: now,
                    app_id: "sap".into(),
                    account_id: format!("sap-{w:06}").into(),
                    worker_id: Some(wid.into()),
                    account_kind: AccountKind::Human,
                    owner_worker_id: None,
                    entitlement: Some(format!("SAP_ALL_{offered}").into()),
                    privileged: true,
                    approved_by: None,
                    approval_ref: None,
                })
            } else {
                Event::Directory(DirectoryEvent {
                    event_id: event_id.clone().into(),
                    event_type: DirectoryEventType::AttributesChanged,
                    occurred_at: now,
                    directory: "entra".into(),
                    account_id: format!("u{w:06}").into(),
                    worker_id: Some(wid.into()),
                    account_kind: AccountKind::Human,
                    owner_worker_id: None,
                    enabled: None,
                    email: None,
                    department: None,
                    title: Some(format!("t{}", offered % 7).into()),
                    manager_id: None,
                    group: None,
                    privileged: false,
                    approved_by: None,
                    approval_ref: None,
                    actor: None,
                })
            };
            let topic = kafka::topic_for(cfg, event.system()).to_string();
            let payload = crate::codec::json::to_json(&event);
            let key = event.key();
            if offered % 10 == 0 {
                sent.lock()
                    .expect("sent lock")
                    .insert(event_id, Instant::now());
            }
            let record = rdkafka::producer::FutureRecord::to(&topic)
                .key(key.id().as_bytes())
                .payload(payload.as_bytes());
            match producer.send_result(record) {
                Ok(d) => pending.push(d),
                Err((e, _)) => return Err(PipelineError::Kafka(e)),
            }
        }
        if pending.len() > 10_000 {
            for d in pending.drain(..) {
                let _ = d.await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for d in pending.drain(..) {
        let _ = d.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(());
    let _ = reader.join();
    let v = latencies.lock().expect("latency lock").clone();
    Ok(v)
}
