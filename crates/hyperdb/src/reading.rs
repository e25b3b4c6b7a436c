//! Lookups' hold of the state: [`Reading`], and the decoding of entries
//! (with the writer's numbering, loading a newer feed list when an entry
//! names one).

use std::cell::{Ref, RefCell};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::RwLockReadGuard;

use prost::Message;

use crate::db::DbReader;
use crate::error::{Error, Result};
use crate::hash;
use crate::messages::{Header, InflatedEntry};
use crate::node::Node;
use crate::put::Batching;
use crate::trie::{Ptr, Trie};
use crate::writers::{State, WriterShared};

impl DbReader {
    /// Checks writer `id`'s header block, once.
    pub(crate) fn check_header(&self, id: usize) -> Result<()> {
        let state = self.state_mut();
        let w = &state.writers[id];
        if w.shared.header_checked.load(Ordering::Acquire) {
            return Ok(());
        }
        let block = w.feed.get(0)?;
        let header = Header::decode(block.as_slice()).map_err(|e| Error::BadHeader {
            feed: hex::encode(w.key),
            reason: e.to_string(),
        })?;
        if header.protocol != "hyperdb" {
            return Err(Error::BadHeader {
                feed: hex::encode(w.key),
                reason: format!("its protocol is {:?}", header.protocol),
            });
        }
        w.shared.header_checked.store(true, Ordering::Release);
        Ok(())
    }

    /// Takes in writer `feed`'s feed list from its inflated entry
    /// `inflate` (entry `seq`, `msg`, points to it): new writers are added,
    /// the numbering rebuilt, content feeds opened.
    pub(crate) fn load_feeds(
        &self,
        state: &mut State,
        feed: usize,
        seq: u64,
        msg: &InflatedEntry,
        inflate: u64,
    ) -> Result<()> {
        let inflated = if inflate == seq {
            msg.clone()
        } else {
            let w = &state.writers[feed];
            if !w.feed.has(inflate) {
                return Err(bad_entry(
                    &w.key,
                    seq,
                    format!("its inflated entry {inflate} is missing"),
                ));
            }
            let block = w.feed.get(inflate)?;
            InflatedEntry::decode(bytes::Bytes::from(block))
                .map_err(|e| bad_entry(&w.key, seq, format!("its inflated entry {inflate}: {e}")))?
        };
        let mut keys = Vec::with_capacity(inflated.feeds.len());
        for f in &inflated.feeds {
            let key: [u8; 32] = f.key.as_slice().try_into().map_err(|_| {
                bad_entry(
                    &state.writers[feed].key,
                    seq,
                    format!("a listed feed key has {} bytes", f.key.len()),
                )
            })?;
            keys.push(key);
        }
        for key in &keys {
            self.add_writer_to(state, key)?;
        }
        let w = &mut state.writers[feed];
        w.feeds_loaded = Some(inflate);
        w.feeds_seq = inflate;
        w.feeds_message = Some(keys);
        if inflated.content_feed.is_some() {
            w.content_feed = inflated.content_feed.clone();
        }
        state.update_feeds(feed);
        self.open_content(state, feed)
    }

    /// Entry `seq` of writer `feed` as stored: the message with its fields in
    /// the writer's own numbering of feeds (what the seed's printout shows).
    /// `None` when the block is not stored here or is the header.
    pub fn raw_entry(&self, feed: usize, seq: u64) -> Result<Option<InflatedEntry>> {
        let state = self.state();
        if feed >= state.writers.len() {
            return Ok(None);
        }
        Ok(state.read_entry(feed, seq)?.map(|(msg, _)| msg))
    }
}

impl State {
    /// Entry `seq` of writer `feed` as stored, with where its feed list is
    /// (its inflate pointer, checked to point back); `None` when the block
    /// is not stored here or is the header.
    pub(crate) fn read_entry(&self, feed: usize, seq: u64) -> Result<Option<(InflatedEntry, u64)>> {
        let w = &self.writers[feed];
        if seq == 0 || !w.feed.has(seq) {
            return Ok(None);
        }
        let block = w.feed.get(seq)?;
        let msg = InflatedEntry::decode(bytes::Bytes::from(block))
            .map_err(|e| bad_entry(&w.key, seq, e.to_string()))?;
        let inflate = msg.inflate.unwrap_or(0);
        if inflate > seq {
            return Err(bad_entry(
                &w.key,
                seq,
                format!("its inflate pointer ({inflate}) points forward"),
            ));
        }
        Ok(Some((msg, inflate)))
    }

    /// Whether entries of writer `feed` whose feed list is at `inflate` can
    /// be decoded with the numbering loaded now.
    pub(crate) fn numbering_loaded(&self, feed: usize, inflate: u64) -> bool {
        self.writers[feed]
            .feeds_loaded
            .is_some_and(|l| inflate <= l)
    }

    /// Decodes writer `feed`'s entry `seq` into the cache if it is stored
    /// and can be decoded with the numbering loaded now, so that readers
    /// find it without the lock. What cannot be decoded here is left to
    /// the reader that needs it (which says why).
    pub(crate) fn decode_ahead(&self, feed: usize, seq: u64) {
        if self.writers[feed].shared.cache.get(feed, seq).is_some() {
            return;
        }
        if let Ok(Some((msg, inflate))) = self.read_entry(feed, seq) {
            if self.numbering_loaded(feed, inflate) {
                let _ = self.finish_node(feed, seq, msg, inflate);
            }
        }
    }

    /// Decodes entry `seq` of writer `feed` with the writer's numbering,
    /// and caches it.
    pub(crate) fn finish_node(
        &self,
        feed: usize,
        seq: u64,
        msg: InflatedEntry,
        inflate: u64,
    ) -> Result<Option<Arc<Node>>> {
        let w = &self.writers[feed];
        decode_entry(&w.shared, &w.decode_map, feed, seq, msg, inflate, true).map(Some)
    }
}

/// Whether an entry decoded from the files is cached.
#[derive(Clone, Copy)]
enum Keep {
    Yes,
    No,
    /// While the cache has room, or when it was asked for lately already.
    Again,
}

/// Blocks to read at once from which [`Reading::scan_read_sorted`] reads
/// them in two threads, half each (reading and checking one block out of
/// order costs about a microsecond; a thread, some tens). The crate's
/// tests read far fewer at once, and read them so from 64 on.
const READ_IN_TWO: usize = if cfg!(test) { 64 } else { 8192 };

/// An entry read ahead of decoding it ([`Reading::scan_read_sorted`]).
pub(crate) enum ScanRead {
    /// Found decoded in the cache.
    Node(Arc<Node>),
    /// Its bytes, as stored (a slice of what a window read shares).
    Block(bytes::Bytes),
    /// To be read when decoded (not flushed, or not there).
    Later,
}

impl ScanRead {
    /// About how many bytes it holds.
    pub(crate) fn memory(&self) -> usize {
        match self {
            ScanRead::Node(n) => n.memory(),
            ScanRead::Block(b) => b.len() + std::mem::size_of::<bytes::Bytes>(),
            ScanRead::Later => 0,
        }
    }

    /// Asks the processor to bring the start of what it holds into its
    /// caches, ahead of its use: a listing's window holds its entries in
    /// the order read, and they are decoded in another, each a cache miss
    /// otherwise.
    pub(crate) fn prefetch(&self) {
        match self {
            ScanRead::Node(n) => prefetch(Arc::as_ptr(n).cast()),
            ScanRead::Block(b) => prefetch(b.as_ptr()),
            ScanRead::Later => {}
        }
    }
}

/// A hint to the processor to load the cache line at `at`.
#[inline]
pub(crate) fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints: it neither reads memory into the
    // program nor faults on any address (and `at` points into a live
    // allocation anyway).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Entry `seq` of the writer `shared` (id `feed`), read from its flushed
/// files without the state's lock and cached, when it is there and the
/// writer's published numbering decodes it. `None` sends the caller to
/// the feed under the lock (which also says what is wrong with a damaged
/// entry).
fn read_flushed(shared: &WriterShared, feed: usize, seq: u64, keep: bool) -> Option<Arc<Node>> {
    let block = flushed_block(shared, seq)?;
    decode_flushed(shared, feed, seq, block.into(), keep)
}

/// Entry `seq` of writer `shared` as stored, if its reader has it flushed.
fn flushed_block(shared: &WriterShared, seq: u64) -> Option<Vec<u8>> {
    if !flushed(seq, shared.readable.load(Ordering::Acquire)) {
        return None;
    }
    shared.blocks.get(seq).ok()
}

/// Whether entry `seq` is one a writer's reader can read, `readable`
/// being how many it has flushed (the header, entry 0, is not an entry).
fn flushed(seq: u64, readable: u64) -> bool {
    seq != 0 && seq < readable
}

/// [`read_flushed`] of a block already read.
fn decode_flushed(
    shared: &WriterShared,
    feed: usize,
    seq: u64,
    block: bytes::Bytes,
    keep: bool,
) -> Option<Arc<Node>> {
    let msg = InflatedEntry::decode(block).ok()?;
    let inflate = msg.inflate.unwrap_or(0);
    let numbering = shared.numbering.read().clone();
    if inflate > seq || !numbering.covers(inflate) {
        return None;
    }
    decode_entry(shared, &numbering.decode_map, feed, seq, msg, inflate, keep).ok()
}

/// An entry's clock (`clock`, in its writer's numbering of feeds) in the
/// local numbering: `decode_map` gives each feed's local id (`usize::MAX`
/// for none). Where it gives each its own place (always, with one writer),
/// the clock decoded is kept, padded, rather than copied.
fn local_clock(clock: Vec<u64>, decode_map: &[usize]) -> Vec<u64> {
    if clock.len() <= decode_map.len() && decode_map.iter().enumerate().all(|(i, &l)| l == i) {
        let mut clock = clock;
        clock.resize(decode_map.len(), 0);
        return clock;
    }
    let mut local = Vec::with_capacity(decode_map.len());
    for (i, &to) in decode_map.iter().enumerate() {
        if to == usize::MAX {
            continue;
        }
        if local.len() <= to {
            local.resize(to + 1, 0);
        }
        local[to] = clock.get(i).copied().unwrap_or(0);
    }
    local
}

/// Decodes entry `seq` of writer `shared` (id `feed`) with the writer's
/// numbering `decode_map`, and caches it when `keep`.
fn decode_entry(
    shared: &WriterShared,
    decode_map: &[usize],
    feed: usize,
    seq: u64,
    mut msg: InflatedEntry,
    inflate: u64,
    keep: bool,
) -> Result<Arc<Node>> {
    {
        if msg.clock.len() > decode_map.len() {
            return Err(bad_entry(
                &shared.key,
                seq,
                format!(
                    "its clock names {} feeds but the writer listed {}",
                    msg.clock.len(),
                    decode_map.len()
                ),
            ));
        }
        let clock = local_clock(std::mem::take(&mut msg.clock), decode_map);
        let trie = Trie::decode(&msg.trie, decode_map)
            .map_err(|e| bad_entry(&shared.key, seq, e.to_string()))?;
        let feeds = (inflate == seq).then(|| {
            msg.feeds
                .iter()
                .filter_map(|f| f.key.as_slice().try_into().ok())
                .collect()
        });
        let policy = msg
            .policy
            .filter(|_| inflate == seq)
            .and_then(|r| crate::policy::Record::decode(&r))
            .map(Box::new);
        let node = Arc::new(Node {
            policy,
            path: hash::path(&msg.key, true),
            key: msg.key,
            value: msg.value,
            deleted: msg.deleted.unwrap_or(false),
            feed,
            seq,
            clock,
            trie,
            inflate,
            feeds,
        });
        if keep {
            shared.cache.insert(feed, node.clone());
        }
        Ok(node)
    }
}

/// Reads that hold the state's read lock from one step to the next (a
/// lookup takes many), letting go only to load what a step finds new (a
/// writer's newer feed list, a header to check) under the write lock.
///
/// One is made per lookup and dropped at its end: never kept while the
/// caller may write, and never beside another on the same thread (a
/// waiting writer would block the second).
pub(crate) struct Reading<'a> {
    pub(crate) db: &'a DbReader,
    pub(crate) guard: RefCell<Option<RwLockReadGuard<'a, State>>>,
}

impl Reading<'_> {
    fn state(&self) -> Ref<'_, State> {
        if self.guard.borrow().is_none() {
            *self.guard.borrow_mut() = Some(self.db.state());
        }
        Ref::map(self.guard.borrow(), |g| &**g.as_ref().expect("just taken"))
    }

    /// Lets the read lock go, so the write lock can be taken.
    fn release(&self) {
        *self.guard.borrow_mut() = None;
    }

    /// Whether writer `index`'s entries count in answers.
    pub(crate) fn included(&self, index: usize) -> bool {
        self.db
            .registry
            .get(index)
            .is_some_and(|w| w.included.load(Ordering::Acquire))
    }

    /// Loads every writer's latest entry until no new writer turns up.
    ///
    /// Another writer's header or latest entry that does not decode names
    /// no writer and is passed over: it holds back only that writer (see
    /// [`crate::delivery`]), so no writer can stop a replica from reading
    /// or replicating by signing bytes that are not an entry. Damage to
    /// this replica's own feed is an error.
    pub(crate) fn discover(&self) -> Result<()> {
        let mut i = 0;
        while i < self.db.registry.len() {
            if let Err(e) = self.writer_head(i) {
                if i == self.db.local || !e.is_undecodable() {
                    return Err(e);
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// The latest entry of writer `id` (none for a feed with only its header).
    pub(crate) fn writer_head(&self, id: usize) -> Result<Option<Arc<Node>>> {
        let w = self.db.registry.get(id).expect("a known writer");
        let available = w.available.load(Ordering::Acquire);
        let checked = w.header_checked.load(Ordering::Acquire);
        if !checked && available > 0 {
            self.release();
            self.db.check_header(id)?;
        }
        if available < 2 {
            return Ok(None);
        }
        self.node(id, available - 1)
    }

    /// The current heads: the latest delivered entry of every counted
    /// writer (see [`crate::delivery`]), less those another head has seen.
    pub(crate) fn heads(&self) -> Result<Vec<Arc<Node>>> {
        Ok(self.heads_delivered()?.nodes.to_vec())
    }

    /// [`Reading::heads`], shared rather than copied.
    pub(crate) fn shared_heads(&self) -> Result<Arc<[Arc<Node>]>> {
        Ok(self.heads_delivered()?.nodes)
    }

    /// Entry `seq` of writer `feed`, decoded; `None` when it is not stored
    /// here (yet).
    pub(crate) fn node(&self, feed: usize, seq: u64) -> Result<Option<Arc<Node>>> {
        self.node_with(feed, seq, Keep::Yes)
    }

    /// [`Reading::node`] for a lookup that reads this one entry for its
    /// own sake (an index named it): what it decodes from the files is
    /// cached only while the cache has room or when it was asked for
    /// lately already (see [`crate::writers::EntryCache::admits`]).
    pub(crate) fn named_node(&self, feed: usize, seq: u64) -> Result<Option<Arc<Node>>> {
        self.node_with(feed, seq, Keep::Again)
    }

    /// [`Reading::node`] for a scan, which reads each entry once: what it
    /// decodes from the files is not cached, so it does not push out the
    /// entries lookups come back to.
    pub(crate) fn scan_node(&self, feed: usize, seq: u64) -> Result<Option<Arc<Node>>> {
        self.node_with(feed, seq, Keep::No)
    }

    fn node_with(&self, feed: usize, seq: u64, keep: Keep) -> Result<Option<Arc<Node>>> {
        // Decoded entries never change: no lock is needed to find one.
        let Some(shared) = self.db.registry.get(feed) else {
            return Ok(None);
        };
        if let Some(n) = shared.cache.get(feed, seq) {
            return Ok(Some(n));
        }
        let keep = match keep {
            Keep::Yes => true,
            Keep::No => false,
            Keep::Again => shared.cache.admits(feed, seq),
        };
        if let Some(n) = read_flushed(shared, feed, seq, keep) {
            return Ok(Some(n));
        }
        let (msg, inflate) = {
            let state = self.state();
            let Some((msg, inflate)) = state.read_entry(feed, seq)? else {
                return Ok(None);
            };
            if state.numbering_loaded(feed, inflate) {
                return state.finish_node(feed, seq, msg, inflate);
            }
            (msg, inflate)
        };
        // The entry names a newer feed list than the writer's loaded one:
        // take the state alone to load it (another thread may have).
        self.release();
        {
            let mut state = self.db.state_mut();
            if !state.numbering_loaded(feed, inflate) {
                self.db.load_feeds(&mut state, feed, seq, &msg, inflate)?;
            }
        }
        self.state().finish_node(feed, seq, msg, inflate)
    }

    /// Entries `seqs` (ascending) of writer `feed`, for a scan that
    /// decodes them later ([`Reading::scan_decode`]): each decoded if
    /// cached, else its bytes if flushed, else nothing yet. The bytes of
    /// those read are read together ([`hypercore_feed::BlockReader::get_sorted`])
    /// into one buffer they share.
    pub(crate) fn scan_read_sorted(
        &self,
        feed: usize,
        seqs: impl ExactSizeIterator<Item = u64>,
    ) -> Vec<ScanRead> {
        let Some(shared) = self.db.registry.get(feed) else {
            return seqs.map(|_| ScanRead::Later).collect();
        };
        let readable = shared.readable.load(Ordering::Acquire);
        let mut reads = Vec::with_capacity(seqs.len());
        // The flushed entries not cached, and where they go in `reads`.
        let (mut wanted, mut places) = (Vec::new(), Vec::new());
        for seq in seqs {
            if let Some(n) = shared.cache.get(feed, seq) {
                reads.push(ScanRead::Node(n));
                continue;
            }
            if flushed(seq, readable) {
                wanted.push(seq);
                places.push(reads.len());
            }
            reads.push(ScanRead::Later);
        }
        let read = |wanted: &[u64]| {
            let mut bytes = Vec::new();
            let ranges = shared.blocks.get_sorted(wanted, &mut bytes);
            (bytes::Bytes::from(bytes), ranges)
        };
        // Many blocks (a listing's window of a large database, read from
        // all over the file): the two halves read, and checked against
        // their hashes, side by side, each into a buffer of its own.
        let halves = if wanted.len() >= READ_IN_TWO {
            let (first, second) = wanted.split_at(wanted.len() / 2);
            std::thread::scope(|scope| {
                let other = std::thread::Builder::new().spawn_scoped(scope, || read(second));
                let mine = read(first);
                let other = match other {
                    // One that panicked read nothing: its blocks are read
                    // alone below.
                    Ok(other) => other
                        .join()
                        .unwrap_or_else(|_| (bytes::Bytes::new(), vec![None; second.len()])),
                    // No thread to be had: this one reads them.
                    Err(_) => read(second),
                };
                vec![mine, other]
            })
        } else {
            vec![read(&wanted)]
        };
        let found = halves
            .iter()
            .flat_map(|(bytes, ranges)| ranges.iter().map(move |range| (bytes, range)));
        for ((place, (bytes, range)), &seq) in places.into_iter().zip(found).zip(&wanted) {
            // One that did not read so is read alone, or left for later.
            let block = match range {
                Some(range) => Some(bytes.slice(range.clone())),
                None => flushed_block(shared, seq).map(Into::into),
            };
            reads[place] = block.map_or(ScanRead::Later, ScanRead::Block);
        }
        reads
    }

    /// Entry `seq` of writer `feed` from what [`Reading::scan_read_sorted`] gave,
    /// as [`Reading::scan_node`] gives it.
    pub(crate) fn scan_decode(
        &self,
        feed: usize,
        seq: u64,
        read: ScanRead,
    ) -> Result<Option<Arc<Node>>> {
        match read {
            ScanRead::Node(n) => Ok(Some(n)),
            ScanRead::Block(block) => {
                let shared = self.db.registry.get(feed);
                match shared.and_then(|s| decode_flushed(s, feed, seq, block, false)) {
                    Some(n) => Ok(Some(n)),
                    None => self.scan_node(feed, seq),
                }
            }
            ScanRead::Later => self.scan_node(feed, seq),
        }
    }

    /// A node for a pointer, seeing the entries of a batch being written.
    pub(crate) fn pointer(&self, ptr: Ptr, batch: Option<&Batching>) -> Result<Option<Arc<Node>>> {
        self.pointer_with(ptr, batch, Keep::Yes)
    }

    /// [`Reading::pointer`] for a scan (see [`Reading::scan_node`]).
    pub(crate) fn scan_pointer(&self, ptr: Ptr) -> Result<Option<Arc<Node>>> {
        self.pointer_with(ptr, None, Keep::No)
    }

    fn pointer_with(
        &self,
        ptr: Ptr,
        batch: Option<&Batching>,
        keep: Keep,
    ) -> Result<Option<Arc<Node>>> {
        let local = self.db.local;
        if ptr.feed == local {
            if let Some(batch) = batch {
                let len = self.state().writers[local].feed.len();
                if ptr.seq >= len {
                    return Ok(batch.nodes.get((ptr.seq - len) as usize).cloned());
                }
            }
        }
        if ptr.feed < self.db.registry.len() && !self.included(ptr.feed) {
            return Ok(None);
        }
        match self.node_with(ptr.feed, ptr.seq, keep) {
            Ok(node) => Ok(node),
            // A damaged entry behind a pointer is skipped, not fatal.
            Err(Error::BadEntry { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn bad_entry(key: &[u8; 32], seq: u64, reason: String) -> Error {
    Error::BadEntry {
        feed: hex::encode(key),
        seq,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use crate::{Db, DbReader, DbStorage, IterOptions, OpenOptions};
    use proptest::prelude::*;

    proptest! {
        /// A clock kept as decoded, where the writer's numbering is the
        /// local one, is the clock mapped entry by entry (and so is one
        /// mapped where it is not).
        #[test]
        fn a_clock_kept_as_decoded_is_the_clock_mapped(
            clock in prop::collection::vec(any::<u64>(), 0..6),
            home in 0usize..8,
            bend in prop::option::of((0usize..8, prop::option::of(0usize..8))),
        ) {
            let mut map: Vec<usize> = (0..home).collect();
            if let Some((at, to)) = bend.filter(|&(at, _)| at < map.len()) {
                map[at] = to.unwrap_or(usize::MAX);
            }
            prop_assume!(clock.len() <= map.len());
            let mut mapped = Vec::new();
            for (i, &to) in map.iter().enumerate() {
                if to != usize::MAX {
                    if mapped.len() <= to {
                        mapped.resize(to + 1, 0);
                    }
                    mapped[to] = clock.get(i).copied().unwrap_or(0);
                }
            }
            prop_assert_eq!(super::local_clock(clock, &map), mapped);
        }
    }

    fn cached(db: &DbReader) -> usize {
        db.cache.len()
    }

    #[test]
    fn scans_leave_the_lookup_cache_as_they_found_it() {
        let storage = DbStorage::memory();
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        for i in 0..200 {
            db.put(&format!("k/{i}"), b"v").unwrap();
        }
        drop(db);
        let db = Db::open_storage(storage, OpenOptions::default()).unwrap();
        let before = cached(&db);
        assert_eq!(db.history(false).unwrap().count(), 200);
        assert_eq!(db.iter("", IterOptions::default()).unwrap().count(), 200);
        assert_eq!(cached(&db), before, "a scan filled the cache");
        assert_eq!(db.get("k/7").unwrap().len(), 1);
        assert!(cached(&db) > before, "a lookup caches what it decodes");
    }

    /// A listing's windows of entries not cached, read half by each of
    /// two threads, list what the same listing lists from the cache: every
    /// key once, in the same order, each with its own entry.
    #[test]
    fn a_window_read_by_two_threads_lists_what_the_cache_lists() {
        let storage = DbStorage::memory();
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        let ops: Vec<crate::Op> = (0..3_000)
            .map(|i| crate::Op::Put {
                key: format!("k/{}/{i}", i % 7),
                value: format!("v{i}").into_bytes(),
            })
            .collect();
        for batch in ops.chunks(500) {
            db.batch(batch).unwrap();
        }
        drop(db);
        let db = Db::open_storage(storage, OpenOptions::default()).unwrap();
        let list = || -> Vec<(String, u64, Vec<u8>)> {
            db.iter("", IterOptions::default())
                .unwrap()
                .map(|item| {
                    let (key, nodes) = item.unwrap();
                    assert_eq!(nodes.len(), 1, "{key}");
                    let node = &nodes[0];
                    assert_eq!(node.key, key);
                    (key, node.seq, node.value.clone().unwrap())
                })
                .collect()
        };
        // Nothing cached: read from the files, in two.
        let read = list();
        assert_eq!(read.len(), 3_000);
        // Every entry got (and so cached), then listed again.
        for (key, seq, value) in &read {
            let got = db.get(key).unwrap();
            assert_eq!(
                (got[0].seq, &got[0].value),
                (*seq, &Some(value.clone())),
                "{key}"
            );
        }
        assert_eq!(list(), read);
        // The windows (a thousand entries and more) were read in two.
        const { assert!(super::READ_IN_TWO < 1_000) };
    }

    /// A get answered by the key index reads the one entry it names:
    /// kept while the cache has room; once the cache evicts, kept only
    /// from its second read on, so keys read once do not churn it. The
    /// answers are the same either way.
    #[test]
    fn an_entry_a_get_reads_once_is_kept_only_while_the_cache_has_room() {
        let storage = DbStorage::memory();
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        for i in 0..3_000 {
            db.put(&format!("k/{i}"), format!("v{i}").as_bytes())
                .unwrap();
        }
        drop(db);
        let options = OpenOptions {
            cache_bytes: 64 << 10,
            ..OpenOptions::default()
        };
        let db = Db::open_storage(storage, options).unwrap();
        let heads = db.reading().shared_heads().unwrap();
        let (index, head) = crate::get::index_head(&db, &heads).unwrap();
        // Whether entry `i`, got, is then cached.
        let got = |i: usize| {
            let key = format!("k/{i}");
            assert!(index.lookup(&key, head.seq + 1).is_some(), "indexed {key}");
            let found = db.get(&key).unwrap();
            assert_eq!(found.len(), 1, "{key}");
            assert_eq!(found[0].value.as_deref(), Some(format!("v{i}").as_bytes()));
            db.cache.get(0, found[0].seq).is_some()
        };
        assert!(!db.cache.evicting());
        assert!((0..20).all(got), "read once with room to spare, kept");
        let mut i = 20;
        while !db.cache.evicting() {
            got(i);
            i += 1;
            assert!(i < 1_000, "a 64 KiB cache holds a thousand entries");
        }
        for i in i..i + 500 {
            assert!(!got(i), "entry {i} read once was kept in a full cache");
            assert!(got(i), "entry {i} read again was not kept");
            assert!(got(i), "entry {i} read a third time was not found");
        }
    }
}
