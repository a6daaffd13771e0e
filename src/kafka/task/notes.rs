//! Notes about accounts that change hands, between partition tasks that
//! route by payload: what the engine emits while its target applies round
//! `r` is produced to the partitions it names as one record per round and
//! partition, opening the task's round `r + 2` there (see `route.rs`).

use super::confirm::{Batch, Output};
use super::route::{header, NOTES, ROUND, SOURCE};
use super::PartitionTask;
use crate::detect::engine::{encode_note, pack_notes, To};
use crate::kafka::publish::enqueue_with;
use crate::kafka::PipelineError;
use rdkafka::message::OwnedHeaders;
use std::collections::BTreeMap;

/// Bytes of notes per record, well within a broker's default limit of a
/// megabyte a message.
const MAX_NOTES_BYTES: usize = 256 * 1024;

impl PartitionTask {
    /// Takes the notes the engine emitted while applying round `round`:
    /// they open round `round + 2` of this source.
    pub(super) fn collect_notes(&mut self, round: u64) {
        let notes = self.driver.engine_mut().take_notes();
        if !notes.is_empty() {
            let router = self.router.as_mut().expect("routing");
            router
                .outbox
                .extend(notes.into_iter().map(|(to, n)| (round + 2, to, n)));
        }
    }

    /// Produces the notes taken so far: one record per round they open
    /// and partition they go to, each in the order emitted.
    pub(super) async fn send_notes(&mut self, batch: &mut Batch) -> Result<(), PipelineError> {
        let shared = self.shared.clone();
        let own = self.partition;
        let router = self.router.as_mut().expect("routing");
        if router.outbox.is_empty() {
            return Ok(());
        }
        // Each note encoded once; the records of every partition it goes
        // to name it by its index.
        let mut encoded: Vec<Vec<u8>> = Vec::new();
        let mut records: BTreeMap<(u64, i32), Vec<usize>> = BTreeMap::new();
        for (round, to, note) in std::mem::take(&mut router.outbox) {
            router.notes_until = router.notes_until.max(round + 1);
            let n = encoded.len();
            encoded.push(encode_note(&note));
            match to {
                To::Every => {
                    for t in (0..shared.partitions).filter(|&t| t != own) {
                        records.entry((round, t)).or_default().push(n);
                    }
                }
                To::KeyOf(key) => {
                    let t = shared
                        .cfg
                        .kafka
                        .partitioner
                        .partition(&key, shared.partitions);
                    records.entry((round, t)).or_default().push(n);
                }
            }
        }
        let source = own.to_string();
        for ((round, t), notes) in records {
            let round = round.to_string();
            let headers = OwnedHeaders::new()
                .insert(header(SOURCE, &source))
                .insert(header(ROUND, &round))
                .insert(header(NOTES, "1"));
            let notes = notes.iter().map(|&n| encoded[n].as_slice());
            for payload in pack_notes(notes, MAX_NOTES_BYTES) {
                let delivery = enqueue_with(
                    &shared.producer,
                    &shared.cfg.topics.repartition,
                    Some(t),
                    None,
                    &payload,
                    Some(&headers),
                )
                .await?;
                batch.deliveries.push((delivery, Output::Routed));
            }
        }
        Ok(())
    }
}
