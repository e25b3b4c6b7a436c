//! The BitTorrent Mainline DHT (BEP 5), through the `mainline` crate as a
//! client, as hyperdb 3.5.0's swarm used it (bittorrent-dht 7).
//!
//! The info-hash is the topic (the first 20 bytes of the discovery key).
//! Announcing stores this peer's address and TCP port on the DHT nodes
//! closest to it (`announce_peer`, the port given explicitly); a lookup
//! (`get_peers`) asks them who announced. hyperdb 3.5.0 peers announce
//! every 10 to 15 minutes; so does this, and it looks up at the same pace
//! unless asked to look up now.
//!
//! `mainline` works as a client against the JS nodes of bittorrent-dht,
//! but it cannot answer them: their queries carry 2-byte transaction ids,
//! which it does not parse. So a Rust node never serves JS ones: this is a
//! client only.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_lite::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::{Dht, Id};
use tokio::sync::mpsc;

use crate::{Event, Reported, Source, Topic};

/// The Mainline DHT's usual public routers.
pub const PUBLIC_ROUTERS: [&str; 4] = [
    "router.bittorrent.com:6881",
    "router.utorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
];

/// How the DHT client runs.
#[derive(Clone, Debug)]
pub struct DhtOptions {
    /// The nodes to join the DHT through (`host:port`); by default the
    /// public routers ([`PUBLIC_ROUTERS`]).
    pub bootstrap: Vec<String>,
    /// The address to bind the UDP socket to.
    pub bind: Ipv4Addr,
    /// The UDP port; 0 takes any free one.
    pub port: u16,
    /// How often to announce again and look up again (hyperdb 3.5.0's
    /// swarm: every 10 to 15 minutes).
    pub refresh: Duration,
}

impl Default for DhtOptions {
    fn default() -> Self {
        DhtOptions {
            bootstrap: PUBLIC_ROUTERS.iter().map(|s| s.to_string()).collect(),
            bind: Ipv4Addr::UNSPECIFIED,
            port: 0,
            refresh: Duration::from_secs(10 * 60),
        }
    }
}

/// Starts a DHT client (its own thread; resolving the bootstrap names
/// blocks, so it happens off the runtime).
pub(crate) async fn start(options: &DhtOptions) -> io::Result<AsyncDht> {
    let options = options.clone();
    let dht = tokio::task::spawn_blocking(move || {
        let mut builder = Dht::builder();
        builder
            .bootstrap(&options.bootstrap)
            .bind_address(options.bind)
            .port(options.port);
        builder.build()
    })
    .await
    .map_err(io::Error::other)??;
    Ok(dht.as_async())
}

/// Announces (when `announce` names the TCP port) and looks `topic` up,
/// now and every `options.refresh`, and whenever `ask_now` says so,
/// sending what it finds to `events` until either is closed.
pub(crate) async fn run(
    dht: AsyncDht,
    topic: Topic,
    announce: Option<u16>,
    options: DhtOptions,
    events: mpsc::Sender<Event>,
    mut ask_now: mpsc::Receiver<()>,
) {
    let info_hash = Id::from(topic);
    let mut ticker = tokio::time::interval(options.refresh);
    let mut reported = Reported::new(options.refresh);
    let mut announce_due = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => announce_due = true,
            asked = ask_now.recv() => if asked.is_none() {
                return;
            },
        }
        // One query at a time for the topic: a lookup started while an
        // announce's own lookup runs would join it and hear nothing.
        if let (true, Some(port)) = (announce_due, announce) {
            let event = match dht.announce_peer(info_hash, Some(port)).await {
                Ok(_) => Event::Announced {
                    source: Source::Dht,
                },
                Err(e) => Event::Failed {
                    source: Source::Dht,
                    error: format!(
                        "announcing failed ({e}); bootstrap nodes: {}",
                        options.bootstrap.join(", ")
                    ),
                },
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
        announce_due = false;
        let mut peers = 0;
        let mut stream = dht.get_peers(info_hash);
        while let Some(batch) = stream.next().await {
            for peer in batch {
                if crate::is_self(&peer, announce) {
                    continue;
                }
                peers += 1;
                if reported.fresh(peer) {
                    let event = Event::Peer {
                        addr: SocketAddr::V4(peer),
                        source: Source::Dht,
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            }
        }
        let looked = Event::LookedUp {
            source: Source::Dht,
            peers,
        };
        if events.send(looked).await.is_err() {
            return;
        }
    }
}
