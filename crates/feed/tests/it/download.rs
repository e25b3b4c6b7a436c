//! A reader downloading a feed block by block, as replication does: writes
//! held back by `commit_unflushed` are visible at once, reach the files on
//! `flush`, and leave the same tree and data files as the writer's, whatever
//! the order the blocks arrive in.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hypercore_feed::{Feed, FeedOptions, MemoryStorage, Proof, RandomAccess, SparseBits, Storage};
use proptest::prelude::*;

fn writer(n: usize) -> (MemoryStorage, Feed) {
    let storage = MemoryStorage::new();
    let mut feed = Feed::open(storage.clone(), FeedOptions::default()).unwrap();
    let blocks: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("block {i} {}", "x".repeat(i % 7)).into_bytes())
        .collect();
    for chunk in blocks.chunks(37) {
        feed.append_batch(chunk).unwrap();
    }
    (storage, feed)
}

/// An empty feed in memory with `source`'s key, and its storage.
fn replica_of(source: &Feed) -> (MemoryStorage, Feed) {
    let storage = MemoryStorage::new();
    let options = FeedOptions {
        key: Some(*source.key()),
        ..Default::default()
    };
    let feed = Feed::open(storage.clone(), options).unwrap();
    (storage, feed)
}

/// `items` in an order drawn from `seed` (a xorshift Fisher-Yates shuffle).
fn shuffled(mut items: Vec<u64>, seed: u64) -> Vec<u64> {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
    items
}

/// Fetches block `index` of `source` into `reader` with its proof, held
/// back until a flush; returns the block.
fn fetch(source: &Feed, reader: &mut Feed, index: u64, sent: &mut SparseBits) -> Vec<u8> {
    let proof = source
        .proof(index, reader.digest(index), false, sent)
        .unwrap();
    let block = source.get(index).unwrap();
    let write = reader.verify_block(index, Some(&block), &proof).unwrap();
    reader.commit_unflushed(write).unwrap();
    block
}

/// Downloads every block of `source` in `order`, flushing after every
/// `flush_every` blocks; checks each block reads back before any flush.
fn download(source: &mut Feed, order: &[u64], flush_every: usize) -> (MemoryStorage, Feed) {
    let (storage, mut reader) = replica_of(source);
    let mut sent = SparseBits::new();
    for (n, &index) in order.iter().enumerate() {
        let block = fetch(source, &mut reader, index, &mut sent);
        assert_eq!(reader.get(index).unwrap(), block, "readable before a flush");
        if (n + 1) % flush_every == 0 {
            reader.flush().unwrap();
        }
    }
    reader.flush().unwrap();
    (storage, reader)
}

#[test]
fn in_order_download_leaves_the_writers_files() {
    let n = 3_000;
    let (writer_files, mut source) = writer(n);
    // Replication asks for the last block first, then the rest in order.
    let order: Vec<u64> = std::iter::once(n as u64 - 1)
        .chain(0..n as u64 - 1)
        .collect();
    let (files, reader) = download(&mut source, &order, 300);
    assert_eq!(files.contents("tree"), writer_files.contents("tree"));
    assert_eq!(files.contents("data"), writer_files.contents("data"));
    assert!(reader.has_all());
    drop(reader);
    let mut reopened = Feed::open(files, FeedOptions::default()).unwrap();
    assert!(reopened.has_all());
    assert_eq!(reopened.len(), n as u64);
    assert_eq!(reopened.audit().unwrap().invalid, 0);
}

#[test]
fn blocks_held_back_reach_the_files_on_flush() {
    let (_, source) = writer(50);
    let (storage, mut reader) = replica_of(&source);
    let proof = source
        .proof(49, reader.digest(49), false, &mut SparseBits::new())
        .unwrap();
    let block = source.get(49).unwrap();
    let write = reader.verify_block(49, Some(&block), &proof).unwrap();
    reader.commit_unflushed(write).unwrap();
    assert!(reader.has(49));
    assert!(storage.contents("data").is_empty(), "held back");
    reader.flush().unwrap();
    assert!(storage.contents("data").ends_with(&block));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_download_order_leaves_the_writers_files(
        seed in any::<u64>(),
        n in 1usize..300,
        flush_every in 1usize..64,
    ) {
        let (writer_files, mut source) = writer(n);
        let order = shuffled((0..n as u64).collect(), seed);
        let (files, _) = download(&mut source, &order, flush_every);
        prop_assert_eq!(files.contents("tree"), writer_files.contents("tree"));
        prop_assert_eq!(files.contents("data"), writer_files.contents("data"));
    }
}

#[test]
fn a_block_reader_reads_what_the_feed_flushed_and_only_that() {
    let (_, source) = writer(100);
    let (storage, mut reader) = replica_of(&source);
    let blocks = reader.block_reader(Box::new(storage.clone()));
    // A new feed has no data file yet: nothing to read, and no panic.
    assert!(blocks.get(0).is_err());
    let mut sent = SparseBits::new();
    for index in 0..100u64 {
        fetch(&source, &mut reader, index, &mut sent);
        if index == 49 {
            assert!(reader.has_unflushed());
            reader.flush().unwrap();
            assert!(!reader.has_unflushed());
        }
    }
    // Blocks 50.. are held back: the files do not have them yet.
    for index in 0..50 {
        assert_eq!(blocks.get(index).unwrap(), source.get(index).unwrap());
    }
    assert!(blocks.get(99).is_err(), "an unflushed block is not read");
    reader.flush().unwrap();
    // Out of order, then in order (where each block's offset follows from
    // the one before).
    for index in (0..100).rev().chain(0..100) {
        assert_eq!(blocks.get(index).unwrap(), source.get(index).unwrap());
    }
    // From another thread, on disk bytes that were damaged: the hash check.
    let mut data = storage.contents("data");
    let last = data.len() - 1;
    data[last] ^= 1;
    storage.set_contents("data", data);
    let blocks = reader.block_reader(Box::new(storage.clone()));
    std::thread::scope(|s| {
        s.spawn(|| {
            let err = blocks.get(99).unwrap_err().to_string();
            assert!(err.contains("does not match its hash"), "{err}");
            assert_eq!(blocks.get(98).unwrap(), source.get(98).unwrap());
        });
    });
}

/// Blocks read in order are read ahead in runs; a damaged block inside a
/// run fails its own hash check, and spoils neither the blocks read ahead
/// of it nor the ones after it.
#[test]
fn a_block_reader_reading_in_order_checks_every_block_it_read_ahead() {
    let (storage, source) = writer(300);
    let mut data = storage.contents("data");
    let start: usize = (0..150).map(|i| source.get(i).unwrap().len()).sum();
    data[start] ^= 1;
    storage.set_contents("data", data);
    let blocks = source.block_reader(Box::new(storage.clone()));
    for index in 0..300u64 {
        match blocks.get(index) {
            Ok(block) => assert_eq!(block, source.get(index).unwrap(), "block {index}"),
            Err(e) => {
                assert_eq!(index, 150, "only the damaged block fails: {e}");
                assert!(e.to_string().contains("does not match its hash"), "{e}");
            }
        }
    }
    assert!(blocks.get(150).is_err());
    // And again in order from the start, with what was read ahead kept.
    for index in (0..150).chain(151..300) {
        assert_eq!(blocks.get(index).unwrap(), source.get(index).unwrap());
    }
    // A reader in order that skips blocks (a history walk whose entries are
    // partly cached) is served from what was read ahead, checked alike.
    for step in [2, 3, 7] {
        let blocks = source.block_reader(Box::new(storage.clone()));
        for index in (0..300u64).step_by(step) {
            match blocks.get(index) {
                Ok(block) => assert_eq!(block, source.get(index).unwrap(), "block {index}"),
                Err(e) => assert_eq!(index, 150, "only the damaged block fails: {e}"),
            }
        }
    }
}

/// Files in memory that count the reads made of them (lengths included,
/// each a system call on disk) and the bytes read.
struct Counting {
    inner: MemoryStorage,
    reads: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

struct CountingFile {
    inner: Box<dyn RandomAccess>,
    reads: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl Storage for Counting {
    fn open(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        let inner = self.inner.open(name)?;
        let (reads, bytes) = (self.reads.clone(), self.bytes.clone());
        Ok(Box::new(CountingFile {
            inner,
            reads,
            bytes,
        }))
    }
    fn open_read_only(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        let inner = self.inner.open_read_only(name)?;
        let (reads, bytes) = (self.reads.clone(), self.bytes.clone());
        Ok(Box::new(CountingFile {
            inner,
            reads,
            bytes,
        }))
    }
    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
}

impl RandomAccess for CountingFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.inner.read_exact_at(offset, buf)
    }
    fn write_all_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_all_at(offset, data)
    }
    fn len(&self) -> io::Result<u64> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.len()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.inner.sync_all()
    }
    fn exists(&self) -> bool {
        self.inner.exists()
    }
}

/// Blocks read in order take a few reads for each run of up to 64: small
/// ones come from one read of their leaves and one of their bytes, and a
/// block too large to read ahead (over 32 KiB) takes one read of its own,
/// its leaf still read with the run's.
#[test]
fn a_block_reader_reading_in_order_reads_runs_of_blocks_at_once() {
    let storage = MemoryStorage::new();
    let mut feed = Feed::open(storage.clone(), FeedOptions::default()).unwrap();
    let blocks: Vec<Vec<u8>> = (0..320u64)
        .map(|i| match i {
            128..192 => vec![i as u8; 40 * 1024],
            _ => format!("block {i}").into_bytes(),
        })
        .collect();
    feed.append_batch(&blocks).unwrap();
    let reads = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: storage.clone(),
        reads: reads.clone(),
        bytes: Arc::default(),
    };
    let reader = feed.block_reader(Box::new(counting));
    let mut counts = Vec::new();
    for run in [0..128u64, 128..192, 192..320] {
        let before = reads.load(Ordering::Relaxed);
        for index in run {
            assert_eq!(reader.get(index).unwrap(), blocks[index as usize]);
        }
        counts.push(reads.load(Ordering::Relaxed) - before);
    }
    assert!(counts[0] <= 8, "128 small blocks took {} reads", counts[0]);
    assert!(
        counts[1] <= 64 + 4,
        "64 large blocks took {} reads",
        counts[1]
    );
    assert!(counts[2] <= 8, "128 small blocks took {} reads", counts[2]);
    // Skipping a few blocks at a time costs no more reads.
    let reader = feed.block_reader(Box::new(Counting {
        inner: storage.clone(),
        reads: reads.clone(),
        bytes: Arc::default(),
    }));
    let before = reads.load(Ordering::Relaxed);
    for index in (0..128u64).filter(|i| i % 5 != 1) {
        assert_eq!(reader.get(index).unwrap(), blocks[index as usize]);
    }
    let skipping = reads.load(Ordering::Relaxed) - before;
    assert!(
        skipping <= 8,
        "128 small blocks, some skipped, took {skipping} reads"
    );
    // Nor does reading every eighth block, or every 31st: what is read
    // ahead from the block after the last one read holds the next.
    for (step, most) in [(8u64, 8), (31, 8)] {
        let reader = feed.block_reader(Box::new(Counting {
            inner: storage.clone(),
            reads: reads.clone(),
            bytes: Arc::default(),
        }));
        let before = reads.load(Ordering::Relaxed);
        for index in (0..128u64).step_by(step as usize) {
            assert_eq!(reader.get(index).unwrap(), blocks[index as usize]);
        }
        let taken = reads.load(Ordering::Relaxed) - before;
        assert!(taken <= most, "every {step}th block took {taken} reads");
    }
}

#[test]
fn a_proof_naming_an_index_past_any_feed_is_refused() {
    let (_, source) = writer(40);
    let (_, reader) = replica_of(&source);
    let proof = source.proof(5, 0, false, &mut SparseBits::new()).unwrap();
    let block = source.get(5).unwrap();
    for (at, bad) in [(0, u64::MAX), (1, u64::MAX - 1), (0, 1 << 62)] {
        let mut bent = proof.clone();
        bent.nodes[at].index = bad;
        let err = reader.verify_block(5, Some(&block), &bent).unwrap_err();
        assert!(
            matches!(err, hypercore_feed::Error::InvalidProof { .. }),
            "{err}"
        );
    }
    assert!(reader
        .verify_block(u64::MAX / 2, Some(&block), &proof)
        .is_err());
    assert!(source
        .proof(u64::MAX, 0, false, &mut SparseBits::new())
        .is_err());
    // The real proof still verifies.
    assert!(reader.verify_block(5, Some(&block), &proof).is_ok());
}

/// A block whose proof climbs to a node that is not one of the signed
/// roots is refused, even when the roots it names do verify: otherwise a
/// peer could pair any bytes with a genuine signature and genuine roots.
/// (hyperdb 3.5.0's hypercore accepts it.)
#[test]
fn a_proof_that_does_not_tie_the_block_to_the_signed_roots_is_refused() {
    let (_, source) = writer(13);
    let (_, mut reader) = replica_of(&source);
    // Block 0 with a full proof: the reader now holds the roots of 13
    // blocks (nodes 7, 19 and 24) and their signature.
    fetch(&source, &mut reader, 0, &mut SparseBits::new());
    // Forged bytes for block 9 with the genuine root 24 and signature:
    // the block's path (leaf 18, then 17) never reaches root 19.
    let forged = Proof {
        nodes: vec![source.node(24).unwrap()],
        signature: Some(source.signature(12).unwrap().1),
    };
    let err = reader
        .verify_block(9, Some(b"forged"), &forged)
        .unwrap_err();
    assert!(
        matches!(err, hypercore_feed::Error::InvalidProof { .. }),
        "{err}"
    );
    assert!(!reader.has(9));
    // The genuine block, with the proof the source plans, is taken.
    let block = fetch(&source, &mut reader, 9, &mut SparseBits::new());
    assert_eq!(reader.get(9).unwrap(), block);
}
/// Blocks read out of order: the first block read of a run of 32 reads the
/// run's leaves, and every other block of the run then reads only its
/// bytes (checked against the start of its leaf hash, kept with the run).
#[test]
fn a_block_reader_out_of_order_reads_a_runs_leaves_once() {
    let storage = MemoryStorage::new();
    let mut feed = Feed::open(storage.clone(), FeedOptions::default()).unwrap();
    let blocks: Vec<Vec<u8>> = (0..320u64).map(|i| vec![i as u8; 100]).collect();
    feed.append_batch(&blocks).unwrap();
    let (reads, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = feed.block_reader(Box::new(Counting {
        inner: storage.clone(),
        reads: reads.clone(),
        bytes: bytes.clone(),
    }));
    // Every block once, none after the one before it (read in order, a
    // block would be read ahead); the first of each run and the full roots
    // left of it read beforehand.
    let order: Vec<u64> = (0..320).rev().collect();
    for &index in order.iter().filter(|&&i| i % 32 == 31) {
        assert_eq!(reader.get(index).unwrap(), blocks[index as usize]);
    }
    let (reads_before, bytes_before) =
        (reads.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed));
    let rest: Vec<u64> = order.iter().copied().filter(|i| i % 32 != 31).collect();
    for &index in &rest {
        assert_eq!(reader.get(index).unwrap(), blocks[index as usize]);
    }
    let reads = reads.load(Ordering::Relaxed) - reads_before;
    let bytes = bytes.load(Ordering::Relaxed) - bytes_before;
    assert_eq!(reads, rest.len() as u64, "one read a block");
    assert_eq!(bytes, 100 * rest.len() as u64, "a block's bytes each");
}

/// A block damaged after its run was read (the run keeps where its blocks
/// are and the start of their hashes) is still caught, and the blocks
/// around it still read.
#[test]
fn a_block_damaged_after_its_run_was_read_is_caught() {
    let (storage, source) = writer(100);
    let blocks = source.block_reader(Box::new(storage.clone()));
    // None of them a few blocks after the one before (what is read ahead
    // for such a reader would hold the blocks below, read before damage).
    for index in [70, 33, 3, 90] {
        assert_eq!(blocks.get(index).unwrap(), source.get(index).unwrap());
    }
    // Every byte of block 40 and of block 9, one at a time, changed in the
    // file the reader has open.
    let mut file = storage.open("data").unwrap();
    for index in [40u64, 9] {
        let offset: u64 = (0..index)
            .map(|i| source.get(i).unwrap().len() as u64)
            .sum();
        let len = source.get(index).unwrap().len() as u64;
        for at in offset..offset + len {
            let byte = file.read_at(at, 1).unwrap()[0];
            file.write_all_at(at, &[byte ^ 0x01]).unwrap();
            let err = blocks.get(index).unwrap_err();
            assert!(
                matches!(err, hypercore_feed::Error::BadBlock { .. }),
                "{err}"
            );
            file.write_all_at(at, &[byte]).unwrap();
            assert_eq!(blocks.get(index).unwrap(), source.get(index).unwrap());
        }
        for other in [index - 1, index + 1, index + 20] {
            assert_eq!(blocks.get(other).unwrap(), source.get(other).unwrap());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Blocks read out of order take the offset of their aligned run's
    /// start and the leaves after it; a sparse replica lacks some of those
    /// leaves, and its blocks still read, whatever it holds.
    #[test]
    fn a_block_reader_reads_a_sparse_replica_in_any_order(
        held in proptest::collection::btree_set(0u64..300, 1..120),
        seed in any::<u64>(),
    ) {
        let (_, source) = writer(300);
        let (storage, mut reader) = replica_of(&source);
        let mut sent = SparseBits::new();
        for &index in held.iter().rev() {
            fetch(&source, &mut reader, index, &mut sent);
        }
        reader.flush().unwrap();
        let order = shuffled(held.iter().copied().collect(), seed);
        let blocks = reader.block_reader(Box::new(storage.clone()));
        for index in order {
            prop_assert_eq!(blocks.get(index).unwrap(), source.get(index).unwrap());
        }
    }
}

/// The bytes `get_sorted` gave for each of `indices`: `None` where it gave
/// none.
fn sorted_blocks(reader: &hypercore_feed::BlockReader, indices: &[u64]) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let ranges = reader.get_sorted(indices, &mut out);
    assert_eq!(ranges.len(), indices.len());
    ranges
        .into_iter()
        .map(|r| r.map(|r| out[r].to_vec()))
        .collect()
}

/// Blocks of a window read together: every block asked for, whatever its
/// size (some larger than one read takes) and however far from the one
/// before, comes back whole and in place; a few reads serve many blocks.
#[test]
fn a_block_reader_reads_sorted_blocks_together() {
    let storage = MemoryStorage::new();
    let mut feed = Feed::open(storage.clone(), FeedOptions::default()).unwrap();
    let blocks: Vec<Vec<u8>> = (0..600u64)
        .map(|i| {
            let len = if i % 97 == 5 {
                40_000
            } else {
                50 + (i * 37 % 300) as usize
            };
            vec![i as u8; len]
        })
        .collect();
    feed.append_batch(&blocks).unwrap();
    let seeds = [1u64, 7, 99, 12345];
    for (n, seed) in seeds.into_iter().enumerate() {
        let (reads, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let reader = feed.block_reader(Box::new(Counting {
            inner: storage.clone(),
            reads: reads.clone(),
            bytes,
        }));
        // A window: about one block in `n + 2`, drawn from the seed.
        let mut wanted: Vec<u64> = shuffled((0..600).collect(), seed);
        wanted.truncate(600 / (n + 2));
        wanted.sort_unstable();
        let got = sorted_blocks(&reader, &wanted);
        for (&index, block) in wanted.iter().zip(&got) {
            assert_eq!(
                block.as_ref(),
                Some(&blocks[index as usize]),
                "block {index}"
            );
        }
        // Twice: the second time the runs are known, and no leaf is read.
        let before = reads.load(Ordering::Relaxed);
        assert_eq!(sorted_blocks(&reader, &wanted), got);
        let again = reads.load(Ordering::Relaxed) - before;
        assert!(
            again < wanted.len() as u64 / 3,
            "{} blocks took {again} reads",
            wanted.len()
        );
    }
    // Nothing asked, nothing read.
    let reader = feed.block_reader(Box::new(storage.clone()));
    assert!(sorted_blocks(&reader, &[]).is_empty());
}

/// Blocks read together from a sparse replica: those it holds come back,
/// the others do not (the caller asks `get`, which says they are missing);
/// a damaged block does not come back, and its neighbours do.
#[test]
fn sorted_blocks_that_cannot_be_read_together_are_left_to_get() {
    let (_, source) = writer(300);
    let (storage, mut reader) = replica_of(&source);
    let mut sent = SparseBits::new();
    let held: Vec<u64> = (0..300).filter(|i| i % 3 != 0 && i % 50 < 40).collect();
    for &index in held.iter().rev() {
        fetch(&source, &mut reader, index, &mut sent);
    }
    reader.flush().unwrap();
    let blocks = reader.block_reader(Box::new(storage.clone()));
    let all: Vec<u64> = (0..300).collect();
    for (index, block) in all.iter().zip(sorted_blocks(&blocks, &all)) {
        if let Some(block) = &block {
            assert_eq!(*block, source.get(*index).unwrap(), "block {index}");
        }
        // A block whose run holds every leaf up to it is placed by them,
        // though later blocks of its run are not.
        let run_start = index & !31;
        if (run_start..=*index).all(|i| held.contains(&i)) {
            assert!(block.is_some(), "block {index} held with its run's leaves");
        }
        if held.contains(index) {
            // A held block may still be read alone (a leaf of its run that
            // is missing hides where it starts), but never wrongly.
            assert_eq!(blocks.get(*index).unwrap(), source.get(*index).unwrap());
        } else {
            assert!(blocks.get(*index).is_err(), "block {index} is not held");
        }
    }
    // A leaf claiming two gigabytes (its run then places it, and the
    // blocks after it, past the file's end): nothing is read or made room
    // for past the end, and what does come back is right.
    let (storage, source) = writer(200);
    let mut tree = storage.contents("tree");
    let size_at = 32 + 2 * 150 * 40 + 32;
    tree[size_at..size_at + 8].copy_from_slice(&(1u64 << 31).to_be_bytes());
    storage.set_contents("tree", tree);
    let bytes = Arc::new(AtomicU64::new(0));
    let blocks = source.block_reader(Box::new(Counting {
        inner: storage.clone(),
        reads: Arc::default(),
        bytes: bytes.clone(),
    }));
    let wanted: Vec<u64> = (140..170).collect();
    for (index, block) in wanted.iter().zip(sorted_blocks(&blocks, &wanted)) {
        if let Some(block) = block {
            assert_eq!(block, source.get(*index).unwrap(), "block {index}");
        }
    }
    let read = bytes.load(Ordering::Relaxed);
    assert!(read < 1 << 20, "{read} bytes asked for");
    assert!(blocks.get(150).is_err());
    // A flipped byte in block 100, in the file the reader has open.
    let (storage, source) = writer(200);
    let blocks = source.block_reader(Box::new(storage.clone()));
    let at: u64 = (0..100).map(|i| source.get(i).unwrap().len() as u64).sum();
    let mut file = storage.open("data").unwrap();
    let byte = file.read_at(at, 1).unwrap()[0];
    file.write_all_at(at, &[byte ^ 0x40]).unwrap();
    let wanted: Vec<u64> = (90..110).collect();
    for (index, block) in wanted.iter().zip(sorted_blocks(&blocks, &wanted)) {
        if *index == 100 {
            assert_eq!(block, None);
            let err = blocks.get(100).unwrap_err();
            assert!(
                matches!(err, hypercore_feed::Error::BadBlock { .. }),
                "{err}"
            );
        } else {
            assert_eq!(block, Some(source.get(*index).unwrap()), "block {index}");
        }
    }
}

#[test]
fn a_damaged_leaf_spoils_no_other_block_of_its_run() {
    let (storage, source) = writer(100);
    // Block 40's leaf (tree node 80, after the 32-byte header) says it is
    // a byte longer: blocks after it in its run of 32 would start a byte
    // late if their offset were summed from it. (Block 41's offset is that
    // leaf's size by the tree's own roots, so it cannot be read either way.)
    let mut tree = storage.contents("tree");
    let size_at = 32 + 80 * 40 + 39;
    tree[size_at] = tree[size_at].wrapping_add(1);
    storage.set_contents("tree", tree);
    let blocks = source.block_reader(Box::new(storage.clone()));
    for index in [45, 63, 42, 99, 0, 39] {
        assert_eq!(blocks.get(index).unwrap(), source.get(index).unwrap());
    }
    let err = blocks.get(40).unwrap_err().to_string();
    assert!(err.contains("does not match its hash"), "{err}");
}
