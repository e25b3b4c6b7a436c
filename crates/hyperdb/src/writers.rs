//! The writers of an open database: the registry that gives each an id
//! for good, their feeds, their numbering of each other's feeds
//! (`encode_map`/`decode_map`), authorization, and what readers find of
//! them without a lock ([`WriterShared`]).

use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLockWriteGuard;

use hypercore_feed::cache::{IndexHasher, KeyMap};
use hypercore_feed::{BlockReader, Feed, Recovery};

use crate::node::Node;

pub(crate) struct Writer {
    pub(crate) feed: Feed,
    pub(crate) key: [u8; 32],
    /// The latest list of feeds this writer published, in its numbering.
    pub(crate) feeds_message: Option<Vec<[u8; 32]>>,
    pub(crate) content_feed: Option<Vec<u8>>,
    pub(crate) feeds_loaded: Option<u64>,
    pub(crate) feeds_seq: u64,
    /// Local id → the writer's number for that feed.
    pub(crate) encode_map: Vec<Option<usize>>,
    /// The writer's number → local id.
    pub(crate) decode_map: Vec<usize>,
    /// `decode_map` or `feeds_loaded` changed since they were last
    /// published to readers ([`WriterShared::numbering`]).
    pub(crate) numbering_changed: bool,
    pub(crate) clock: u64,
    pub(crate) authorized: bool,
    /// What readers find without the state lock.
    pub(crate) shared: Arc<WriterShared>,
    pub(crate) content: Option<Feed>,
}

/// An entry's writer (its local id) and seq.
type EntryKey = (usize, u64);

/// Decoded entries of every writer of a database, by (writer, seq),
/// weighed by [`Node::memory`]: one budget in bytes for them all.
///
/// Lookups come back to the few entries near the top of the trie and
/// seldom to the many near its leaves, which every lookup in a large
/// database decodes afresh. The cache is scan resistant (`quick_cache`,
/// CLOCK-Pro-like): an entry read once waits in a small probation part,
/// and only one read again takes room from those lookups share. Once it
/// is full, an entry a get reads for its own sake is not even let in at
/// its first read ([`EntryCache::admits`]).
pub(crate) struct EntryCache {
    entries:
        quick_cache::sync::Cache<EntryKey, Arc<Node>, NodeWeight, BuildHasherDefault<IndexHasher>>,
    /// The last entry too heavy for `entries` (which refuses what would
    /// fill most of a shard): kept alone, so that lookups going through an
    /// entry with a large value do not read and decode it every time. At
    /// most one such entry is kept beside the budget.
    heavy: parking_lot::Mutex<Option<(EntryKey, Arc<Node>)>>,
    /// Whether `heavy` was ever filled: until then a miss takes no lock.
    heavy_held: AtomicBool,
    /// The entries lately asked for by reads that keep an entry only when
    /// it is asked for again ([`EntryCache::admits`]): in each slot
    /// a fingerprint of the last one that fell there (zero: none).
    asked: Box<[AtomicU32]>,
    /// Whether an entry was evicted since the budget was last set: until
    /// then every entry is admitted.
    full: AtomicBool,
}

/// What an entry weighs in an [`EntryCache`]: its bytes in memory.
#[derive(Clone, Copy)]
pub(crate) struct NodeWeight;

impl quick_cache::Weighter<EntryKey, Arc<Node>> for NodeWeight {
    fn weight(&self, _: &EntryKey, node: &Arc<Node>) -> u64 {
        node.memory() as u64
    }
}

impl EntryCache {
    /// A cache of about `bytes` of decoded entries.
    pub(crate) fn new(bytes: usize) -> Self {
        // Entries weigh about a kilobyte (less near the top of the trie).
        let items = (bytes / 1024).max(16);
        // Shards for the cores that may read at once, but each large
        // enough that its own eviction still sees a few hundred entries.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (items / 256).clamp(1, 4 * cores).next_power_of_two();
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(items)
            .weight_capacity(bytes as u64)
            .shards(shards)
            .build()
            .expect("capacities are set");
        EntryCache {
            entries: quick_cache::sync::Cache::with_options(
                options,
                NodeWeight,
                Default::default(),
                Default::default(),
            ),
            heavy: Default::default(),
            heavy_held: AtomicBool::new(false),
            // As many slots as the budget holds entries of a kilobyte,
            // rounded up to a power of two (four bytes each: 256 KiB for
            // the default 64 MiB, beside the budget): an entry asked for
            // again before about that many others were is remembered.
            asked: (0..items.next_power_of_two())
                .map(|_| AtomicU32::new(0))
                .collect(),
            full: AtomicBool::new(false),
        }
    }

    /// Whether a lookup that reads entry `seq` of writer `feed` for its
    /// own sake (the one a key's index names) should cache it: while
    /// the budget has room, always; once entries are evicted, only from
    /// its second read on ([`EntryCache::asked_before`]).
    pub(crate) fn admits(&self, feed: usize, seq: u64) -> bool {
        let again = self.asked_before(feed, seq);
        again || !self.full.load(Ordering::Relaxed)
    }

    /// Whether entry `seq` of writer `feed` was asked for lately, which it
    /// now was: TinyLFU's doorkeeper. Among a million keys read at
    /// random, nearly every entry a get reads is read once: caching it
    /// made room by evicting an older one (its memory cold) for an entry
    /// nobody would ask for before it was evicted in turn, which took
    /// about a sixth of the time of such a get. A key read often is
    /// cached from its second read; two entries that share a slot forget
    /// each other, which only delays caching them.
    fn asked_before(&self, feed: usize, seq: u64) -> bool {
        let hash = BuildHasherDefault::<IndexHasher>::default().hash_one((feed, seq));
        // The multiply-rotate hash's upper half picks the slot (its lower
        // bits mix less); the lower half, never zero, is the fingerprint.
        let slot = (hash >> 32) as usize & (self.asked.len() - 1);
        let print = hash as u32 | 1;
        self.asked[slot].swap(print, Ordering::Relaxed) == print
    }

    /// Sets the budget to about `bytes`, evicting what is over it.
    pub(crate) fn set_capacity(&self, bytes: u64) {
        self.entries.set_capacity(bytes);
        self.full.store(false, Ordering::Relaxed);
    }

    /// The entry `seq` of writer `feed`, if cached.
    pub(crate) fn get(&self, feed: usize, seq: u64) -> Option<Arc<Node>> {
        let key = (feed, seq);
        self.entries.get(&key).or_else(|| {
            if !self.heavy_held.load(Ordering::Acquire) {
                return None;
            }
            let heavy = self.heavy.lock();
            heavy
                .as_ref()
                .filter(|(k, _)| *k == key)
                .map(|(_, n)| n.clone())
        })
    }

    /// Drops entry `seq` of writer `feed`, if cached.
    pub(crate) fn remove(&self, feed: usize, seq: u64) {
        self.entries.remove(&(feed, seq));
    }

    /// Caches `node`, entry `node.seq` of writer `feed`.
    pub(crate) fn insert(&self, feed: usize, node: Arc<Node>) {
        let key = (feed, node.seq);
        // The cache hands back what it evicted, and an entry it refused to
        // admit (too heavy for its shard) comes back first.
        let evicted = self.entries.insert_with_lifecycle(key, node);
        for (k, node) in evicted.into_iter().flatten() {
            if k == key {
                *self.heavy.lock() = Some((k, node));
                self.heavy_held.store(true, Ordering::Release);
            } else if !self.full.load(Ordering::Relaxed) {
                self.full.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Whether it has evicted entries since its budget was last set.
    #[cfg(test)]
    pub(crate) fn evicting(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// How many entries are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len() + usize::from(self.heavy.lock().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trie::Trie;

    fn node(seq: u64) -> Arc<Node> {
        Arc::new(Node {
            key: format!("key/{seq}"),
            value: Some(vec![7; 100]),
            deleted: false,
            feed: 0,
            seq,
            clock: vec![seq],
            trie: Trie::new(),
            path: vec![1; 97],
            inflate: 0,
            feeds: None,
            policy: None,
        })
    }

    /// The entries lookups come back to (the top of the trie) stay cached
    /// while many more pass through that are read once and never again
    /// (the entries near its leaves, in a database larger than the cache),
    /// and the cache holds no more than its budget.
    #[test]
    fn entries_read_again_outlast_a_stream_read_once() {
        let weight = node(0).memory();
        let cache = EntryCache::new(1_000 * weight);
        let mut once = 1_000_000u64..;
        let mut hits = 0;
        for round in 0..10 {
            // Two hundred entries read twice...
            for seq in (0..200).flat_map(|seq| [seq, seq]) {
                match cache.get(0, seq) {
                    Some(found) => {
                        assert_eq!(found.seq, seq);
                        hits += usize::from(round > 0);
                    }
                    None => cache.insert(0, node(seq)),
                }
            }
            // ...then twice as many entries as the cache holds, read once.
            for seq in once.by_ref().take(2_000) {
                assert!(cache.get(0, seq).is_none());
                cache.insert(0, node(seq));
                assert!(cache.entries.weight() <= cache.entries.capacity());
            }
        }
        // Every read in the later rounds finds its entry, most at the first.
        let reads = 9 * 400;
        assert!(hits >= reads * 95 / 100, "{hits} hits of {reads} reads");
    }

    /// The doorkeeper says yes to an entry asked for again, and no to one
    /// asked for the first time or after enough others filled its slot.
    #[test]
    fn entries_asked_for_again_are_let_in() {
        let cache = EntryCache::new(64 * 1024);
        let slots = cache.asked.len() as u64;
        assert_eq!(slots, 64);
        for seq in 0..slots {
            assert!(!cache.asked_before(0, seq), "{seq} asked for once");
            assert!(
                !cache.asked_before(1, seq),
                "writer 1's {seq} asked for once"
            );
        }
        // Asked for again after a few others, most are let in (those that
        // shared a slot with one of the others are not).
        let mut again = 0;
        for batch in 0..100 {
            let seqs = batch * 4..batch * 4 + 4;
            assert!(seqs.clone().all(|seq| !cache.asked_before(4, seq)));
            again += seqs.filter(|&seq| cache.asked_before(4, seq)).count();
        }
        assert!(again >= 360, "{again} of 400");
        // Asked for just after itself, an entry always is let in.
        for seq in 1_000..1_100 {
            assert!(!cache.asked_before(3, seq));
            assert!(cache.asked_before(3, seq));
            assert!(cache.asked_before(3, seq));
        }
        // After ten times as many others, almost none is.
        for seq in 10_000..10_000 + 10 * slots {
            cache.asked_before(2, seq);
        }
        let kept = (1_000..1_100).filter(|&s| cache.asked_before(3, s)).count();
        assert!(kept <= 5, "{kept} of 100 remembered");
    }

    /// An entry heavier than the whole budget is still kept, alone: the
    /// last one cached.
    #[test]
    fn one_entry_heavier_than_the_budget_is_kept() {
        let cache = EntryCache::new(64 << 10);
        let heavy = |seq: u64| {
            let mut node = Node::clone(&node(seq));
            node.value = Some(vec![1; 100 << 10]);
            Arc::new(node)
        };
        cache.insert(0, node(1));
        cache.insert(0, heavy(2));
        assert_eq!(cache.get(0, 2).map(|n| n.seq), Some(2));
        assert_eq!(cache.get(0, 1).map(|n| n.seq), Some(1));
        cache.insert(0, heavy(3));
        assert_eq!(cache.get(0, 3).map(|n| n.seq), Some(3));
        assert!(cache.get(0, 2).is_none(), "one heavy entry at most");
        assert!(cache.get(1, 3).is_none(), "another writer's entry 3");
    }
}

/// What readers need of a writer without taking the state lock: its
/// decoded entries (immutable once decoded), how many entries it has
/// without a gap, and whether they count; and, to decode an entry that is
/// not cached, a reader of the feed's flushed blocks and the writer's
/// numbering. A lookup never waits for an append or a replication in
/// progress unless it needs an entry stored since the last flush.
pub(crate) struct WriterShared {
    /// The writer's feed key.
    pub(crate) key: [u8; 32],
    /// Decoded entries by seq; readers on several threads share it.
    pub(crate) cache: Arc<EntryCache>,
    /// [`Writer::available`], as of the last change to the state.
    pub(crate) available: AtomicU64,
    /// Authorized, or this replica's own writer.
    pub(crate) included: AtomicBool,
    /// Its header block was checked.
    pub(crate) header_checked: AtomicBool,
    /// Reads the feed's blocks below `readable` without the state lock.
    pub(crate) blocks: BlockReader,
    /// Entries below this are stored without a gap and flushed to the
    /// feed's files, where `blocks` finds them.
    pub(crate) readable: AtomicU64,
    /// The writer's numbering as of the last change to the state.
    pub(crate) numbering: parking_lot::RwLock<Arc<Numbering>>,
}

/// A writer's numbering of feeds, as readers decode its entries with it.
#[derive(Default)]
pub(crate) struct Numbering {
    /// The writer's number → local id.
    pub(crate) decode_map: Vec<usize>,
    /// Entry holding the feed list `decode_map` comes from.
    pub(crate) feeds_loaded: Option<u64>,
}

impl Numbering {
    /// Whether entries whose feed list is at `inflate` decode with it.
    pub(crate) fn covers(&self, inflate: u64) -> bool {
        self.feeds_loaded.is_some_and(|l| inflate <= l)
    }
}

/// The writers' shared parts by id. The registry only grows (ids never
/// change), in chunks that never move, so readers index it without a
/// lock; writers are added only under the state's write lock.
pub(crate) struct Registry {
    chunks: [OnceLock<Slots>; 48],
    len: AtomicUsize,
}

/// One chunk of the registry.
type Slots = Box<[OnceLock<Arc<WriterShared>>]>;

impl Registry {
    pub(crate) fn new() -> Self {
        Registry {
            chunks: std::array::from_fn(|_| OnceLock::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Chunk `k` holds 32·2^k entries, after the 32·(2^k − 1) before it.
    fn locate(i: usize) -> (usize, usize) {
        let chunk = (i / 32 + 1).ilog2() as usize;
        (chunk, i - 32 * ((1 << chunk) - 1))
    }

    /// Adds the next writer (the caller holds the state's write lock).
    fn push(&self, writer: Arc<WriterShared>) {
        let i = self.len.load(Ordering::Relaxed);
        let (chunk, at) = Self::locate(i);
        let slots =
            self.chunks[chunk].get_or_init(|| (0..32 << chunk).map(|_| OnceLock::new()).collect());
        if slots[at].set(writer).is_err() {
            unreachable!("a registry slot is filled once");
        }
        self.len.store(i + 1, Ordering::Release);
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Arc<WriterShared>> {
        if i >= self.len() {
            return None;
        }
        let (chunk, at) = Self::locate(i);
        self.chunks[chunk].get()?.get(at)?.get()
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

impl Writer {
    fn new(feed: Feed, cache: &Arc<EntryCache>, blocks: BlockReader) -> Self {
        let key = *feed.key();
        Writer {
            key: *feed.key(),
            feed,
            feeds_message: None,
            content_feed: None,
            feeds_loaded: None,
            feeds_seq: 0,
            encode_map: Vec::new(),
            decode_map: Vec::new(),
            numbering_changed: false,
            clock: 0,
            authorized: false,
            shared: Arc::new(WriterShared {
                key,
                blocks,
                readable: AtomicU64::new(0),
                numbering: Default::default(),
                cache: cache.clone(),
                available: AtomicU64::new(0),
                included: AtomicBool::new(false),
                header_checked: AtomicBool::new(false),
            }),
            content: None,
        }
    }

    /// Entries available locally without a gap (the feed may be longer).
    pub(crate) fn available(&self) -> u64 {
        self.feed
            .next_missing(0, self.feed.len())
            .unwrap_or(self.feed.len())
    }
}

/// What changes while a database is open: the writers (a registry that
/// only grows, so a writer's id never changes), their feeds, numbering and
/// authorization. Readers share it; an append or a newly found writer takes
/// it alone, briefly.
pub(crate) struct State {
    pub(crate) writers: Vec<Writer>,
    pub(crate) by_key: KeyMap<usize>,
    pub(crate) local: usize,
    pub(crate) authorized_order: Vec<usize>,
    /// What opening the feeds repaired, by feed folder.
    pub(crate) recovered: Vec<(String, Recovery)>,
    /// A feed was changed in a way that may have lost blocks (an audit):
    /// the next refresh counts every writer's available entries afresh.
    pub(crate) rescan: bool,
    /// Moves whenever the set of feeds the database replicates changes (a
    /// writer authorized, a content feed opened), so subscribers to
    /// changes know to look for new feeds.
    pub(crate) feed_set: u64,
}

impl State {
    /// Whether writer `index`'s entries count in answers: authorized writers
    /// and this replica's own.
    pub(crate) fn included(&self, index: usize) -> bool {
        self.writers
            .get(index)
            .is_some_and(|w| w.shared.included.load(Ordering::Acquire))
    }

    /// Any feed of the database by its key: a writer's or a content feed.
    pub(crate) fn feed_by_key(&self, key: &[u8; 32]) -> Option<&Feed> {
        if let Some(&i) = self.by_key.get(key) {
            return Some(&self.writers[i].feed);
        }
        self.writers
            .iter()
            .filter_map(|w| w.content.as_ref())
            .find(|f| f.key() == key)
    }

    pub(crate) fn feed_by_key_mut(&mut self, key: &[u8; 32]) -> Option<&mut Feed> {
        if let Some(&i) = self.by_key.get(key) {
            return Some(&mut self.writers[i].feed);
        }
        self.writers
            .iter_mut()
            .filter_map(|w| w.content.as_mut())
            .find(|f| f.key() == key)
    }

    pub(crate) fn feed(&self, id: usize, content: bool) -> Option<&Feed> {
        let w = self.writers.get(id)?;
        if content {
            w.content.as_ref()
        } else {
            Some(&w.feed)
        }
    }

    pub(crate) fn authorize_writer(&mut self, id: usize) {
        if self.writers[id].authorized {
            return;
        }
        self.writers[id].authorized = true;
        self.feed_set += 1;
        self.writers[id]
            .shared
            .included
            .store(true, Ordering::Release);
        self.authorized_order.push(id);
        if self.writers[id].feeds_message.is_some() {
            self.update_feeds(id);
        }
    }

    /// Rebuilds writer `id`'s feed numbering from its latest feed list, and
    /// authorizes what an authorized writer lists.
    pub(crate) fn update_feeds(&mut self, id: usize) {
        self.writers[id].numbering_changed = true;
        let list = self.writers[id].feeds_message.clone().unwrap_or_default();
        let mut newly = Vec::new();
        for (i, key) in list.iter().enumerate() {
            let Some(&local) = self.by_key.get(key) else {
                continue;
            };
            let w = &mut self.writers[id];
            if w.decode_map.len() <= i {
                w.decode_map.resize(i + 1, usize::MAX);
            }
            w.decode_map[i] = local;
            if w.encode_map.len() <= local {
                w.encode_map.resize(local + 1, None);
            }
            w.encode_map[local] = Some(i);
            if w.authorized {
                newly.push(local);
            }
        }
        for local in newly {
            self.authorize_writer(local);
        }
    }

    pub(crate) fn note_recovery(&mut self, dir: &str, feed: &Feed) {
        if let Some(recovery) = feed.recovery() {
            self.recovered.push((dir.to_string(), recovery.clone()));
        }
    }

    pub(crate) fn push_writer(
        &mut self,
        registry: &Registry,
        dir: &str,
        feed: Feed,
        cache: &Arc<EntryCache>,
        blocks: BlockReader,
    ) -> usize {
        self.note_recovery(dir, &feed);
        let id = self.writers.len();
        self.by_key.insert(*feed.key(), id);
        let writer = Writer::new(feed, cache, blocks);
        writer
            .shared
            .available
            .store(writer.available(), Ordering::Release);
        registry.push(writer.shared.clone());
        self.writers.push(writer);
        id
    }

    /// Brings what readers see without the lock up to date with the feeds
    /// and the writers' numbering. A writer's new latest entry is decoded
    /// first, so that a reader starting from the heads finds it in the
    /// cache rather than waiting for the lock to decode it (while a
    /// replication stores blocks, the heads move after every few dozen).
    fn refresh(&mut self) {
        let rescan = std::mem::take(&mut self.rescan);
        for id in 0..self.writers.len() {
            let w = &mut self.writers[id];
            if std::mem::take(&mut w.numbering_changed) {
                *w.shared.numbering.write() = Arc::new(Numbering {
                    decode_map: w.decode_map.clone(),
                    feeds_loaded: w.feeds_loaded,
                });
            }
            let w = &self.writers[id];
            let len = w.feed.len();
            let before = w.shared.available.load(Ordering::Relaxed);
            let start = if rescan || before > len { 0 } else { before };
            let available = w.feed.next_missing(start, len).unwrap_or(len);
            if available != before {
                if available > before && available >= 2 && self.included(id) {
                    self.decode_ahead(id, available - 1);
                }
                w.shared.available.store(available, Ordering::Release);
            }
            // What was committed but not flushed is not in the files yet.
            // Blocks an audit drops leave it here, as they leave
            // `available`; a lookup already past this check may still read
            // one whose bytes hash right.
            let readable = if w.feed.has_unflushed() {
                available.min(w.shared.readable.load(Ordering::Relaxed))
            } else {
                available
            };
            w.shared.readable.store(readable, Ordering::Release);
        }
    }
}

/// The state, held alone; on release, what readers see without the lock
/// is brought up to date, and the lock goes to the readers waiting for it
/// (a fair hand-over: a writer that takes the state again at once, storing
/// a replication's blocks a few dozen at a time, waits behind them rather
/// than keeping them out until it is done).
pub(crate) struct StateMut<'a>(Option<RwLockWriteGuard<'a, State>>);

impl<'a> StateMut<'a> {
    pub(crate) fn new(guard: RwLockWriteGuard<'a, State>) -> Self {
        StateMut(Some(guard))
    }
}

impl std::ops::Deref for StateMut<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        self.0.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for StateMut<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Drop for StateMut<'_> {
    fn drop(&mut self) {
        if let Some(mut guard) = self.0.take() {
            guard.refresh();
            RwLockWriteGuard::unlock_fair(guard);
        }
    }
}
