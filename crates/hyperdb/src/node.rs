//! A decoded entry: a write to the database as the lookups see it.

use crate::trie::Trie;

/// One entry of a writer's feed, decoded, with feed numbers mapped to the
/// database's own list of writers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The key (normalized: no leading `/`).
    pub key: String,
    /// The value; `None` for deletes and authorizations.
    pub value: Option<Vec<u8>>,
    /// Whether this write deletes the key.
    pub deleted: bool,
    /// Which writer wrote it (index into the database's writers).
    pub feed: usize,
    /// Its seq in that writer's feed.
    pub seq: u64,
    /// For each writer (by index), how many of its entries the author had:
    /// this write has seen entry `s` of writer `w` when `clock[w] > s`.
    pub clock: Vec<u64>,
    /// Pointers to closer nodes, by path position and digit.
    pub trie: Trie,
    /// The key's path hash (see [`crate::hash::path`]).
    pub path: Vec<u8>,
    /// Seq of the writer's latest inflated entry when this was written.
    pub inflate: u64,
    /// The writer's feeds, when this is an inflated entry.
    pub feeds: Option<Vec<[u8; 32]>>,
    /// The permission change it carries (inflated entries only).
    pub policy: Option<Box<crate::policy::Record>>,
}

impl Node {
    /// About how many bytes the node takes in memory, its allocations
    /// included: what a cache of decoded entries charges for it.
    pub fn memory(&self) -> usize {
        // Each allocation also costs the allocator a header or so.
        const ALLOCATION: usize = 16;
        let vec = |bytes: usize| if bytes == 0 { 0 } else { bytes + ALLOCATION };
        std::mem::size_of::<Node>()
            + 2 * ALLOCATION // the Arc's counts and its allocation
            + vec(self.key.capacity())
            + self.value.as_ref().map_or(0, |v| vec(v.capacity()))
            + vec(self.clock.capacity() * std::mem::size_of::<u64>())
            + self.trie.memory()
            + vec(self.path.capacity())
            + self.feeds.as_ref().map_or(0, |f| vec(f.capacity() * 32))
            + self
                .policy
                .as_ref()
                .map_or(0, |_| vec(std::mem::size_of::<crate::policy::Record>()))
    }

    /// Whether this write had seen `other` when it was made.
    pub fn has_seen(&self, other: &Node) -> bool {
        self.clock.get(other.feed).copied().unwrap_or(0) > other.seq
    }

    /// The value as UTF-8 text, lossily.
    pub fn value_str(&self) -> Option<String> {
        self.value
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// The nodes no other node in `nodes` has seen: the heads of a set.
pub(crate) fn unseen(nodes: &[std::sync::Arc<Node>]) -> Vec<std::sync::Arc<Node>> {
    nodes
        .iter()
        .filter(|n| {
            !nodes
                .iter()
                .any(|o| !(o.feed == n.feed && o.seq == n.seq) && o.has_seen(n))
        })
        .cloned()
        .collect()
}
