//! One hypercore feed: open or create it, append, read, prove and verify.

use std::io;

use ed25519_dalek::SigningKey;

use crate::bitfield::{Bitfield, Bits, SparseBits};
use crate::blocks::BlockReader;
use crate::crypto::{self, Hash, KeyPair};
use crate::file::{File, ReadCache};
use crate::recover::Recovery;
use crate::sleep::{HeaderKind, HEADER_SIZE};
use crate::storage::Storage;
use crate::{flat, tree_index};

/// A node of the merkle tree: a block's hash (even index) or a parent's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// Flat-tree index.
    pub index: u64,
    /// BLAKE2b-256 hash.
    pub hash: Hash,
    /// Total bytes of the blocks under it.
    pub size: u64,
}

/// What a peer needs, beside the block, to check block `index` of a feed: the
/// missing tree nodes and, when the proof reaches the roots, the signature of
/// the tree they form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proof {
    /// Tree nodes, in the order hypercore sends them.
    pub nodes: Vec<Node>,
    /// Signature of the roots, when the nodes reach them.
    pub signature: Option<[u8; 64]>,
}

/// A block (or hash) whose proof checked out ([`Feed::verify_block`]),
/// ready for [`Feed::commit`].
#[derive(Clone, Debug)]
pub struct VerifiedWrite {
    index: u64,
    block: Option<Vec<u8>>,
    nodes: Vec<Node>,
    signature: Option<(u64, [u8; 64])>,
    roots: Option<Vec<Node>>,
}

impl VerifiedWrite {
    fn new(
        index: u64,
        block: Option<&[u8]>,
        nodes: Vec<Node>,
        signature: Option<(u64, [u8; 64])>,
        roots: Option<Vec<Node>>,
    ) -> Self {
        VerifiedWrite {
            index,
            block: block.map(<[u8]>::to_vec),
            nodes,
            signature,
            roots,
        }
    }

    /// The block's index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The verified bytes (none for a hash-only write).
    pub fn block(&self) -> Option<&[u8]> {
        self.block.as_deref()
    }

    /// The tree nodes the write stores (verified along with the block).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
}

/// Where a proof's check stopped climbing the tree: the highest node
/// reached, the proof's nodes not used yet, the nodes passed.
struct Climbed {
    top: Node,
    remote: std::collections::VecDeque<Node>,
    visited: Vec<Node>,
}

/// What [`Feed::audit`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Blocks whose bytes match their hash.
    pub valid: u64,
    /// Blocks whose bytes do not: they are marked missing, to be fetched again.
    pub invalid: u64,
}

/// Everything that can go wrong with a feed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// What the system said.
        source: io::Error,
    },
    /// A file's content is not what hypercore writes.
    #[error("{file}: {reason}")]
    Corrupt {
        /// The file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The folder holds another feed than the key asked for.
    #[error("{file}: another hypercore is stored here (key {found}, expected {expected})")]
    KeyMismatch {
        /// The key file.
        file: String,
        /// Key found on disk.
        found: String,
        /// Key asked for.
        expected: String,
    },
    /// There is no feed here and creating one was not allowed.
    #[error("{0}: no hypercore is stored here")]
    NotFound(String),
    /// Appending needs the secret key.
    #[error("this feed is not writable: it was opened without its secret key")]
    NotWritable,
    /// The feed was opened read-only ([`FeedOptions::read_only`]).
    #[error("{0}: the feed was opened read-only")]
    ReadOnly(String),
    /// A write to the feed's files failed earlier; what is in memory may no
    /// longer match the files, so the feed takes no more writes.
    #[error("{0}: an earlier write to this feed failed, so it takes no more writes; reopen it (opening repairs what the failure left)")]
    Poisoned(String),
    /// The block is not stored locally.
    #[error("block {0} is not available locally")]
    NotAvailable(u64),
    /// A block's bytes do not match the hash the tree holds for it.
    #[error("{file}: block {index} does not match its hash in the tree (the data is corrupt; run audit)")]
    BadBlock {
        /// The data file.
        file: String,
        /// The block.
        index: u64,
    },
    /// Data received from a peer did not verify; nothing was stored.
    #[error("invalid proof for block {index}: {reason}")]
    InvalidProof {
        /// The block.
        index: u64,
        /// What did not check out.
        reason: String,
    },
}

/// Result of feed operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to open a feed.
#[derive(Clone, Debug)]
pub struct FeedOptions {
    /// The feed's public key; `None` to read it from storage or make a new one.
    pub key: Option<[u8; 32]>,
    /// The secret key (libsodium's 64-byte form), to write to a feed.
    pub secret_key: Option<[u8; 64]>,
    /// Create a new feed (a fresh key pair unless keys are given) when there is none.
    pub create_if_missing: bool,
    /// Keep the secret key in the `secret_key` file.
    pub store_secret_key: bool,
    /// Open the files for reading only: nothing is created, written or
    /// repaired (a feed that needs repair is repaired in memory only), and
    /// every write is refused with [`Error::ReadOnly`].
    pub read_only: bool,
    /// When appends and received blocks reach stable storage.
    pub durability: Durability,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            key: None,
            secret_key: None,
            create_if_missing: true,
            store_secret_key: true,
            read_only: false,
            durability: Durability::default(),
        }
    }
}

/// When a feed's writes reach stable storage.
///
/// Either way a crashed *process* loses nothing that was acknowledged: every
/// write is handed to the operating system before `append` (or `flush`)
/// returns, and opening the feed again recovers from whatever step the
/// crash interrupted. The modes differ when the *machine* stops (a power
/// cut, a kernel panic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// No sync: the operating system writes to disk when it chooses, so a
    /// power cut can lose the last few seconds of acknowledged writes, and a
    /// writer whose lost blocks had already reached a peer signs those
    /// indexes again (a fork that peers refuse). hypercore 6 works this way.
    #[default]
    Buffered,
    /// Every append, and every flush of received blocks, is synced before it
    /// returns: the blocks and tree nodes first, then the signature, so a
    /// power cut loses nothing that was acknowledged and a signature is never
    /// on disk without what it signs. Costs three syncs per append.
    Fsync,
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "buffered" => Ok(Durability::Buffered),
            "fsync" => Ok(Durability::Fsync),
            other => Err(format!(
                "unknown durability {other:?}: expected `buffered` or `fsync`"
            )),
        }
    }
}

/// Checks a SLEEP file's header. True when the header still has to be
/// written: the file is new, or a crash left it unwritten (zeros, as a
/// file system can after a power cut) or half written.
fn check_header(file: &mut File, kind: HeaderKind) -> Result<bool> {
    let len = file.len().min(HEADER_SIZE);
    let header = file.read(0, len as usize)?;
    let unwritten = header.iter().all(|&b| b == 0);
    if unwritten || (len < HEADER_SIZE && kind.encode().starts_with(&header)) {
        return Ok(true);
    }
    kind.check(&header).map_err(|reason| file.corrupt(reason))?;
    Ok(false)
}

pub(crate) const NODE_SIZE: u64 = 40;

/// More blocks than any feed holds (hypercore counts in doubles, to 2^53):
/// a peer's proof that names a block or node past this is refused before
/// any arithmetic on it, which would not fit in 64 bits.
const MAX_BLOCKS: u64 = 1 << 56;

/// The depth of the root over `MAX_BLOCKS` leaves.
const MAX_DEPTH: u32 = 57;
const SIGNATURE_SIZE: u64 = 64;
const NODE_CACHE_LIMIT: usize = 1 << 16;
/// Tree reads load the 4 KiB page around them: a proof's nodes sit close
/// together, and so do the nodes of blocks read in order.
const TREE_CACHE: ReadCache = ReadCache::Pages {
    size: 4096,
    count: 16,
};
/// Data read in order (serving a peer, walking a history) is read ahead.
const DATA_CACHE: ReadCache = ReadCache::Sequential {
    size: 64 * 1024,
    count: 2,
};

/// A hypercore 6 feed: an append-only log of blocks, each covered by a
/// merkle tree whose roots are signed after every append.
///
/// ```
/// use hypercore_feed::{Feed, FeedOptions, MemoryStorage};
/// let mut feed = Feed::open(MemoryStorage::new(), FeedOptions::default()).unwrap();
/// feed.append(b"hello").unwrap();
/// feed.append_batch(&[b"a".as_slice(), b"b"]).unwrap();
/// assert_eq!(feed.len(), 3);
/// assert_eq!(feed.get(2).unwrap(), b"b");
/// assert_eq!(feed.audit().unwrap().invalid, 0);
/// ```
pub struct Feed {
    pub(crate) key: [u8; 32],
    pub(crate) discovery_key: [u8; 32],
    pub(crate) signing_key: Option<SigningKey>,
    pub(crate) length: u64,
    pub(crate) byte_length: u64,
    pub(crate) roots: Vec<Node>,
    pub(crate) bitfield: Bitfield,
    /// Shared with the feed's [`BlockReader`]s.
    pub(crate) nodes: std::sync::Arc<crate::cache::SharedCache<u64, Node>>,
    pub(crate) key_file: File,
    pub(crate) secret_file: File,
    pub(crate) tree: File,
    pub(crate) data: File,
    pub(crate) bitfield_file: File,
    pub(crate) signatures: File,
    /// A block index and the byte offset it starts at, known from the block
    /// before it, so blocks read or stored in order need no root lookups.
    pub(crate) next_offset: std::sync::Mutex<(u64, u64)>,
    pub(crate) read_only: bool,
    pub(crate) durability: Durability,
    /// Set when a write failed: the files may no longer match what is in
    /// memory, so no more writes are made until the feed is reopened.
    pub(crate) poisoned: bool,
    /// Blocks were committed since the last flush.
    pub(crate) unflushed: bool,
    /// Blocks were flushed without the sync their durability asks for.
    pub(crate) needs_sync: bool,
    /// What opening repaired, if anything.
    pub(crate) recovery: Option<Recovery>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("key", &hex::encode(self.key))
            .field("length", &self.length)
            .field("byte_length", &self.byte_length)
            .field("writable", &self.signing_key.is_some())
            .finish()
    }
}

impl Feed {
    /// Opens the feed in `storage`, creating it if allowed and missing.
    ///
    /// Opening checks the files against each other and recovers from a
    /// crash: the length is the longest one whose signature verifies, a
    /// half-written tail is left out, blocks whose bitfield bits were never
    /// written are found again from the tree, and a writer never appends at
    /// an index it has signed. A writable open writes the repair back
    /// ([`Feed::recovery`] says what was done); a read-only open repairs in
    /// memory only.
    pub fn open(storage: impl Storage, options: FeedOptions) -> Result<Self> {
        let storage: &dyn Storage = &storage;
        let read_only = options.read_only;
        let open = |name, cache| File::open(storage, name, cache, read_only);
        let mut key_file = open("key", ReadCache::None)?;
        let mut secret_file = open("secret_key", ReadCache::None)?;
        let mut tree = open("tree", TREE_CACHE)?;
        let data = open("data", DATA_CACHE)?;
        let mut bitfield_file = open("bitfield", ReadCache::None)?;
        let mut signatures = open("signatures", ReadCache::None)?;

        // Whether anything but headers was ever written: a feed with content
        // never gets new keys.
        let has_content = data.len() > 0
            || [&tree, &bitfield_file, &signatures]
                .iter()
                .any(|f| f.len() > HEADER_SIZE);
        let stored_key = read_fixed::<32>(&mut key_file)?;
        // No key yet: a feed whose creation never finished, or none at all.
        let no_key = matches!(stored_key, Stored::Absent | Stored::Short(0));
        let stored_secret = match read_fixed::<64>(&mut secret_file)? {
            Stored::Full(secret) => Some(secret),
            Stored::Short(0) if no_key && !has_content => None,
            Stored::Absent => None,
            Stored::Short(len) => {
                return Err(secret_file.corrupt(format!(
                    "holds {len} bytes where 64 were expected: the secret key is damaged (restore the file from a backup; without it this writer cannot append)"
                )))
            }
        };

        let given_pair = match options.secret_key {
            Some(secret) => Some(KeyPair::from_secret_key(&secret).ok_or_else(|| {
                secret_file.corrupt("the secret key given does not match its public half")
            })?),
            None => None,
        };
        let stored_pair = match stored_secret {
            Some(secret) => Some(KeyPair::from_secret_key(&secret).ok_or_else(|| {
                secret_file
                    .corrupt("the secret key does not match its public half (the file is damaged)")
            })?),
            None => None,
        };
        let wanted = options.key.or(given_pair.as_ref().map(|p| p.public_key));
        let mut generated = None;
        let key = match (stored_key, wanted) {
            (Stored::Full(stored), Some(wanted)) if stored != wanted => {
                return Err(Error::KeyMismatch {
                    file: key_file.name.clone(),
                    found: hex::encode(stored),
                    expected: hex::encode(wanted),
                })
            }
            (Stored::Full(stored), _) => stored,
            // The caller knows the key: a missing or damaged key file is
            // rewritten below (the blocks are checked against it anyway).
            (_, Some(wanted)) => wanted,
            // A creation interrupted after the secret key was written.
            (_, None) if !has_content && stored_pair.is_some() => {
                stored_pair.as_ref().expect("checked").public_key
            }
            (_, None) if no_key && !has_content && options.create_if_missing && !read_only => {
                let pair = KeyPair::generate();
                let key = pair.public_key;
                generated = Some(pair);
                key
            }
            (Stored::Absent, None) if !has_content => {
                return Err(Error::NotFound(key_file.name.clone()))
            }
            (Stored::Absent, None) => {
                return Err(key_file.corrupt(
                    "is missing but the feed holds blocks: the feed's public key is lost (restore the file from a backup)",
                ))
            }
            (Stored::Short(len), None) => {
                return Err(key_file.corrupt(format!(
                    "holds {len} bytes where 32 were expected: the feed's public key is damaged (restore the file from a backup)"
                )))
            }
        };

        let pair = generated.or(given_pair).or(stored_pair);
        if let Some(pair) = &pair {
            if pair.public_key != key {
                return Err(secret_file.corrupt(format!(
                    "holds the secret key of {}, not of this feed's key {}",
                    hex::encode(pair.public_key),
                    hex::encode(key)
                )));
            }
        }

        let headers = [
            (
                check_header(&mut bitfield_file, HeaderKind::Bitfield)?,
                HeaderKind::Bitfield,
            ),
            (
                check_header(&mut signatures, HeaderKind::Signatures)?,
                HeaderKind::Signatures,
            ),
            (check_header(&mut tree, HeaderKind::Tree)?, HeaderKind::Tree),
        ];
        let bitfield = if bitfield_file.len() > HEADER_SIZE {
            let pages_len = bitfield_file.len() - HEADER_SIZE;
            Bitfield::from_pages(&bitfield_file.read(HEADER_SIZE, pages_len as usize)?)
        } else {
            Bitfield::new()
        };

        if !read_only {
            // The secret key first: a crash between the two leaves a folder
            // whose key can be derived from it.
            if let Some(pair) = &pair {
                if options.store_secret_key && stored_secret != Some(pair.secret_key) {
                    secret_file.write(0, &pair.secret_key)?;
                }
            }
            if !matches!(stored_key, Stored::Full(k) if k == key) {
                key_file.write(0, &key)?;
                key_file.truncate(32)?;
            }
            for (file, (missing, kind)) in [&mut bitfield_file, &mut signatures, &mut tree]
                .into_iter()
                .zip(headers)
            {
                if missing {
                    file.write(0, &kind.encode())?;
                }
            }
        }

        let mut feed = Feed {
            key,
            discovery_key: crypto::discovery_key(&key),
            signing_key: pair.map(|p| p.signing_key()),
            length: 0,
            byte_length: 0,
            roots: Vec::new(),
            bitfield,
            nodes: std::sync::Arc::new(crate::cache::SharedCache::new(NODE_CACHE_LIMIT)),
            key_file,
            secret_file,
            tree,
            data,
            bitfield_file,
            signatures,
            next_offset: std::sync::Mutex::new((0, 0)),
            read_only,
            durability: options.durability,
            poisoned: false,
            unflushed: false,
            needs_sync: false,
            recovery: None,
        };
        feed.recover()?;
        Ok(feed)
    }

    /// The public key.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The discovery key: a hash of the key, safe to announce.
    pub fn discovery_key(&self) -> &[u8; 32] {
        &self.discovery_key
    }

    /// The 64-byte secret key, when this feed is writable.
    pub fn secret_key(&self) -> Option<[u8; 64]> {
        self.signing_key.as_ref().map(|k| k.to_keypair_bytes())
    }

    /// Whether this feed can append (it has the secret key).
    pub fn is_writable(&self) -> bool {
        self.signing_key.is_some()
    }

    /// Number of blocks, whether stored locally or only known from proofs.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// Whether the feed has no blocks.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Total bytes of all blocks.
    pub fn byte_len(&self) -> u64 {
        self.byte_length
    }

    /// Whether block `index` is stored locally.
    pub fn has(&self, index: u64) -> bool {
        self.bitfield.get(index)
    }

    /// Number of blocks in `start..end` stored locally.
    pub fn downloaded(&self, start: u64, end: u64) -> u64 {
        self.bitfield.count(start, end)
    }

    /// Whether every block of the feed is stored locally.
    pub fn has_all(&self) -> bool {
        self.length == 0 || self.bitfield.next_missing(0, self.length).is_none()
    }

    /// The first block in `start..end` not stored locally.
    pub fn next_missing(&self, start: u64, end: u64) -> Option<u64> {
        self.bitfield.next_missing(start, end)
    }

    /// The stored-blocks bitfield of blocks `start..start + length` (page
    /// aligned), run-length encoded as a Have message carries it.
    pub fn compressed_bitfield(&self, start: u64, length: u64) -> Vec<u8> {
        self.bitfield.compress(start, length)
    }

    /// Appends one block; returns its index.
    pub fn append(&mut self, block: &[u8]) -> Result<u64> {
        self.append_batch(&[block])
    }

    /// Appends several blocks with one signature; returns the first index.
    ///
    /// The blocks and tree nodes are written first, then the signature, then
    /// the bitfield; with [`Durability::Fsync`] the first two are synced
    /// before the signature is written and the signature before this
    /// returns. If a write fails, nothing more is written to this feed until
    /// it is reopened ([`Error::Poisoned`]).
    pub fn append_batch<B: AsRef<[u8]>>(&mut self, blocks: &[B]) -> Result<u64> {
        self.check_writes()?;
        let signing_key = self.signing_key.as_ref().ok_or(Error::NotWritable)?;
        let start = self.length;
        if blocks.is_empty() {
            return Ok(start);
        }
        let n = blocks.len() as u64;
        let batch_first = 2 * start;
        let batch_len = 2 * n - 1;
        let mut batch_nodes = vec![0u8; (batch_len * NODE_SIZE) as usize];
        let mut outside = Vec::new();
        let mut roots = self.roots.clone();
        let mut data = Vec::with_capacity(blocks.iter().map(|b| b.as_ref().len()).sum());
        let slices: Vec<&[u8]> = blocks.iter().map(AsRef::as_ref).collect();
        let hashes = crypto::leaf_hashes(&slices);
        for (i, (block, hash)) in slices.iter().zip(hashes).enumerate() {
            let leaf = Node {
                index: 2 * (start + i as u64),
                hash,
                size: block.len() as u64,
            };
            data.extend_from_slice(block);
            push_leaf(&mut roots, leaf, |node| {
                if node.index >= batch_first && node.index - batch_first < batch_len {
                    let at = ((node.index - batch_first) * NODE_SIZE) as usize;
                    encode_node(node, &mut batch_nodes[at..at + NODE_SIZE as usize]);
                } else {
                    outside.push(*node);
                }
            });
        }
        let signature = crypto::sign(signing_key, &crypto::tree_hash(&roots));

        self.guard(|feed| {
            feed.data.write(feed.byte_length, &data)?;
            for node in &outside {
                feed.write_node(node)?;
            }
            feed.tree
                .write(HEADER_SIZE + batch_first * NODE_SIZE, &batch_nodes)?;
            if feed.durability == Durability::Fsync {
                feed.data.sync_all()?;
                feed.tree.sync_all()?;
            }
            let last = start + n - 1;
            feed.signatures
                .write(HEADER_SIZE + last * SIGNATURE_SIZE, &signature)?;
            if feed.durability == Durability::Fsync {
                feed.signatures.sync_all()?;
            }
            for i in start..start + n {
                feed.bitfield.set(i, true);
                tree_index::set(&mut feed.bitfield, 2 * i);
            }
            feed.write_bitfield()
        })?;
        self.length += n;
        self.byte_length += data.len() as u64;
        self.roots = roots;
        Ok(start)
    }

    /// Runs a sequence of writes; if one fails, the feed takes no more.
    fn guard<T>(&mut self, writes: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let result = writes(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// An error when this feed may not be written: opened read-only, or
    /// poisoned by a failed write.
    fn check_writes(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly(self.describe()));
        }
        if self.poisoned {
            return Err(Error::Poisoned(self.describe()));
        }
        Ok(())
    }

    /// The feed's files, for messages: the folder (or memory) they are in.
    fn describe(&self) -> String {
        let name = &self.key_file.name;
        name.strip_suffix("key").unwrap_or(name).to_string()
    }

    /// What opening this feed repaired after a crash or damage, if anything.
    pub fn recovery(&self) -> Option<&crate::recover::Recovery> {
        self.recovery.as_ref()
    }

    /// Whether this feed was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether blocks were committed with [`Feed::commit_unflushed`] and not
    /// flushed since: until they are, a [`BlockReader`] cannot read them.
    pub fn has_unflushed(&self) -> bool {
        self.unflushed
    }

    /// A reader of this feed's flushed blocks for other threads, opening
    /// its own read-only handles on the files in `storage` (the storage this
    /// feed was opened on) as it first needs them.
    pub fn block_reader(&self, storage: Box<dyn Storage>) -> BlockReader {
        BlockReader::new(storage, self.nodes.clone())
    }

    /// Block `index`, checked against its hash in the tree.
    pub fn get(&self, index: u64) -> Result<Vec<u8>> {
        let (block, node) = self.read_block(index)?;
        if crypto::leaf_hash(&block) != node.hash {
            return Err(Error::BadBlock {
                file: self.data.name.clone(),
                index,
            });
        }
        Ok(block)
    }

    /// Block `index` as stored, without checking its hash.
    pub fn get_unverified(&self, index: u64) -> Result<Vec<u8>> {
        Ok(self.read_block(index)?.0)
    }

    fn read_block(&self, index: u64) -> Result<(Vec<u8>, Node)> {
        if !self.bitfield.get(index) {
            return Err(Error::NotAvailable(index));
        }
        let (offset, node) = self.data_offset(index, &[])?;
        let stored = self.data.len();
        if offset.checked_add(node.size).is_none_or(|end| end > stored) {
            return Err(self.data.corrupt(format!(
                "block {index} should take {} bytes at offset {offset}, but the file holds {stored}",
                node.size
            )));
        }
        let block = self.data.read(offset, node.size as usize)?;
        Ok((block, node))
    }

    /// The last block.
    pub fn head(&self) -> Result<Vec<u8>> {
        match self.length {
            0 => Err(Error::NotAvailable(0)),
            n => self.get(n - 1),
        }
    }

    /// The proof a peer needs for block `index`, given the `digest` it sent
    /// and the nodes this side already sent it (`remote`, updated). With
    /// `include_hash` the block's own node comes first.
    pub fn proof(
        &self,
        index: u64,
        digest: u64,
        include_hash: bool,
        remote: &mut SparseBits,
    ) -> Result<Proof> {
        if index >= MAX_BLOCKS {
            return Err(Error::NotAvailable(index));
        }
        let plan = tree_index::proof(&self.bitfield, 2 * index, digest, include_hash, remote)
            .ok_or(Error::NotAvailable(index))?;
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        for i in plan.nodes {
            nodes.push(self.node(i)?);
        }
        let signature = if plan.verified_by > 0 {
            let at = plan.verified_by / 2 - 1;
            Some(self.read_signature(at)?.ok_or_else(|| {
                self.signatures
                    .corrupt(format!("no signature stored for block {at}"))
            })?)
        } else {
            None
        };
        Ok(Proof { nodes, signature })
    }

    /// The digest to send when requesting block `index`: which of its uncles
    /// this side already has.
    pub fn digest(&self, index: u64) -> u64 {
        tree_index::digest(&self.bitfield, 2 * index)
    }

    /// The signature stored at or after block `index` (the one that covers it).
    pub fn signature(&self, index: u64) -> Result<(u64, [u8; 64])> {
        if index >= self.length {
            return Err(Error::NotAvailable(index));
        }
        for i in index..self.length {
            if let Some(sig) = self.read_signature(i)? {
                return Ok((i, sig));
            }
        }
        Err(self
            .signatures
            .corrupt(format!("no signature at or after block {index}")))
    }

    /// Whether `signature` signs the tree of the first `index + 1` blocks.
    pub fn verify(&self, index: u64, signature: &[u8; 64]) -> Result<bool> {
        let roots = self.roots_at(index + 1)?;
        Ok(crypto::verify(
            &self.key,
            &crypto::tree_hash(&roots),
            signature,
        ))
    }

    /// Stores block `index` received from a peer with its proof, after
    /// checking the proof against the tree and signature; with `block` `None`
    /// only the block's hash (the first proof node) is checked and stored.
    /// Nothing is written when the proof does not verify.
    pub fn put(&mut self, index: u64, block: Option<&[u8]>, proof: &Proof) -> Result<()> {
        let write = self.verify_block(index, block, proof)?;
        self.commit(write)
    }

    /// Checks block `index` (or, with `block` `None`, its hash) against its
    /// proof without storing anything; [`Feed::commit`] stores the result.
    /// Between the two the caller may inspect the verified block and refuse it.
    pub fn verify_block(
        &self,
        index: u64,
        block: Option<&[u8]>,
        proof: &Proof,
    ) -> Result<VerifiedWrite> {
        self.verify_block_with(index, block, proof, &|_| None)
    }

    /// [`Feed::verify_block`] for a block of a batch whose earlier blocks
    /// are verified but not stored yet: `pending` gives their tree nodes,
    /// which count as stored, so each proof is checked only up to what an
    /// earlier block already proved. The writes must then be committed in
    /// the order they were verified.
    pub fn verify_block_with(
        &self,
        index: u64,
        block: Option<&[u8]>,
        proof: &Proof,
        pending: &dyn Fn(u64) -> Option<Node>,
    ) -> Result<VerifiedWrite> {
        let has = |i: u64| Bits::get(&self.bitfield, i) || pending(i).is_some();
        let node = |i: u64| match pending(i) {
            Some(n) => Ok(n),
            None => self.node(i),
        };
        let invalid = |reason: &str| Error::InvalidProof {
            index,
            reason: reason.to_string(),
        };
        if index >= MAX_BLOCKS || proof.nodes.iter().any(|n| n.index >= 2 * MAX_BLOCKS) {
            return Err(invalid("an index past the end of any feed"));
        }
        let mut trusted = None;
        let mut missing = Vec::new();
        let mut next = 2 * index;
        let mut i = usize::from(block.is_none());
        loop {
            if has(next) {
                trusted = Some(next);
                break;
            }
            if flat::depth(next) > MAX_DEPTH {
                return Err(invalid("a proof taller than any feed's tree"));
            }
            let sibling = flat::sibling(next);
            next = flat::parent(next);
            if i < proof.nodes.len() && proof.nodes[i].index == sibling {
                i += 1;
                continue;
            }
            if !has(sibling) {
                break;
            }
            missing.push(sibling);
            if missing.len() > 64 {
                return Err(invalid("the proof does not lead to a known node"));
            }
        }
        if trusted.is_none() && has(next) {
            trusted = Some(next);
        }
        let mut local_nodes = std::collections::VecDeque::new();
        for m in missing {
            local_nodes.push_back(node(m)?);
        }
        let trusted = match trusted {
            Some(t) => Some(node(t)?),
            None => None,
        };

        let mut remote: std::collections::VecDeque<Node> = proof.nodes.iter().copied().collect();
        let mut visited = Vec::new();
        let mut top = match block {
            Some(data) => Node {
                index: 2 * index,
                hash: crypto::leaf_hash(data),
                size: data.len() as u64,
            },
            None => {
                let node = remote.pop_front().ok_or_else(|| invalid("no hash given"))?;
                if node.index != 2 * index {
                    return Err(invalid("the first node is not the block's"));
                }
                node
            }
        };
        let matches_trusted = |node: &Node| {
            trusted
                .as_ref()
                .is_some_and(|t| t.index == node.index && t.hash == node.hash)
        };
        if matches_trusted(&top) {
            return Ok(VerifiedWrite::new(index, block, visited, None, None));
        }
        loop {
            let next = flat::sibling(top.index);
            let node = if remote.front().is_some_and(|n| n.index == next) {
                let node = remote.pop_front().expect("checked");
                visited.push(node);
                node
            } else if local_nodes.front().is_some_and(|n| n.index == next) {
                local_nodes.pop_front().expect("checked")
            } else {
                let climbed = Climbed {
                    top,
                    remote,
                    visited,
                };
                return self.verify_roots(index, block, climbed, proof, pending);
            };
            visited.push(top);
            let size = top
                .size
                .checked_add(node.size)
                .ok_or_else(|| invalid("sizes overflow"))?;
            top = Node {
                index: flat::parent(top.index),
                hash: crypto::parent_hash(&top, &node),
                size,
            };
            if matches_trusted(&top) {
                return Ok(VerifiedWrite::new(index, block, visited, None, None));
            }
        }
    }

    fn verify_roots(
        &self,
        index: u64,
        block: Option<&[u8]>,
        climbed: Climbed,
        proof: &Proof,
        pending: &dyn Fn(u64) -> Option<Node>,
    ) -> Result<VerifiedWrite> {
        let Climbed {
            top,
            mut remote,
            mut visited,
        } = climbed;
        let invalid = |reason: &str| Error::InvalidProof {
            index,
            reason: reason.to_string(),
        };
        let last = remote.back().map_or(top.index, |n| n.index);
        let verified_by = flat::right_span(top.index).max(flat::right_span(last)) + 2;
        let full_roots = flat::full_roots(verified_by);
        // What the block climbed to must be one of the signed roots: the
        // signature vouches for nothing else. (hypercore 6 does not check
        // this, and takes any bytes proved by roots that do not cover them.)
        if !full_roots.contains(&top.index) {
            return Err(invalid("the proof does not reach the signed roots"));
        }
        let mut roots = Vec::new();
        for root in full_roots {
            if root == top.index {
                visited.push(top);
                roots.push(top);
            } else if remote.front().is_some_and(|n| n.index == root) {
                let node = remote.pop_front().expect("checked");
                visited.push(node);
                roots.push(node);
            } else if let Some(node) = pending(root) {
                roots.push(node);
            } else if Bits::get(&self.bitfield, root) {
                roots.push(self.node(root)?);
            } else {
                return Err(invalid("missing tree roots needed to verify"));
            }
        }
        let signature = proof
            .signature
            .ok_or_else(|| invalid("the remote did not include a signature"))?;
        if !crypto::verify(&self.key, &crypto::tree_hash(&roots), &signature) {
            return Err(invalid("the signature does not verify"));
        }
        let length = verified_by / 2;
        Ok(VerifiedWrite::new(
            index,
            block,
            visited,
            Some((length - 1, signature)),
            Some(roots),
        ))
    }

    /// Stores a block checked by [`Feed::verify_block`].
    pub fn commit(&mut self, write: VerifiedWrite) -> Result<()> {
        self.commit_unflushed(write)?;
        self.flush()
    }

    /// Stores a block checked by [`Feed::verify_block`] but holds its writes
    /// back until [`Feed::flush`], so many blocks received together cost one
    /// write per file. Until then a crash forgets them; reads through this
    /// feed see them at once.
    pub fn commit_unflushed(&mut self, write: VerifiedWrite) -> Result<()> {
        self.check_writes()?;
        let VerifiedWrite {
            index,
            block,
            nodes,
            signature,
            roots,
        } = write;
        let block = block.as_deref();
        let nodes = &nodes[..];
        if let Some(data) = block {
            let (offset, node) = self.data_offset(index, nodes)?;
            if node.size != data.len() as u64 {
                return Err(Error::InvalidProof {
                    index,
                    reason: "unexpected data size".into(),
                });
            }
            if !data.is_empty() {
                self.guard(|feed| feed.data.write_buffered(offset, data))?;
            }
        }
        self.guard(|feed| {
            for node in nodes {
                let mut buf = [0u8; NODE_SIZE as usize];
                encode_node(node, &mut buf);
                feed.tree
                    .write_buffered(HEADER_SIZE + node.index * NODE_SIZE, &buf)?;
                feed.nodes.insert(node.index, *node);
            }
            if let Some((at, sig)) = signature {
                feed.signatures
                    .write_buffered(HEADER_SIZE + at * SIGNATURE_SIZE, &sig)?;
            }
            Ok(())
        })?;
        self.unflushed = true;
        for node in nodes {
            tree_index::set(&mut self.bitfield, node.index);
        }
        tree_index::set(&mut self.bitfield, 2 * index);
        if block.is_some() {
            self.bitfield.set(index, true);
        }
        if let Some(roots) = roots {
            let length = signature.map_or(0, |(at, _)| at + 1);
            if length > self.length {
                self.length = length;
                self.byte_length = roots.iter().map(|r| r.size).sum();
                self.roots = roots;
            }
        }
        Ok(())
    }

    /// Re-reads every stored block and checks it against the tree. Blocks
    /// that fail are marked missing so replication fetches them again.
    pub fn audit(&mut self) -> Result<AuditReport> {
        let mut report = AuditReport::default();
        for i in 0..self.length {
            if !self.bitfield.get(i) {
                continue;
            }
            let ok = match self.read_block(i) {
                Ok((block, node)) => crypto::leaf_hash(&block) == node.hash,
                Err(Error::Io { .. }) | Err(Error::Corrupt { .. }) => false,
                Err(e) => return Err(e),
            };
            if ok {
                report.valid += 1;
            } else {
                report.invalid += 1;
                self.bitfield.set(i, false);
            }
        }
        self.flush()?;
        Ok(report)
    }

    /// The roots of the tree of the first `length` blocks.
    pub fn roots_at(&self, length: u64) -> Result<Vec<Node>> {
        flat::full_roots(2 * length)
            .into_iter()
            .map(|i| self.node(i))
            .collect()
    }

    /// Tree node `index`.
    pub fn node(&self, index: u64) -> Result<Node> {
        if let Some(node) = self.nodes.get_cloned(&index) {
            return Ok(node);
        }
        let Some(node) = self.stored_node(index)? else {
            let past_end = index
                .checked_add(1)
                .and_then(|n| n.checked_mul(NODE_SIZE))
                .is_none_or(|end| HEADER_SIZE + end > self.tree.len());
            let reason = if past_end {
                format!("node {index} is missing: the file is truncated")
            } else {
                format!("node {index} is missing (blank)")
            };
            return Err(self.tree.corrupt(reason));
        };
        self.nodes.insert(index, node);
        Ok(node)
    }

    /// Tree node `index` as the file holds it, whatever the bitfield says:
    /// `None` when it is past the end of the file or blank.
    pub(crate) fn stored_node(&self, index: u64) -> Result<Option<Node>> {
        let Some(offset) = index
            .checked_mul(NODE_SIZE)
            .and_then(|o| o.checked_add(HEADER_SIZE))
        else {
            return Ok(None);
        };
        if offset.saturating_add(NODE_SIZE) > self.tree.len() {
            return Ok(None);
        }
        let mut buf = [0u8; NODE_SIZE as usize];
        self.tree.read_into(offset, &mut buf)?;
        let node = decode_node(index, &buf);
        Ok((node.size != 0 || node.hash != [0; 32]).then_some(node))
    }

    pub(crate) fn write_node(&mut self, node: &Node) -> Result<()> {
        let mut buf = [0u8; NODE_SIZE as usize];
        encode_node(node, &mut buf);
        self.tree
            .write(HEADER_SIZE + node.index * NODE_SIZE, &buf)?;
        self.nodes.insert(node.index, *node);
        Ok(())
    }

    pub(crate) fn read_signature(&self, index: u64) -> Result<Option<[u8; 64]>> {
        let offset = HEADER_SIZE + index * SIGNATURE_SIZE;
        if self.signatures.len() < offset + SIGNATURE_SIZE {
            return Ok(None);
        }
        let mut buf = [0u8; SIGNATURE_SIZE as usize];
        self.signatures.read_into(offset, &mut buf)?;
        if buf.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        Ok(Some(buf))
    }

    /// Byte offset of block `index` in `data`, and its leaf node.
    fn data_offset(&self, index: u64, known: &[Node]) -> Result<(u64, Node)> {
        let find = |i: u64| match known.iter().find(|n| n.index == i) {
            Some(n) => Ok(*n),
            None => self.node(i),
        };
        // Only blocks read in order use it; a thread that finds another
        // holding it looks the offset up instead of waiting.
        let next = self.next_offset.try_lock().map_or((u64::MAX, 0), |g| *g);
        let offset = if next.0 == index {
            next.1
        } else {
            let mut offset = 0u64;
            for root in flat::full_roots(2 * index) {
                offset = offset.saturating_add(find(root)?.size);
            }
            offset
        };
        let leaf = find(2 * index)?;
        if let (Some(end), Ok(mut next)) =
            (offset.checked_add(leaf.size), self.next_offset.try_lock())
        {
            *next = (index + 1, end);
        }
        Ok((offset, leaf))
    }

    /// Writes what [`Feed::commit_unflushed`] held back: the blocks and tree
    /// nodes first, then the signatures, then the bitfield pages that mark
    /// them present (with [`Durability::Fsync`], syncing each step before
    /// the next).
    pub fn flush(&mut self) -> Result<()> {
        self.write_out(self.durability == Durability::Fsync, true)
    }

    /// Writes what [`Feed::commit_unflushed`] held back, in the same order
    /// as [`Feed::flush`] but without syncing, whatever the durability:
    /// [`Feed::sync_pending`] syncs it later. Replication stores blocks this
    /// way and syncs once a session ends (and every few seconds in live
    /// mode) rather than after every batch: blocks a power cut loses are
    /// fetched again, and no signature of this feed's writer is at stake.
    ///
    /// With [`Durability::Fsync`] the bitfield pages wait for that sync: a
    /// disk may keep a later write and lose an earlier unsynced one, and a
    /// bitfield that marks blocks the other files lost would make the feed
    /// claim blocks it cannot read.
    pub fn flush_unsynced(&mut self) -> Result<()> {
        let was = self.unflushed;
        self.write_out(false, self.durability != Durability::Fsync)?;
        self.needs_sync |= was;
        Ok(())
    }

    /// With [`Durability::Fsync`], syncs what [`Feed::flush_unsynced`]
    /// wrote, then writes and syncs the bitfield; nothing otherwise.
    pub fn sync_pending(&mut self) -> Result<()> {
        if self.durability != Durability::Fsync
            || !(self.needs_sync || self.bitfield.has_dirty_pages())
        {
            return Ok(());
        }
        self.write_out(false, false)?;
        self.check_writes()?;
        self.guard(Feed::sync_files)?;
        self.needs_sync = false;
        Ok(())
    }

    /// Syncs the blocks and nodes, then the signatures; then writes the
    /// bitfield pages that mark them and syncs those.
    fn sync_files(&mut self) -> Result<()> {
        self.data.sync_all()?;
        self.tree.sync_all()?;
        self.signatures.sync_all()?;
        self.write_bitfield()?;
        self.bitfield_file.sync_all()
    }

    /// Writes out the blocks, nodes and signatures (syncing them first when
    /// `sync` and something is unsynced), then the bitfield if `bitfield`.
    fn write_out(&mut self, sync: bool, bitfield: bool) -> Result<()> {
        if self.read_only {
            // Bits changed in memory (by an audit) are not written.
            self.bitfield.take_dirty_pages();
            return Ok(());
        }
        let pages = bitfield && self.bitfield.has_dirty_pages();
        if !self.unflushed && !pages {
            return Ok(());
        }
        self.check_writes()?;
        self.guard(|feed| {
            feed.data.flush()?;
            feed.tree.flush()?;
            // Blocks written unsynced earlier are synced too before any
            // bitfield page marks them.
            let sync = sync && (feed.unflushed || feed.needs_sync);
            if sync {
                feed.data.sync_all()?;
                feed.tree.sync_all()?;
            }
            feed.signatures.flush()?;
            if sync {
                feed.signatures.sync_all()?;
                feed.needs_sync = false;
            }
            feed.unflushed = false;
            if bitfield {
                feed.write_bitfield()?;
            }
            Ok(())
        })
    }

    fn write_bitfield(&mut self) -> Result<()> {
        for (offset, page) in self.bitfield.take_dirty_pages() {
            self.bitfield_file.write(HEADER_SIZE + offset, &page)?;
        }
        Ok(())
    }

    /// Flushes every file to durable storage.
    pub fn sync_all(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.write_out(false, false)?;
        self.check_writes()?;
        self.guard(|feed| {
            feed.key_file.sync_all()?;
            feed.secret_file.sync_all()?;
            feed.sync_files()
        })?;
        self.needs_sync = false;
        Ok(())
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // Best effort: whoever needed to know that the writes held back by
        // `commit_unflushed` reached storage called `flush`.
        let _ = self.flush();
    }
}

/// Adds a leaf to the roots of a tree, merging equal-sized neighbours into
/// their parents; `place` sees the leaf and every new parent.
pub(crate) fn push_leaf(roots: &mut Vec<Node>, leaf: Node, mut place: impl FnMut(&Node)) {
    place(&leaf);
    roots.push(leaf);
    while roots.len() > 1 {
        let right = roots[roots.len() - 1];
        let left = roots[roots.len() - 2];
        if flat::parent(left.index) != flat::parent(right.index) {
            break;
        }
        let node = Node {
            index: flat::parent(left.index),
            hash: crypto::parent_hash(&left, &right),
            size: left.size + right.size,
        };
        roots.pop();
        *roots.last_mut().expect("two roots") = node;
        place(&node);
    }
}

fn encode_node(node: &Node, out: &mut [u8]) {
    out[..32].copy_from_slice(&node.hash);
    out[32..40].copy_from_slice(&node.size.to_be_bytes());
}

pub(crate) fn decode_node(index: u64, buf: &[u8]) -> Node {
    Node {
        index,
        hash: buf[..32].try_into().expect("32 bytes"),
        size: u64::from_be_bytes(buf[32..40].try_into().expect("8 bytes")),
    }
}

/// What a key file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stored<const N: usize> {
    /// No file.
    Absent,
    /// Fewer bytes than a key (0 for an empty file).
    Short(u64),
    /// A whole key.
    Full([u8; N]),
}

fn read_fixed<const N: usize>(file: &mut File) -> Result<Stored<N>> {
    let len = file.len();
    if len == 0 && !file.exists() {
        return Ok(Stored::Absent);
    }
    if len < N as u64 {
        return Ok(Stored::Short(len));
    }
    let buf = file.read(0, N)?;
    Ok(Stored::Full(buf.try_into().expect("N bytes")))
}
