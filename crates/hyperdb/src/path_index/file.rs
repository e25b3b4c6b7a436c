//! The index of paths kept on disk between processes: `index/paths-<covered>`,
//! written whole when a database is closed, so that a writer opened again
//! reads it back (tens of milliseconds for a million keys) instead of
//! building it from the feed (a second or so).
//!
//! It is as disposable as the index it holds: a file that does not check
//! is removed and the index is built from the feed as before. A file is
//! used only for the feed it names, and only while that feed still holds
//! what the file covered: the header keeps a hash of the feed's merkle
//! roots at that length, compared with the feed's when the file is read.
//! Everything read is checked before it is used (a checksum over the whole
//! file, then every number in range), and going down the tree checks that
//! positions grow, so that no file, however damaged, can make a put panic
//! or loop: a tree found broken is given up.
//!
//! Layout (integers little-endian):
//! ```text
//! header    magic (16) | feed key (32) | roots hash (32) | covered (8)
//!           | root | root's latest | nodes | leaves | folders | 0 (4 each)
//! nodes     nodes x (pos, children[5], latest[5])   (4 bytes each)
//! leaves    leaves x (folder, last[2])
//! folders   folders x (parent (4), component hash (8))
//! checksum  BLAKE2b-256 of the header and the tables
//! ```

use std::io;

use hypercore_feed::storage::RandomAccess;

use super::{Held, Inner, Leaf, DIGITS, LEAF, NONE, NO_COMPONENTS};
use crate::db::DbReader;

/// Files are named this, then how many entries they cover in 16 hex
/// digits.
pub(super) const PREFIX: &str = "paths-";
const MAGIC: [u8; 16] = *b"hyperdb paths v1";
const HEADER: usize = 16 + 32 + 32 + 8 + 6 * 4;
const INNER: usize = 4 * (1 + 2 * DIGITS);
const LEAF_BYTES: usize = 12;
const DIR: usize = 12;
const CHECKSUM: usize = 32;
/// Bytes read or written at once.
const CHUNK: usize = 1 << 20;

/// Writes `held` (which covers entries of the feed of `db`'s only writer)
/// as a new file, then removes the older ones.
pub(super) fn save(db: &DbReader, held: &Held) -> io::Result<()> {
    let roots = roots_hash(db, held.covered)
        .ok_or_else(|| io::Error::other("the feed's roots cannot be read"))?;
    let name = format!("{PREFIX}{:016x}", held.covered);
    if let Err(e) = write(db, &name, held, &roots) {
        // What was written of it is of no use.
        let _ = db.storage.remove_index_file(&name);
        return Err(e);
    }
    for old in files(db).into_iter().filter(|n| *n != name) {
        let _ = db.storage.remove_index_file(&old);
    }
    Ok(())
}

fn write(db: &DbReader, name: &str, held: &Held, roots: &[u8; 32]) -> io::Result<()> {
    let mut file = db.storage.index_file(name, false)?;
    // What a crash may have left under this name goes.
    file.truncate(0)?;
    let mut header = [0u8; HEADER];
    header[..16].copy_from_slice(&MAGIC);
    header[16..48].copy_from_slice(db.key());
    header[48..80].copy_from_slice(roots);
    header[80..88].copy_from_slice(&held.covered.to_le_bytes());
    let words = [
        held.root,
        held.root_latest,
        held.inner.len,
        held.leaves.len,
        u32::try_from(held.dirs.len()).map_err(|_| io::Error::other("too many folders"))?,
        0,
    ];
    for (at, word) in words.iter().enumerate() {
        header[88 + 4 * at..92 + 4 * at].copy_from_slice(&word.to_le_bytes());
    }
    let mut out = Writer {
        file,
        buf: Vec::with_capacity(CHUNK),
        offset: HEADER as u64,
        hasher: checksum(),
    };
    out.hasher.update(&header);
    for node in held.inner.iter() {
        let mut words = [0u32; 1 + 2 * DIGITS];
        words[0] = node.pos;
        words[1..=DIGITS].copy_from_slice(&node.children);
        words[1 + DIGITS..].copy_from_slice(&node.latest);
        for word in words {
            out.put(&word.to_le_bytes())?;
        }
    }
    for leaf in held.leaves.iter() {
        out.put(&leaf.dir.to_le_bytes())?;
        out.put(&leaf.last[0].to_le_bytes())?;
        out.put(&leaf.last[1].to_le_bytes())?;
    }
    for &(parent, hash) in &held.dirs {
        out.put(&parent.to_le_bytes())?;
        out.put(&hash.to_le_bytes())?;
    }
    out.flush()?;
    let sum = out.hasher.finalize();
    let mut file = out.file;
    file.write_all_at(out.offset, sum.as_bytes())?;
    // The header last: a file cut short has none, or the wrong length.
    file.write_all_at(0, &header)
}

/// Bytes on their way to a file, hashed as they go.
struct Writer {
    file: Box<dyn RandomAccess>,
    buf: Vec<u8>,
    offset: u64,
    hasher: blake2b_simd::State,
}

impl Writer {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hasher.update(&self.buf);
        self.file.write_all_at(self.offset, &self.buf)?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// The newest file that checks, for the feed of `db`'s only writer as it
/// is now, read back, if its tables take at most `max_bytes`. Files that
/// do not check are removed when `remove` (a writer's), else left.
pub(super) fn load(db: &DbReader, max_bytes: u64, remove: bool) -> Option<Held> {
    let mut names = files(db);
    names.sort_unstable_by(|a, b| b.cmp(a));
    let mut found = None;
    for name in names {
        if found.is_none() {
            found = read(db, &name, max_bytes);
            if found.is_some() {
                continue;
            }
        }
        if remove {
            let _ = db.storage.remove_index_file(&name);
        }
    }
    found
}

/// Removes every file of the index.
pub(super) fn remove_all(db: &DbReader) {
    for name in files(db) {
        let _ = db.storage.remove_index_file(&name);
    }
}

fn files(db: &DbReader) -> Vec<String> {
    db.storage
        .index_files()
        .into_iter()
        .filter(|n| n.starts_with(PREFIX))
        .collect()
}

fn read(db: &DbReader, name: &str, max_bytes: u64) -> Option<Held> {
    let file = db.storage.index_file(name, true).ok()?;
    let mut header = [0u8; HEADER];
    file.read_exact_at(0, &mut header).ok()?;
    if header[..16] != MAGIC || header[16..48] != db.key()[..] {
        return None;
    }
    let covered = u64::from_le_bytes(header[80..88].try_into().expect("8 bytes"));
    let word = |i| word_at(&header[88..], i);
    let (root, root_latest, inner, leaves, dirs) = (word(0), word(1), word(2), word(3), word(4));
    if covered == 0
        || covered >= u64::from(NONE)
        || leaves >= LEAF
        // Each branching node has two children or more.
        || inner >= leaves.max(1)
        || dirs == 0
    {
        return None;
    }
    let body = inner as u64 * INNER as u64 + u64::from(leaves) * LEAF_BYTES as u64;
    let body = body + u64::from(dirs) * DIR as u64;
    if body > max_bytes {
        return None;
    }
    if file.len().ok()? != HEADER as u64 + body + CHECKSUM as u64 {
        return None;
    }
    if roots_hash(db, covered)? != header[48..80] {
        return None;
    }
    let mut hasher = checksum();
    hasher.update(&header);
    let mut reader = Reader {
        file: &*file,
        offset: HEADER as u64,
        hasher,
    };
    let mut held = Held::new();
    held.covered = covered;
    held.root = root;
    held.root_latest = root_latest;
    reader
        .records(inner as usize, INNER, |r| {
            let word = |i| word_at(r, i);
            held.inner.push(Inner {
                pos: word(0),
                children: std::array::from_fn(|d| word(1 + d)),
                latest: std::array::from_fn(|d| word(1 + DIGITS + d)),
            });
        })
        .ok()?;
    reader
        .records(leaves as usize, LEAF_BYTES, |r| {
            held.leaves.push(Leaf {
                dir: word_at(r, 0),
                last: [word_at(r, 1), word_at(r, 2)],
            });
        })
        .ok()?;
    held.dirs.clear();
    held.dirs.reserve_exact(dirs as usize);
    reader
        .records(dirs as usize, DIR, |r| {
            let parent = word_at(r, 0);
            let hash = u64::from_le_bytes(r[4..].try_into().expect("8 bytes"));
            held.dirs.push((parent, hash));
        })
        .ok()?;
    let mut sum = [0u8; CHECKSUM];
    file.read_exact_at(reader.offset, &mut sum).ok()?;
    if reader.hasher.finalize().as_bytes() != sum {
        return None;
    }
    if !well_formed(&held) {
        return None;
    }
    held.dir_ids = held
        .dirs
        .iter()
        .enumerate()
        .skip(1)
        .map(|(id, &key)| (key, id as u32))
        .collect();
    Some(held)
}

/// The `i`th little-endian 32-bit word of `record`.
fn word_at(record: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(record[4 * i..4 * i + 4].try_into().expect("4 bytes"))
}

/// Reads tables record by record, hashing what it reads.
struct Reader<'a> {
    file: &'a dyn RandomAccess,
    offset: u64,
    hasher: blake2b_simd::State,
}

impl Reader<'_> {
    /// `count` records of `size` bytes each, handed to `each` in order.
    fn records(
        &mut self,
        count: usize,
        size: usize,
        mut each: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        let per_chunk = (CHUNK / size).max(1);
        let mut buf = vec![0u8; per_chunk.min(count) * size];
        let mut left = count;
        while left > 0 {
            let n = left.min(per_chunk);
            let bytes = &mut buf[..n * size];
            self.file.read_exact_at(self.offset, bytes)?;
            self.hasher.update(bytes);
            bytes.chunks_exact(size).for_each(&mut each);
            self.offset += bytes.len() as u64;
            left -= n;
        }
        Ok(())
    }
}

/// Whether what was read can be used without a panic: every number in
/// range (in one pass over each table), folders after the folders they
/// are in, and every branching node with two children or more. That
/// positions grow going down is checked as the tree is gone down
/// ([`super::Divergence::Broken`]); that the tree says what the feed
/// holds, by the checksum and the roots' hash.
fn well_formed(held: &Held) -> bool {
    let covered = held.covered;
    let entry = |seq: u32| u64::from(seq) < covered;
    let (inner, leaves, dirs) = (held.inner.len, held.leaves.len, held.dirs.len() as u32);
    let child = |at: u32| {
        if at & LEAF != 0 {
            at & !LEAF < leaves
        } else {
            at < inner
        }
    };
    if held.dirs[0] != (NONE, 0)
        || held.dirs[1..]
            .iter()
            .enumerate()
            .any(|(at, &(parent, _))| parent > at as u32)
    {
        return false;
    }
    if held
        .leaves
        .iter()
        .any(|leaf| leaf.dir != NO_COMPONENTS && leaf.dir >= dirs)
    {
        return false;
    }
    if held.root == NONE {
        return held.root_latest == NONE && inner == 0 && leaves == 0;
    }
    if !child(held.root) || !entry(held.root_latest) {
        return false;
    }
    held.inner.iter().all(|node| {
        let mut children = 0;
        for (&at, &latest) in node.children.iter().zip(&node.latest) {
            if at == NONE && latest == NONE {
                continue;
            }
            if at == NONE || !child(at) || !entry(latest) {
                return false;
            }
            children += 1;
        }
        children >= 2
    })
}

/// A hash of the merkle roots of the feed of `db`'s only writer at
/// `length` entries: what the feed held when the file was written.
fn roots_hash(db: &DbReader, length: u64) -> Option<[u8; 32]> {
    let state = db.state();
    let feed = &state.writers.first()?.feed;
    if length > feed.len() {
        return None;
    }
    let mut hasher = checksum();
    for root in feed.roots_at(length).ok()? {
        hasher.update(&root.index.to_le_bytes());
        hasher.update(&root.hash);
        hasher.update(&root.size.to_le_bytes());
    }
    hasher.finalize().as_bytes().try_into().ok()
}

fn checksum() -> blake2b_simd::State {
    blake2b_simd::Params::new().hash_length(CHECKSUM).to_state()
}
