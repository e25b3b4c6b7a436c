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

use std::collections::HashSet;
use std::sync::Arc;

use crate::db::DbReader;
use crate::error::Result;
use crate::hash::path;
use crate::node::Node;
use crate::trie::Ptr;

/// The current values of `key` seen from `heads`.
pub(crate) fn get(db: &DbReader, heads: &[Arc<Node>], key: &str) -> Result<Vec<Arc<Node>>> {
    let candidates = candidates(db, heads, key)?;
    Ok(latest(candidates, false))
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
    let mut seen_found: HashSet<Ptr> = HashSet::new();
    let mut visited: HashSet<(Ptr, usize)> = HashSet::new();
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
        let mut i = start;
        let mut reached_end = true;
        while i < path.len() {
            let val = path[i];
            if node.path.get(i) == Some(&val) {
                i += 1;
                continue;
            }
            for &ptr in node.trie.get(i, val) {
                on_lookup(ptr);
                if let Some(next) = db.pointer(ptr, None)? {
                    stack.push((next, i + 1));
                }
            }
            reached_end = false;
            break;
        }
        if !reached_end {
            continue;
        }
        add(&node, &mut found);
        let top = path.len() - 1;
        for &ptr in node.trie.get(top, path[top]) {
            on_lookup(ptr);
            if let Some(other) = db.pointer(ptr, None)? {
                add(&other, &mut found);
            }
        }
    }
    Ok(found)
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
