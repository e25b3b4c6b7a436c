//! Errors of the database.

use std::io;

/// Everything that can go wrong in a database operation. Each message says
/// what happened and, where there is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A feed of the database failed.
    #[error(transparent)]
    Feed(#[from] hypercore_feed::Error),
    /// A folder could not be read or created.
    #[error("{path}: {source}")]
    Io {
        /// The folder or file.
        path: String,
        /// What the system said.
        source: io::Error,
    },
    /// There is no database in the folder.
    #[error("{0}: no hyperdb database here (create one with `hyperdb init`)")]
    NotFound(String),
    /// The folder holds a database with another key.
    #[error("{dir}: this folder holds the database {found}, not {expected}")]
    WrongDatabase {
        /// The folder.
        dir: String,
        /// Key found.
        found: String,
        /// Key asked for.
        expected: String,
    },
    /// Another process has the folder open for writing.
    #[error(
        "{0} is open for writing in another process (a `hyperdb serve`, `sync` or \
         `watch --live`, or a program using the database): one writer at a time; \
         reading commands still work"
    )]
    Locked(String),
    /// A writer's key is not 32 bytes.
    #[error("a writer key is 32 bytes (64 hex characters); got {0} bytes")]
    BadKeyLength(usize),
    /// `authorize` was given the database key.
    #[error(
        "{0} is the database key, which is always authorized: to let another \
         replica write, authorize its *local* key (`hyperdb info` on that replica shows it)"
    )]
    AuthorizeDbKey(String),
    /// `authorize` was given a key that is already authorized.
    #[error("{0} is already authorized to write")]
    AlreadyAuthorized(String),
    /// An entry could not be decoded.
    #[error("entry {seq} of feed {feed} is damaged: {reason}")]
    BadEntry {
        /// Feed key, hex.
        feed: String,
        /// The entry.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The first block of a feed is not a hyperdb header.
    #[error("feed {feed} is not a hyperdb feed: {reason}")]
    BadHeader {
        /// Feed key, hex.
        feed: String,
        /// What is wrong.
        reason: String,
    },
    /// Replication with a peer failed; the database keeps what was verified
    /// and stored before the failure.
    #[error("replication failed: {0}")]
    Replication(#[from] ReplicationError),
    /// An argument is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A permission change this replica may not make, or that would change
    /// nothing; nothing was written.
    #[error("refused: {what}")]
    Refused {
        /// Why.
        what: String,
        /// What to do instead.
        hint: String,
    },
}

impl Error {
    /// Whether this says that bytes a writer signed are not a hyperdb
    /// entry or header. Such bytes in another writer's feed hold back only
    /// that writer (see `delivery`); in a replica's own feed they are
    /// damage.
    pub fn is_undecodable(&self) -> bool {
        matches!(self, Error::BadEntry { .. } | Error::BadHeader { .. })
    }
}

/// Why a replication session ended with an error. In every case the
/// database keeps what was verified and stored before, and a later sync
/// continues from there.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The stream broke the wire protocol, timed out, or serves another
    /// database ([`WireError::DifferentFeed`](hypercore_wire::WireError)).
    #[error(transparent)]
    Wire(#[from] hypercore_wire::WireError),
    /// Reading or writing the connection failed.
    #[error("connection failed: {0}")]
    Connection(#[source] io::Error),
    /// The peer closed the connection before its handshake.
    #[error(
        "the peer closed the connection before its handshake: it does not serve this database"
    )]
    NoHandshake,
    /// The peer is already connected by another connection, which was kept
    /// (hyperdb 3.5.0's rule: the connection whose initiator has the
    /// smaller peer id), or the peer is this replicator itself.
    #[error("closed a duplicate connection to peer {peer}: {reason}")]
    Duplicate {
        /// The peer's id, hex.
        peer: String,
        /// Which connection was kept.
        reason: &'static str,
    },
    /// A block did not verify against its proof; nothing was stored.
    #[error("the peer sent data that does not verify: {0}")]
    Unverified(#[source] hypercore_feed::Error),
    /// A message that hyperdb never sends, or that does not make sense.
    #[error("the peer sent {0}")]
    BadMessage(String),
    /// An entry that does not decode, shown to the `on_write` hook.
    #[error("entry {seq} of feed {feed} does not decode: {reason}")]
    BadEntry {
        /// Feed key, hex.
        feed: String,
        /// The entry.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The `on_write` hook refused an entry.
    #[error("entry {seq} of feed {feed} was refused: {reason}")]
    Refused {
        /// Feed key, hex.
        feed: String,
        /// The entry.
        seq: u64,
        /// The hook's reason.
        reason: String,
    },
    /// The peer did not answer a request in time.
    #[error("the peer did not answer a request for block {index} of feed {feed}")]
    Unanswered {
        /// Feed key, hex.
        feed: String,
        /// The block.
        index: u64,
    },
    /// The peer stopped reading what it is sent.
    #[error("the peer stopped reading: {unsent} bytes could not be sent for {waited:?}")]
    NotReading {
        /// Bytes waiting.
        unsent: usize,
        /// For how long.
        waited: std::time::Duration,
    },
    /// The peer asked for more than it reads.
    #[error("the peer asked for more than {0} blocks without reading the answers")]
    TooManyRequests(usize),
    /// The peer made the session hold more than its share of the memory
    /// budget of all sessions.
    #[error("the peer made this session hold {held} bytes, more than its share ({share}) of the {limit}-byte memory budget of all sessions")]
    OverBudget {
        /// Bytes held for the peer.
        held: usize,
        /// This session's share.
        share: usize,
        /// The budget.
        limit: usize,
    },
}

/// Result of database operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
