//! Finding the peers of a hyperdb database by its discovery key alone, the
//! way hyperdb 3.5.0's peers did (hyperdiscovery 8: discovery-swarm 5 with
//! dat-swarm-defaults): multicast DNS on the local network ([`mdns`]) and
//! the BitTorrent Mainline DHT across the internet ([`dht`]).
//!
//! Both look up a *topic*: the first 20 bytes of the discovery key (the
//! DHT's info-hash; in hex, plus `.dat.local`, the multicast DNS name). The
//! discovery key is a hash of the database key and does not reveal it; but
//! announcing publishes this machine's address beside the topic, on the
//! public DHT for anyone to see.
//!
//! This crate knows addresses, not databases: it hands what it finds to
//! whoever connects (the CLI gives them to a `hyperdb::Replicator`).
//!
//! ```no_run
//! # async fn example() -> Result<(), hyperdb_discovery::DiscoveryError> {
//! use hyperdb_discovery::{Discovery, Event, Options};
//! let discovery_key = [7u8; 32];
//! let options = Options { announce: Some(3282), ..Options::default() };
//! let (discovery, mut events) = Discovery::start(&discovery_key, options).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Peer { addr, source } = event {
//!         println!("{addr} has it ({source})");
//!     }
//! }
//! # drop(discovery);
//! # Ok(())
//! # }
//! ```

pub mod dht;
pub mod mdns;

use std::net::SocketAddr;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use dht::DhtOptions;
pub use mdns::MdnsOptions;

/// What both mechanisms look up: the first 20 bytes of a discovery key.
pub type Topic = [u8; 20];

/// The topic of a database with this discovery key (what discovery-channel
/// keeps of a longer key, with hyperdiscovery's `hash: false`).
pub fn topic(discovery_key: &[u8; 32]) -> Topic {
    discovery_key[..20].try_into().expect("20 of 32 bytes")
}

/// Whether `addr` is this peer itself: its announced port on one of this
/// machine's addresses (the DHT hands back our own announcement too).
pub(crate) fn is_self(addr: &std::net::SocketAddrV4, announce: Option<u16>) -> bool {
    if announce != Some(addr.port()) {
        return false;
    }
    let ip = *addr.ip();
    ip.is_loopback()
        || ip.is_unspecified()
        || if_addrs::get_if_addrs()
            .unwrap_or_default()
            .iter()
            .any(|i| i.ip() == std::net::IpAddr::V4(ip))
}

/// The peers a mechanism reported lately, so a peer heard again within
/// `period` is not reported again. Bounded: a flood of made-up peers
/// (anyone on the network can answer) cannot grow it past [`MAX_REPORTED`].
#[derive(Debug)]
pub(crate) struct Reported {
    at: std::collections::HashMap<std::net::SocketAddrV4, tokio::time::Instant>,
    period: std::time::Duration,
}

/// The most peers one mechanism remembers having reported.
pub(crate) const MAX_REPORTED: usize = 1024;

impl Reported {
    pub(crate) fn new(period: std::time::Duration) -> Reported {
        Reported {
            at: Default::default(),
            period,
        }
    }

    /// Whether `peer` is to be reported now (and notes that it was).
    pub(crate) fn fresh(&mut self, peer: std::net::SocketAddrV4) -> bool {
        let now = tokio::time::Instant::now();
        if self
            .at
            .get(&peer)
            .is_some_and(|at| now.duration_since(*at) < self.period)
        {
            return false;
        }
        if self.at.len() >= MAX_REPORTED && !self.at.contains_key(&peer) {
            let period = self.period;
            self.at.retain(|_, at| now.duration_since(*at) < period);
            if self.at.len() >= MAX_REPORTED {
                return false;
            }
        }
        self.at.insert(peer, now);
        true
    }
}

/// Which mechanism an event comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Multicast DNS on the local network.
    Mdns,
    /// The BitTorrent Mainline DHT.
    Dht,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Mdns => "multicast DNS",
            Source::Dht => "the DHT",
        })
    }
}

/// What discovery reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A peer that announced the topic takes connections at `addr`.
    Peer {
        /// Where to connect.
        addr: SocketAddr,
        /// Who said so.
        source: Source,
    },
    /// A lookup finished (the DHT: with this many peers; multicast DNS
    /// reports its answers as they come, as `Peer`s, and never this).
    LookedUp {
        /// Which mechanism.
        source: Source,
        /// Peers the lookup returned.
        peers: usize,
    },
    /// This peer was announced (stored on DHT nodes near the topic).
    Announced {
        /// Which mechanism.
        source: Source,
    },
    /// A mechanism stopped working, and why; the other goes on.
    Failed {
        /// Which mechanism.
        source: Source,
        /// What went wrong.
        error: String,
    },
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The TCP port this peer takes connections on, to announce; `None`
    /// only looks others up.
    pub announce: Option<u16>,
    /// Multicast DNS, or `None` to leave it off.
    pub mdns: Option<MdnsOptions>,
    /// The DHT, or `None` to leave it off.
    pub dht: Option<DhtOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            announce: None,
            mdns: Some(MdnsOptions::default()),
            dht: Some(DhtOptions::default()),
        }
    }
}

/// Errors starting discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Neither mechanism is on.
    #[error("no way to find peers: both multicast DNS and the DHT are turned off")]
    NothingToRun,
    /// The multicast DNS socket could not be set up.
    #[error("multicast DNS could not start (UDP port {port}, group 224.0.0.251): {source}")]
    Mdns {
        /// The port it binds.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// The DHT client could not start.
    #[error("the DHT could not start: {0}")]
    Dht(String),
}

/// Discovery running for one topic; dropping it stops it.
#[derive(Debug)]
pub struct Discovery {
    tasks: Vec<JoinHandle<()>>,
    ask: Vec<mpsc::Sender<()>>,
    topic: Topic,
}

impl Discovery {
    /// Starts looking up (and, with `options.announce`, announcing) the
    /// database with `discovery_key`. Events arrive on the receiver until
    /// the `Discovery` is dropped. A mechanism that cannot start is an
    /// error only when it is the only one asked for; otherwise the other
    /// runs and the first event says what failed.
    pub async fn start(
        discovery_key: &[u8; 32],
        options: Options,
    ) -> Result<(Discovery, mpsc::Receiver<Event>), DiscoveryError> {
        if options.mdns.is_none() && options.dht.is_none() {
            return Err(DiscoveryError::NothingToRun);
        }
        let topic = topic(discovery_key);
        let (events, receiver) = mpsc::channel(256);
        let mut discovery = Discovery {
            tasks: Vec::new(),
            ask: Vec::new(),
            topic,
        };
        let both = options.mdns.is_some() && options.dht.is_some();
        // Reported as the first events when the other mechanism runs.
        let mut failed = Vec::new();
        if let Some(mdns) = options.mdns {
            let socket = match mdns::group_socket(&mdns) {
                Ok(socket) => Some(socket),
                Err(source) => {
                    let error = DiscoveryError::Mdns {
                        port: mdns::PORT,
                        source,
                    };
                    if !both {
                        return Err(error);
                    }
                    failed.push(Event::Failed {
                        source: Source::Mdns,
                        error: error.to_string(),
                    });
                    None
                }
            };
            if let Some(socket) = socket {
                let (ask, asked) = mpsc::channel(4);
                let events = events.clone();
                let announce = options.announce;
                discovery.tasks.push(tokio::spawn(async move {
                    let result =
                        mdns::run(socket, topic, announce, mdns, events.clone(), asked).await;
                    if let Err(e) = result {
                        let _ = events
                            .send(Event::Failed {
                                source: Source::Mdns,
                                error: e.to_string(),
                            })
                            .await;
                    }
                }));
                discovery.ask.push(ask);
            }
        }
        if let Some(dht) = options.dht {
            match dht::start(&dht).await {
                Ok(node) => {
                    let (ask, asked) = mpsc::channel(4);
                    let announce = options.announce;
                    let events = events.clone();
                    discovery.tasks.push(tokio::spawn(async move {
                        dht::run(node, topic, announce, dht, events, asked).await;
                    }));
                    discovery.ask.push(ask);
                }
                Err(e) if !both || discovery.tasks.is_empty() => {
                    return Err(DiscoveryError::Dht(e.to_string()))
                }
                Err(e) => failed.push(Event::Failed {
                    source: Source::Dht,
                    error: format!("the DHT could not start: {e}"),
                }),
            }
        }
        for event in failed {
            let _ = events.try_send(event);
        }
        Ok((discovery, receiver))
    }

    /// The topic looked up.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Looks up again now, rather than at the next refresh (a sync that
    /// still waits for peers, say).
    pub fn lookup_now(&self) {
        for ask in &self.ask {
            let _ = ask.try_send(());
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flood_of_peers_is_remembered_within_bounds() {
        let mut reported = Reported::new(std::time::Duration::from_secs(60));
        let peer = |i: u32| std::net::SocketAddrV4::new(i.to_be_bytes().into(), 1);
        assert!(reported.fresh(peer(0)));
        assert!(!reported.fresh(peer(0)), "heard again within the period");
        for i in 1..10_000 {
            reported.fresh(peer(i));
        }
        assert_eq!(reported.at.len(), MAX_REPORTED);
        assert!(!reported.fresh(peer(0)), "still remembered");
    }

    #[test]
    fn the_topic_is_the_first_20_bytes_of_the_discovery_key() {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(topic(&key).to_vec(), (0..20).collect::<Vec<u8>>());
    }
}
