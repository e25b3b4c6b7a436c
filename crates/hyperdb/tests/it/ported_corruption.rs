//! hyperdb 3.5.0's `test/corruption.js`, ported: an entry whose inflate
//! pointer names an older feed list than its clock needs is an error when
//! the database opens.
//!
//! JS overwrites the entry's bytes in place and its feed does not check
//! them, so it fails on the entry's content ('Missing feed mappings'). Our
//! feed checks every block against its hash, so the in-place corruption is
//! caught one step earlier; the second test signs the damaged entry properly
//! to reach the same content check JS makes.

use crate::ported_support::*;
use hypercore_feed::{Feed, FeedOptions, MemoryStorage};
use hyperdb::{Db, DbStorage, Error, OpenOptions};

/// `create.three` and `a.put('foo', 'bar')`: the owner's source feed then
/// holds the header, two authorizations (inflated) and the put (seq 3).
fn three_writers_with_a_put() -> (DbStorage, Db) {
    let storage = DbStorage::memory();
    let first = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
    let mut dbs = many_from(first, 3);
    dbs[0].put("foo", b"bar").unwrap();
    assert_eq!(dbs[0].writers().len(), 3, "uncorrupted length");
    let a = dbs.remove(0);
    (storage, a)
}

/// Entry 3 of the owner's source with its inflate pointer moved back to
/// entry 1 (which lists only two feeds); the same size as the original.
fn corrupt_entry_3(a: &Db) -> Vec<u8> {
    let original = a.feed(0).unwrap().get(3).unwrap();
    let mut entry = a.raw_entry(0, 3).unwrap().unwrap();
    assert_eq!(entry.inflate, Some(2));
    assert_eq!(entry.clock.len(), 3);
    entry.inflate = Some(1); // Introduce corruption
    entry.deleted = None; // To keep the same size
    let corrupt = entry.to_bytes();
    assert_eq!(corrupt.len(), original.len());
    corrupt
}

// hyperdb test/corruption.js: 'feed with corrupted inflate generates error'
// (bytes overwritten in place, as in JS: our feed's hash check refuses them)
#[test]
fn feed_with_corrupted_inflate_generates_error() {
    let (storage, a) = three_writers_with_a_put();
    let corrupt = corrupt_entry_3(&a);
    let offset: usize = (0..3)
        .map(|i| a.feed(0).unwrap().get(i).unwrap().len())
        .sum();
    drop(a);

    let source = storage.memory_feed("source").unwrap();
    let mut data = source.contents("data");
    data[offset..offset + corrupt.len()].copy_from_slice(&corrupt);
    source.set_contents("data", data);

    let err = Db::open_storage(storage, OpenOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Feed(hypercore_feed::Error::BadBlock { index: 3, .. })
        ),
        "expected error, got {err:?}"
    );
}

// hyperdb test/corruption.js: 'feed with corrupted inflate generates error'
// (the damaged entry signed by the owner, so only its content is wrong: the
// error JS calls 'Missing feed mappings')
#[test]
fn feed_with_corrupted_inflate_generates_error_when_signed() {
    let (storage, a) = three_writers_with_a_put();
    let corrupt = corrupt_entry_3(&a);
    let key = *a.key();
    let secret_key = a
        .with_feed_mut(0, |f| f.secret_key())
        .unwrap()
        .expect("the owner's key");
    let mut blocks: Vec<Vec<u8>> = (0..3).map(|i| a.feed(0).unwrap().get(i).unwrap()).collect();
    blocks.push(corrupt);
    drop(a);

    // The same feeds, but the source rewritten with the damaged entry.
    let source = MemoryStorage::new();
    let mut feed = Feed::open(
        source.clone(),
        FeedOptions {
            key: Some(key),
            secret_key: Some(secret_key),
            ..Default::default()
        },
    )
    .unwrap();
    feed.append_batch(&blocks).unwrap();
    drop(feed);
    let corrupted = storage.deep_copy();
    corrupted.set_memory_feed("source", source);

    let err = Db::open_storage(corrupted, OpenOptions::default()).unwrap_err();
    match err {
        Error::BadEntry { seq, ref feed, .. } => {
            assert_eq!(seq, 3, "{err}");
            assert_eq!(feed, &hex::encode(key), "{err}");
        }
        other => panic!("expected a damaged-entry error, got {other:?}"),
    }
}
