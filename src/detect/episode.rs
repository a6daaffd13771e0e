//! A drift episode: one rule on one subject of a key, from the moment its
//! condition became true until it clears, and where it is in its lifecycle
//! ([`Phase`]). The state store holds each key's episodes; the engine moves
//! them along.

use crate::model::finding::Finding;
use crate::model::rule::Rule;
use crate::model::time::Ts;

/// Where an episode is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Condition true, SLA not yet expired.
    Pending,
    /// SLA expired as part of a SOURCE_STORM's burst: held back, not published.
    Held,
    Open,
    Escalated,
}

/// One drift episode: one rule on one subject.
#[derive(Clone, Debug)]
pub struct Episode {
    pub rule: Rule,
    /// Identity of the subject within the key.
    pub sid: u64,
    pub since: Ts,
    /// Stream time the episode began: a condition that ends and holds again
    /// later is a new episode, and so a new finding, even with the same `since`.
    pub began: Ts,
    pub due: Ts,
    pub phase: Phase,
    /// Held by a storm that has ended: it opens without being counted again.
    pub(super) released: bool,
    /// Serial of the episode's opening in its rule's storm window (0: none).
    pub(super) opening: u64,
    pub(super) seen: u64,
    /// The last published transition, once open.
    pub finding: Option<Box<Finding>>,
}
