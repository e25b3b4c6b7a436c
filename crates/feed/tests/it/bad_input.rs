//! Damaged files and forged proofs get clear errors, never a panic, and
//! nothing unverified is stored.

use hypercore_feed::{
    Error, Feed, FeedOptions, FileStorage, MemoryStorage, Node, Proof, SparseBits,
};
use proptest::prelude::*;

fn feed_with_blocks(n: u32) -> (MemoryStorage, Feed) {
    let storage = MemoryStorage::new();
    let mut feed = Feed::open(storage.clone(), FeedOptions::default()).unwrap();
    for i in 0..n {
        feed.append(format!("block number {i}").as_bytes()).unwrap();
    }
    (storage, feed)
}

fn reopen(storage: &MemoryStorage) -> Result<Feed, Error> {
    Feed::open(storage.clone(), FeedOptions::default())
}

#[test]
fn a_wrong_header_magic_names_the_file() {
    let (storage, feed) = feed_with_blocks(3);
    drop(feed);
    let mut tree = storage.contents("tree");
    tree[1] = 0xff;
    storage.set_contents("tree", tree);
    let err = reopen(&storage).unwrap_err().to_string();
    assert!(err.contains("tree") && err.contains("magic"), "{err}");
}

#[test]
fn a_wrong_algorithm_names_the_file() {
    let (storage, feed) = feed_with_blocks(3);
    drop(feed);
    let mut sigs = storage.contents("signatures");
    sigs[8..15].copy_from_slice(b"Ed448!!");
    storage.set_contents("signatures", sigs);
    let err = reopen(&storage).unwrap_err().to_string();
    assert!(
        err.contains("signatures") && err.contains("algorithm"),
        "{err}"
    );
}

#[test]
fn a_truncated_tree_names_the_file() {
    let (storage, feed) = feed_with_blocks(5);
    drop(feed);
    let tree = storage.contents("tree");
    storage.set_contents("tree", tree[..tree.len() - 50].to_vec());
    let err = reopen(&storage).unwrap_err().to_string();
    assert!(err.contains("tree") && err.contains("truncated"), "{err}");
}

#[test]
fn a_truncated_signature_is_signed_again_with_the_same_bytes() {
    let (storage, feed) = feed_with_blocks(5);
    drop(feed);
    let sigs = storage.contents("signatures");
    storage.set_contents("signatures", sigs[..sigs.len() - 10].to_vec());
    let feed = reopen(&storage).unwrap();
    assert_eq!(
        feed.len(),
        5,
        "the blocks under the lost signature are kept"
    );
    assert_eq!(feed.recovery().unwrap().resigned, Some(5));
    assert_eq!(
        storage.contents("signatures"),
        sigs,
        "ed25519 is deterministic"
    );
}

#[test]
fn a_torn_header_is_written_again_and_the_blocks_found_again() {
    let (storage, feed) = feed_with_blocks(3);
    drop(feed);
    let bitfield = storage.contents("bitfield");
    storage.set_contents("bitfield", vec![5, 2, 87]);
    let feed = reopen(&storage).unwrap();
    assert_eq!(feed.len(), 3);
    assert_eq!(feed.get(2).unwrap(), b"block number 2");
    assert!(feed.recovery().unwrap().rebuilt);
    drop(feed);
    assert_eq!(
        storage.contents("bitfield"),
        bitfield,
        "the same bytes as before"
    );
}

#[test]
fn a_short_key_or_a_wrong_header_is_an_error() {
    let (storage, feed) = feed_with_blocks(1);
    drop(feed);
    storage.set_contents("bitfield", vec![5, 2, 88]);
    let err = reopen(&storage).unwrap_err().to_string();
    assert!(
        err.contains("bitfield") && err.contains("truncated"),
        "{err}"
    );

    let (storage, feed) = feed_with_blocks(1);
    drop(feed);
    storage.set_contents("key", vec![1; 7]);
    let err = reopen(&storage).unwrap_err().to_string();
    assert!(err.contains("key") && err.contains("7 bytes"), "{err}");
}

#[test]
fn an_empty_key_or_secret_key_is_an_error_and_no_new_key_is_made() {
    for file in ["key", "secret_key"] {
        let (storage, feed) = feed_with_blocks(2);
        drop(feed);
        let other = if file == "key" { "secret_key" } else { "key" };
        let kept = storage.contents(other);
        storage.set_contents(file, Vec::new());
        let err = reopen(&storage).unwrap_err().to_string();
        assert!(err.contains(file) && err.contains("0 bytes"), "{err}");
        assert_eq!(storage.contents(other), kept, "{other} untouched");
        assert!(storage.contents(file).is_empty(), "{file} left as it was");
    }
}

#[test]
fn another_feeds_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    Feed::open(FileStorage::new(tmp.path()), FeedOptions::default()).unwrap();
    let options = FeedOptions {
        key: Some([7; 32]),
        ..Default::default()
    };
    let err = Feed::open(FileStorage::new(tmp.path()), options).unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("another hypercore"));
}

#[test]
fn a_flipped_byte_in_data_is_caught_by_get_and_audit() {
    let (storage, mut feed) = feed_with_blocks(4);
    let mut data = storage.contents("data");
    data[20] ^= 0x20; // inside block 1
    storage.set_contents("data", data);
    let mut feed2 = reopen(&storage).unwrap();
    drop(feed);
    let err = feed2.get(1).unwrap_err();
    assert!(matches!(err, Error::BadBlock { index: 1, .. }), "{err}");
    assert!(err.to_string().contains("data"));
    assert!(feed2.get(0).is_ok() && feed2.get(2).is_ok());

    let report = feed2.audit().unwrap();
    assert_eq!((report.valid, report.invalid), (3, 1));
    assert!(
        !feed2.has(1),
        "a bad block is marked missing so it is fetched again"
    );
    let report = feed2.audit().unwrap();
    assert_eq!((report.valid, report.invalid), (3, 0));
    feed = feed2;
    assert!(matches!(feed.get(1), Err(Error::NotAvailable(1))));
}

fn clone_of(feed: &Feed) -> (MemoryStorage, Feed) {
    let storage = MemoryStorage::new();
    let options = FeedOptions {
        key: Some(*feed.key()),
        ..Default::default()
    };
    (storage.clone(), Feed::open(storage, options).unwrap())
}

#[test]
fn a_proof_with_a_wrong_hash_is_rejected_and_nothing_stored() {
    let (_, feed) = feed_with_blocks(8);
    let (storage, mut clone) = clone_of(&feed);
    let before: Vec<Vec<u8>> = ["tree", "data", "bitfield", "signatures"]
        .iter()
        .map(|f| storage.contents(f))
        .collect();
    let mut proof = feed.proof(2, 0, false, &mut SparseBits::new()).unwrap();
    proof.nodes[0].hash[5] ^= 1;
    let block = feed.get(2).unwrap();
    let err = clone.put(2, Some(&block), &proof).unwrap_err();
    assert!(matches!(err, Error::InvalidProof { index: 2, .. }), "{err}");
    assert_eq!(clone.len(), 0);
    assert!(!clone.has(2));
    let after: Vec<Vec<u8>> = ["tree", "data", "bitfield", "signatures"]
        .iter()
        .map(|f| storage.contents(f))
        .collect();
    assert_eq!(before, after, "nothing written");

    // The right proof still goes through afterwards.
    let proof = feed.proof(2, 0, false, &mut SparseBits::new()).unwrap();
    clone.put(2, Some(&block), &proof).unwrap();
    assert_eq!(clone.get(2).unwrap(), block);
}

#[test]
fn a_proof_with_a_bad_signature_is_rejected() {
    let (_, feed) = feed_with_blocks(8);
    let (_, mut clone) = clone_of(&feed);
    let mut proof = feed.proof(5, 0, false, &mut SparseBits::new()).unwrap();
    proof.signature.as_mut().unwrap()[10] ^= 1;
    let block = feed.get(5).unwrap();
    let err = clone.put(5, Some(&block), &proof).unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    assert_eq!(clone.len(), 0);

    proof.signature = None;
    let err = clone.put(5, Some(&block), &proof).unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");

    // Wrong data with a right proof.
    let proof = feed.proof(5, 0, false, &mut SparseBits::new()).unwrap();
    assert!(clone.put(5, Some(b"block number 6"), &proof).is_err());
    assert!(!clone.has(5));
}

#[test]
fn a_proof_signed_by_another_key_is_rejected() {
    let (_, feed) = feed_with_blocks(4);
    let (_, other) = feed_with_blocks(4);
    let (_, mut clone) = clone_of(&feed);
    let proof = other.proof(1, 0, false, &mut SparseBits::new()).unwrap();
    let block = other.get(1).unwrap();
    assert!(clone.put(1, Some(&block), &proof).is_err());
    let proof = feed.proof(1, 0, false, &mut SparseBits::new()).unwrap();
    assert!(clone.put(1, Some(&feed.get(1).unwrap()), &proof).is_ok());
}

#[test]
fn appending_to_a_read_only_feed_says_why() {
    let (_, feed) = feed_with_blocks(1);
    let (_, mut clone) = clone_of(&feed);
    let err = clone.append(b"x").unwrap_err();
    assert!(matches!(err, Error::NotWritable));
    assert!(err.to_string().contains("secret key"));
}

fn arb_node() -> impl Strategy<Value = Node> {
    (0u64..200, any::<[u8; 32]>(), 0u64..1000).prop_map(|(index, hash, size)| Node {
        index,
        hash,
        size,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Garbage proofs never panic and never store anything.
    #[test]
    fn garbage_proofs_are_rejected(
        index in 0u64..40,
        nodes in proptest::collection::vec(arb_node(), 0..8),
        signature in proptest::option::of(any::<[u8; 32]>()),
        data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..50)),
    ) {
        let (_, feed) = feed_with_blocks(3);
        let (_, mut clone) = clone_of(&feed);
        let proof = Proof { nodes, signature: signature.map(|s| { let mut sig = [0u8; 64]; sig[..32].copy_from_slice(&s); sig }) };
        prop_assert!(clone.put(index, data.as_deref(), &proof).is_err());
        prop_assert_eq!(clone.len(), 0);
        prop_assert!(!clone.has(index));
    }

    /// Garbage in every file either opens or errors; it never panics.
    #[test]
    fn garbage_files_never_panic(
        file in prop::sample::select(vec!["tree", "bitfield", "signatures", "key", "secret_key", "data"]),
        bytes in proptest::collection::vec(any::<u8>(), 0..5000),
        keep_header in any::<bool>(),
    ) {
        let (storage, feed) = feed_with_blocks(5);
        drop(feed);
        let mut contents = bytes;
        if keep_header && file != "data" && file != "key" && file != "secret_key" {
            let original = storage.contents(file);
            let n = original.len().min(32);
            if contents.len() < n { contents.resize(n, 0); }
            contents[..n].copy_from_slice(&original[..n]);
        }
        storage.set_contents(file, contents);
        if let Ok(mut feed) = reopen(&storage) {
            for i in 0..feed.len().min(10) {
                let _ = feed.get(i);
            }
            let _ = feed.audit();
            let _ = feed.proof(0, 0, false, &mut SparseBits::new());
        }
    }
}
