//! Damaged entries get an error or are skipped: never a panic or a hang.

use crate::support::memory_db;
use hyperdb::messages::{Header, InflatedEntry};
use hyperdb::trie::{Ptr, Trie};
use hyperdb::{Db, DbStorage, Error, OpenOptions};
use proptest::prelude::*;
use prost::Message;

fn memory() -> (DbStorage, Db) {
    let storage = DbStorage::memory();
    let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
    (storage, db)
}

fn entry(key: &str, _seq: u64, inflate: u64, trie: Vec<u8>, clock: Vec<u64>) -> InflatedEntry {
    InflatedEntry {
        key: key.into(),
        value: Some(b"v".to_vec()),
        deleted: None,
        trie: trie.into(),
        clock,
        inflate: Some(inflate),
        feeds: vec![],
        content_feed: None,
        policy: None,
    }
}

fn append_raw(db: &Db, bytes: &[u8]) {
    db.with_feed_mut(0, |f| f.append(bytes)).unwrap().unwrap();
}

#[test]
fn an_entry_that_does_not_decode_is_an_error_that_names_it() {
    let (_, db) = memory();
    db.put("a", b"1").unwrap();
    append_raw(&db, &[0xff, 0xff, 0xff]);
    let err = db.get("a").unwrap_err();
    assert!(matches!(err, Error::BadEntry { seq: 2, .. }), "{err}");
    assert!(err.to_string().contains("entry 2"), "{err}");
}

#[test]
fn a_trie_pointing_at_a_missing_seq_is_skipped() {
    let (_, db) = memory();
    db.put("a", b"1").unwrap();
    // Entry 2 for key "b" with a trie pointer to (feed 0, seq 99) where
    // "a" would be.
    let path_a = hyperdb::hash::path("a", true);
    let path_b = hyperdb::hash::path("b", true);
    let i = path_a
        .iter()
        .zip(&path_b)
        .position(|(x, y)| x != y)
        .unwrap();
    let mut trie = Trie::new();
    trie.push(i, path_a[i], Ptr { feed: 0, seq: 99 });
    append_raw(
        &db,
        &entry("b", 2, 1, trie.encode(&[Some(0)]), vec![3]).encode_to_vec(),
    );
    assert!(
        db.get("a").unwrap().is_empty(),
        "the dangling pointer leads nowhere"
    );
    assert_eq!(db.get("b").unwrap()[0].value.as_deref(), Some(&b"v"[..]));
    // Writing on top of it still works.
    db.put("c", b"3").unwrap();
    assert_eq!(db.get("c").unwrap().len(), 1);
}

#[test]
fn a_trie_pointing_at_an_unknown_feed_is_an_error() {
    let (_, db) = memory();
    db.put("a", b"1").unwrap();
    let mut trie = Trie::new();
    trie.push(0, 1, Ptr { feed: 7, seq: 1 });
    // Feed 7 in the writer's numbering: it listed one feed.
    append_raw(
        &db,
        &entry("b", 2, 1, trie.encode(&[]), vec![3]).encode_to_vec(),
    );
    let err = db.get("b").unwrap_err();
    assert!(err.to_string().contains("feed 7"), "{err}");
}

#[test]
fn inflate_pointers_that_loop_or_point_forward_do_not_hang() {
    let (_, db) = memory();
    db.put("a", b"1").unwrap();
    // Entry 2 says its inflated entry is 3, which says 2.
    append_raw(&db, &entry("b", 2, 3, vec![], vec![3]).encode_to_vec());
    append_raw(&db, &entry("c", 3, 2, vec![], vec![4]).encode_to_vec());
    // Entry 3's inflated entry is read once, not followed further.
    let values = db.get("c").unwrap();
    assert_eq!(values.len(), 1);
    let err = db.node(0, 2).unwrap_err();
    assert!(err.to_string().contains("points forward"), "{err}");
}

#[test]
fn a_header_with_another_protocol_is_refused() {
    let storage = DbStorage::memory();
    {
        let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
        db.put("a", b"1").unwrap();
    }
    // Rewrite the source feed with a foreign header.
    let source = storage.memory_feed("source").unwrap();
    let secret: [u8; 64] = source.contents("secret_key").try_into().unwrap();
    let other = DbStorage::memory();
    {
        let mem = hypercore_feed::MemoryStorage::new();
        let mut feed = hypercore_feed::Feed::open(
            mem.clone(),
            hypercore_feed::FeedOptions {
                secret_key: Some(secret),
                ..Default::default()
            },
        )
        .unwrap();
        feed.append(
            &Header {
                protocol: "hyperdrive".into(),
            }
            .encode_to_vec(),
        )
        .unwrap();
        feed.append(b"x").unwrap();
        other.set_memory_feed("source", mem);
    }
    let err = Db::open_storage(other, OpenOptions::default()).unwrap_err();
    assert!(matches!(err, Error::BadHeader { .. }), "{err}");
    assert!(err.to_string().contains("hyperdrive"), "{err}");
}

#[test]
fn opening_a_missing_database_without_create_says_how_to_make_one() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Db::open_with(
        tmp.path(),
        OpenOptions {
            create: false,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("hyperdb init"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes as a version: parsed or refused, never a panic; and what
    /// is encoded parses back.
    #[test]
    fn versions_parse_or_are_refused(
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
        heads in proptest::collection::vec((any::<[u8; 32]>(), any::<u64>()), 0..5),
    ) {
        let _ = hyperdb::parse_version(&garbage);
        let bytes = hyperdb::version_bytes(&heads);
        prop_assert_eq!(hyperdb::parse_version(&bytes).unwrap(), heads);
    }

    /// Any bytes appended as an entry: reads answer or error, never panic.
    #[test]
    fn garbage_entries_never_panic(garbage in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (_, db) = memory();
        db.put("a", b"1").unwrap();
        db.put("b/c", b"2").unwrap();
        append_raw(&db, &garbage);
        for key in ["a", "b/c", "zzz", ""] {
            let _ = db.get(key);
        }
        let _ = db.heads();
        let _ = db.put("d", b"4");
    }

    /// Structurally valid entries with random tries and clocks.
    #[test]
    fn random_tries_and_clocks_never_panic(
        trie in proptest::collection::vec(any::<u8>(), 0..60),
        clock in proptest::collection::vec(0u64..10, 0..4),
        inflate in 0u64..5,
    ) {
        let (_, db) = memory();
        db.put("a", b"1").unwrap();
        append_raw(&db, &entry("x", 2, inflate, trie, clock).encode_to_vec());
        for key in ["a", "x", "y/z"] {
            let _ = db.get(key);
        }
        let _ = db.put("d", b"4");
    }
}

#[test]
fn a_replica_without_its_own_writer_gets_one_when_opened_for_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let owner = Db::open(tmp.path().join("owner")).unwrap();
    let dir = tmp.path().join("replica");
    let options = OpenOptions {
        key: Some(*owner.key()),
        ..Default::default()
    };
    drop(Db::open_with(&dir, options).unwrap());
    std::fs::remove_dir_all(dir.join("local")).unwrap();
    let err = hyperdb::ReadOnlyDb::open(&dir).unwrap_err();
    assert!(err.to_string().contains("no local writer"), "{err}");
    let db = Db::open(&dir).unwrap();
    assert_eq!(db.key(), owner.key());
    assert!(!db.is_owner());
    db.put("a", b"1").unwrap();
    assert_eq!(db.get("a").unwrap().len(), 1);
}

#[test]
fn a_peer_naming_blocks_far_out_makes_no_huge_allocation() {
    use hypercore_wire::messages::{Have, Unhave};
    use hypercore_wire::{Protocol, ProtocolOptions};
    use hyperdb::replicate::Session;

    let owner = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
    owner.put("a", b"1").unwrap();
    let key = *owner.key();
    let options = OpenOptions {
        key: Some(key),
        ..Default::default()
    };
    let replica = Db::open_storage(DbStorage::memory(), options).unwrap();
    let mut session = Session::new(&replica, Default::default()).unwrap();
    // A remote that opens the database's feed and then says it has blocks
    // near 2^50 and 2^64 (one bit each would take 2^47 bytes before them).
    let mut remote = Protocol::new(ProtocolOptions::default());
    let dk = remote.open(&key).unwrap();
    let far: [hypercore_wire::Message; 4] = [
        hypercore_wire::Message::Have(Have {
            start: 1 << 50,
            length: Some(3),
            bitfield: None,
            ..Default::default()
        }),
        hypercore_wire::Message::Have(Have {
            start: u64::MAX - 2,
            length: Some(100),
            bitfield: None,
            ..Default::default()
        }),
        hypercore_wire::Message::Have(Have {
            start: 1 << 40,
            length: Some(64),
            bitfield: Some(hypercore_feed::rle::encode(&[0xff; 8])),
            ..Default::default()
        }),
        hypercore_wire::Message::Unhave(Unhave {
            start: u64::MAX - 1,
            length: Some(10),
        }),
    ];
    for message in &far {
        remote.send(&dk, message);
    }
    // Whatever the session makes of it, it neither aborts nor panics.
    let _ = session.receive(&replica, &remote.take_outgoing());
    let _ = session.tick(&replica);
}

/// A writer whose latest entry does not decode (it signed bytes that are
/// no entry) cannot stop a replica from answering: its entries up to the
/// damaged one count, the rest of the database reads and writes, and the
/// writer itself is told which entry is damaged.
#[test]
fn a_writers_entry_that_does_not_decode_holds_back_only_that_writer() {
    let owner = memory_db(None);
    let b = memory_db(Some(*owner.key()));
    owner.authorize(b.local_key()).unwrap();
    owner.put("a", b"1").unwrap();
    hyperdb::local_sync::sync(&owner, &b).unwrap();
    b.put("b", b"2").unwrap();
    let local = b.writer_index(b.local_key()).unwrap();
    b.with_feed_mut(local, |f| f.append(&[0xff, 0xff, 0xff]))
        .unwrap()
        .unwrap();
    assert!(matches!(b.get("b").unwrap_err(), Error::BadEntry { .. }));
    hyperdb::local_sync::copy_feed(&b, &owner, b.local_key(), None).unwrap();
    assert_eq!(owner.feed(1).unwrap().len(), 3, "the damaged entry arrived");

    let value = |key: &str| -> Vec<Vec<u8>> {
        owner
            .get(key)
            .unwrap()
            .iter()
            .filter_map(|n| n.value.clone())
            .collect()
    };
    assert_eq!(value("a"), [b"1".to_vec()]);
    assert_eq!(
        value("b"),
        [b"2".to_vec()],
        "b's entries before the damage count"
    );
    owner.put("c", b"3").unwrap();
    assert_eq!(value("c"), [b"3".to_vec()]);
    assert_eq!(owner.list("").unwrap().len(), 3);
    // And a replica that learns of the writer from the owner replicates it.
    let c = memory_db(Some(*owner.key()));
    hyperdb::local_sync::sync(&owner, &c).unwrap();
    assert_eq!(c.get("b").unwrap().len(), 1);
    assert_eq!(c.list("").unwrap().len(), 3);
}

/// Likewise an authorized writer whose feed starts with another protocol's
/// header: its blocks replicate, its entries do not count, and the rest
/// of the database answers.
#[test]
fn a_writer_with_a_foreign_header_counts_nothing_and_stops_nothing() {
    let owner = memory_db(None);
    owner.put("a", b"1").unwrap();
    let mut foreign = hypercore_feed::Feed::open(
        hypercore_feed::MemoryStorage::new(),
        hypercore_feed::FeedOptions::default(),
    )
    .unwrap();
    foreign
        .append(
            &Header {
                protocol: "hyperdrive".into(),
            }
            .encode_to_vec(),
        )
        .unwrap();
    owner.authorize(foreign.key()).unwrap();
    // An entry that would count (a value concurrent with the owner's)
    // under a hyperdb header.
    let mut concurrent = entry("a", 1, 1, vec![], vec![owner.feed(0).unwrap().len(), 1]);
    concurrent.feeds = [owner.key(), foreign.key()]
        .map(|k| hyperdb::messages::FeedKey { key: k.to_vec() })
        .to_vec();
    foreign.append(&concurrent.encode_to_vec()).unwrap();
    let index = owner.writer_index(foreign.key()).unwrap();
    let mut sent = hypercore_feed::SparseBits::new();
    for i in 0..foreign.len() {
        let digest = owner.feed(index).unwrap().digest(i);
        let block = foreign.get(i).unwrap();
        let proof = foreign.proof(i, digest, false, &mut sent).unwrap();
        owner
            .with_feed_mut(index, |f| f.put(i, Some(&block), &proof))
            .unwrap()
            .unwrap();
    }
    assert_eq!(owner.feed(index).unwrap().len(), 2);
    let values: Vec<_> = owner
        .get("a")
        .unwrap()
        .iter()
        .map(|n| n.value.clone())
        .collect();
    assert_eq!(values, [Some(b"1".to_vec())]);
    owner.put("b", b"2").unwrap();
    assert_eq!(owner.list("").unwrap().len(), 2);
}

#[test]
fn a_key_too_deep_to_read_back_is_refused_and_the_database_still_reads() {
    // Two keys sharing 4,500 components would point at each other beyond
    // the deepest trie position a reader accepts (4,096 components).
    let (_, db) = memory();
    let deep: String = "a/".repeat(4_500);
    for last in ["x", "y"] {
        let err = db.put(&format!("{deep}{last}"), b"1").unwrap_err();
        assert!(
            err.to_string().contains("at most 4096 components"),
            "says what the limit is: {err}"
        );
    }
    let deepest = format!("{}a", "a/".repeat(4_095));
    db.put(&deepest, b"2").unwrap();
    db.put("shallow", b"3").unwrap();
    assert_eq!(
        db.get("shallow").unwrap()[0].value.as_deref(),
        Some(&b"3"[..])
    );
    assert_eq!(
        db.get(&deepest).unwrap()[0].value.as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(db.list("").unwrap().len(), 2);
}
