//! A partition task's confirmer: it waits for the broker's
//! acknowledgements batch by batch, in order, and only then marks the
//! batch's offsets done. An offset is never committed before everything it
//! caused is safe.

use crate::detect::engine::Checkpoint;
use crate::kafka::changelog;
use crate::kafka::publish::confirm;
use crate::kafka::{PipelineError, Shared};
use crate::model::finding::{Finding, OpenFinding, Severity};
use crate::model::rule::Rule;
use crate::ops::metrics::{Metrics, OwnerBook, TeamLabels};
use rdkafka::producer::DeliveryFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Batches queued to the producer but not yet acknowledged.
pub(super) const IN_FLIGHT_BATCHES: usize = 64;

/// What a queued record is, for the confirmer. Findings are the common
/// case: not boxed.
#[allow(clippy::large_enum_variant)]
pub(super) enum Output {
    /// A finding transition and when the message that caused it arrived.
    Finding(Finding, Instant),
    DeadLetter,
    /// A state changelog record (exactly-once: in the transaction).
    State,
    /// An event moved to its key's partition, or a mark of closed rounds.
    Routed,
}

/// Whether the confirmer is writing a checkpoint: the task takes no other
/// meanwhile (and with `state.checkpoint_interval = 0s` applies no other
/// batch), so checkpoints never queue up behind each other.
#[derive(Default)]
pub(super) struct Saving {
    pub(super) busy: AtomicBool,
    pub(super) done: tokio::sync::Notify,
}

impl Saving {
    pub(super) fn start(&self) {
        self.busy.store(true, Ordering::Release);
    }

    pub(super) fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    fn end(&self) {
        self.busy.store(false, Ordering::Release);
        self.done.notify_waiters();
    }
}

/// Outputs of a run of records, and the offsets they complete.
pub(super) struct Batch {
    pub(super) deliveries: Vec<(DeliveryFuture, Output)>,
    /// Per topic index: the last offset applied in this batch.
    pub(super) offsets: Vec<Option<i64>>,
    /// Events (not dead letters) applied in this batch.
    pub(super) events: u64,
    /// With the state changelog: what the batch changed, and the next
    /// input offsets it reflects, written once its outputs are safe.
    pub(super) checkpoint: Option<(Checkpoint, Vec<i64>)>,
}

impl Batch {
    pub(super) fn new(topics: usize) -> Batch {
        Batch {
            deliveries: Vec::new(),
            offsets: vec![None; topics],
            events: 0,
            checkpoint: None,
        }
    }

    /// The offsets to commit once the batch is safe: the next ones to read.
    pub(super) fn next_offsets(&self) -> Vec<Option<i64>> {
        self.offsets.iter().map(|o| o.map(|o| o + 1)).collect()
    }

    /// Whether the confirmer has anything to do with it.
    pub(super) fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
            && self.offsets.iter().all(Option::is_none)
            && self.events == 0
            && self.checkpoint.is_none()
    }
}

/// Waits for each batch's acknowledgements in order, then marks its offsets
/// done. Keeps the open-findings gauges for the partition (by rule and
/// severity, and by owner in an [`OwnerBook`]), starting from what the
/// restore found open, and takes them back when the task ends.
pub(super) async fn confirm_batches(
    shared: Arc<Shared>,
    partition: i32,
    mut batches: mpsc::Receiver<Batch>,
    restored_open: Vec<OpenFinding>,
    saving: &Saving,
) -> Result<(), PipelineError> {
    let cfg = shared.cfg.clone();
    let metrics = &shared.stats.metrics;
    let mut open: HashMap<(Rule, Severity), i64> = HashMap::new();
    // Dropped when the task ends, on every path: the partition's share of
    // the owner gauges is taken back with it.
    let mut owners = OwnerBook::new(metrics, TeamLabels::of(&cfg));
    for f in &restored_open {
        *open.entry((f.rule, f.severity)).or_default() += 1;
    }
    for (&(rule, severity), &n) in &open {
        metrics.open(rule, severity, n);
    }
    owners.restored(restored_open);
    let result = async {
        while let Some(batch) = batches.recv().await {
            let next = batch.next_offsets();
            for (delivery, output) in batch.deliveries {
                match output {
                    Output::Finding(f, received) => {
                        confirm(&cfg.topics.findings, delivery).await?;
                        metrics
                            .processing_latency
                            .observe(received.elapsed().as_secs_f64());
                        let delta = Metrics::open_delta(f.status);
                        if delta != 0 {
                            *open.entry((f.rule, f.severity)).or_default() += delta;
                            metrics.open(f.rule, f.severity, delta);
                        }
                        owners.acknowledged(&f);
                        shared.stats.record(f);
                    }
                    Output::DeadLetter => {
                        confirm(&cfg.topics.dead_letter, delivery).await?;
                        shared.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                        metrics.dead_letters.inc();
                    }
                    Output::State => confirm(&cfg.topics.state, delivery).await?,
                    Output::Routed => confirm(&cfg.topics.repartition, delivery).await?,
                }
            }
            // With the state changelog, offsets are done only with the
            // state that reflects them: at a checkpoint, written once the
            // outputs before it are safe, and acknowledged.
            if let Some((checkpoint, offsets)) = batch.checkpoint {
                // Once the assignment is lost, the state is another's.
                if shared.owns_state(partition) {
                    changelog::write(&shared, partition, checkpoint, &offsets).await?;
                    // Routing by payload: the round stored after the
                    // offsets is not an offset.
                    let offsets: Vec<Option<i64>> = offsets
                        .into_iter()
                        .take(shared.topics.len())
                        .map(Some)
                        .collect();
                    shared.mark_done(partition, &offsets);
                }
                saving.end();
            } else if !cfg.state_changelog || shared.txn.is_some() {
                shared.mark_done(partition, &next);
            }
            shared
                .stats
                .confirmed
                .fetch_add(batch.events, Ordering::Relaxed);
        }
        Ok(())
    }
    .await;
    // Nothing more is written: a task waiting for the write goes on (to
    // hear of the failure, or to stop).
    saving.end();
    // The partition's findings are someone else's from now on.
    for ((rule, severity), n) in open {
        metrics.open(rule, severity, -n);
    }
    drop(owners);
    result
}
