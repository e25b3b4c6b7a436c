//! A hypercore 6 feed, byte-compatible with the JavaScript reference.
//!
//! A feed is a signed append-only log. Every block is a leaf of a merkle tree
//! (BLAKE2b-256, [`flat`] indexing); after each append the roots of the tree
//! are hashed and signed with the feed's ed25519 secret key, so anyone who
//! knows the public key can check any block received from anyone, given a
//! [`Proof`]. On disk a feed is six files in the SLEEP layout hypercore 6
//! uses: `key`, `secret_key`, `tree`, `data`, `bitfield` and `signatures`.
//!
//! ```
//! use hypercore_feed::{Feed, FeedOptions, MemoryStorage, SparseBits};
//!
//! // A writer appends...
//! let mut writer = Feed::open(MemoryStorage::new(), FeedOptions::default()).unwrap();
//! writer.append_batch(&[b"hello".as_slice(), b"world"]).unwrap();
//!
//! // ...and a reader that knows only the public key checks what it gets.
//! let options = FeedOptions { key: Some(*writer.key()), ..Default::default() };
//! let mut reader = Feed::open(MemoryStorage::new(), options).unwrap();
//! let proof = writer.proof(1, reader.digest(1), false, &mut SparseBits::new()).unwrap();
//! reader.put(1, Some(b"world"), &proof).unwrap();
//! assert_eq!(reader.get(1).unwrap(), b"world");
//! assert!(reader.put(1, Some(b"WORLD"), &proof).is_err());
//! ```

pub mod bitfield;
mod blocks;
pub mod cache;
pub mod crypto;
pub mod fault;
mod feed;
mod file;
pub mod flat;
mod recover;
pub mod rle;
pub mod sleep;
pub mod storage;
pub mod tree_index;
pub mod varint;

pub use bitfield::{Bits, SparseBits};
pub use blocks::BlockReader;
pub use crypto::KeyPair;
pub use feed::{
    AuditReport, Durability, Error, Feed, FeedOptions, Node, Proof, Result, VerifiedWrite,
};
pub use recover::Recovery;
pub use storage::{FileStorage, MemoryStorage, RandomAccess, Storage};
