//! The writable database handle and the one write path: put, delete,
//! batch and authorize, each an append to this replica's own feed.

use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use hypercore_feed::{Feed, FeedOptions};
use prost::Message;

use crate::db::{DbReader, Op, OpenOptions};
use crate::error::{Error, Result};
use crate::lock::FolderLock;
use crate::messages::{FeedKey, Header, InflatedEntry};
use crate::node::Node;
use crate::policy::Record;
use crate::put::Batching;
use crate::storage::DbStorage;
use crate::{hash, put};

/// A hyperdb database open for writing: a key-value store made of one feed
/// per writer. Every read of [`DbReader`] works on it too.
///
/// A `Db` is a handle: clones are cheap and share one open database, and
/// it is `Send + Sync`, so threads (and replication tasks) each take a
/// clone. Reads run in parallel and wait for a write in progress only when
/// they need an entry it stored and has not flushed yet, and then only for
/// the moment its blocks are appended; writes are made one at a time.
///
/// One process writes a folder at a time: opening takes the folder's lock,
/// and a second writer gets [`Error::Locked`]. A
/// [`ReadOnlyDb`](crate::ReadOnlyDb) reads beside it.
///
/// ```
/// use hyperdb::{Db, Error, ReadOnlyDb};
///
/// let dir = tempfile::tempdir().unwrap();
/// let db = Db::open(dir.path()).unwrap();
/// db.put("a", b"1").unwrap();
/// assert!(matches!(Db::open(dir.path()), Err(Error::Locked(_))));
/// let mut reader = ReadOnlyDb::open(dir.path()).unwrap();
/// assert_eq!(reader.get("a").unwrap().len(), 1);
/// ```
#[derive(Clone)]
pub struct Db {
    inner: Arc<Shared>,
}

/// What the clones of a [`Db`] share.
struct Shared {
    reader: DbReader,
    /// Taken by each local write for its whole length, so that writes are
    /// made one at a time; readers never take it.
    writing: Mutex<()>,
    /// The folder's writer lock (none for memory storage), released after
    /// the feeds are closed.
    _lock: Option<FolderLock>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // While the folder is still locked.
        if let Some(index) = &self.reader.key_index {
            index.close();
        }
        self.reader.path_index.close(&self.reader);
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("reader", &self.inner.reader)
            .finish()
    }
}

impl Deref for Db {
    type Target = DbReader;

    fn deref(&self) -> &DbReader {
        &self.inner.reader
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
        let local = FeedOptions {
            secret_key: options.local_secret_key,
            ..Default::default()
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
                    storage.create_feed("local", local.clone(), header)?;
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
            storage.create_feed("local", local.clone(), header)?;
        }
        let mut reader = DbReader::load(storage, &options, false)?;
        let local = reader.local;
        reader.writer_head(local)?;
        {
            let mut state = reader.state_mut();
            if state.writers[local].feed.is_empty() {
                // A folder hyperdb 3.5.0 made (or one from before creation
                // was atomic) whose writer never wrote its header.
                header(&mut state.writers[local].feed)?;
            }
        }
        reader.discover()?;
        reader.open_key_index();
        Ok(Db {
            inner: Arc::new(Shared {
                reader,
                writing: Mutex::new(()),
                _lock: lock,
            }),
        })
    }

    /// Waits for the local write in progress, if any, and keeps others out.
    fn writing(&self) -> MutexGuard<'_, ()> {
        self.inner.writing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on this replica's content feed, when the database has
    /// content feeds (to append a large value, say); `None` otherwise.
    pub fn with_local_content<T>(&self, f: impl FnOnce(&mut Feed) -> T) -> Option<T> {
        let _writing = self.writing();
        let mut state = self.state_mut();
        state.rescan = true;
        let content = state.writers[self.local].content.as_mut()?;
        let key = *content.key();
        let result = f(content);
        drop(state);
        self.changed(&[key], None);
        Some(result)
    }

    /// Runs `f` on the feed of writer `index`, to write to it directly:
    /// bypassing the database's write path, for tools and tests (an entry
    /// appended here must be one the database can decode).
    pub fn with_feed_mut<T>(&self, index: usize, f: impl FnOnce(&mut Feed) -> T) -> Option<T> {
        let _writing = self.writing();
        let mut state = self.state_mut();
        // `f` may drop blocks (an audit does): count them afresh.
        state.rescan = true;
        let feed = &mut state.writers.get_mut(index)?.feed;
        let key = *feed.key();
        let result = f(feed);
        drop(state);
        self.changed(&[key], None);
        Some(result)
    }

    /// With [`Durability::Fsync`](hypercore_feed::Durability), syncs the
    /// blocks replication stored since the last sync (replication does this
    /// itself when a session ends and every few seconds in live mode).
    pub fn sync_pending(&self) -> Result<()> {
        self.each_feed(Feed::sync_pending)
    }

    /// With [`Durability::Fsync`](hypercore_feed::Durability), makes the
    /// replicated blocks a new entry is about to count durable first. An
    /// entry's clock says how much of every writer its author had; were
    /// those blocks still unsynced, a power cut could keep the synced entry
    /// and lose them, and the author's next entry would count fewer (its
    /// clock going back), which breaks the causal order on every replica.
    /// Without it nothing is synced, so there is nothing to order: the
    /// write does no extra pass over the feeds.
    fn sync_before_writing(&self) -> Result<()> {
        if self.durability != hypercore_feed::Durability::Fsync {
            return Ok(());
        }
        self.sync_pending()
    }

    /// Makes every write so far durable (syncs every feed), whatever the
    /// [`Durability`](hypercore_feed::Durability) the database was opened
    /// with.
    pub fn sync(&self) -> Result<()> {
        self.each_feed(Feed::sync_all)
    }

    /// Runs `f` on every writer's feed and content feed.
    fn each_feed(&self, mut f: impl FnMut(&mut Feed) -> hypercore_feed::Result<()>) -> Result<()> {
        let mut state = self.state_mut();
        for w in &mut state.writers {
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
    pub fn write_all(&self, ops: impl IntoIterator<Item = Op>, batch_size: usize) -> Result<usize> {
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
    pub fn put(&self, key: &str, value: &[u8]) -> Result<Arc<Node>> {
        self.write_one(key, Some(value.to_vec()), false)
    }

    /// Deletes `key`.
    pub fn del(&self, key: &str) -> Result<Arc<Node>> {
        self.write_one(key, None, true)
    }

    fn write_one(&self, key: &str, value: Option<Vec<u8>>, deleted: bool) -> Result<Arc<Node>> {
        let _writing = self.writing();
        self.write_one_locked(key, value, deleted, None)
    }

    fn write_one_locked(
        &self,
        key: &str,
        value: Option<Vec<u8>>,
        deleted: bool,
        record: Option<Record>,
    ) -> Result<Arc<Node>> {
        self.sync_before_writing()?;
        let (heads, clock) = self.heads_and_clock()?;
        let key = hash::normalize(key);
        let path = hash::path(key, true);
        let node = put::put(self, None, clock, &heads, key, path, value, deleted)?;
        let node = Node {
            policy: record.map(Box::new),
            ..node
        };
        let mut bytes = Vec::new();
        let node = self.encode_local(node, &mut bytes);
        self.path_index.written(node.seq);
        // Asked before the state is taken, as for a batch.
        let answered = self.path_index.holds(node.seq);
        let local = self.local;
        {
            let mut state = self.state_mut();
            let appended = state.writers[local].feed.append(&bytes);
            if appended.is_err() {
                state.writers[local].clock -= 1;
                // The index's lock is never waited for with the state's
                // held (a listing holds it while reading the state).
                drop(state);
                self.path_index.reset();
            }
            appended?;
            // Cached and indexed before the lock is let go.
            let written = std::slice::from_ref(&node);
            self.cache_written(written, answered);
            self.index_written(written);
        }
        self.flush_key_index();
        self.changed(&[*self.local_key()], None);
        Ok(node)
    }

    /// Applies several puts and deletes atomically: one append, one signature.
    pub fn batch(&self, ops: &[Op]) -> Result<Vec<Arc<Node>>> {
        let _writing = self.writing();
        self.sync_before_writing()?;
        let (mut heads, clock) = self.heads_and_clock()?;
        // Room for each entry's key and value and about 128 bytes more (its
        // trie and clock; a trie among a million keys takes about 130).
        let room = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value } => key.len() + value.len() + 128,
                Op::Del { key } => key.len() + 128,
            })
            .sum();
        let mut batch = Batching {
            bytes: Vec::with_capacity(room),
            ends: Vec::with_capacity(ops.len()),
            nodes: Vec::with_capacity(ops.len()),
        };
        let local = self.local;
        fn key_of(op: &Op) -> &str {
            match op {
                Op::Put { key, .. } | Op::Del { key } => hash::normalize(key),
            }
        }
        // Every path first: the index of paths can then fetch, several
        // at once, what its lookups of them will read.
        let mut paths: Vec<Vec<u8>> = ops.iter().map(|op| hash::path(key_of(op), true)).collect();
        let result = (|| {
            for (i, op) in ops.iter().enumerate() {
                if i % crate::path_index::WARM_GROUP == 0 {
                    let group = i..(i + crate::path_index::WARM_GROUP).min(ops.len());
                    self.path_index.warm(&paths[group]);
                }
                let path = std::mem::take(&mut paths[i]);
                let (value, deleted) = match op {
                    Op::Put { value, .. } => (Some(value.clone()), false),
                    Op::Del { .. } => (None, true),
                };
                let node = put::put(
                    self,
                    Some(&batch),
                    clock.clone(),
                    &heads,
                    key_of(op),
                    path,
                    value,
                    deleted,
                )?;
                let node = self.encode_local(node, &mut batch.bytes);
                self.path_index.written(node.seq);
                batch.ends.push(batch.bytes.len());
                batch.nodes.push(node.clone());
                // The batch's last entry is the next one's only head (the
                // list's allocation kept).
                heads.clear();
                heads.push(node);
            }
            Ok(())
        })();
        // Asked before the state is taken: the index's lock is never
        // waited for with the state's held (a listing holds it while
        // reading the state).
        let answered = batch
            .nodes
            .last()
            .is_some_and(|last| self.path_index.holds(last.seq));
        {
            let mut state = self.state_mut();
            let appended = result.and_then(|()| {
                let starts = std::iter::once(0).chain(batch.ends.iter().copied());
                let blocks: Vec<&[u8]> = starts
                    .zip(&batch.ends)
                    .map(|(start, &end)| &batch.bytes[start..end])
                    .collect();
                state.writers[local].feed.append_batch(&blocks)?;
                Ok(())
            });
            if let Err(e) = appended {
                // Nothing was appended: roll the writer's counter back,
                // and drop the index of paths that holds the batch.
                state.writers[local].clock -= batch.nodes.len() as u64;
                drop(state);
                self.path_index.reset();
                return Err(e);
            }
            self.cache_written(&batch.nodes, answered);
            self.index_written(&batch.nodes);
        }
        self.flush_key_index();
        self.changed(&[*self.local_key()], None);
        Ok(batch.nodes)
    }

    /// Caches local entries just appended (in order), before the readers'
    /// view moves to them, so that bringing it up to date finds them
    /// instead of reading them back. Where the index of paths found their
    /// tries (`answered`), the next writes read none of them but the last,
    /// the new head: only it is kept, and the head it replaced is dropped
    /// (a reader asking for the others reads them back), so that a stream
    /// of writes does not fill the cache, and churn the allocator
    /// evicting, with entries nobody reads.
    fn cache_written(&self, nodes: &[Arc<Node>], answered: bool) {
        let Some(first) = nodes.first() else { return };
        let keep = if answered { nodes.len() - 1 } else { 0 };
        for node in &nodes[keep..] {
            self.cache(self.local, node.clone());
        }
        if answered && first.seq > 0 {
            self.uncache(self.local, first.seq - 1);
        }
    }

    /// Adds local entries just appended to the key index, before readers
    /// can see them.
    fn index_written(&self, nodes: &[Arc<Node>]) {
        if let (Some(index), 0) = (&self.key_index, self.local) {
            index.insert_all(nodes.iter().map(|node| (node.key.as_str(), node.seq)));
        }
    }

    /// Lets the key index write a file if it holds many entries in memory
    /// (readers are not held up meanwhile).
    fn flush_key_index(&self) {
        if let Some(index) = &self.key_index {
            index.flush_if_full();
        }
    }

    /// Encodes a new local entry at the end of `out`, inflating it when the
    /// writer's published feed list is out of date.
    fn encode_local(&self, mut node: Node, out: &mut Vec<u8>) -> Arc<Node> {
        let local = self.local;
        let mut state = self.state_mut();
        let n_feeds = state.writers.len();
        let w = &mut state.writers[local];
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

        // Permission records travel in inflated entries only (see
        // `crate::policy`), where the writer's chain of them is found.
        let needs_inflate =
            node.policy.is_some() || w.feeds_message.as_ref().is_none_or(|m| m.len() != n_feeds);
        let mut feeds = Vec::new();
        if needs_inflate {
            let keys: Vec<Option<[u8; 32]>> = state.writers.iter().map(|w| Some(w.key)).collect();
            let w = &mut state.writers[local];
            let list: Vec<[u8; 32]> = map_list(&keys, &w.encode_map, None)
                .into_iter()
                .flatten()
                .collect();
            feeds = list.iter().map(|k| FeedKey { key: k.to_vec() }).collect();
            w.feeds_message = Some(list);
            w.feeds_loaded = Some(seq);
            w.feeds_seq = seq;
            state.update_feeds(local);
        }
        let w = &state.writers[local];
        // A clock the writer's numbering leaves as it is (always, with one
        // writer) is lent to the message, as the key and value are.
        let lent = keeps_order(node.clock.len(), &w.encode_map);
        let clock = if lent {
            std::mem::take(&mut node.clock)
        } else {
            map_list(&node.clock, &w.encode_map, 0)
        };
        // The key and value are lent to the message for its encoding.
        let mut msg = InflatedEntry {
            key: std::mem::take(&mut node.key),
            value: node.value.take(),
            deleted: node.deleted.then_some(true),
            trie: TRIE_BYTES.with_borrow_mut(|(scratch, bytes)| {
                scratch.clear();
                node.trie.encode_to(&w.encode_map, scratch);
                bytes.extend_from_slice(scratch);
                let trie = bytes.split().freeze();
                // A huge trie's room is not kept.
                if scratch.capacity() > TRIE_BYTES_KEEP {
                    *scratch = Vec::new();
                    *bytes = bytes::BytesMut::new();
                }
                trie
            }),
            clock,
            inflate: Some(w.feeds_seq),
            content_feed: if needs_inflate {
                w.content_feed.clone()
            } else {
                None
            },
            feeds,
            policy: node.policy.as_ref().map(|r| r.encode()),
        };
        node.inflate = w.feeds_seq;
        if needs_inflate {
            node.feeds = w.feeds_message.clone();
        }
        msg.encode(out).expect("a Vec has room for any message");
        node.key = std::mem::take(&mut msg.key);
        node.value = msg.value.take();
        if lent {
            node.clock = std::mem::take(&mut msg.clock);
        }
        Arc::new(node)
    }

    /// Lets the writer with feed `key` write to the database. `key` is the
    /// *local* key of the other replica (`hyperdb info` there shows it), not
    /// the database key.
    pub fn authorize(&self, key: &[u8]) -> Result<Arc<Node>> {
        self.authorize_with(key, AuthorizeOptions::default())
    }

    /// [`Db::authorize`] with options. A plain authorization is hyperdb
    /// 3.5.0's (the same bytes). Making an admin (the owner's only),
    /// limiting the writer to prefixes, or authorizing a revoked writer
    /// again writes a grant record (see [`crate::policy`]), which only the
    /// owner or an admin may: a revoked writer's entries count again from
    /// those that have seen the new grant, not the ones in between.
    pub fn authorize_with(&self, key: &[u8], options: AuthorizeOptions) -> Result<Arc<Node>> {
        let key: [u8; 32] = key.try_into().map_err(|_| Error::BadKeyLength(key.len()))?;
        self.heads()?;
        if key == *self.key() {
            return Err(Error::AuthorizeDbKey(hex::encode(key)));
        }
        let prefixes = checked_prefixes(&options.prefixes)?;
        let _writing = self.writing();
        let hex_key = hex::encode(key);
        let permissions = self.permissions()?;
        let mine = &permissions[self.local];
        let theirs = permissions.iter().find(|p| p.key == key);
        let revoked = theirs.is_some_and(|p| p.revoked_from.is_some() && !p.restored);
        let manager = matches!(mine.role, "owner" | "admin");
        if options.admin && !self.is_owner() {
            return Err(refuse(
                format!(
                    "only the owner makes admins, and this replica is {}",
                    role_name(mine.role)
                ),
                "run this on the replica that created the database",
            ));
        }
        if revoked && !manager {
            return Err(refuse(
                format!("{hex_key} was revoked; only the owner or an admin authorizes it again"),
                "ask the owner or an admin (`hyperdb writers DIR` lists them)",
            ));
        }
        if !prefixes.is_empty() && !manager {
            return Err(refuse(
                format!(
                    "only the owner or an admin limits a writer to prefixes, and this replica is {}",
                    role_name(mine.role)
                ),
                "ask the owner or an admin (`hyperdb writers DIR` lists them)",
            ));
        }
        if !manager && mine.prefixes.is_some() {
            return Err(refuse(
                "this replica's writer may write only under some prefixes, so it authorizes no one"
                    .into(),
                "ask the owner or an admin (`hyperdb writers DIR` lists them)",
            ));
        }
        let current = theirs.filter(|p| p.role != "none" && !revoked);
        if let Some(current) = current {
            let upgrade = options.admin && current.role != "admin";
            let widen = match &current.prefixes {
                None => false,
                Some(held) => {
                    prefixes.is_empty()
                        || prefixes
                            .iter()
                            .any(|p| !held.iter().any(|q| crate::policy::is_under(p, q)))
                }
            };
            if current.prefixes.is_none() && !prefixes.is_empty() && !options.admin {
                return Err(refuse(
                    format!("{hex_key} may already write anywhere"),
                    "to limit it, revoke it, then authorize it again with --prefix",
                ));
            }
            if !upgrade && !widen {
                return Err(Error::AlreadyAuthorized(hex_key));
            }
        }
        // Listed already (by an entry that does not count, or echoed), a
        // listing would add nothing: it takes a grant record.
        let listed = self.is_authorized(&key)?;
        let needs_record =
            options.admin || revoked || !prefixes.is_empty() || current.is_some() || listed;
        if needs_record && !manager {
            return Err(refuse(
                format!(
                    "{hex_key} needs a grant record, which only the owner or an admin writes; this replica is {}",
                    role_name(mine.role)
                ),
                "ask the owner or an admin (`hyperdb writers DIR` lists them)",
            ));
        }
        self.add_writer(&key)?;
        let record = needs_record.then_some(Record::Grant {
            writer: key,
            admin: options.admin,
            prefixes,
        });
        // The reference records an authorization as a put of the empty key
        // with no value; the new writer makes this entry an inflated one.
        self.write_one_locked("", None, false, record)
    }

    /// Lets only `writers` (and the owner and admins) write under
    /// `prefix` from now on: other writers' entries there that this
    /// replica has not seen stop counting, on every replica once this
    /// entry arrives there. Restricting a prefix again replaces the
    /// earlier restrictions this replica has seen; with no writers, the
    /// prefix becomes read-only for all but the owner and admins (the
    /// empty prefix is the whole database). The owner's or an admin's
    /// only.
    pub fn restrict(&self, prefix: &str, writers: &[[u8; 32]]) -> Result<Arc<Node>> {
        let prefix = hash::normalize(prefix).to_string();
        let _writing = self.writing();
        self.may_manage("restrict a prefix")?;
        let permissions = self.permissions()?;
        for w in writers {
            if w == self.key() {
                return Err(refuse(
                    format!(
                        "{} is the database key: the owner may always write, so it is no member to name",
                        hex::encode(w)
                    ),
                    "name writers by their *local* keys (`hyperdb writers DIR` lists them)",
                ));
            }
            if !permissions.iter().any(|p| p.key == *w && p.role != "none") {
                return Err(refuse(
                    format!("{} is not a writer of this database here", hex::encode(w)),
                    "check the key with `hyperdb writers DIR`, or sync first so this replica learns it",
                ));
            }
        }
        let record = Record::Restrict {
            prefix,
            writers: writers.to_vec(),
        };
        self.write_one_locked("", None, false, Some(record))
    }

    /// Lifts the restrictions of `prefix` this replica has seen, for the
    /// entries that see this one. The owner's or an admin's only.
    pub fn unrestrict(&self, prefix: &str) -> Result<Arc<Node>> {
        let prefix = hash::normalize(prefix).to_string();
        let _writing = self.writing();
        self.may_manage("lift a restriction")?;
        let restricted = self
            .restrictions()?
            .iter()
            .any(|x| crate::policy::same_prefix(&x.prefix, &prefix));
        if !restricted {
            return Err(refuse(
                format!("{prefix:?} is not restricted here"),
                "`hyperdb writers DIR` lists the restrictions in force",
            ));
        }
        self.write_one_locked("", None, false, Some(Record::Unrestrict { prefix }))
    }

    /// Refuses unless this replica's writer is the owner or an admin.
    fn may_manage(&self, what: &str) -> Result<()> {
        let role = self.permissions()?[self.local].role;
        if matches!(role, "owner" | "admin") {
            return Ok(());
        }
        Err(refuse(
            format!(
                "only the owner or an admin may {what}, and this replica is {}",
                role_name(role)
            ),
            "ask the owner or an admin (`hyperdb writers DIR` lists them)",
        ))
    }

    /// Revokes the writer with feed `key`: its entries this replica has
    /// seen keep counting, its later ones do not, on every replica once
    /// this entry arrives there (see [`crate::policy`]). The owner revokes
    /// anyone but itself; an admin, writers that were never made admins.
    /// Refusals write nothing.
    ///
    /// ```
    /// use hyperdb::{local_sync, Db, DbStorage, OpenOptions};
    /// let owner = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
    /// let options = OpenOptions { key: Some(*owner.key()), ..Default::default() };
    /// let writer = Db::open_storage(DbStorage::memory(), options).unwrap();
    /// owner.authorize(writer.local_key()).unwrap();
    /// local_sync::sync(&owner, &writer).unwrap();
    /// writer.put("a", b"kept").unwrap();
    /// local_sync::sync(&owner, &writer).unwrap();
    /// owner.revoke(writer.local_key()).unwrap();
    /// writer.put("a", b"cut off").unwrap(); // not knowing it was revoked
    /// local_sync::sync(&owner, &writer).unwrap();
    /// for db in [&owner, &writer] {
    ///     assert_eq!(db.get("a").unwrap()[0].value_str().unwrap(), "kept");
    ///     // hyperdb 3.5.0 peers, which ignore revocations, see this:
    ///     let raw = db.snapshot().unwrap().raw();
    ///     assert_eq!(raw.get("a").unwrap()[0].value_str().unwrap(), "cut off");
    /// }
    /// ```
    pub fn revoke(&self, key: &[u8]) -> Result<Arc<Node>> {
        let key: [u8; 32] = key.try_into().map_err(|_| Error::BadKeyLength(key.len()))?;
        let hex_key = hex::encode(key);
        if key == *self.key() {
            return Err(refuse(
                format!("{hex_key} is the database key: the owner cannot be revoked"),
                "revoke a writer's *local* key (`hyperdb writers DIR` lists them)",
            ));
        }
        if key == *self.local_key() {
            return Err(refuse(
                "a replica cannot revoke its own writer".into(),
                "ask the owner or an admin to revoke it",
            ));
        }
        let _writing = self.writing();
        let permissions = self.permissions()?;
        let mine = &permissions[self.local];
        let Some(theirs) = permissions
            .iter()
            .find(|p| p.key == key && p.role != "none")
        else {
            return Err(refuse(
                format!("{hex_key} is not a writer of this database here"),
                "check the key with `hyperdb writers DIR`, or sync first so this replica learns it",
            ));
        };
        match mine.role {
            "owner" => {}
            "admin" if !theirs.ever_admin => {}
            "admin" => {
                return Err(refuse(
                    format!("{hex_key} was made an admin by the owner; an admin cannot revoke it"),
                    "only the owner revokes admins",
                ))
            }
            role => {
                return Err(refuse(
                    format!(
                        "this replica is {}: only the owner and admins revoke",
                        role_name(role)
                    ),
                    "ask the owner or an admin (`hyperdb writers DIR` lists them)",
                ))
            }
        }
        if theirs.revoked_from.is_some() && !theirs.restored {
            return Err(refuse(
                format!(
                    "{hex_key} is already revoked from its entry {} on",
                    theirs.revoked_from.unwrap_or(0)
                ),
                "nothing to do",
            ));
        }
        self.write_one_locked("", None, false, Some(Record::Revoke { writer: key }))
    }
}

/// Options of [`Db::authorize_with`].
#[derive(Clone, Debug, Default)]
pub struct AuthorizeOptions {
    /// Make the writer an admin, who may authorize and revoke writers
    /// (the owner's only).
    pub admin: bool,
    /// Let the writer write only under these prefixes (whole components:
    /// `config` covers `config/x`, not `configuration`). Such a writer
    /// authorizes no one.
    pub prefixes: Vec<String>,
}

/// A refusal: nothing was written.
fn refuse(what: String, hint: &str) -> Error {
    Error::Refused {
        what,
        hint: hint.into(),
    }
}

/// A role as a sentence names it.
fn role_name(role: &str) -> &'static str {
    match role {
        "owner" => "the owner",
        "admin" => "an admin",
        "writer" => "a writer",
        _ => "not authorized",
    }
}

/// Prefixes as keys are written (one leading `/` dropped, as hyperdb
/// does), refusing ones with no component: the whole database is not a
/// prefix to limit a writer to.
fn checked_prefixes(prefixes: &[String]) -> Result<Vec<String>> {
    prefixes
        .iter()
        .map(|p| {
            if crate::hash::components(p).is_empty() {
                return Err(Error::Invalid(format!(
                    "{p:?} is not a prefix: name at least one component, such as `config`"
                )));
            }
            Ok(hash::normalize(p).to_string())
        })
        .collect()
}

thread_local! {
    /// Where a writer on this thread encodes the trie of each entry, and
    /// the buffer the message takes it from: the bytes are split off it
    /// (`bytes::BytesMut::split`), and once the message is encoded and
    /// dropped, the next entry's trie reuses their room (a `Bytes` of its
    /// own would be allocated, and allocated again when prost clones it).
    static TRIE_BYTES: std::cell::RefCell<(Vec<u8>, bytes::BytesMut)> = Default::default();
}

/// The most room [`TRIE_BYTES`] keeps between entries (a trie among a
/// million keys takes about 130 bytes).
const TRIE_BYTES_KEEP: usize = 16 * 1024;

/// Whether [`map_list`] gives a list of `len` back as it is: `map` sends
/// each of its entries to its own place, and the list is at least as long.
fn keeps_order(len: usize, map: &[Option<usize>]) -> bool {
    map.len() <= len && map.iter().enumerate().all(|(i, &to)| to == Some(i))
}

/// The reference's `_mapList`: moves `list[i]` to position `map[i]`, keeps
/// unmapped tail entries in place, and fills holes with `default`.
///
/// One allocation, of the final length (this runs for every entry written).
fn map_list<T: Clone>(list: &[T], map: &[Option<usize>], default: T) -> Vec<T> {
    let len = map
        .iter()
        .flatten()
        .map(|&target| target + 1)
        .chain((list.len() > map.len()).then_some(list.len()))
        .max()
        .unwrap_or(0);
    let mut mapped = vec![default.clone(); len];
    for (i, target) in map.iter().enumerate() {
        if let Some(target) = target {
            mapped[*target] = list.get(i).cloned().unwrap_or_else(|| default.clone());
        }
    }
    for (i, value) in list.iter().enumerate().skip(map.len()) {
        mapped[i] = value.clone();
    }
    mapped
}

#[cfg(test)]
mod tests {
    use super::{keeps_order, map_list};
    use proptest::prelude::*;

    /// `_mapList` as the reference writes it: a sparse array, set entry by
    /// entry (the mapped ones, then the tail), its holes read as `default`.
    fn reference(list: &[u64], map: &[Option<usize>], default: u64) -> Vec<u64> {
        let mut mapped: Vec<Option<u64>> = Vec::new();
        let mut set = |at: usize, value: u64| {
            if mapped.len() <= at {
                mapped.resize(at + 1, None);
            }
            mapped[at] = Some(value);
        };
        for (i, target) in map.iter().enumerate() {
            if let Some(target) = *target {
                set(target, list.get(i).copied().unwrap_or(default));
            }
        }
        for (i, &value) in list.iter().enumerate().skip(map.len()) {
            set(i, value);
        }
        mapped.into_iter().map(|v| v.unwrap_or(default)).collect()
    }

    proptest! {
        /// Whatever the lists and maps (longer or shorter than each
        /// other, with holes, several entries onto one), the clock and feed
        /// list written are the reference's.
        #[test]
        fn lists_are_mapped_as_the_reference_maps_them(
            list in prop::collection::vec(any::<u64>(), 0..8),
            map in prop::collection::vec(prop::option::of(0usize..10), 0..8),
            default in any::<u64>(),
        ) {
            prop_assert_eq!(map_list(&list, &map, default), reference(&list, &map, default));
        }

        /// A list lent as it is, rather than mapped, is what mapping it
        /// gives: maps that send each entry home, some bent or cut short.
        #[test]
        fn a_list_kept_in_order_is_the_list_mapped(
            list in prop::collection::vec(any::<u64>(), 0..8),
            home in 0usize..10,
            bend in prop::option::of((0usize..10, prop::option::of(0usize..10))),
            default in any::<u64>(),
        ) {
            let mut map: Vec<Option<usize>> = (0..home).map(Some).collect();
            if let Some((at, to)) = bend.filter(|&(at, _)| at < map.len()) {
                map[at] = to;
            }
            let bent = map.iter().enumerate().any(|(i, &to)| to != Some(i));
            prop_assert_eq!(keeps_order(list.len(), &map), !bent && home <= list.len());
            if keeps_order(list.len(), &map) {
                prop_assert_eq!(map_list(&list, &map, default), list);
            }
        }
    }
}
