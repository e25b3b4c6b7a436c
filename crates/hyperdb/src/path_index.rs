//! The latest entry under every prefix of the paths written, for a database
//! with one writer, so that a put finds its new entry's trie without
//! walking (held in memory, derived from the feed).
//!
//! A put walks from the head down the new key's path (see [`crate::put`]),
//! visiting about one entry per level of the trie: at a million keys, ten
//! entries spread over the whole feed, most of them read from the files.
//! With one writer (and no two keys of the same path), what that walk
//! writes can be said without it: at each position `i` of the key's path
//! `P` and each digit `v` other than `P[i]`, the new trie points to the
//! latest entry whose path starts with `P[..i]` and then `v`, if there is
//! one (at the terminator, the key's own digit holds entries of the same
//! path and another key: none). By induction over the entries: the walk
//! stands at position `i` on the latest entry whose path starts with
//! `P[..i]`; where that entry's own path goes `v`, it is the latest there,
//! and the walk points to it; elsewhere it copies the entry's own pointers,
//! which are the latest as of that entry, and no later entry has that
//! prefix. hyperdb 3.5.0 writes the same tries (the interop tests compare
//! the bytes), and in debug builds every trie found here is compared with
//! the walk's.
//!
//! So the index is a radix tree over paths (five digits: four and the
//! terminator), whose branching nodes keep, for each child, the latest
//! entry beneath it (a single writer's seqs only grow, so that is the last
//! one put through it); a leaf keeps its path as its folder (interned,
//! shared by the keys of one folder) and its last component's hash. A put
//! goes down it to find where its path leaves the tree, then back over
//! the nodes it passed to read the pointers off and add itself: no entry
//! is read. A batch first reads, sixteen lookups at a time, what those
//! lookups will read, so that the processor waits for memory once for
//! sixteen rather than sixteen times.
//!
//! - It answers only a database with one writer whose head is the latest
//!   local entry, and gives up for good on two keys of the same path (a
//!   SipHash collision, or a key and the same with a trailing `/`: the
//!   tries then hold several pointers to a digit, and the walk decides)
//!   or an entry whose key does not decode.
//! - It changes no byte of the feeds or the wire. It is built from the
//!   feed once puts have walked through as many entries as it would read
//!   (a process that writes a few keys never pays for it), and caught up
//!   from the feed when it lacks entries (written before it was built, or
//!   by an earlier batch). An append that fails drops it (to be read back
//!   from its file, or built, again).
//! - Closing the database writes it to a file when it holds
//!   [`SAVE_AFTER`] entries more than the last one (see [`file`]: its
//!   tables as they are, about 40 bytes a key); a writer opened again
//!   reads it back once its puts have walked an eighth of what building
//!   reads (reading it costs about a tenth of building it), and catches up
//!   from there. A file that does not check, or was written for what the
//!   feed no longer holds, is removed and the index built as before.
//! - A listing of a head it holds reads from it the latest entry of every
//!   path under the prefix, in the walk's order ([`PathIndex::listing`]),
//!   instead of walking: with one writer, the walk's answer for a key is
//!   its latest entry, and the walk visits paths depth first, the
//!   terminator before digits 0 to 3, which is the order of the radix tree
//!   taken so. A listing of everything reads the index back from its file
//!   if nothing holds it yet (a file that does not check is left to the
//!   writer: a read removes nothing).
//! - It takes about 40 bytes a key (a leaf of 12, and about 0.6 branching
//!   nodes of 44), out of the entry cache's budget
//!   ([`crate::OpenOptions::cache_bytes`]), of which the cache keeps a
//!   quarter: the index gives up when its tables would take more than the
//!   rest (about 1.2 million keys for the default 64 MiB, however many
//!   times each was written), and is not built when the key index already
//!   counts more keys than could fit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::db::DbReader;
use crate::error::Result;
use crate::hash::{DIGITS_PER_COMPONENT, TERMINATOR};
use crate::node::Node;
use crate::put::Batching;
use crate::trie::{Ptr, Trie};
use crate::writers::EntryCache;

mod file;

/// No child.
const NONE: u32 = u32::MAX;
/// A child that is a leaf (the rest of the bits: its number).
const LEAF: u32 = 1 << 31;
/// A leaf's folder when its key has no component at all.
const NO_COMPONENTS: u32 = u32::MAX;
/// Bytes a key takes in the index at least (a leaf, and its share of
/// branching nodes of at most five children): a database whose keys would
/// take more than the budget at this rate is not indexed.
const LEAST_BYTES_PER_KEY: u64 = 12 + 44 / 4;
/// Lookups [`PathIndex::warm`] takes at once.
pub(crate) const WARM_GROUP: usize = 16;
/// Below this size the index stays in the processor's caches: nothing to
/// warm.
const WARM_BYTES: u64 = 8 << 20;
/// How much more the index must take before the cache's budget is
/// lowered again.
const LEND_STEP: u64 = 1 << 20;
/// Digits a position can hold.
const DIGITS: usize = TERMINATOR as usize + 1;
/// Reading the index back from its file costs about this share of
/// building it from the feed: puts read it once their walks have visited
/// that share of the entries.
const LOAD_SHARE: u64 = 8;
/// Entries an index must hold beyond its file for closing the database to
/// write it again.
#[cfg(not(test))]
const SAVE_AFTER: u64 = 4096;
#[cfg(test)]
const SAVE_AFTER: u64 = 1;

/// What [`crate::DbReader::path_index`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathIndexInfo {
    /// Entries of the local feed it holds (the header counted).
    pub covered: u64,
    /// Paths it holds (keys, deleted ones included).
    pub paths: u64,
    /// Bytes its tables take.
    pub bytes: u64,
}

/// See the [module](self).
pub(crate) struct PathIndex {
    /// Bytes its tables may take: the part of the budget the entry cache
    /// lends.
    max_bytes: u64,
    /// The entry cache, whose budget the index shares.
    cache: Arc<EntryCache>,
    cache_bytes: u64,
    /// Bytes of the budget the index has taken from the cache.
    lent: AtomicU64,
    /// Entries put's walks have visited.
    walked: AtomicU64,
    given_up: AtomicBool,
    /// Whether its file was looked for (once a process).
    looked: AtomicBool,
    /// Entries its newest file covers (0: none known).
    saved: AtomicU64,
    held: Mutex<Option<Held>>,
    /// Tests: build at the first put, and count the puts answered.
    #[cfg(test)]
    eager: AtomicBool,
    #[cfg(test)]
    answered: AtomicU64,
    #[cfg(test)]
    loaded: AtomicU64,
    /// Tests: listings answer without the index, and count those with it.
    #[cfg(test)]
    unlisted: AtomicBool,
    #[cfg(test)]
    listed: AtomicU64,
}

/// A branching node: its children part at digit `pos`. Beside each child,
/// the latest entry beneath it, so that reading a put's pointers off the
/// nodes it passes reads nothing else.
#[derive(Clone, Copy, Default)]
struct Inner {
    pos: u32,
    children: [u32; DIGITS],
    latest: [u32; DIGITS],
}

impl Inner {
    /// The child a lookup of `path` goes down: the path's own digit at
    /// this position, or (past its end, or where it has no child) the
    /// first child there is.
    fn toward(&self, path: &[u8]) -> usize {
        match path.get(self.pos as usize).map(|&d| usize::from(d)) {
            Some(d) if self.children[d] != NONE => d,
            _ => self
                .children
                .iter()
                .position(|&c| c != NONE)
                .expect("a branching node has two children"),
        }
    }
}

/// A path's latest entry is kept by its parent (or the root): the leaf
/// spells the path.
#[derive(Clone, Copy, Default)]
struct Leaf {
    /// The path's components but the last ([`Held::dirs`]), or
    /// [`NO_COMPONENTS`].
    dir: u32,
    /// The last component's hash, in two halves (so a leaf is 12 bytes).
    last: [u32; 2],
}

impl Leaf {
    fn last(self) -> u64 {
        u64::from(self.last[0]) | u64::from(self.last[1]) << 32
    }
}

/// Entries in pages of [`PAGE`]: a table grows without copying itself or
/// holding room for as many again.
struct Arena<T> {
    pages: Vec<Box<[T]>>,
    len: u32,
}

const PAGE_BITS: u32 = 12;
const PAGE: u32 = 1 << PAGE_BITS;

impl<T: Copy + Default> Arena<T> {
    fn new() -> Self {
        Arena {
            pages: Vec::new(),
            len: 0,
        }
    }

    fn push(&mut self, value: T) -> u32 {
        if self.len.is_multiple_of(PAGE) {
            self.pages
                .push(vec![T::default(); PAGE as usize].into_boxed_slice());
        }
        let at = self.len;
        self.len += 1;
        *self.get_mut(at) = value;
        at
    }

    fn get(&self, at: u32) -> &T {
        &self.pages[(at >> PAGE_BITS) as usize][(at % PAGE) as usize]
    }

    fn get_mut(&mut self, at: u32) -> &mut T {
        &mut self.pages[(at >> PAGE_BITS) as usize][(at % PAGE) as usize]
    }

    fn bytes(&self) -> usize {
        self.pages.len() * PAGE as usize * std::mem::size_of::<T>()
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.pages
            .iter()
            .flat_map(|p| p.iter())
            .take(self.len as usize)
    }
}

struct Held {
    /// Entries `0..covered` of the local feed are in.
    covered: u64,
    root: u32,
    /// The latest entry beneath the root.
    root_latest: u32,
    inner: Arena<Inner>,
    leaves: Arena<Leaf>,
    /// Folders: (parent folder, component hash); folder 0 has no
    /// component.
    dirs: Vec<(u32, u64)>,
    dir_ids: HashMap<(u32, u64), u32>,
    /// A leaf's components, as last spelled out.
    scratch: Vec<u64>,
    /// The branching nodes the last [`Held::diverge`] went through.
    trail: Vec<u32>,
    /// The path's components, for the put at hand.
    comps: Vec<u64>,
}

/// Where a path leaves the tree.
enum Divergence {
    Empty,
    /// At position `at`, where the closest path has digit `digit`.
    At {
        at: usize,
        digit: u8,
    },
    /// A leaf has the same path; its entry is `seq`.
    Same {
        seq: u32,
    },
    /// The tree is not one the index makes: a branching node at or above
    /// its parent's position (only a file read back, damaged past its
    /// checksum, could hold one).
    Broken,
}

/// The components' hashes of a path (its digits, terminated).
fn components(path: &[u8]) -> impl Iterator<Item = u64> + '_ {
    path.chunks_exact(DIGITS_PER_COMPONENT).map(|digits| {
        digits
            .iter()
            .rev()
            .fold(0u64, |hash, &d| hash << 2 | u64::from(d))
    })
}

fn digit_of(components: &[u64], position: usize) -> u8 {
    let c = position / DIGITS_PER_COMPONENT;
    match components.get(c) {
        Some(hash) => (hash >> (2 * (position % DIGITS_PER_COMPONENT))) as u8 & 3,
        None => TERMINATOR,
    }
}

impl Held {
    fn new() -> Self {
        Held {
            // The header is not an entry.
            covered: 1,
            root: NONE,
            root_latest: NONE,
            inner: Arena::new(),
            leaves: Arena::new(),
            dirs: vec![(NONE, 0)],
            dir_ids: HashMap::new(),
            scratch: Vec::new(),
            trail: Vec::new(),
            comps: Vec::new(),
        }
    }

    /// Bytes its tables take, as the budget counts them: what they hold
    /// (a page is allocated whole, [`Held::bytes`]).
    fn used_bytes(&self) -> u64 {
        let size = |len: u32, bytes: usize| u64::from(len) * bytes as u64;
        size(self.inner.len, std::mem::size_of::<Inner>())
            + size(self.leaves.len, std::mem::size_of::<Leaf>())
            + (self.dirs.len() * 12 + self.dir_ids.len() * 24) as u64
    }

    fn bytes(&self) -> u64 {
        (self.inner.bytes()
            + self.leaves.bytes()
            + self.dirs.capacity() * 12
            + self.dir_ids.capacity() * 24) as u64
    }

    /// Spells out leaf `leaf`'s components into `scratch`.
    fn spell(&mut self, leaf: u32) {
        let leaf = *self.leaves.get(leaf);
        self.scratch.clear();
        if leaf.dir == NO_COMPONENTS {
            return;
        }
        self.scratch.push(leaf.last());
        let mut d = leaf.dir;
        while d != 0 {
            let (parent, hash) = self.dirs[d as usize];
            self.scratch.push(hash);
            d = parent;
        }
        self.scratch.reverse();
    }

    /// The latest entry of each path starting with `prefix`, in the order
    /// of a depth-first walk taking the digits at each branching node in
    /// `order`; `None` in a tree the index does not make (positions that
    /// do not grow going down: a file damaged past its checksum).
    fn listing(&mut self, prefix: &[u8], order: [u8; DIGITS]) -> Option<Vec<u32>> {
        let mut listed = Vec::new();
        // Down the prefix's digits at the branching positions above its
        // end, to the one node (or leaf) every path under it is beneath.
        let (mut at, mut latest) = (self.root, self.root_latest);
        let mut above = None;
        while at != NONE && at & LEAF == 0 {
            let node = self.inner.get(at);
            if above.is_some_and(|above| node.pos <= above) {
                return None;
            }
            if node.pos as usize >= prefix.len() {
                break;
            }
            above = Some(node.pos);
            let digit = usize::from(prefix[node.pos as usize]).min(DIGITS - 1);
            (at, latest) = (node.children[digit], node.latest[digit]);
        }
        if at == NONE {
            return Some(listed);
        }
        // Paths beneath share their digits above `at`'s position: they are
        // all under the prefix when any one is.
        let (mut leaf, mut deeper_than) = (at, above);
        while leaf & LEAF == 0 {
            let node = self.inner.get(leaf);
            if deeper_than.is_some_and(|above| node.pos <= above) {
                return None;
            }
            deeper_than = Some(node.pos);
            leaf = *node.children.iter().find(|&&c| c != NONE)?;
        }
        self.spell(leaf & !LEAF);
        let whole = prefix.len() / DIGITS_PER_COMPONENT;
        let under = prefix.len().is_multiple_of(DIGITS_PER_COMPONENT)
            && self.scratch.len() >= whole
            && components(prefix).eq(self.scratch[..whole].iter().copied());
        if !under {
            return Some(listed);
        }
        // Depth first; each entry on the stack a node (or leaf) and the
        // latest entry beneath it, its parent's position.
        let mut stack = vec![(at, latest, above)];
        while let Some((at, latest, above)) = stack.pop() {
            if at & LEAF != 0 {
                listed.push(latest);
                continue;
            }
            let node = *self.inner.get(at);
            if above.is_some_and(|above| node.pos <= above) {
                return None;
            }
            for &digit in order.iter().rev() {
                let child = node.children[usize::from(digit)];
                if child != NONE {
                    stack.push((child, node.latest[usize::from(digit)], Some(node.pos)));
                }
            }
        }
        Some(listed)
    }

    /// Where `path` leaves the tree; its components are left in `comps`
    /// and the branching nodes passed in `trail`.
    fn diverge(&mut self, path: &[u8]) -> Divergence {
        self.comps.clear();
        self.comps.extend(components(path));
        self.trail.clear();
        let mut at = self.root;
        if at == NONE {
            return Divergence::Empty;
        }
        // Down the path's digits at the branching positions (or, past
        // its end or where it has no child, any), to a leaf.
        let mut last_digit = 0;
        let mut deeper_than = None;
        while at & LEAF == 0 {
            self.trail.push(at);
            let node = self.inner.get(at);
            if deeper_than.is_some_and(|above| node.pos <= above) {
                return Divergence::Broken;
            }
            deeper_than = Some(node.pos);
            let digit = node.toward(path);
            at = node.children[digit];
            last_digit = digit;
        }
        self.spell(at & !LEAF);
        let (ours, theirs) = (&self.comps, &self.scratch);
        for (c, (a, b)) in ours.iter().zip(theirs.iter()).enumerate() {
            let differ = a ^ b;
            if differ != 0 {
                let at = c * DIGITS_PER_COMPONENT + differ.trailing_zeros() as usize / 2;
                return Divergence::At {
                    at,
                    digit: digit_of(theirs, at),
                };
            }
        }
        if ours.len() == theirs.len() {
            let seq = match self.trail.last() {
                Some(&parent) => self.inner.get(parent).latest[last_digit],
                None => self.root_latest,
            };
            Divergence::Same { seq }
        } else {
            let at = ours.len().min(theirs.len()) * DIGITS_PER_COMPONENT;
            Divergence::At {
                at,
                digit: digit_of(theirs, at),
            }
        }
    }

    /// A new leaf for the path whose components are in `comps`, its
    /// folder interned.
    fn new_leaf(&mut self) -> u32 {
        let mut dir = NO_COMPONENTS;
        let mut last = 0;
        if let Some((&hash, folder)) = self.comps.split_last() {
            last = hash;
            dir = 0;
            for &hash in folder {
                let next = self.dirs.len() as u32;
                dir = *self.dir_ids.entry((dir, hash)).or_insert_with(|| {
                    self.dirs.push((dir, hash));
                    next
                });
            }
        }
        LEAF | self.leaves.push(Leaf {
            dir,
            last: [last as u32, (last >> 32) as u32],
        })
    }

    /// Adds entry `seq` of `path` where `divergence` says (the last
    /// [`Held::diverge`] of it), pushing into `trie` (when given) the
    /// pointers a put of it writes.
    fn insert(
        &mut self,
        path: &[u8],
        divergence: Divergence,
        seq: u32,
        mut trie: Option<&mut Trie>,
    ) {
        let emit = |trie: &mut Option<&mut Trie>, position: usize, digit: usize, seq: u32| {
            if let Some(trie) = trie {
                let ptr = Ptr {
                    feed: 0,
                    seq: u64::from(seq),
                };
                trie.push(position, digit as u8, ptr);
            }
        };
        let split = match divergence {
            Divergence::Empty => {
                self.root = self.new_leaf();
                self.root_latest = seq;
                return;
            }
            Divergence::At { at, .. } => at,
            Divergence::Same { .. } => usize::MAX,
            Divergence::Broken => return,
        };
        // The latest entry beneath where the walk stands.
        let mut beneath = std::mem::replace(&mut self.root_latest, seq);
        // Down the branching nodes above the split, each pointing the new
        // trie to its other children.
        let mut parent: Option<(u32, usize)> = None;
        let mut at = self.root;
        for i in 0..self.trail.len() {
            let id = self.trail[i];
            let node = self.inner.get_mut(id);
            let pos = node.pos as usize;
            if pos >= split {
                break;
            }
            // In a tree the index made, the path goes on past `pos` and
            // its own child is where `diverge` found it.
            let Some(&own) = path.get(pos) else { break };
            let own = own as usize;
            if node.children[own] == NONE {
                break;
            }
            let before = node.latest;
            node.latest[own] = seq;
            at = node.children[own];
            beneath = before[own];
            parent = Some((id, own));
            for (digit, &latest) in before.iter().enumerate() {
                if digit != own && latest != NONE {
                    emit(&mut trie, pos, digit, latest);
                }
            }
        }
        let Divergence::At { digit, .. } = divergence else {
            // The same path: its leaf stays, its latest entry is the new.
            return;
        };
        let leaf = self.new_leaf();
        let own = path[split] as usize;
        if at & LEAF == 0 && self.inner.get(at).pos as usize == split {
            // A branching node at the split: the new path is one more child.
            let node = self.inner.get_mut(at);
            node.children[own] = leaf;
            let before = node.latest;
            node.latest[own] = seq;
            for (d, &latest) in before.iter().enumerate() {
                if latest != NONE {
                    emit(&mut trie, split, d, latest);
                }
            }
            return;
        }
        // Everything beneath `at` goes `digit` at the split: a branching
        // node there parts it from the new path.
        emit(&mut trie, split, digit as usize, beneath);
        let mut node = Inner {
            pos: split as u32,
            children: [NONE; DIGITS],
            latest: [NONE; DIGITS],
        };
        node.children[digit as usize] = at;
        node.latest[digit as usize] = beneath;
        node.children[own] = leaf;
        node.latest[own] = seq;
        let node = self.inner.push(node);
        match parent {
            Some((p, d)) => self.inner.get_mut(p).children[d] = node,
            None => self.root = node,
        }
    }
}

impl PathIndex {
    /// An index not built yet, sharing the budget `cache_bytes` with the
    /// entry cache `cache`.
    pub(crate) fn new(cache_bytes: usize, cache: Arc<EntryCache>) -> Self {
        PathIndex {
            max_bytes: cache_bytes as u64 - cache_bytes as u64 / 4,
            cache,
            cache_bytes: cache_bytes as u64,
            lent: AtomicU64::new(0),
            walked: AtomicU64::new(0),
            given_up: AtomicBool::new(false),
            looked: AtomicBool::new(false),
            saved: AtomicU64::new(0),
            held: Mutex::new(None),
            #[cfg(test)]
            eager: AtomicBool::new(false),
            #[cfg(test)]
            answered: AtomicU64::new(0),
            #[cfg(test)]
            loaded: AtomicU64::new(0),
            #[cfg(test)]
            unlisted: AtomicBool::new(false),
            #[cfg(test)]
            listed: AtomicU64::new(0),
        }
    }

    /// What a listing from the index may hold of the entries it reads at
    /// once, in [`Node::memory`]: half the cache's budget.
    pub(crate) fn window_bytes(&self) -> usize {
        (self.cache_bytes / 2) as usize
    }

    /// Counts `visits` entries visited by a put's walk.
    pub(crate) fn walked(&self, visits: u64) {
        self.walked.fetch_add(visits, Ordering::Relaxed);
    }

    /// What it holds, once built.
    pub(crate) fn info(&self) -> Option<PathIndexInfo> {
        self.held.lock().as_ref().map(|h| PathIndexInfo {
            covered: h.covered,
            paths: u64::from(h.leaves.len),
            bytes: h.bytes(),
        })
    }

    /// Reads, for many lookups at once, what looking up `paths` will read
    /// (so that their reads from memory overlap), when the index is
    /// larger than the processor's caches.
    pub(crate) fn warm(&self, paths: &[Vec<u8>]) {
        let Some(held) = self.held.try_lock() else {
            return;
        };
        let Some(h) = held.as_ref().filter(|h| h.bytes() >= WARM_BYTES) else {
            return;
        };
        if h.root == NONE {
            return;
        }
        for group in paths.chunks(WARM_GROUP) {
            let mut at = [NONE; WARM_GROUP];
            at[..group.len()].fill(h.root);
            // Level by level: each lookup's next read does not wait for
            // the other lookups' reads.
            // Positions only grow going down (a lane that finds one that
            // does not, in a broken tree, stops).
            let mut deeper_than = [None; WARM_GROUP];
            let mut going = true;
            while going {
                going = false;
                for ((at, above), path) in at.iter_mut().zip(&mut deeper_than).zip(group) {
                    if *at & LEAF != 0 {
                        continue;
                    }
                    let node = h.inner.get(*at);
                    if above.is_some_and(|above| node.pos <= above) {
                        *at = NONE;
                        continue;
                    }
                    *above = Some(node.pos);
                    // The way `diverge` goes, down to the leaf it spells.
                    *at = node.children[node.toward(path)];
                    going = true;
                }
            }
            for &at in &at[..group.len()] {
                if at != NONE {
                    std::hint::black_box(*h.leaves.get(at & !LEAF));
                }
            }
        }
    }

    /// Drops what it holds (an append failed: it may hold entries that
    /// are not in the feed); it is built again when worth it.
    pub(crate) fn reset(&self) {
        self.drop_held(&mut self.held.lock());
    }

    /// Drops what `held` holds, giving the cache its whole budget back. Its
    /// file, if any, is looked for again: reading it back and catching up
    /// from there costs less than building the index anew.
    fn drop_held(&self, held: &mut Option<Held>) {
        if held.take().is_some() {
            self.lend(0);
            self.looked.store(false, Ordering::Relaxed);
        }
    }

    /// Takes `bytes` of the budget from the entry cache (it keeps at least
    /// a quarter), in steps of a mebibyte or so.
    fn lend(&self, bytes: u64) {
        let lent = self.lent.load(Ordering::Relaxed);
        if bytes < lent || bytes >= lent + LEND_STEP || (bytes == 0) != (lent == 0) {
            self.lent.store(bytes, Ordering::Relaxed);
            let left = self.cache_bytes.saturating_sub(bytes);
            self.cache.set_capacity(left.max(self.cache_bytes / 4));
        }
    }

    /// Whether it holds the local feed up to entry `seq`, and no further.
    pub(crate) fn holds(&self, seq: u64) -> bool {
        self.held
            .lock()
            .as_ref()
            .is_some_and(|h| h.covered == seq + 1)
    }

    /// Told that entry `seq` of the local feed was just made: drops the
    /// index unless it holds exactly the entries up to that one (a put it
    /// did not answer, or answered for another seq).
    pub(crate) fn written(&self, seq: u64) {
        let mut held = self.held.lock();
        if held.as_ref().is_some_and(|h| h.covered != seq + 1) {
            self.drop_held(&mut held);
        }
    }

    /// On closing the database: writes what it holds to a file (see
    /// [`file`]) when that is well ahead of the last one, so that the next
    /// process reads it instead of building it; removes its files when it
    /// gave up. A file that cannot be written is left to the next
    /// process to build again: nothing else depends on it.
    pub(crate) fn close(&self, db: &DbReader) {
        if self.given_up.load(Ordering::Relaxed) {
            file::remove_all(db);
            return;
        }
        let held = self.held.lock();
        let Some(h) = held.as_ref() else { return };
        if h.covered >= self.saved.load(Ordering::Relaxed) + SAVE_AFTER {
            let _ = file::save(db, h);
        }
    }

    /// Reads the index back from its newest file into `held` (removing
    /// files that do not check when `remove`), taking its bytes from the
    /// cache's budget.
    fn read_back(&self, db: &DbReader, held: &mut Option<Held>, remove: bool) {
        *held = file::load(db, self.max_bytes, remove);
        if let Some(h) = held.as_ref() {
            self.saved.store(h.covered, Ordering::Relaxed);
            self.lend(h.bytes());
            #[cfg(test)]
            self.loaded.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn give_up(&self, held: &mut Option<Held>) {
        self.drop_held(held);
        self.given_up.store(true, Ordering::Relaxed);
    }

    /// The trie a put of `key` (path `path`) from `heads` writes, when the
    /// index can say (`None`: walk); the index then holds the new entry,
    /// as the next one of the local feed. It never fails a put: what it
    /// cannot read, it leaves to the walk.
    pub(crate) fn trie(
        &self,
        db: &DbReader,
        batch: Option<&Batching>,
        heads: &[Arc<Node>],
        key: &str,
        path: &[u8],
    ) -> Option<Trie> {
        let [head] = heads else { return None };
        if self.given_up.load(Ordering::Relaxed)
            || head.feed != 0
            || db.local != 0
            || db.registry.len() != 1
        {
            return None;
        }
        let seq = head.seq + 1;
        // Numbers of leaves and nodes keep clear of the leaf bit.
        if seq >= u64::from(LEAF) {
            self.give_up(&mut self.held.lock());
            return None;
        }
        let mut held = self.held.lock();
        if held.as_ref().is_some_and(|h| h.covered > seq) {
            self.drop_held(&mut held);
        }
        if held.is_none() {
            #[cfg(test)]
            let eager = self.eager.load(Ordering::Relaxed);
            #[cfg(not(test))]
            let eager = false;
            let walked = self.walked.load(Ordering::Relaxed);
            let keys = db.key_index.as_ref().map_or(0, |k| k.info().in_file);
            if keys.saturating_mul(LEAST_BYTES_PER_KEY) > self.max_bytes {
                self.give_up(&mut held);
                return None;
            }
            if (eager || walked >= seq / LOAD_SHARE) && !self.looked.swap(true, Ordering::Relaxed) {
                self.read_back(db, &mut held, true);
            }
            if held.is_none() {
                if !eager && walked < seq {
                    return None;
                }
                *held = Some(Held::new());
            }
        }
        // An entry that cannot be read now is the walk's to meet (or not):
        // the index drops what it holds, to be built again.
        match self.catch_up(db, batch, &mut held, seq) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(_) => {
                self.drop_held(&mut held);
                return None;
            }
        }
        let h = held.as_mut().expect("caught up");
        let divergence = h.diverge(path);
        if let Divergence::Broken = divergence {
            self.give_up(&mut held);
            return None;
        }
        if let Divergence::Same { seq: old } = divergence {
            let old = Ptr {
                feed: 0,
                seq: u64::from(old),
            };
            let same_key = match db.reading().pointer(old, batch) {
                Ok(node) => node.is_some_and(|node| node.key == key),
                Err(_) => {
                    self.drop_held(&mut held);
                    return None;
                }
            };
            if !same_key {
                self.give_up(&mut held);
                return None;
            }
        }
        let mut trie = Trie::with_capacity(head.trie.len() + 8);
        let h = held.as_mut().expect("caught up");
        h.insert(path, divergence, seq as u32, Some(&mut trie));
        h.covered = seq + 1;
        if h.used_bytes() > self.max_bytes {
            self.give_up(&mut held);
        } else {
            self.lend(h.bytes());
        }
        #[cfg(test)]
        self.answered.fetch_add(1, Ordering::Relaxed);
        Some(trie)
    }

    /// The latest entry of each path under `prefix` (a path without its
    /// terminator) as of entry `head` of the local feed, in the order the
    /// walk lists them (`reverse`: the opposite), for a listing that then
    /// reads those entries and nothing else. `None` where the index cannot
    /// say: given up, several writers, or not held (and, when `load`, no
    /// file to read back), or holding entries past `head`; an index that
    /// lacks entries up to `head` catches up first.
    pub(crate) fn listing(
        &self,
        db: &DbReader,
        prefix: &[u8],
        reverse: bool,
        head: u64,
        load: bool,
    ) -> Option<Vec<u32>> {
        #[cfg(test)]
        if self.unlisted.load(Ordering::Relaxed) {
            return None;
        }
        if self.given_up.load(Ordering::Relaxed) || db.local != 0 || db.registry.len() != 1 {
            return None;
        }
        let mut held = self.held.lock();
        if held.is_none() && load && !self.looked.swap(true, Ordering::Relaxed) {
            // A reader leaves a file that does not check to the writer.
            self.read_back(db, &mut held, false);
        }
        let covered = held.as_ref()?.covered;
        if covered > head + 1 || !matches!(self.catch_up(db, None, &mut held, head + 1), Ok(true)) {
            return None;
        }
        let order = if reverse {
            [3, 2, 1, 0, TERMINATOR]
        } else {
            [TERMINATOR, 0, 1, 2, 3]
        };
        let listed = held.as_mut()?.listing(prefix, order);
        #[cfg(test)]
        if listed.is_some() {
            self.listed.fetch_add(1, Ordering::Relaxed);
        }
        listed
    }

    /// Adds the local entries from `covered` up to `upto` (read from the
    /// feed, or from `batch` past its end). False when it gave up.
    fn catch_up(
        &self,
        db: &DbReader,
        batch: Option<&Batching>,
        held: &mut Option<Held>,
        upto: u64,
    ) -> Result<bool> {
        let Some(h) = held.as_mut() else {
            return Ok(false);
        };
        if h.covered == upto {
            return Ok(true);
        }
        let len = db.state().writers[0].feed.len();
        let key_of = |seq: u64| -> Result<Option<String>> {
            if seq < len {
                return db.entry_key(0, seq);
            }
            Ok(batch
                .and_then(|b| b.nodes.get((seq - len) as usize))
                .map(|node| node.key.clone()))
        };
        let kept = (|| -> Result<bool> {
            while h.covered < upto {
                let seq = h.covered;
                let Some(key) = key_of(seq)? else {
                    return Ok(false);
                };
                let path = crate::hash::path(&key, true);
                let divergence = h.diverge(&path);
                if let Divergence::Broken = divergence {
                    return Ok(false);
                }
                if let Divergence::Same { seq: old } = divergence {
                    if key_of(u64::from(old))?.as_deref() != Some(key.as_str()) {
                        return Ok(false);
                    }
                }
                h.insert(&path, divergence, seq as u32, None);
                h.covered = seq + 1;
                if seq % 4096 == 0 && h.used_bytes() > self.max_bytes {
                    return Ok(false);
                }
            }
            Ok(h.used_bytes() <= self.max_bytes)
        })()?;
        if kept {
            self.lend(h.bytes());
        } else {
            self.give_up(held);
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{put, Db, DbReader, DbStorage, IterOptions, Op, OpenOptions};
    use hypercore_feed::fault::{Crash, Faults};
    use proptest::prelude::*;

    /// Keys of one, two and three components, prefixes of each other.
    const NAMED: [&str; 9] = ["a", "a/b", "a/b/c", "a/c", "b", "b/a", "c/d/e", "x", "x/y"];

    fn key(k: u8) -> String {
        match NAMED.get(k as usize) {
            Some(named) => named.to_string(),
            None => format!("k/{}", k % 7) + &format!("/{k}"),
        }
    }

    /// Each entry of the local feed from `from` on has the trie the walk
    /// from the entry before it gives; returns how many were checked.
    fn tries_are_the_walks(db: &Db, from: u64) -> u64 {
        let len = db.feed(0).unwrap().len();
        for seq in from.max(2)..len {
            let node = db.node(0, seq).unwrap().unwrap();
            let before = db.node(0, seq - 1).unwrap().unwrap();
            let path = crate::hash::path(&node.key, true);
            let walked = put::walk(db, None, &[before], &node.key, &path).unwrap();
            assert_eq!(node.trie, walked, "entry {seq}, key {:?}", node.key);
        }
        len.saturating_sub(from.max(2))
    }

    /// Writes whose tries the index of paths found leave the writer's
    /// entries before its latest (the next write's head) to readers to
    /// cache, single puts as batches: each put drops the head it replaced,
    /// a batch keeps only its last entry and drops the head before it, and
    /// a get of an earlier key reads it back and answers as before.
    #[test]
    fn writes_the_index_of_paths_answered_leave_only_the_head_cached() {
        let db = open(&DbStorage::memory(), OpenOptions::default(), true);
        let cached = |seq: u64| db.cache.get(0, seq).is_some();
        let mut head = 0;
        for i in 0..300 {
            let last = db
                .put(&format!("k/{i}"), format!("v{i}").as_bytes())
                .unwrap();
            assert!(cached(last.seq), "put {i}: the head was not kept");
            // The first put has no head to build on but the header.
            if i > 0 {
                assert!(db.path_index.holds(last.seq), "put {i} not answered");
                assert!(!cached(last.seq - 1), "put {i} kept the head before");
            }
            head = last.seq;
        }
        let ops: Vec<Op> = (300..400)
            .map(|i| Op::Put {
                key: format!("k/{i}"),
                value: format!("v{i}").into_bytes(),
            })
            .collect();
        let written = db.batch(&ops).unwrap();
        let (last, rest) = written.split_last().unwrap();
        assert!(cached(last.seq), "the batch's last entry was not kept");
        assert!(rest.iter().all(|node| !cached(node.seq)));
        assert!(!cached(head), "the batch kept the head before it");
        for i in (0..400).step_by(37) {
            let found = db.get(&format!("k/{i}")).unwrap();
            assert_eq!(found[0].value.as_deref(), Some(format!("v{i}").as_bytes()));
        }
    }

    fn open(storage: &DbStorage, options: OpenOptions, eager: bool) -> Db {
        let db = Db::open_storage(storage.clone(), options).unwrap();
        db.path_index.eager.store(eager, Ordering::Relaxed);
        db
    }

    #[derive(Clone, Debug)]
    enum Step {
        Put(u8, u8),
        Del(u8),
        Batch(Vec<(u8, Option<u8>)>),
        /// Build the index at the next put.
        Build,
        /// Close and open again (the index is built anew).
        Reopen,
    }

    /// Writes what `step` says (a put, a delete or a batch), and returns
    /// how many entries it wrote.
    fn written(db: &Db, step: &Step) -> u64 {
        match step {
            Step::Put(k, v) => {
                db.put(&key(*k), &[*v]).unwrap();
                1
            }
            Step::Del(k) => {
                db.del(&key(*k)).unwrap();
                1
            }
            Step::Batch(ops) => {
                let ops = Op::drawn(ops, key);
                db.batch(&ops).unwrap();
                ops.len() as u64
            }
            Step::Build | Step::Reopen => 0,
        }
    }

    fn step() -> impl Strategy<Value = Step> {
        let k = 0u8..40;
        prop_oneof![
            6 => (k.clone(), any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
            2 => k.clone().prop_map(Step::Del),
            3 => prop::collection::vec((k, prop::option::of(any::<u8>())), 1..12)
                .prop_map(Step::Batch),
            1 => Just(Step::Build),
            1 => Just(Step::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the puts, deletes, batches (a key twice in one too),
        /// and whenever the index is built (caught up from the feed, after
        /// a reopening too), every entry's trie is the walk's, and the
        /// index, once built, answers every put.
        #[test]
        fn tries_from_the_index_are_the_walks(steps in prop::collection::vec(step(), 1..60)) {
            let storage = DbStorage::memory();
            let mut eager = false;
            let mut db = open(&storage, OpenOptions::default(), eager);
            let mut checked = 1;
            for step in &steps {
                let answered = db.path_index.answered.load(Ordering::Relaxed);
                let writes = match step {
                    Step::Build => {
                        eager = true;
                        db.path_index.eager.store(true, Ordering::Relaxed);
                        0
                    }
                    Step::Reopen => {
                        drop(db);
                        db = open(&storage, OpenOptions::default(), eager);
                        0
                    }
                    write => written(&db, write),
                };
                checked += tries_are_the_walks(&db, checked);
                if eager && writes > 0 {
                    // The first put after the header has no head to go from.
                    let len = db.feed(0).unwrap().len();
                    let expected = writes - u64::from(len - writes <= 1);
                    prop_assert_eq!(
                        db.path_index.answered.load(Ordering::Relaxed) - answered,
                        expected
                    );
                    // Built at the first put that has a head.
                    prop_assert_eq!(db.path_index().map(|i| i.covered), (len > 2).then_some(len));
                }
            }
        }
    }

    type Listed = Vec<(String, Vec<(u64, bool, Option<Vec<u8>>)>)>;

    /// What a listing gives: keys, and their entries' seqs, deletes and
    /// values.
    fn listed(iter: crate::Result<crate::Iter<'_>>) -> Listed {
        iter.unwrap()
            .map(|item| {
                let (key, nodes) = item.unwrap();
                let nodes = nodes.iter().map(|n| (n.seq, n.deleted, n.value.clone()));
                (key, nodes.collect())
            })
            .collect()
    }

    /// Listings (`list`) under prefixes of every kind, with every option
    /// but `shallow` (which walks): from the index where it can say, and
    /// by the walk; how many the index answered.
    fn listings_are_the_walks(db: &DbReader, list: impl Fn(&str, IterOptions) -> Listed) -> u64 {
        let prefixes = [
            "", "a", "a/b", "a/", "/a", "k", "k/3", "k/3/1", "k/3/10", "x", "b/a", "zz",
        ];
        let options = [
            IterOptions::default(),
            IterOptions {
                gt: true,
                ..Default::default()
            },
            IterOptions {
                reverse: true,
                ..Default::default()
            },
            IterOptions {
                deletes: true,
                ..Default::default()
            },
            IterOptions {
                reverse: true,
                gt: true,
                deletes: true,
                ..Default::default()
            },
        ];
        let before = db.path_index.listed.load(Ordering::Relaxed);
        for prefix in prefixes {
            for options in options {
                let indexed = list(prefix, options);
                db.path_index.unlisted.store(true, Ordering::Relaxed);
                let walked = list(prefix, options);
                db.path_index.unlisted.store(false, Ordering::Relaxed);
                assert_eq!(indexed, walked, "prefix {prefix:?}, {options:?}");
            }
        }
        db.path_index.listed.load(Ordering::Relaxed) - before
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Whatever the writes, a listing from the index of paths (under
        /// any prefix, in either order, with or without the prefix itself
        /// and deletes) is the walk's; a listing of an older version walks.
        #[test]
        fn listings_from_the_index_are_the_walks(steps in prop::collection::vec(step(), 1..40)) {
            let storage = DbStorage::memory();
            let mut db = open(&storage, OpenOptions::default(), true);
            let mut older = None;
            for (i, step) in steps.iter().enumerate() {
                if let Step::Reopen = step {
                    drop(db);
                    db = open(&storage, OpenOptions::default(), true);
                } else {
                    written(&db, step);
                }
                if i == steps.len() / 2 {
                    older = Some(db.version().unwrap());
                }
            }
            // A put from a head builds the index if it was not.
            db.put("a", b"last").unwrap();
            db.put("a", b"last").unwrap();
            prop_assert!(db.path_index().is_some());
            prop_assert!(listings_are_the_walks(&db, |p, o| listed(db.iter(p, o))) > 0);
            if let Some(version) = older {
                let view = db.checkout(&version).unwrap();
                let listed = listings_are_the_walks(&db, |p, o| listed(view.iter(p, o)));
                prop_assert_eq!(listed, 0, "an older version walks");
            }
        }
    }

    /// A writer opened again lists from the index's file (read back for a
    /// listing of everything), and a listing leaves a file that does not
    /// check where it is (a read writes nothing; the writer removes it).
    #[test]
    fn a_listing_reads_the_index_back_and_writes_nothing() {
        let storage = DbStorage::memory();
        let (name, bytes) = saved(&storage);
        let db = open(&storage, OpenOptions::default(), false);
        assert!(db.path_index().is_none());
        assert!(listings_are_the_walks(&db, |p, o| listed(db.iter(p, o))) > 0);
        assert_eq!(db.path_index.loaded.load(Ordering::Relaxed), 1);
        assert_eq!(db.path_index().unwrap().covered, 2001);
        drop(db);
        let mut damaged = bytes.clone();
        damaged[bytes.len() / 2] ^= 1;
        replace_file(&storage, &name, &damaged);
        let db = open(&storage, OpenOptions::default(), false);
        assert_eq!(listings_are_the_walks(&db, |p, o| listed(db.iter(p, o))), 0);
        assert!(db.path_index().is_none());
        drop(db);
        let files = path_files(&storage);
        assert_eq!(
            files,
            std::slice::from_ref(&name),
            "a listing removed nothing"
        );
        // A read-only handle lists from the file too.
        replace_file(&storage, &name, &bytes);
        let db = crate::ReadOnlyDb::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        assert!(listings_are_the_walks(&db, |p, o| listed(db.iter(p, o))) > 0);
        assert_eq!(db.path_index.loaded.load(Ordering::Relaxed), 1);
    }

    /// Listings beside a writer (puts, and batches that delete) list
    /// what the walk lists at their version, whether the index was caught
    /// up, ahead of them, or read back; none waits for another for good.
    #[test]
    fn listings_beside_a_writer_are_the_walks() {
        let storage = DbStorage::memory();
        let db = open(&storage, OpenOptions::default(), true);
        db.put("k/start", b"v").unwrap();
        db.put("k/start", b"v").unwrap();
        let seen = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                for i in 0..300 {
                    let value = i.to_string().into_bytes();
                    if i % 3 == 0 {
                        let ops = [
                            Op::Put {
                                key: format!("k/{i}"),
                                value,
                            },
                            Op::Del {
                                key: format!("k/{}", i / 2),
                            },
                        ];
                        db.batch(&ops).unwrap();
                    } else {
                        db.put(&format!("k/{i}"), &value).unwrap();
                    }
                }
            });
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        (0..30)
                            .map(|_| {
                                let view = db.snapshot().unwrap();
                                let listing = listed(view.iter("", IterOptions::default()));
                                (view.version(), listing)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            writer.join().unwrap();
            readers
                .into_iter()
                .flat_map(|r| r.join().unwrap())
                .collect::<Vec<_>>()
        });
        let before = db.path_index.listed.load(Ordering::Relaxed);
        assert_eq!(listed(db.iter("", IterOptions::default())).len(), 201);
        assert_eq!(db.path_index.listed.load(Ordering::Relaxed), before + 1);
        db.path_index.unlisted.store(true, Ordering::Relaxed);
        for (version, listing) in seen {
            let view = db.checkout(&version).unwrap();
            assert_eq!(listed(view.iter("", IterOptions::default())), listing);
        }
    }

    /// Two keys of one path (a SipHash collision, or a key and the same
    /// with a trailing `/`): the tries then hold both, which the index
    /// cannot say, so it gives up for good and puts walk. Written one at a
    /// time, in a batch, or before the index is built (found catching up).
    #[test]
    fn two_keys_of_one_path_make_it_give_up() {
        for (first, second) in [("idgcmnmna", "mpomeiehc"), ("a/b", "a/b/")] {
            for how in ["puts", "batch", "before"] {
                let storage = DbStorage::memory();
                let mut db = open(&storage, OpenOptions::default(), how != "before");
                for k in 0..30 {
                    db.put(&key(k), b"v").unwrap();
                }
                if how == "puts" {
                    // Closing writes the index; the next session reads it.
                    drop(db);
                    assert_eq!(path_files(&storage).len(), 1);
                    db = open(&storage, OpenOptions::default(), true);
                }
                if how == "batch" {
                    assert!(db.path_index().is_some());
                    let ops = [first, second, "after"].map(|k| Op::Put {
                        key: k.into(),
                        value: b"v".to_vec(),
                    });
                    db.batch(&ops).unwrap();
                } else {
                    db.put(first, b"1").unwrap();
                    db.put(second, b"2").unwrap();
                    db.put("after", b"3").unwrap();
                }
                db.path_index.eager.store(true, Ordering::Relaxed);
                for k in 0..30 {
                    db.put(&key(k), b"again").unwrap();
                }
                assert!(db.path_index().is_none(), "{first} {second} {how}");
                // Every entry but the header and the first.
                assert_eq!(tries_are_the_walks(&db, 0), 30 + 3 + 30 - 1);
                let values: Vec<_> = db
                    .get(second)
                    .unwrap()
                    .into_iter()
                    .map(|n| n.key.clone())
                    .collect();
                assert_eq!(values, [second]);
                drop(db);
                assert!(
                    path_files(&storage).is_empty(),
                    "given up, it keeps no file"
                );
            }
        }
    }

    /// Writes keys `k/<i mod 10>/<i>` for `i` below 2,000, in batches of
    /// 100: enough walking to build the index.
    fn two_thousand_keys(db: &Db) {
        let ops: Vec<Op> = (0..2000)
            .map(|i| Op::Put {
                key: format!("k/{}/{i}", i % 10),
                value: b"v".to_vec(),
            })
            .collect();
        db.write_all(ops, 100).unwrap();
    }

    /// A process that writes a few keys to a database does not build it;
    /// one that goes on does, once its walks have read as many entries.
    #[test]
    fn the_index_is_built_once_puts_have_walked_enough() {
        let storage = DbStorage::memory();
        let db = open(&storage, OpenOptions::default(), false);
        two_thousand_keys(&db);
        assert_eq!(db.path_index().map(|i| i.covered), Some(2001));
        drop(db);
        // Built, not read back (see the next test).
        file::remove_all(&open(&storage, OpenOptions::default(), false));
        let db = open(&storage, OpenOptions::default(), false);
        for i in 0..5 {
            db.put(&format!("more/{i}"), b"v").unwrap();
        }
        assert!(db.path_index().is_none(), "five puts walked less");
        let mut i = 0;
        while db.path_index().is_none() {
            db.put(&format!("more/{i}"), b"v").unwrap();
            i += 1;
            assert!(i < 2000, "puts walked through every entry, twice over");
        }
        assert!(db.path_index().unwrap().paths > 2000);
        tries_are_the_walks(&db, 0);
    }

    fn path_files(storage: &DbStorage) -> Vec<String> {
        let mut names: Vec<String> = storage
            .index_files()
            .into_iter()
            .filter(|n| n.starts_with(file::PREFIX))
            .collect();
        names.sort();
        names
    }

    /// Writes 2,000 keys (the index built), closes, and returns the bytes
    /// of the one file of the index that closing wrote.
    fn saved(storage: &DbStorage) -> (String, Vec<u8>) {
        let db = open(storage, OpenOptions::default(), true);
        two_thousand_keys(&db);
        drop(db);
        let names = path_files(storage);
        assert_eq!(names, [format!("{}{:016x}", file::PREFIX, 2001)]);
        let f = storage.index_file(&names[0], true).unwrap();
        let bytes = f.read_at(0, f.len().unwrap() as usize).unwrap();
        (names[0].clone(), bytes)
    }

    /// A writer opened again reads the index back from the file closing
    /// wrote (once its puts have walked an eighth of what building reads),
    /// catches up, answers puts with it, and writes the newer file on
    /// closing, removing the older.
    #[test]
    fn a_reopened_writer_reads_its_index_back() {
        let storage = DbStorage::memory();
        let (_, bytes) = saved(&storage);
        let db = open(&storage, OpenOptions::default(), false);
        let mut i = 0;
        while db.path_index().is_none() {
            db.put(&format!("more/{i}"), b"v").unwrap();
            i += 1;
            assert!(i < 200, "puts walked an eighth of the entries");
        }
        assert_eq!(db.path_index.loaded.load(Ordering::Relaxed), 1);
        let answered = db.path_index.answered.load(Ordering::Relaxed);
        for k in 0..50 {
            db.put(&format!("k/{}/{k}", k % 3), b"w").unwrap();
        }
        assert_eq!(
            db.path_index.answered.load(Ordering::Relaxed),
            answered + 50
        );
        assert!(tries_are_the_walks(&db, 2001) > 50);
        let covered = db.path_index().unwrap().covered;
        drop(db);
        assert_eq!(
            path_files(&storage),
            [format!("{}{covered:016x}", file::PREFIX)]
        );
        // The same writes to another feed make the same tables.
        let again = saved(&DbStorage::memory()).1;
        assert_eq!(again[80..again.len() - 32], bytes[80..bytes.len() - 32]);
    }

    /// The file with the checksum at its end made right again.
    fn resummed(mut bytes: Vec<u8>) -> Vec<u8> {
        let at = bytes.len() - 32;
        let sum = blake2b_simd::Params::new()
            .hash_length(32)
            .hash(&bytes[..at]);
        bytes[at..].copy_from_slice(sum.as_bytes());
        bytes
    }

    fn replace_file(storage: &DbStorage, name: &str, bytes: &[u8]) {
        let mut f = storage.index_file(name, false).unwrap();
        f.truncate(0).unwrap();
        f.write_all_at(0, bytes).unwrap();
    }

    /// A file cut short, with a byte changed anywhere, or that claims to
    /// cover fewer entries than it was written for (its checksum made
    /// right: the feed's roots then differ) is not used but removed; the
    /// index is built from the feed instead, and puts are as before.
    #[test]
    fn a_file_that_does_not_check_is_removed_and_the_index_built() {
        let storage = DbStorage::memory();
        let (name, bytes) = saved(&storage);
        let mut covered_less = bytes.clone();
        covered_less[80..88].copy_from_slice(&2000u64.to_le_bytes());
        let mut damaged = vec![bytes[..bytes.len() - 1].to_vec(), resummed(covered_less)];
        for at in (0..bytes.len()).step_by(bytes.len() / 23) {
            let mut changed = bytes.clone();
            changed[at] ^= 0x10;
            damaged.push(changed);
        }
        for (round, bad) in damaged.into_iter().enumerate() {
            replace_file(&storage, &name, &bad);
            let db = open(&storage, OpenOptions::default(), true);
            db.put("after", b"v").unwrap();
            assert_eq!(
                db.path_index.loaded.load(Ordering::Relaxed),
                0,
                "round {round}"
            );
            let len = db.feed(0).unwrap().len();
            assert_eq!(db.path_index().unwrap().covered, len);
            assert!(!path_files(&storage).contains(&name));
            tries_are_the_walks(&db, 2001);
            // Closing writes the index built; the next round replaces it.
            drop(db);
            for n in path_files(&storage) {
                storage.remove_index_file(&n).unwrap();
            }
        }
        // Untouched, it is used.
        replace_file(&storage, &name, &bytes);
        let db = open(&storage, OpenOptions::default(), true);
        db.put("after", b"v").unwrap();
        assert_eq!(db.path_index.loaded.load(Ordering::Relaxed), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever words of a file's tables are changed (its checksum
        /// made right, as damage that slipped past it would be), reading
        /// it neither panics nor loops, and an index read from it can be
        /// listed, gone down and added to.
        #[test]
        fn any_tables_in_a_file_read_safely(
            changes in prop::collection::vec((0u8..4, any::<u32>(), prop_oneof![
                Just(0u32), Just(1), Just(2), Just(NONE), Just(LEAF), Just(LEAF | 1), any::<u32>()
            ]), 1..4),
        ) {
            thread_local! {
                static SAVED: (DbStorage, String, Vec<u8>) = {
                    let storage = DbStorage::memory();
                    let (name, bytes) = saved(&storage);
                    (storage, name, bytes)
                };
            }
            SAVED.with(|(storage, name, bytes)| {
                let count = |i: usize| {
                    u32::from_le_bytes(bytes[88 + 4 * i..92 + 4 * i].try_into().unwrap()) as usize
                };
                let (inner, leaves, dirs) = (count(2), count(3), count(4));
                let leaves_at = 112 + inner * 44;
                let dirs_at = leaves_at + leaves * 12;
                let mut changed = bytes.clone();
                for &(table, at, word) in &changes {
                    let at = at as usize;
                    // A node's position or children, a leaf's folder, a
                    // folder's parent, or any word of the tables.
                    let at = match table {
                        0 => 112 + (at % inner) * 44 + (at % 6) * 4,
                        1 => leaves_at + (at % leaves) * 12,
                        2 => dirs_at + (at % dirs) * 12,
                        _ => 112 + (at % ((bytes.len() - 144) / 4)) * 4,
                    };
                    changed[at..at + 4].copy_from_slice(&word.to_le_bytes());
                }
                replace_file(storage, name, &resummed(changed));
                let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
                let loaded = file::load(&db, 1 << 20, true);
                if let Some(mut held) = loaded {
                    // Listings, of everything and under a prefix, either
                    // way: entries the file covers, one a path at most.
                    let prefix = crate::hash::path("k/3", false);
                    for (prefix, order) in [(&[][..], [TERMINATOR, 0, 1, 2, 3]), (&prefix, [3, 2, 1, 0, TERMINATOR])] {
                        if let Some(seqs) = held.listing(prefix, order) {
                            assert!(seqs.len() <= leaves);
                            assert!(seqs.iter().all(|&s| u64::from(s) < held.covered));
                        }
                    }
                    // Every key written goes down the tree; a few are added.
                    for i in 0..2000 {
                        held.diverge(&crate::hash::path(&format!("k/{}/{i}", i % 10), true));
                    }
                    for (seq, k) in (held.covered..).zip(0..8) {
                        let path = crate::hash::path(&key(k), true);
                        let divergence = held.diverge(&path);
                        held.insert(&path, divergence, seq as u32, Some(&mut Trie::default()));
                    }
                }
                drop(db);
            });
        }
    }

    /// Past its budget (a cache of 64 KiB: the index may take 48 KiB, some
    /// 1,200 keys) it gives up, and puts walk as before; however many
    /// times keys are written, their number is what counts.
    #[test]
    fn past_its_budget_it_is_dropped() {
        let storage = DbStorage::memory();
        let options = OpenOptions {
            cache_bytes: 64 << 10,
            ..Default::default()
        };
        let db = open(&storage, options.clone(), true);
        // Far more entries than 64 KiB over 64 bytes, of 300 keys.
        for i in 0..3000 {
            db.put(&format!("k/{}", i % 300), &i.to_string().into_bytes())
                .unwrap();
        }
        let info = db.path_index().unwrap();
        assert_eq!((info.covered, info.paths), (3001, 300));
        for i in 0..2500 {
            db.put(&format!("over/{i}"), b"v").unwrap();
            if i < 500 {
                assert!(db.path_index().is_some(), "{i}");
            }
        }
        assert!(db.path_index().is_none());
        assert_eq!(tries_are_the_walks(&db, 0), 5499);
        // Given up for good; the next writer does not build it either (the
        // key index counts more keys than could fit).
        drop(db);
        let db = open(&storage, options, true);
        db.put("one/more", b"v").unwrap();
        assert!(db.path_index().is_none());
    }

    /// An append that fails leaves the index holding entries the feed does
    /// not: it is dropped (the feed takes no more writes until opened
    /// again, when the index is built anew from it).
    /// A crash at any write point of a session that reads the index back,
    /// adds to it and writes its newer file on closing (failure, kill,
    /// power cut) leaves a database whose next writer's tries are the
    /// walks', the index read back or built.
    #[test]
    fn a_crash_while_its_file_is_written_loses_nothing() {
        let start = DbStorage::memory();
        let db = open(&start, OpenOptions::default(), true);
        for k in 0..40 {
            db.put(&key(k), b"v").unwrap();
        }
        drop(db);
        assert_eq!(path_files(&start).len(), 1);
        let session = |storage: &DbStorage| {
            let db = open(storage, OpenOptions::default(), true);
            for k in 0..10 {
                let _ = db.put(&format!("session/{k}"), b"v");
            }
            drop(db);
        };
        let points = {
            let faults = Faults::new();
            let disk = start.deep_copy();
            session(&disk.clone().with_faults(faults.clone()));
            assert_ne!(
                path_files(&disk),
                path_files(&start),
                "closing wrote a file"
            );
            faults.points()
        };
        for crash in [Crash::Fail, Crash::Kill, Crash::PowerCut] {
            for point in 1..=points {
                let faults = Faults::new();
                let storage = start.deep_copy().with_faults(faults.clone());
                faults.crash_at(point, crash);
                session(&storage);
                faults.restart();
                let db = open(&storage, OpenOptions::default(), true);
                for k in 0..5 {
                    db.put(&format!("after/{k}"), b"v").unwrap();
                }
                let len = db.feed(0).unwrap().len();
                assert_eq!(
                    db.path_index().map(|i| i.covered),
                    Some(len),
                    "{crash:?} at {point}"
                );
                assert!(tries_are_the_walks(&db, 0) >= 44);
                assert_eq!(db.get("after/4").unwrap().len(), 1);
            }
        }
    }

    /// Dropped (as when an append fails, or a put it did not answer was
    /// made), it is read back from its file again at the next put and
    /// caught up from there, rather than built anew.
    #[test]
    fn dropped_it_is_read_back_again() {
        let storage = DbStorage::memory();
        saved(&storage);
        let db = open(&storage, OpenOptions::default(), true);
        db.put("first", b"v").unwrap();
        assert_eq!(db.path_index.loaded.load(Ordering::Relaxed), 1);
        db.path_index.reset();
        assert!(db.path_index().is_none());
        db.put("second", b"v").unwrap();
        assert_eq!(db.path_index.loaded.load(Ordering::Relaxed), 2);
        assert_eq!(db.path_index().map(|i| i.covered), Some(2003));
        assert_eq!(tries_are_the_walks(&db, 2001), 2);
    }

    #[test]
    fn a_failed_append_drops_it() {
        for batched in [false, true] {
            let faults = Faults::new();
            let storage = DbStorage::memory().with_faults(faults.clone());
            let db = open(&storage, OpenOptions::default(), true);
            for k in 0..40 {
                db.put(&key(k), b"v").unwrap();
            }
            assert!(db.path_index().is_some());
            faults.crash_at(faults.points() + 1, Crash::Fail);
            let failed = if batched {
                let ops: Vec<Op> = (0..5)
                    .map(|k| Op::Put {
                        key: format!("failed/{k}"),
                        value: b"v".to_vec(),
                    })
                    .collect();
                db.batch(&ops).map(|_| ())
            } else {
                db.put("failed", b"v").map(|_| ())
            };
            assert!(failed.is_err());
            assert!(db.path_index().is_none());
            drop(db);
            let db = open(&storage, OpenOptions::default(), true);
            for k in 0..40 {
                db.put(&key(k), b"after").unwrap();
            }
            assert_eq!(db.path_index().map(|i| i.covered), Some(81));
            assert_eq!(tries_are_the_walks(&db, 0), 79);
            assert!(db.get("failed").unwrap().is_empty());
            assert!(db.get("failed/1").unwrap().is_empty());
        }
    }
}
