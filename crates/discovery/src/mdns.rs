//! Multicast DNS, as `dns-discovery` 6 (under hyperdiscovery 8) speaks it.
//!
//! A peer asks the group 224.0.0.251:5353 for the TXT record of
//! `<topic hex>.dat.local`. Every peer that announced that topic answers,
//! to the group, with a TXT record of two strings: `token=` (its own
//! marker, so it can skip its own answer when it hears it back) and
//! `peers=` (base64 of 6-byte entries, IPv4 then port, big-endian, where
//! 0.0.0.0 means "the address this answer came from"). A peer answers its
//! own question too: that echo is how everyone else learns of a newcomer
//! without asking. SRV answers with an IPv4 target are read as peers too.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use base64::Engine;
use simple_dns::rdata::{RData, TXT};
use simple_dns::{Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::{Event, Reported, Source, Topic};

/// The multicast DNS group.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// The multicast DNS port.
pub const PORT: u16 = 5353;
/// The domain hyperdb 3.5.0's swarm (dat-swarm-defaults) asks under.
pub const DOMAIN: &str = "dat.local";

/// How multicast DNS runs.
#[derive(Clone, Debug)]
pub struct MdnsOptions {
    /// How often to ask again (and so to tell others about this peer).
    /// hyperdb 3.5.0's swarm asks every 60 to 70 seconds.
    pub refresh: Duration,
    /// The interface to send from, by its address; unspecified: the
    /// system's choice, or loopback on a machine with no route for
    /// multicast.
    pub interface: Ipv4Addr,
}

impl Default for MdnsOptions {
    fn default() -> Self {
        MdnsOptions {
            refresh: Duration::from_secs(60),
            interface: Ipv4Addr::UNSPECIFIED,
        }
    }
}

/// The name asked for: the topic in hex and [`DOMAIN`].
pub fn name(topic: &Topic) -> String {
    format!("{}.{DOMAIN}", hex::encode(topic))
}

/// The question for `topic`, as dns-discovery sends it: id 0, no flags, one
/// TXT question.
pub fn query(topic: &Topic) -> Vec<u8> {
    let name = name(topic);
    let mut packet = Packet::new_query(0);
    packet.questions.push(Question::new(
        Name::new_unchecked(&name),
        QTYPE::TYPE(TYPE::TXT),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.build_bytes_vec().expect("a valid question")
}

/// The answer announcing that this peer takes connections on `port` for
/// `topic`: the question echoed and a TXT record with `token` and the
/// peer as 0.0.0.0:`port` (flags 0x8400, TTL 0, as dns-discovery sends).
pub fn answer(topic: &Topic, token: &str, port: u16) -> Vec<u8> {
    let name = name(topic);
    let mut peer = [0u8; 6];
    peer[4..].copy_from_slice(&port.to_be_bytes());
    let token = format!("token={token}");
    let peers = format!(
        "peers={}",
        base64::engine::general_purpose::STANDARD.encode(peer)
    );
    let txt = TXT::new()
        .with_string(&token)
        .and_then(|t| t.with_string(&peers))
        .expect("short strings");
    let mut packet = Packet::new_reply(0);
    packet.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    packet.questions.push(Question::new(
        Name::new_unchecked(&name),
        QTYPE::TYPE(TYPE::TXT),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.answers.push(ResourceRecord::new(
        Name::new_unchecked(&name),
        CLASS::IN,
        0,
        RData::TXT(txt),
    ));
    packet.build_bytes_vec().expect("a valid answer")
}

/// What a received message says about `topic`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Heard {
    /// It asks who has the topic.
    pub asked: bool,
    /// Peers it names for the topic (0.0.0.0 already replaced by the
    /// sender's address), except in records carrying `own_token`.
    pub peers: Vec<SocketAddrV4>,
}

/// Reads a message from `from`: whether it asks for `topic`, and the peers
/// it names for it. Anything else (other names, other types, garbage) is
/// ignored: the group carries every application's traffic.
pub fn read(bytes: &[u8], from: Ipv4Addr, topic: &Topic, own_token: &str) -> Heard {
    let mut heard = Heard::default();
    let Ok(packet) = Packet::parse(bytes) else {
        return heard;
    };
    let ours = name(topic);
    let is_ours = |n: &Name| n.to_string().eq_ignore_ascii_case(&ours);
    if !packet.has_flags(PacketFlag::RESPONSE) {
        heard.asked = packet
            .questions
            .iter()
            .any(|q| is_ours(&q.qname) && q.qtype == QTYPE::TYPE(TYPE::TXT));
    }
    let records = packet.answers.iter().chain(&packet.additional_records);
    for record in records.filter(|r| is_ours(&r.name)) {
        match &record.rdata {
            RData::TXT(txt) => {
                let attributes = txt.attributes();
                let get = |k: &str| attributes.get(k).cloned().flatten();
                if get("token").as_deref() == Some(own_token) {
                    continue;
                }
                let Some(peers) = get("peers") else {
                    continue;
                };
                let Ok(peers) = base64::engine::general_purpose::STANDARD.decode(peers) else {
                    continue;
                };
                for entry in peers.chunks_exact(6) {
                    let ip = Ipv4Addr::new(entry[0], entry[1], entry[2], entry[3]);
                    let port = u16::from_be_bytes([entry[4], entry[5]]);
                    let ip = if ip.is_unspecified() { from } else { ip };
                    heard.peers.push(SocketAddrV4::new(ip, port));
                }
            }
            RData::SRV(srv) => {
                let Ok(ip) = srv.target.to_string().parse::<Ipv4Addr>() else {
                    continue;
                };
                let ip = if ip.is_unspecified() { from } else { ip };
                heard.peers.push(SocketAddrV4::new(ip, srv.port));
            }
            _ => {}
        }
    }
    heard
}

/// A socket in the group: bound to port 5353 beside any other responder
/// on the machine, joined on every IPv4 interface (as multicast-dns does),
/// hearing its own messages.
pub(crate) fn group_socket(options: &MdnsOptions) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)).into())?;
    let mut joined = false;
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    for interface in interfaces {
        if let std::net::IpAddr::V4(ip) = interface.ip() {
            joined |= socket.join_multicast_v4(&GROUP, &ip).is_ok();
        }
    }
    if !joined {
        socket.join_multicast_v4(&GROUP, &Ipv4Addr::UNSPECIFIED)?;
    }
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(255)?;
    if !options.interface.is_unspecified() {
        socket.set_multicast_if_v4(&options.interface)?;
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Sends `bytes` to the group; on a machine with no route for multicast
/// (a network namespace with only loopback, say), from loopback.
async fn send(socket: &UdpSocket, bytes: &[u8]) -> io::Result<()> {
    let to = SocketAddr::from((GROUP, PORT));
    match socket.send_to(bytes, to).await {
        Err(e) if e.kind() == io::ErrorKind::NetworkUnreachable => {
            socket2::SockRef::from(socket).set_multicast_if_v4(&Ipv4Addr::LOCALHOST)?;
            socket.send_to(bytes, to).await.map(drop)
        }
        result => result.map(drop),
    }
}

/// Runs multicast DNS for `topic` on `socket` (from [`group_socket`]) until
/// `found` or `ask_now` is closed: asks now and
/// every `options.refresh`, answers questions for the topic when
/// `announce` names the port this peer takes connections on, and sends
/// each peer heard of to `found`.
pub(crate) async fn run(
    socket: UdpSocket,
    topic: Topic,
    announce: Option<u16>,
    options: MdnsOptions,
    found: mpsc::Sender<Event>,
    mut ask_now: mpsc::Receiver<()>,
) -> io::Result<()> {
    let token = {
        let bytes: [u8; 32] = rand::random();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let question = query(&topic);
    let reply = announce.map(|port| answer(&topic, &token, port));
    let mut ticker = tokio::time::interval(options.refresh);
    let mut buf = vec![0u8; 9000];
    let mut reported = Reported::new(options.refresh);
    loop {
        tokio::select! {
            _ = ticker.tick() => send(&socket, &question).await?,
            asked = ask_now.recv() => match asked {
                Some(()) => send(&socket, &question).await?,
                None => return Ok(()),
            },
            received = socket.recv_from(&mut buf) => {
                let (n, from) = match received {
                    Ok(r) => r,
                    // An ICMP error for an earlier send, say: keep going.
                    Err(_) => continue,
                };
                let SocketAddr::V4(from) = from else { continue };
                let heard = read(&buf[..n], *from.ip(), &topic, &token);
                if let (true, Some(reply)) = (heard.asked, &reply) {
                    send(&socket, reply).await?;
                }
                for peer in heard.peers {
                    if crate::is_self(&peer, announce) {
                        continue;
                    }
                    if reported.fresh(peer) {
                        let found_one = Event::Peer { addr: SocketAddr::V4(peer), source: Source::Mdns };
                        if found.send(found_one).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: Topic = [0xab; 20];

    #[test]
    fn a_question_is_what_dns_discovery_sends() {
        let bytes = query(&TOPIC);
        // id 0, flags 0, one question, nothing else.
        assert_eq!(&bytes[..12], &[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        // The name's first label is the 40 hex digits.
        assert_eq!(bytes[12], 40);
        assert_eq!(&bytes[13..53], hex::encode(TOPIC).as_bytes());
        // Type TXT (16), class IN (1).
        assert_eq!(&bytes[bytes.len() - 4..], &[0, 16, 0, 1]);
        let heard = read(&bytes, Ipv4Addr::LOCALHOST, &TOPIC, "x");
        assert!(heard.asked && heard.peers.is_empty());
        assert!(!read(&bytes, Ipv4Addr::LOCALHOST, &[1; 20], "x").asked);
    }

    #[test]
    fn an_answer_names_its_sender_and_is_skipped_by_it() {
        let bytes = answer(&TOPIC, "me", 3282);
        // id 0, flags 0x8400 (an authoritative response), 1 question, 1 answer.
        assert_eq!(&bytes[..8], &[0, 0, 0x84, 0, 0, 1, 0, 1]);
        let from = Ipv4Addr::new(10, 0, 0, 7);
        let heard = read(&bytes, from, &TOPIC, "someone else");
        assert!(!heard.asked);
        assert_eq!(heard.peers, [SocketAddrV4::new(from, 3282)]);
        assert_eq!(read(&bytes, from, &TOPIC, "me"), Heard::default());
        assert_eq!(read(&bytes, from, &[1; 20], "x"), Heard::default());
    }

    #[test]
    fn garbage_and_truncated_messages_say_nothing() {
        let good = answer(&TOPIC, "t", 1);
        for end in 0..good.len() {
            let heard = read(&good[..end], Ipv4Addr::LOCALHOST, &TOPIC, "x");
            assert!(heard.peers.len() <= 1);
        }
        let mut bytes = good.clone();
        for i in 0..bytes.len() {
            bytes[i] ^= 0x5a;
            let _ = read(&bytes, Ipv4Addr::LOCALHOST, &TOPIC, "x");
            bytes[i] ^= 0x5a;
        }
    }
}
