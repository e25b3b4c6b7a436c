//! Versions, checkouts, and the history of the database or of one key.

use std::sync::Arc;

use hypercore_feed::varint;

use crate::db::DbReader;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::policy::Policy;

/// A read-only view of the database as it was at a version: lookups start
/// from that version's heads instead of the current ones.
#[derive(Clone, Debug)]
pub struct Checkout<'a> {
    db: &'a DbReader,
    heads: Vec<Arc<Node>>,
    /// What counts (`None`: everything, as hyperdb 3.5.0 shows it).
    policy: Option<Arc<Policy>>,
}

impl<'a> Checkout<'a> {
    fn new(db: &'a DbReader, heads: Vec<Arc<Node>>) -> Result<Self> {
        let policy = db.policy_for(&heads)?;
        Ok(Checkout { db, heads, policy })
    }

    /// The same view as hyperdb 3.5.0 shows it: every write of every
    /// authorized writer, revocations ignored (see [`crate::policy`]).
    pub fn raw(self) -> Self {
        Checkout {
            policy: None,
            ..self
        }
    }

    /// Whether `node` counts in this view (always, in a raw one).
    pub fn counts(&self, node: &Node) -> bool {
        self.policy.as_ref().is_none_or(|p| p.counts(node))
    }
}

impl Checkout<'_> {
    /// The heads the view reads from.
    pub fn heads(&self) -> &[Arc<Node>] {
        &self.heads
    }

    /// All values of `key` at this version.
    pub fn get(&self, key: &str) -> Result<Vec<Arc<Node>>> {
        crate::get::get(
            self.db,
            &self.heads,
            crate::hash::normalize(key),
            self.policy.as_deref(),
        )
    }

    /// Every live key under `prefix` at this version, with its values.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<Arc<Node>>)>> {
        self.iter(prefix, crate::IterOptions::default())?.collect()
    }

    /// A lazy iterator over the keys under `prefix` at this version.
    pub fn iter(&self, prefix: &str, options: crate::IterOptions) -> Result<crate::Iter<'_>> {
        crate::Iter::new(self.db, &self.heads, self.policy.clone(), prefix, options)
    }

    /// The version identifier of this view.
    pub fn version(&self) -> Vec<u8> {
        encode_version(self.db, &self.heads)
    }

    /// Every write up to this version, oldest first (or newest first).
    pub fn history(&self, reverse: bool) -> History<'_> {
        History::new(self.db, &self.heads, reverse, self.policy.clone())
    }

    /// Every write to `key` up to this version, newest first.
    pub fn key_history(&self, key: &str) -> KeyHistory<'_> {
        KeyHistory::new(self.db, self.heads.clone(), key, self.policy.clone())
    }
}

fn encode_version(db: &DbReader, heads: &[Arc<Node>]) -> Vec<u8> {
    let writers = db.writers();
    let heads: Vec<([u8; 32], u64)> = heads.iter().map(|h| (writers[h.feed].key, h.seq)).collect();
    version_bytes(&heads)
}

/// A version's bytes: for each head, its writer's key and its seq as a
/// varint, as hyperdb 3.5.0 encodes them.
///
/// ```
/// let heads = [([1; 32], 5), ([2; 32], 300)];
/// let bytes = hyperdb::version_bytes(&heads);
/// assert_eq!(bytes.len(), 32 + 1 + 32 + 2);
/// assert_eq!(hyperdb::parse_version(&bytes).unwrap(), heads);
/// ```
pub fn version_bytes(heads: &[([u8; 32], u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(heads.len() * 34);
    for (key, seq) in heads {
        out.extend_from_slice(key);
        varint::encode(*seq, &mut out);
    }
    out
}

/// The heads a version names, as (writer key, seq): the inverse of
/// [`version_bytes`]. An error for bytes that are not a version.
pub fn parse_version(version: &[u8]) -> Result<Vec<([u8; 32], u64)>> {
    let bad = || {
        Error::Invalid(
            "invalid version: expected 32-byte keys each followed by a varint seq".into(),
        )
    };
    let mut heads = Vec::new();
    let mut rest = version;
    while !rest.is_empty() {
        if rest.len() < 33 {
            return Err(bad());
        }
        let key: [u8; 32] = rest[..32].try_into().expect("32 bytes");
        let (seq, used) = varint::decode(&rest[32..]).ok_or_else(bad)?;
        rest = &rest[32 + used..];
        heads.push((key, seq));
    }
    Ok(heads)
}

impl DbReader {
    /// The database as it is now, as a view that later writes and
    /// replicated blocks leave alone: every read on it answers for this
    /// moment, however long it takes. Cheap (it holds the current heads),
    /// and readable from several threads at once.
    ///
    /// ```
    /// use hyperdb::{Db, DbStorage, OpenOptions};
    /// let db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
    /// db.put("a", b"1").unwrap();
    /// let before = db.snapshot().unwrap();
    /// db.put("a", b"2").unwrap();
    /// assert_eq!(before.get("a").unwrap()[0].value.as_deref(), Some(&b"1"[..]));
    /// assert_eq!(db.get("a").unwrap()[0].value.as_deref(), Some(&b"2"[..]));
    /// ```
    pub fn snapshot(&self) -> Result<Checkout<'_>> {
        Checkout::new(self, self.heads()?)
    }

    /// The version identifier: for each head, its writer's key and varint
    /// seq, the same bytes as hyperdb 3.5.0's `version()`.
    pub fn version(&self) -> Result<Vec<u8>> {
        let heads = self.heads()?;
        Ok(encode_version(self, &heads))
    }

    /// A read-only view of the database at `version` (from [`DbReader::version`],
    /// here or on any replica that holds the same feeds). An empty version
    /// is the empty database.
    pub fn checkout(&self, version: &[u8]) -> Result<Checkout<'_>> {
        self.discover()?;
        let mut heads = Vec::new();
        for (key, seq) in parse_version(version)? {
            let writer = self.writer_index(&key).ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid version: no writer {} here",
                    hex::encode(key)
                ))
            })?;
            if !self.included(writer) {
                return Err(Error::Invalid(format!(
                    "writer {} is not authorized here (sync first, so this replica learns the authorization)",
                    hex::encode(key)
                )));
            }
            let node = self.node(writer, seq)?.ok_or_else(|| {
                Error::Invalid(format!(
                    "this replica does not hold entry {seq} of writer {} (sync first)",
                    hex::encode(key)
                ))
            })?;
            heads.push(node);
        }
        Checkout::new(self, heads)
    }

    /// Every write, oldest first (newest first with `reverse`), merged from
    /// the writers' feeds as hyperdb 3.5.0's history stream does: each
    /// writer's entries in order, and an entry of one writer before another
    /// writer's entry that has seen the entry after it. Close to causal
    /// order, and the same order as the reference's when both number the
    /// writers alike.
    pub fn history(&self, reverse: bool) -> Result<History<'_>> {
        let heads = self.heads()?;
        let policy = self.policy_for(&heads)?;
        Ok(History::new(self, &heads, reverse, policy))
    }

    /// Every write to `key` (deletes included), newest first.
    pub fn key_history(&self, key: &str) -> Result<KeyHistory<'_>> {
        let heads = self.heads()?;
        let policy = self.policy_for(&heads)?;
        Ok(KeyHistory::new(self, heads, key, policy))
    }
}

/// Iterator over the writes of a database in the reference's history order.
#[derive(Debug)]
pub struct History<'a> {
    db: &'a DbReader,
    reverse: bool,
    end: Vec<u64>,
    nodes: Vec<Option<Arc<Node>>>,
    started: bool,
    policy: Option<Arc<Policy>>,
}

impl<'a> History<'a> {
    fn new(
        db: &'a DbReader,
        heads: &[Arc<Node>],
        reverse: bool,
        policy: Option<Arc<Policy>>,
    ) -> Self {
        let writers = db.writers().len();
        let end = (0..writers)
            .map(|i| {
                heads
                    .iter()
                    .filter_map(|h| h.clock.get(i).copied())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        History {
            db,
            reverse,
            end,
            nodes: vec![None; writers],
            started: false,
            policy,
        }
    }

    fn start(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            // Writes count only from the writers `get` counts.
            if self.end[i] > 1 && self.db.included(i) {
                let seq = if self.reverse { self.end[i] - 1 } else { 1 };
                self.nodes[i] = self.db.scan_node(i, seq)?;
            }
        }
        Ok(())
    }

    fn pick(&self) -> Option<Arc<Node>> {
        let mut best: Option<&Arc<Node>> = None;
        for t in self.nodes.iter().flatten() {
            if let Some(b) = best {
                let clock = b.clock.get(t.feed).copied().unwrap_or(0);
                let better = if self.reverse {
                    t.seq + 1 > clock
                } else {
                    t.seq + 1 < clock
                };
                if !better {
                    continue;
                }
            }
            best = Some(t);
        }
        best.cloned()
    }

    fn advance(&mut self) -> Result<Option<Arc<Node>>> {
        if !self.started {
            self.started = true;
            self.start()?;
        }
        let Some(node) = self.pick() else {
            return Ok(None);
        };
        let feed = node.feed;
        self.nodes[feed] = if self.reverse {
            match node.seq - 1 {
                0 => None,
                seq => self.db.scan_node(feed, seq)?,
            }
        } else if node.seq + 1 >= self.end[feed] {
            None
        } else {
            self.db.scan_node(feed, node.seq + 1)?
        };
        Ok(Some(node))
    }
}

impl Iterator for History<'_> {
    type Item = Result<Arc<Node>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let node = self.advance().transpose()?;
            // Writes that do not count are left out.
            match (&node, &self.policy) {
                (Ok(n), Some(policy)) if !policy.counts(n) => continue,
                _ => return Some(node),
            }
        }
    }
}

/// Iterator over the writes to one key, newest first; each step yields the
/// writes that were current together (several for a conflict).
#[derive(Debug)]
pub struct KeyHistory<'a> {
    db: &'a DbReader,
    heads: Vec<Arc<Node>>,
    key: String,
    policy: Option<Arc<Policy>>,
}

impl<'a> KeyHistory<'a> {
    fn new(
        db: &'a DbReader,
        heads: Vec<Arc<Node>>,
        key: &str,
        policy: Option<Arc<Policy>>,
    ) -> Self {
        KeyHistory {
            db,
            heads,
            key: crate::hash::normalize(key).to_string(),
            policy,
        }
    }

    fn advance(&mut self) -> Result<Option<Vec<Arc<Node>>>> {
        if self.heads.is_empty() {
            return Ok(None);
        }
        let candidates = crate::get::candidates(self.db, &self.heads, &self.key)?;
        let candidates =
            crate::get::counting(self.db, candidates, &self.key, self.policy.as_deref())?;
        let nodes = crate::get::latest(candidates, true);
        if nodes.is_empty() {
            return Ok(None);
        }
        // Continue from what those writes had seen, just before them.
        let mut next = Vec::new();
        for node in &nodes {
            next.extend(crate::get::past(self.db, node)?);
        }
        self.heads = crate::node::unseen(&next);
        Ok(Some(nodes))
    }
}

impl Iterator for KeyHistory<'_> {
    type Item = Result<Vec<Arc<Node>>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance().transpose()
    }
}
