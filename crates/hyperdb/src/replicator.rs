//! One object for every replication session of a database: a stable peer
//! id, one memory budget for all connections, and at most one connection
//! per remote peer.
//!
//! Two peers that find each other (by discovery, say) often connect both
//! ways at once. The swarm hyperdb 3.5.0 peers join with (discovery-swarm
//! 5) keeps the connection whose *initiator* (the side that connected) has
//! the smaller peer id, as the handshakes tell, and closes the other; a
//! replicator applies the same rule, so that a JS peer and a Rust peer
//! agree on which connection lives (tested against a JS peer on
//! hyperdiscovery 8).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use crate::error::{ReplicationError, Result};
use crate::replicate::{drive, MemoryBudget, Registrar, ReplicateOptions, Summary};
use crate::write::Db;

/// Every replication session of one database (see the module docs).
///
/// ```
/// use hyperdb::{Db, DbStorage, OpenOptions, ReplicateOptions, Replicator};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let owner = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
/// owner.put("hello", b"world").unwrap();
/// let options = OpenOptions { key: Some(*owner.key()), ..Default::default() };
/// let replica = Db::open_storage(DbStorage::memory(), options).unwrap();
///
/// let serving = Replicator::new(owner, ReplicateOptions::default());
/// let fetching = Replicator::new(replica.clone(), ReplicateOptions::default());
/// let (a, b) = tokio::io::duplex(1 << 16);
/// let (served, fetched) = tokio::join!(serving.run(a, false), fetching.run(b, true));
/// served.unwrap();
/// fetched.unwrap();
/// assert_eq!(replica.get("hello").unwrap().len(), 1);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Replicator {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    options: ReplicateOptions,
    id: [u8; 32],
    budget: MemoryBudget,
    /// The connection kept for each remote peer id.
    connections: Mutex<HashMap<Vec<u8>, Connection>>,
    serials: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("id", &hex::encode(self.id))
            .field("peers", &self.connections().len())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn connections(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Connection>> {
        // Entries are whole whenever the lock is released.
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Connection {
    serial: u64,
    /// Ends the connection's session when another one is kept instead.
    replaced: Arc<Notify>,
}

impl Replicator {
    /// A replicator of `db`. `options` apply to every session; its `id`
    /// (random when `None`) is the peer id every handshake sends, and its
    /// `budget` (the default 64 MiB when `None`) is shared by all sessions.
    pub fn new(db: Db, options: ReplicateOptions) -> Self {
        let id = options
            .id
            .unwrap_or_else(|| hypercore_wire::ProtocolOptions::default().id);
        let budget = options.budget.clone().unwrap_or_default();
        Replicator {
            inner: Arc::new(Inner {
                db,
                options: ReplicateOptions {
                    id: Some(id),
                    budget: Some(budget.clone()),
                    ..options
                },
                id,
                budget,
                connections: Mutex::new(HashMap::new()),
                serials: AtomicU64::new(0),
            }),
        }
    }

    /// The peer id this replicator sends in every handshake.
    pub fn id(&self) -> &[u8; 32] {
        &self.inner.id
    }

    /// The database replicated.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The memory budget all sessions share.
    pub fn budget(&self) -> &MemoryBudget {
        &self.inner.budget
    }

    /// How many distinct peers are connected (past their handshake).
    pub fn peers(&self) -> usize {
        self.inner.connections().len()
    }

    /// Replicates over `stream` until the session ends, as
    /// [`replicate`](fn@crate::replicate) does; `initiator` says whether this
    /// side opened the connection. A second connection to a peer already
    /// connected ends one of the two with
    /// [`ReplicationError::Duplicate`], by hyperdb 3.5.0's rule, as does a
    /// connection to this replicator itself.
    pub async fn run<S>(&self, stream: S, initiator: bool) -> Result<Summary>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let registration = Registration {
            inner: &self.inner,
            serial: self.inner.serials.fetch_add(1, Ordering::Relaxed),
            initiator,
            peer: Mutex::new(None),
        };
        let db = self.inner.db.clone();
        drive(db, stream, self.inner.options.clone(), Some(&registration)).await
    }
}

/// One session's place among the connections; it gives the place up when
/// the session ends.
struct Registration<'a> {
    inner: &'a Inner,
    serial: u64,
    initiator: bool,
    peer: Mutex<Option<Vec<u8>>>,
}

impl Registrar for Registration<'_> {
    fn register(&self, remote_id: &[u8]) -> Result<Arc<Notify>> {
        let duplicate = |reason| {
            Err(ReplicationError::Duplicate {
                peer: hex::encode(remote_id),
                reason,
            }
            .into())
        };
        if remote_id == self.inner.id {
            return duplicate("it is this replicator itself");
        }
        let (initiator_id, other_id) = if self.initiator {
            (&self.inner.id[..], remote_id)
        } else {
            (remote_id, &self.inner.id[..])
        };
        let mut connections = self.inner.connections();
        if let Some(kept) = connections.get(remote_id) {
            // discovery-swarm 5's rule, decided on the new connection alone:
            // opened by the peer with the larger id, it goes; opened by the
            // smaller, it replaces the one there. So the connection opened
            // by the smaller id is kept, and of two opened by one side, the
            // older when that side's id is the larger, else the newer.
            if initiator_id > other_id {
                return duplicate("another connection to it was kept");
            }
            kept.replaced.notify_one();
        }
        let replaced = Arc::new(Notify::new());
        connections.insert(
            remote_id.to_vec(),
            Connection {
                serial: self.serial,
                replaced: replaced.clone(),
            },
        );
        *self.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(remote_id.to_vec());
        Ok(replaced)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let peer = self
            .peer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(peer) = peer {
            let mut connections = self.inner.connections();
            if connections
                .get(&peer)
                .is_some_and(|c| c.serial == self.serial)
            {
                connections.remove(&peer);
            }
        }
    }
}
