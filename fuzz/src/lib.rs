//! What several fuzz targets share.

use bytes::Bytes;
use hypercore_wire::messages::Feed;
use hypercore_wire::{varint, Protocol, ProtocolOptions};
use prost::Message;

/// The first frame a remote opening `key` writes, and the nonce it carries.
pub fn first_frame(key: &[u8; 32]) -> (Vec<u8>, [u8; 24]) {
    let mut sender = Protocol::new(ProtocolOptions {
        id: [2; 32],
        ..Default::default()
    });
    sender.open(key).expect("opens");
    let out = sender.take_outgoing();
    let (len, used) = varint::decode(&out).expect("a frame");
    let frame = &out[used..used + len as usize];
    let (_header, at) = varint::decode(frame).expect("a header");
    let feed = Feed::decode(Bytes::copy_from_slice(&frame[at..])).expect("a Feed message");
    let nonce = feed.nonce.expect("a nonce").try_into().expect("24 bytes");
    (out[..used + len as usize].to_vec(), nonce)
}
