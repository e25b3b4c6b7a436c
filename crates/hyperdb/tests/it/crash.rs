//! Databases crashed at every write point: a put, a batch across bitfield
//! pages, an authorization, the creation of a database or a replica, and a
//! replication that receives blocks. Each run stops at one point (a failed
//! write, a killed process, or, with `Durability::Fsync`, a power cut), then
//! the database is opened again and checked: it opens, every acknowledged
//! write reads back, the interrupted operation is wholly there or not at
//! all, no writer signed two different trees of one length, later writes
//! work, and a sync from the source converges.

use hypercore_feed::{Feed, FeedOptions, KeyPair};
use hyperdb::fault::{signed_lengths, Crash, Faults};
use hyperdb::{
    replicate, Db, DbStorage, Durability, Error, Op, OpenOptions, ReadOnlyDb, ReplicateOptions,
};

fn owner_secret() -> [u8; 64] {
    KeyPair::from_seed(&[1; 32]).secret_key
}

fn options(durability: Durability) -> OpenOptions {
    OpenOptions {
        secret_key: Some(owner_secret()),
        durability,
        ..Default::default()
    }
}

fn value(i: usize) -> Vec<u8> {
    format!("value {i}").into_bytes()
}

/// An owner's database in memory with `entries` keys `k0`, `k1`, ...
fn prepared(entries: usize) -> DbStorage {
    let storage = DbStorage::memory();
    let db = Db::open_storage(storage.clone(), options(Durability::Buffered)).unwrap();
    let ops = (0..entries).map(|i| Op::Put {
        key: format!("k{i}"),
        value: value(i),
    });
    db.write_all(ops, 1000).unwrap();
    storage
}

fn get(db: &Db, key: &str) -> Vec<Vec<u8>> {
    db.get(key)
        .unwrap()
        .iter()
        .filter_map(|n| n.value.clone())
        .collect()
}

/// Runs `op` on a copy of `start` once per write point with `crash` there,
/// and checks the database each time: `entries` acknowledged keys, and the
/// operation's keys `new` (with their values) all there or none.
fn at_every_point(
    start: &DbStorage,
    entries: usize,
    new: &[(String, Vec<u8>)],
    crash: Crash,
    durability: Durability,
    op: impl Fn(&Db) -> hyperdb::Result<()>,
) -> u64 {
    let done = start.deep_copy();
    let faults = Faults::new();
    let mut db = Db::open_storage(
        done.clone().with_faults(faults.clone()),
        options(durability),
    )
    .unwrap();
    let before = faults.points();
    op(&mut db).unwrap();
    let points = faults.points() - before;
    drop(db);
    let source = done.memory_feed("source").unwrap();
    let read_only = FeedOptions {
        read_only: true,
        ..Default::default()
    };
    let mut reference = Feed::open(source, read_only).unwrap();

    let mut outcomes = [0, 0];
    for point in 1..=points {
        let disk = start.deep_copy();
        let faults = Faults::new();
        let storage = disk.clone().with_faults(faults.clone());
        let mut db = Db::open_storage(storage.clone(), options(durability)).unwrap();
        faults.crash_at(faults.points() + point, crash);
        assert!(
            op(&mut db).is_err(),
            "point {point}: the crash is inside the operation"
        );
        if crash == Crash::Fail {
            let err = db.put("more", b"x").unwrap_err().to_string();
            assert!(err.contains("reopen"), "point {point}: {err}");
        }
        drop(db);
        faults.restart();
        let context = format!("{crash:?} at point {point} of {points} ({durability:?})");
        let source = disk.memory_feed("source").unwrap();
        let signed = signed_lengths(&source.contents("signatures"), &mut reference).unwrap();

        let db = Db::open_storage(storage.clone(), options(durability))
            .unwrap_or_else(|e| panic!("{context}: the database does not open: {e}"));
        let length = db.feed(0).unwrap().len();
        assert!(
            signed.iter().all(|&s| s <= length),
            "{context}: {signed:?} signed, length {length}: a fork"
        );
        for i in (0..entries).step_by(997).chain(entries.checked_sub(1)) {
            assert_eq!(get(&db, &format!("k{i}")), [value(i)], "{context}: k{i}");
        }
        let there: Vec<bool> = new
            .iter()
            .map(|(k, v)| get(&db, k) == [v.clone()])
            .collect();
        let all = there.iter().all(|&t| t);
        assert!(
            all || there.iter().all(|&t| !t),
            "{context}: half an operation: {there:?}"
        );
        outcomes[usize::from(all)] += 1;
        // A peer that knows only the key takes the last block with its
        // proof: the recovered feed is one a sync can copy.
        let last = db.feed(0).unwrap().len() - 1;
        let (block, proof) = {
            let feed = db.feed(0).unwrap();
            let proof = feed.proof(last, 0, false, &mut hypercore_feed::SparseBits::new());
            (feed.get(last).unwrap(), proof.unwrap())
        };
        let peer_options = FeedOptions {
            key: Some(*db.key()),
            ..Default::default()
        };
        let mut peer = Feed::open(hypercore_feed::MemoryStorage::new(), peer_options).unwrap();
        peer.put(last, Some(&block), &proof)
            .unwrap_or_else(|e| panic!("{context}: a peer refuses the last block: {e}"));
        db.put("after", b"the crash").unwrap();
        drop(db);
        let db = Db::open_storage(storage, options(durability)).unwrap();
        assert!(
            db.recovered().is_empty(),
            "{context}: the repair was written"
        );
        assert_eq!(get(&db, "after"), [b"the crash".to_vec()], "{context}");
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "outcomes {outcomes:?}");
    points
}

fn puts(keys: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    keys.map(|i| (format!("new{i}"), value(i))).collect()
}

#[test]
fn a_put_crashed_at_every_write() {
    // Entry 16,383 of the source feed is marked in two bitfield pages.
    let start = prepared(16_382);
    let new = puts(0..1);
    let put = |db: &Db| db.put("new0", &value(0)).map(|_| ());
    for crash in [Crash::Kill, Crash::Fail] {
        at_every_point(&start, 16_382, &new, crash, Durability::Buffered, put);
    }
    let points = at_every_point(
        &start,
        16_382,
        &new,
        Crash::PowerCut,
        Durability::Fsync,
        put,
    );
    assert!(points >= 7, "{points} points");
}

#[test]
fn a_batch_across_bitfield_pages_crashed_at_every_write() {
    let start = prepared(8_150);
    let new = puts(0..100);
    let batch = |db: &Db| {
        let ops: Vec<Op> = (0..100)
            .map(|i| Op::Put {
                key: format!("new{i}"),
                value: value(i),
            })
            .collect();
        db.batch(&ops).map(|_| ())
    };
    at_every_point(
        &start,
        8_150,
        &new,
        Crash::Kill,
        Durability::Buffered,
        batch,
    );
    at_every_point(
        &start,
        8_150,
        &new,
        Crash::PowerCut,
        Durability::Fsync,
        batch,
    );
    // Across block 16,383 (the root of 16,384 blocks is in the first page).
    let start = prepared(16_330);
    at_every_point(
        &start,
        16_330,
        &new,
        Crash::Kill,
        Durability::Buffered,
        batch,
    );
}

#[test]
fn an_authorization_crashed_at_every_write() {
    let start = prepared(10);
    let writer = KeyPair::from_seed(&[2; 32]).public_key;
    let authorize = |db: &Db| db.authorize(&writer).map(|_| ());
    for (crash, durability) in [
        (Crash::Kill, Durability::Buffered),
        (Crash::Fail, Durability::Buffered),
        (Crash::PowerCut, Durability::Fsync),
    ] {
        let done = start.deep_copy();
        let points = {
            let faults = Faults::new();
            let mut db = Db::open_storage(
                done.clone().with_faults(faults.clone()),
                options(durability),
            )
            .unwrap();
            let before = faults.points();
            authorize(&mut db).unwrap();
            faults.points() - before
        };
        let read_only = FeedOptions {
            read_only: true,
            ..Default::default()
        };
        let mut reference = Feed::open(done.memory_feed("source").unwrap(), read_only).unwrap();
        for point in 1..=points {
            let faults = Faults::new();
            let storage = start.deep_copy().with_faults(faults.clone());
            let mut db = Db::open_storage(storage.clone(), options(durability)).unwrap();
            faults.crash_at(faults.points() + point, crash);
            assert!(authorize(&mut db).is_err());
            drop(db);
            faults.restart();
            let context = format!("{crash:?} at point {point} of {points}");
            let source = storage.memory_feed("source").unwrap();
            let signed = signed_lengths(&source.contents("signatures"), &mut reference).unwrap();
            let db = Db::open_storage(storage, options(durability))
                .unwrap_or_else(|e| panic!("{context}: {e}"));
            let length = db.feed(0).unwrap().len();
            assert!(
                signed.iter().all(|&s| s <= length),
                "{context}: {signed:?} signed, length {length}: a fork"
            );
            assert_eq!(get(&db, "k9"), [value(9)], "{context}");
            // Authorized or not, never half: authorizing again either says
            // it is done or does it.
            match db.authorize(&writer) {
                Ok(_) | Err(Error::AlreadyAuthorized(_)) => {}
                Err(e) => panic!("{context}: {e}"),
            }
            assert!(db.is_authorized(&writer).unwrap(), "{context}");
        }
    }
}

/// Creating a database crashed at every write point leaves no database or a
/// whole one, and creating it again works. `storage` makes fresh storage
/// for each run.
fn create_at_every_point(
    storage: impl Fn() -> DbStorage,
    replica_of: Option<[u8; 32]>,
    crash: Crash,
) -> u64 {
    let options = OpenOptions {
        key: replica_of,
        secret_key: replica_of.is_none().then(owner_secret),
        durability: Durability::Fsync,
        ..Default::default()
    };
    let faults = Faults::new();
    drop(Db::open_storage(storage().with_faults(faults.clone()), options.clone()).unwrap());
    let points = faults.points();
    let expected_key = replica_of.unwrap_or_else(|| KeyPair::from_seed(&[1; 32]).public_key);
    let mut outcomes = [0, 0];
    for point in 1..=points {
        let faults = Faults::new();
        let base = storage();
        let faulty = base.clone().with_faults(faults.clone());
        faults.crash_at(point, crash);
        assert!(Db::open_storage(faulty.clone(), options.clone()).is_err());
        faults.restart();
        let context = format!("{crash:?} at point {point} of {points}");
        match ReadOnlyDb::open_storage(base.clone(), OpenOptions::default()) {
            Err(Error::NotFound(_)) => outcomes[0] += 1,
            Ok(db) => {
                outcomes[1] += 1;
                assert_eq!(*db.key(), expected_key, "{context}");
                let local = db.writers().iter().position(|w| w.local).unwrap();
                assert_eq!(db.feed(local).unwrap().len(), 1, "{context}: a header");
                assert!(db.get("x").unwrap().is_empty());
            }
            Err(e) => panic!("{context}: neither no database nor a whole one: {e}"),
        }
        let db =
            Db::open_storage(faulty, options.clone()).unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(*db.key(), expected_key, "{context}");
        db.put("x", b"1").unwrap();
        if let Some(dir) = base.path() {
            let leftovers: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().into_string().unwrap())
                .filter(|n| n.starts_with(".new-"))
                .collect();
            assert!(leftovers.is_empty(), "{context}: {leftovers:?} left behind");
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "outcomes {outcomes:?}");
    points
}

#[test]
fn creating_a_database_crashed_at_every_write() {
    for crash in [Crash::Kill, Crash::PowerCut, Crash::Fail] {
        create_at_every_point(DbStorage::memory, None, crash);
        create_at_every_point(DbStorage::memory, Some([9; 32]), crash);
    }
    // On disk too, where the staging folder is renamed into place.
    let tmp = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let fresh = || {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        DbStorage::dir(tmp.path().join(format!("db{n}")))
    };
    let points = create_at_every_point(fresh, None, Crash::Kill);
    assert!(points > 10, "{points} points");
    create_at_every_point(fresh, Some([9; 32]), Crash::Kill);
}

/// Replicates `replica` with `source` over an in-memory stream, one-shot.
fn sync(source: &Db, replica: &Db) -> hyperdb::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = replicate(source.clone(), a, ReplicateOptions::default());
        let client = replicate(replica.clone(), b, ReplicateOptions::default());
        let (left, right) = tokio::join!(server, client);
        // A replica that dies mid-sync cuts the stream: the source sees
        // the connection end.
        let _ = left;
        right.map(|_| ())
    })
}

#[test]
fn a_replica_crashed_at_every_write_of_a_sync_converges() {
    // An owner and an authorized writer, each with entries.
    let owner = Db::open_storage(DbStorage::memory(), options(Durability::Buffered)).unwrap();
    let key = *owner.key();
    let owner = owner;
    let writer_options = OpenOptions {
        key: Some(key),
        ..Default::default()
    };
    let writer = Db::open_storage(DbStorage::memory(), writer_options.clone()).unwrap();
    let writer_key = *writer.local_key();
    owner.authorize(&writer_key).unwrap();
    sync(&owner, &writer).unwrap();
    for i in 0..150 {
        owner.put(&format!("o{i}"), &value(i)).unwrap();
        writer.put(&format!("w{i}"), &value(i)).unwrap();
    }
    sync(&owner, &writer).unwrap();

    let replica_start = DbStorage::memory();
    drop(Db::open_storage(replica_start.clone(), writer_options.clone()).unwrap());
    for (crash, durability) in [
        (Crash::Kill, Durability::Buffered),
        (Crash::PowerCut, Durability::Fsync),
    ] {
        let replica_options = OpenOptions {
            durability,
            ..writer_options.clone()
        };
        let faults = Faults::new();
        let counted = Db::open_storage(
            replica_start.deep_copy().with_faults(faults.clone()),
            replica_options.clone(),
        )
        .unwrap();
        let counted = counted;
        let before = faults.points();
        sync(&owner, &counted).unwrap();
        let points = faults.points() - before;
        assert!(points > 20, "{points} points");
        for point in 1..=points {
            let faults = Faults::new();
            let storage = replica_start.deep_copy().with_faults(faults.clone());
            let replica = Db::open_storage(storage.clone(), replica_options.clone()).unwrap();
            let replica = replica;
            faults.crash_at(faults.points() + point, crash);
            let _ = sync(&owner, &replica);
            drop(replica);
            faults.restart();
            let context = format!("{crash:?} at point {point} of {points}");
            let replica = Db::open_storage(storage, replica_options.clone())
                .unwrap_or_else(|e| panic!("{context}: the replica does not open: {e}"));
            let replica = replica;
            for i in 0..replica.writers().len() {
                // Every length it claims is one it can prove to a peer.
                let feed = replica.feed(i).unwrap();
                if let Some(last) = feed.len().checked_sub(1) {
                    let proof = feed.proof(last, 0, false, &mut hypercore_feed::SparseBits::new());
                    assert!(
                        proof.is_ok_and(|p| p.signature.is_some()),
                        "{context}: writer {i}"
                    );
                }
            }
            let replica = replica;
            sync(&owner, &replica).unwrap_or_else(|e| panic!("{context}: {e}"));
            let db = &replica;
            for i in [0, 77, 149] {
                assert_eq!(get(db, &format!("o{i}")), [value(i)], "{context}: o{i}");
                assert_eq!(get(db, &format!("w{i}")), [value(i)], "{context}: w{i}");
            }
            for i in 0..db.writers().len() {
                let feed = db.feed(i).unwrap();
                assert!(feed.has_all(), "{context}: writer {i} incomplete");
                let last = feed.len() - 1;
                feed.get(last).unwrap_or_else(|e| panic!("{context}: {e}"));
            }
        }
    }
}
