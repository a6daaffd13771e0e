//! A partition task's state on the way in and out: rebuilding its engine
//! on assignment (from the state changelog, or from the input history),
//! and, while it runs, the checkpoints it writes to the changelog, the
//! records a restored checkpoint already holds, and input deleted before
//! it was read.

use super::confirm::{Batch, Output};
use super::inputs;
use super::PartitionTask;
use crate::detect::engine::Engine;
use crate::kafka::changelog;
use crate::kafka::restore::restore;
use crate::kafka::{PipelineError, Shared};
use crate::model::event::Key;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A partition's engine as restored, and where its input resumes.
pub(super) struct Restored {
    pub(super) engine: Engine,
    /// The next offset of each input topic the state reflects.
    pub(super) start: Vec<Option<i64>>,
    /// Routing by payload: the round the input resumes at.
    pub(super) round: u64,
    /// Keys whose changelog record reflects later offsets than `start`.
    pub(super) ahead: HashMap<Key, Vec<i64>>,
    /// Routing by payload: events in key records a checkpoint cut short
    /// wrote, known by the ids piece it wrote after them.
    pub(super) cut_short: CutShort,
}

/// Events known to be in their keys' restored state, by id.
pub(super) type CutShort =
    std::collections::HashSet<(crate::model::event::System, crate::model::id::EventId)>;

/// Rebuilds the partition's engine on a blocking thread, at most
/// [`super::RESTORES_PER_CORE`] per core at a time: from the state
/// changelog when it is kept and usable, else from the input history.
/// `None` when the task was stopped meanwhile.
pub(super) async fn restore_state(
    shared: &Arc<Shared>,
    partition: i32,
    committed: &[Option<i64>],
    stop: &watch::Receiver<bool>,
) -> Result<Option<Restored>, PipelineError> {
    let started = Instant::now();
    shared.stats.metrics.partitions_restoring.inc();
    shared.stats.restore_began();
    // Waiting for a restore slot counts as restoring; a stop ends the wait.
    let mut stopped = stop.clone();
    let slot = tokio::select! {
        slot = shared.restore_slots.clone().acquire_owned() => slot.ok(),
        _ = stopped.wait_for(|stopped| *stopped) => None,
    };
    let restored = match slot {
        None => Ok(None),
        Some(slot) => {
            let shared = shared.clone();
            let committed = committed.to_vec();
            let stop = stop.clone();
            tokio::task::spawn_blocking(move || {
                let restored = restore_blocking(&shared, partition, &committed, &stop);
                drop(slot);
                restored
            })
            .await
            .map_err(|e| {
                PipelineError::Panicked(format!("restoring partition {partition} failed: {e}"))
            })
            .and_then(|r| r)
        }
    };
    shared.stats.restore_ended();
    shared.stats.metrics.partitions_restoring.dec();
    let Some((restored, source, events)) = restored? else {
        return Ok(None);
    };
    let m = &shared.stats.metrics;
    m.restores.with_label_values(&[source]).inc();
    m.restore_seconds
        .with_label_values(&[source])
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(
        source,
        events,
        tracked = restored.engine.tracked(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state restored; resuming"
    );
    Ok(Some(restored))
}

/// The restore itself, on a blocking thread: the restored engine, where it
/// came from (`changelog`, `history`, or `none` for a partition with
/// nothing committed), and the input events applied.
fn restore_blocking(
    shared: &Shared,
    partition: i32,
    committed: &[Option<i64>],
    stop: &watch::Receiver<bool>,
) -> Result<Option<(Restored, &'static str, u64)>, PipelineError> {
    let fresh = committed.iter().all(|c| c.is_none_or(|c| c <= 0));
    // Pieces of ids a changelog holds that the state rebuilt here did not
    // write.
    let (mut stale, mut stale_keys) = (Vec::new(), Vec::new());
    if shared.cfg.state_changelog {
        match changelog::read(shared, partition, committed, stop)? {
            Ok(None) => return Ok(None),
            Ok(Some(r)) => {
                shared
                    .stats
                    .metrics
                    .state_keys_restored
                    .inc_by(r.keys as u64);
                tracing::info!(
                    keys = r.keys,
                    records = r.records,
                    bytes = r.bytes,
                    ahead = r.ahead.len(),
                    cut_short = r.cut_short.len(),
                    "state read from the changelog; the input follows from the offsets it reflects"
                );
                let restored = Restored {
                    engine: r.engine,
                    start: r.start.into_iter().map(Some).collect(),
                    round: r.round,
                    ahead: r.ahead,
                    cut_short: r.cut_short,
                };
                return Ok(Some((restored, "changelog", 0)));
            }
            // Nothing committed: a first start, whatever the changelog
            // holds (a run that stopped before its first checkpoint).
            Err(changelog::Unusable {
                reason,
                pieces,
                keys,
            }) if fresh => {
                if reason != changelog::EMPTY {
                    tracing::info!(
                        "nothing committed and the state changelog unusable ({reason}): starting from the beginning"
                    );
                }
                (stale, stale_keys) = (pieces, keys);
            }
            Err(changelog::Unusable { reason, .. }) if shared.repartition.is_some() => {
                return Err(PipelineError::Config(format!(
                    "partition {partition}: the state changelog `{}` cannot restore it ({reason}); with kafka.route_by = \"payload\" a partition's state holds records other partitions read, which its own input history cannot rebuild. Repair the changelog, or start over: a new kafka.group_id, topics.state and topics.repartition",
                    shared.cfg.topics.state
                )));
            }
            Err(changelog::Unusable { reason, .. }) if !shared.cfg.history_fallback => {
                return Err(PipelineError::Config(format!(
                    "partition {partition}: the state changelog `{}` cannot restore it ({reason}), and state.history_fallback = false forbids re-reading the input history; repair or recreate the changelog, or set state.history_fallback = true if the input topics still hold their whole history",
                    shared.cfg.topics.state
                )));
            }
            Err(changelog::Unusable {
                reason,
                pieces,
                keys,
            }) => {
                (stale, stale_keys) = (pieces, keys);
                tracing::warn!(
                    topic = %shared.cfg.topics.state,
                    "the state changelog cannot restore this partition ({reason}); re-reading the input history instead"
                );
            }
        }
    }
    let Some((mut engine, events)) = restore(shared, partition, committed, stop)? else {
        return Ok(None);
    };
    if shared.cfg.state_changelog {
        // The first checkpoint writes the whole state.
        engine.track_changes_after(stale, stale_keys);
    }
    let restored = Restored {
        engine,
        start: committed.to_vec(),
        round: 0,
        ahead: HashMap::new(),
        cut_short: CutShort::new(),
    };
    Ok(Some((
        restored,
        if fresh { "none" } else { "history" },
        events,
    )))
}

impl PartitionTask {
    /// Once a topic has been fetched from: whether records between where
    /// its reading started and its log start were deleted before they were
    /// read (retention outran a stopped detector). They are lost to the
    /// state: a warning and `driftwatch_input_records_deleted_unread_total`.
    pub(super) fn check_start(&mut self) {
        for q in 0..self.shared.topics.len() {
            let Some(start) = self.inputs.unchecked_start[q] else {
                continue;
            };
            let Some((low, _)) =
                inputs::cached_watermarks(&self.consumer, &self.shared, self.partition, q)
            else {
                continue;
            };
            self.inputs.unchecked_start[q] = None;
            if low > start {
                let topic = &self.shared.topics[q].name;
                tracing::warn!(
                    topic = %topic,
                    start,
                    log_start = low,
                    "input records {start}..{low} were deleted before this detector read them: the state lacks them (input retention shorter than the time the partition went unread)"
                );
                self.shared
                    .stats
                    .metrics
                    .input_deleted_unread
                    .with_label_values(&[topic])
                    .inc_by((low - start) as u64);
            }
        }
    }

    /// Whether record `env` of topic `q` is already in its key's restored
    /// state (a checkpoint cut short wrote the key's record and not the
    /// partition's): then it only moves stream time.
    pub(super) fn reflected(&mut self, q: usize, env: &crate::model::event::Envelope) -> bool {
        self.reflected_at(q, env, env.origin.offset)
    }

    /// As [`Self::reflected`], for `env` read at `offset` of topic `q` (a
    /// moved event: its offset in the repartition topic, below which the
    /// key's record reflects every event, as that topic is committed at
    /// its lowest event not applied).
    pub(super) fn reflected_at(
        &mut self,
        q: usize,
        env: &crate::model::event::Envelope,
        offset: i64,
    ) -> bool {
        if self.ahead.is_empty() {
            return false;
        }
        let in_state = self
            .ahead
            .get(&env.event.key())
            .is_some_and(|offsets| offset < offsets[q]);
        // Past every key's offsets: nothing left to skip.
        let next = &self.applied_next;
        self.ahead
            .retain(|_, offsets| offsets.iter().zip(next).any(|(o, n)| o > n));
        in_state
    }

    /// Step 3b, with the state changelog: at most once per
    /// `state.checkpoint_interval` and once the previous checkpoint is
    /// written (every batch in exactly-once mode, whose transaction holds
    /// the batch's offsets), and at a stop, what was
    /// applied since the last checkpoint, as of the end of this batch: the
    /// confirmer writes it once the outputs before it are acknowledged,
    /// then marks its offsets done (exactly-once: written now, into the
    /// transaction). `changed`: this batch applied records or moved time.
    pub(super) async fn checkpoint(
        &mut self,
        batch: &mut Batch,
        changed: bool,
        stopping: bool,
    ) -> Result<(), PipelineError> {
        let shared = self.shared.clone();
        if !shared.cfg.state_changelog {
            return Ok(());
        }
        for (n, o) in self.applied_next.iter_mut().zip(batch.next_offsets()) {
            if let Some(o) = o {
                *n = o;
            }
        }
        self.unsaved |= changed;
        let due = shared.txn.is_some()
            || stopping
            || (self.checkpointed_at.elapsed()
                >= Duration::from_millis(shared.cfg.checkpoint_interval_ms)
                && !self.saving.busy());
        if !self.unsaved || !due || !shared.owns_state(self.partition) {
            return Ok(());
        }
        self.unsaved = false;
        self.checkpointed_at = Instant::now();
        let mut offsets = self.applied_next.clone();
        // Routing by payload (at least once only): the round the offsets
        // resume at.
        if let Some(router) = &self.router {
            offsets.push(router.resume_round() as i64);
        }
        let checkpoint = self
            .driver
            .engine_mut()
            .checkpoint_after(&changelog::frame(&offsets, &[]));
        if self.shared.txn.is_some() {
            let deliveries =
                changelog::write_in_transaction(&self.shared, self.partition, checkpoint, &offsets)
                    .await?;
            batch
                .deliveries
                .extend(deliveries.into_iter().map(|d| (d, Output::State)));
        } else {
            self.saving.start();
            batch.checkpoint = Some((checkpoint, offsets));
        }
        Ok(())
    }
}
