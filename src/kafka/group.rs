//! The consumer group: what the consumer thread, the rebalance callbacks
//! and the partition tasks share ([`Shared`]), the commits of acknowledged
//! offsets (or of the open transaction), and the rebalance callbacks that
//! split each partition's queues before it is fetched, restore it on
//! assignment and publish, commit and drop it on revocation.

use super::*;

pub(crate) type LiveConsumer = BaseConsumer<Ctx>;

/// What the consumer thread, the rebalance callbacks and the partition
/// tasks share.
pub(crate) struct Shared {
    pub(crate) cfg: Arc<Config>,
    /// Input topics sorted by name (the merge order of ties), then the
    /// repartition topic when records are routed by payload: every topic
    /// the group consumer reads.
    pub(crate) topics: Vec<InputTopic>,
    /// Partitions of each input topic (they are co-partitioned).
    pub(crate) partitions: i32,
    /// Routing by payload: the index in `topics` of the repartition topic
    /// (the last; the ones before are the inputs).
    pub(crate) repartition: Option<usize>,
    pub(crate) index: HashMap<String, usize>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) producer: Producer,
    pub(crate) stats: Arc<LiveStats>,
    pub(crate) decoder: InputDecoder,
    pub(crate) encoder: crate::codec::output::FindingEncoder,
    pub(crate) tasks: Mutex<BTreeMap<i32, task::TaskHandle>>,
    /// Queues split from the consumer's before an assignment took effect,
    /// by (topic index, partition), until their task takes them.
    pub(crate) split: Mutex<HashMap<(usize, i32), PartitionQueue<Ctx>>>,
    /// Exactly-once mode: the transaction gate.
    pub(crate) txn: Option<Txn>,
    /// Next offset to read per (topic index, partition) whose outputs are
    /// all acknowledged and which is not committed yet.
    pub(crate) done: Mutex<BTreeMap<(usize, i32), i64>>,
    pub(crate) fatal: Mutex<Option<PipelineError>>,
    pub(crate) failed: AtomicBool,
    pub(crate) consumer: OnceLock<Weak<LiveConsumer>>,
    /// Restores running at once: a restore is CPU-bound, so more than the
    /// cores can run only thrash, and each opens its own connections.
    pub(crate) restore_slots: Arc<tokio::sync::Semaphore>,
    /// Consumers of the state changelog between restores (at most one per
    /// restore slot): a restore reuses one whose connection and metadata
    /// are warm instead of starting its own.
    pub(crate) changelog_readers: super::restore::Readers,
    /// Partitions whose assignment was lost (the group moved on without
    /// this member): their tasks write no more state, which another member
    /// may own by now.
    pub(crate) lost: Mutex<BTreeSet<i32>>,
    /// librdkafka's log of the group consumer, each cause once per interval.
    pub(crate) logs: client::LogLimiter,
}

/// Restores allowed at once per core.
pub(crate) const RESTORES_PER_CORE: usize = 2;

impl Shared {
    /// How many of `topics` are input topics (the rest is the repartition
    /// topic).
    pub(crate) fn inputs(&self) -> usize {
        self.repartition.unwrap_or(self.topics.len())
    }

    /// Whether this member may still write partition `p`'s state.
    pub(crate) fn owns_state(&self, p: i32) -> bool {
        !self.lost.lock().expect("lost lock").contains(&p)
    }

    /// Records the first fatal error; the consumer thread stops on it.
    pub(crate) fn fail(&self, e: PipelineError) {
        tracing::error!(error = %e, "pipeline failed");
        let mut fatal = self.fatal.lock().expect("fatal lock");
        fatal.get_or_insert(e);
        self.failed.store(true, Ordering::SeqCst);
        self.stats.failed.store(true, Ordering::SeqCst);
    }

    /// Marks offsets of one partition as done (acknowledged), all at once.
    pub(crate) fn mark_done(&self, partition: i32, next: &[Option<i64>]) {
        let mut done = self.done.lock().expect("done lock");
        for (q, n) in next.iter().enumerate() {
            if let Some(n) = n {
                done.insert((q, partition), *n);
            }
        }
    }

    /// Commits what is done: in exactly-once mode the open transaction
    /// (outputs and all marked offsets), else the marked offsets of
    /// `partitions` (all when `None`), waiting for the broker.
    pub(crate) fn commit_done(&self, consumer: &LiveConsumer, partitions: Option<&BTreeSet<i32>>) {
        if self.txn.is_some() {
            if let Err(e) = self.commit_transaction(consumer) {
                self.fail(e);
            }
            return;
        }
        let mut tpl = TopicPartitionList::new();
        let mut taken: Vec<((usize, i32), i64)> = Vec::new();
        {
            let mut done = self.done.lock().expect("done lock");
            let keys: Vec<(usize, i32)> = done
                .keys()
                .copied()
                .filter(|(_, p)| partitions.is_none_or(|set| set.contains(p)))
                .collect();
            for k in keys {
                let next = done.remove(&k).expect("key listed");
                let _ = tpl.add_partition_offset(&self.topics[k.0].name, k.1, Offset::Offset(next));
                taken.push((k, next));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // Synchronous: a failed commit puts its marks back to be tried again
        // (unless newer ones arrived meanwhile).
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(error = %e, "offset commit failed; retrying at the next interval");
            let mut done = self.done.lock().expect("done lock");
            for (k, next) in taken {
                done.entry(k).or_insert(next);
            }
        }
    }

    pub(crate) fn take_marks(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let mut done = self.done.lock().expect("done lock");
        for ((q, p), next) in std::mem::take(&mut *done) {
            let _ = tpl.add_partition_offset(&self.topics[q].name, p, Offset::Offset(next));
        }
        tpl
    }

    /// Commits the open transaction with the marked offsets and opens the
    /// next. Waits for the batches in progress.
    pub(crate) fn commit_transaction(&self, consumer: &LiveConsumer) -> Result<(), PipelineError> {
        let txn = self.txn.as_ref().expect("exactly-once mode");
        if self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _gate = txn.gate.blocking_write();
        let tpl = self.take_marks();
        if tpl.count() == 0 && !txn.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        txn.dirty.store(false, Ordering::SeqCst);
        let timeout = Duration::from_secs(60);
        if tpl.count() > 0 {
            let group = consumer.group_metadata().ok_or_else(|| {
                PipelineError::Client("exactly_once: the consumer has no group metadata".into())
            })?;
            self.producer
                .send_offsets_to_transaction(&tpl, &group, timeout)?;
        }
        self.producer.commit_transaction(timeout)?;
        self.producer.begin_transaction()?;
        tracing::debug!(offsets = tpl.count(), "transaction committed");
        Ok(())
    }

    pub(crate) fn topic_index(&self, topic: &str) -> Option<usize> {
        self.index.get(topic).copied()
    }

    /// Stops the tasks of `partitions` (all when `None`) and waits until each
    /// has published what it applied and stored its offsets.
    pub(crate) fn stop_tasks(&self, partitions: Option<&BTreeSet<i32>>) {
        let handles: Vec<task::TaskHandle> = {
            let mut tasks = self.tasks.lock().expect("tasks lock");
            let keys: Vec<i32> = tasks
                .keys()
                .copied()
                .filter(|p| partitions.is_none_or(|set| set.contains(p)))
                .collect();
            keys.iter().filter_map(|p| tasks.remove(p)).collect()
        };
        if handles.is_empty() {
            return;
        }
        {
            let mut owned = self.stats.partitions.lock().expect("stats lock");
            for h in &handles {
                owned.remove(&h.partition);
            }
            self.stats
                .metrics
                .partitions_assigned
                .set(owned.len() as i64);
            self.stats.set_unassigned(owned.is_empty());
        }
        self.runtime.block_on(async {
            for h in handles {
                h.stop().await;
            }
        });
    }
}

/// Exactly-once mode: tasks hold the gate for reading while they apply a
/// batch, produce its outputs and mark its offsets; the committer takes it
/// for writing, so a transaction always holds whole batches.
pub(crate) struct Txn {
    pub(crate) gate: tokio::sync::RwLock<()>,
    /// Something was produced or marked since the last commit.
    pub(crate) dirty: AtomicBool,
}

/// The consumer's context: rebalance callbacks and librdkafka's log.
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.shared.logs.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            super::client::note_brokers(
                &self.shared.stats.brokers_down,
                false,
                "consumer error",
                reason,
            );
        }
        self.shared.logs.error(&error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        // Brokers are down while none of them is up; what was fetched before
        // an outage and is still being applied says nothing of that.
        if let Some(up) = super::client::brokers_up(&statistics) {
            super::client::note_brokers(
                &self.shared.stats.brokers_down,
                up,
                "consumer statistics",
                &super::client::broker_states(&statistics),
            );
        }
        let lag = &self.shared.stats.metrics.consumer_lag;
        for (name, topic) in &statistics.topics {
            if self.shared.topic_index(name).is_none() {
                continue;
            }
            for (p, part) in &topic.partitions {
                // -1 is librdkafka's internal partition; a negative lag is unknown.
                if *p >= 0 && part.consumer_lag >= 0 {
                    lag.with_label_values(&[name, &p.to_string()])
                        .set(part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &LiveConsumer, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // Split before the assignment starts the fetchers, so that no
            // message of these partitions reaches the consumer's queue.
            if let Err(e) = self.split_queues(tpl) {
                self.shared.fail(e);
            }
        }
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if parts.is_empty() {
                tracing::info!("rebalance: revocation of no partition");
            } else {
                tracing::info!(
                    "rebalance: revoked partitions {}; publishing, committing and dropping their state",
                    list(&parts)
                );
            }
            if consumer.assignment_lost() {
                self.shared
                    .lost
                    .lock()
                    .expect("lost lock")
                    .extend(parts.iter().copied());
            }
            self.shared.stop_tasks(Some(&parts));
            if !consumer.assignment_lost() {
                self.shared.commit_done(consumer, Some(&parts));
            }
            // Someone else owns them now: what did not commit must not
            // overwrite their commits later.
            self.shared
                .done
                .lock()
                .expect("done lock")
                .retain(|(_, p), _| !parts.contains(p));
        }
    }

    fn post_rebalance(&self, consumer: &LiveConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.shared.stats.rebalances.fetch_add(1, Ordering::Relaxed);
                self.shared.stats.metrics.rebalances.inc();
                let parts: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                if parts.is_empty() {
                    tracing::info!(
                        group = %self.shared.cfg.kafka.group_id,
                        "rebalance: assignment of no partition (the group has at least as many members as partitions, or is still settling); waiting for the next rebalance"
                    );
                } else {
                    tracing::info!("rebalance: assigned partitions {}", list(&parts));
                }
                if let Err(e) = self.on_assign(consumer, tpl) {
                    self.shared.fail(e);
                }
            }
            Rebalance::Revoke(_) => {
                self.shared.stats.rebalances.fetch_add(1, Ordering::Relaxed);
                self.shared.stats.metrics.rebalances.inc();
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

impl Ctx {
    pub(crate) fn split_queues(&self, tpl: &TopicPartitionList) -> Result<(), PipelineError> {
        let shared = &self.shared;
        let Some(live) = shared.consumer.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let mut split = shared.split.lock().expect("split lock");
        for e in tpl.elements() {
            let Some(q) = shared.topic_index(e.topic()) else {
                continue;
            };
            let queue = live
                .split_partition_queue(e.topic(), e.partition())
                .ok_or_else(|| {
                    PipelineError::Client(format!(
                        "cannot read {} [{}] on its own queue",
                        e.topic(),
                        e.partition()
                    ))
                })?;
            split.insert((q, e.partition()), queue);
        }
        Ok(())
    }

    pub(crate) fn on_assign(
        &self,
        consumer: &LiveConsumer,
        tpl: &TopicPartitionList,
    ) -> Result<(), PipelineError> {
        let shared = &self.shared;
        // The queues hold the consumer: none may outlive this call untaken.
        let mut split = std::mem::take(&mut *shared.split.lock().expect("split lock"));
        let Some(live) = shared.consumer.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        if tpl.count() == 0 {
            return Ok(());
        }
        // Owned again: the tasks of an earlier, lost assignment have ended.
        {
            let mut lost = shared.lost.lock().expect("lost lock");
            for e in tpl.elements() {
                lost.remove(&e.partition());
            }
        }
        // The live partitions wait while their state is restored.
        consumer.pause(tpl)?;
        let committed = consumer.committed_offsets(tpl.clone(), Duration::from_secs(30))?;
        let mut by_partition: BTreeMap<i32, Vec<Option<i64>>> = BTreeMap::new();
        for e in committed.elements() {
            let Some(q) = shared.topic_index(e.topic()) else {
                continue;
            };
            let slot = by_partition
                .entry(e.partition())
                .or_insert_with(|| vec![None; shared.topics.len()]);
            slot[q] = match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            };
        }
        let committed: Vec<String> = by_partition
            .iter()
            .map(|(p, offsets)| {
                let per_topic: Vec<String> = offsets
                    .iter()
                    .enumerate()
                    .map(|(q, o)| match o {
                        Some(o) => format!("{}@{o}", shared.topics[q].name),
                        None => format!("{}@none", shared.topics[q].name),
                    })
                    .collect();
                format!("partition {p}: {}", per_topic.join(" "))
            })
            .collect();
        tracing::info!(
            "restoring state up to the committed offsets ({})",
            committed.join("; ")
        );
        let mut tasks = shared.tasks.lock().expect("tasks lock");
        let mut owned = shared.stats.partitions.lock().expect("stats lock");
        for (p, offsets) in by_partition {
            let queues = (0..shared.topics.len())
                .map(|q| {
                    split.remove(&(q, p)).ok_or_else(|| {
                        PipelineError::Client(format!(
                            "{} [{p}] was assigned without its queue",
                            shared.topics[q].name
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            tasks.insert(
                p,
                task::spawn(shared.clone(), live.clone(), p, offsets, queues),
            );
            owned.insert(p);
        }
        shared
            .stats
            .metrics
            .partitions_assigned
            .set(owned.len() as i64);
        shared.stats.set_unassigned(owned.is_empty());
        Ok(())
    }
}

/// Partition numbers as text: "0, 1, 2".
pub(crate) fn list(parts: &BTreeSet<i32>) -> String {
    parts
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
