//! What a running detector knows of itself, shared by the Kafka pipeline
//! (which writes it) and the admin port (which reads it): counters, the
//! owned partitions and their state stores, readiness, recent findings,
//! and the Prometheus metrics.

use crate::model::finding::{Finding, OwnerRole, Status};
use crate::model::rule::Rule;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counters shared with whoever reports on the pipeline.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Input events applied to an engine (restore not included).
    pub events: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Input events applied whose outputs the broker has acknowledged
    /// (their offsets may be committed).
    pub confirmed: AtomicU64,
    /// Finding transitions acknowledged by the broker.
    pub findings: AtomicU64,
    /// Events re-applied while restoring partitions.
    pub restored: AtomicU64,
    pub rebalances: AtomicU64,
    /// Partition numbers currently owned by this process.
    pub partitions: Mutex<BTreeSet<i32>>,
    /// Transitions by rule, contributing owner role and status.
    pub by_rule: Mutex<BTreeMap<(Rule, OwnerRole, Status), u64>>,
    /// The most recent transitions, newest last.
    pub recent: Mutex<VecDeque<Finding>>,
    /// The Prometheus metrics.
    pub metrics: super::metrics::Metrics,
    /// The pipeline hit a fatal error and is stopping.
    pub failed: AtomicBool,
    /// The group consumer finds no broker up and answering.
    pub brokers_down: Arc<AtomicBool>,
    /// The detector's producer finds no broker up and answering. Kept apart
    /// from the consumer's view: an idle producer's connection can look up
    /// while the broker has stopped answering the consumer.
    pub producer_brokers_down: Arc<AtomicBool>,
    /// The state store of each owned partition, for read-only queries.
    pub stores: std::sync::RwLock<BTreeMap<i32, Arc<crate::detect::state::Store>>>,
    /// Since when this member of the group has held no partition.
    pub unassigned_since: Mutex<Option<std::time::Instant>>,
    /// `kafka.unassigned_warning`: how long without a partition is worth
    /// a warning and a word in `/readyz`.
    pub unassigned_warning: Mutex<Option<Duration>>,
    /// When the first partition restore of this process began and when
    /// the last one ended (the load harness's measure of a restart).
    pub restores: Mutex<(Option<std::time::Instant>, Option<std::time::Instant>)>,
}

const RECENT: usize = 200;

impl LiveStats {
    /// A partition's restore begins.
    pub fn restore_began(&self) {
        let mut r = self.restores.lock().expect("stats lock");
        r.0.get_or_insert_with(std::time::Instant::now);
    }

    /// A partition's restore ended.
    pub fn restore_ended(&self) {
        self.restores.lock().expect("stats lock").1 = Some(std::time::Instant::now());
    }

    /// Ready: partitions assigned and restored, brokers reachable, no
    /// fatal error. The reason when not.
    pub fn readiness(&self) -> Result<(), String> {
        let m = &self.metrics;
        let ready = if self.failed.load(Ordering::Relaxed) {
            Err("the pipeline failed and is stopping".to_string())
        } else if self.brokers_down.load(Ordering::Relaxed)
            || self.producer_brokers_down.load(Ordering::Relaxed)
        {
            Err("all brokers are down".to_string())
        } else if m.partitions_assigned.get() == 0 {
            Err(match self.unassigned_too_long() {
                Some(d) => format!(
                    "no partition assigned for {} s, longer than kafka.unassigned_warning: the group has at least as many members as partitions, or its rebalance is stuck",
                    d.as_secs()
                ),
                None => "no partitions assigned".to_string(),
            })
        } else if m.partitions_restoring.get() > 0 {
            Err("restoring partition state".to_string())
        } else {
            Ok(())
        };
        m.ready.set(if ready.is_ok() { 1.0 } else { 0.0 });
        ready
    }

    /// Notes whether this member holds no partition now.
    pub(crate) fn set_unassigned(&self, none: bool) {
        let mut since = self.unassigned_since.lock().expect("stats lock");
        match (none, since.is_some()) {
            (true, false) => *since = Some(std::time::Instant::now()),
            (false, true) => *since = None,
            _ => {}
        }
    }

    /// How long this member has held no partition, when that is longer
    /// than `kafka.unassigned_warning`.
    pub fn unassigned_too_long(&self) -> Option<Duration> {
        let limit = (*self.unassigned_warning.lock().expect("stats lock"))?;
        let since = (*self.unassigned_since.lock().expect("stats lock"))?;
        let held = since.elapsed();
        (held >= limit).then_some(held)
    }

    /// Counts an acknowledged finding transition.
    pub(crate) fn record(&self, f: Finding) {
        self.findings.fetch_add(1, Ordering::Relaxed);
        self.metrics.finding(&f);
        *self
            .by_rule
            .lock()
            .expect("stats lock")
            .entry((f.rule, f.contributing_owner.role, f.status))
            .or_default() += 1;
        let mut recent = self.recent.lock().expect("stats lock");
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(f);
    }
}
