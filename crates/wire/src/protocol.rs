//! The stream: frames, channels, encryption and keep-alives, with no I/O.
//!
//! Bytes from the peer go in through [`Protocol::receive`]; what happened
//! comes out of [`Protocol::next_event`]; bytes for the peer come out of
//! [`Protocol::take_outgoing`]. Time enters through [`Protocol::tick`], which
//! the caller invokes every quarter of the idle timeout.
//!
//! On the wire every frame is `varint(length) varint(channel << 4 | type)
//! body`; a zero length is a keep-alive. Each side opens a channel per feed
//! with a Feed message carrying the feed's discovery key; its first Feed
//! message also carries a random 24-byte nonce and is the only plaintext:
//! everything after it is XORed with an XSalsa20 keystream keyed by the first
//! feed's public key and that side's nonce. Both sides must open the same
//! feed first, so only peers that know the key can read the stream.

use std::collections::{HashMap, VecDeque};

use crate::messages::{Feed, Handshake, Message};
use crate::varint;
use crate::xsalsa::XSalsa20;
use bytes::{Bytes, BytesMut};
use prost::Message as _;

/// Largest frame accepted, as hypercore-protocol 6 (8 MiB).
pub const MAX_FRAME: u64 = 8 * 1024 * 1024;
/// Messages kept for a channel the peer opened and we have not (yet).
const MAX_BUFFERED: usize = 16;

/// Why a stream ended in error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A frame longer than [`MAX_FRAME`].
    #[error("the peer sent a frame of {0} bytes, more than the 8 MiB allowed")]
    FrameTooLarge(u64),
    /// A frame header that does not decode.
    #[error("the peer sent an invalid frame header")]
    BadHeader,
    /// A Feed message that does not decode, or a bad key or nonce length.
    #[error("the peer sent an invalid feed message")]
    BadFeed,
    /// The peer opened another feed first.
    #[error(
        "the peer's first feed is not ours (it has discovery key {0}): \
         it serves another database"
    )]
    DifferentFeed(String),
    /// No nonce in the first Feed message of an encrypted stream.
    #[error("the peer did not include a nonce")]
    MissingNonce,
    /// More channels than allowed.
    #[error("the peer opened more than {0} channels")]
    TooManyChannels(usize),
    /// A message on a channel the peer never opened.
    #[error("the peer sent a message on channel {0}, which it never opened")]
    UnknownChannel(u64),
    /// Too many messages on a channel we did not open.
    #[error("the peer sent too many messages on a feed we did not open")]
    TooManyBuffered,
    /// A message type this protocol does not have.
    #[error("the peer sent a message of unknown type {0}")]
    UnknownType(u64),
    /// A message body that does not decode.
    #[error("the peer sent a {kind} message that does not decode: {reason}")]
    BadMessage {
        /// The message type.
        kind: &'static str,
        /// What prost said.
        reason: String,
    },
    /// Nothing from the peer for too long.
    #[error("the peer timed out (nothing received for {0} ticks)")]
    Timeout(u32),
}

/// How a stream behaves.
#[derive(Clone, Debug)]
pub struct ProtocolOptions {
    /// Our peer id (random by default).
    pub id: [u8; 32],
    /// Keep replicating after the initial sync.
    pub live: bool,
    /// Data for the peer's application.
    pub user_data: Option<Vec<u8>>,
    /// Extension names we support (kept sorted).
    pub extensions: Vec<String>,
    /// Encrypt the stream (hyperdb always does).
    pub encrypted: bool,
    /// Most channels per stream.
    pub max_channels: usize,
    /// The nonce our stream is encrypted with; random when `None`. Every
    /// stream under one key needs a nonce of its own: only a caller that
    /// draws them from a generator of its own (a deterministic simulation)
    /// sets this.
    pub nonce: Option<[u8; 24]>,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        ProtocolOptions {
            id: rand::random(),
            live: false,
            user_data: None,
            extensions: Vec::new(),
            encrypted: true,
            max_channels: 256,
            nonce: None,
        }
    }
}

/// What the peer did.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The peer's handshake arrived.
    Handshake(Handshake),
    /// The peer opened a channel for this discovery key. If we have not
    /// opened the feed, its messages wait until we do.
    RemoteOpened([u8; 32]),
    /// A message on a channel both sides have opened.
    Message {
        /// The feed's discovery key.
        discovery_key: [u8; 32],
        /// The message.
        message: Message,
    },
}

#[derive(Default)]
struct Channel {
    local_id: Option<u64>,
    remote_opened: bool,
    buffered: Vec<Message>,
}

/// One replication stream, as a state machine.
pub struct Protocol {
    options: ProtocolOptions,
    key: Option<[u8; 32]>,
    discovery_key: Option<[u8; 32]>,
    xor: Option<XSalsa20>,
    remote_xor: Option<XSalsa20>,
    remote_nonce: Option<[u8; 24]>,
    remote_discovery_key: Option<[u8; 32]>,
    remote_handshake: Option<Handshake>,
    /// Channels by discovery key. The remote chooses keys, so the map uses
    /// std's keyed (randomly seeded) hash, and holds at most one
    /// remote-only channel per remote channel id.
    channels: HashMap<[u8; 32], Channel>,
    local_channels: Vec<Option<[u8; 32]>>,
    remote_channels: Vec<Option<[u8; 32]>>,
    /// Received bytes not parsed yet (decrypted, except while waiting for
    /// our key: then everything after the first frame is still ciphertext).
    input: BytesMut,
    needs_key: bool,
    /// Bytes for the peer: the first `written` were handed out and
    /// consumed; those from `sealed` on are still to be encrypted (all at
    /// once, when asked for).
    outgoing: Vec<u8>,
    written: usize,
    sealed: usize,
    events: VecDeque<Event>,
    keep_alive: u32,
    remote_keep_alive: u32,
    error: Option<WireError>,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protocol")
            .field("channels", &self.channels.len())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Protocol {
    /// A new stream.
    pub fn new(options: ProtocolOptions) -> Self {
        let mut options = options;
        options.extensions.sort();
        Protocol {
            options,
            key: None,
            discovery_key: None,
            xor: None,
            remote_xor: None,
            remote_nonce: None,
            remote_discovery_key: None,
            remote_handshake: None,
            channels: HashMap::new(),
            local_channels: Vec::new(),
            remote_channels: Vec::new(),
            input: BytesMut::new(),
            needs_key: false,
            outgoing: Vec::new(),
            written: 0,
            sealed: 0,
            events: VecDeque::new(),
            keep_alive: 0,
            remote_keep_alive: 0,
            error: None,
        }
    }

    /// The peer's handshake, once received.
    pub fn remote_handshake(&self) -> Option<&Handshake> {
        self.remote_handshake.as_ref()
    }

    /// The discovery key of the peer's first feed.
    pub fn remote_discovery_key(&self) -> Option<&[u8; 32]> {
        self.remote_discovery_key.as_ref()
    }

    /// Whether we opened a channel for this discovery key.
    pub fn is_open(&self, discovery_key: &[u8; 32]) -> bool {
        self.channels
            .get(discovery_key)
            .is_some_and(|c| c.local_id.is_some())
    }

    /// Whether the peer opened a channel for this discovery key.
    pub fn remote_opened(&self, discovery_key: &[u8; 32]) -> bool {
        self.channels
            .get(discovery_key)
            .is_some_and(|c| c.remote_opened)
    }

    /// Number of feeds the peer opened that we have not: each holds up to
    /// 16 of its messages until we do. There is at most one for each
    /// channel id the peer may use, however often it reuses them.
    pub fn remote_only_channels(&self) -> usize {
        self.channels
            .values()
            .filter(|c| c.remote_opened && c.local_id.is_none())
            .count()
    }

    /// Number of channels we have open.
    pub fn open_channels(&self) -> usize {
        self.local_channels.iter().flatten().count()
    }

    /// Opens our channel for the feed with public key `key`. The first feed
    /// opened keys the stream's encryption and sends the handshake.
    pub fn open(&mut self, key: &[u8; 32]) -> Result<[u8; 32], WireError> {
        self.check()?;
        let dk = crate::discovery_key(key);
        if self.is_open(&dk) {
            return Ok(dk);
        }
        if self.open_channels() >= self.options.max_channels {
            return Err(WireError::TooManyChannels(self.options.max_channels));
        }
        let id = match self.local_channels.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.local_channels.push(None);
                self.local_channels.len() - 1
            }
        };
        self.local_channels[id] = Some(dk);
        self.channels.entry(dk).or_default().local_id = Some(id as u64);

        let first = self.key.is_none();
        let mut feed = Feed {
            discovery_key: dk.to_vec(),
            nonce: None,
        };
        if first {
            self.key = Some(*key);
            self.discovery_key = Some(dk);
            if let Some(remote) = self.remote_discovery_key {
                if remote != dk {
                    return self.fail(WireError::DifferentFeed(hex::encode(remote)));
                }
            }
            if self.options.encrypted {
                let nonce: [u8; 24] = self.options.nonce.unwrap_or_else(rand::random);
                feed.nonce = Some(nonce.to_vec());
                self.xor = Some(XSalsa20::new(key, &nonce));
                if let Some(remote_nonce) = self.remote_nonce {
                    self.start_remote_cipher(key, &remote_nonce);
                }
            }
        }
        let mut body = Vec::new();
        feed.encode(&mut body).expect("a Vec grows");
        self.push_frame(id as u64, 0, body.len(), |out| out.extend_from_slice(&body));
        if first && self.options.encrypted {
            // The first Feed message is the only plaintext.
            self.sealed = self.outgoing.len();
        }
        if first {
            let handshake = Handshake {
                id: Some(self.options.id.to_vec()),
                live: Some(self.options.live),
                user_data: self.options.user_data.clone(),
                extensions: self.options.extensions.clone(),
                ack: Some(false),
            };
            self.send_on(id as u64, &Message::Handshake(handshake));
        }
        // Messages the peer sent before we opened the feed.
        let buffered =
            std::mem::take(&mut self.channels.get_mut(&dk).expect("just added").buffered);
        for message in buffered {
            self.events.push_back(Event::Message {
                discovery_key: dk,
                message,
            });
        }
        if first && self.needs_key {
            self.needs_key = false;
            self.parse()?;
        }
        Ok(dk)
    }

    /// Sends a message on the channel of `discovery_key` (which we opened).
    pub fn send(&mut self, discovery_key: &[u8; 32], message: &Message) {
        if let Some(id) = self.channels.get(discovery_key).and_then(|c| c.local_id) {
            self.send_on(id, message);
        }
    }

    /// Closes our side of a channel (hypercore-protocol 6 has no message for
    /// this; the peer learns it from Info messages).
    pub fn close(&mut self, discovery_key: &[u8; 32]) {
        if let Some(channel) = self.channels.get_mut(discovery_key) {
            if let Some(id) = channel.local_id.take() {
                self.local_channels[id as usize] = None;
            }
        }
    }

    /// Sends a keep-alive.
    pub fn ping(&mut self) {
        if self.key.is_some() {
            self.outgoing.push(0);
            self.keep_alive = 0;
        }
    }

    /// Bytes to send to the peer, all of them, as if consumed.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        self.seal();
        let out = self.outgoing.split_off(self.written);
        self.outgoing.clear();
        (self.written, self.sealed) = (0, 0);
        out
    }

    /// Bytes to send to the peer, not consumed: after writing some of them
    /// call [`Protocol::consume`]. Until then they count in
    /// [`Protocol::outgoing_len`], so a caller can hold back work while the
    /// peer is slow to read, and no buffer is copied or reallocated.
    pub fn outgoing(&mut self) -> &[u8] {
        self.seal();
        &self.outgoing[self.written..]
    }

    /// Marks the first `n` bytes [`Protocol::outgoing`] returned as sent.
    pub fn consume(&mut self, n: usize) {
        self.written = (self.written + n).min(self.sealed);
        if self.written == self.outgoing.len() {
            self.outgoing.clear();
            (self.written, self.sealed) = (0, 0);
        } else if self.written >= 64 * 1024 && 2 * self.written >= self.outgoing.len() {
            // A peer that never catches up: drop what it has read, at a cost
            // no larger than what was appended since the last time.
            self.outgoing.drain(..self.written);
            self.sealed -= self.written;
            self.written = 0;
        }
    }

    /// Encrypts what was queued since the last call.
    fn seal(&mut self) {
        if let Some(cipher) = self.xor.as_mut() {
            cipher.apply_keystream(&mut self.outgoing[self.sealed..]);
        }
        self.sealed = self.outgoing.len();
    }

    /// Whether bytes wait to be sent.
    pub fn has_outgoing(&self) -> bool {
        self.outgoing.len() > self.written
    }

    /// How many bytes wait to be sent (handed out by
    /// [`Protocol::outgoing`] or not).
    pub fn outgoing_len(&self) -> usize {
        self.outgoing.len() - self.written
    }

    /// How many bytes of the peer's this stream holds: what arrived and is
    /// not parsed yet (a frame still arriving, up to 8 MiB), and the
    /// messages buffered for feeds we have not opened, roughly.
    pub fn input_len(&self) -> usize {
        let buffered: usize = self
            .channels
            .values()
            .map(|c| c.buffered.len() * std::mem::size_of::<Message>())
            .sum();
        self.input.len() + buffered
    }

    /// The next thing the peer did.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Counts time: call every quarter of the idle timeout. Sends a
    /// keep-alive when we have been quiet, fails when the peer has been
    /// silent for more than four ticks.
    pub fn tick(&mut self) -> Result<(), WireError> {
        self.check()?;
        if self.remote_keep_alive > 4 {
            return self.fail(WireError::Timeout(self.remote_keep_alive));
        }
        self.remote_keep_alive += 1;
        if self.keep_alive > 2 {
            self.ping();
            self.keep_alive = 0;
        } else {
            self.keep_alive += 1;
        }
        Ok(())
    }

    /// Feeds bytes received from the peer.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), WireError> {
        self.check()?;
        self.remote_keep_alive = 0;
        let start = self.input.len();
        self.input.extend_from_slice(data);
        if let Some(cipher) = self.remote_xor.as_mut() {
            cipher.apply_keystream(&mut self.input[start..]);
        }
        if self.needs_key {
            return Ok(());
        }
        self.parse()
    }

    fn check(&self) -> Result<(), WireError> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn fail<T>(&mut self, error: WireError) -> Result<T, WireError> {
        self.error = Some(error.clone());
        Err(error)
    }

    fn start_remote_cipher(&mut self, key: &[u8; 32], nonce: &[u8; 24]) {
        let mut cipher = XSalsa20::new(key, nonce);
        // Everything not yet parsed arrived encrypted.
        cipher.apply_keystream(&mut self.input[..]);
        self.remote_xor = Some(cipher);
    }

    /// Appends a frame: its length, its header, and the `len` bytes of
    /// body `write` appends.
    fn push_frame(
        &mut self,
        channel: u64,
        kind: u64,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        self.keep_alive = 0;
        let header = channel << 4 | kind;
        let out = &mut self.outgoing;
        varint::encode((varint::encoding_length(header) + len) as u64, out);
        varint::encode(header, out);
        let start = out.len();
        write(out);
        debug_assert_eq!(out.len() - start, len, "the body has the length announced");
        if self.xor.is_none() {
            self.sealed = self.outgoing.len();
        }
    }

    fn send_on(&mut self, channel: u64, message: &Message) {
        let len = message.encoded_body_len();
        self.push_frame(channel, message.type_id(), len, |out| {
            message.encode_body(out)
        });
    }

    fn parse(&mut self) -> Result<(), WireError> {
        loop {
            let buf = &self.input[..];
            let Some((len, used)) = varint::decode(buf) else {
                if buf.len() >= 10 {
                    return self.fail(WireError::BadHeader);
                }
                break;
            };
            if len > MAX_FRAME {
                return self.fail(WireError::FrameTooLarge(len));
            }
            let len = len as usize;
            if buf.len() < used + len {
                break;
            }
            let frame = self.input.split_to(used + len).freeze().slice(used..);
            if len >= 2 {
                self.on_frame(frame)?;
            }
            if self.needs_key {
                break;
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Bytes) -> Result<(), WireError> {
        let Some((header, used)) = varint::decode(&frame) else {
            return self.fail(WireError::BadHeader);
        };
        let body = frame.slice(used..);
        let channel = header >> 4;
        let kind = header & 15;
        if channel >= self.options.max_channels as u64 {
            return self.fail(WireError::TooManyChannels(self.options.max_channels));
        }
        if kind == 0 {
            return self.on_open(channel, &body);
        }
        let Some(dk) = self
            .remote_channels
            .get(channel as usize)
            .copied()
            .flatten()
        else {
            return self.fail(WireError::UnknownChannel(channel));
        };
        let message = match Message::decode(kind, body) {
            None => return self.fail(WireError::UnknownType(kind)),
            Some(Err(e)) => {
                return self.fail(WireError::BadMessage {
                    kind: type_name(kind),
                    reason: e.to_string(),
                })
            }
            Some(Ok(m)) => m,
        };
        if let Message::Handshake(h) = message {
            if self.remote_handshake.is_none() {
                self.remote_handshake = Some(h.clone());
                self.events.push_back(Event::Handshake(h));
            }
            return Ok(());
        }
        let ch = self.channels.entry(dk).or_default();
        if ch.local_id.is_some() {
            self.events.push_back(Event::Message {
                discovery_key: dk,
                message,
            });
        } else {
            if ch.buffered.len() >= MAX_BUFFERED {
                return self.fail(WireError::TooManyBuffered);
            }
            ch.buffered.push(message);
        }
        Ok(())
    }

    fn on_open(&mut self, channel: u64, body: &[u8]) -> Result<(), WireError> {
        let Ok(feed) = Feed::decode(body) else {
            return self.fail(WireError::BadFeed);
        };
        let Ok(dk) = <[u8; 32]>::try_from(feed.discovery_key.as_slice()) else {
            return self.fail(WireError::BadFeed);
        };
        let nonce = match feed.nonce.as_deref() {
            None => None,
            Some(n) => match <[u8; 24]>::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => return self.fail(WireError::BadFeed),
            },
        };
        if self.remote_discovery_key.is_none() {
            self.remote_discovery_key = Some(dk);
            if let Some(ours) = self.discovery_key {
                if ours != dk {
                    return self.fail(WireError::DifferentFeed(hex::encode(dk)));
                }
            }
            if self.options.encrypted {
                let Some(nonce) = nonce else {
                    return self.fail(WireError::MissingNonce);
                };
                self.remote_nonce = Some(nonce);
                match self.key {
                    Some(key) => self.start_remote_cipher(&key, &nonce),
                    // Wait for our first feed before reading further.
                    None => self.needs_key = true,
                }
            }
        }
        let index = channel as usize;
        if self.remote_channels.len() <= index {
            self.remote_channels.resize(index + 1, None);
        }
        if let Some(old) = self.remote_channels[index].replace(dk) {
            // The id now names another feed: what the old one buffered for
            // a feed we never opened goes with it.
            let unopened = self
                .channels
                .get(&old)
                .is_some_and(|c| c.local_id.is_none());
            if old != dk && unopened {
                self.channels.remove(&old);
            }
        }
        self.channels.entry(dk).or_default().remote_opened = true;
        self.events.push_back(Event::RemoteOpened(dk));
        Ok(())
    }
}

fn type_name(kind: u64) -> &'static str {
    match kind {
        1 => "Handshake",
        2 => "Info",
        3 => "Have",
        4 => "Unhave",
        5 => "Want",
        6 => "Unwant",
        7 => "Request",
        8 => "Cancel",
        9 => "Data",
        _ => "extension",
    }
}
