//! Causal delivery: which of the entries stored here a lookup may start
//! from.
//!
//! A replica learns feeds in any order and with gaps (blocks still being
//! fetched, or lost in a power cut and fetched again). An entry's clock
//! says how much of every feed its writer had seen; its trie points only
//! into that. Starting a lookup from an entry whose clock claims entries
//! not stored here would skip what it points to, and worse, hide the
//! values those entries superseded (they are "seen" by the head, so no
//! other head answers for them). A local write built on such a view
//! would then claim, in its own clock, entries its trie never reached,
//! and the values would vanish on every replica.
//!
//! So every writer is *delivered* up to the longest prefix of its feed
//! whose latest entry's clock is covered by what is delivered of every
//! other writer: a fixpoint, computed from the entries stored here and
//! nothing else (so two replicas holding the same blocks agree). The
//! replica's own writer is always delivered whole: it wrote its entries.
//!
//! A writer whose header does not decode, or is not hyperdb's, counts
//! nothing; an entry that does not decode is treated as one whose past
//! has not arrived (its bytes are signed, so every replica holds the same
//! ones and decides alike).
//!
//! Honest writers' clocks only grow along their feed, so the latest
//! delivered entry is found by a binary search; every entry below it is
//! then covered too. When everything has arrived, every writer is
//! delivered whole and lookups start from the latest entries, as in
//! hyperdb 3.5.0.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::reading::Reading;

/// The heads lookups start from, and where they come from.
#[derive(Clone)]
pub(crate) struct Heads {
    /// The latest delivered entry of every counted writer, less those
    /// another has seen.
    /// Shared: a lookup takes them without copying every writer's.
    pub(crate) nodes: Arc<[Arc<Node>]>,
    /// Every writer's delivered length, in id order.
    pub(crate) lengths: Arc<Vec<u64>>,
}

/// The heads as last computed, and what from.
pub(crate) struct Delivered {
    /// Every writer's available length and whether it counts, in id order.
    from: Vec<(u64, bool)>,
    heads: Heads,
}

impl Reading<'_> {
    /// The current heads: the latest delivered entry of every counted
    /// writer, less those another head has seen; with every writer's
    /// delivered length. Reused while no feed has grown or shrunk and no
    /// writer was authorized since they were computed, so a lookup does
    /// not pay for every writer of the database.
    pub(crate) fn heads_delivered(&self) -> Result<Heads> {
        for _ in 0..4 {
            if let Some(heads) = self.memo_current() {
                return Ok(heads);
            }
            let from = self.availability();
            let heads = self.compute_heads()?;
            // Decoding may have found a writer, or a replication stored
            // blocks meanwhile: keep them only when they are still current.
            if self.availability() == from {
                *self.db.delivered.lock() = Some(Delivered {
                    from,
                    heads: heads.clone(),
                });
                return Ok(heads);
            }
        }
        // Feeds keep moving: answer from the latest computation (it is
        // consistent in itself) without keeping it.
        self.compute_heads()
    }

    fn compute_heads(&self) -> Result<Heads> {
        self.discover()?;
        let lengths = self.deliver()?;
        let mut nodes = Vec::new();
        for (id, &length) in lengths.iter().enumerate() {
            if length < 2 || !self.included(id) {
                continue;
            }
            if let Some(head) = self.node(id, length - 1)? {
                nodes.push(head);
            }
        }
        Ok(Heads {
            nodes: crate::node::unseen(&nodes).into(),
            lengths: Arc::new(lengths),
        })
    }

    /// The heads last computed, if no writer's availability has changed
    /// since: compared in place, so a lookup in a database with many
    /// writers allocates nothing here.
    fn memo_current(&self) -> Option<Heads> {
        let memo = self.db.delivered.lock();
        let memo = memo.as_ref()?;
        let current = self.availability_of();
        (memo.from.len() == self.db.registry.len()
            && memo
                .from
                .iter()
                .enumerate()
                .all(|(id, &f)| f == current(id)))
        .then(|| memo.heads.clone())
    }

    fn availability(&self) -> Vec<(u64, bool)> {
        (0..self.db.registry.len())
            .map(self.availability_of())
            .collect()
    }

    /// Writer `id`'s available length and whether it counts.
    fn availability_of(&self) -> impl Fn(usize) -> (u64, bool) + '_ {
        |id| {
            let w = self.db.registry.get(id).expect("a known writer");
            (
                w.available.load(Ordering::Acquire),
                w.included.load(Ordering::Acquire),
            )
        }
    }

    /// The fixpoint: lengths only shrink, from what is available, until
    /// every writer's latest delivered entry is covered.
    fn deliver(&self) -> Result<Vec<u64>> {
        let local = self.db.local;
        let mut lengths: Vec<u64> = (0..self.db.registry.len())
            .map(|id| {
                let w = self.db.registry.get(id).expect("a known writer");
                // A writer whose header has not checked out counts nothing.
                if id != local && !w.header_checked.load(Ordering::Acquire) {
                    return 0;
                }
                w.available.load(Ordering::Acquire)
            })
            .collect();
        loop {
            let mut changed = false;
            for id in 0..lengths.len() {
                if id == local || lengths[id] < 2 || self.covered(id, lengths[id] - 1, &lengths)? {
                    continue;
                }
                // The longest prefix whose latest entry is covered; the
                // header alone (length 1) always is.
                let (mut lo, mut hi) = (1, lengths[id] - 1);
                while lo < hi {
                    let mid = lo + (hi - lo).div_ceil(2);
                    if self.covered(id, mid - 1, &lengths)? {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                lengths[id] = lo;
                changed = true;
            }
            if !changed {
                return Ok(lengths);
            }
        }
    }

    /// Whether writer `id`'s entry `seq` has seen nothing beyond `lengths`
    /// of the other writers. An entry that does not decode says nothing
    /// of what it saw: it holds back its writer's later entries.
    fn covered(&self, id: usize, seq: u64, lengths: &[u64]) -> Result<bool> {
        let node = match self.node(id, seq) {
            Ok(Some(node)) => node,
            Ok(None) | Err(Error::BadEntry { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(node
            .clock
            .iter()
            .enumerate()
            .all(|(u, &c)| u == id || c <= lengths.get(u).copied().unwrap_or(0)))
    }
}
