//! A derived index for a database with one writer: for each key, the seq
//! of the latest entry written for it, so that a lookup reads that one
//! entry instead of walking the trie through several.
//!
//! It is a cache of what the source feed says, never a source of truth:
//! - It lives in `index/keys-<generation>` files beside the feeds. Each is
//!   written once, whole, under a new name, with a BLAKE2b checksum of
//!   each block of 256 records and one over its header, fences and those.
//!   A file whose header part does not check (a crash while it was
//!   written, damage) is ignored; a block that does not check when first
//!   read makes lookups walk and the file go (a writable index removes
//!   it); deleting the folder loses nothing. Nothing of the feeds or of
//!   the wire changes.
//! - A file says how much of the source feed it covers. Opening catches up
//!   from there by reading the keys of the entries after it; a file that
//!   claims more than the feed holds (the feed was repaired shorter) is
//!   ignored. A writable open with no usable file rebuilds it from the
//!   feed (about a second per million entries).
//! - The entries written since the newest file are kept in memory; after
//!   [`FLUSH_AT`] of them they are merged with the file into the next one
//!   (one sequential read and write of it, its block checksums computed
//!   four at a time) by a thread of its own, while writes and lookups go
//!   on (the entries being written answer lookups from memory until the
//!   new file replaces the old), and so are they on closing, which waits
//!   for that thread, when there are [`FLUSH_ON_CLOSE`] or more. Memory
//!   then holds at most twice [`FLUSH_AT`] entries: a write that fills
//!   the next file before the last is written waits for it. A file of up
//!   to [`HOLD_UP_TO`] keys (1 MiB) is held in memory; of a larger one, 8
//!   bytes per 256 keys, and a lookup reads one 4 KiB block of it, kept
//!   in memory once read if it is among the first [`KEEP_UP_TO`] bytes
//!   (16 MiB, a million keys' worth; one region, see [`Kept`]) so that
//!   later lookups in it make no system call.
//!
//! A lookup asks the index only where its answer is sure to be the
//! walk's (see [`crate::get`]): the view has one head, the source's, whose
//! clock has seen no other writer's entry, no permission policy applies,
//! the index covers the head, and the entry it names is at or before the
//! head and holds the key. Otherwise, and for keys it does not hold, the
//! lookup walks the trie.
//!
//! Why the latest entry holding a key is the walk's answer: with one
//! writer each entry has seen every one before it, so of a key's entries
//! only the latest counts (and a delete counts as no value). Keys are found
//! by a 64-bit hash (a tag), and for each tag the index keeps the highest
//! seq: when two keys share a tag, a lookup of the one written earlier
//! finds an entry holding the other key and walks. The highest seq of a
//! tag is never older than the latest entry of any key with that tag, so
//! an entry found there that holds the key is that key's latest.
//!
//! File layout (integers little-endian):
//! ```text
//! header    magic (16) | source feed key (32) | generation | covered | count
//! records   count x (tag, seq), tags strictly ascending, in blocks of 256
//! fences    the first tag of each block
//! sums      BLAKE2b-128 of each block's records
//! checksum  BLAKE2b-256 of fences, sums, then header
//! ```

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hypercore_feed::cache::IndexHasher;
use hypercore_feed::storage::RandomAccess;
use parking_lot::{Mutex, RwLock};
use siphasher::sip::SipHasher24;

use crate::storage::DbStorage;
#[cfg(doc)]
use crate::DbReader;

/// Index files are named this, then their generation in 16 hex digits (so
/// that names sort by generation).
const PREFIX: &str = "keys-";
const MAGIC: [u8; 16] = *b"hyperdb keys v1\n";
const HEADER: usize = 16 + 32 + 8 + 8 + 8;
const RECORD: usize = 16;
/// Records per block: a lookup in a file reads one block (4 KiB).
const BLOCK: usize = 256;
const CHECKSUM: usize = 32;
/// Bytes of each block's checksum.
const SUM: usize = 16;
/// Records read or written at once while merging or checking a file.
const CHUNK: usize = 1 << 12;
/// Records of a file held in memory rather than read block by block
/// (1 MiB).
const HOLD_UP_TO: usize = 1 << 16;
/// Bytes of blocks of a larger file kept in memory once read, from its
/// first (16 MiB: all of a file of a million keys).
const KEEP_UP_TO: usize = 16 << 20;
/// Entries kept in memory before they are merged into a new file.
pub(crate) const FLUSH_AT: usize = 1 << 17;
/// Entries kept in memory that closing the database merges into a file,
/// so that the next opening has few to read again.
pub(crate) const FLUSH_ON_CLOSE: usize = 4096;
/// SipHash keys of the tags: fixed, since tags are stored.
const TAG_KEYS: (u64, u64) = (0x6879_7065_7264_6220, 0x6b65_7920_7461_6773);

/// The 64-bit tag by which the indexes find `key`.
pub(crate) fn tag_of(key: &str) -> u64 {
    SipHasher24::new_with_keys(TAG_KEYS.0, TAG_KEYS.1).hash(key.as_bytes())
}

type Pending = HashMap<u64, u64, BuildHasherDefault<IndexHasher>>;

thread_local! {
    /// One block of a file, as [`Run::lookup`] reads it.
    static BLOCK_BUF: std::cell::RefCell<Box<[u8; BLOCK * RECORD]>> =
        std::cell::RefCell::new(Box::new([0; BLOCK * RECORD]));
}

/// What a database's key index holds (see [`DbReader::key_index`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyIndexInfo {
    /// Entries of the source feed it covers (header included): lookups
    /// from a head before this can use it.
    pub covered: u64,
    /// Keys (tags) in its newest file.
    pub in_file: u64,
    /// Keys (tags) of the entries after that file, held in memory.
    pub in_memory: u64,
    /// Whether lookups use it (false after a failed write of a file, until
    /// the database is opened again).
    pub usable: bool,
}

/// The key index of a database's source feed (see the module's docs).
pub(crate) struct KeyIndex {
    storage: DbStorage,
    feed_key: [u8; 32],
    read_only: bool,
    flush_at: usize,
    /// Kept bits of each tag: all of them, but for tests that want tags
    /// shared by many keys.
    mask: u64,
    state: RwLock<Indexed>,
    /// Whether full files are written by a thread of their own (see
    /// [`KeyIndex::flush_if_full`]); otherwise by the write that filled
    /// them.
    background: bool,
    /// The thread writing a file, if one was started.
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Indexed {
    /// The newest file.
    run: Option<Arc<Run>>,
    /// Tag → highest seq, of the entries after `frozen`'s (or the
    /// file's).
    pending: Pending,
    /// The entries being written into the next file (empty when none
    /// is): tag → highest seq, of the entries after the file's and before
    /// `frozen_covered`. Lookups ask `pending`, then these, then the file.
    frozen: Arc<Pending>,
    frozen_covered: u64,
    /// Every entry before this is indexed.
    covered: u64,
    /// False once something went wrong: lookups walk from then on, and
    /// the next opening rebuilds.
    usable: bool,
}

impl Indexed {
    /// How many entries came after the newest file.
    fn unwritten(&self) -> u64 {
        self.covered.saturating_sub(self.written_to())
    }

    /// The first entry the newest file does not cover.
    fn written_to(&self) -> u64 {
        self.run.as_ref().map_or(1, |r| r.covered)
    }

    /// How many entries came after the newest file and are not being
    /// written into the next.
    fn unfrozen(&self) -> u64 {
        let since = if self.frozen.is_empty() {
            self.written_to()
        } else {
            self.frozen_covered
        };
        self.covered.saturating_sub(since)
    }

    /// The highest seq held in memory for `tag`.
    fn in_memory(&self, tag: u64) -> Option<u64> {
        self.pending
            .get(&tag)
            .or_else(|| self.frozen.get(&tag))
            .copied()
    }
}

/// One index file, checked.
struct Run {
    file: Box<dyn RandomAccess>,
    name: String,
    generation: u64,
    covered: u64,
    count: usize,
    /// The tag of every [`BLOCK`]th record.
    fences: Vec<u64>,
    /// Each block's checksum ([`SUM`] bytes).
    sums: Box<[u8]>,
    /// A bit per block: checked against its sum.
    checked: Box<[AtomicU64]>,
    /// Blocks kept in memory once read and checked (all of them from the
    /// start, for a small file).
    kept: Kept,
}

/// The blocks of a file kept in memory once read and checked: the first
/// [`KEEP_UP_TO`] bytes' worth of blocks, in one region allocated when the
/// first is kept and filled a block at a time as lookups read them (an
/// index only written to, as while loading a database, takes none).
///
/// One region rather than an allocation per block, and its pages asked to
/// be huge ones where the system offers them: a lookup among a million
/// keys then costs the processor one cache miss where it cost a miss and
/// a walk of the page tables (`op_bench ... get` at a million keys, its
/// 16 MiB kept: 320,000 -> 341,000 a second, medians of three).
struct Kept {
    /// Two words a record (its tag and seq, as numbers), in the file's
    /// order; a block's are valid once its bit in `ready` is set.
    words: std::sync::OnceLock<Box<[AtomicU64]>>,
    /// How many words `words` holds.
    len: usize,
    /// A bit a block: kept.
    ready: Box<[AtomicU64]>,
}

impl Kept {
    /// Room for the blocks of a file of `count` records that fit in
    /// `budget` bytes.
    fn new(count: usize, budget: usize) -> Kept {
        let records = count.min(budget / (BLOCK * RECORD) * BLOCK);
        Kept {
            ready: zeroed(records.div_ceil(BLOCK).div_ceil(64)),
            words: Default::default(),
            len: records * RECORD / 8,
        }
    }

    /// Keeps block `block` (records as stored), if it is one there is room
    /// for. Two threads keeping the same block store the same words.
    fn keep(&self, block: usize, bytes: &[u8]) {
        let first = block * BLOCK * RECORD / 8;
        let Some(ready) = self.ready.get(block / 64) else {
            return;
        };
        if first + bytes.len() / 8 > self.len {
            return;
        }
        let words = &self.words.get_or_init(|| {
            let words = zeroed(self.len);
            huge_pages(&words);
            words
        })[first..first + bytes.len() / 8];
        for (word, stored) in words.iter().zip(bytes.chunks_exact(8)) {
            let stored = u64::from_le_bytes(stored.try_into().expect("8 bytes"));
            word.store(stored, Ordering::Relaxed);
        }
        ready.fetch_or(1 << (block % 64), Ordering::Release);
    }

    /// The words of block `block` (`n` records), if kept.
    fn block(&self, block: usize, n: usize) -> Option<&[AtomicU64]> {
        let ready = self.ready.get(block / 64)?.load(Ordering::Acquire);
        let first = block * BLOCK * RECORD / 8;
        if ready & (1 << (block % 64)) == 0 {
            return None;
        }
        Some(&self.words.get()?[first..first + n * RECORD / 8])
    }

    /// How many blocks are kept.
    #[cfg(test)]
    fn count(&self) -> u32 {
        self.ready
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones())
            .sum()
    }
}

/// `len` words, zero, their pages committed only when first written.
fn zeroed(len: usize) -> Box<[AtomicU64]> {
    // SAFETY: all-zero bytes are a valid `AtomicU64` (0).
    unsafe { Box::<[AtomicU64]>::new_zeroed_slice(len).assume_init() }
}

/// Asks the system to back the whole pages of `words` with huge pages,
/// where it does so only when asked (Linux with transparent huge pages set
/// to `madvise`, as on most distributions); elsewhere, or if refused, the
/// pages stay as they are.
fn huge_pages(words: &[AtomicU64]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = std::mem::size_of_val(words);
        if bytes < HUGE {
            return;
        }
        let start = words.as_ptr().cast::<u8>().cast_mut();
        let page = rustix::param::page_size();
        let skip = start.align_offset(page);
        let len = bytes.saturating_sub(skip) / page * page;
        // SAFETY: only advice on how pages are backed, never on what they
        // hold, for whole pages inside `words`, an allocation of ours that
        // outlives the call; no memory is read or written through it.
        let _ = unsafe {
            rustix::mm::madvise(
                start.add(skip).cast(),
                len,
                rustix::mm::Advice::LinuxHugepage,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = words;
}

impl KeyIndex {
    /// The index of the source feed `feed_key` of the database in
    /// `storage`, which holds `length` entries (header included), caught
    /// up by reading keys with `key_of` (`None`: the entry cannot be read).
    /// A writable index removes files it cannot use and writes a new one
    /// when it has many entries to add; a read-only one only reads, and is
    /// `None` when it would have too many to hold in memory.
    pub(crate) fn open(
        storage: &DbStorage,
        feed_key: [u8; 32],
        read_only: bool,
        length: u64,
        key_of: impl FnMut(u64) -> Option<String>,
    ) -> Option<KeyIndex> {
        #[cfg(test)]
        let ((flush_at, mask), background) = (tests::TUNING.get(), tests::BACKGROUND.get());
        #[cfg(not(test))]
        let ((flush_at, mask), background) = ((FLUSH_AT, u64::MAX), true);
        let mut index =
            Self::open_with(storage, feed_key, read_only, length, key_of, flush_at, mask)?;
        index.background = background && !read_only;
        Some(index)
    }

    fn open_with(
        storage: &DbStorage,
        feed_key: [u8; 32],
        read_only: bool,
        length: u64,
        mut key_of: impl FnMut(u64) -> Option<String>,
        flush_at: usize,
        mask: u64,
    ) -> Option<KeyIndex> {
        let mut names: Vec<String> = storage
            .index_files()
            .into_iter()
            .filter(|n| n.starts_with(PREFIX))
            .collect();
        names.sort_unstable_by(|a, b| b.cmp(a));
        let run = names
            .iter()
            .filter_map(|name| Run::open(storage, name, &feed_key))
            .find(|run| run.covered <= length);
        if !read_only {
            for name in names
                .iter()
                .filter(|&n| Some(n) != run.as_ref().map(|r| &r.name))
            {
                let _ = storage.remove_index_file(name);
            }
        }
        let covered = run.as_ref().map_or(1, |r| r.covered).max(1);
        if read_only && length.saturating_sub(covered) > flush_at as u64 {
            return None;
        }
        let index = KeyIndex {
            storage: storage.clone(),
            feed_key,
            read_only,
            flush_at,
            mask,
            state: RwLock::new(Indexed {
                run: run.map(Arc::new),
                pending: Pending::default(),
                frozen: Arc::default(),
                frozen_covered: 0,
                covered,
                usable: true,
            }),
            background: false,
            flusher: Mutex::new(None),
        };
        for seq in covered..length {
            index.insert(&key_of(seq)?, seq);
            if index.full() {
                index.flush();
            }
        }
        let usable = index.state.read().usable;
        usable.then_some(index)
    }

    /// What it holds.
    pub(crate) fn info(&self) -> KeyIndexInfo {
        let state = self.state.read();
        KeyIndexInfo {
            covered: state.covered,
            in_file: state.run.as_ref().map_or(0, |r| r.count as u64),
            in_memory: (state.pending.len() + state.frozen.len()) as u64,
            usable: state.usable,
        }
    }

    fn tag(&self, key: &str) -> u64 {
        tag_of(key) & self.mask
    }

    /// The seq of the latest entry whose key may be `key`, when the index
    /// covers the first `length` entries and holds the key's tag. The
    /// caller checks that the entry holds the key.
    pub(crate) fn lookup(&self, key: &str, length: u64) -> Option<u64> {
        let tag = self.tag(key);
        let run = {
            let state = self.state.read();
            if !state.usable || state.covered < length {
                return None;
            }
            // What is in memory is newer than anything in the file.
            if let Some(seq) = state.in_memory(tag) {
                return Some(seq);
            }
            state.run.clone()?
        };
        match run.lookup(tag) {
            Ok(found) => found,
            Err(_) => {
                self.damaged(&run);
                None
            }
        }
    }

    /// A bit for each entry before `length` that the index names as the
    /// latest of its key's tag (word `seq / 64`, bit `seq % 64`): the
    /// same answers as [`KeyIndex::lookup`] gives entry by entry, for a
    /// reader going through every entry, read in one pass over the file
    /// (a lookup per entry misses the cache once each). `None` when the
    /// index does not cover `length` or a block of the file does not
    /// check (lookups then find that out themselves).
    pub(crate) fn named(&self, length: u64) -> Option<Vec<u64>> {
        let (run, pending) = {
            let state = self.state.read();
            if !state.usable || state.covered < length {
                return None;
            }
            // One map of what is in memory, the newer entries last.
            let mut pending = Pending::clone(&state.frozen);
            pending.extend(state.pending.iter().map(|(&tag, &seq)| (tag, seq)));
            (state.run.clone(), pending)
        };
        let mut bits = vec![0u64; length.div_ceil(64) as usize];
        let mut set = |seq: u64| {
            if seq < length {
                bits[(seq / 64) as usize] |= 1 << (seq % 64);
            }
        };
        if let Some(run) = run {
            let mut records = Records::new(&run);
            // What is in memory is newer than the file's record of a tag.
            while let Some((tag, seq)) = records.next().ok()? {
                if pending.is_empty() || !pending.contains_key(&tag) {
                    set(seq);
                }
            }
        }
        pending.values().for_each(|&seq| set(seq));
        Some(bits)
    }

    /// A block of `run` did not read back as written: lookups walk from
    /// now on, and a writable index removes the file, so that the next
    /// opening rebuilds it.
    fn damaged(&self, run: &Run) {
        self.state.write().usable = false;
        if !self.read_only {
            let _ = self.storage.remove_index_file(&run.name);
        }
    }

    /// Adds entry `seq`, holding `key`: the entry after the last one
    /// added (anything else leaves the index unusable). Call it before the
    /// entry can be seen by readers.
    pub(crate) fn insert(&self, key: &str, seq: u64) {
        self.insert_all([(key, seq)]);
    }

    /// Adds entries as [`KeyIndex::insert`] does, one after another: their
    /// tags hashed first, then all added under one taking of the locks,
    /// so that the processor can wait for the table's memory for several
    /// at once (a lock taken between two would have it wait for each).
    pub(crate) fn insert_all<'k>(&self, entries: impl IntoIterator<Item = (&'k str, u64)>) {
        let tagged: Vec<(u64, u64)> = entries
            .into_iter()
            .map(|(key, seq)| (self.tag(key), seq))
            .collect();
        let mut state = self.state.write();
        let state = &mut *state;
        for (tag, seq) in tagged {
            if !state.usable {
                return;
            }
            if seq != state.covered {
                state.usable = false;
                return;
            }
            let highest = state.pending.entry(tag).or_insert(seq);
            *highest = (*highest).max(seq);
            state.covered = seq + 1;
        }
    }

    /// Whether enough entries came after the last file, and are not being
    /// written yet, to write the next.
    fn full(&self) -> bool {
        let state = self.state.read();
        state.usable && state.unfrozen() >= self.flush_at as u64
    }

    /// Writes a new file when enough entries came after the last one (so
    /// that memory, and what an opening reads again, stay bounded): in a
    /// thread of its own, so that the write that filled it does not wait
    /// for the merge (a second or so of a million keys' file); the entries
    /// it holds stay in memory, answering lookups, until the file
    /// replaces the last. If the next file is full before that one is
    /// written, the write that filled it waits for it, so that memory
    /// holds at most twice [`FLUSH_AT`] entries. Call it without holding
    /// the database's state.
    pub(crate) fn flush_if_full(self: &Arc<Self>) {
        if !self.full() {
            return;
        }
        let mut flusher = self.flusher.lock();
        self.wait_for(flusher.take());
        if !self.freeze() {
            return;
        }
        if !self.background {
            drop(flusher);
            self.write_frozen();
            return;
        }
        let index = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("hyperdb key index".into())
            .spawn(move || index.write_frozen());
        match spawned {
            Ok(thread) => *flusher = Some(thread),
            // No thread to be had: written here, as without one.
            Err(_) => {
                drop(flusher);
                self.write_frozen();
            }
        }
    }

    /// On closing: waits for a file being written, then writes one when
    /// many entries came after the last.
    pub(crate) fn close(&self) {
        self.wait_for(self.flusher.lock().take());
        if self.state.read().unwritten() >= FLUSH_ON_CLOSE.min(self.flush_at) as u64 {
            self.flush();
        }
    }

    /// Waits for the thread writing a file, if any. One that did not
    /// finish its work (a panic) leaves the index unusable, and memory
    /// holding nothing more.
    fn wait_for(&self, running: Option<std::thread::JoinHandle<()>>) {
        if let Some(Err(_)) = running.map(std::thread::JoinHandle::join) {
            let mut state = self.state.write();
            state.usable = false;
            state.frozen = Arc::default();
            state.pending = Pending::default();
        }
    }

    /// Merges the entries held in memory with the newest file into a new
    /// one, which replaces it, here and now.
    fn flush(&self) {
        if self.freeze() {
            self.write_frozen();
        }
    }

    /// Sets the entries held in memory aside (`frozen`) to be written
    /// into the next file, unless some already are: whether it did.
    fn freeze(&self) -> bool {
        if self.read_only {
            return false;
        }
        let mut state = self.state.write();
        if !state.usable || state.pending.is_empty() || !state.frozen.is_empty() {
            return false;
        }
        state.frozen = Arc::new(std::mem::take(&mut state.pending));
        state.frozen_covered = state.covered;
        true
    }

    /// Writes the frozen entries and the newest file's into a new file,
    /// which replaces it. A failure to write leaves the index unusable
    /// (lookups walk; the next opening rebuilds): the database itself has
    /// lost nothing. Lookups go on meanwhile, and so do writes.
    fn write_frozen(&self) {
        let (old, frozen, covered) = {
            let state = self.state.read();
            (
                state.run.clone(),
                state.frozen.clone(),
                state.frozen_covered,
            )
        };
        if frozen.is_empty() {
            return;
        }
        let records: Vec<(u64, u64)> = frozen.iter().map(|(&t, &s)| (t, s)).collect();
        let written = self.write_run(old.as_deref(), records, covered);
        let mut state = self.state.write();
        // Only this thread replaces the file or empties `frozen`.
        state.frozen = Arc::default();
        match written {
            Ok(run) => {
                state.run = Some(Arc::new(run));
                drop(state);
                if let Some(old) = old {
                    // Readers that hold it keep reading it.
                    let _ = self.storage.remove_index_file(&old.name);
                }
            }
            Err(e) => {
                state.usable = false;
                drop(state);
                if let (Some(old), io::ErrorKind::InvalidData) = (&old, e.kind()) {
                    self.damaged(old);
                }
            }
        }
    }

    /// Writes the file of generation after `old`'s: `old`'s records and
    /// `pending`'s, the higher seq where both hold a tag.
    fn write_run(
        &self,
        old: Option<&Run>,
        pending: Vec<(u64, u64)>,
        covered: u64,
    ) -> io::Result<Run> {
        let generation = old.map_or(0, |r| r.generation) + 1;
        let name = format!("{PREFIX}{generation:016x}");
        let written = self.write_run_as(&name, generation, old, pending, covered);
        if written.is_err() {
            // What was written of it is of no use.
            let _ = self.storage.remove_index_file(&name);
        }
        written
    }

    fn write_run_as(
        &self,
        name: &str,
        generation: u64,
        old: Option<&Run>,
        mut pending: Vec<(u64, u64)>,
        covered: u64,
    ) -> io::Result<Run> {
        pending.sort_unstable();
        let mut out = RunWriter::new(self.storage.index_file(name, false)?)?;
        let mut older = old.map(Records::new);
        let mut older_next = match &mut older {
            Some(records) => records.next()?,
            None => None,
        };
        let mut newer = pending.into_iter().peekable();
        loop {
            let record = match (older_next, newer.peek().copied()) {
                (None, None) => break,
                (Some(o), Some(n)) if o.0 == n.0 => {
                    newer.next();
                    older_next = older.as_mut().expect("read from").next()?;
                    (o.0, o.1.max(n.1))
                }
                (Some(o), n) if n.is_none_or(|n| o.0 < n.0) => {
                    older_next = older.as_mut().expect("read from").next()?;
                    o
                }
                (_, Some(n)) => {
                    newer.next();
                    n
                }
                (_, None) => unreachable!("handled above"),
            };
            out.push(record)?;
        }
        let mut header = [0u8; HEADER];
        header[..16].copy_from_slice(&MAGIC);
        header[16..48].copy_from_slice(&self.feed_key);
        header[48..56].copy_from_slice(&generation.to_le_bytes());
        header[56..64].copy_from_slice(&covered.to_le_bytes());
        header[64..72].copy_from_slice(&(out.count as u64).to_le_bytes());
        let finished = out.finish(&header)?;
        Run::new(
            finished.file,
            name,
            (generation, covered),
            finished.count,
            finished.fences,
            finished.sums,
        )
    }
}

/// Bytes of blocks a file keeps once read ([`KEEP_UP_TO`]; tests set
/// less).
fn keep_up_to() -> usize {
    #[cfg(test)]
    return tests::KEEP.get();
    #[cfg(not(test))]
    KEEP_UP_TO
}

impl Run {
    /// File `name`, when its header, fences and block checksums are whole
    /// and its header names the feed `feed_key`. Its blocks are checked
    /// when first read (all of them now when the file is small enough to
    /// hold), so opening takes the same time whatever its size.
    fn open(storage: &DbStorage, name: &str, feed_key: &[u8; 32]) -> Option<Run> {
        let file = storage.index_file(name, true).ok()?;
        let len = usize::try_from(file.len().ok()?).ok()?;
        let mut header = [0u8; HEADER];
        file.read_exact_at(0, &mut header).ok()?;
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        if header[..16] != MAGIC || &header[16..48] != feed_key {
            return None;
        }
        let (generation, covered) = (word(48), word(56));
        let count = usize::try_from(word(64)).ok()?;
        let blocks = count.div_ceil(BLOCK);
        let expected = count
            .checked_mul(RECORD)?
            .checked_add(HEADER + blocks * (8 + SUM) + CHECKSUM)?;
        if len != expected {
            return None;
        }
        let mut tail = vec![0u8; blocks * (8 + SUM) + CHECKSUM];
        file.read_exact_at((HEADER + count * RECORD) as u64, &mut tail)
            .ok()?;
        let (index, stored) = tail.split_at(blocks * (8 + SUM));
        let mut hasher = checksum();
        hasher.update(index);
        hasher.update(&header);
        if hasher.finalize().as_bytes() != stored {
            return None;
        }
        let (fence_bytes, sum_bytes) = index.split_at(blocks * 8);
        let fences: Vec<u64> = fence_bytes
            .chunks_exact(8)
            .map(|f| u64::from_le_bytes(f.try_into().expect("8 bytes")))
            .collect();
        if fences.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        Run::new(
            file,
            name,
            (generation, covered),
            count,
            fences,
            sum_bytes.into(),
        )
        .ok()
    }

    /// A file of `count` records in `fences.len()` blocks with checksums
    /// `sums`, none checked yet (all of them now, when it is held).
    fn new(
        file: Box<dyn RandomAccess>,
        name: &str,
        (generation, covered): (u64, u64),
        count: usize,
        fences: Vec<u64>,
        sums: Box<[u8]>,
    ) -> io::Result<Run> {
        let run = Run {
            checked: zeroed(fences.len().div_ceil(64)),
            file,
            name: name.to_string(),
            generation,
            covered,
            count,
            kept: Kept::new(count, keep_up_to()),
            fences,
            sums,
        };
        run.hold()?;
        Ok(run)
    }

    /// Whether the blocks of `bytes` (whole blocks from block `first`, as
    /// stored; the last may be the file's short one) are as written: each
    /// checked against its sum once, then trusted. Those not checked yet
    /// are hashed side by side.
    fn check_blocks(&self, first: usize, bytes: &[u8]) -> io::Result<()> {
        let unchecked: Vec<(usize, &[u8])> = (first..)
            .zip(bytes.chunks(BLOCK * RECORD))
            .filter(|&(block, _)| !self.is_checked(block))
            .collect();
        let sums = block_sums(unchecked.iter().map(|&(_, bytes)| bytes));
        for ((block, bytes), sum) in unchecked.into_iter().zip(sums) {
            self.check_sum(block, bytes, &sum)?;
        }
        Ok(())
    }

    fn is_checked(&self, block: usize) -> bool {
        self.checked[block / 64].load(Ordering::Acquire) & 1 << (block % 64) != 0
    }

    /// Checks block `block` (`bytes`, whose checksum is `sum`) against its
    /// stored checksum and fence, and marks it checked.
    fn check_sum(&self, block: usize, bytes: &[u8], sum: &blake2b_simd::Hash) -> io::Result<()> {
        let (word, bit) = (block / 64, 1u64 << (block % 64));
        let first = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if sum.as_bytes() != &self.sums[block * SUM..(block + 1) * SUM]
            || first != self.fences[block]
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("key index {}: block {block} is damaged", self.name),
            ));
        }
        self.checked[word].fetch_or(bit, Ordering::AcqRel);
        Ok(())
    }

    /// Where block `block`'s records are, and how many.
    fn block(&self, block: usize) -> (u64, usize) {
        let first = block * BLOCK;
        (
            (HEADER + first * RECORD) as u64,
            (self.count - first).min(BLOCK),
        )
    }

    /// Reads, checks and keeps every block at once when the file is small
    /// enough ([`HOLD_UP_TO`] records): lookups in a small database then
    /// make no system call.
    fn hold(&self) -> io::Result<()> {
        #[cfg(test)]
        let hold_up_to = tests::HOLD.get();
        #[cfg(not(test))]
        let hold_up_to = HOLD_UP_TO;
        if self.count > hold_up_to {
            return Ok(());
        }
        let mut records = vec![0u8; self.count * RECORD];
        self.file.read_exact_at(HEADER as u64, &mut records)?;
        self.check_blocks(0, &records)?;
        for (block, bytes) in records.chunks(BLOCK * RECORD).enumerate() {
            self.kept.keep(block, bytes);
        }
        Ok(())
    }

    /// The seq stored for `tag`, reading the one block that may hold it.
    fn lookup(&self, tag: u64) -> io::Result<Option<u64>> {
        let block = match self.fences.partition_point(|&f| f <= tag) {
            0 => return Ok(None),
            after => after - 1,
        };
        let (offset, n) = self.block(block);
        let bounds = (
            self.fences[block],
            self.fences.get(block + 1).copied().unwrap_or(u64::MAX),
        );
        if let Some(kept) = self.kept.block(block, n) {
            let word = |at: usize| kept[at].load(Ordering::Relaxed);
            // The lines around the first probe, fetched beside it: the
            // probes after it, when the guess is off, then find them.
            let near = |guess: usize| {
                for record in [
                    guess.saturating_sub(8),
                    guess.saturating_sub(4),
                    guess + 4,
                    guess + 8,
                ] {
                    if let Some(w) = kept.get(record * 2) {
                        crate::reading::prefetch(w.as_ptr().cast());
                    }
                }
            };
            return Ok(search_by(n, word, near, tag, bounds));
        }
        // A block a thread keeps: zeroing 4 KiB for every lookup costs
        // more than searching it.
        BLOCK_BUF.with_borrow_mut(|buf| {
            let bytes = &mut buf[..n * RECORD];
            self.file.read_exact_at(offset, bytes)?;
            self.check_blocks(block, bytes)?;
            self.kept.keep(block, bytes);
            Ok(search(bytes, tag, bounds))
        })
    }
}

/// The seq of `tag` in `records` (sorted), if there. Tags are hashes,
/// spread evenly between `bounds` (the block's first tag and the next
/// block's): the search starts where `tag` would fall and gallops from
/// there, a probe or two where a plain binary search takes eight, each a
/// cache miss in an index larger than the processor's caches.
fn search(records: &[u8], tag: u64, bounds: (u64, u64)) -> Option<u64> {
    let word = |at: usize| {
        let at = at * 8;
        u64::from_le_bytes(records[at..at + 8].try_into().expect("8 bytes"))
    };
    search_by(records.len() / RECORD, word, |_| {}, tag, bounds)
}

/// [`search`] among `n` records whose words (two a record: tag, seq) are
/// `word(0)`, `word(1)`, and so on.
fn search_by(
    n: usize,
    word: impl Fn(usize) -> u64,
    near: impl Fn(usize),
    tag: u64,
    (low, high): (u64, u64),
) -> Option<u64> {
    let at = |i: usize| word(i * 2);
    if n == 0 {
        return None;
    }
    let span = u128::from(high.saturating_sub(low)).max(1);
    let guess = (u128::from(tag.saturating_sub(low)) * n as u128 / span) as usize;
    let guess = guess.min(n - 1);
    near(guess);
    // Bracket the tag: every record before `lo` is below it, and if it is
    // here, it is before `hi`.
    let (mut lo, mut hi) = if at(guess) < tag {
        let (mut lo, mut step) = (guess + 1, 1);
        loop {
            let probe = guess + step;
            if probe >= n {
                break (lo, n);
            }
            if at(probe) >= tag {
                break (lo, probe + 1);
            }
            lo = probe + 1;
            step *= 2;
        }
    } else {
        let (mut hi, mut step) = (guess + 1, 1);
        loop {
            if step > guess {
                break (0, hi);
            }
            let probe = guess - step;
            if at(probe) < tag {
                break (probe + 1, hi);
            }
            hi = probe + 1;
            step *= 2;
        }
    };
    while lo < hi {
        let mid = (lo + hi) / 2;
        match at(mid).cmp(&tag) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(word(mid * 2 + 1)),
        }
    }
    None
}

fn checksum() -> blake2b_simd::State {
    blake2b_simd::Params::new().hash_length(CHECKSUM).to_state()
}

/// The checksums of several blocks' records, computed side by side (four
/// at a time where the processor has AVX2): what a file's writing and
/// merging spend most of their time on.
fn block_sums<'a>(blocks: impl Iterator<Item = &'a [u8]>) -> Vec<blake2b_simd::Hash> {
    let params = {
        let mut params = blake2b_simd::Params::new();
        params.hash_length(SUM);
        params
    };
    let mut jobs: Vec<blake2b_simd::many::HashManyJob> = blocks
        .map(|records| blake2b_simd::many::HashManyJob::new(&params, records))
        .collect();
    blake2b_simd::many::hash_many(jobs.iter_mut());
    jobs.iter().map(|job| job.to_hash()).collect()
}

/// The records of a file, in order, read (and checked) a chunk of whole
/// blocks at a time.
struct Records<'a> {
    run: &'a Run,
    buf: Vec<u8>,
    /// Records read into `buf`, and how many of them were handed out.
    held: usize,
    used: usize,
    /// Records read from the file.
    read: usize,
}

impl<'a> Records<'a> {
    fn new(run: &'a Run) -> Self {
        Records {
            run,
            buf: vec![0u8; CHUNK * RECORD],
            held: 0,
            used: 0,
            read: 0,
        }
    }

    fn next(&mut self) -> io::Result<Option<(u64, u64)>> {
        if self.used == self.held {
            let n = (self.run.count - self.read).min(CHUNK);
            if n == 0 {
                return Ok(None);
            }
            let bytes = &mut self.buf[..n * RECORD];
            self.run
                .file
                .read_exact_at((HEADER + self.read * RECORD) as u64, bytes)?;
            // Chunks start on a block: a damaged block is not copied into
            // the next file under a fresh checksum.
            self.run.check_blocks(self.read / BLOCK, bytes)?;
            self.read += n;
            self.held = n;
            self.used = 0;
        }
        let at = self.used * RECORD;
        let word =
            |at: usize| u64::from_le_bytes(self.buf[at..at + 8].try_into().expect("8 bytes"));
        let record = (word(at), word(at + 8));
        self.used += 1;
        Ok(Some(record))
    }
}

/// Writes a new file's records a chunk at a time, then its fences, block
/// checksums, checksum and header.
struct RunWriter {
    file: Box<dyn RandomAccess>,
    buf: Vec<u8>,
    fences: Vec<u64>,
    /// The checksum of each block written so far (`buf` starts a block).
    sums: Vec<u8>,
    count: usize,
    /// Where the bytes in `buf` go.
    offset: u64,
}

impl RunWriter {
    fn new(mut file: Box<dyn RandomAccess>) -> io::Result<Self> {
        // What a crash may have left under this name goes.
        file.truncate(0)?;
        Ok(RunWriter {
            file,
            buf: Vec::with_capacity(CHUNK * RECORD),
            fences: Vec::new(),
            sums: Vec::new(),
            count: 0,
            offset: HEADER as u64,
        })
    }

    fn push(&mut self, (tag, seq): (u64, u64)) -> io::Result<()> {
        if self.count.is_multiple_of(BLOCK) {
            self.fences.push(tag);
        }
        self.count += 1;
        self.buf.extend_from_slice(&tag.to_le_bytes());
        self.buf.extend_from_slice(&seq.to_le_bytes());
        if self.buf.len() >= CHUNK * RECORD {
            self.write_buf()?;
        }
        Ok(())
    }

    /// Writes `buf`, whole blocks (but at the end), their checksums
    /// computed side by side.
    fn write_buf(&mut self) -> io::Result<()> {
        for sum in block_sums(self.buf.chunks(BLOCK * RECORD)) {
            self.sums.extend_from_slice(sum.as_bytes());
        }
        self.file.write_all_at(self.offset, &self.buf)?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes the rest; the file, its record count, fences and block
    /// checksums.
    fn finish(mut self, header: &[u8; HEADER]) -> io::Result<Finished> {
        self.write_buf()?;
        let mut index: Vec<u8> = self.fences.iter().flat_map(|f| f.to_le_bytes()).collect();
        index.extend_from_slice(&self.sums);
        let mut hasher = checksum();
        hasher.update(&index);
        hasher.update(header);
        index.extend_from_slice(hasher.finalize().as_bytes());
        self.file.write_all_at(self.offset, &index)?;
        // The header last: a file cut short has none, or the wrong length.
        self.file.write_all_at(0, header)?;
        Ok(Finished {
            file: self.file,
            count: self.count,
            fences: self.fences,
            sums: self.sums.into(),
        })
    }
}

/// What [`RunWriter::finish`] wrote.
struct Finished {
    file: Box<dyn RandomAccess>,
    count: usize,
    fences: Vec<u64>,
    sums: Box<[u8]>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{get, Db, DbReader, Op, OpenOptions, ReadOnlyDb};
    use proptest::prelude::*;
    use std::cell::Cell;

    thread_local! {
        /// What an index opened on this thread writes a file at, and which
        /// bits of tags it keeps (few: many keys share a tag).
        pub(crate) static TUNING: Cell<(usize, u64)> = const { Cell::new((FLUSH_AT, u64::MAX)) };
        /// Up to how many records a file is held in memory.
        pub(crate) static HOLD: Cell<usize> = const { Cell::new(HOLD_UP_TO) };
        /// Up to how many bytes of blocks a file keeps once read.
        pub(crate) static KEEP: Cell<usize> = const { Cell::new(KEEP_UP_TO) };
        /// Whether an index opened on this thread writes its files in a
        /// thread of their own (most tests want them written in order).
        pub(crate) static BACKGROUND: Cell<bool> = const { Cell::new(false) };
    }

    proptest! {
        /// The search finds every tag a block holds and no other, however
        /// the tags are spread (evenly, bunched, all at one end) between
        /// any bounds that hold them.
        #[test]
        fn a_search_finds_what_a_block_holds(
            tags in prop::collection::btree_set(
                prop_oneof![any::<u64>(), 0u64..1000, (u64::MAX - 1000)..=u64::MAX],
                0..=BLOCK,
            ),
            absent in prop::collection::vec(any::<u64>(), 8),
            below in any::<u64>(),
            above in any::<u64>(),
        ) {
            let tags: Vec<u64> = tags.into_iter().collect();
            let mut records = Vec::new();
            for (i, tag) in tags.iter().enumerate() {
                records.extend_from_slice(&tag.to_le_bytes());
                records.extend_from_slice(&(i as u64 + 7).to_le_bytes());
            }
            let low = tags.first().map_or(below, |&t| t.min(below));
            let high = tags.last().map_or(above, |&t| t.saturating_add(1).max(above));
            for (i, &tag) in tags.iter().enumerate() {
                prop_assert_eq!(search(&records, tag, (low, high)), Some(i as u64 + 7));
            }
            // The same block kept in memory answers the same.
            let kept = Kept::new(tags.len(), BLOCK * RECORD);
            kept.keep(0, &records);
            let in_memory = |tag: u64| {
                // No block at all: nothing kept, as nothing is stored.
                let words = kept.block(0, tags.len())?;
                let word = |at: usize| words[at].load(Ordering::Relaxed);
                search_by(tags.len(), word, |_| {}, tag, (low, high))
            };
            for tag in absent.into_iter().chain([0, u64::MAX, low, high]).chain(tags.iter().copied()) {
                let want = tags.iter().position(|&t| t == tag).map(|i| i as u64 + 7);
                prop_assert_eq!(search(&records, tag, (low, high)), want);
                prop_assert_eq!(in_memory(tag), want);
            }
        }
    }

    const KEYS: u8 = 16;

    /// Twelve keys side by side, and four under one of them.
    fn key(k: u8) -> String {
        match k % KEYS {
            k @ 0..12 => format!("k/{k}"),
            k => format!("k/3/{k}"),
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Put(u8, u8),
        Del(u8),
        Batch(Vec<(u8, Option<u8>)>),
        Reopen,
        /// Delete the index files (the database is open).
        Forget,
        /// Flip a byte of the newest index file, then reopen.
        Damage(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
            2 => any::<u8>().prop_map(Step::Del),
            2 => prop::collection::vec((any::<u8>(), prop::option::of(any::<u8>())), 1..6)
                .prop_map(Step::Batch),
            1 => Just(Step::Reopen),
            1 => Just(Step::Forget),
            1 => any::<usize>().prop_map(Step::Damage),
        ]
    }

    fn ids(nodes: &[Arc<crate::Node>]) -> Vec<(usize, u64)> {
        nodes.iter().map(|n| (n.feed, n.seq)).collect()
    }

    /// Every key's answer from `heads`, with and without the index, the
    /// same; how many the index gave.
    fn same_answers(db: &DbReader, heads: &[Arc<crate::Node>]) -> usize {
        let mut hits = 0;
        for k in 0..KEYS {
            let key = key(k);
            let walked = get::walk(db, heads, &key, None).unwrap();
            if let Some(found) = get::indexed(db, heads, &key).unwrap() {
                hits += 1;
                assert_eq!(ids(&found), ids(&walked), "{key}");
            }
            assert_eq!(ids(&get::get(db, heads, &key, None).unwrap()), ids(&walked));
        }
        same_listings(db, heads);
        hits
    }

    /// Listings in the order written (through the index, where it
    /// applies) hold the keys and values of the walk's, under prefixes
    /// whole (`k/1` is not `k/10`) and with every option they take.
    fn same_listings(db: &DbReader, heads: &[Arc<crate::Node>]) {
        let scans = get::index_head(db, heads).is_some_and(|(index, head)| {
            let info = index.info();
            info.usable && info.covered > head.seq
        });
        for prefix in ["", "k", "k/1", "k/3", "/k/3/"] {
            for (gt, deletes) in [(false, false), (true, false), (false, true)] {
                let list = |unordered| {
                    let options = crate::IterOptions {
                        gt,
                        deletes,
                        unordered,
                        ..Default::default()
                    };
                    let iter = crate::Iter::new(db, heads, None, prefix, options).unwrap();
                    assert_eq!(iter.scanning(), unordered && scans);
                    let mut listed: Vec<_> = iter
                        .map(|e| e.map(|(k, v)| (k, ids(&v))))
                        .collect::<crate::Result<_>>()
                        .unwrap();
                    listed.sort();
                    listed
                };
                assert_eq!(
                    list(true),
                    list(false),
                    "{prefix:?} gt {gt} deletes {deletes}"
                );
            }
        }
    }

    /// Every key of `keys` answered by the index at `heads`, with the
    /// value `value(key)`.
    fn found_by_the_index(
        db: &DbReader,
        heads: &[Arc<crate::Node>],
        keys: &[String],
        value: impl Fn(&str) -> Vec<u8>,
    ) {
        for k in keys {
            let found = get::indexed(db, heads, k)
                .unwrap()
                .expect("found by the index");
            assert_eq!(found[0].value.as_deref(), Some(&value(k)[..]), "{k}");
        }
    }

    fn index_files(storage: &DbStorage) -> Vec<(String, Vec<u8>)> {
        let files = storage.index_files();
        let index = storage.memory_feed(super::super::storage::INDEX_DIR);
        files
            .into_iter()
            .filter(|n| n.starts_with(PREFIX))
            .map(|n| {
                let bytes = index.as_ref().map(|s| s.contents(&n)).unwrap_or_default();
                (n, bytes)
            })
            .collect()
    }

    fn run(steps: Vec<Step>, flush_at: usize, mask: u64, hold: usize) -> usize {
        TUNING.set((flush_at, mask));
        HOLD.set(hold);
        let storage = DbStorage::memory();
        let open = || Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let mut db = open();
        let mut versions = Vec::new();
        let mut hits = 0;
        for step in steps {
            match step {
                Step::Put(k, v) => {
                    db.put(&key(k), &[v]).unwrap();
                }
                Step::Del(k) => {
                    db.del(&key(k)).unwrap();
                }
                Step::Batch(ops) => {
                    let ops = Op::drawn(&ops, key);
                    db.batch(&ops).unwrap();
                }
                Step::Reopen => {
                    drop(db);
                    db = open();
                }
                Step::Forget => {
                    for name in storage.index_files() {
                        storage.remove_index_file(&name).unwrap();
                    }
                }
                Step::Damage(at) => {
                    drop(db);
                    if let Some((name, mut bytes)) =
                        index_files(&storage).pop().filter(|(_, b)| !b.is_empty())
                    {
                        let at = at % bytes.len();
                        bytes[at] ^= 0x10;
                        let index = storage
                            .memory_feed(super::super::storage::INDEX_DIR)
                            .unwrap();
                        index.set_contents(&name, bytes);
                    }
                    db = open();
                }
            }
            assert!(db.key_index.is_some(), "a database with one writer has one");
            hits += same_answers(&db, &db.heads().unwrap());
            versions.push(db.version().unwrap());
        }
        // Earlier versions: the index answers only what it is sure of.
        for version in versions.iter().step_by(3) {
            let checkout = db.checkout(version).unwrap();
            same_answers(&db, checkout.heads());
        }
        // A reader beside the writer uses the index and writes nothing.
        let before = index_files(&storage);
        // It opens the writer's file and reads the entries after it, when
        // they are few enough.
        let expected = {
            let state = db.key_index.as_ref().unwrap().state.read();
            state.unwritten() <= flush_at as u64
                && state
                    .run
                    .as_ref()
                    .is_none_or(|r| before.iter().any(|(n, _)| *n == r.name))
        };
        let reader = ReadOnlyDb::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let read_hits = same_answers(&reader, &reader.heads().unwrap());
        if expected {
            assert!(reader.key_index.is_some());
            // Any key written (or deleted) is answered by the index.
            assert!(read_hits > 0 || reader.feed(0).unwrap().len() == 1);
        }
        assert_eq!(index_files(&storage), before, "a reader never writes");
        TUNING.set((FLUSH_AT, u64::MAX));
        HOLD.set(HOLD_UP_TO);
        hits
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever was written, reopened, deleted or damaged, a lookup
        /// through the index answers what the walk answers.
        #[test]
        fn the_index_answers_as_the_walk(
            steps in prop::collection::vec(step(), 1..40),
            flush_at in 1usize..8,
            collide in any::<bool>(),
            hold in prop_oneof![Just(0), Just(HOLD_UP_TO)],
        ) {
            let wrote = steps
                .iter()
                .any(|s| matches!(s, Step::Put(..) | Step::Del(_) | Step::Batch(_)));
            let hits = run(steps, flush_at, if collide { 0b11 } else { u64::MAX }, hold);
            // The index is used: once a key is written, it answers (steps
            // that only reopen, forget or damage write no key to ask for).
            prop_assert!(!wrote || hits > 0);
        }
    }

    #[test]
    fn a_crash_while_a_file_is_written_loses_nothing() {
        // Written by the write that fills it, and by a thread of its own
        // (which starts after that write's last write point, so the points
        // come in the same order every run).
        for background in [false, true] {
            BACKGROUND.set(background);
            crash_while_a_file_is_written(background);
        }
        BACKGROUND.set(false);
    }

    fn crash_while_a_file_is_written(background: bool) {
        use hypercore_feed::fault::{Crash, Faults};
        TUNING.set((6, u64::MAX));
        let start = DbStorage::memory();
        let db = Db::open_storage(start.clone(), OpenOptions::default()).unwrap();
        for i in 0..10u8 {
            db.put(&key(i), &[i]).unwrap();
        }
        drop(db);
        // Two more writes: the second makes six since the last file.
        let op = |db: &Db| -> crate::Result<()> {
            db.put(&key(20), b"a")?;
            db.put(&key(21), b"b")?;
            Ok(())
        };
        let points = {
            let faults = Faults::new();
            let disk = start.deep_copy();
            let db = Db::open_storage(
                disk.clone().with_faults(faults.clone()),
                OpenOptions::default(),
            )
            .unwrap();
            let (before, files) = (faults.points(), index_files(&disk));
            op(&db).unwrap();
            // Closing waits for a file written in the background.
            drop(db);
            assert_ne!(index_files(&disk), files, "the operation writes a file");
            faults.points() - before
        };
        for crash in [Crash::Fail, Crash::Kill, Crash::PowerCut] {
            for point in 1..=points {
                let faults = Faults::new();
                let storage = start.deep_copy().with_faults(faults.clone());
                let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
                faults.crash_at(faults.points() + point, crash);
                let _ = op(&db);
                drop(db);
                faults.restart();
                let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
                assert!(
                    db.key_index.is_some(),
                    "{crash:?} at {point} (background: {background})"
                );
                assert!(same_answers(&db, &db.heads().unwrap()) > 0);
                db.put(&key(3), b"after").unwrap();
                assert_eq!(
                    db.get(&key(3)).unwrap()[0].value.as_deref(),
                    Some(&b"after"[..])
                );
                assert!(same_answers(&db, &db.heads().unwrap()) > 0);
            }
        }
        TUNING.set((FLUSH_AT, u64::MAX));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever bytes an index file holds (damaged, cut short, grown,
        /// its count or generation changed), opening it neither panics
        /// nor allocates beyond its length, and a file that opens answers
        /// lookups without panicking.
        #[test]
        fn any_bytes_in_an_index_file_open_safely(
            keys in 0usize..700,
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            count in prop::option::of(any::<u64>()),
            resize in prop::option::of(0usize..20_000),
            hold in prop_oneof![Just(0), Just(HOLD_UP_TO)],
        ) {
            HOLD.set(hold);
            let storage = DbStorage::memory();
            let feed_key = [7; 32];
            let index = KeyIndex::open_with(&storage, feed_key, false, 1, |_| None, FLUSH_AT, u64::MAX)
                .unwrap();
            for seq in 1..=keys as u64 {
                index.insert(&format!("key {seq}"), seq);
            }
            index.flush();
            let (name, mut bytes) = index_files(&storage).pop().unwrap_or_default();
            if !name.is_empty() {
                if let Some(count) = count {
                    bytes[64..72].copy_from_slice(&count.to_le_bytes());
                }
                if let Some(len) = resize {
                    bytes.resize(len, 0xa5);
                }
                for (at, value) in flips {
                    if !bytes.is_empty() {
                        let at = at % bytes.len();
                        bytes[at] = value;
                    }
                }
                let dir = super::super::storage::INDEX_DIR;
                storage.memory_feed(dir).unwrap().set_contents(&name, bytes);
                if let Some(run) = Run::open(&storage, &name, &feed_key) {
                    for seq in 0..20u64 {
                        let _ = run.lookup(index.tag(&format!("key {seq}")));
                    }
                }
            }
            HOLD.set(HOLD_UP_TO);
        }
    }

    #[test]
    fn a_damaged_block_is_found_when_read_and_the_file_goes() {
        TUNING.set((1_000, u64::MAX));
        HOLD.set(0);
        let storage = DbStorage::memory();
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let ops: Vec<Op> = (0..2_000)
            .map(|i| Op::Put {
                key: format!("k{i}"),
                value: vec![1],
            })
            .collect();
        db.batch(&ops).unwrap();
        drop(db);
        let (name, mut bytes) = index_files(&storage).pop().unwrap();
        // A seq in the third block, changed to another entry's.
        let at = HEADER + (2 * BLOCK + 5) * RECORD + 8;
        bytes[at] ^= 0x01;
        let dir = super::super::storage::INDEX_DIR;
        storage.memory_feed(dir).unwrap().set_contents(&name, bytes);
        let run = Run::open(&storage, &name, &[0; 32]);
        assert!(run.is_none(), "another feed's key: not this feed's index");
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let index = db.key_index.as_ref().unwrap();
        let run = index
            .state
            .read()
            .run
            .clone()
            .expect("the header part checks");
        let mut damaged = 0;
        for i in 0..2_000 {
            let key = format!("k{i}");
            match run.lookup(index.tag(&key)) {
                Ok(seq) => assert_eq!(seq, Some(i + 1), "{key}"),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                    damaged += 1;
                }
            }
        }
        assert_eq!(damaged, BLOCK as u64, "one block");
        // Blocks that checked are kept for later lookups; the damaged one
        // is read (and refused) every time.
        assert_eq!(run.kept.count() as usize, run.fences.len() - 1);
        // Through the database: the answers are the walk's, and the file
        // goes, to be rebuilt.
        for i in 0..2_000 {
            let key = format!("k{i}");
            assert_eq!(db.get(&key).unwrap()[0].value.as_deref(), Some(&[1][..]));
        }
        assert!(!db.key_index().unwrap().usable);
        assert!(index_files(&storage).is_empty());
        drop(db);
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        assert!(db.key_index().unwrap().usable);
        assert_eq!(db.get("k300").unwrap()[0].value.as_deref(), Some(&[1][..]));
        TUNING.set((FLUSH_AT, u64::MAX));
        HOLD.set(HOLD_UP_TO);
    }

    #[test]
    fn blocks_past_the_budget_are_read_again_and_answer_the_same() {
        TUNING.set((1_000, u64::MAX));
        HOLD.set(0);
        // Room for two blocks of the file's eight.
        KEEP.set(2 * BLOCK * RECORD + RECORD);
        let storage = DbStorage::memory();
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let keys: Vec<String> = (0..2_000).map(|i| format!("k{i}")).collect();
        let ops: Vec<Op> = keys
            .iter()
            .map(|k| Op::Put {
                key: k.clone(),
                value: k.as_bytes().to_vec(),
            })
            .collect();
        db.batch(&ops).unwrap();
        drop(db);
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let index = db.key_index.as_ref().unwrap();
        let run = index.state.read().run.clone().unwrap();
        assert_eq!(run.fences.len(), 2_000usize.div_ceil(BLOCK));
        let heads = db.heads().unwrap();
        // Twice over: the second time, two blocks answer from memory and
        // the others from the file again.
        for _ in 0..2 {
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(run.lookup(index.tag(k)).unwrap(), Some(i as u64 + 1), "{k}");
                let found = get::indexed(&db, &heads, k)
                    .unwrap()
                    .expect("found by the index");
                assert_eq!(found[0].value.as_deref(), Some(k.as_bytes()));
            }
            assert_eq!(run.kept.count(), 2, "the first two blocks, no more");
            assert!(run.kept.block(0, BLOCK).is_some() && run.kept.block(2, BLOCK).is_none());
        }
        TUNING.set((FLUSH_AT, u64::MAX));
        HOLD.set(HOLD_UP_TO);
        KEEP.set(KEEP_UP_TO);
    }

    #[test]
    fn an_index_file_ahead_of_the_feed_is_not_used() {
        TUNING.set((4, u64::MAX));
        let storage = DbStorage::memory();
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        for i in 0..10u8 {
            db.put(&key(i), b"old").unwrap();
        }
        drop(db);
        let earlier = storage.deep_copy();
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        for i in 0..10u8 {
            db.put(&key(i), b"new").unwrap();
        }
        drop(db);
        // The earlier copy gets the later index, which covers more than
        // its feed holds (as after a repair that cut the feed shorter).
        let (name, bytes) = index_files(&storage).pop().unwrap();
        let dir = super::super::storage::INDEX_DIR;
        earlier.memory_feed(dir).unwrap().set_contents(&name, bytes);
        let db = Db::open_storage(earlier.clone(), OpenOptions::default()).unwrap();
        assert_eq!(
            db.get(&key(3)).unwrap()[0].value.as_deref(),
            Some(&b"old"[..])
        );
        assert!(same_answers(&db, &db.heads().unwrap()) > 0);
        assert!(!index_files(&earlier).iter().any(|(n, _)| *n == name));
        TUNING.set((FLUSH_AT, u64::MAX));
    }

    #[test]
    fn files_written_in_the_background_leave_every_answer_as_the_walk_gives_it() {
        TUNING.set((600, u64::MAX));
        HOLD.set(0);
        BACKGROUND.set(true);
        let storage = DbStorage::memory();
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let keys: Vec<String> = (0..1_500).map(|i| format!("many/{i}")).collect();
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut in_background = 0;
        let hits = std::thread::scope(|scope| {
            // A reader beside the writer: at every head it sees, what the
            // index answers (from memory, the entries being written, or a
            // file) is what the walk finds.
            let reader = scope.spawn(|| {
                let mut hits = 0;
                while !done.load(Ordering::Acquire) {
                    let heads = db.heads().unwrap();
                    for k in keys.iter().step_by(37) {
                        let walked = get::walk(&db, &heads, k, None).unwrap();
                        if let Some(found) = get::indexed(&db, &heads, k).unwrap() {
                            hits += 1;
                            assert_eq!(ids(&found), ids(&walked), "{k}");
                        }
                    }
                }
                hits
            });
            // Four rounds over every key, a hundred a batch: a file due
            // every six batches.
            for round in 0..4u8 {
                for chunk in keys.chunks(100) {
                    let ops: Vec<Op> = chunk
                        .iter()
                        .map(|k| Op::Put {
                            key: k.clone(),
                            value: vec![round],
                        })
                        .collect();
                    db.batch(&ops).unwrap();
                    let index = db.key_index.as_ref().unwrap();
                    in_background += usize::from(index.flusher.lock().is_some());
                }
            }
            done.store(true, Ordering::Release);
            reader.join().unwrap()
        });
        assert!(in_background > 0, "files written in a thread of their own");
        assert!(hits > 0, "the index answered the reader");
        let length = db.feed(0).unwrap().len();
        // Closing waits for the file being written, and writes the rest.
        let index = db.key_index.clone().unwrap();
        drop(db);
        assert!(index.flusher.lock().is_none() && index.state.read().frozen.is_empty());
        drop(index);
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let info = db.key_index().unwrap();
        assert!(info.usable);
        assert_eq!((info.covered, info.in_memory), (length, 0));
        assert_eq!(info.in_file, keys.len() as u64);
        assert_eq!(index_files(&storage).len(), 1, "older files removed");
        let heads = db.heads().unwrap();
        found_by_the_index(&db, &heads, &keys, |_| vec![3]);
        TUNING.set((FLUSH_AT, u64::MAX));
        HOLD.set(HOLD_UP_TO);
        BACKGROUND.set(false);
    }

    #[test]
    fn a_file_is_merged_in_order_and_found_again() {
        // Enough records for several blocks and chunks of the file.
        TUNING.set((2_000, u64::MAX));
        // Files read block by block, as large ones are.
        HOLD.set(0);
        let storage = DbStorage::memory();
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let keys: Vec<String> = (0..7_000).map(|i| format!("many/{i}")).collect();
        for chunk in keys.chunks(500) {
            let ops = chunk
                .iter()
                .map(|k| Op::Put {
                    key: k.clone(),
                    value: k.as_bytes().to_vec(),
                })
                .collect::<Vec<_>>();
            db.batch(&ops).unwrap();
        }
        drop(db);
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let index = db.key_index.as_ref().unwrap();
        let state = index.state.read();
        // Files at 2,000, 4,000 and 6,000 entries; the last 1,000 (too few
        // to write on closing) read again on opening.
        assert_eq!(state.pending.len(), 1_000);
        let run = state.run.clone().unwrap();
        drop(state);
        assert_eq!((run.generation, run.count), (3, 6_000));
        assert_eq!(run.fences.len(), 6_000usize.div_ceil(BLOCK));
        assert!(
            run.kept.count() == 0,
            "read block by block: nothing kept before a lookup"
        );
        assert_eq!(index_files(&storage).len(), 1, "older files removed");
        let heads = db.heads().unwrap();
        found_by_the_index(&db, &heads, &keys, |k| k.as_bytes().to_vec());
        assert!(get::indexed(&db, &heads, "many/absent").unwrap().is_none());
        TUNING.set((FLUSH_AT, u64::MAX));
        HOLD.set(HOLD_UP_TO);
    }
}
