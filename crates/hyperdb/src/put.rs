//! Building the trie of a new entry (`lib/put.js`).
//!
//! Starting from every head, a worker walks down the new key's path. At each
//! position it copies the head's pointers for the other digits into the new
//! trie, and when the head's own path turns away it records the head and
//! jumps to the closest node for the new key's digit (forking when there are
//! several). The reference does this with callbacks; the order in which its
//! lookups complete decides the order of pointers in a bucket, so this runs
//! the same steps from a first-in first-out queue, one step per lookup.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::db::DbReader;
use crate::error::{Error, Result};
use crate::hash::TERMINATOR;
use crate::node::Node;
use crate::reading::Reading;
use crate::trie::{Ptr, Trie, MAX_POSITION};

/// The entries of a batch being written, which its later operations see.
pub(crate) struct Batching {
    /// The entries' encodings, one after another (one allocation for the
    /// batch, not one an entry)...
    pub(crate) bytes: Vec<u8>,
    /// ...and where each ends in `bytes`.
    pub(crate) ends: Vec<usize>,
    pub(crate) nodes: Vec<Arc<Node>>,
}

/// Most workers one put may start; a trie that branches more is damaged.
const MAX_WORKERS: usize = 1 << 16;

struct Worker {
    i: usize,
    head: Arc<Node>,
    pending: usize,
    ended: bool,
}

enum Task {
    UpdateHead { worker: usize, ptr: Ptr },
    ForkPart,
    Fork { worker: usize, ptrs: Vec<Ptr> },
    Collision { worker: usize, digit: u8, ptr: Ptr },
}

struct PutRequest<'a> {
    db: Reading<'a>,
    batch: Option<&'a Batching>,
    key: &'a str,
    path: &'a [u8],
    trie: Trie,
    workers: Vec<Worker>,
    queue: VecDeque<Task>,
    active: usize,
    /// Entries read.
    visits: u64,
}

/// Computes the node a put of `key` (whose terminated path is `path`)
/// writes, from the current `heads`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn put<'a>(
    db: &'a DbReader,
    batch: Option<&'a Batching>,
    clock: Vec<u64>,
    heads: &[Arc<Node>],
    key: &'a str,
    path: Vec<u8>,
    value: Option<Vec<u8>>,
    deleted: bool,
) -> Result<Node> {
    if path.len() as u64 > MAX_POSITION + 1 {
        return Err(Error::Invalid(format!(
            "a key may have at most {} components (separated by /); this one has {}",
            MAX_POSITION / crate::hash::DIGITS_PER_COMPONENT as u64,
            path.len() / crate::hash::DIGITS_PER_COMPONENT
        )));
    }
    let trie = match db.path_index.trie(db, batch, heads, key, &path) {
        Some(trie) => {
            // Every test that writes checks the index against the walk.
            #[cfg(debug_assertions)]
            assert_eq!(
                trie,
                walk(db, batch, heads, key, &path)?,
                "the index of paths and the walk disagree on {key:?}"
            );
            trie
        }
        None => walk(db, batch, heads, key, &path)?,
    };
    Ok(Node {
        key: key.to_string(),
        value,
        deleted,
        feed: 0,
        seq: 0,
        clock,
        trie,
        path,
        inflate: 0,
        feeds: None,
        policy: None,
    })
}

/// The trie of a new entry for `key` (path `path`), walking from `heads`.
pub(crate) fn walk(
    db: &DbReader,
    batch: Option<&Batching>,
    heads: &[Arc<Node>],
    key: &str,
    path: &[u8],
) -> Result<Trie> {
    // The new trie copies most of a head's: room for as many pointers
    // and a few more spares it growing one pointer at a time.
    let room = heads.iter().map(|h| h.trie.len()).max().unwrap_or(0);
    let mut req = PutRequest {
        db: db.reading(),
        batch,
        key,
        path,
        trie: Trie::with_capacity(if room == 0 { 0 } else { room + 8 }),
        workers: Vec::new(),
        queue: VecDeque::new(),
        active: 0,
        visits: 0,
    };
    if !heads.is_empty() {
        req.update(heads.to_vec(), 0)?;
        while let Some(task) = req.queue.pop_front() {
            req.run(task)?;
        }
    }
    db.path_index.walked(req.visits);
    Ok(req.trie)
}

impl PutRequest<'_> {
    fn update(&mut self, nodes: Vec<Arc<Node>>, offset: usize) -> Result<()> {
        self.active += nodes.len();
        for head in nodes {
            if self.workers.len() >= MAX_WORKERS {
                return Err(Error::Invalid(
                    "the trie branches too much to write to: the database is damaged".into(),
                ));
            }
            self.workers.push(Worker {
                i: offset,
                head,
                pending: 0,
                ended: false,
            });
            self.move_closer(self.workers.len() - 1);
        }
        Ok(())
    }

    fn move_closer(&mut self, w: usize) {
        let head = self.workers[w].head.clone();
        // The positions where the head's trie holds pointers, from here on:
        // elsewhere there is nothing to copy, and no need to look.
        let from = self.workers[w].i;
        let mut buckets = head.trie.positions().skip_while(|&p| p < from).peekable();
        while self.workers[w].i < self.path.len() {
            let i = self.workers[w].i;
            // Where the head holds no pointers and its path goes the key's
            // way, a position needs nothing: pass them all at once (the
            // key's last position, its terminator, is always looked at).
            let stop = buckets
                .peek()
                .copied()
                .unwrap_or(usize::MAX)
                .min(self.path.len() - 1)
                .min(head.path.len());
            if i < stop {
                let same = head.path[i..stop]
                    .iter()
                    .zip(&self.path[i..stop])
                    .take_while(|(a, b)| a == b)
                    .count();
                if same > 0 {
                    self.workers[w].i = i + same;
                    continue;
                }
            }
            let val = self.path[i];
            if buckets.next_if_eq(&i).is_some() {
                self.copy_trie(w, &head, i, val);
            }
            self.split_trie(w, &head, i, val);
            if self.workers[w].pending > 0 {
                return;
            }
            if self.workers[w].ended {
                break;
            }
            self.workers[w].i += 1;
        }
        self.end();
    }

    fn copy_trie(&mut self, w: usize, head: &Node, i: usize, val: u8) {
        for (digit, ptrs) in head.trie.bucket(i) {
            if digit == val && val != TERMINATOR {
                continue;
            }
            for ptr in ptrs {
                if val == TERMINATOR {
                    self.workers[w].pending += 1;
                    self.queue.push_back(Task::Collision {
                        worker: w,
                        digit,
                        ptr,
                    });
                } else {
                    self.push(w, digit, ptr);
                }
            }
        }
    }

    fn split_trie(&mut self, w: usize, head: &Node, i: usize, val: u8) {
        let head_val = head.path.get(i).copied();
        if head_val == Some(val) && (val < TERMINATOR || head.key == self.key) {
            return;
        }
        if let Some(hv) = head_val {
            self.push(
                w,
                hv,
                Ptr {
                    feed: head.feed,
                    seq: head.seq,
                },
            );
        }
        let ptrs = head.trie.get(i, val);
        let Some(first) = ptrs.first() else {
            self.workers[w].ended = true;
            return;
        };
        self.workers[w].pending += 1;
        self.queue.push_back(Task::UpdateHead {
            worker: w,
            ptr: first,
        });
        if ptrs.len() > 1 {
            self.workers[w].pending += 1;
            for _ in 2..ptrs.len() {
                self.queue.push_back(Task::ForkPart);
            }
            self.queue.push_back(Task::Fork {
                worker: w,
                ptrs: ptrs.skip(1).iter().collect(),
            });
        }
    }

    fn push(&mut self, w: usize, digit: u8, ptr: Ptr) {
        self.trie.push(self.workers[w].i, digit, ptr);
    }

    fn run(&mut self, task: Task) -> Result<()> {
        match task {
            Task::ForkPart => {}
            Task::UpdateHead { worker, ptr } => {
                self.visits += 1;
                match self.db.pointer(ptr, self.batch)? {
                    Some(node) => self.workers[worker].head = node,
                    // Not here (yet): nothing closer to follow.
                    None => self.workers[worker].ended = true,
                }
                self.worker_done(worker);
            }
            Task::Fork { worker, ptrs } => {
                let mut nodes = Vec::with_capacity(ptrs.len());
                for ptr in ptrs {
                    self.visits += 1;
                    if let Some(node) = self.db.pointer(ptr, self.batch)? {
                        nodes.push(node);
                    }
                }
                let offset = self.workers[worker].i + 1;
                self.update(nodes, offset)?;
                self.worker_done(worker);
            }
            Task::Collision { worker, digit, ptr } => {
                self.visits += 1;
                if let Some(node) = self.db.pointer(ptr, self.batch)? {
                    if node.key != self.key {
                        self.push(worker, digit, ptr);
                    }
                }
                self.worker_done(worker);
            }
        }
        Ok(())
    }

    fn worker_done(&mut self, w: usize) {
        let worker = &mut self.workers[w];
        worker.pending -= 1;
        if worker.pending > 0 {
            return;
        }
        if worker.ended {
            self.end();
        } else {
            worker.i += 1;
            self.move_closer(w);
        }
    }

    fn end(&mut self) {
        self.active -= 1;
    }
}
