//! Iterating the keys under a prefix, lazily, in the reference's order.
//!
//! The walk is a depth-first descent of the digit tree of key paths. A frame
//! is a position in a path and the nodes whose paths agree up to it (one per
//! fork); going down a digit keeps the nodes with that digit and follows the
//! trie pointers the others hold for it, exactly as a lookup does, so every
//! lookup below a frame is shared. Runs of positions where nothing branches
//! are skipped at once. The terminator (4) is visited first, then digits 0
//! to 3, as hyperdb 3.5.0's iterator does, so keys come out in its order;
//! at a terminator the candidates for each key are filtered by the causal
//! rule, as [`DbReader::get`] does. Memory is bounded by the depth of the walk.
//!
//! A database with one writer whose index of paths holds the head listed
//! (see [`DbReader::path_index`]) needs no walk: that index names the latest
//! entry of each path under the prefix, in the walk's order, and only
//! those entries are read, a window at a time in the order of their seqs.
//! It holds four bytes for each key under the prefix, and the window's
//! entries (at most about half of [`crate::OpenOptions::cache_bytes`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::db::DbReader;
use crate::error::Result;
use crate::hash::{DIGITS_PER_COMPONENT, TERMINATOR};
use crate::node::Node;
use crate::reading::ScanRead;

// The reference pushes digits 3, 2, 1, 0, 4 on a stack and pops them, so a
// key comes before the keys under it, then digits ascending.
const ORDER: [u8; 5] = [TERMINATOR, 0, 1, 2, 3];
const REVERSE_ORDER: [u8; 5] = [3, 2, 1, 0, TERMINATOR];

/// Options of [`DbReader::iter`].
#[derive(Clone, Copy, Debug, Default)]
pub struct IterOptions {
    /// Only one entry for each component directly under the prefix.
    pub shallow: bool,
    /// The opposite order.
    pub reverse: bool,
    /// Leave out the prefix itself (keys strictly under it).
    pub gt: bool,
    /// Include keys whose current writes are all deletes.
    pub deletes: bool,
    /// Any order; the keys and their values are the same. A listing of a
    /// database with one writer (its owner, through the key index, see
    /// [`DbReader::key_index`]) then reads the whole feed straight through
    /// and lists each key at its latest write, in the order keys were last
    /// written: for a listing of most of a large database, two to three
    /// times as fast as the walk, which reads the entries in random order.
    /// It reads every entry whatever the prefix, so for a prefix holding a
    /// small part of the database the walk is faster; for an old version,
    /// each key written again since is looked up. Otherwise, and for
    /// `shallow` or `reverse` listings, the usual order.
    pub unordered: bool,
}

enum Item {
    Frame {
        pos: usize,
        nodes: Vec<Arc<Node>>,
    },
    /// Nodes of one key; `lookup` when they are only some of its candidates
    /// (a shallow listing stops above the end of the key's path), so its
    /// values come from a lookup of the key, as `get` gives them.
    Leaf {
        nodes: Vec<Arc<Node>>,
        lookup: bool,
    },
}

/// A lazy iterator over `(key, current values)` pairs under a prefix.
pub struct Iter<'a> {
    db: &'a DbReader,
    heads: Vec<Arc<Node>>,
    policy: Option<Arc<crate::policy::Policy>>,
    stack: Vec<Item>,
    start: usize,
    options: IterOptions,
    prefix: String,
    /// A listing in the order written, instead of the walk.
    scan: Option<Scan>,
    /// A listing from the index of paths, instead of the walk.
    indexed: Option<Indexed>,
}

/// Entries a listing from the index of paths reads at first, and at least.
const FIRST_WINDOW: usize = 1024;

/// What reading a window holds for each of its entries besides the entry
/// itself, at most at once (the order of their seqs, the entries read in
/// that order and in the listing's, and where the block reader found each:
/// see `BlockReader::get_sorted`): counted in the window's budget.
const WINDOW_ENTRY: usize = 112;

/// How many entries ahead of the one listed a listing from the index of
/// paths asks for the next one's bytes (see [`ScanRead::prefetch`]).
const PREFETCH_AHEAD: usize = 8;

/// A listing in the walk's order from the index of paths (see
/// [`crate::path_index`]), for a database with one writer at the head
/// that index holds: the latest entry of every path under the prefix, in
/// order, known without reading the entries the walk would go through.
/// They are read a window at a time, sorted by seq, so that reads of
/// nearby entries share their system calls; the window holds at most
/// about half of [`crate::OpenOptions::cache_bytes`] of them.
struct Indexed {
    seqs: Vec<u32>,
    /// The first of `seqs` not read yet.
    next: usize,
    /// The window read, last first.
    window: Vec<(u32, ScanRead)>,
    /// How many the next window reads.
    size: usize,
    /// What a window may take, in [`ScanRead::memory`].
    budget: usize,
}

/// A listing in the order written (see [`IterOptions::unordered`]): the
/// source feed's entries up to the head, in order, each listed when it is
/// its key's latest.
struct Scan {
    /// The next entry to read, and the head's seq.
    next: u64,
    head: u64,
    /// The prefix's path: a key is under the prefix when its path starts
    /// with this, as the walk descends it.
    path: Vec<u8>,
    /// The entries up to the head that the key index names, read at the
    /// first entry listed (see [`crate::key_index::KeyIndex::named`]);
    /// empty when it could not be read.
    named: Option<Vec<u64>>,
}

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("prefix", &self.prefix)
            .field("pending", &self.stack.len())
            .finish()
    }
}

impl<'a> Iter<'a> {
    pub(crate) fn new(
        db: &'a DbReader,
        heads: &[Arc<Node>],
        policy: Option<Arc<crate::policy::Policy>>,
        prefix: &str,
        options: IterOptions,
    ) -> Result<Self> {
        let prefix = crate::hash::normalize(prefix).to_string();
        let path = crate::hash::path(&prefix, false);
        let scan = if options.unordered && !options.shallow && !options.reverse && policy.is_none()
        {
            crate::get::index_head(db, heads)
                .filter(|(index, head)| {
                    let info = index.info();
                    info.usable && info.covered > head.seq
                })
                .map(|(_, head)| Scan {
                    next: 1,
                    head: head.seq,
                    path: path.clone(),
                    named: None,
                })
        } else {
            None
        };
        let indexed = match heads {
            [head] if scan.is_none() && !options.shallow && policy.is_none() && head.feed == 0 => {
                db.path_index
                    .listing(db, &path, options.reverse, head.seq, prefix.is_empty())
                    .map(|seqs| Indexed {
                        seqs,
                        next: 0,
                        window: Vec::new(),
                        size: FIRST_WINDOW,
                        budget: db.path_index.window_bytes(),
                    })
            }
            _ => None,
        };
        let mut stack = Vec::new();
        if scan.is_none() && indexed.is_none() {
            let nodes = prefix_nodes(db, heads, &prefix)?;
            if !nodes.is_empty() {
                stack.push(Item::Frame {
                    pos: path.len(),
                    nodes,
                });
            }
        }
        Ok(Iter {
            scan,
            indexed,
            db,
            heads: heads.to_vec(),
            policy,
            stack,
            start: path.len(),
            options,
            prefix,
        })
    }

    fn advance(&mut self) -> Result<Option<(String, Vec<Arc<Node>>)>> {
        if self.scan.is_some() {
            return self.scan_next();
        }
        if self.indexed.is_some() {
            return self.indexed_next();
        }
        while let Some(item) = self.stack.pop() {
            let (pos, nodes) = match item {
                Item::Leaf { nodes, lookup } => {
                    if let Some(found) = self.leaf(nodes, lookup)? {
                        return Ok(Some(found));
                    }
                    continue;
                }
                Item::Frame { pos, nodes } => (pos, nodes),
            };
            let limit = if self.options.shallow {
                self.start + DIGITS_PER_COMPONENT
            } else {
                usize::MAX
            };
            let pos = next_branch(&nodes, pos).min(limit);
            if pos >= limit {
                // Shallow: everything under this component counts as one.
                self.push_leaves(nodes, true);
                continue;
            }
            let order = if self.options.reverse {
                REVERSE_ORDER
            } else {
                ORDER
            };
            // Pushed in reverse so they pop in order.
            for &digit in order.iter().rev() {
                let excluded = digit == TERMINATOR
                    && pos == self.start
                    && (self.options.gt || self.start == 0);
                if excluded {
                    continue;
                }
                let next = descend(self.db, &nodes, pos, digit)?;
                if next.is_empty() {
                    continue;
                }
                if digit == TERMINATOR {
                    self.push_leaves(next, false);
                } else {
                    self.stack.push(Item::Frame {
                        pos: pos + 1,
                        nodes: next,
                    });
                }
            }
        }
        Ok(None)
    }

    /// Whether this is a listing in the order written.
    #[cfg(test)]
    pub(crate) fn scanning(&self) -> bool {
        self.scan.is_some()
    }

    /// The next key of a listing in the order written: the next entry
    /// under the prefix that is its key's latest at the head.
    fn scan_next(&mut self) -> Result<Option<(String, Vec<Arc<Node>>)>> {
        loop {
            let Some(scan) = &mut self.scan else {
                return Ok(None);
            };
            if scan.next > scan.head {
                return Ok(None);
            }
            let (seq, head) = (scan.next, scan.head);
            scan.next += 1;
            let Some(node) = self.db.scan_node(0, seq)? else {
                continue;
            };
            // Under the prefix as the walk finds keys: by path, then by
            // name; the prefix itself (or, listing everything, the empty
            // key) left out as the walk leaves it out.
            let start = scan.path.len();
            let under = !node.key.is_empty()
                && (scan.path.is_empty() || node.path.starts_with(&scan.path))
                && (self.prefix.is_empty() || node.key.starts_with(&self.prefix))
                && !((self.options.gt || start == 0) && node.path.len() == start + 1);
            if !under || (node.deleted && !self.options.deletes) {
                continue;
            }
            let named = scan.named.get_or_insert_with(|| {
                let index = self.db.key_index.as_ref();
                index.and_then(|i| i.named(head + 1)).unwrap_or_default()
            });
            let bit = |seq: u64| {
                named
                    .get((seq / 64) as usize)
                    .is_some_and(|w| w & 1 << (seq % 64) != 0)
            };
            if bit(seq) || self.latest(&node, head)? {
                return Ok(Some((node.key.clone(), vec![node])));
            }
        }
    }

    /// The next key of a listing from the index of paths: the next entry
    /// it names that is under the prefix (as the walk finds keys) and, but
    /// for `deletes`, not a delete.
    fn indexed_next(&mut self) -> Result<Option<(String, Vec<Arc<Node>>)>> {
        let start = self.start;
        let Some(listing) = &mut self.indexed else {
            return Ok(None);
        };
        loop {
            if listing.window.is_empty() {
                if listing.next == listing.seqs.len() {
                    return Ok(None);
                }
                listing.read(self.db);
            }
            let Some((seq, read)) = listing.window.pop() else {
                continue;
            };
            // The entry listed a few keys from now, to be in the
            // processor's caches by then (the window is larger than they).
            if let Some(i) = listing.window.len().checked_sub(PREFETCH_AHEAD) {
                listing.window[i].1.prefetch();
            }
            // A missing entry is passed by, as the walk passes a pointer
            // to one.
            let Some(node) = self.db.reading().scan_decode(0, u64::from(seq), read)? else {
                continue;
            };
            let under = !node.key.is_empty()
                && node.key.starts_with(&self.prefix)
                && !((self.options.gt || start == 0) && node.path.len() == start + 1);
            if under && (self.options.deletes || !node.deleted) {
                return Ok(Some((node.key.clone(), vec![node])));
            }
        }
    }

    /// Whether `node`, entry `node.seq` of the one writer, is its key's
    /// latest at or before entry `head`: the key index says so, or names a
    /// later entry holding the key; where it cannot tell (a later entry
    /// written after `head`, another key with the same tag), the walk.
    fn latest(&self, node: &Arc<Node>, head: u64) -> Result<bool> {
        let index = self.db.key_index.as_ref();
        match index.and_then(|index| index.lookup(&node.key, head + 1)) {
            Some(seq) if seq == node.seq => return Ok(true),
            Some(seq) if seq <= head => {
                if let Some(later) = self.db.scan_node(0, seq)? {
                    if later.key == node.key && later.seq > node.seq {
                        return Ok(false);
                    }
                }
            }
            _ => {}
        }
        let candidates = crate::get::candidates(self.db, &self.heads, &node.key)?;
        let latest = crate::get::latest(candidates, true);
        Ok(latest.iter().any(|n| n.feed == 0 && n.seq == node.seq))
    }

    /// Candidates with the same path, grouped by key (colliding keys in
    /// ascending order), pushed so they pop in order.
    fn push_leaves(&mut self, nodes: Vec<Arc<Node>>, lookup: bool) {
        // Almost always one key: no grouping to do.
        if nodes.iter().all(|n| n.key == nodes[0].key) {
            self.stack.push(Item::Leaf { nodes, lookup });
            return;
        }
        let mut groups: BTreeMap<String, Vec<Arc<Node>>> = BTreeMap::new();
        for node in nodes {
            groups.entry(node.key.clone()).or_default().push(node);
        }
        for (_, nodes) in groups.into_iter().rev() {
            self.stack.push(Item::Leaf { nodes, lookup });
        }
    }

    fn leaf(
        &mut self,
        candidates: Vec<Arc<Node>>,
        lookup: bool,
    ) -> Result<Option<(String, Vec<Arc<Node>>)>> {
        let Some(key) = candidates.first().map(|n| n.key.clone()) else {
            return Ok(None);
        };
        if !key.starts_with(&self.prefix) || key.is_empty() {
            return Ok(None);
        }
        let policy = self.policy.as_deref();
        let candidates = if lookup {
            // As the reference does, a key whose nodes here are all deletes
            // is not listed; one that is, has the values `get` gives. A
            // delete that does not count hides nothing.
            let all_deletes = candidates
                .iter()
                .all(|n| n.deleted && policy.is_none_or(|p| p.counts(n)));
            if !self.options.deletes && all_deletes {
                return Ok(None);
            }
            crate::get::candidates(self.db, &self.heads, &key)?
        } else {
            candidates
        };
        let candidates = crate::get::counting(self.db, candidates, &key, policy)?;
        let values = crate::get::latest(candidates, true);
        if !self.options.deletes && values.iter().all(|n| n.deleted) {
            return Ok(None);
        }
        let values = if self.options.deletes {
            values
        } else {
            values.into_iter().filter(|n| !n.deleted).collect()
        };
        Ok(Some((key, values)))
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<(String, Vec<Arc<Node>>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance().transpose()
    }
}

impl Indexed {
    /// Reads the next window: its entries in the order of their seqs, kept
    /// in the listing's, to be decoded as they are listed. The next
    /// window's size follows from what this one's entries take.
    fn read(&mut self, db: &DbReader) {
        let end = self.seqs.len().min(self.next + self.size);
        let mut order: Vec<(u32, u32)> = self.seqs[self.next..end]
            .iter()
            .zip(0..)
            .map(|(&seq, i)| (seq, i))
            .collect();
        order.sort_unstable();
        let seqs = order.iter().map(|&(seq, _)| u64::from(seq));
        let reads = db.reading().scan_read_sorted(0, seqs);
        let mut bytes = 0;
        let mut read: Vec<(u32, u32, ScanRead)> = order
            .into_iter()
            .zip(reads)
            .map(|((seq, i), read)| {
                bytes += read.memory() + WINDOW_ENTRY;
                (i, seq, read)
            })
            .collect();
        // Back in the listing's order, last first (sorting moves them in
        // passes over the whole; putting each in its place at once would
        // miss the processor's caches once each).
        read.sort_unstable_by_key(|&(i, ..)| std::cmp::Reverse(i));
        let each = (bytes / read.len().max(1)).max(1);
        self.size = (self.budget / each).clamp(FIRST_WINDOW, self.size.saturating_mul(4));
        self.next = end;
        self.window = read.into_iter().map(|(_, seq, read)| (seq, read)).collect();
    }
}

/// The nodes a lookup of `prefix` (without terminator) ends at from
/// `heads`: the closest nodes under the prefix, one per fork.
pub(crate) fn prefix_nodes(
    db: &DbReader,
    heads: &[Arc<Node>],
    prefix: &str,
) -> Result<Vec<Arc<Node>>> {
    let path = crate::hash::path(crate::hash::normalize(prefix), false);
    let mut nodes = dedupe(heads.to_vec());
    for (pos, &digit) in path.iter().enumerate() {
        nodes = descend(db, &nodes, pos, digit)?;
        if nodes.is_empty() {
            break;
        }
    }
    Ok(nodes)
}

fn dedupe(mut nodes: Vec<Arc<Node>>) -> Vec<Arc<Node>> {
    nodes.sort_by_key(|n| (n.feed, n.seq));
    nodes.dedup_by_key(|n| (n.feed, n.seq));
    nodes
}

/// The nodes below `pos` for `digit`: those whose path has it, and those the
/// others' tries point to for it.
fn descend(db: &DbReader, nodes: &[Arc<Node>], pos: usize, digit: u8) -> Result<Vec<Arc<Node>>> {
    let db = db.reading();
    let mut next = Vec::new();
    for node in nodes {
        let own = node.path.get(pos).copied();
        if own == Some(digit) {
            next.push(node.clone());
        }
        if own != Some(digit) || digit == TERMINATOR {
            for ptr in node.trie.get(pos, digit) {
                if let Some(other) = db.scan_pointer(ptr)? {
                    if other.path.get(pos) == Some(&digit) {
                        next.push(other);
                    }
                }
            }
        }
    }
    Ok(dedupe(next))
}

/// The first position at or after `pos` where the nodes can branch: where
/// their digits differ, where one ends, or where one's trie holds pointers.
fn next_branch(nodes: &[Arc<Node>], pos: usize) -> usize {
    let mut best = usize::MAX;
    for node in nodes {
        best = best.min(node.path.len().saturating_sub(1));
        if let Some(p) = node.trie.positions().find(|&p| p >= pos) {
            best = best.min(p);
        }
    }
    if let Some(first) = nodes.first() {
        for other in &nodes[1..] {
            let end = best.min(first.path.len()).min(other.path.len());
            if pos < end {
                let same = crate::get::common_prefix(&first.path[pos..end], &other.path[pos..end]);
                if same < end - pos {
                    best = best.min(pos + same);
                }
            }
        }
    }
    best.max(pos)
}
