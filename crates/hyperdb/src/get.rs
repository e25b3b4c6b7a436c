//! Looking a key up from the heads, with answers that follow causality.
//!
//! The walk is hyperdb's (`lib/get.js`): from each head, follow the path of
//! the key, jumping through trie pointers wherever a node's path turns away,
//! forking where a bucket holds several pointers, and at the end of the path
//! collecting the node and the other nodes stored for the same path. Unlike
//! the reference, no branch is pruned on the way; instead the candidates are
//! filtered once at the end: a candidate that another candidate has seen is
//! an older write and is dropped, and deletes are dropped last. The answer
//! is then the same on every replica holding the same feeds, whatever order
//! it learned them in.
//!
//! Under a [`Policy`] (revocations), a candidate that does not count is
//! transparent: it is replaced by the candidates of a lookup from what it
//! had seen, so it neither gives a value nor hides an older one.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use hypercore_feed::cache::IndexHasher;

use crate::db::DbReader;
use crate::error::Result;
use crate::hash::path;
use crate::node::Node;
use crate::policy::Policy;
use crate::trie::Ptr;

/// The sets of one walk: small, and keyed by entries stored here.
type WalkSet<T> = HashSet<T, BuildHasherDefault<IndexHasher>>;

/// The current values of `key` seen from `heads`, counting what `policy`
/// lets count.
pub(crate) fn get(
    db: &DbReader,
    heads: &[Arc<Node>],
    key: &str,
    policy: Option<&Policy>,
) -> Result<Vec<Arc<Node>>> {
    if policy.is_none() {
        if let Some(found) = indexed(db, heads, key)? {
            return Ok(found);
        }
        if let Some(found) = db.latest.get(db, heads, key)? {
            return Ok(found);
        }
    }
    walk(db, heads, key, policy)
}

/// [`get`] by walking the trie, without the indexes. The entries it
/// visits count toward building the latest-entry index (see
/// [`crate::latest_index`]).
pub(crate) fn walk(
    db: &DbReader,
    heads: &[Arc<Node>],
    key: &str,
    policy: Option<&Policy>,
) -> Result<Vec<Arc<Node>>> {
    let mut visits = 0;
    let candidates = candidates_with(db, heads, key, &mut |_| visits += 1)?;
    db.latest.walked(visits);
    let candidates = counting(db, candidates, key, policy)?;
    Ok(latest(candidates, false))
}

/// The answer of the key index (see [`crate::key_index`]) where it is
/// sure to be the walk's: one head, the source's, that has seen no other
/// writer's entry; the index covers it; the entry it names is at or
/// before the head and holds `key`. `None`: walk.
pub(crate) fn indexed(
    db: &DbReader,
    heads: &[Arc<Node>],
    key: &str,
) -> Result<Option<Vec<Arc<Node>>>> {
    let Some((index, head)) = index_head(db, heads) else {
        return Ok(None);
    };
    let Some(seq) = index.lookup(key, head.seq + 1).filter(|&s| s <= head.seq) else {
        return Ok(None);
    };
    match db.named_node(0, seq)? {
        Some(node) if node.key == key => {
            Ok(Some(if node.deleted { Vec::new() } else { vec![node] }))
        }
        _ => Ok(None),
    }
}

/// The key index and the head it may answer for (see [`indexed`]): the
/// only head, the source's, whose clock has seen no other writer's entry.
/// The caller still checks that the index covers the head.
pub(crate) fn index_head<'d, 'h>(
    db: &'d DbReader,
    heads: &'h [Arc<Node>],
) -> Option<(&'d crate::key_index::KeyIndex, &'h Arc<Node>)> {
    let (Some(index), [head]) = (&db.key_index, heads) else {
        return None;
    };
    (head.feed == 0 && head.clock.iter().skip(1).all(|&c| c == 0)).then_some((index, head))
}

/// `candidates` with every one that `policy` does not count replaced by
/// the candidates of a lookup from its own past, until all count.
pub(crate) fn counting(
    db: &DbReader,
    mut candidates: Vec<Arc<Node>>,
    key: &str,
    policy: Option<&Policy>,
) -> Result<Vec<Arc<Node>>> {
    let Some(policy) = policy else {
        return Ok(candidates);
    };
    if candidates.iter().all(|n| policy.counts(n)) {
        return Ok(candidates);
    }
    let mut done: WalkSet<Ptr> = WalkSet::default();
    let mut result = Vec::new();
    while let Some(node) = candidates.pop() {
        if !done.insert(Ptr {
            feed: node.feed,
            seq: node.seq,
        }) {
            continue;
        }
        if policy.counts(&node) {
            result.push(node);
        } else {
            // Each step goes strictly back in the writer's feed or the
            // others' clocks, so this ends.
            let past = past(db, &node)?;
            candidates.extend(self::candidates(db, &past, key)?);
        }
    }
    Ok(result)
}

/// The heads of what `node` had seen when it was written: its writer's
/// entry before it, and every other counted writer's latest entry its
/// clock covers, less those another of them has seen.
pub(crate) fn past(db: &DbReader, node: &Node) -> Result<Vec<Arc<Node>>> {
    let mut heads = Vec::new();
    let writers = node.clock.len().max(node.feed + 1);
    for writer in 0..writers {
        let seq = if writer == node.feed {
            node.seq
        } else {
            node.clock.get(writer).copied().unwrap_or(0)
        };
        if seq > 1 && db.included(writer) {
            if let Some(head) = db.node(writer, seq - 1)? {
                heads.push(head);
            }
        }
    }
    Ok(crate::node::unseen(&heads))
}

/// Every node for `key` reachable from `heads`, without filtering.
pub(crate) fn candidates(db: &DbReader, heads: &[Arc<Node>], key: &str) -> Result<Vec<Arc<Node>>> {
    candidates_with(db, heads, key, &mut |_| {})
}

/// [`candidates`], telling `on_lookup` every entry it reads (heads first).
pub(crate) fn candidates_with(
    db: &DbReader,
    heads: &[Arc<Node>],
    key: &str,
    on_lookup: &mut dyn FnMut(Ptr),
) -> Result<Vec<Arc<Node>>> {
    let db = db.reading();
    for head in heads {
        on_lookup(Ptr {
            feed: head.feed,
            seq: head.seq,
        });
    }
    let path = path(key, true);
    let mut found: Vec<Arc<Node>> = Vec::new();
    // A lookup visits tens to hundreds of nodes (more with many writers):
    // sized up front and hashed cheaply, as SipHash and regrowing cost
    // more than the walk itself. The keys are entries stored here.
    let mut seen_found: WalkSet<Ptr> = WalkSet::default();
    let mut visited: WalkSet<(Ptr, usize)> =
        WalkSet::with_capacity_and_hasher(64, Default::default());
    let mut stack: Vec<(Arc<Node>, usize)> = heads.iter().map(|h| (h.clone(), 0)).collect();
    let mut add = |node: &Arc<Node>, found: &mut Vec<Arc<Node>>| {
        if node.key == key
            && seen_found.insert(Ptr {
                feed: node.feed,
                seq: node.seq,
            })
        {
            found.push(node.clone());
        }
    };
    while let Some((node, start)) = stack.pop() {
        if !visited.insert((
            Ptr {
                feed: node.feed,
                seq: node.seq,
            },
            start,
        )) {
            continue;
        }
        // Where the node's path turns away from the key's, it points on.
        let i = start + common_prefix(node.path.get(start..).unwrap_or(&[]), &path[start..]);
        if i < path.len() {
            for ptr in node.trie.get(i, path[i]) {
                on_lookup(ptr);
                if let Some(next) = db.pointer(ptr, None)? {
                    stack.push((next, i + 1));
                }
            }
            continue;
        }
        add(&node, &mut found);
        let top = path.len() - 1;
        for ptr in node.trie.get(top, path[top]) {
            on_lookup(ptr);
            if let Some(other) = db.pointer(ptr, None)? {
                add(&other, &mut found);
            }
        }
    }
    Ok(found)
}

/// How many leading digits `a` and `b` share, compared eight at a time
/// (a lookup compares the key's path with every node it visits).
pub(crate) fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("eight bytes"));
        let diff = word(x) ^ word(y);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..]
        .iter()
        .zip(&b[i..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Drops every node another node has seen, then (unless `keep_deletes`)
/// deletes. Sorted by writer and seq.
pub(crate) fn latest(candidates: Vec<Arc<Node>>, keep_deletes: bool) -> Vec<Arc<Node>> {
    let mut result: Vec<Arc<Node>> = crate::node::unseen(&candidates)
        .into_iter()
        .filter(|n| keep_deletes || !n.deleted)
        .collect();
    result.sort_by_key(|n| (n.feed, n.seq));
    result
}

#[cfg(test)]
mod tests {
    use super::common_prefix;
    use proptest::prelude::*;

    proptest! {
        /// Eight at a time or one at a time, the same count, whichever
        /// side is shorter and wherever the first difference falls.
        #[test]
        fn common_prefix_counts_the_shared_digits(
            a in proptest::collection::vec(0u8..5, 0..40),
            b in proptest::collection::vec(0u8..5, 0..40),
            shared in 0usize..40,
        ) {
            let mut b = b;
            let shared = shared.min(a.len()).min(b.len());
            b[..shared].copy_from_slice(&a[..shared]);
            let naive = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            prop_assert_eq!(common_prefix(&a, &b), naive);
        }
    }
}
