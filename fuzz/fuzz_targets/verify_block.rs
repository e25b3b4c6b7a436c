//! A block with its proof from a peer, as the input bends a real one (it
//! drops some of the proof's nodes, is XORed over the block, the nodes and
//! the signature, and may make the block longer), checked by a replica
//! that holds nothing or one other block the input picks (and so some of
//! the tree): verification fails, or the block is the true one. Nothing
//! unverified is stored.
#![no_main]

use std::sync::OnceLock;

use hypercore_feed::{Feed, FeedOptions, MemoryStorage, Node, Proof, SparseBits};
use libfuzzer_sys::fuzz_target;

const BLOCKS: u64 = 37;

fn source() -> &'static Feed {
    static SOURCE: OnceLock<Feed> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let mut feed = Feed::open(MemoryStorage::new(), FeedOptions::default()).expect("opens");
        let blocks: Vec<Vec<u8>> = (0..BLOCKS)
            .map(|i| format!("block {i}").into_bytes())
            .collect();
        feed.append_batch(&blocks[..20]).expect("appends");
        feed.append_batch(&blocks[20..]).expect("appends");
        feed
    })
}

fuzz_target!(|data: &[u8]| {
    let [which, first, keep, bends @ ..] = data else {
        return;
    };
    let source = source();
    let index = u64::from(*which) % BLOCKS;
    let options = FeedOptions {
        key: Some(*source.key()),
        ..Default::default()
    };
    let mut replica = Feed::open(MemoryStorage::new(), options).expect("opens");
    // The replica may hold another block first, with the proof it asks for.
    let first = u64::from(*first);
    if first < BLOCKS && first != index {
        let proof = source
            .proof(first, replica.digest(first), false, &mut SparseBits::new())
            .expect("a proof");
        let block = source.get(first).expect("a block");
        replica
            .put(first, Some(&block), &proof)
            .expect("the true block verifies");
    }
    let mut proof = source
        .proof(index, 0, false, &mut SparseBits::new())
        .expect("a proof");
    // Bit i of `keep` clear drops the proof's node i.
    let mut i = 0;
    proof.nodes.retain(|_| {
        i += 1;
        i > 8 || keep & (1 << (i - 1)) != 0
    });
    let block = source.get(index).expect("a block");

    // The real block and proof as bytes, bent by the input.
    let mut bytes = block.clone();
    for node in &proof.nodes {
        bytes.extend_from_slice(&node.index.to_le_bytes());
        bytes.extend_from_slice(&node.hash);
        bytes.extend_from_slice(&node.size.to_le_bytes());
    }
    bytes.extend_from_slice(&proof.signature.unwrap_or([0; 64]));
    for (byte, bend) in bytes.iter_mut().zip(bends) {
        *byte ^= bend;
    }
    let extra = bends.get(bytes.len()..).unwrap_or(&[]);

    let mut at = block.len();
    let mut bent_block = bytes[..at].to_vec();
    bent_block.extend_from_slice(extra);
    let mut nodes = Vec::new();
    for _ in &proof.nodes {
        let field = &bytes[at..at + 48];
        nodes.push(Node {
            index: u64::from_le_bytes(field[..8].try_into().expect("8 bytes")),
            hash: field[8..40].try_into().expect("32 bytes"),
            size: u64::from_le_bytes(field[40..].try_into().expect("8 bytes")),
        });
        at += 48;
    }
    let signature: [u8; 64] = bytes[at..at + 64].try_into().expect("64 bytes");
    let bent = Proof {
        nodes,
        signature: proof.signature.map(|_| signature),
    };

    if let Ok(write) = replica.verify_block(index, Some(&bent_block), &bent) {
        assert_eq!(bent_block, block, "only the true block verifies");
        replica.commit(write).expect("stores");
        assert_eq!(replica.get(index).expect("reads"), block);
    }
});
