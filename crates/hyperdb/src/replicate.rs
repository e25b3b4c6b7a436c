//! Replication over hypercore-protocol 6, interoperable with hyperdb 3.5.0.
//!
//! A [`Session`] is the sans-IO core: it drives a [`Protocol`] and, for every
//! authorized writer, a peer that speaks hypercore 6's want/have/request/data
//! dialogue for that writer's feed. Blocks arrive with proofs and are
//! verified before they are stored; as entries arrive the database follows
//! their inflated entries to newly authorized writers and opens channels for
//! them (the reference's `expectedFeeds`). [`replicate`] runs a session over
//! any tokio byte stream.
//!
//! A one-shot session ends when it holds everything the peer has and the
//! peer wants nothing more from it; a live one keeps exchanging new blocks
//! until the stream closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hypercore_feed::cache::{IndexHasher, KeyMap};

/// Verified blocks stored per hold of the database's write lock.
const STORE_CHUNK: usize = 32;

/// A map keyed by tree-node index.
type IndexMap<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IndexHasher>>;
use hypercore_feed::{Bits, Feed, Node as TreeNode, Proof, SparseBits, VerifiedWrite};
use hypercore_wire::messages::{Data, DataNode, Have, Info, Request, Want};
use hypercore_wire::{Event, Message, Protocol, ProtocolOptions, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::changes::{Changed, Subscription};
use crate::error::{Error, ReplicationError, Result};
use crate::messages::InflatedEntry;
use crate::write::Db;

/// Blocks requested at once per feed. Hypercore 6 keeps 16 in flight; more
/// keeps a fast link busy (the peer answers them in order either way).
const MAX_REQUESTS: usize = 2048;
/// The Want every peer sends: the first 1,048,576 blocks.
const WANT_LENGTH: u64 = 1024 * 1024;

/// What a peer says it has is kept, one bit a block, for blocks below
/// this (8 MiB of bits at most per feed and peer); what it says of blocks
/// past it is not kept, so a peer naming a block far out cannot make this
/// side allocate for every block before it.
const MAX_TRACKED_BLOCKS: u64 = 1 << 26;
/// Ticks an answer to a request may take.
const REQUEST_TICKS: u32 = 6;
/// Answers waiting to be sent, in bytes, past which further requests wait
/// unanswered until the peer has read some: a peer that asks faster than it
/// reads costs a bounded amount of memory.
const MAX_BACKLOG: usize = 4 << 20;
/// Requests waiting for an answer, past which the peer is given up: as many
/// as an honest peer keeps in flight on every channel a stream may have.
const MAX_DEFERRED: usize = MAX_REQUESTS * 256;
/// How long to wait for the peer to close after we are done.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// An entry arriving from a peer, shown to [`ReplicateOptions::on_write`]
/// after its proof checked out and before it is stored.
#[derive(Clone, Debug)]
pub struct IncomingEntry {
    /// The writer's feed key.
    pub feed: [u8; 32],
    /// Seq of the entry in that feed.
    pub seq: u64,
    /// The entry as stored (clock and feeds in the writer's numbering).
    pub entry: InflatedEntry,
    /// The peer's id from its handshake.
    pub peer: Option<Vec<u8>>,
}

/// A hook that sees each replicated entry and may refuse it (with a reason),
/// which ends the session with an error, as in the reference.
pub type OnWrite = Arc<dyn Fn(&IncomingEntry) -> std::result::Result<(), String> + Send + Sync>;

/// A progress callback: (writer key, blocks received for it, its length).
pub type OnProgress = Arc<dyn Fn(&[u8; 32], u64, u64) + Send + Sync>;

/// Memory shared by replication sessions for what their peers make them
/// hold: bytes received and not yet parsed (a frame may announce 8 MiB and
/// then trickle in), answers waiting for a peer to read them, requests
/// waiting to be answered. While the sessions together hold more than the
/// limit, a session that holds more than its share (the limit divided
/// among the sessions) ends with an error, so no peer, and no crowd of
/// peers, can make a server hold more than about the limit.
///
/// ```
/// use hyperdb::replicate::MemoryBudget;
/// let budget = MemoryBudget::new(64 << 20); // shared by every connection of a server
/// assert_eq!(budget.used(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: Arc<AtomicUsize>,
    sessions: Arc<AtomicUsize>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            limit,
            used: Arc::default(),
            sessions: Arc::default(),
        }
    }

    /// Bytes the sessions hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Default for MemoryBudget {
    /// 64 MiB.
    fn default() -> Self {
        MemoryBudget::new(64 << 20)
    }
}

/// One session's part of a [`MemoryBudget`], given back when dropped.
struct Share {
    budget: MemoryBudget,
    held: usize,
}

impl Share {
    fn new(budget: MemoryBudget) -> Self {
        budget.sessions.fetch_add(1, Ordering::Relaxed);
        Share { budget, held: 0 }
    }

    /// This session's fair share of the budget.
    fn fair(&self) -> usize {
        self.budget.limit / self.budget.sessions.load(Ordering::Relaxed).max(1)
    }

    /// Records what the session holds: `for_peer` bytes the peer made it
    /// hold, `unsent` bytes of its own answers (which the session keeps
    /// under its share by deferring requests). An error when the budget is
    /// spent and the peer holds more than this session's share.
    fn hold(&mut self, for_peer: usize, unsent: usize) -> Result<()> {
        let budget = &self.budget;
        let held = for_peer + unsent;
        if held >= self.held {
            budget.used.fetch_add(held - self.held, Ordering::Relaxed);
        } else {
            budget.used.fetch_sub(self.held - held, Ordering::Relaxed);
        }
        self.held = held;
        let share = self.fair();
        if budget.used() > budget.limit && for_peer > share {
            return Err(ReplicationError::OverBudget {
                held: for_peer,
                share,
                limit: budget.limit,
            }
            .into());
        }
        Ok(())
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::Relaxed);
        self.budget.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How to replicate.
#[derive(Clone)]
pub struct ReplicateOptions {
    /// Keep exchanging new blocks until the stream closes.
    pub live: bool,
    /// Silence after which the peer is given up (hypercore's default: 5 s).
    pub timeout: Duration,
    /// Called for every replicated entry before it is stored.
    pub on_write: Option<OnWrite>,
    /// Called after every stored block with (writer key, blocks received for
    /// it so far, its length), for progress displays.
    pub on_progress: Option<OnProgress>,
    /// The memory budget this session shares with others (a server gives
    /// every connection the same one); `None` for a budget of its own of
    /// the default size.
    pub budget: Option<MemoryBudget>,
    /// Our peer id, sent in the handshake; random when `None` (a
    /// [`Replicator`](crate::Replicator) sends the same one on every
    /// connection, so peers can tell duplicates apart).
    pub id: Option<[u8; 32]>,
    /// The nonce our side of the stream is encrypted with; random when
    /// `None`. A caller that sets it (a simulation drawing everything from
    /// one seed) must give every session a different one.
    pub nonce: Option<[u8; 24]>,
}

impl Default for ReplicateOptions {
    fn default() -> Self {
        ReplicateOptions {
            live: false,
            timeout: Duration::from_secs(5),
            on_write: None,
            on_progress: None,
            budget: None,
            id: None,
            nonce: None,
        }
    }
}

impl std::fmt::Debug for ReplicateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicateOptions")
            .field("live", &self.live)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a session exchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per writer key: blocks received.
    pub received: Vec<([u8; 32], u64)>,
    /// Blocks sent to the peer.
    pub sent: u64,
    /// Whether the peer's handshake arrived.
    pub connected: bool,
    /// Feeds both sides replicated.
    pub shared_feeds: usize,
}

impl Summary {
    /// Total blocks received.
    pub fn total_received(&self) -> u64 {
        self.received.iter().map(|(_, n)| n).sum()
    }
}

/// Where a feed's channel is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Opened on our side; the handshake has not arrived.
    Opening,
    /// Exchanging wants, haves, requests and data.
    Open,
    /// We said we want nothing more (an Info with `downloading: false`);
    /// still answering the peer.
    Ending,
    /// Closed: nothing more is sent or asked.
    Closed,
}

struct Peer {
    key: [u8; 32],
    remote_has: SparseBits,
    remote_length: u64,
    remote_want: bool,
    remote_tree: SparseBits,
    inflight: std::collections::VecDeque<(u64, u32)>,
    got_have: bool,
    downloading: bool,
    default_downloading: bool,
    remote_downloading: bool,
    stage: Stage,
    announced: u64,
    received: u64,
    /// Ticks since the peer last asked for a block.
    idle_ticks: u32,
    /// Where the next scan for blocks to request starts.
    cursor: u64,
    /// The blocks in `inflight`, for quick lookups.
    requested: std::collections::HashSet<u64>,
    /// The peer has every block below this (as far as looked: it only
    /// grows lazily, in [`Peer::remote_has_all_below`]).
    remote_prefix: u64,
}

impl Peer {
    /// Records whether the peer has `block`.
    fn set_remote_has(&mut self, block: u64, has: bool) {
        if block >= MAX_TRACKED_BLOCKS {
            return;
        }
        self.remote_has.set(block, has);
        if !has {
            self.remote_prefix = self.remote_prefix.min(block);
        }
    }

    /// Whether the peer has every block below `n`, so it can want nothing
    /// from a feed `n` blocks long.
    fn remote_has_all_below(&mut self, n: u64) -> bool {
        while self.remote_prefix < n && self.remote_has.get(self.remote_prefix) {
            self.remote_prefix += 1;
        }
        self.remote_prefix >= n
    }
}

/// The sans-IO core of one replication stream.
pub struct Session {
    protocol: Protocol,
    peers: KeyMap<Peer>,
    options: ReplicateOptions,
    summary: Summary,
    handshake: bool,
    error: Option<Error>,
    /// Requests not answered yet because the answers already waiting for
    /// the peer reached the backlog limit.
    deferred: std::collections::VecDeque<([u8; 32], Request)>,
    /// Answers waiting for the peer, in bytes, past which requests are
    /// deferred: [`MAX_BACKLOG`], or less when a memory budget is tight.
    backlog_limit: usize,
    /// Blocks verified while handling the last input, stored together.
    verified: Vec<([u8; 32], [u8; 32], VerifiedWrite)>,
    /// The tree nodes of `verified`, by feed: later blocks of the batch are
    /// checked against them as if they were stored.
    pending_nodes: KeyMap<IndexMap<TreeNode>>,
    /// The session's subscription to the database's changes: it wants the
    /// feeds the peer wants, so growth elsewhere does not wake it, and it
    /// hears of writers that other sessions (or local writes) bring in.
    subscription: Subscription,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peers", &self.peers.len())
            .field("handshake", &self.handshake)
            .finish_non_exhaustive()
    }
}

fn wire(e: WireError) -> Error {
    ReplicationError::Wire(e).into()
}

impl Session {
    /// Starts a session: opens a channel for every authorized writer, the
    /// database's own feed first. A database opened read-only cannot
    /// replicate: it would store what arrives.
    pub fn new(db: &Db, options: ReplicateOptions) -> Result<Session> {
        let defaults = ProtocolOptions::default();
        let protocol = Protocol::new(ProtocolOptions {
            live: options.live,
            id: options.id.unwrap_or(defaults.id),
            nonce: options.nonce,
            ..defaults
        });
        let mut session = Session {
            protocol,
            peers: KeyMap::default(),
            options,
            summary: Summary::default(),
            handshake: false,
            error: None,
            deferred: Default::default(),
            backlog_limit: MAX_BACKLOG,
            verified: Vec::new(),
            pending_nodes: KeyMap::default(),
            subscription: db.subscribe(),
        };
        db.discover()?;
        session.open_authorized(db)?;
        Ok(session)
    }

    /// What was exchanged so far.
    pub fn summary(&self) -> Summary {
        let mut summary = self.summary.clone();
        summary.received = self.peers.values().map(|p| (p.key, p.received)).collect();
        summary.received.sort();
        summary.shared_feeds = self
            .peers
            .iter()
            .filter(|(dk, _)| self.protocol.remote_opened(dk))
            .count();
        summary
    }

    /// Bytes for the peer, encrypted; after writing some of them call
    /// [`Session::consume`]. While more than a few MiB wait, requests from
    /// the peer are held back until [`Session::answer_deferred`].
    pub fn outgoing(&mut self) -> &[u8] {
        self.protocol.outgoing()
    }

    /// Marks the first `n` bytes of [`Session::outgoing`] as sent.
    pub fn consume(&mut self, n: usize) {
        self.protocol.consume(n)
    }

    /// Whether bytes wait to be sent.
    pub fn has_outgoing(&self) -> bool {
        self.protocol.has_outgoing()
    }

    /// Bytes the peer made this session hold: its unparsed input (a frame
    /// still arriving) and its requests waiting to be answered.
    pub fn held_for_peer(&self) -> usize {
        let deferred = self.deferred.len() * std::mem::size_of::<([u8; 32], Request)>();
        self.protocol.input_len() + deferred
    }

    /// Bytes of answers waiting for the peer to read them (at most about the
    /// backlog limit).
    pub fn unsent(&self) -> usize {
        self.protocol.outgoing_len()
    }

    /// Answers waiting for the peer past which its further requests wait
    /// (4 MiB unless lowered).
    pub fn set_backlog_limit(&mut self, bytes: usize) {
        self.backlog_limit = bytes;
    }

    /// Whether requests wait for the peer to read what it asked for before.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// The peer's id from its handshake, once it has arrived.
    pub fn remote_id(&self) -> Option<&[u8]> {
        self.protocol.remote_handshake()?.id.as_deref()
    }

    /// Answers requests held back while the peer was not reading, as far
    /// as the backlog allows.
    pub fn answer_deferred(&mut self, db: &Db) -> Result<()> {
        while self.protocol.outgoing_len() < self.backlog_limit {
            let Some((dk, request)) = self.deferred.pop_front() else {
                break;
            };
            self.answer(db, &dk, request)?;
        }
        Ok(())
    }

    /// Whether a one-shot session has nothing left to do: every channel has
    /// ended on both sides.
    pub fn is_done(&self) -> bool {
        !self.options.live
            && self.handshake
            && self.deferred.is_empty()
            && self.peers.values().all(|p| p.stage == Stage::Closed)
    }

    fn open_authorized(&mut self, db: &Db) -> Result<()> {
        // Each authorized writer's feed, then its content feed if it has one
        // (the reference's order).
        for key in feed_keys(db, true) {
            let dk = hypercore_feed::crypto::discovery_key(&key);
            if self.peers.contains_key(&dk) {
                continue;
            }
            self.protocol.open(&key).map_err(wire)?;
            let writable = db.read_feed(&key, Feed::is_writable).unwrap_or(false);
            let mut peer = Peer {
                key,
                remote_has: SparseBits::new(),
                remote_length: 0,
                remote_want: false,
                remote_tree: SparseBits::new(),
                inflight: Default::default(),
                got_have: false,
                downloading: !writable,
                default_downloading: !writable,
                remote_downloading: true,
                stage: Stage::Opening,
                announced: 0,
                received: 0,
                idle_ticks: 0,
                cursor: 0,
                requested: Default::default(),
                remote_prefix: 0,
            };
            if self.handshake {
                Self::ready(&mut self.protocol, &mut peer, &dk);
            }
            self.peers.insert(dk, peer);
        }
        Ok(())
    }

    fn ready(protocol: &mut Protocol, peer: &mut Peer, dk: &[u8; 32]) {
        peer.stage = Stage::Open;
        if peer.downloading {
            protocol.send(
                dk,
                &Message::Want(Want {
                    start: 0,
                    length: Some(WANT_LENGTH),
                }),
            );
        }
    }

    /// Handles bytes from the peer.
    pub fn receive(&mut self, db: &Db, bytes: &[u8]) -> Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.protocol.receive(bytes).map_err(wire)?;
        self.process(db)
    }

    /// Counts a quarter of the timeout: keep-alives, stalled requests.
    pub fn tick(&mut self, db: &Db) -> Result<()> {
        self.protocol.tick().map_err(wire)?;
        db.sync_pending()?;
        let remote_live = self
            .protocol
            .remote_handshake()
            .is_some_and(|h| h.live == Some(true));
        for (dk, peer) in self.peers.iter_mut() {
            peer.idle_ticks += 1;
            // A live peer never says it is done. A one-shot session ends a
            // channel once it holds everything the peer has and the peer has
            // asked for nothing for a while (or holds all we have: see
            // `update`).
            if remote_live
                && !self.options.live
                && matches!(peer.stage, Stage::Open | Stage::Ending)
                && peer.idle_ticks > 2
                && (!peer.downloading || Self::complete(db, peer))
            {
                Self::close(&mut self.protocol, peer, dk);
            }
        }
        for peer in self.peers.values_mut() {
            if let Some(first) = peer.inflight.front_mut() {
                first.1 += 1;
                if first.1 > REQUEST_TICKS {
                    return Err(ReplicationError::Unanswered {
                        feed: hex::encode(peer.key),
                        index: first.0,
                    }
                    .into());
                }
            }
        }
        self.process(db)
    }

    /// Announces blocks the database gained since the last call (local
    /// writes, or blocks from other peers) to a live peer, in every feed.
    pub fn local_change(&mut self, db: &Db) -> Result<()> {
        db.discover()?;
        self.open_authorized(db)?;
        for (dk, peer) in self.peers.iter_mut() {
            Self::announce(&mut self.protocol, db, dk, peer);
        }
        self.want_what_the_peer_wants();
        Ok(())
    }

    /// The session's subscription to the database's changes: what it
    /// returns goes to [`on_changes`](Self::on_changes).
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// Acts on what `changed` reports: announces new blocks of the feeds
    /// named to the peer, and opens channels for feeds that joined the
    /// database meanwhile (a writer another session brought in: a one-shot
    /// session fetches it too before it ends). Only those feeds are looked
    /// at.
    pub fn on_changes(&mut self, db: &Db, changed: &Changed) -> Result<()> {
        if changed.feed_set {
            db.discover()?;
            self.open_authorized(db)?;
        }
        for key in &changed.feeds {
            let dk = hypercore_feed::crypto::discovery_key(key);
            if let Some(peer) = self.peers.get_mut(&dk) {
                Self::announce(&mut self.protocol, db, &dk, peer);
            }
        }
        self.want_what_the_peer_wants();
        Ok(())
    }

    /// Sends a Have for the blocks of `peer`'s feed stored here (without a
    /// gap) beyond those already announced, if the peer wants them.
    fn announce(protocol: &mut Protocol, db: &Db, dk: &[u8; 32], peer: &mut Peer) {
        if !peer.remote_want || peer.stage == Stage::Closed {
            return;
        }
        let Some(available) = db.read_feed(&peer.key, |feed| {
            feed.next_missing(0, feed.len()).unwrap_or(feed.len())
        }) else {
            return;
        };
        if available > peer.announced {
            let start = peer.announced;
            let length = available - start;
            protocol.send(
                dk,
                &Message::Have(Have {
                    start,
                    length: (length > 1).then_some(length),
                    bitfield: None,
                    ack: None,
                }),
            );
            peer.announced = available;
        }
    }

    /// Points the subscription at the feeds the peer wants and that are
    /// still open.
    fn want_what_the_peer_wants(&mut self) {
        let subscription = &self.subscription;
        let wanted: Vec<[u8; 32]> = self
            .peers
            .values()
            .filter(|p| p.remote_want && p.stage != Stage::Closed)
            .map(|p| p.key)
            .collect();
        if !subscription.wants_exactly(&wanted) {
            subscription.want(wanted);
        }
    }

    fn process(&mut self, db: &Db) -> Result<()> {
        let mut outcome = Ok(());
        while let Some(event) = self.protocol.next_event() {
            match event {
                Event::Handshake(_) => {
                    self.handshake = true;
                    self.summary.connected = true;
                    for (dk, peer) in self.peers.iter_mut() {
                        if peer.stage == Stage::Opening {
                            Self::ready(&mut self.protocol, peer, dk);
                        }
                    }
                }
                Event::RemoteOpened(_) => {}
                Event::Message {
                    discovery_key,
                    message,
                } => {
                    if let Err(e) = self.on_message(db, &discovery_key, message) {
                        outcome = Err(e);
                        break;
                    }
                }
            }
        }
        // What verified is kept, even when a later message was bad.
        let stored = self.store_verified(db)?;
        outcome?;
        if stored {
            db.discover()?;
            self.open_authorized(db)?;
        }
        let keys: Vec<[u8; 32]> = self.peers.keys().copied().collect();
        for dk in keys {
            self.update(db, &dk)?;
            self.end_when_even(db, &dk);
        }
        if self.options.live {
            self.local_change(db)?;
        } else {
            self.want_what_the_peer_wants();
        }
        Ok(())
    }

    /// Stores the blocks verified since the last call, all under one hold
    /// of the database's write lock (readers wait once per input, not once
    /// per block). Returns whether anything was stored.
    fn store_verified(&mut self, db: &Db) -> Result<bool> {
        if self.verified.is_empty() {
            return Ok(false);
        }
        let verified = std::mem::take(&mut self.verified);
        self.pending_nodes.clear();
        let mut lengths = Vec::with_capacity(verified.len());
        // A few dozen blocks per hold of the write lock, so a reader that
        // needs the state (to decode an entry not cached) waits for a few
        // dozen, not for the whole input; the writes reach the files once,
        // at the end.
        let mut touched: Vec<[u8; 32]> = Vec::new();
        let mut result = Ok(());
        let mut verified = verified.into_iter().peekable();
        while verified.peek().is_some() && result.is_ok() {
            let mut state = db.state_mut();
            for (dk, key, write) in verified.by_ref().take(STORE_CHUNK) {
                let Some(feed) = state.feed_by_key_mut(&key) else {
                    continue;
                };
                // Another session may have stored it meanwhile.
                if !feed.has(write.index()) {
                    if let Err(e) = feed.commit_unflushed(write) {
                        result = Err(e);
                        break;
                    }
                }
                lengths.push((dk, key, feed.len()));
                if !touched.contains(&key) {
                    touched.push(key);
                }
            }
        }
        let mut state = db.state_mut();
        for key in &touched {
            if let Some(feed) = state.feed_by_key_mut(key) {
                let flushed = feed.flush_unsynced();
                if result.is_ok() {
                    result = flushed;
                }
            }
        }
        drop(state);
        let stored = result;
        if let Some(progress) = &self.options.on_progress {
            for (dk, key, length) in &lengths {
                let received = self.peers.get(dk).map_or(0, |p| p.received);
                progress(key, received, *length);
            }
        }
        db.changed(&touched, Some(&self.subscription));
        stored?;
        Ok(true)
    }

    fn on_message(&mut self, db: &Db, dk: &[u8; 32], message: Message) -> Result<()> {
        let Some(peer) = self.peers.get_mut(dk) else {
            return Ok(());
        };
        let key = peer.key;
        if db.read_feed(&key, |_| ()).is_none() {
            return Ok(());
        }
        match message {
            Message::Want(want) => {
                if want.start & 8191 != 0 || want.length.unwrap_or(0) & 8191 != 0 {
                    return Ok(());
                }
                let length = want.length.unwrap_or(WANT_LENGTH).min(WANT_LENGTH * 64);
                let Some((len, has_last, bitfield, available)) = db.read_feed(&key, |feed| {
                    let len = feed.len();
                    (
                        len,
                        len > 0 && feed.has(len - 1),
                        feed.compressed_bitfield(want.start, length),
                        feed.next_missing(0, len).unwrap_or(len),
                    )
                }) else {
                    return Ok(());
                };
                if !peer.remote_want && has_last {
                    self.protocol.send(
                        dk,
                        &Message::Have(Have {
                            start: len - 1,
                            length: None,
                            bitfield: None,
                            ack: None,
                        }),
                    );
                }
                peer.remote_want = true;
                peer.announced = peer.announced.max(available);
                self.protocol.send(
                    dk,
                    &Message::Have(Have {
                        start: want.start,
                        length: Some(length),
                        bitfield: Some(bitfield),
                        ack: None,
                    }),
                );
            }
            Message::Have(have) => {
                peer.got_have = true;
                peer.cursor = peer.cursor.min(have.start);
                if let Some(bits) = have.bitfield {
                    let limit =
                        (have.length.unwrap_or(WANT_LENGTH).min(WANT_LENGTH * 64) / 8) as usize;
                    let bytes = hypercore_feed::rle::decode(&bits, limit.max(1)).map_err(|e| {
                        ReplicationError::BadMessage(format!("a bad Have bitfield: {e}"))
                    })?;
                    for (i, byte) in bytes.iter().enumerate() {
                        for bit in 0..8 {
                            let block = have.start.saturating_add((i as u64) * 8 + bit);
                            let set = byte & (128 >> bit) != 0;
                            peer.set_remote_has(block, set);
                            if set {
                                peer.remote_length =
                                    peer.remote_length.max(block.saturating_add(1));
                            }
                        }
                    }
                } else {
                    let length = have.length.unwrap_or(1).min(WANT_LENGTH * 64);
                    let end = have.start.saturating_add(length);
                    for block in have.start..end.min(MAX_TRACKED_BLOCKS) {
                        peer.set_remote_has(block, true);
                    }
                    peer.remote_length = peer.remote_length.max(end);
                }
            }
            Message::Unhave(unhave) => {
                let length = unhave.length.unwrap_or(1).min(WANT_LENGTH * 64);
                let end = unhave.start.saturating_add(length);
                for block in unhave.start..end.min(MAX_TRACKED_BLOCKS) {
                    peer.set_remote_has(block, false);
                }
            }
            Message::Info(info) => {
                peer.remote_downloading = info.downloading.unwrap_or(true);
                if peer.remote_downloading || self.options.live {
                    return Ok(());
                }
                if peer.downloading && !Self::complete(db, peer) {
                    return Ok(());
                }
                Self::end(&mut self.protocol, peer, dk, self.options.live);
            }
            Message::Request(request) => {
                peer.idle_ticks = 0;
                if request.bytes.unwrap_or(0) != 0 {
                    return Err(ReplicationError::BadMessage(
                        "a request for a byte offset, which hyperdb never makes".into(),
                    )
                    .into());
                }
                if self.deferred.is_empty() && self.protocol.outgoing_len() < self.backlog_limit {
                    self.answer(db, dk, request)?;
                } else if self.deferred.len() < MAX_DEFERRED {
                    self.deferred.push_back((*dk, request));
                } else {
                    return Err(ReplicationError::TooManyRequests(MAX_DEFERRED).into());
                }
            }
            Message::Data(data) => {
                let requested = if peer.requested.contains(&data.index) {
                    peer.inflight.iter().position(|(i, _)| *i == data.index)
                } else {
                    None
                };
                let Some(at) = requested else {
                    // Unrequested data is ignored, as in the reference.
                    return Ok(());
                };
                peer.inflight.remove(at);
                peer.requested.remove(&data.index);
                let Some(value) = data.value else {
                    return Ok(());
                };
                let proof =
                    proof_from(&data.nodes, data.signature.as_deref()).map_err(|reason| {
                        ReplicationError::BadMessage(format!("a bad Data message: {reason}"))
                    })?;
                // Checked beside other readers; only storing it takes the
                // database alone.
                let pending = self.pending_nodes.get(&key);
                let pending = |i: u64| pending.and_then(|nodes| nodes.get(&i).copied());
                let verified = db.read_feed(&key, |feed| {
                    (!feed.has(data.index))
                        .then(|| feed.verify_block_with(data.index, Some(&value), &proof, &pending))
                });
                let Some(Some(write)) = verified else {
                    return Ok(());
                };
                let write = write.map_err(ReplicationError::Unverified)?;
                let is_writer = db.writer_index(&key).is_some();
                if let (Some(hook), true) = (&self.options.on_write, data.index > 0 && is_writer) {
                    let entry = crate::messages::decode_entry(&value).map_err(|e| {
                        ReplicationError::BadEntry {
                            feed: hex::encode(key),
                            seq: data.index,
                            reason: e.to_string(),
                        }
                    })?;
                    let incoming = IncomingEntry {
                        feed: key,
                        seq: data.index,
                        entry,
                        peer: self.protocol.remote_handshake().and_then(|h| h.id.clone()),
                    };
                    hook(&incoming).map_err(|reason| ReplicationError::Refused {
                        feed: hex::encode(key),
                        seq: data.index,
                        reason,
                    })?;
                }
                peer.received += 1;
                peer.set_remote_has(data.index, true);
                let nodes = self.pending_nodes.entry(key).or_default();
                nodes.extend(write.nodes().iter().map(|n| (n.index, *n)));
                self.verified.push((*dk, key, write));
            }
            Message::Cancel(_) | Message::Unwant(_) | Message::Extension { .. } => {}
            Message::Handshake(_) => {}
        }
        Ok(())
    }

    /// Sends the block a peer asked for, with the proof it needs.
    fn answer(&mut self, db: &Db, dk: &[u8; 32], request: Request) -> Result<()> {
        let Some(peer) = self.peers.get_mut(dk) else {
            return Ok(());
        };
        let hash = request.hash.unwrap_or(false);
        let answer = db.read_feed(&peer.key, |feed| {
            let proof = match feed.proof(
                request.index,
                request.nodes.unwrap_or(0),
                hash,
                &mut peer.remote_tree,
            ) {
                Ok(proof) => proof,
                // Not here: the peer asked for something we never had.
                Err(hypercore_feed::Error::NotAvailable(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            let value = if !hash && feed.has(request.index) {
                // The peer verifies every block against the proof, so
                // reading it again through the hash here would only
                // repeat that work.
                Some(bytes::Bytes::from(feed.get_unverified(request.index)?))
            } else {
                None
            };
            Ok(Some((proof, value)))
        });
        let Some(Some((proof, value))) = answer.transpose()? else {
            return Ok(());
        };
        if value.is_some() {
            self.summary.sent += 1;
            // The peer holds it once it verifies it (a one-shot session
            // with a live peer ends when the peer holds all it has here).
            peer.set_remote_has(request.index, true);
        }
        peer.remote_length = peer.remote_length.max(request.index.saturating_add(1));
        self.protocol.send(
            dk,
            &Message::Data(Data {
                index: request.index,
                value,
                nodes: proof.nodes.into_iter().map(data_node).collect(),
                signature: proof.signature.map(|s| bytes::Bytes::copy_from_slice(&s)),
            }),
        );
        Ok(())
    }

    /// Whether we hold every block the peer said it has.
    fn complete(db: &Db, peer: &Peer) -> bool {
        if !peer.got_have || !peer.inflight.is_empty() {
            return false;
        }
        // Past the last block the peer was recorded to have, there is
        // nothing of its to miss, whatever length it claims.
        let end = peer.remote_length.min(peer.remote_has.bit_len());
        db.read_feed(&peer.key, |feed| {
            let mut next = 0;
            while let Some(missing) = feed.next_missing(next, end) {
                if peer.remote_has.get(missing) {
                    return false;
                }
                next = missing + 1;
            }
            true
        })
        .unwrap_or(true)
    }

    /// Requests what is missing, and ends the channel once done (hypercore
    /// 6's `Peer#update` and `Peer#end`).
    fn update(&mut self, db: &Db, dk: &[u8; 32]) -> Result<()> {
        let peer = self.peers.get_mut(dk).expect("known peer");
        if matches!(peer.stage, Stage::Opening | Stage::Closed) {
            return Ok(());
        }
        if !peer.downloading {
            return Ok(());
        }
        let protocol = &mut self.protocol;
        let requested = db.read_feed(&peer.key, |feed| {
            // Fetch the peer's last block first and alone: its proof brings
            // the signed roots, and every later proof then stops at a node
            // already stored, so it needs hashing but no signature check.
            let last = peer.remote_length.saturating_sub(1);
            if peer.remote_length > 0 && !feed.has(last) && peer.remote_has.get(last) {
                if peer.inflight.is_empty() {
                    let digest = feed.digest(last);
                    peer.inflight.push_back((last, 0));
                    peer.requested.insert(last);
                    protocol.send(
                        dk,
                        &Message::Request(Request {
                            index: last,
                            bytes: None,
                            hash: None,
                            nodes: Some(digest),
                        }),
                    );
                }
                return false;
            }
            let mut next = peer.cursor;
            // Past the last block the peer was recorded to have, it has
            // nothing to ask for, whatever length it claims.
            let end = peer.remote_length.min(peer.remote_has.bit_len());
            while peer.inflight.len() < MAX_REQUESTS && next < end {
                let Some(missing) = feed.next_missing(next, end) else {
                    next = end;
                    break;
                };
                next = missing + 1;
                if !peer.remote_has.get(missing) || peer.requested.contains(&missing) {
                    continue;
                }
                let digest = feed.digest(missing);
                peer.inflight.push_back((missing, 0));
                peer.requested.insert(missing);
                protocol.send(
                    dk,
                    &Message::Request(Request {
                        index: missing,
                        bytes: None,
                        hash: None,
                        nodes: Some(digest),
                    }),
                );
            }
            peer.cursor = next;
            true
        });
        if requested == Some(true)
            && !self.options.live
            && Self::complete(db, peer)
            && peer.stage == Stage::Open
        {
            Self::end(&mut self.protocol, peer, dk, self.options.live);
        }
        Ok(())
    }

    /// A live peer never says it is done; but once a one-shot session
    /// holds all the peer has of a feed and the peer holds all this feed
    /// has here, neither can want anything more of the other: the channel
    /// ends at once rather than after the idle ticks.
    fn end_when_even(&mut self, db: &Db, dk: &[u8; 32]) {
        let remote_live = self
            .protocol
            .remote_handshake()
            .is_some_and(|h| h.live == Some(true));
        let peer = self.peers.get_mut(dk).expect("known peer");
        if !remote_live
            || self.options.live
            || !matches!(peer.stage, Stage::Open | Stage::Ending)
            || (peer.downloading && !Self::complete(db, peer))
        {
            return;
        }
        let ours = db.read_feed(&peer.key, Feed::len).unwrap_or(0);
        if peer.remote_has_all_below(ours) {
            Self::close(&mut self.protocol, peer, dk);
        }
    }

    fn end(protocol: &mut Protocol, peer: &mut Peer, dk: &[u8; 32], live: bool) {
        if !peer.downloading && !peer.remote_downloading && !live {
            if !peer.default_downloading {
                protocol.send(
                    dk,
                    &Message::Info(Info {
                        uploading: Some(false),
                        downloading: Some(false),
                    }),
                );
            }
            Self::close(protocol, peer, dk);
            return;
        }
        if matches!(peer.stage, Stage::Opening | Stage::Open) {
            peer.stage = Stage::Ending;
            peer.downloading = false;
            protocol.send(
                dk,
                &Message::Info(Info {
                    uploading: Some(true),
                    downloading: Some(false),
                }),
            );
        } else if peer.stage == Stage::Ending && !live {
            Self::close(protocol, peer, dk);
        }
    }

    fn close(protocol: &mut Protocol, peer: &mut Peer, dk: &[u8; 32]) {
        if peer.stage != Stage::Closed {
            peer.stage = Stage::Closed;
            protocol.close(dk);
        }
    }
}

/// Every writer's feed key followed by its content feed's, in the
/// database's order (only authorized writers' with `authorized_only`).
fn feed_keys(db: &Db, authorized_only: bool) -> Vec<[u8; 32]> {
    db.writers()
        .iter()
        .filter(|w| w.authorized || !authorized_only)
        .flat_map(|w| std::iter::once(w.key).chain(w.content_key))
        .collect()
}

/// A tree node as a Data message carries it.
fn data_node(node: TreeNode) -> DataNode {
    DataNode {
        index: node.index,
        hash: node.hash,
        size: node.size,
    }
}

fn proof_from(nodes: &[DataNode], signature: Option<&[u8]>) -> std::result::Result<Proof, String> {
    let nodes = nodes
        .iter()
        .map(|n| TreeNode {
            index: n.index,
            hash: n.hash,
            size: n.size,
        })
        .collect();
    let signature = match signature {
        None => None,
        Some(s) => Some(
            s.try_into()
                .map_err(|_| format!("the signature has {} bytes", s.len()))?,
        ),
    };
    Ok(Proof { nodes, signature })
}

/// Replicates `db` over `stream` until the session is done (one-shot) or
/// the stream closes (live). The database stays usable by others meanwhile:
/// readers never wait for the session, except for an entry it stored and
/// has not flushed yet, while it stores blocks.
pub async fn replicate<S>(db: Db, stream: S, options: ReplicateOptions) -> Result<Summary>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    drive(db, stream, options, None).await
}

/// What a [`Replicator`](crate::Replicator) asks of a session it drives:
/// to be told the peer's id once the handshake arrives, and to end when
/// another connection to the same peer is kept instead.
pub(crate) trait Registrar: Sync {
    /// The peer with `remote_id` said hello. `Err` ends the session at once;
    /// otherwise the returned notification ends it later.
    fn register(&self, remote_id: &[u8]) -> Result<Arc<tokio::sync::Notify>>;
}

/// Runs a session over `stream` (see [`replicate`]).
pub(crate) async fn drive<S>(
    db: Db,
    stream: S,
    options: ReplicateOptions,
    registrar: Option<&dyn Registrar>,
) -> Result<Summary>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tick_every = options.timeout / 4;
    let mut share = Share::new(options.budget.clone().unwrap_or_default());
    let mut session = Session::new(&db, options)?;
    let subscription = session.subscription().clone();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = vec![0u8; 64 * 1024];
    let mut ticker = tokio::time::interval(tick_every);
    ticker.tick().await;
    // Reading goes on while the session's bytes are written, so two peers
    // sending each other a lot at once never wait on each other.
    let mut stalled_ticks = 0;
    let mut remote_closed = false;
    // Set once the peer's id is registered: notified when another
    // connection to it is kept instead of this one.
    let mut replaced: Option<Arc<tokio::sync::Notify>> = None;
    loop {
        if let (Some(registrar), None, Some(id)) = (registrar, &replaced, session.remote_id()) {
            replaced = Some(registrar.register(id)?);
        }
        share.hold(session.held_for_peer(), session.unsent())?;
        // Answers wait for the peer within this session's share.
        session.set_backlog_limit(share.fair().clamp(64 << 10, MAX_BACKLOG));
        if remote_closed || (session.is_done() && !session.has_outgoing()) {
            break;
        }
        let pending = session.has_outgoing();
        // Time first, so a peer that never pauses cannot starve the
        // timeouts; then writing, so what we owe the peer goes out before
        // more of its input is handled.
        tokio::select! {
            biased;
            _ = ticker.tick() => {
                if pending {
                    stalled_ticks += 1;
                    if stalled_ticks > 4 {
                        return Err(ReplicationError::NotReading {
                            unsent: session.outgoing().len(),
                            waited: tick_every * 4,
                        }
                        .into());
                    }
                }
                off_runtime(|| session.tick(&db))?;
            }
            written = write_some(&mut writer, session.outgoing()), if pending => {
                session.consume(written.map_err(io_error)?);
                stalled_ticks = 0;
                if session.has_deferred() {
                    off_runtime(|| session.answer_deferred(&db))?;
                }
            }
            read = reader.read(&mut buf) => {
                let n = read.map_err(io_error)?;
                if n == 0 {
                    remote_closed = true;
                    continue;
                }
                off_runtime(|| session.receive(&db, &buf[..n]))?;
            }
            changed = subscription.changed() => {
                off_runtime(|| session.on_changes(&db, &changed))?;
            }
            _ = async { replaced.as_ref().expect("registered").notified().await }, if replaced.is_some() => {
                db.sync_pending()?;
                let peer = session.remote_id().map(hex::encode).unwrap_or_default();
                return Err(ReplicationError::Duplicate {
                    peer,
                    reason: "another connection to it was kept",
                }
                .into());
            }
        }
    }
    let summary = session.summary();
    // What arrived is durable before the session says it arrived.
    db.sync_pending()?;
    let _ = writer.shutdown().await;
    if !remote_closed {
        // Give the peer a moment to finish and close its side.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    if !summary.connected {
        return Err(ReplicationError::NoHandshake.into());
    }
    Ok(summary)
}

/// Runs `f`, which reads and writes the database's files, so that on a
/// multi-threaded runtime the worker hands its other tasks (other peers'
/// sessions, the accept loop, timers) to another worker meanwhile. On a
/// single-threaded runtime there is no other worker to hand them to.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Writes some of `bytes`, flushing once all of them are written; returns
/// how many were written.
async fn write_some<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<usize> {
    let n = writer.write(bytes).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    if n == bytes.len() {
        writer.flush().await?;
    }
    Ok(n)
}

fn io_error(e: std::io::Error) -> Error {
    ReplicationError::Connection(e).into()
}
