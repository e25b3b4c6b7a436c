//! An open database and every read of it: opening its feeds, discovery,
//! heads, lookups, listing, authorization questions. [`DbReader`] holds it;
//! [`Db`](crate::Db) (which writes) and [`ReadOnlyDb`](crate::ReadOnlyDb)
//! (which cannot) both dereference to it, so every read works on either.
//! The writers themselves are in [`crate::writers`]; a lookup's hold of
//! them and the decoding of entries, in [`crate::reading`].

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hypercore_feed::cache::KeyMap;
use hypercore_feed::{Durability, Feed, FeedOptions, Recovery};
use parking_lot::{RwLock, RwLockReadGuard};

use crate::changes::{Changes, Subscription};
use crate::error::{Error, Result};
use crate::iter::{Iter, IterOptions};
use crate::key_index::KeyIndex;
use crate::node::Node;
use crate::reading::Reading;
use crate::storage::DbStorage;
use crate::trie::Ptr;
use crate::writers::{EntryCache, Registry, State, StateMut};
use crate::{get, hash};

/// How to open a database.
///
/// ```
/// use hyperdb::{Db, Durability, OpenOptions};
///
/// let dir = tempfile::tempdir().unwrap();
/// let options = OpenOptions { durability: Durability::Fsync, ..Default::default() };
/// let db = Db::open_with(dir.path(), options).unwrap();
/// db.put("a", b"1").unwrap(); // on disk, synced, when this returns
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// The database key, to open a replica of an existing database.
    pub key: Option<[u8; 32]>,
    /// The owner's secret key, to create a database with a known key pair.
    pub secret_key: Option<[u8; 64]>,
    /// A replica's writer's secret key, used when this opening creates the
    /// writer (a new replica); random when `None`. For reproducible runs
    /// (a simulation drawing everything from one seed).
    pub local_secret_key: Option<[u8; 64]>,
    /// Create the database (or the replica) when the folder is empty.
    pub create: bool,
    /// Memory for decoded entries kept for lookups, in bytes, for the
    /// whole database (every writer's entries together); 64 MiB by default.
    /// An entry of a larger database weighs more (its trie grows with the
    /// database), so this, not the database's size, bounds the memory. The
    /// index of paths that a writer builds ([`DbReader::path_index`]) takes
    /// its memory out of this budget.
    pub cache_bytes: usize,
    /// Give every writer a content feed for large values (hyperdb 3.5.0's
    /// `contentFeed` option), stored under `content/` and replicated with
    /// the database.
    pub content_feed: bool,
    /// When writes reach stable storage: [`Durability::Buffered`] (the
    /// default, as hyperdb 3.5.0: a crashed process loses nothing
    /// acknowledged, a power cut may) or [`Durability::Fsync`] (every put,
    /// batch and flush of replicated blocks is synced before it returns).
    pub durability: Durability,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            key: None,
            secret_key: None,
            local_secret_key: None,
            create: true,
            cache_bytes: 64 << 20,
            content_feed: false,
            durability: Durability::default(),
        }
    }
}

/// One operation of a [`Db::batch`](crate::Db::batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Store a value.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Delete a key.
    Del {
        /// The key.
        key: String,
    },
}

#[cfg(test)]
impl Op {
    /// The operations of a batch drawn by a property test: for each pair,
    /// a put of the one-byte value to key `key(k)`, or a delete of it.
    pub(crate) fn drawn(ops: &[(u8, Option<u8>)], key: impl Fn(u8) -> String) -> Vec<Op> {
        ops.iter()
            .map(|&(k, v)| match v {
                Some(v) => Op::Put {
                    key: key(k),
                    value: vec![v],
                },
                None => Op::Del { key: key(k) },
            })
            .collect()
    }
}

/// Options of [`DbReader::get_with`].
#[derive(Default)]
pub struct GetOptions<'a> {
    /// Keep deletes among the current writes.
    pub deletes: bool,
    /// Called with every entry the lookup reads, heads first. It runs while
    /// the lookup holds the database for reading, so it must not write to
    /// it (that would wait for the lookup forever).
    pub on_lookup: Option<&'a mut dyn FnMut(Ptr)>,
}

impl std::fmt::Debug for GetOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOptions")
            .field("deletes", &self.deletes)
            .field("on_lookup", &self.on_lookup.is_some())
            .finish()
    }
}

/// What the database knows of one writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterInfo {
    /// The writer's feed key.
    pub key: [u8; 32],
    /// Entries in its feed (including the header).
    pub length: u64,
    /// Whether an authorized writer lists it (the source always is).
    pub authorized: bool,
    /// Whether it is the database's source feed (its key is the db key).
    pub source: bool,
    /// Whether it is this replica's own writer.
    pub local: bool,
    /// The key of its content feed, when it has one.
    pub content_key: Option<[u8; 32]>,
}

/// An open database's state, and every read: what [`Db`](crate::Db) and
/// [`ReadOnlyDb`](crate::ReadOnlyDb) have in common (both dereference to
/// it). Every read takes `&self`, and threads read at once: a `Db` is a
/// cheap handle to clone into each of them.
///
/// ```
/// use hyperdb::{Db, DbStorage, OpenOptions};
/// let db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
/// db.put("hello", b"world").unwrap();
/// let values = db.get("hello").unwrap();
/// assert_eq!(values[0].value.as_deref(), Some(&b"world"[..]));
/// ```
pub struct DbReader {
    pub(crate) storage: DbStorage,
    key: [u8; 32],
    discovery_key: [u8; 32],
    pub(crate) local: usize,
    local_key: [u8; 32],
    pub(crate) state: RwLock<State>,
    pub(crate) registry: Registry,
    /// Decoded entries, every writer's.
    pub(crate) cache: Arc<EntryCache>,
    changes: Changes,
    pub(crate) content_enabled: bool,
    /// Feeds are opened read-only, and none is created.
    read_only: bool,
    pub(crate) durability: Durability,
    /// Every writer's delivered length, as last computed.
    pub(crate) delivered: parking_lot::Mutex<Option<crate::delivery::Delivered>>,
    /// Every writer's inflated entries read so far, and the last policy.
    pub(crate) policy: parking_lot::Mutex<crate::policy::Memo>,
    /// The latest entry of each key, for a database with one writer that
    /// this replica owns (see [`crate::key_index`]).
    pub(crate) key_index: Option<Arc<KeyIndex>>,
    /// Each key's latest entry in every writer's feed, once lookups have
    /// walked enough (see [`crate::latest_index`]).
    pub(crate) latest: crate::latest_index::LatestIndex,
    /// The latest entry under every path prefix, for puts to a database
    /// with one writer (see [`crate::path_index`]).
    pub(crate) path_index: crate::path_index::PathIndex,
}

impl std::fmt::Debug for DbReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbReader")
            .field("key", &hex::encode(self.key))
            .field("storage", &self.storage.describe())
            .field("writers", &self.state().writers.len())
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// Read access to one of a database's feeds ([`DbReader::feed`]): a
/// database's feeds are appended to only through its write path. Each call
/// looks at the feed as it is at that moment.
#[derive(Debug)]
pub struct FeedReader<'a> {
    db: &'a DbReader,
    id: usize,
    content: bool,
    key: [u8; 32],
}

impl FeedReader<'_> {
    fn with<T>(&self, f: impl FnOnce(&Feed) -> T) -> T {
        let state = self.db.state();
        f(state
            .feed(self.id, self.content)
            .expect("feeds are never removed"))
    }

    /// The feed's key.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Number of blocks (the first is the writer's header).
    pub fn len(&self) -> u64 {
        self.with(Feed::len)
    }

    /// Whether the feed has no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total bytes of all blocks.
    pub fn byte_len(&self) -> u64 {
        self.with(Feed::byte_len)
    }

    /// Whether block `index` is stored here.
    pub fn has(&self, index: u64) -> bool {
        self.with(|f| f.has(index))
    }

    /// Whether every block is stored here.
    pub fn has_all(&self) -> bool {
        self.with(Feed::has_all)
    }

    /// Number of blocks in `start..end` stored here.
    pub fn downloaded(&self, start: u64, end: u64) -> u64 {
        self.with(|f| f.downloaded(start, end))
    }

    /// Block `index`, checked against its hash.
    pub fn get(&self, index: u64) -> hypercore_feed::Result<Vec<u8>> {
        self.with(|f| f.get(index))
    }

    /// The signature covering block `index`: the first stored at or after
    /// it, with the index it is stored at.
    pub fn signature(&self, index: u64) -> hypercore_feed::Result<(u64, [u8; 64])> {
        self.with(|f| f.signature(index))
    }

    /// What opening the feed repaired, if anything.
    pub fn recovery(&self) -> Option<Recovery> {
        self.with(|f| f.recovery().cloned())
    }

    /// The digest to send when asking a peer for block `index`.
    pub fn digest(&self, index: u64) -> u64 {
        self.with(|f| f.digest(index))
    }

    /// The proof a peer needs for block `index` (see [`Feed::proof`]).
    pub fn proof(
        &self,
        index: u64,
        digest: u64,
        include_hash: bool,
        remote: &mut hypercore_feed::SparseBits,
    ) -> hypercore_feed::Result<hypercore_feed::Proof> {
        self.with(|f| f.proof(index, digest, include_hash, remote))
    }
}

impl DbReader {
    /// Opens the feeds of the database in `storage`: the source, this
    /// replica's writer, and every writer they lead to. Creates nothing;
    /// the caller has created what was missing.
    pub(crate) fn load(storage: DbStorage, options: &OpenOptions, read_only: bool) -> Result<Self> {
        let feed_options = FeedOptions {
            key: options.key,
            secret_key: options.secret_key,
            create_if_missing: false,
            read_only,
            durability: options.durability,
            ..Default::default()
        };
        let source = storage
            .open_feed("source", feed_options.clone())
            .map_err(|e| match e {
                hypercore_feed::Error::KeyMismatch {
                    found, expected, ..
                } => Error::WrongDatabase {
                    dir: storage.describe(),
                    found,
                    expected,
                },
                e => Error::Feed(e),
            })?;
        let cache = Arc::new(EntryCache::new(options.cache_bytes.max(64 << 10)));
        let owner = source.secret_key().is_some();
        let mut state = State {
            writers: Vec::new(),
            by_key: KeyMap::default(),
            local: 0,
            authorized_order: Vec::new(),
            recovered: Vec::new(),
            rescan: false,
            feed_set: 0,
        };
        let registry = Registry::new();
        let key = *source.key();
        let discovery_key = *source.discovery_key();
        let blocks = storage.block_reader("source", &source);
        state.push_writer(&registry, "source", source, &cache, blocks);
        if !owner {
            if !storage.has_feed("local") {
                return Err(Error::NotFound(format!(
                    "{}: this replica has no local writer yet (open it for writing once to make one)",
                    storage.describe()
                )));
            }
            let options = FeedOptions {
                create_if_missing: false,
                read_only,
                durability: options.durability,
                ..Default::default()
            };
            let local = storage.open_feed("local", options)?;
            let blocks = storage.block_reader("local", &local);
            state.local = state.push_writer(&registry, "local", local, &cache, blocks);
        }
        state.writers[state.local]
            .shared
            .included
            .store(true, Ordering::Release);
        state.authorize_writer(0);
        let mut db = DbReader {
            discovery_key,
            key,
            local: state.local,
            local_key: state.writers[state.local].key,
            state: RwLock::new(state),
            registry,
            cache: cache.clone(),
            storage,
            changes: Changes::new(0),
            content_enabled: options.content_feed,
            read_only,
            durability: options.durability,
            delivered: Default::default(),
            policy: Default::default(),
            key_index: None,
            latest: crate::latest_index::LatestIndex::new(options.cache_bytes),
            path_index: crate::path_index::PathIndex::new(options.cache_bytes, cache.clone()),
        };
        if db.content_enabled {
            db.open_local_content()?;
        }
        let feed_set = db.state().feed_set;
        db.changes = Changes::new(feed_set);
        Ok(db)
    }

    /// Opens the key index when the database has one writer and this
    /// replica is it (its owner): see [`crate::key_index`]. Call it once
    /// the writers are discovered, before anything is written. A database
    /// whose index cannot be built has none: its lookups walk.
    pub(crate) fn open_key_index(&mut self) {
        if self.local != 0 || self.state().writers.len() != 1 {
            return;
        }
        let length = self.state().writers[0].feed.len();
        if length > 1 {
            // Another writer's entries seen: lookups would walk anyway.
            let head = self.node(0, length - 1).ok().flatten();
            if head.is_none_or(|h| h.clock.iter().skip(1).any(|&c| c > 0)) {
                return;
            }
        }
        let key_of = |seq: u64| self.entry_key(0, seq).ok().flatten();
        self.key_index =
            KeyIndex::open(&self.storage, self.key, self.read_only, length, key_of).map(Arc::new);
    }

    /// The key of entry `seq` of writer `writer`, read through its
    /// read-ahead and decoded alone (the rest of the entry is not):
    /// `Ok(None)` when the entry does not decode, an error when it cannot
    /// be read.
    pub(crate) fn entry_key(&self, writer: usize, seq: u64) -> Result<Option<String>> {
        let blocks = self.registry.get(writer).map(|w| &w.blocks);
        let block = match blocks.and_then(|b| b.get(seq).ok()) {
            Some(block) => block,
            None => {
                let state = self.state();
                let Some(w) = state.writers.get(writer) else {
                    return Ok(None);
                };
                w.feed.get(seq)?
            }
        };
        Ok(
            <crate::messages::EntryKey as prost::Message>::decode(bytes::Bytes::from(block))
                .ok()
                .map(|e| e.key),
        )
    }

    /// What the key index holds: `None` when the database has none (more
    /// than one writer, or this replica is not the owner). The index is
    /// derived from the source feed and kept in `index/` beside the feeds;
    /// deleting that folder loses nothing (the next opening rebuilds it).
    ///
    /// ```
    /// use hyperdb::{Db, DbStorage, OpenOptions};
    /// let db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
    /// db.put("a", b"1").unwrap();
    /// // The header and the put.
    /// assert_eq!(db.key_index().unwrap().covered, 2);
    /// ```
    pub fn key_index(&self) -> Option<crate::KeyIndexInfo> {
        self.key_index.as_deref().map(KeyIndex::info)
    }

    /// What the index of each key's latest entry in every writer's feed
    /// holds. It is held in memory only, built from the feeds, and answers
    /// lookups of a database with several writers (or a replica's of a
    /// database with one) by reading the entries holding the key, where a
    /// walk visits about one entry per writer. `None` until lookups have
    /// walked through as many entries as building it reads (a process that
    /// looks up a few keys never builds it), for a database of more entries
    /// than [`OpenOptions::cache_bytes`] / 64 (a million for the default
    /// 64 MiB), and while a lookup is catching it up. Its negative answers
    /// are exact too, so lookups of absent keys in a database with one
    /// writer, which the key index cannot answer, build it as well.
    ///
    /// ```
    /// use hyperdb::{Db, DbStorage, OpenOptions};
    /// let db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
    /// db.put("a", b"1").unwrap();
    /// assert!(db.latest_index().is_none());
    /// // Lookups that walk (here of keys not there) until they have visited
    /// // as many entries as building the index reads.
    /// for _ in 0..4 {
    ///     assert!(db.get("b").unwrap().is_empty());
    /// }
    /// let index = db.latest_index().unwrap();
    /// assert_eq!((index.entries, index.keys), (1, 1));
    /// ```
    pub fn latest_index(&self) -> Option<crate::LatestIndexInfo> {
        self.latest.info()
    }

    /// What the index of paths holds, from which a put to a database with
    /// one writer finds its new entry's trie without walking: the latest
    /// entry under every prefix of the paths written. It is held in memory,
    /// built from the feed, and written to `index/` when the database
    /// closes, for the next writer to read back. `None` until puts have
    /// walked through as many entries as building it reads, or an eighth of
    /// that when a file can be read back (a process that writes a few keys
    /// never builds it), for a database whose keys would take more than
    /// three quarters of [`OpenOptions::cache_bytes`] (about 40 bytes a
    /// key: some 1.2 million keys for the default 64 MiB, however many
    /// times each was written) or with several writers, and after two keys
    /// of the same path (a hash collision) turned up.
    ///
    /// ```
    /// use hyperdb::{Db, DbStorage, OpenOptions};
    /// let db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
    /// db.put("a", b"1").unwrap();
    /// assert!(db.path_index().is_none());
    /// // Puts that walk, until they have read as many entries as building
    /// // the index reads; then it answers every put.
    /// for i in 0..100 {
    ///     db.put(&format!("k/{i}"), b"1").unwrap();
    /// }
    /// let index = db.path_index().unwrap();
    /// // The header and 101 entries, of 101 paths.
    /// assert_eq!((index.covered, index.paths), (102, 101));
    /// ```
    pub fn path_index(&self) -> Option<crate::PathIndexInfo> {
        self.path_index.info()
    }

    /// The state, shared with other readers. Never held across a call
    /// that takes it again: a waiting writer would block the second read.
    pub(crate) fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    /// The state, alone: for an append or a newly found writer.
    pub(crate) fn state_mut(&self) -> StateMut<'_> {
        StateMut::new(self.state.write())
    }

    /// What opening the feeds repaired after a crash or damage, by feed
    /// folder (`source`, `local`, `peers/<discovery key>` ...). Empty when
    /// every feed was as it was left.
    pub fn recovered(&self) -> Vec<(String, Recovery)> {
        self.state().recovered.clone()
    }

    /// Whether this is a [`ReadOnlyDb`](crate::ReadOnlyDb)'s state.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Options for a feed this database opens or creates.
    pub(crate) fn feed_options(&self, key: Option<[u8; 32]>) -> FeedOptions {
        FeedOptions {
            key,
            read_only: self.read_only,
            durability: self.durability,
            ..Default::default()
        }
    }

    /// The database key: the source feed's key. Share it to let others
    /// replicate.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The discovery key: a hash of the db key, safe to announce.
    pub fn discovery_key(&self) -> &[u8; 32] {
        &self.discovery_key
    }

    /// This replica's writer key: what another writer must `authorize` for
    /// this replica's writes to count.
    pub fn local_key(&self) -> &[u8; 32] {
        &self.local_key
    }

    /// Where the database lives.
    pub fn storage(&self) -> &DbStorage {
        &self.storage
    }

    /// A subscriber to this database's changes: it is woken when a feed it
    /// wants grows (by a local write or a replicated block) or when the set
    /// of replicated feeds changes. A live replication session wants the
    /// feeds its peer wants; a watch wants all of them.
    ///
    /// ```
    /// # use hyperdb::{Db, DbStorage, OpenOptions};
    /// let db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
    /// let changes = db.subscribe();
    /// changes.want([*db.local_key()]);
    /// db.put("a", b"1").unwrap();
    /// assert_eq!(changes.try_changed().unwrap().feeds, vec![*db.local_key()]);
    /// ```
    pub fn subscribe(&self) -> Subscription {
        self.changes.subscribe()
    }

    /// Publishes that `feeds` grew to the subscribers that want them, and a
    /// change of the feed set to all when there was one. Writers found in
    /// the new entries are looked for first, so the feed set is current.
    /// `from` is the publisher's own subscription, which is not woken.
    pub(crate) fn changed(&self, feeds: &[[u8; 32]], from: Option<&Subscription>) {
        // The change happened whatever this finds: a feed list that cannot
        // be read now fails the next read that needs it, which says why.
        let _ = self.discover();
        let feed_set = self.state().feed_set;
        self.changes.publish(feeds, feed_set, from);
    }

    /// Whether this replica owns the database (its writer is the source).
    pub fn is_owner(&self) -> bool {
        self.local == 0
    }

    /// Every known writer, in the database's order.
    pub fn writers(&self) -> Vec<WriterInfo> {
        let state = self.state();
        state
            .writers
            .iter()
            .enumerate()
            .map(|(i, w)| WriterInfo {
                key: w.key,
                length: w.feed.len(),
                authorized: w.authorized,
                source: i == 0,
                local: i == self.local,
                content_key: w.content.as_ref().map(|f| *f.key()),
            })
            .collect()
    }

    /// The content feed of writer `index`, once known.
    pub fn content_feed(&self, index: usize) -> Option<FeedReader<'_>> {
        let key = *self.state().feed(index, true)?.key();
        Some(FeedReader {
            db: self,
            id: index,
            content: true,
            key,
        })
    }

    /// The feed of writer `index`, to read.
    pub fn feed(&self, index: usize) -> Option<FeedReader<'_>> {
        let key = *self.state().feed(index, false)?.key();
        Some(FeedReader {
            db: self,
            id: index,
            content: false,
            key,
        })
    }

    /// Runs `f` on the feed (a writer's or a content feed) with `key`,
    /// beside other readers; `None` when there is no such feed.
    pub(crate) fn read_feed<T>(&self, key: &[u8; 32], f: impl FnOnce(&Feed) -> T) -> Option<T> {
        self.state().feed_by_key(key).map(f)
    }

    /// Derives this replica's content feed from its writer's secret key, as
    /// hyperdb 3.5.0 does, and opens it.
    pub(crate) fn open_local_content(&self) -> Result<()> {
        let local = self.local;
        let (secret, dk) = {
            let state = self.state();
            let feed = &state.writers[local].feed;
            (feed.secret_key(), *feed.discovery_key())
        };
        let Some(secret) = secret else {
            return Ok(());
        };
        let master: [u8; 32] = secret[..32].try_into().expect("64-byte secret key");
        let seed = hypercore_feed::crypto::derive_subkey(&master, 1, b"hyperdb1");
        let pair = hypercore_feed::KeyPair::from_seed(&seed);
        let dir = format!("content/{}", hex::encode(dk));
        let feed = self.storage.open_feed(
            &dir,
            FeedOptions {
                secret_key: Some(pair.secret_key),
                store_secret_key: false,
                ..self.feed_options(Some(pair.public_key))
            },
        )?;
        let mut state = self.state_mut();
        state.note_recovery(&dir, &feed);
        state.writers[local].content_feed = Some(pair.public_key.to_vec());
        state.writers[local].content = Some(feed);
        state.feed_set += 1;
        Ok(())
    }

    /// Opens writer `id`'s content feed once its inflated entry names it.
    pub(crate) fn open_content(&self, state: &mut State, id: usize) -> Result<()> {
        let w = &state.writers[id];
        if !self.content_enabled || w.content.is_some() {
            return Ok(());
        }
        let Some(key) = w
            .content_feed
            .as_deref()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
        else {
            return Ok(());
        };
        let dir = format!("content/{}", hex::encode(w.feed.discovery_key()));
        let feed = self.storage.open_feed(&dir, self.feed_options(Some(key)))?;
        state.note_recovery(&dir, &feed);
        state.writers[id].content = Some(feed);
        state.feed_set += 1;
        Ok(())
    }

    /// Index of the writer with this feed key.
    pub fn writer_index(&self, key: &[u8; 32]) -> Option<usize> {
        self.state().by_key.get(key).copied()
    }

    /// Whether writer `index`'s entries count in answers: authorized writers
    /// and this replica's own.
    pub(crate) fn included(&self, index: usize) -> bool {
        self.state().included(index)
    }

    /// Adds the writer with `key`, opening its feed under `peers/`.
    pub(crate) fn add_writer(&self, key: &[u8; 32]) -> Result<usize> {
        self.add_writer_to(&mut self.state_mut(), key)
    }

    pub(crate) fn add_writer_to(&self, state: &mut State, key: &[u8; 32]) -> Result<usize> {
        if let Some(&id) = state.by_key.get(key) {
            return Ok(id);
        }
        let dk = hypercore_feed::crypto::discovery_key(key);
        let dir = format!("peers/{}", hex::encode(dk));
        let feed = self
            .storage
            .open_feed(&dir, self.feed_options(Some(*key)))?;
        let blocks = self.storage.block_reader(&dir, &feed);
        Ok(state.push_writer(&self.registry, &dir, feed, &self.cache, blocks))
    }

    /// Reads under one hold of the state, for a lookup's many steps.
    pub(crate) fn reading(&self) -> Reading<'_> {
        Reading {
            db: self,
            guard: RefCell::new(None),
        }
    }

    /// Loads every writer's latest entry until no new writer turns up.
    pub(crate) fn discover(&self) -> Result<()> {
        self.reading().discover()
    }

    /// The latest entry of writer `id` (none for a feed with only its header).
    pub(crate) fn writer_head(&self, id: usize) -> Result<Option<Arc<Node>>> {
        self.reading().writer_head(id)
    }

    /// The current heads: the latest entry of every counted writer, less
    /// those another head has seen.
    pub fn heads(&self) -> Result<Vec<Arc<Node>>> {
        self.reading().heads()
    }

    /// How much of every writer's feed counts in answers (header included),
    /// in the order of [`DbReader::writers`]. Less than a feed's length
    /// while its later entries wait for what they saw of other writers to
    /// arrive here (a lookup starts only from entries whose past is stored
    /// here), or when they do not decode; the local writer's whole feed
    /// always counts. Writers that are not authorized count nothing,
    /// whatever this says of them.
    pub fn counted(&self) -> Result<Vec<u64>> {
        let lengths = self.reading().heads_delivered()?.lengths;
        let writers = self.state().writers.len();
        Ok((0..writers)
            .map(|i| lengths.get(i).copied().unwrap_or(0))
            .collect())
    }

    /// Entry `seq` of writer `feed`, decoded; `None` when it is not stored
    /// here (yet).
    pub fn node(&self, feed: usize, seq: u64) -> Result<Option<Arc<Node>>> {
        self.reading().node(feed, seq)
    }

    /// [`DbReader::node`] for a lookup of the one entry an index named:
    /// what it decodes is cached while the cache has room, and once it is
    /// full from the entry's second read on.
    pub(crate) fn named_node(&self, feed: usize, seq: u64) -> Result<Option<Arc<Node>>> {
        self.reading().named_node(feed, seq)
    }

    /// [`DbReader::node`] for a scan: what it decodes is not cached.
    pub(crate) fn scan_node(&self, feed: usize, seq: u64) -> Result<Option<Arc<Node>>> {
        self.reading().scan_node(feed, seq)
    }

    /// Drops entry `seq` of writer `feed` from the cache of decoded
    /// entries, if there.
    pub(crate) fn uncache(&self, feed: usize, seq: u64) {
        if let Some(w) = self.registry.get(feed) {
            w.cache.remove(feed, seq);
        }
    }

    pub(crate) fn cache(&self, feed: usize, node: Arc<Node>) {
        if let Some(w) = self.registry.get(feed) {
            w.cache.insert(feed, node);
        }
    }

    /// The heads a new local write builds on, and the clock it claims:
    /// what those heads were built from (every writer's delivered length,
    /// see [`crate::delivery`]), and never less of any writer than the
    /// local writer's latest entry claimed (a clock only grows).
    pub(crate) fn heads_and_clock(&self) -> Result<(Vec<Arc<Node>>, Vec<u64>)> {
        let (heads, latest) = {
            let reading = self.reading();
            (reading.heads_delivered()?, reading.writer_head(self.local)?)
        };
        let state = self.state();
        let clock = (0..state.writers.len())
            .map(|i| {
                if i == self.local {
                    return state.writers[i].clock;
                }
                let delivered = heads.lengths.get(i).copied().unwrap_or(0);
                let claimed = latest
                    .as_ref()
                    .and_then(|n| n.clock.get(i).copied())
                    .unwrap_or(0);
                delivered.max(claimed)
            })
            .collect();
        Ok((heads.nodes.to_vec(), clock))
    }

    /// All current values of `key`: the writes to it that no other write to
    /// it has seen, deletes left out. Several values mean concurrent writes.
    pub fn get(&self, key: &str) -> Result<Vec<Arc<Node>>> {
        let heads = self.reading().shared_heads()?;
        let policy = self.policy_for(&heads)?;
        get::get(self, &heads, hash::normalize(key), policy.as_deref())
    }

    /// Every live key under `prefix` with its current values, in the
    /// reference's order (by path hash: see [`crate::iter`]).
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<Arc<Node>>)>> {
        self.iter(prefix, IterOptions::default())?.collect()
    }

    /// A lazy iterator over the keys under `prefix` and their current
    /// values (conflicts grouped per key). It reads from the heads it
    /// started with, and never keeps writers waiting.
    ///
    /// ```
    /// use hyperdb::{Db, DbStorage, IterOptions, OpenOptions};
    /// let db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
    /// db.put("fruit/apple", b"red").unwrap();
    /// db.put("fruit/kiwi", b"green").unwrap();
    /// db.put("veg/leek", b"white").unwrap();
    /// let fruit: Vec<String> = db
    ///     .iter("fruit", IterOptions::default())
    ///     .unwrap()
    ///     .map(|entry| entry.unwrap().0)
    ///     .collect();
    /// assert_eq!(fruit.len(), 2);
    /// ```
    pub fn iter(&self, prefix: &str, options: IterOptions) -> Result<Iter<'_>> {
        let heads = self.heads()?;
        let policy = self.policy_for(&heads)?;
        Iter::new(self, &heads, policy, prefix, options)
    }

    /// The closest nodes under `prefix` from the current heads (what a watch
    /// compares), as (writer, seq), and the policy of the heads (a
    /// revocation arriving changes what counts, not these nodes).
    pub(crate) fn prefix_nodes(&self, prefix: &str) -> Result<crate::diff::Watched> {
        let heads = self.heads()?;
        let nodes = crate::iter::prefix_nodes(self, &heads, prefix)?
            .iter()
            .map(|n| (n.feed, n.seq))
            .collect();
        Ok((nodes, self.policy_for(&heads)?))
    }

    /// [`DbReader::get`] with options: keep deletes among the answers, and see
    /// every entry the lookup reads (hyperdb 3.5.0's `onlookup` hook). The
    /// reference's `map`, `reduce` and `firstNode` options are ordinary
    /// iterator calls on the answer:
    ///
    /// ```
    /// use hyperdb::{Db, DbStorage, GetOptions, OpenOptions};
    /// let db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
    /// db.put("a", b"1").unwrap();
    /// db.del("a").unwrap();
    /// let mut read = Vec::new();
    /// let answer = db
    ///     .get_with("a", GetOptions { deletes: true, on_lookup: Some(&mut |ptr| read.push(ptr)) })
    ///     .unwrap();
    /// assert!(answer[0].deleted);
    /// assert!(!read.is_empty());
    /// let first = db.get("a").unwrap().into_iter().next(); // firstNode
    /// assert!(first.is_none());
    /// ```
    pub fn get_with(&self, key: &str, options: GetOptions<'_>) -> Result<Vec<Arc<Node>>> {
        let heads = self.heads()?;
        let mut ignore = |_| {};
        let on_lookup: &mut dyn FnMut(Ptr) = match options.on_lookup {
            Some(f) => f,
            None => &mut ignore,
        };
        let key = hash::normalize(key);
        let candidates = get::candidates_with(self, &heads, key, on_lookup)?;
        let policy = self.policy_for(&heads)?;
        let candidates = get::counting(self, candidates, key, policy.as_deref())?;
        Ok(get::latest(candidates, options.deletes))
    }

    /// Whether the writer with feed `key` may write: the source, and every
    /// feed an authorized writer lists.
    pub fn is_authorized(&self, key: &[u8]) -> Result<bool> {
        let key: [u8; 32] = key.try_into().map_err(|_| Error::BadKeyLength(key.len()))?;
        self.discover()?;
        let state = self.state();
        Ok(state
            .by_key
            .get(&key)
            .is_some_and(|&id| state.writers[id].authorized))
    }
}
