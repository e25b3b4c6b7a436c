//! Reading a feed's stored blocks beside the [`Feed`] that writes them:
//! [`BlockReader`].
//!
//! A [`Feed`] is written through `&mut self`, so whoever shares one between
//! threads puts it behind a lock, and a reader then waits for every write in
//! progress. A block the feed has written out to storage never changes, so
//! it can be read without the feed: from the files themselves, through
//! handles of the reader's own, and the feed's cache of tree nodes.

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::cache::SharedCache;
use crate::feed::{decode_node, Error, Node, Result, NODE_SIZE};
use crate::sleep::HEADER_SIZE;
use crate::storage::{RandomAccess, Storage};
use crate::{crypto, flat};

/// Blocks read out of order find their offset from the start of their
/// aligned run of this many blocks (see `BlockReader::offset_in_run`).
const RUN: u64 = 32;

/// Runs whose blocks' offsets and hash tags a reader keeps: 2,097,152
/// blocks' worth, in about 27 MB at most (13 MB for a million blocks).
const RUNS_KEPT: usize = 1 << 16;

/// Blocks read in order are read ahead, up to this many at once...
const AHEAD_BLOCKS: u64 = 64;
/// ...and this many bytes of data (a larger block is read alone).
const AHEAD_BYTES: u64 = 32 * 1024;
/// Blocks read ahead are hashed this many at a time (BLAKE2b with AVX2
/// hashes four side by side), for a reader in order.
const HASHED_TOGETHER: usize = 8;
/// A reader that asks for a block fewer than this many after the last one
/// it read (going in order, some blocks skipped) is read ahead for from
/// that last one, as a reader in order is, when the blocks between fit
/// in what is read ahead.
const SKIPPED_AT_MOST: u64 = AHEAD_BLOCKS / 2;

thread_local! {
    /// The leaves of a run up to a block, as `BlockReader::offset_in_run`
    /// reads them.
    static RUN_LEAVES: std::cell::RefCell<[u8; (2 * RUN as usize - 1) * NODE_SIZE as usize]> =
        const { std::cell::RefCell::new([0; (2 * RUN as usize - 1) * NODE_SIZE as usize]) };
}

/// Blocks read ahead of a reader going in order: the leaves of a run of
/// blocks, and the bytes of as many of them as fit in [`AHEAD_BYTES`] side
/// by side from the data file, each checked against its leaf when it is
/// asked for.
#[derive(Default)]
struct Ahead {
    /// The block of the first leaf held.
    first: u64,
    leaves: Vec<Node>,
    /// The block whose bytes start `data`, and where it starts in the data
    /// file.
    data_first: u64,
    offset: u64,
    data: Vec<u8>,
    /// For each block `data` holds, from `data_first`: where it starts in
    /// the data file, and whether its bytes hash to its leaf, once hashed.
    checked: Vec<(u64, Option<bool>)>,
    /// The block last handed out.
    last: Option<u64>,
}

impl Ahead {
    /// The leaf of block `index`, if held.
    fn leaf(&self, index: u64) -> Option<&Node> {
        let i = usize::try_from(index.checked_sub(self.first)?).ok()?;
        self.leaves.get(i)
    }

    /// The bytes of block `index`, which starts at `offset`, if held.
    fn bytes(&self, index: u64, offset: u64) -> Option<&[u8]> {
        index.checked_sub(self.data_first)?;
        let size = usize::try_from(self.leaf(index)?.size).ok()?;
        let start = usize::try_from(offset.checked_sub(self.offset)?).ok()?;
        self.data.get(start..start.checked_add(size)?)
    }

    /// Whether block `index`, starting at `offset`, is held and its bytes
    /// hash to its leaf. Blocks are hashed `together` at a time from the
    /// one asked for, side by side ([`HASHED_TOGETHER`] for a reader going
    /// block after block, which takes about half the time of hashing them
    /// one by one; one for a reader that skips blocks, which would not ask
    /// for the others).
    fn checked(&mut self, index: u64, offset: u64, together: usize) -> bool {
        let Some(i) = index
            .checked_sub(self.data_first)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| self.checked.get(i).is_some_and(|c| c.0 == offset))
        else {
            return false;
        };
        if self.checked[i].1.is_none() {
            let group = i..self.checked.len().min(i + together.max(1));
            let first = self.data_first + i as u64;
            let mut blocks = Vec::with_capacity(group.len());
            for (j, &(start, _)) in self.checked[group.clone()].iter().enumerate() {
                match self.bytes(first + j as u64, start) {
                    Some(block) => blocks.push(block),
                    None => break,
                }
            }
            let hashes = crypto::leaf_hashes(&blocks);
            for (j, hash) in hashes.into_iter().enumerate() {
                let good = self.leaf(first + j as u64).is_some_and(|l| l.hash == hash);
                self.checked[i + j].1 = Some(good);
            }
        }
        self.checked[i].1 == Some(true)
    }
}

/// Where the blocks of an aligned run of [`RUN`] blocks start in the data
/// file, and the first bytes of their leaves' hashes, as far as its leaves
/// were stored when read.
#[derive(Clone)]
// In this order, so that a lookup reads the cache line of the map's key,
// `first` and `known`, then one of `ends` and one of `tags`.
#[repr(C)]
struct Run {
    /// Where its first block starts.
    first: u64,
    /// How many blocks from the first `ends` and `tags` hold.
    known: u8,
    /// Where each block ends, from `first`.
    ends: [u32; RUN as usize],
    /// The first eight bytes of each block's leaf hash: a block read again
    /// is checked against them, without reading its leaf (see
    /// [`Located::tag`]).
    tags: [u64; RUN as usize],
}

impl Run {
    /// Where the run's `i`th block is, if known (and within 2^64 bytes:
    /// a damaged tree could say otherwise).
    fn located(&self, i: usize) -> Option<Located> {
        if i >= usize::from(self.known) {
            return None;
        }
        let from = i.checked_sub(1).map_or(0, |i| self.ends[i]);
        let offset = self.first.checked_add(u64::from(from))?;
        let size = u64::from(self.ends[i].checked_sub(from)?);
        offset.checked_add(size)?;
        Some(Located {
            offset,
            size,
            tag: self.tags[i],
        })
    }
}

/// Where a block is, and what its bytes must hash to, as a run knows it.
struct Located {
    offset: u64,
    size: u64,
    /// The first eight bytes (little-endian) of its leaf hash. Against
    /// damage to the data file (the check a local read makes: the leaf
    /// itself is not checked against the signed roots) 64 bits miss one
    /// change in 2^64, and they keep a run in about 400 bytes where the
    /// whole hashes would take 1,024 more.
    tag: u64,
}

/// The first eight bytes of a hash, as [`Located::tag`] keeps them.
fn tag(hash: &crypto::Hash) -> u64 {
    u64::from_le_bytes(hash[..8].try_into().expect("eight bytes"))
}

/// The length of `file` as last asked (`known`), asked again (a system
/// call) when that is short of `needed`.
fn len_at_least(known: &AtomicU64, file: &dyn RandomAccess, needed: u64) -> io::Result<u64> {
    let len = known.load(Ordering::Relaxed);
    if len >= needed {
        return Ok(len);
    }
    let len = file.len()?;
    known.store(len, Ordering::Relaxed);
    Ok(len)
}

/// Where tree node `index` starts in the tree file.
fn node_offset(index: u64) -> Option<u64> {
    index.checked_mul(NODE_SIZE)?.checked_add(HEADER_SIZE)
}

/// Reads blocks a [`Feed`](crate::Feed) has flushed, from any thread and
/// without the feed (made by [`Feed::block_reader`](crate::Feed::block_reader)).
///
/// It knows nothing of what the feed holds: the caller asks only for blocks
/// it knows the feed had stored and flushed (below a length it read when
/// [`Feed::has_unflushed`](crate::Feed::has_unflushed) was false). Anything
/// else fails (a block not written yet reads as a missing node) or, if the
/// feed was repaired meanwhile, fails the hash check: the caller then asks
/// the feed itself.
pub struct BlockReader {
    storage: Box<dyn Storage>,
    /// Opened at the first read that finds the file (a new feed's files
    /// appear with its first block).
    tree: OnceLock<Box<dyn RandomAccess>>,
    data: OnceLock<Box<dyn RandomAccess>>,
    /// The feed's own cache of tree nodes.
    nodes: Arc<SharedCache<u64, Node>>,
    /// Where the blocks of runs of [`RUN`] blocks start in the data file,
    /// and the tags of their hashes, by the run's first block: each run's
    /// start sums up to a few dozen tree nodes, most of which no other run
    /// needs.
    runs: SharedCache<u64, Run>,
    /// The tree file's length when last asked.
    tree_len: AtomicU64,
    /// The data file's length when last asked: a block that ends within it
    /// needs no system call to be checked.
    data_len: AtomicU64,
    /// The block after the last one read and the offset it starts at, so
    /// blocks read in order need no root lookups.
    next: Mutex<(u64, u64)>,
    /// What was read ahead of the blocks read in order.
    ahead: Mutex<Ahead>,
}

impl std::fmt::Debug for BlockReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockReader")
            .field("data", &self.storage.describe("data"))
            .finish()
    }
}

impl BlockReader {
    pub(crate) fn new(storage: Box<dyn Storage>, nodes: Arc<SharedCache<u64, Node>>) -> Self {
        BlockReader {
            storage,
            tree: OnceLock::new(),
            data: OnceLock::new(),
            nodes,
            runs: SharedCache::new(RUNS_KEPT),
            tree_len: AtomicU64::new(0),
            data_len: AtomicU64::new(0),
            next: Mutex::new((0, 0)),
            ahead: Mutex::new(Ahead::default()),
        }
    }

    /// Block `index`, checked against its hash in the tree.
    pub fn get(&self, index: u64) -> Result<Vec<u8>> {
        let tree = self.file(&self.tree, "tree")?;
        let data = self.file(&self.data, "data")?;
        let known = *self.next.lock().expect("no panic while held");
        let (offset, leaf) = if known.0 == index {
            // Anything odd ahead (a leaf not stored yet, bytes that do not
            // match) is left to the read of this block alone.
            if let Some(block) = self.read_in_order(tree, data, index, known.1) {
                return Ok(block);
            }
            (known.1, self.node(tree, index.saturating_mul(2))?)
        } else if let Some(block) = self.read_held(index) {
            // A reader in order that skipped a few blocks (found cached).
            return Ok(block);
        } else if let Some(block) = (index > known.0 && index - known.0 < SKIPPED_AT_MOST)
            .then(|| self.read_skipping(tree, data, index, known))
            .flatten()
        {
            return Ok(block);
        } else {
            // Anything odd on the short way (a leaf not stored, as in a
            // sparse replica, or one that is damaged) is left to the long
            // way, which says what is wrong.
            if let Some(at) = self.offset_in_run(tree, index) {
                let expected = |hash: &crypto::Hash| tag(hash) == at.tag;
                if let Ok(block) = self.read_checked(data, index, at.offset, at.size, expected) {
                    return Ok(block);
                }
                // Perhaps the feed was repaired since the run was seen.
                self.runs.remove(&(index & !(RUN - 1)));
            }
            let mut offset = 0u64;
            for root in flat::full_roots_iter(index.saturating_mul(2)) {
                offset = offset
                    .checked_add(self.node(tree, root)?.size)
                    .ok_or_else(|| {
                        self.corrupt(format!("block {index} would start past 2^64 bytes"))
                    })?;
            }
            (offset, self.node(tree, index.saturating_mul(2))?)
        };
        self.read_checked(data, index, offset, leaf.size, |hash| *hash == leaf.hash)
    }

    /// Blocks `indices` (ascending), read together where they lie near
    /// one another: the bytes of each are appended to `out`, checked
    /// against its leaf, and its range there given back, or `None` where
    /// this way could not read it (the caller then asks
    /// [`BlockReader::get`], which says what is wrong). For a reader that
    /// knows the blocks it will want, such as a listing reading a window of
    /// entries: where each block is and the start of its hash come from
    /// its run of 32 (its leaves read once), the blocks within 32 KiB of
    /// the first of a span take one read, and they are hashed side by
    /// side. `out` grows once, by their total.
    ///
    /// ```
    /// use hypercore_feed::{Feed, FeedOptions, MemoryStorage};
    /// let storage = MemoryStorage::new();
    /// let mut feed = Feed::open(storage.clone(), FeedOptions::default()).unwrap();
    /// feed.append_batch(&[b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]).unwrap();
    /// let reader = feed.block_reader(Box::new(storage));
    /// let mut out = Vec::new();
    /// let found = reader.get_sorted(&[0, 2], &mut out);
    /// let blocks: Vec<&[u8]> = found.into_iter().map(|r| &out[r.unwrap()]).collect();
    /// assert_eq!(blocks, [&b"a"[..], &b"ccc"[..]]);
    /// ```
    pub fn get_sorted(&self, indices: &[u64], out: &mut Vec<u8>) -> Vec<Option<Range<usize>>> {
        let mut found = vec![None; indices.len()];
        let (Ok(tree), Ok(data)) = (self.file(&self.tree, "tree"), self.file(&self.data, "data"))
        else {
            return found;
        };
        let located = self.locate_sorted(tree, indices);
        // Room for all of them at once: a buffer grown as they come would
        // be copied, and take up to twice their size.
        let ends = located.iter().flatten().map(|at| at.offset + at.size);
        let Ok(data_len) = len_at_least(&self.data_len, data, ends.max().unwrap_or(0)) else {
            return found;
        };
        let total = located.iter().flatten().map(|at| at.size);
        let total = total.fold(0u64, u64::saturating_add).min(data_len);
        out.reserve_exact(usize::try_from(total).unwrap_or(0));
        let mut span = Vec::new();
        let mut k = 0;
        while k < indices.len() {
            let (located, found) = (&located[k..], &mut found[k..]);
            k += Self::read_span(data, data_len, located, out, found, &mut span);
        }
        found
    }

    /// Where each of `indices` (ascending) is, from its run (see
    /// [`BlockReader::offset_in_run`]): the blocks of one run found in one
    /// look in the cache of runs (a run is about 400 bytes, and a listing's
    /// window touches most runs of a large feed a few blocks each), and a
    /// run not cached, or known short of them, read once.
    fn locate_sorted(&self, tree: &dyn RandomAccess, indices: &[u64]) -> Vec<Option<Located>> {
        let mut located = Vec::with_capacity(indices.len());
        let mut rest = indices;
        while let Some(&first) = rest.first() {
            let start = first & !(RUN - 1);
            let n = rest
                .iter()
                .take_while(|&&i| i & !(RUN - 1) == start)
                .count();
            let (group, after) = rest.split_at(n);
            rest = after;
            let before = located.len();
            let cached = |located: &mut Vec<Option<Located>>| {
                self.runs.get_with(&start, |run| {
                    let each = group.iter().map(|&i| run.located((i - start) as usize));
                    located.extend(each);
                });
                // The blocks are in order: the last known, all are.
                located.len() > before && located.last().is_some_and(Option::is_some)
            };
            if cached(&mut located) {
                continue;
            }
            located.truncate(before);
            // The run read (or read again past what it knew) as far as
            // the last of them; where that fails (a sparse replica), each
            // as far as it can be.
            if self.offset_in_run(tree, group[n - 1]).is_some() && cached(&mut located) {
                continue;
            }
            located.truncate(before);
            located.extend(group.iter().map(|&i| self.offset_in_run(tree, i)));
        }
        located
    }

    /// The blocks of `located` that one read from the first of them
    /// reaches, read (through `span`) and appended to `out` as
    /// [`BlockReader::get_sorted`] says, their ranges in `found`; how many
    /// of `located` it dealt with (at least one). Nothing past `data_len`,
    /// the data file's length, is read (or made room for).
    fn read_span(
        data: &dyn RandomAccess,
        data_len: u64,
        located: &[Option<Located>],
        out: &mut Vec<u8>,
        found: &mut [Option<Range<usize>>],
        span: &mut Vec<u8>,
    ) -> usize {
        let Some(first) = &located[0] else {
            return 1;
        };
        // Each after the one before, and all within what one read takes.
        let mut last = first;
        let mut taken = 1;
        for at in &located[1..] {
            let Some(at) = at else {
                break;
            };
            let within = at.offset >= last.offset + last.size
                && at.offset + at.size - first.offset <= AHEAD_BYTES;
            if !within {
                break;
            }
            last = at;
            taken += 1;
        }
        if last.offset + last.size > data_len {
            return taken;
        }
        let Ok(bytes) = usize::try_from(last.offset + last.size - first.offset) else {
            return taken;
        };
        span.resize(bytes, 0);
        if data.read_exact_at(first.offset, span).is_err() {
            return taken;
        }
        let block = |at: &Located| {
            let start = (at.offset - first.offset) as usize;
            start..start + at.size as usize
        };
        let wanted = located[..taken].iter().flatten();
        let blocks: Vec<&[u8]> = wanted.clone().map(|at| &span[block(at)]).collect();
        let hashes = crypto::leaf_hashes(&blocks);
        for ((at, hash), found) in wanted.zip(hashes).zip(found.iter_mut()) {
            if tag(&hash) == at.tag {
                let start = out.len();
                out.extend_from_slice(&span[block(at)]);
                *found = Some(start..out.len());
            }
        }
        taken
    }

    /// Block `index`, which starts at `offset`, from what was read ahead,
    /// reading ahead from it first if it is not there: the leaves of up to
    /// [`AHEAD_BLOCKS`] blocks in one read of the tree file and the bytes
    /// of as many as fit in [`AHEAD_BYTES`] in one read of the data file,
    /// so that a history walk makes two system calls per run of blocks
    /// rather than two per block (a block larger than that is read alone,
    /// its leaf still from the run). `None` when there is nothing to gain
    /// (the tree ends with the block) or anything is amiss.
    fn read_in_order(
        &self,
        tree: &dyn RandomAccess,
        data: &dyn RandomAccess,
        index: u64,
        offset: u64,
    ) -> Option<Vec<u8>> {
        let mut ahead = self.ahead.lock().expect("no panic while held");
        if ahead.leaf(index).is_none() {
            let last = ahead.last;
            *ahead = Self::read_leaves(tree, index)?;
            ahead.last = last;
        }
        if ahead.bytes(index, offset).is_none() {
            self.read_data(&mut ahead, data, index, offset)?;
        }
        let leaf = *ahead.leaf(index)?;
        if ahead.bytes(index, offset).is_none() {
            drop(ahead);
            return self
                .read_checked(data, index, offset, leaf.size, |hash| *hash == leaf.hash)
                .ok();
        }
        self.hand_out(&mut ahead, index, offset)
    }

    /// Block `index`, a few blocks past `next` (the block after the last
    /// one read, and where it starts): read ahead from `next` as
    /// [`Self::read_in_order`] does (the blocks skipped read along, in
    /// the same two reads), if the blocks up to `index` fit in that.
    /// `None` when they do not, or anything is amiss.
    fn read_skipping(
        &self,
        tree: &dyn RandomAccess,
        data: &dyn RandomAccess,
        index: u64,
        (next, offset): (u64, u64),
    ) -> Option<Vec<u8>> {
        let mut ahead = self.ahead.lock().expect("no panic while held");
        if ahead.leaf(next).is_none() || ahead.leaf(index).is_none() {
            *ahead = Self::read_leaves(tree, next)?;
        }
        let from = usize::try_from(next.checked_sub(ahead.first)?).ok()?;
        let upto = usize::try_from(index.checked_sub(ahead.first)?).ok()?;
        let mut bytes = 0u64;
        for leaf in ahead.leaves.get(from..=upto)? {
            bytes = bytes.checked_add(leaf.size)?;
        }
        if bytes > AHEAD_BYTES {
            return None;
        }
        self.read_data(&mut ahead, data, next, offset)?;
        let at = ahead.checked.get(upto - from)?.0;
        self.hand_out(&mut ahead, index, at)
    }

    /// Block `index` if what was read ahead holds it (and it checks).
    /// Readers out of order do not wait for it: a busy reader ahead is
    /// passed by.
    fn read_held(&self, index: u64) -> Option<Vec<u8>> {
        let mut ahead = self.ahead.try_lock().ok()?;
        let i = usize::try_from(index.checked_sub(ahead.data_first)?).ok()?;
        let offset = ahead.checked.get(i)?.0;
        self.hand_out(&mut ahead, index, offset)
    }

    /// A copy of block `index`, starting at `offset`, from what was read
    /// ahead, if its bytes hash to its leaf; the next block in order then
    /// follows it. A block that does not (read before it was all written,
    /// or damaged) drops what was read ahead, to be read alone.
    fn hand_out(&self, ahead: &mut Ahead, index: u64, offset: u64) -> Option<Vec<u8>> {
        // A reader going block after block is hashed for ahead; one that
        // skips blocks would not ask for the ones after this.
        let together = if ahead.last.is_some_and(|last| last + 1 == index) {
            HASHED_TOGETHER
        } else {
            1
        };
        ahead.last = Some(index);
        if !ahead.checked(index, offset, together) {
            *ahead = Ahead::default();
            return None;
        }
        let block = ahead.bytes(index, offset)?.to_vec();
        *self.next.lock().expect("no panic while held") = (index + 1, offset + block.len() as u64);
        Some(block)
    }

    /// The leaves of up to [`AHEAD_BLOCKS`] blocks from `index`, as far as
    /// they are stored; `None` if fewer than two are.
    fn read_leaves(tree: &dyn RandomAccess, index: u64) -> Option<Ahead> {
        let nodes = tree.len().ok()?.checked_sub(HEADER_SIZE)? / NODE_SIZE;
        // Leaf `i` is node `2i`: the leaves the tree file reaches.
        let count = nodes.div_ceil(2).checked_sub(index)?.min(AHEAD_BLOCKS);
        if count < 2 {
            return None;
        }
        let mut buf = vec![0u8; ((2 * count - 1) * NODE_SIZE) as usize];
        let at = node_offset(index.checked_mul(2)?)?;
        tree.read_exact_at(at, &mut buf).ok()?;
        let leaves: Vec<Node> = buf
            .chunks(2 * NODE_SIZE as usize)
            .zip(index..)
            .map(|(node, block)| decode_node(2 * block, &node[..NODE_SIZE as usize]))
            .take_while(stored)
            .collect();
        (leaves.len() >= 2).then_some(Ahead {
            first: index,
            leaves,
            ..Ahead::default()
        })
    }

    /// Reads into `ahead` the bytes of the blocks from `index` (which
    /// starts at `offset`) whose leaves it holds, as many as fit in
    /// [`AHEAD_BYTES`]: none if block `index` alone does not.
    fn read_data(
        &self,
        ahead: &mut Ahead,
        data: &dyn RandomAccess,
        index: u64,
        offset: u64,
    ) -> Option<()> {
        let data_len =
            len_at_least(&self.data_len, data, offset.saturating_add(AHEAD_BYTES)).ok()?;
        let budget = data_len.checked_sub(offset)?.min(AHEAD_BYTES);
        let from = usize::try_from(index.checked_sub(ahead.first)?).ok()?;
        let mut bytes = 0u64;
        let mut count = 0;
        for leaf in ahead.leaves.get(from..)? {
            match bytes.checked_add(leaf.size) {
                Some(end) if end <= budget => bytes = end,
                _ => break,
            }
            count += 1;
        }
        let mut buf = std::mem::take(&mut ahead.data);
        buf.resize(bytes as usize, 0);
        ahead.checked.clear();
        if bytes > 0 {
            data.read_exact_at(offset, &mut buf).ok()?;
            let mut at = offset;
            for leaf in &ahead.leaves[from..from + count] {
                ahead.checked.push((at, None));
                at += leaf.size;
            }
        }
        ahead.data = buf;
        ahead.data_first = index;
        ahead.offset = offset;
        Some(())
    }

    /// Where block `index` is, and the tag of its hash, found from its
    /// aligned run of [`RUN`] blocks. The first block read of a run reads
    /// the run's leaves (one read of the tree file, as far as it holds
    /// them) and keeps where each of its blocks starts and its tag: the
    /// run's start sums the full roots left of it, and each block starts
    /// where the leaves before it in the run end. A later block of the run
    /// then reads nothing of the tree file. (Summing the full roots left
    /// of `index` instead takes about one uncached read per low root.)
    /// `None` where a node is missing or a sum overflows.
    fn offset_in_run(&self, tree: &dyn RandomAccess, index: u64) -> Option<Located> {
        let start = index & !(RUN - 1);
        let i = (index - start) as usize;
        // A run is about 400 bytes: only what this block needs is copied.
        let known = self
            .runs
            .get_with(&start, |run| (run.located(i), run.first));
        if let Some((Some(at), _)) = known {
            return Some(at);
        }
        let first = match known {
            Some((_, first)) => first,
            None => {
                let mut offset = 0u64;
                for root in flat::full_roots_iter(start.checked_mul(2)?) {
                    offset = offset.checked_add(self.node(tree, root).ok()?.size)?;
                }
                offset
            }
        };
        // The run's nodes as far as the tree file holds them, and at least
        // to `index`'s leaf (the read fails if the file is shorter).
        let at = node_offset(start.checked_mul(2)?)?;
        let whole = (2 * RUN - 1) * NODE_SIZE;
        let tree_len = len_at_least(&self.tree_len, tree, at.saturating_add(whole)).ok()?;
        let nodes = (tree_len.saturating_sub(at) / NODE_SIZE)
            .min(2 * RUN - 1)
            .max(2 * i as u64 + 1);
        // The thread's own buffer: a heap buffer of this size is a large
        // allocation (the allocator sweeps its small free chunks), and one
        // on the stack would be zeroed whole each time.
        RUN_LEAVES.with_borrow_mut(|buf| {
            let buf = &mut buf[..(nodes * NODE_SIZE) as usize];
            tree.read_exact_at(at, buf).ok()?;
            // A leaf and the parent after it, for each block of the run.
            let mut run = Run {
                first,
                ends: [0; RUN as usize],
                tags: [0; RUN as usize],
                known: 0,
            };
            let mut end = 0u64;
            for (bytes, block) in buf.chunks(2 * NODE_SIZE as usize).zip(start..) {
                let leaf = decode_node(2 * block, &bytes[..NODE_SIZE as usize]);
                let Some(e) = end
                    .checked_add(leaf.size)
                    .filter(|_| stored(&leaf))
                    .and_then(|e| u32::try_from(e).ok())
                else {
                    break;
                };
                run.ends[usize::from(run.known)] = e;
                run.tags[usize::from(run.known)] = tag(&leaf.hash);
                run.known += 1;
                end = u64::from(e);
            }
            let at = run.located(i)?;
            self.runs.insert(start, run);
            Some(at)
        })
    }

    /// The `size` bytes at `offset`, if their leaf hash is `expected`.
    fn read_checked(
        &self,
        data: &dyn RandomAccess,
        index: u64,
        offset: u64,
        size: u64,
        expected: impl FnOnce(&crypto::Hash) -> bool,
    ) -> Result<Vec<u8>> {
        let end = offset.checked_add(size);
        let held = len_at_least(&self.data_len, data, end.unwrap_or(u64::MAX))
            .map_err(|e| self.io("data", e))?;
        if end.is_none_or(|end| end > held) {
            return Err(self.corrupt(format!(
                "block {index} should take {size} bytes at offset {offset}, but the file holds {held}"
            )));
        }
        let mut block = vec![0; size as usize];
        data.read_exact_at(offset, &mut block)
            .map_err(|e| self.io("data", e))?;
        if !expected(&crypto::leaf_hash(&block)) {
            return Err(Error::BadBlock {
                file: self.storage.describe("data"),
                index,
            });
        }
        *self.next.lock().expect("no panic while held") = (index + 1, offset + size);
        Ok(block)
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            file: self.storage.describe("data"),
            reason,
        }
    }

    /// The handle in `slot`, opened if the file exists by now.
    fn file<'a>(
        &self,
        slot: &'a OnceLock<Box<dyn RandomAccess>>,
        name: &str,
    ) -> Result<&'a dyn RandomAccess> {
        if let Some(handle) = slot.get() {
            return Ok(&**handle);
        }
        let handle = self
            .storage
            .open_read_only(name)
            .map_err(|e| self.io(name, e))?;
        if !handle.exists() {
            return Err(self.io(name, io::ErrorKind::NotFound.into()));
        }
        // Another thread may have opened it first: either handle will do.
        Ok(&**slot.get_or_init(|| handle))
    }

    /// Tree node `index`, from the feed's cache or the tree file.
    fn node(&self, tree: &dyn RandomAccess, index: u64) -> Result<Node> {
        if let Some(node) = self.nodes.get_cloned(&index) {
            return Ok(node);
        }
        let offset = node_offset(index).ok_or_else(|| self.missing(index))?;
        let mut buf = [0u8; NODE_SIZE as usize];
        tree.read_exact_at(offset, &mut buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.missing(index)
            } else {
                self.io("tree", e)
            }
        })?;
        let node = decode_node(index, &buf);
        if !stored(&node) {
            return Err(self.missing(index));
        }
        // Nodes never change once written: the feed may use it too.
        self.nodes.insert(index, node);
        Ok(node)
    }

    fn missing(&self, index: u64) -> Error {
        Error::Corrupt {
            file: self.storage.describe("tree"),
            reason: format!("node {index} is not stored"),
        }
    }

    fn io(&self, name: &str, source: io::Error) -> Error {
        Error::Io {
            file: self.storage.describe(name),
            source,
        }
    }
}

/// Whether a node read from the tree file was ever written: a stored node
/// has a size or a hash, and the zeros of a gap in the file have neither.
fn stored(node: &Node) -> bool {
    !(node.size == 0 && node.hash == [0; 32])
}
