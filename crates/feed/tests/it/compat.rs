//! Hypercore 6's own determinism tests (`test/compat.js`): the same appends
//! give the same tree, and the same key pair the same signatures.

use hypercore_feed::{Feed, FeedOptions, MemoryStorage, SparseBits};

const EXPECTED_TREE: &str = concat!(
    "0502570200002807424c414b4532620000000000000000000000000000000000ab27d45f509274",
    "ce0d08f4f09ba2d0e0d8df61a0c2a78932e81b5ef26ef398df0000000000000001064321a8413b",
    "e8c604599689e2c7a59367b031b598bceeeb16556a8f3252e0de000000000000000294c1705400",
    "5942a002c7c39fbb9c6183518691fb401436f1a2f329b380230af800000000000000018dfe81d5",
    "76464773f848b9aba1c886fde57a49c283ab57f4a297d976d986651e00000000000000041d2fad",
    "c9ce604c7e592949edc964e45aaa10990d7ee53328439ef9b2cf8aa6ff00000000000000013a8d",
    "cc74e80b8314e8e13e1e462358cf58cf5fc4413a9b18a891ffacc551c395000000000000000228",
    "28647a654a712738e35f49d1c05c676010be0b33882affc1d1e7e9fee59d400000000000000001",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "00baac70b6d38243efa028ee977c462e4bec73d21d09ceb8cc16f4d4b1ee228a45000000000000",
    "0001d1b021632c7fab84544053379112ca7b165bb21283821816c5b6c89ff7f78e2d0000000000",
    "000002d2ab421cece792033058787a5ba72f3a701fddc25540d5924e9819d7c12e02f200000000",
    "00000001",
);

const KEY: &str = "9718a1ff1c4ca79feac551c0c7212a65e4091278ec886b88be01ee4039682238";
const SECRET_KEY: &str = concat!(
    "53729c0311846cca9cc0eded07aaf9e6689705b6a0b1bb8c3a2a839b72fda383",
    "9718a1ff1c4ca79feac551c0c7212a65e4091278ec886b88be01ee4039682238",
);
const LAST_SIGNATURE: &str = concat!(
    "11057675ed57d445ce7ed4613881be37ebc56bb40556b822e431bb4dc3517421",
    "f9a5e3ed124eb5c4db8367386d9ce12b2408613b9fec2837022772a635ffd807"
);

fn signed_options() -> FeedOptions {
    FeedOptions {
        key: Some(hex::decode(KEY).unwrap().try_into().unwrap()),
        secret_key: Some(hex::decode(SECRET_KEY).unwrap().try_into().unwrap()),
        ..Default::default()
    }
}

fn letters(s: &str) -> Vec<Vec<u8>> {
    s.bytes().map(|b| vec![b]).collect()
}

#[test]
fn deterministic_data_and_tree() {
    let storage = MemoryStorage::new();
    let mut feed = Feed::open(storage.clone(), FeedOptions::default()).unwrap();
    feed.append_batch(&letters("abcdef")).unwrap();
    assert_eq!(storage.contents("data"), b"abcdef");
    assert_eq!(hex::encode(storage.contents("tree")), EXPECTED_TREE);
}

#[test]
fn deterministic_data_and_tree_after_replication() {
    let mut source = Feed::open(MemoryStorage::new(), FeedOptions::default()).unwrap();
    source.append_batch(&letters("abcdef")).unwrap();
    let storage = MemoryStorage::new();
    let options = FeedOptions {
        key: Some(*source.key()),
        ..Default::default()
    };
    let mut clone = Feed::open(storage.clone(), options).unwrap();
    let mut sent = SparseBits::new();
    for i in 0..6 {
        let proof = source.proof(i, clone.digest(i), false, &mut sent).unwrap();
        let block = source.get(i).unwrap();
        clone.put(i, Some(&block), &proof).unwrap();
    }
    assert_eq!(storage.contents("data"), b"abcdef");
    assert_eq!(hex::encode(storage.contents("tree")), EXPECTED_TREE);
}

#[test]
fn deterministic_signatures() {
    let storage = MemoryStorage::new();
    let mut feed = Feed::open(storage.clone(), signed_options()).unwrap();
    feed.append_batch(&letters("abc")).unwrap();
    assert_eq!(storage.contents("data"), b"abc");
    let signatures = storage.contents("signatures");
    assert_eq!(
        hex::encode(&signatures[signatures.len() - 64..]),
        LAST_SIGNATURE
    );
    // A batch is signed once: only the last slot holds a signature.
    assert_eq!(signatures.len(), 32 + 3 * 64);
    assert!(signatures[32..32 + 128].iter().all(|&b| b == 0));
}

#[test]
fn deterministic_signatures_after_replication() {
    let mut source = Feed::open(MemoryStorage::new(), signed_options()).unwrap();
    source.append_batch(&letters("abc")).unwrap();
    let storage = MemoryStorage::new();
    let options = FeedOptions {
        key: Some(*source.key()),
        ..Default::default()
    };
    let mut clone = Feed::open(storage.clone(), options).unwrap();
    let mut sent = SparseBits::new();
    for i in 0..3 {
        let proof = source.proof(i, clone.digest(i), false, &mut sent).unwrap();
        let block = source.get(i).unwrap();
        clone.put(i, Some(&block), &proof).unwrap();
    }
    let signatures = storage.contents("signatures");
    assert_eq!(
        hex::encode(&signatures[signatures.len() - 64..]),
        LAST_SIGNATURE
    );
    assert_eq!(clone.len(), 3);
    assert!(!clone.is_writable());
}

#[test]
fn reopen_keeps_everything() {
    let storage = MemoryStorage::new();
    let mut feed = Feed::open(storage.clone(), FeedOptions::default()).unwrap();
    for i in 0..100u32 {
        feed.append(&i.to_be_bytes()).unwrap();
    }
    let key = *feed.key();
    drop(feed);
    let mut feed = Feed::open(storage, FeedOptions::default()).unwrap();
    assert_eq!(*feed.key(), key);
    assert_eq!(feed.len(), 100);
    assert_eq!(feed.byte_len(), 400);
    assert!(feed.is_writable());
    feed.append(b"more").unwrap();
    assert_eq!(feed.get(37).unwrap(), 37u32.to_be_bytes());
    assert_eq!(feed.get(100).unwrap(), b"more");
    let (at, sig) = feed.signature(100).unwrap();
    assert_eq!(at, 100);
    assert!(feed.verify(100, &sig).unwrap());
    assert!(!feed.verify(99, &sig).unwrap());
}
