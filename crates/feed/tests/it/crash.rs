//! Crashes at every write point: a writer appending (one block, or a batch
//! across bitfield page boundaries) and a replica storing downloaded blocks,
//! killed, failed or cut off from power at each write, then reopened.
//!
//! After each crash the feed opens, every acknowledged block is there and
//! reads back, an operation is either wholly there or not at all, the
//! writer never signs two different trees of one length, the files are
//! exactly those of an uninterrupted run, and later writes work.

use hypercore_feed::fault::{signed_lengths, Crash, FaultStorage, Faults};
use hypercore_feed::storage::FEED_FILES;
use hypercore_feed::{Durability, Feed, FeedOptions, KeyPair, MemoryStorage, SparseBits};

fn pair() -> KeyPair {
    KeyPair::from_seed(&[7; 32])
}

fn writer_options(durability: Durability) -> FeedOptions {
    FeedOptions {
        secret_key: Some(pair().secret_key),
        durability,
        ..Default::default()
    }
}

fn block(i: u64) -> Vec<u8> {
    format!("block {i} {}", "x".repeat((i % 7) as usize)).into_bytes()
}

/// A writer's feed of `n` blocks.
fn prepared(n: u64) -> MemoryStorage {
    let storage = MemoryStorage::new();
    let mut feed = Feed::open(storage.clone(), writer_options(Durability::Buffered)).unwrap();
    let blocks: Vec<Vec<u8>> = (0..n).map(block).collect();
    for chunk in blocks.chunks(1000) {
        feed.append_batch(chunk).unwrap();
    }
    storage
}

/// Every block `feed` says it has, it can read.
fn assert_reads_what_it_has(feed: &Feed, context: &str) {
    for i in 0..feed.len() {
        if feed.has(i) {
            feed.get(i)
                .unwrap_or_else(|e| panic!("{context}: block {i}: {e}"));
        }
    }
}

fn files(storage: &MemoryStorage) -> Vec<Vec<u8>> {
    FEED_FILES.iter().map(|f| storage.contents(f)).collect()
}

/// Appends `batch` blocks (one append of them all) to a writer of `n`
/// blocks, crashing at every write point in turn, and checks each outcome.
fn append_at_every_point(n: u64, batch: u64, crash: Crash, durability: Durability) -> u64 {
    let start = prepared(n);
    let new: Vec<Vec<u8>> = (n..n + batch).map(block).collect();
    let append = |feed: &mut Feed| feed.append_batch(&new).map(|_| ());

    // An uninterrupted run: its files are what every outcome must match.
    let done = start.deep_copy();
    let faults = Faults::new();
    let mut feed = Feed::open(
        FaultStorage::new(done.clone(), faults.clone()),
        writer_options(durability),
    )
    .unwrap();
    let before = faults.points();
    append(&mut feed).unwrap();
    let points = faults.points() - before;
    drop(feed);
    let mut reference = Feed::open(
        done.clone(),
        FeedOptions {
            read_only: true,
            ..writer_options(durability)
        },
    )
    .unwrap();

    let mut outcomes = [0, 0];
    for point in 1..=points {
        let disk = start.deep_copy();
        let faults = Faults::new();
        let storage = FaultStorage::new(disk.clone(), faults.clone());
        let mut feed = Feed::open(storage.clone(), writer_options(durability)).unwrap();
        faults.crash_at(faults.points() + point, crash);
        let acknowledged = append(&mut feed).is_ok();
        assert!(
            !acknowledged,
            "point {point}: the crash is inside the append"
        );
        if crash == Crash::Fail {
            let err = feed.append(b"more").unwrap_err().to_string();
            assert!(err.contains("reopen"), "point {point}: {err}");
        }
        drop(feed);
        faults.restart();
        let signed = signed_lengths(&disk.contents("signatures"), &mut reference).unwrap();

        let context = format!("{crash:?} at point {point} of {points} ({durability:?})");
        let feed = Feed::open(storage.clone(), writer_options(durability))
            .unwrap_or_else(|e| panic!("{context}: the feed does not open: {e}"));
        let length = feed.len();
        assert!(
            length == n || length == n + batch,
            "{context}: length {length}, half a batch"
        );
        outcomes[usize::from(length > n)] += 1;
        assert!(
            signed.iter().all(|&s| s <= length),
            "{context}: length {length} but {signed:?} were signed: a fork"
        );
        for i in (0..length).step_by(97).chain([length - 1]) {
            assert_eq!(feed.get(i).unwrap(), block(i), "{context}: block {i}");
        }
        assert!(feed.has_all(), "{context}: a hole");
        drop(feed);
        let expected = if length == n {
            files(&start)
        } else {
            files(&done)
        };
        for (name, (got, want)) in FEED_FILES.iter().zip(files(&disk).iter().zip(&expected)) {
            assert!(
                got == want,
                "{context}: {name} differs from an uninterrupted run"
            );
        }

        let mut feed = Feed::open(storage, writer_options(durability)).unwrap();
        assert!(
            feed.recovery().is_none(),
            "{context}: the repair was written"
        );
        feed.append(b"after the crash").unwrap();
        assert_eq!(feed.get(length).unwrap(), b"after the crash");
    }
    // Crashes before the signature lose the append; after it, the append
    // is recovered although its bitfield was never (wholly) written.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "outcomes {outcomes:?}");
    points
}

#[test]
fn one_append_killed_at_every_write() {
    // Block 16,383 is marked in two bitfield pages.
    for n in [1, 5, 16_383] {
        for durability in [Durability::Buffered, Durability::Fsync] {
            assert!(append_at_every_point(n, 1, Crash::Kill, durability) >= 4);
        }
    }
}

#[test]
fn batches_across_bitfield_pages_killed_at_every_write() {
    for n in [8_150, 16_350] {
        append_at_every_point(n, 100, Crash::Kill, Durability::Buffered);
    }
}

#[test]
fn appends_failing_at_every_write_leave_the_feed_to_reopen() {
    append_at_every_point(8_150, 100, Crash::Fail, Durability::Buffered);
    append_at_every_point(16_383, 1, Crash::Fail, Durability::Fsync);
}

#[test]
fn durable_appends_survive_a_power_cut_at_every_write() {
    for (n, batch) in [(1, 1), (16_383, 1), (8_150, 100)] {
        let points = append_at_every_point(n, batch, Crash::PowerCut, Durability::Fsync);
        assert!(
            points >= 7,
            "three syncs and four writes at least, got {points}"
        );
    }
}

#[test]
fn a_lost_bitfield_is_found_again_from_the_tree() {
    let storage = prepared(20_000);
    let original = files(&storage);
    for bitfield in [Vec::new(), vec![0; 100], original[4][..3616].to_vec()] {
        let disk = storage.deep_copy();
        disk.set_contents("bitfield", bitfield);
        let mut feed = Feed::open(disk.clone(), writer_options(Durability::Buffered)).unwrap();
        assert_eq!(feed.len(), 20_000);
        assert!(feed.recovery().unwrap().rebuilt);
        // The next append goes after the last signed block, never over it.
        assert_eq!(feed.append(b"next").unwrap(), 20_000);
        drop(feed);
        let feed = Feed::open(disk, writer_options(Durability::Buffered)).unwrap();
        assert_eq!(feed.get(19_999).unwrap(), block(19_999));
        assert_eq!(feed.get(20_000).unwrap(), b"next");
    }
    // Rebuilt by replaying the appends: the same bytes as before.
    let disk = storage.deep_copy();
    disk.set_contents("bitfield", Vec::new());
    drop(Feed::open(disk.clone(), writer_options(Durability::Buffered)).unwrap());
    assert!(disk.contents("bitfield") == original[4]);
}

#[test]
fn a_read_only_open_repairs_in_memory_and_writes_nothing() {
    let storage = prepared(300);
    storage.set_contents("bitfield", Vec::new());
    let mut data = storage.contents("data");
    data.extend_from_slice(b"an unsigned tail");
    storage.set_contents("data", data);
    let before = files(&storage);
    let options = FeedOptions {
        read_only: true,
        ..writer_options(Durability::Buffered)
    };
    let mut feed = Feed::open(storage.clone(), options.clone()).unwrap();
    assert_eq!(feed.len(), 300);
    assert_eq!(feed.get(299).unwrap(), block(299));
    assert!(!feed.recovery().unwrap().written);
    let err = feed.append(b"no").unwrap_err().to_string();
    assert!(err.contains("read-only"), "{err}");
    drop(feed);
    assert!(files(&storage) == before, "nothing written");

    // Nothing is created either.
    let empty = MemoryStorage::new();
    let options = FeedOptions {
        read_only: true,
        ..Default::default()
    };
    assert!(Feed::open(empty.clone(), options).is_err());
    assert!(empty.is_empty());
}

#[test]
fn a_writer_whose_signed_blocks_are_gone_refuses_to_append() {
    let storage = prepared(10);
    let data = storage.contents("data");
    storage.set_contents("data", data[..data.len() - 3].to_vec());
    let err = Feed::open(storage.clone(), writer_options(Durability::Buffered)).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("data") && message.contains("fork"),
        "{message}"
    );
    // Read-only, what remains can still be read.
    let options = FeedOptions {
        read_only: true,
        ..writer_options(Durability::Buffered)
    };
    let feed = Feed::open(storage, options).unwrap();
    assert_eq!(feed.get(8).unwrap(), block(8));
    assert!(feed.get(9).is_err());
}

/// A replica downloading every block of a source, flushing every `every`
/// blocks, crashed at each write point in turn; after each crash it opens,
/// what it holds verifies, and downloading again completes it.
/// How a download writes what it verified.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Flushes {
    /// `flush` every so many blocks (synced with `Durability::Fsync`).
    Each,
    /// As replication does: `flush_unsynced` every so many blocks, and
    /// `sync_pending` every other time.
    Unsynced,
}

fn download_at_every_point(
    n: u64,
    every: u64,
    crash: Crash,
    durability: Durability,
    flushes: Flushes,
) -> u64 {
    let source = prepared(n);
    let mut source = Feed::open(source, writer_options(Durability::Buffered)).unwrap();
    let options = FeedOptions {
        key: Some(pair().public_key),
        durability,
        ..Default::default()
    };
    let download = |feed: &mut Feed, source: &mut Feed| -> hypercore_feed::Result<()> {
        let mut remote = SparseBits::new();
        for i in (0..n).rev() {
            if feed.has(i) {
                continue;
            }
            let proof = source.proof(i, feed.digest(i), false, &mut remote).unwrap();
            let write = feed.verify_block(i, Some(&source.get(i).unwrap()), &proof)?;
            feed.commit_unflushed(write)?;
            if i % every == 0 {
                match flushes {
                    Flushes::Each => feed.flush()?,
                    Flushes::Unsynced => {
                        feed.flush_unsynced()?;
                        if i % (2 * every) == 0 {
                            feed.sync_pending()?;
                        }
                    }
                }
            }
        }
        match flushes {
            Flushes::Each => feed.flush(),
            Flushes::Unsynced => {
                feed.flush_unsynced()?;
                feed.sync_pending()
            }
        }
    };
    let counted = MemoryStorage::new();
    let faults = Faults::new();
    let mut feed = Feed::open(
        FaultStorage::new(counted.clone(), faults.clone()),
        options.clone(),
    )
    .unwrap();
    let before = faults.points();
    download(&mut feed, &mut source).unwrap();
    let points = faults.points() - before;
    drop(feed);

    for point in 1..=points {
        let disk = MemoryStorage::new();
        let faults = Faults::new();
        let storage = FaultStorage::new(disk.clone(), faults.clone());
        let mut feed = Feed::open(storage.clone(), options.clone()).unwrap();
        faults.crash_at(faults.points() + point, crash);
        assert!(download(&mut feed, &mut source).is_err());
        drop(feed);
        faults.restart();
        let context =
            format!("{crash:?} at point {point} of {points} ({durability:?}, {flushes:?})");
        let mut feed = Feed::open(storage.clone(), options.clone())
            .unwrap_or_else(|e| panic!("{context}: the replica does not open: {e}"));
        assert_reads_what_it_has(&feed, &context);
        let report = feed.audit().unwrap();
        assert_eq!(
            report.invalid, 0,
            "{context}: a stored block does not verify"
        );
        if let Some(last) = feed.len().checked_sub(1) {
            // The length it claims is one it can prove to a peer.
            let (at, signature) = feed
                .signature(last)
                .unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_eq!(at, last, "{context}");
            assert!(feed.verify(last, &signature).unwrap(), "{context}");
        }
        download(&mut feed, &mut source).unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(feed.len(), n, "{context}");
        assert!(feed.has_all(), "{context}");
        drop(feed);
        for name in ["tree", "data"] {
            assert!(
                disk.contents(name) == counted.contents(name),
                "{context}: {name}"
            );
        }
    }
    points
}

#[test]
fn downloads_crashed_at_every_write_resume() {
    for crash in [Crash::Kill, Crash::Fail] {
        download_at_every_point(300, 64, crash, Durability::Buffered, Flushes::Each);
    }
    download_at_every_point(300, 64, Crash::PowerCut, Durability::Fsync, Flushes::Each);
}

#[test]
fn replicated_blocks_synced_later_survive_a_power_cut_at_every_write() {
    // Replication writes blocks without syncing and syncs now and then: a
    // power cut must never leave the bitfield claiming blocks the other
    // files lost.
    download_at_every_point(
        300,
        32,
        Crash::PowerCut,
        Durability::Fsync,
        Flushes::Unsynced,
    );
}

#[test]
fn downloads_across_bitfield_pages_crashed_at_every_write_resume() {
    // Flushes that mark blocks in two bitfield pages (8,192 blocks each).
    download_at_every_point(
        8_300,
        3_000,
        Crash::Kill,
        Durability::Buffered,
        Flushes::Each,
    );
}

/// A replica following a writer as it grows, as live replication does:
/// each round the writer appends a few blocks and the replica fetches them
/// in order (each with the proof for the writer's length then), writing
/// them unsynced and syncing every other round. A power cut at every write
/// point: reopened, the replica reads every block it says it has, and
/// catches up.
#[test]
fn a_replica_following_a_growing_writer_survives_a_power_cut_at_every_write() {
    let rounds: Vec<u64> = vec![3, 1, 4, 1, 5, 9, 2, 6, 5, 3];
    let options = FeedOptions {
        key: Some(pair().public_key),
        durability: Durability::Fsync,
        ..Default::default()
    };
    // The writer after `r` rounds, rebuilt the same each time.
    let writer_after = |r: usize| -> Feed {
        let mut w = Feed::open(MemoryStorage::new(), writer_options(Durability::Buffered)).unwrap();
        let mut i = 0;
        for &k in &rounds[..r] {
            for _ in 0..k {
                w.append(&block(i)).unwrap();
                i += 1;
            }
        }
        w
    };
    let writers: Vec<Feed> = (0..=rounds.len()).map(writer_after).collect();
    let follow = |feed: &mut Feed, from: usize| -> hypercore_feed::Result<()> {
        for (r, source) in writers.iter().enumerate().skip(from.max(1)) {
            let mut remote = SparseBits::new();
            for i in 0..source.len() {
                if feed.has(i) {
                    continue;
                }
                let proof = source.proof(i, feed.digest(i), false, &mut remote).unwrap();
                let write = feed.verify_block(i, Some(&source.get(i).unwrap()), &proof)?;
                feed.commit_unflushed(write)?;
            }
            feed.flush_unsynced()?;
            if r % 2 == 0 {
                feed.sync_pending()?;
            }
        }
        feed.flush_unsynced()?;
        feed.sync_pending()
    };
    let faults = Faults::new();
    let mut feed = Feed::open(
        FaultStorage::new(MemoryStorage::new(), faults.clone()),
        options.clone(),
    )
    .unwrap();
    let before = faults.points();
    follow(&mut feed, 0).unwrap();
    let points = faults.points() - before;
    drop(feed);
    let total = writers.last().unwrap().len();
    for crash in [Crash::PowerCut, Crash::Kill] {
        for point in 1..=points {
            let faults = Faults::new();
            let storage = FaultStorage::new(MemoryStorage::new(), faults.clone());
            let mut feed = Feed::open(storage.clone(), options.clone()).unwrap();
            faults.crash_at(faults.points() + point, crash);
            assert!(follow(&mut feed, 0).is_err());
            drop(feed);
            faults.restart();
            let context = format!("{crash:?} at point {point} of {points}");
            let mut feed = Feed::open(storage.clone(), options.clone())
                .unwrap_or_else(|e| panic!("{context}: the replica does not open: {e}"));
            assert_reads_what_it_has(&feed, &context);
            follow(&mut feed, 0).unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_eq!(feed.len(), total, "{context}");
            assert!(feed.has_all(), "{context}");
        }
    }
}
