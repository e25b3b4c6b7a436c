//! The writable database handle and the one write path: put, delete,
//! batch and authorize, each an append to this replica's own feed.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Arc;

use hypercore_feed::{Feed, FeedOptions};
use prost::Message;

use crate::db::{Batching, DbReader, Op, OpenOptions};
use crate::error::{Error, Result};
use crate::lock::FolderLock;
use crate::messages::{FeedKey, Header, InflatedEntry};
use crate::node::Node;
use crate::storage::DbStorage;
use crate::{hash, put};

/// A hyperdb database open for writing: a key-value store made of one feed
/// per writer. Every read of [`DbReader`] works on it too.
///
/// One process writes a folder at a time: opening takes the folder's lock,
/// and a second writer gets [`Error::Locked`]. A
/// [`ReadOnlyDb`](crate::ReadOnlyDb) reads beside it.
///
/// ```
/// use hyperdb::{Db, Error, ReadOnlyDb};
///
/// let dir = tempfile::tempdir().unwrap();
/// let mut db = Db::open(dir.path()).unwrap();
/// db.put("a", b"1").unwrap();
/// assert!(matches!(Db::open(dir.path()), Err(Error::Locked(_))));
/// let mut reader = ReadOnlyDb::open(dir.path()).unwrap();
/// assert_eq!(reader.get("a").unwrap().len(), 1);
/// ```
pub struct Db {
    reader: DbReader,
    /// The folder's writer lock (none for memory storage).
    _lock: Option<FolderLock>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("reader", &self.reader).finish()
    }
}

impl Deref for Db {
    type Target = DbReader;

    fn deref(&self) -> &DbReader {
        &self.reader
    }
}

impl DerefMut for Db {
    fn deref_mut(&mut self) -> &mut DbReader {
        &mut self.reader
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
        Self::open_storage(DbStorage::dir(dir.as_ref()), options)
    }

    /// Opens a database in any [`DbStorage`].
    ///
    /// A new database is created whole or not at all: its `source` feed (and
    /// a replica's `local` writer, made first) are built in a staging
    /// folder, synced and renamed into place, so a crash leaves either no
    /// database or a whole one, and keys are only ever made for a folder
    /// with no feed in it. Opening repairs what a crash left in the feeds
    /// ([`DbReader::recovered`] says what).
    pub fn open_storage(storage: DbStorage, options: OpenOptions) -> Result<Db> {
        let lock = storage.lock()?;
        storage.clean_staging()?;
        let header = |feed: &mut Feed| -> Result<()> {
            feed.append(&Header::hyperdb().encode_to_vec())?;
            Ok(())
        };
        if !storage.has_feed("source") {
            if !options.create {
                return Err(Error::NotFound(storage.describe()));
            }
            let source = FeedOptions {
                key: options.key,
                secret_key: options.secret_key,
                ..Default::default()
            };
            if options.key.is_some() && options.secret_key.is_none() {
                // A replica: its own writer first, so that a database whose
                // source exists always has one.
                if !storage.has_feed("local") {
                    storage.create_feed("local", FeedOptions::default(), header)?;
                }
                storage.create_feed("source", source, |_| Ok(()))?;
            } else {
                storage.create_feed("source", source, header)?;
            }
        }
        // A replica (its source has no secret key) whose own writer is
        // missing: made by hyperdb 3.5.0, which creates it lazily, or damaged.
        let replica = !storage.has_file("source", "secret_key") && options.secret_key.is_none();
        if replica && !storage.has_feed("local") {
            storage.create_feed("local", FeedOptions::default(), header)?;
        }
        let mut reader = DbReader::load(storage, &options, false)?;
        let local = reader.local;
        reader.writer_head(local)?;
        if reader.writers[local].feed.is_empty() {
            // A folder hyperdb 3.5.0 made (or one from before creation was
            // atomic) whose writer never wrote its header.
            header(&mut reader.writers[local].feed)?;
        }
        reader.discover()?;
        Ok(Db {
            reader,
            _lock: lock,
        })
    }

    /// This replica's content feed, when the database has content feeds.
    pub fn local_content(&mut self) -> Option<&mut Feed> {
        let local = self.local;
        self.writers[local].content.as_mut()
    }

    /// The feed of writer `index`, to write to directly: bypassing the
    /// database's write path, for tools and tests (an entry appended here
    /// must be one the database can decode).
    pub fn feed_mut(&mut self, index: usize) -> Option<&mut Feed> {
        self.writers.get_mut(index).map(|w| &mut w.feed)
    }

    /// With [`Durability::Fsync`](hypercore_feed::Durability), syncs the
    /// blocks replication stored since the last sync (replication does this
    /// itself when a session ends and every few seconds in live mode).
    pub fn sync_pending(&mut self) -> Result<()> {
        self.each_feed(Feed::sync_pending)
    }

    /// Makes every write so far durable (syncs every feed), whatever the
    /// [`Durability`](hypercore_feed::Durability) the database was opened
    /// with.
    pub fn sync(&mut self) -> Result<()> {
        self.each_feed(Feed::sync_all)
    }

    /// Runs `f` on every writer's feed and content feed.
    fn each_feed(
        &mut self,
        mut f: impl FnMut(&mut Feed) -> hypercore_feed::Result<()>,
    ) -> Result<()> {
        for w in &mut self.writers {
            f(&mut w.feed)?;
            if let Some(content) = &mut w.content {
                f(content)?;
            }
        }
        Ok(())
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
        let heads = self.heads()?;
        let clock = self.clock();
        let node = put::put(self, clock, &heads, hash::normalize(key), value, deleted)?;
        let (bytes, node) = self.encode_local(node);
        let local = self.local;
        self.writers[local].feed.append(&bytes)?;
        self.cache(local, node.clone());
        self.changed();
        Ok(node)
    }

    /// Applies several puts and deletes atomically: one append, one signature.
    pub fn batch(&mut self, ops: &[Op]) -> Result<Vec<Arc<Node>>> {
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
            let local = self.local;
            self.writers[local].clock -= batch.nodes.len() as u64;
            return Err(e);
        }
        let local = self.local;
        self.writers[local].feed.append_batch(&batch.blocks)?;
        for node in &batch.nodes {
            self.cache(local, node.clone());
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
        self.heads()?;
        if key == *self.key() {
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
