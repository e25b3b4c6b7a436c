//! `serve` and `sync`: replication over TCP with peers given by address or
//! found by the database key (multicast DNS and the DHT, as hyperdb 3.5.0's
//! swarm found them).

use std::collections::{HashMap, HashSet};
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyperdb::{replicate, Db, ReplicateOptions, ReplicationError, Replicator, Summary};
use hyperdb_discovery::{Discovery, Event, Source};

use crate::{open, print_summary, progress_options, runtime, CliResult, Failure};

/// The port hyperdb 3.5.0's swarm listens on (dat-swarm-defaults).
pub(crate) const DEFAULT_PORT: u16 = 3282;

/// How long a connection to a found peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The discovery flags `serve` and `sync` share.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct DiscoveryFlags {
    /// Do not use the BitTorrent DHT (find and announce on the local network only)
    #[arg(long)]
    no_dht: bool,
    /// Do not use multicast DNS on the local network
    #[arg(long)]
    no_mdns: bool,
    /// A DHT node to join through, replacing the public routers (repeatable)
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Vec<String>,
}

impl DiscoveryFlags {
    /// Discovery's options, or `None` when both mechanisms are off.
    fn options(&self, announce: Option<u16>) -> Option<hyperdb_discovery::Options> {
        let mut options = hyperdb_discovery::Options {
            announce,
            ..Default::default()
        };
        if self.no_mdns {
            options.mdns = None;
        }
        if self.no_dht {
            options.dht = None;
        } else if let Some(dht) = &mut options.dht {
            if !self.bootstrap.is_empty() {
                dht.bootstrap = self.bootstrap.clone();
            }
        }
        (options.mdns.is_some() || options.dht.is_some()).then_some(options)
    }

    fn describe(&self) -> &'static str {
        match (self.no_mdns, self.no_dht) {
            (false, false) => "multicast DNS and the DHT",
            (true, false) => "the DHT",
            (false, true) => "multicast DNS",
            (true, true) => "nothing",
        }
    }
}

/// What `serve` allows all its connections together.
pub(crate) struct Limits {
    pub(crate) connections: usize,
    pub(crate) budget: hyperdb::replicate::MemoryBudget,
}

/// Starts discovery for `db`, turning a failure into the CLI's.
async fn discover(
    db: &Db,
    options: hyperdb_discovery::Options,
) -> Result<(Discovery, tokio::sync::mpsc::Receiver<Event>), Failure> {
    Discovery::start(db.discovery_key(), options)
        .await
        .map_err(|e| Failure {
            code: 3,
            message: e.to_string(),
            hint: Some(
                "turn the failing mechanism off with --no-mdns or --no-dht, or give peers' addresses"
                    .into(),
            ),
        })
}

/// Says what discovery reports, on stderr.
fn report(event: &Event) {
    match event {
        Event::Peer { addr, source } => eprintln!("found {addr} via {source}"),
        Event::LookedUp { source, peers } => {
            eprintln!("looked up on {source}: {peers} peer(s)")
        }
        Event::Announced { source } => eprintln!("announced on {source}"),
        Event::Failed { source, error } => eprintln!("{source}: {error}"),
    }
}

/// Whether `error` only says another connection to the same peer was kept.
fn is_duplicate(error: &hyperdb::Error) -> bool {
    matches!(
        error,
        hyperdb::Error::Replication(ReplicationError::Duplicate { .. })
    )
}

/// How a connection to a found peer went.
#[derive(Clone, Debug)]
enum Outcome {
    /// Replicated; what was exchanged.
    Synced(Summary),
    /// The same peer as another connection, which was kept instead.
    SamePeer,
    /// Could not connect, or the session failed; why.
    Failed(String),
}

impl Outcome {
    /// Says on stderr how the connection to `addr` went (nothing for a
    /// duplicate: it is no failure).
    fn report(&self, addr: SocketAddr) {
        match self {
            Outcome::Synced(summary) => eprintln!(
                "{addr}: received {} block(s), sent {}",
                summary.total_received(),
                summary.sent
            ),
            Outcome::SamePeer => {}
            Outcome::Failed(e) => eprintln!("{addr}: {e}"),
        }
    }
}

/// Connects to `addr` and replicates over the connection.
async fn connect_and_run(replicator: &Replicator, addr: SocketAddr) -> Outcome {
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr));
    let socket = match connecting.await {
        Err(_) => return Outcome::Failed("no answer within 3 s".into()),
        Ok(Err(e)) => return Outcome::Failed(e.to_string()),
        Ok(Ok(socket)) => socket,
    };
    eprintln!("connected to {addr}");
    match replicator.run(socket, true).await {
        Ok(summary) => Outcome::Synced(summary),
        Err(e) if is_duplicate(&e) => Outcome::SamePeer,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

pub(crate) fn serve(
    dir: &Path,
    listen: Option<&str>,
    live: bool,
    limits: Limits,
    flags: &DiscoveryFlags,
) -> CliResult {
    let db = open(dir)?;
    runtime()?.block_on(async move {
        let listener = match listen {
            Some(listen) => tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| Failure {
                    code: 3,
                    message: format!("cannot listen on {listen}: {e}"),
                    hint: Some("pick another address or port, e.g. 127.0.0.1:0".into()),
                })?,
            // hyperdb's usual port, or any free one when it is taken.
            None => match tokio::net::TcpListener::bind(("0.0.0.0", DEFAULT_PORT)).await {
                Ok(listener) => listener,
                Err(_) => tokio::net::TcpListener::bind(("0.0.0.0", 0)).await?,
            },
        };
        let addr = listener.local_addr()?;
        let mut out = io::stdout();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
        let discovery = flags.options(Some(addr.port()));
        let terminal = io::stderr().is_terminal();
        // One replicator for every connection: one peer id, one memory
        // budget, one connection kept per peer. Peers found by discovery
        // are replicated with live, as hyperdb 3.5.0's swarm does.
        let replicator = Replicator::new(
            db.clone(),
            ReplicateOptions {
                live: live || discovery.is_some(),
                budget: Some(limits.budget.clone()),
                ..Default::default()
            },
        );
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
        let _discovery = match discovery {
            Some(options) => {
                eprintln!(
                    "announcing and looking up {} on {}",
                    hex::encode(hyperdb_discovery::topic(db.discovery_key())),
                    flags.describe()
                );
                let (discovery, events) = discover(&db, options).await?;
                tokio::spawn(dial_found(replicator.clone(), events, slots.clone()));
                Some(discovery)
            }
            None => None,
        };
        let mut backoff = Backoff::default();
        loop {
            // A connection over the limit waits in the listen backlog.
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => {
                    backoff.reset();
                    accepted
                }
                Err(e) => {
                    // Out of file descriptors or memory, or a connection
                    // that died before it was accepted: the server stays.
                    backoff.failed(&e).await?;
                    continue;
                }
            };
            let replicator = replicator.clone();
            tokio::spawn(async move {
                let _slot = slot;
                // A connection's error is always reported; what a good
                // one exchanged, only to someone watching.
                match replicator.run(socket, false).await {
                    Ok(summary) if terminal => eprintln!(
                        "{peer}: received {} block(s), sent {}",
                        summary.total_received(),
                        summary.sent
                    ),
                    Ok(_) => {}
                    Err(e) if is_duplicate(&e) => {}
                    Err(e) => eprintln!("{peer}: {e}"),
                }
            });
        }
    })
}

/// Connects to every peer discovery finds (once per address while a
/// connection to it lasts), within the server's connection limit.
async fn dial_found(
    replicator: Replicator,
    mut events: tokio::sync::mpsc::Receiver<Event>,
    slots: Arc<tokio::sync::Semaphore>,
) {
    let connected: Arc<std::sync::Mutex<HashSet<SocketAddr>>> = Default::default();
    while let Some(event) = events.recv().await {
        report(&event);
        let Event::Peer { addr, .. } = event else {
            continue;
        };
        if !connected.lock().expect("set").insert(addr) {
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            connected.lock().expect("set").remove(&addr);
            continue;
        };
        let (replicator, connected) = (replicator.clone(), connected.clone());
        tokio::spawn(async move {
            let _slot = slot;
            connect_and_run(&replicator, addr).await.report(addr);
            connected.lock().expect("set").remove(&addr);
        });
    }
}

/// How the accept loop waits after a failed accept: longer each time the
/// system is out of a resource (up to a second), saying so once per spell.
#[derive(Default)]
struct Backoff {
    delay: Duration,
    told: bool,
}

impl Backoff {
    fn reset(&mut self) {
        if self.told {
            eprintln!("accepting connections again");
        }
        *self = Backoff::default();
    }

    /// Waits before the next accept; an error that no wait can cure ends
    /// the server.
    async fn failed(&mut self, e: &io::Error) -> Result<(), Failure> {
        use io::ErrorKind::*;
        let exhausted = matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12)); // ENFILE, EMFILE, ENOBUFS, ENOMEM
        let transient = matches!(
            e.kind(),
            ConnectionAborted
                | ConnectionReset
                | ConnectionRefused
                | Interrupted
                | WouldBlock
                | TimedOut
        );
        if !exhausted && !transient {
            return Err(Failure {
                code: 3,
                message: format!("cannot accept connections: {e}"),
                hint: None,
            });
        }
        if exhausted {
            if !self.told {
                eprintln!(
                    "cannot accept more connections for now ({e}); serving the open ones and retrying"
                );
                self.told = true;
            }
            self.delay = (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
            tokio::time::sleep(self.delay).await;
        }
        Ok(())
    }
}

/// Makes `options` say on stderr when the first block arrives, and how
/// long after `since` (this moment) it did; progress goes on to the bar,
/// if any.
fn say_first_block(options: &mut ReplicateOptions, since: &'static str) {
    let started = std::time::Instant::now();
    let first = std::sync::atomic::AtomicBool::new(false);
    let bar_progress = options.on_progress.take();
    options.on_progress = Some(Arc::new(move |key: &[u8; 32], received, length| {
        if !first.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!(
                "receiving: first block {:.3} s after {since}",
                started.elapsed().as_secs_f64()
            );
        }
        if let Some(progress) = &bar_progress {
            progress(key, received, length);
        }
    }));
}

/// Replicates with the peer at `addr`.
pub(crate) fn sync_with(dir: &Path, addr: &str, live: bool) -> CliResult {
    let db = open(dir)?;
    let (mut options, bar) = progress_options(live);
    say_first_block(&mut options, "connecting began");
    let summary = runtime()?.block_on(async {
        let socket = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| Failure {
                code: 3,
                message: format!("cannot connect to {addr}: {e}"),
                hint: Some("is `hyperdb serve` running there?".into()),
            })?;
        Ok::<_, Failure>(replicate(db.clone(), socket, options).await)
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = summary?;
    print_summary(&mut io::stdout(), &db, &summary)?;
    Ok(())
}

/// The most peers one sync connects to.
const MAX_PEERS: usize = 64;

/// How long a one-shot sync waits, once every session with the peers found
/// so far has ended, for more peers before it stops.
const SETTLE: Duration = Duration::from_secs(2);

/// Finds peers by the database key and replicates with each (one-shot:
/// until this replica holds what they have and they want nothing more;
/// live: until interrupted). Gives up after `timeout` without a peer.
pub(crate) fn sync_found(
    dir: &Path,
    live: bool,
    timeout: Duration,
    flags: &DiscoveryFlags,
) -> CliResult {
    let db = open(dir)?;
    let Some(options) = flags.options(None) else {
        return Err(Failure::usage(
            "with --no-mdns and --no-dht, sync needs the peer's address",
        ));
    };
    let (mut replicate_options, bar) = progress_options(live);
    say_first_block(&mut replicate_options, "the lookup began");
    let results = runtime()?.block_on(async {
        let topic = hex::encode(hyperdb_discovery::topic(db.discovery_key()));
        eprintln!("looking up {topic} on {}", flags.describe());
        let (discovery, mut events) = discover(&db, options).await?;
        let replicator = Replicator::new(db.clone(), replicate_options);
        let mut sessions = tokio::task::JoinSet::new();
        let mut tried: HashSet<SocketAddr> = HashSet::new();
        let mut results: Vec<(SocketAddr, Source, Outcome)> = Vec::new();
        // Starts a session with `addr`, noting how many writers there were.
        let start = |sessions: &mut tokio::task::JoinSet<_>, addr: SocketAddr, source| {
            let (replicator, writers) = (replicator.clone(), db.writers().len());
            sessions.spawn(async move {
                let outcome = connect_and_run(&replicator, addr).await;
                (addr, source, writers, outcome)
            });
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ask_again = tokio::time::interval(Duration::from_secs(2));
        let mut settled_at: Option<tokio::time::Instant> = None;
        loop {
            let done = !live
                && sessions.is_empty()
                && results
                    .iter()
                    .any(|(_, _, o)| matches!(o, Outcome::Synced(_)))
                && settled_at.is_some_and(|at| at.elapsed() >= SETTLE);
            if done {
                break;
            }
            if tried.is_empty() && tokio::time::Instant::now() >= deadline {
                return Err(Failure {
                    code: 3,
                    message: format!(
                        "no peer found within {} s (looked up {topic} on {})",
                        timeout.as_secs(),
                        flags.describe()
                    ),
                    hint: Some(
                        "is a peer serving this database (`hyperdb serve DIR`, or a hyperdb \
                         3.5.0 app) and reachable? Multicast DNS needs the same local network; \
                         the DHT needs UDP to its bootstrap nodes (--bootstrap). Or give the \
                         peer's address: `hyperdb sync DIR HOST:PORT`"
                            .into(),
                    ),
                });
            }
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    report(&event);
                    if let Event::Peer { addr, source } = event {
                        // At most MAX_PEERS peers: a flood of made-up
                        // addresses cannot make it dial without end.
                        if tried.len() < MAX_PEERS && tried.insert(addr) {
                            start(&mut sessions, addr, source);
                        }
                    }
                }
                ended = sessions.join_next(), if !sessions.is_empty() => {
                    if let Some(Ok((addr, source, writers, outcome))) = ended {
                        // Writers that joined (through another peer) after
                        // this session began may be this peer's to give:
                        // ask it again.
                        let synced = matches!(outcome, Outcome::Synced(_));
                        if synced && !live && db.writers().len() > writers {
                            start(&mut sessions, addr, source);
                        }
                        outcome.report(addr);
                        results.push((addr, source, outcome));
                    }
                    settled_at = Some(tokio::time::Instant::now());
                }
                _ = ask_again.tick() => {
                    // Lookups repeat while nothing is found.
                    if sessions.is_empty() {
                        discovery.lookup_now();
                    }
                }
                // Wakes to end once the settling time has passed.
                _ = tokio::time::sleep_until(settled_at.unwrap_or(deadline) + SETTLE),
                    if sessions.is_empty() && settled_at.is_some() => {}
            }
        }
        drop(discovery);
        Ok::<_, Failure>(results)
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print_found_summary(&db, &results)
}

/// Prints what came from each peer (a peer asked twice counted once),
/// then from each writer.
fn print_found_summary(db: &Db, results: &[(SocketAddr, Source, Outcome)]) -> CliResult {
    let mut out = io::stdout();
    let mut peers: Vec<(SocketAddr, Source, Outcome)> = Vec::new();
    for (addr, source, outcome) in results {
        match peers.iter_mut().find(|(a, _, _)| a == addr) {
            Some((_, _, Outcome::Synced(so_far))) => {
                if let Outcome::Synced(more) = outcome {
                    so_far.sent += more.sent;
                    so_far.received.extend(more.received.iter().copied());
                }
            }
            Some(entry) => entry.2 = outcome.clone(),
            None => peers.push((*addr, *source, outcome.clone())),
        }
    }
    let mut total = Summary::default();
    let mut by_key: HashMap<[u8; 32], u64> = HashMap::new();
    for (addr, source, outcome) in &peers {
        write!(out, "{addr} (found via {source}): ")?;
        match outcome {
            Outcome::Synced(summary) => {
                writeln!(
                    out,
                    "received {} block(s), sent {}",
                    summary.total_received(),
                    summary.sent
                )?;
                total.sent += summary.sent;
                total.connected = true;
                total.shared_feeds = total.shared_feeds.max(summary.shared_feeds);
                for (key, blocks) in &summary.received {
                    *by_key.entry(*key).or_default() += blocks;
                }
            }
            Outcome::SamePeer => writeln!(out, "the same peer as another address")?,
            Outcome::Failed(e) => writeln!(out, "failed: {e}")?,
        }
    }
    total.received = by_key.into_iter().collect();
    total.received.sort();
    print_summary(&mut out, db, &total)?;
    Ok(())
}
