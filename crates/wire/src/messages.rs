//! The messages of hypercore-protocol 6 (`schema.proto`), field for field.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::Message as _;

/// Type 0: opens a channel for a feed, by discovery key. The first one on a
/// stream carries the sender's nonce.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Feed {
    /// Discovery key of the feed (32 bytes).
    #[prost(bytes = "vec", required, tag = "1")]
    pub discovery_key: Vec<u8>,
    /// 24-byte XSalsa20 nonce (first channel only).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub nonce: Option<Vec<u8>>,
}

/// Type 1: the connection handshake, once, after the first Feed message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Handshake {
    /// The sender's peer id.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub id: Option<Vec<u8>>,
    /// Keep the connection open (both ends must agree).
    #[prost(bool, optional, tag = "2")]
    pub live: Option<bool>,
    /// Application data.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub user_data: Option<Vec<u8>>,
    /// Names of supported extensions, sorted.
    #[prost(string, repeated, tag = "4")]
    pub extensions: Vec<String>,
    /// Should blocks be acknowledged.
    #[prost(bool, optional, tag = "5")]
    pub ack: Option<bool>,
}

/// Type 2: state changes. Both ends not downloading and not live means the
/// channel can end.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Info {
    /// Whether the sender uploads.
    #[prost(bool, optional, tag = "1")]
    pub uploading: Option<bool>,
    /// Whether the sender still downloads.
    #[prost(bool, optional, tag = "2")]
    pub downloading: Option<bool>,
}

/// Type 3: blocks the sender has.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Have {
    /// First block.
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    /// Number of blocks (1 when absent).
    #[prost(uint64, optional, tag = "2")]
    pub length: Option<u64>,
    /// Run-length encoded bitfield of the range.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub bitfield: Option<Vec<u8>>,
    /// An acknowledgement.
    #[prost(bool, optional, tag = "4")]
    pub ack: Option<bool>,
}

/// Type 4: blocks the sender no longer has.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Unhave {
    /// First block.
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    /// Number of blocks (1 when absent).
    #[prost(uint64, optional, tag = "2")]
    pub length: Option<u64>,
}

/// Type 5: a range the sender wants Have messages for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Want {
    /// First block.
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    /// Number of blocks.
    #[prost(uint64, optional, tag = "2")]
    pub length: Option<u64>,
}

/// Type 6: a range the sender no longer wants.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Unwant {
    /// First block.
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    /// Number of blocks.
    #[prost(uint64, optional, tag = "2")]
    pub length: Option<u64>,
}

/// Type 7: asks for a block (or its hash) and the proof.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// The block.
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    /// A byte offset to seek to instead of an index.
    #[prost(uint64, optional, tag = "2")]
    pub bytes: Option<u64>,
    /// Only the hash.
    #[prost(bool, optional, tag = "3")]
    pub hash: Option<bool>,
    /// Digest of the tree nodes the sender already has.
    #[prost(uint64, optional, tag = "4")]
    pub nodes: Option<u64>,
}

/// Type 8: cancels a request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Cancel {
    /// The block.
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    /// A byte offset.
    #[prost(uint64, optional, tag = "2")]
    pub bytes: Option<u64>,
    /// Only the hash.
    #[prost(bool, optional, tag = "3")]
    pub hash: Option<bool>,
}

/// A tree node in a Data message (`index`, `hash`, `size`, all required).
///
/// Every block that crosses the wire carries a dozen of these, so the hash
/// is kept inline rather than as a slice of the frame, and the message is
/// encoded and decoded with prost's field functions directly. A hash that
/// is not 32 bytes is a decode error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataNode {
    /// Flat-tree index.
    pub index: u64,
    /// The node's BLAKE2b-256 hash.
    pub hash: [u8; 32],
    /// Bytes under the node.
    pub size: u64,
}

impl prost::Message for DataNode {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::uint64::encode(1, &self.index, buf);
        encoding::encode_key(2, WireType::LengthDelimited, buf);
        encoding::encode_varint(32, buf);
        buf.put_slice(&self.hash);
        encoding::uint64::encode(3, &self.size, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => encoding::uint64::merge(wire_type, &mut self.index, buf, ctx),
            2 => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                let len = encoding::decode_varint(buf)?;
                if len != 32 {
                    return Err(prost::DecodeError::new(format!(
                        "a node hash has {len} bytes, not 32"
                    )));
                }
                if buf.remaining() < 32 {
                    return Err(prost::DecodeError::new("buffer underflow"));
                }
                buf.copy_to_slice(&mut self.hash);
                Ok(())
            }
            3 => encoding::uint64::merge(wire_type, &mut self.size, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::uint64::encoded_len(1, &self.index)
            + encoding::key_len(2)
            + 1
            + 32
            + encoding::uint64::encoded_len(3, &self.size)
    }

    fn clear(&mut self) {
        *self = DataNode::default();
    }
}

/// Type 9: a block with its proof.
///
/// Encoded field by field with prost's functions, like [`DataNode`], so
/// that decoding makes room for a typical proof's nodes at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Data {
    /// The block.
    pub index: u64,
    /// Its bytes (absent for a hash-only answer).
    pub value: Option<Bytes>,
    /// Proof nodes.
    pub nodes: Vec<DataNode>,
    /// Signature of the roots, when the proof reaches them.
    pub signature: Option<Bytes>,
}

impl prost::Message for Data {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::uint64::encode(1, &self.index, buf);
        if let Some(value) = &self.value {
            encoding::bytes::encode(2, value, buf);
        }
        encoding::message::encode_repeated(3, &self.nodes, buf);
        if let Some(signature) = &self.signature {
            encoding::bytes::encode(4, signature, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => encoding::uint64::merge(wire_type, &mut self.index, buf, ctx),
            2 => encoding::bytes::merge(wire_type, self.value.get_or_insert_default(), buf, ctx),
            3 => {
                if self.nodes.capacity() == 0 {
                    // An uncle a level: sixteen covers 65,536 blocks.
                    self.nodes.reserve(16);
                }
                encoding::message::merge_repeated(wire_type, &mut self.nodes, buf, ctx)
            }
            4 => {
                encoding::bytes::merge(wire_type, self.signature.get_or_insert_default(), buf, ctx)
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::uint64::encoded_len(1, &self.index)
            + self
                .value
                .as_ref()
                .map_or(0, |v| encoding::bytes::encoded_len(2, v))
            + encoding::message::encoded_len_repeated(3, &self.nodes)
            + self
                .signature
                .as_ref()
                .map_or(0, |s| encoding::bytes::encoded_len(4, s))
    }

    fn clear(&mut self) {
        *self = Data::default();
    }
}

/// A message on a channel.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Type 1.
    Handshake(Handshake),
    /// Type 2.
    Info(Info),
    /// Type 3.
    Have(Have),
    /// Type 4.
    Unhave(Unhave),
    /// Type 5.
    Want(Want),
    /// Type 6.
    Unwant(Unwant),
    /// Type 7.
    Request(Request),
    /// Type 8.
    Cancel(Cancel),
    /// Type 9.
    Data(Data),
    /// Type 15: an extension message (the sender's extension number and the
    /// payload).
    Extension {
        /// Index into the sender's extension list.
        id: u64,
        /// The payload.
        payload: Vec<u8>,
    },
}

impl Message {
    /// The 4-bit type in the frame header.
    pub fn type_id(&self) -> u64 {
        match self {
            Message::Handshake(_) => 1,
            Message::Info(_) => 2,
            Message::Have(_) => 3,
            Message::Unhave(_) => 4,
            Message::Want(_) => 5,
            Message::Unwant(_) => 6,
            Message::Request(_) => 7,
            Message::Cancel(_) => 8,
            Message::Data(_) => 9,
            Message::Extension { .. } => 15,
        }
    }

    /// Length of the encoded body.
    pub fn encoded_body_len(&self) -> usize {
        match self {
            Message::Handshake(m) => m.encoded_len(),
            Message::Info(m) => m.encoded_len(),
            Message::Have(m) => m.encoded_len(),
            Message::Unhave(m) => m.encoded_len(),
            Message::Want(m) => m.encoded_len(),
            Message::Unwant(m) => m.encoded_len(),
            Message::Request(m) => m.encoded_len(),
            Message::Cancel(m) => m.encoded_len(),
            Message::Data(m) => m.encoded_len(),
            Message::Extension { id, payload } => {
                crate::varint::encoding_length(*id) + payload.len()
            }
        }
    }

    /// Encodes the body (without length and header).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Message::Handshake(m) => m.encode(out),
            Message::Info(m) => m.encode(out),
            Message::Have(m) => m.encode(out),
            Message::Unhave(m) => m.encode(out),
            Message::Want(m) => m.encode(out),
            Message::Unwant(m) => m.encode(out),
            Message::Request(m) => m.encode(out),
            Message::Cancel(m) => m.encode(out),
            Message::Data(m) => m.encode(out),
            Message::Extension { id, payload } => {
                crate::varint::encode(*id, out);
                out.extend_from_slice(payload);
                Ok(())
            }
        }
        .expect("a Vec grows as needed")
    }

    /// Decodes a body of type `type_id`; `None` for an unknown type. Byte
    /// fields of a Data message share `body`'s memory.
    pub fn decode(type_id: u64, body: Bytes) -> Option<Result<Message, prost::DecodeError>> {
        Some(match type_id {
            1 => Handshake::decode(body).map(Message::Handshake),
            2 => Info::decode(body).map(Message::Info),
            3 => Have::decode(body).map(Message::Have),
            4 => Unhave::decode(body).map(Message::Unhave),
            5 => Want::decode(body).map(Message::Want),
            6 => Unwant::decode(body).map(Message::Unwant),
            7 => Request::decode(body).map(Message::Request),
            8 => Cancel::decode(body).map(Message::Cancel),
            9 => Data::decode(body).map(Message::Data),
            15 => match crate::varint::decode(&body) {
                Some((id, used)) => Ok(Message::Extension {
                    id,
                    payload: body[used..].to_vec(),
                }),
                None => Err(prost::DecodeError::new("truncated extension id")),
            },
            _ => return None,
        })
    }
}
