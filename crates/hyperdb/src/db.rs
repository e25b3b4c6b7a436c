//! The database: its writers, their feeds, authorization and discovery.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hypercore_feed::cache::{Cache, KeyMap};
use hypercore_feed::{Feed, FeedOptions, FileStorage, MemoryStorage};
use prost::Message;

use crate::error::{Error, Result};
use crate::iter::{Iter, IterOptions};
use crate::messages::{FeedKey, Header, InflatedEntry};
use crate::node::Node;
use crate::trie::{Ptr, Trie};
use crate::{get, hash, put};

/// Where a database keeps its feeds.
#[derive(Clone, Debug)]
pub enum DbStorage {
    /// A folder, laid out as hyperdb 3.5.0 does: `source/`, `local/`,
    /// `peers/<discovery key>/`.
    Dir(PathBuf),
    /// In memory, for tests and short-lived replicas. Clones share the feeds.
    Memory(Arc<Mutex<HashMap<String, MemoryStorage>>>),
}

impl DbStorage {
    /// Fresh in-memory storage.
    pub fn memory() -> Self {
        DbStorage::Memory(Default::default())
    }

    fn open_feed(&self, dir: &str, options: FeedOptions) -> hypercore_feed::Result<Feed> {
        match self {
            DbStorage::Dir(root) => Feed::open(FileStorage::new(root.join(dir)), options),
            DbStorage::Memory(feeds) => {
                let storage = feeds
                    .lock()
                    .expect("memory storage lock")
                    .entry(dir.to_string())
                    .or_default()
                    .clone();
                Feed::open(storage, options)
            }
        }
    }

    fn has_feed(&self, dir: &str) -> bool {
        match self {
            DbStorage::Dir(root) => root.join(dir).join("key").exists(),
            DbStorage::Memory(feeds) => feeds
                .lock()
                .expect("memory storage lock")
                .get(dir)
                .is_some_and(|s| !s.contents("key").is_empty()),
        }
    }

    fn describe(&self) -> String {
        match self {
            DbStorage::Dir(root) => root.display().to_string(),
            DbStorage::Memory(_) => "memory".into(),
        }
    }
}

/// Takes the writer lock of the folder `root` (creating the folder): an
/// exclusive advisory lock (`flock`) on the folder itself, so that two
/// processes never append to the same feeds. It is released when the file
/// closes, even when the process dies. On a file system without locks
/// (some network mounts) the database opens unlocked, as the reference's
/// always do.
fn lock_folder(root: &Path) -> Result<Option<std::fs::File>> {
    let io_error = |source| Error::Io {
        path: root.display().to_string(),
        source,
    };
    std::fs::create_dir_all(root).map_err(io_error)?;
    let folder = std::fs::File::open(root).map_err(io_error)?;
    match folder.try_lock() {
        Ok(()) => Ok(Some(folder)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked(root.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
            Ok(None)
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(e)),
    }
}

/// How to open a database.
///
/// One process writes a folder at a time; others may read it:
///
/// ```
/// use hyperdb::{Db, Error, OpenOptions};
///
/// let dir = tempfile::tempdir().unwrap();
/// let mut writer = Db::open(dir.path()).unwrap();
/// writer.put("a", b"1").unwrap();
/// // A second writer is refused, a reader is welcome.
/// assert!(matches!(Db::open(dir.path()), Err(Error::Locked(_))));
/// let read_only = OpenOptions { read_only: true, ..Default::default() };
/// let mut reader = Db::open_with(dir.path(), read_only).unwrap();
/// assert_eq!(reader.get("a").unwrap().len(), 1);
/// assert!(matches!(reader.put("b", b"2"), Err(Error::ReadOnly(_))));
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// The database key, to open a replica of an existing database.
    pub key: Option<[u8; 32]>,
    /// The owner's secret key, to create a database with a known key pair.
    pub secret_key: Option<[u8; 64]>,
    /// Create the database (or the replica) when the folder is empty.
    pub create: bool,
    /// Decoded entries kept in memory, per writer.
    pub cache_size: usize,
    /// Give every writer a content feed for large values (hyperdb 3.5.0's
    /// `contentFeed` option), stored under `content/` and replicated with
    /// the database.
    pub content_feed: bool,
    /// Open for reading only: take no lock, so this works while another
    /// process writes the folder, and refuse every write
    /// ([`Error::ReadOnly`]). A read-only open never creates a database.
    pub read_only: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            key: None,
            secret_key: None,
            create: true,
            cache_size: 1 << 17,
            content_feed: false,
            read_only: false,
        }
    }
}

/// One operation of a [`Db::batch`].
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

/// Options of [`Db::get_with`].
#[derive(Default)]
pub struct GetOptions<'a> {
    /// Keep deletes among the current writes.
    pub deletes: bool,
    /// Called with every entry the lookup reads, heads first.
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

pub(crate) struct Writer {
    pub(crate) feed: Feed,
    pub(crate) key: [u8; 32],
    /// The latest list of feeds this writer published, in its numbering.
    feeds_message: Option<Vec<[u8; 32]>>,
    content_feed: Option<Vec<u8>>,
    feeds_loaded: Option<u64>,
    feeds_seq: u64,
    /// Local id → the writer's number for that feed.
    encode_map: Vec<Option<usize>>,
    /// The writer's number → local id.
    decode_map: Vec<usize>,
    clock: u64,
    authorized: bool,
    header_checked: bool,
    cache: Cache<u64, Arc<Node>>,
    content: Option<Feed>,
}

impl Writer {
    fn new(feed: Feed, cache_size: usize) -> Self {
        Writer {
            key: *feed.key(),
            feed,
            feeds_message: None,
            content_feed: None,
            feeds_loaded: None,
            feeds_seq: 0,
            encode_map: Vec::new(),
            decode_map: Vec::new(),
            clock: 0,
            authorized: false,
            header_checked: false,
            cache: Cache::new(cache_size),
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

pub(crate) struct Batching {
    pub(crate) blocks: Vec<Vec<u8>>,
    pub(crate) nodes: Vec<Arc<Node>>,
}

/// A hyperdb database: a key-value store made of one feed per writer.
///
/// ```
/// use hyperdb::{Db, DbStorage, OpenOptions};
/// let mut db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
/// db.put("hello", b"world").unwrap();
/// let values = db.get("hello").unwrap();
/// assert_eq!(values[0].value.as_deref(), Some(&b"world"[..]));
/// ```
pub struct Db {
    storage: DbStorage,
    key: [u8; 32],
    discovery_key: [u8; 32],
    pub(crate) writers: Vec<Writer>,
    by_key: KeyMap<usize>,
    pub(crate) local: usize,
    authorized_order: Vec<usize>,
    cache_size: usize,
    pub(crate) batching: Option<Batching>,
    changes: Arc<tokio::sync::Notify>,
    content_enabled: bool,
    read_only: bool,
    /// The folder's writer lock, held while the database is open for
    /// writing (none for memory storage and read-only opens).
    _lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("key", &hex::encode(self.key))
            .field("storage", &self.storage.describe())
            .field("writers", &self.writers.len())
            .finish()
    }
}

impl Db {
    /// Creates a database in `dir` (you become its owner), or opens the one
    /// there.
    pub fn open(dir: impl AsRef<Path>) -> Result<Db> {
        Self::open_with(dir, OpenOptions::default())
    }

    /// Opens the database in `dir`, with options: `key` to make or open a
    /// replica of an existing database, `create: false` to fail when there
    /// is none.
    pub fn open_with(dir: impl AsRef<Path>, options: OpenOptions) -> Result<Db> {
        Self::open_storage(DbStorage::Dir(dir.as_ref().to_path_buf()), options)
    }

    /// Opens a database in any [`DbStorage`].
    pub fn open_storage(storage: DbStorage, options: OpenOptions) -> Result<Db> {
        if (!options.create || options.read_only) && !storage.has_feed("source") {
            return Err(Error::NotFound(storage.describe()));
        }
        let lock = match (&storage, options.read_only) {
            (DbStorage::Dir(root), false) => lock_folder(root)?,
            _ => None,
        };
        let source = storage
            .open_feed(
                "source",
                FeedOptions {
                    key: options.key,
                    secret_key: options.secret_key,
                    create_if_missing: true,
                    store_secret_key: true,
                },
            )
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
        let key = *source.key();
        let mut db = Db {
            discovery_key: *source.discovery_key(),
            key,
            writers: Vec::new(),
            by_key: KeyMap::default(),
            local: 0,
            authorized_order: Vec::new(),
            cache_size: options.cache_size.max(16),
            storage,
            batching: None,
            changes: Arc::new(tokio::sync::Notify::new()),
            content_enabled: options.content_feed,
            read_only: options.read_only,
            _lock: lock,
        };
        let source_writable = source.is_writable();
        db.push_writer(source);
        if !source_writable {
            let local = db.storage.open_feed("local", FeedOptions::default())?;
            db.local = db.push_writer(local);
        }
        db.authorize_writer(0);
        if db.content_enabled {
            db.open_local_content()?;
        }
        db.writer_head(db.local)?;
        if db.writers[db.local].feed.is_empty() && !db.read_only {
            let header = Header::hyperdb().encode_to_vec();
            db.writers[db.local].feed.append(&header)?;
        }
        db.discover()?;
        Ok(db)
    }

    /// Whether the database was opened read-only ([`OpenOptions::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// An [`Error::ReadOnly`] when the database was opened read-only.
    pub(crate) fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly(self.storage.describe()));
        }
        Ok(())
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
        &self.writers[self.local].key
    }

    /// Where the database lives.
    pub fn storage(&self) -> &DbStorage {
        &self.storage
    }

    /// Wakes whoever waits for a change (a local write or a replicated
    /// block), such as a live replication that announces new blocks.
    pub fn changes(&self) -> Arc<tokio::sync::Notify> {
        self.changes.clone()
    }

    /// Signals a change to [`Db::changes`] waiters.
    pub fn changed(&self) {
        self.changes.notify_waiters();
    }

    /// Whether this replica owns the database (its writer is the source).
    pub fn is_owner(&self) -> bool {
        self.local == 0
    }

    /// Every known writer, in the database's order.
    pub fn writers(&self) -> Vec<WriterInfo> {
        self.writers
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

    /// This replica's content feed, when the database has content feeds.
    pub fn local_content(&mut self) -> Option<&mut Feed> {
        self.writers[self.local].content.as_mut()
    }

    /// The content feed of writer `index`, once known.
    pub fn content_feed(&mut self, index: usize) -> Option<&mut Feed> {
        self.writers.get_mut(index).and_then(|w| w.content.as_mut())
    }

    /// Any feed of the database by its key: a writer's or a content feed.
    pub fn feed_by_key(&mut self, key: &[u8; 32]) -> Option<&mut Feed> {
        if let Some(&i) = self.by_key.get(key) {
            return Some(&mut self.writers[i].feed);
        }
        self.writers
            .iter_mut()
            .filter_map(|w| w.content.as_mut())
            .find(|f| f.key() == key)
    }

    /// Derives this replica's content feed from its writer's secret key, as
    /// hyperdb 3.5.0 does, and opens it.
    fn open_local_content(&mut self) -> Result<()> {
        let local = self.local;
        let Some(secret) = self.writers[local].feed.secret_key() else {
            return Ok(());
        };
        let master: [u8; 32] = secret[..32].try_into().expect("64-byte secret key");
        let seed = hypercore_feed::crypto::derive_subkey(&master, 1, b"hyperdb1");
        let pair = hypercore_feed::KeyPair::from_seed(&seed);
        let dir = format!(
            "content/{}",
            hex::encode(self.writers[local].feed.discovery_key())
        );
        let feed = self.storage.open_feed(
            &dir,
            FeedOptions {
                key: Some(pair.public_key),
                secret_key: Some(pair.secret_key),
                create_if_missing: true,
                store_secret_key: false,
            },
        )?;
        self.writers[local].content_feed = Some(pair.public_key.to_vec());
        self.writers[local].content = Some(feed);
        Ok(())
    }

    /// Opens writer `id`'s content feed once its inflated entry names it.
    fn open_content(&mut self, id: usize) -> Result<()> {
        let w = &self.writers[id];
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
        let feed = self.storage.open_feed(
            &dir,
            FeedOptions {
                key: Some(key),
                ..Default::default()
            },
        )?;
        self.writers[id].content = Some(feed);
        Ok(())
    }

    /// The feed of writer `index`.
    pub fn feed(&mut self, index: usize) -> Option<&mut Feed> {
        self.writers.get_mut(index).map(|w| &mut w.feed)
    }

    /// Index of the writer with this feed key.
    pub fn writer_index(&self, key: &[u8; 32]) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    /// Whether writer `index`'s entries count in answers: authorized writers
    /// and this replica's own.
    pub(crate) fn included(&self, index: usize) -> bool {
        index == self.local || self.writers[index].authorized
    }

    fn push_writer(&mut self, feed: Feed) -> usize {
        let id = self.writers.len();
        self.by_key.insert(*feed.key(), id);
        self.writers.push(Writer::new(feed, self.cache_size));
        id
    }

    /// Adds the writer with `key`, opening its feed under `peers/`.
    pub(crate) fn add_writer(&mut self, key: &[u8; 32]) -> Result<usize> {
        if let Some(&id) = self.by_key.get(key) {
            return Ok(id);
        }
        let dk = hypercore_feed::crypto::discovery_key(key);
        let feed = self.storage.open_feed(
            &format!("peers/{}", hex::encode(dk)),
            FeedOptions {
                key: Some(*key),
                ..Default::default()
            },
        )?;
        Ok(self.push_writer(feed))
    }

    fn authorize_writer(&mut self, id: usize) {
        if self.writers[id].authorized {
            return;
        }
        self.writers[id].authorized = true;
        self.authorized_order.push(id);
        if self.writers[id].feeds_message.is_some() {
            self.update_feeds(id);
        }
    }

    /// Rebuilds writer `id`'s feed numbering from its latest feed list, and
    /// authorizes what an authorized writer lists.
    fn update_feeds(&mut self, id: usize) {
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

    /// Loads every writer's latest entry until no new writer turns up.
    pub(crate) fn discover(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.writers.len() {
            self.writer_head(i)?;
            i += 1;
        }
        Ok(())
    }

    /// The latest entry of writer `id` (none for a feed with only its header).
    pub(crate) fn writer_head(&mut self, id: usize) -> Result<Option<Arc<Node>>> {
        let available = self.writers[id].available();
        if !self.writers[id].header_checked && available > 0 {
            let w = &mut self.writers[id];
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
            w.header_checked = true;
        }
        if available < 2 {
            return Ok(None);
        }
        self.node(id, available - 1)
    }

    /// The current heads: the latest entry of every counted writer, less
    /// those another head has seen.
    pub fn heads(&mut self) -> Result<Vec<Arc<Node>>> {
        self.discover()?;
        let mut nodes = Vec::new();
        for id in 0..self.writers.len() {
            if !self.included(id) {
                continue;
            }
            if let Some(head) = self.writer_head(id)? {
                nodes.push(head);
            }
        }
        Ok(crate::node::unseen(&nodes))
    }

    /// Entry `seq` of writer `feed`, decoded; `None` when it is not stored
    /// here (yet).
    pub fn node(&mut self, feed: usize, seq: u64) -> Result<Option<Arc<Node>>> {
        if let Some(n) = self.writers.get_mut(feed).and_then(|w| w.cache.get(&seq)) {
            return Ok(Some(n.clone()));
        }
        if feed >= self.writers.len() || seq == 0 || !self.writers[feed].feed.has(seq) {
            return Ok(None);
        }
        let bad = |w: &Writer, reason: String| Error::BadEntry {
            feed: hex::encode(w.key),
            seq,
            reason,
        };
        let block = self.writers[feed].feed.get(seq)?;
        let msg = InflatedEntry::decode(block.as_slice())
            .map_err(|e| bad(&self.writers[feed], e.to_string()))?;
        let inflate = msg.inflate.unwrap_or(0);
        if inflate > seq {
            return Err(bad(
                &self.writers[feed],
                format!("its inflate pointer ({inflate}) points forward"),
            ));
        }
        let loaded = self.writers[feed].feeds_loaded;
        if loaded.is_none_or(|l| inflate > l) {
            let inflated = if inflate == seq {
                msg.clone()
            } else {
                let w = &mut self.writers[feed];
                if !w.feed.has(inflate) {
                    return Err(bad(w, format!("its inflated entry {inflate} is missing")));
                }
                let block = w.feed.get(inflate)?;
                InflatedEntry::decode(block.as_slice())
                    .map_err(|e| bad(w, format!("its inflated entry {inflate}: {e}")))?
            };
            let mut keys = Vec::with_capacity(inflated.feeds.len());
            for f in &inflated.feeds {
                let key: [u8; 32] = f.key.as_slice().try_into().map_err(|_| {
                    bad(
                        &self.writers[feed],
                        format!("a listed feed key has {} bytes", f.key.len()),
                    )
                })?;
                keys.push(key);
            }
            for key in &keys {
                self.add_writer(key)?;
            }
            let w = &mut self.writers[feed];
            w.feeds_loaded = Some(inflate);
            w.feeds_seq = inflate;
            w.feeds_message = Some(keys);
            if inflated.content_feed.is_some() {
                w.content_feed = inflated.content_feed.clone();
            }
            self.update_feeds(feed);
            self.open_content(feed)?;
        }
        let w = &self.writers[feed];
        if msg.clock.len() > w.decode_map.len() {
            return Err(bad(
                w,
                format!(
                    "its clock names {} feeds but the writer listed {}",
                    msg.clock.len(),
                    w.decode_map.len()
                ),
            ));
        }
        let mut clock = Vec::new();
        for (i, &local) in w.decode_map.iter().enumerate() {
            if local == usize::MAX {
                continue;
            }
            if clock.len() <= local {
                clock.resize(local + 1, 0);
            }
            clock[local] = msg.clock.get(i).copied().unwrap_or(0);
        }
        let trie = Trie::decode(&msg.trie, &w.decode_map).map_err(|e| bad(w, e.to_string()))?;
        let feeds = (inflate == seq).then(|| {
            msg.feeds
                .iter()
                .filter_map(|f| f.key.as_slice().try_into().ok())
                .collect()
        });
        let node = Arc::new(Node {
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
        self.cache(feed, node.clone());
        Ok(Some(node))
    }

    /// Entry `seq` of writer `feed` as stored: the message with its fields in
    /// the writer's own numbering of feeds (what the seed's printout shows).
    /// `None` when the block is not stored here or is the header.
    pub fn raw_entry(&mut self, feed: usize, seq: u64) -> Result<Option<InflatedEntry>> {
        let Some(w) = self.writers.get_mut(feed) else {
            return Ok(None);
        };
        if seq == 0 || !w.feed.has(seq) {
            return Ok(None);
        }
        let block = w.feed.get(seq)?;
        InflatedEntry::decode(block.as_slice())
            .map(Some)
            .map_err(|e| Error::BadEntry {
                feed: hex::encode(w.key),
                seq,
                reason: e.to_string(),
            })
    }

    fn cache(&mut self, feed: usize, node: Arc<Node>) {
        self.writers[feed].cache.insert(node.seq, node);
    }

    /// A node for a pointer, seeing the entries of a batch being written.
    pub(crate) fn pointer(&mut self, ptr: Ptr, in_put: bool) -> Result<Option<Arc<Node>>> {
        if in_put && ptr.feed == self.local {
            if let Some(batch) = &self.batching {
                let len = self.writers[self.local].feed.len();
                if ptr.seq >= len {
                    return Ok(batch.nodes.get((ptr.seq - len) as usize).cloned());
                }
            }
        }
        if ptr.feed < self.writers.len() && !self.included(ptr.feed) {
            return Ok(None);
        }
        match self.node(ptr.feed, ptr.seq) {
            Ok(node) => Ok(node),
            // A damaged entry behind a pointer is skipped, not fatal.
            Err(Error::BadEntry { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The clock a new local write starts from: every writer's length.
    fn clock(&self) -> Vec<u64> {
        self.writers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == self.local {
                    w.clock
                } else {
                    w.available()
                }
            })
            .collect()
    }

    /// All current values of `key`: the writes to it that no other write to
    /// it has seen, deletes left out. Several values mean concurrent writes.
    pub fn get(&mut self, key: &str) -> Result<Vec<Arc<Node>>> {
        let heads = self.heads()?;
        get::get(self, &heads, hash::normalize(key))
    }

    /// Every live key under `prefix` with its current values, in the
    /// reference's order (by path hash: see [`crate::iter`]).
    pub fn list(&mut self, prefix: &str) -> Result<Vec<(String, Vec<Arc<Node>>)>> {
        self.iter(prefix, IterOptions::default())?.collect()
    }

    /// A lazy iterator over the keys under `prefix` and their current
    /// values (conflicts grouped per key).
    ///
    /// ```
    /// use hyperdb::{Db, DbStorage, IterOptions, OpenOptions};
    /// let mut db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
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
    pub fn iter(&mut self, prefix: &str, options: IterOptions) -> Result<Iter<'_>> {
        let heads = self.heads()?;
        Iter::new(self, &heads, prefix, options)
    }

    /// The closest nodes under `prefix` from the current heads (what a watch
    /// compares), as (writer, seq).
    pub(crate) fn prefix_nodes(&mut self, prefix: &str) -> Result<Vec<(usize, u64)>> {
        let heads = self.heads()?;
        Ok(crate::iter::prefix_nodes(self, &heads, prefix)?
            .iter()
            .map(|n| (n.feed, n.seq))
            .collect())
    }

    /// [`Db::get`] with options: keep deletes among the answers, and see
    /// every entry the lookup reads (hyperdb 3.5.0's `onlookup` hook). The
    /// reference's `map`, `reduce` and `firstNode` options are ordinary
    /// iterator calls on the answer:
    ///
    /// ```
    /// use hyperdb::{Db, DbStorage, GetOptions, OpenOptions};
    /// let mut db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
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
    pub fn get_with(&mut self, key: &str, options: GetOptions<'_>) -> Result<Vec<Arc<Node>>> {
        let heads = self.heads()?;
        let mut ignore = |_| {};
        let on_lookup: &mut dyn FnMut(Ptr) = match options.on_lookup {
            Some(f) => f,
            None => &mut ignore,
        };
        let candidates = get::candidates_with(self, &heads, hash::normalize(key), on_lookup)?;
        Ok(get::latest(candidates, options.deletes))
    }

    /// Applies many operations in batches of `batch_size` (one append and
    /// one signature each), streaming them from any iterator: the
    /// reference's write stream. Returns how many were written.
    pub fn write_all(
        &mut self,
        ops: impl IntoIterator<Item = Op>,
        batch_size: usize,
    ) -> Result<usize> {
        let batch_size = batch_size.max(1);
        let mut pending = Vec::with_capacity(batch_size);
        let mut written = 0;
        for op in ops {
            pending.push(op);
            if pending.len() == batch_size {
                written += self.batch(&pending)?.len();
                pending.clear();
            }
        }
        if !pending.is_empty() {
            written += self.batch(&pending)?.len();
        }
        Ok(written)
    }

    /// Stores `value` at `key`.
    pub fn put(&mut self, key: &str, value: &[u8]) -> Result<Arc<Node>> {
        self.write_one(key, Some(value.to_vec()), false)
    }

    /// Deletes `key`.
    pub fn del(&mut self, key: &str) -> Result<Arc<Node>> {
        self.write_one(key, None, true)
    }

    fn write_one(&mut self, key: &str, value: Option<Vec<u8>>, deleted: bool) -> Result<Arc<Node>> {
        self.writable()?;
        let heads = self.heads()?;
        let clock = self.clock();
        let node = put::put(self, clock, &heads, hash::normalize(key), value, deleted)?;
        let (bytes, node) = self.encode_local(node);
        self.writers[self.local].feed.append(&bytes)?;
        self.cache(self.local, node.clone());
        self.changed();
        Ok(node)
    }

    /// Applies several puts and deletes atomically: one append, one signature.
    pub fn batch(&mut self, ops: &[Op]) -> Result<Vec<Arc<Node>>> {
        self.writable()?;
        let mut heads = self.heads()?;
        let clock = self.clock();
        self.batching = Some(Batching {
            blocks: Vec::new(),
            nodes: Vec::new(),
        });
        let result = (|| {
            for op in ops {
                let (key, value, deleted) = match op {
                    Op::Put { key, value } => (key.as_str(), Some(value.clone()), false),
                    Op::Del { key } => (key.as_str(), None, true),
                };
                let node = put::put(
                    self,
                    clock.clone(),
                    &heads,
                    hash::normalize(key),
                    value,
                    deleted,
                )?;
                let (bytes, node) = self.encode_local(node);
                let batch = self.batching.as_mut().expect("batching");
                batch.blocks.push(bytes);
                batch.nodes.push(node.clone());
                heads = vec![node];
            }
            Ok(())
        })();
        let batch = self.batching.take().expect("batching");
        if let Err(e) = result {
            // Nothing was appended: roll the writer's counter back.
            self.writers[self.local].clock -= batch.nodes.len() as u64;
            return Err(e);
        }
        self.writers[self.local].feed.append_batch(&batch.blocks)?;
        for node in &batch.nodes {
            self.cache(self.local, node.clone());
        }
        self.changed();
        Ok(batch.nodes)
    }

    /// Encodes a new local entry, inflating it when the writer's published
    /// feed list is out of date.
    fn encode_local(&mut self, mut node: Node) -> (Vec<u8>, Arc<Node>) {
        let local = self.local;
        let n_feeds = self.writers.len();
        let w = &mut self.writers[local];
        if w.clock == 0 {
            w.clock = w.feed.len();
        }
        let seq = w.clock;
        w.clock += 1;
        if node.clock.len() <= local {
            node.clock.resize(local + 1, 0);
        }
        node.clock[local] = w.clock;
        node.seq = seq;
        node.feed = local;

        let needs_inflate = w.feeds_message.as_ref().is_none_or(|m| m.len() != n_feeds);
        let mut feeds = Vec::new();
        if needs_inflate {
            let keys: Vec<Option<[u8; 32]>> = self.writers.iter().map(|w| Some(w.key)).collect();
            let w = &mut self.writers[local];
            let list: Vec<[u8; 32]> = map_list(&keys, &w.encode_map, None)
                .into_iter()
                .flatten()
                .collect();
            feeds = list.iter().map(|k| FeedKey { key: k.to_vec() }).collect();
            w.feeds_message = Some(list);
            w.feeds_loaded = Some(seq);
            w.feeds_seq = seq;
            self.update_feeds(local);
        }
        let w = &self.writers[local];
        let clock: Vec<u64> = map_list(&node.clock, &w.encode_map, 0);
        let msg = InflatedEntry {
            key: node.key.clone(),
            value: node.value.clone(),
            deleted: node.deleted.then_some(true),
            trie: node.trie.encode(&w.encode_map),
            clock,
            inflate: Some(w.feeds_seq),
            content_feed: if needs_inflate {
                w.content_feed.clone()
            } else {
                None
            },
            feeds,
        };
        node.inflate = w.feeds_seq;
        if needs_inflate {
            node.feeds = w.feeds_message.clone();
        }
        (msg.encode_to_vec(), Arc::new(node))
    }

    /// Lets the writer with feed `key` write to the database. `key` is the
    /// *local* key of the other replica (`hyperdb info` there shows it), not
    /// the database key.
    pub fn authorize(&mut self, key: &[u8]) -> Result<Arc<Node>> {
        let key: [u8; 32] = key.try_into().map_err(|_| Error::BadKeyLength(key.len()))?;
        self.writable()?;
        self.heads()?;
        if key == self.key {
            return Err(Error::AuthorizeDbKey(hex::encode(key)));
        }
        if self.is_authorized(&key)? {
            return Err(Error::AlreadyAuthorized(hex::encode(key)));
        }
        self.add_writer(&key)?;
        // The reference records an authorization as a put of the empty key
        // with no value; the new writer makes this entry an inflated one.
        self.write_one("", None, false)
    }

    /// Whether the writer with feed `key` may write: the source, and every
    /// feed an authorized writer lists.
    pub fn is_authorized(&mut self, key: &[u8]) -> Result<bool> {
        let key: [u8; 32] = key.try_into().map_err(|_| Error::BadKeyLength(key.len()))?;
        self.discover()?;
        Ok(self
            .by_key
            .get(&key)
            .is_some_and(|&id| self.writers[id].authorized))
    }
}

/// The reference's `_mapList`: moves `list[i]` to position `map[i]`, keeps
/// unmapped tail entries in place, and fills holes with `default`.
fn map_list<T: Clone>(list: &[T], map: &[Option<usize>], default: T) -> Vec<T> {
    let mut mapped: Vec<Option<T>> = Vec::new();
    let set = |mapped: &mut Vec<Option<T>>, at: usize, value: T| {
        if mapped.len() <= at {
            mapped.resize(at + 1, None);
        }
        mapped[at] = Some(value);
    };
    for (i, target) in map.iter().enumerate() {
        if let Some(target) = target {
            let value = list.get(i).cloned().unwrap_or_else(|| default.clone());
            set(&mut mapped, *target, value);
        }
    }
    for (i, value) in list.iter().enumerate().skip(map.len()) {
        set(&mut mapped, i, value.clone());
    }
    mapped
        .into_iter()
        .map(|v| v.unwrap_or_else(|| default.clone()))
        .collect()
}
