//! Data messages against prost's generated code for the same schema: the
//! same bytes out, the same messages in.

use bytes::Bytes;
use hypercore_wire::messages::{Data, DataNode};
use proptest::prelude::*;
use prost::Message as _;

/// `schema.proto`'s `Data.Node` as prost generates it.
#[derive(Clone, PartialEq, prost::Message)]
struct GeneratedNode {
    #[prost(uint64, required, tag = "1")]
    index: u64,
    #[prost(bytes = "bytes", required, tag = "2")]
    hash: Bytes,
    #[prost(uint64, required, tag = "3")]
    size: u64,
}

/// `schema.proto`'s `Data` as prost generates it.
#[derive(Clone, PartialEq, prost::Message)]
struct GeneratedData {
    #[prost(uint64, required, tag = "1")]
    index: u64,
    #[prost(bytes = "bytes", optional, tag = "2")]
    value: Option<Bytes>,
    #[prost(message, repeated, tag = "3")]
    nodes: Vec<GeneratedNode>,
    #[prost(bytes = "bytes", optional, tag = "4")]
    signature: Option<Bytes>,
}

fn node() -> impl Strategy<Value = DataNode> {
    (any::<u64>(), any::<[u8; 32]>(), any::<u64>()).prop_map(|(index, hash, size)| DataNode {
        index,
        hash,
        size,
    })
}

fn generated(data: &Data) -> GeneratedData {
    GeneratedData {
        index: data.index,
        value: data.value.clone(),
        nodes: data
            .nodes
            .iter()
            .map(|n| GeneratedNode {
                index: n.index,
                hash: Bytes::copy_from_slice(&n.hash),
                size: n.size,
            })
            .collect(),
        signature: data.signature.clone(),
    }
}

proptest! {
    #[test]
    fn data_encodes_as_the_generated_code_does_and_back(
        index in any::<u64>(),
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        nodes in proptest::collection::vec(node(), 0..20),
        signature in proptest::option::of(proptest::collection::vec(any::<u8>(), 64)),
    ) {
        let data = Data {
            index,
            value: value.map(Bytes::from),
            nodes,
            signature: signature.map(Bytes::from),
        };
        let ours = data.encode_to_vec();
        prop_assert_eq!(data.encoded_len(), ours.len());
        prop_assert_eq!(&ours, &generated(&data).encode_to_vec());
        prop_assert_eq!(Data::decode(&ours[..]).unwrap(), data);
    }

    #[test]
    fn any_bytes_decode_as_the_generated_code_does(
        nodes in proptest::collection::vec(
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 30..34), any::<u64>()),
            0..6,
        ),
        cut in any::<proptest::sample::Index>(),
        flip in proptest::option::of((any::<proptest::sample::Index>(), any::<u8>())),
    ) {
        // Messages near the valid ones: hashes of 30 to 33 bytes, cut
        // short, a byte changed.
        let message = GeneratedData {
            index: 5,
            value: Some(Bytes::from_static(b"value")),
            nodes: nodes
                .into_iter()
                .map(|(index, hash, size)| GeneratedNode { index, hash: hash.into(), size })
                .collect(),
            signature: None,
        };
        let mut bytes = message.encode_to_vec();
        bytes.truncate(cut.index(bytes.len() + 1));
        if let (Some((at, byte)), false) = (flip, bytes.is_empty()) {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        // Whatever decodes here decodes there to the same message; the one
        // difference allowed is a node hash that is not 32 bytes, which we
        // refuse.
        if let Ok(ours) = Data::decode(&bytes[..]) {
            let theirs = GeneratedData::decode(&bytes[..]).expect("the generated code agrees");
            prop_assert_eq!(generated(&ours), theirs);
        } else if let Ok(theirs) = GeneratedData::decode(&bytes[..]) {
            prop_assert!(theirs.nodes.iter().any(|n| n.hash.len() != 32), "{:?}", theirs);
        }
    }
}

#[test]
fn a_node_hash_of_another_length_is_refused() {
    for len in [0, 31, 33] {
        let bytes = GeneratedData {
            index: 1,
            value: Some(Bytes::from_static(b"x")),
            nodes: vec![GeneratedNode {
                index: 2,
                hash: vec![7; len].into(),
                size: 1,
            }],
            signature: None,
        }
        .encode_to_vec();
        let err = Data::decode(&bytes[..]).unwrap_err();
        assert!(
            err.to_string().contains(&format!("{len} bytes, not 32")),
            "{err}"
        );
    }
}

#[test]
fn zero_fields_encode_as_the_generated_code_does() {
    let data = Data {
        index: 0,
        value: Some(Bytes::new()),
        nodes: vec![DataNode::default(), DataNode::default()],
        signature: None,
    };
    assert_eq!(data.encode_to_vec(), generated(&data).encode_to_vec());
}
