//! One of a feed's files, with the buffering that keeps replication off the
//! system-call path.
//!
//! Reads may be served from a few windows of the file kept in memory:
//! aligned pages for the tree (the nodes a proof needs sit close together),
//! or a read-ahead window for the data file when blocks are read in order.
//! Writes may be held back ([`File::write_buffered`]) until [`File::flush`],
//! which writes each contiguous run of them with one call. Every read and
//! write sees the writes made before it, buffered or not.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::feed::Error;
use crate::storage::{RandomAccess, Storage};

/// Buffered writes past this many bytes are flushed at once.
const MAX_PENDING: usize = 1 << 20;

/// How reads are cached.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReadCache {
    /// Every read goes to storage.
    None,
    /// Reads load the aligned page around them; `count` pages are kept.
    Pages { size: usize, count: usize },
    /// A read that starts where the previous one ended loads `size` bytes
    /// from there; `count` windows are kept.
    Sequential { size: usize, count: usize },
}

/// A feed file: its storage handle, its length, a few cached windows of its
/// bytes and the writes not yet flushed. Reads take `&self` (several
/// threads may read at once); writes take `&mut self`.
pub(crate) struct File {
    pub(crate) name: String,
    handle: Box<dyn RandomAccess>,
    /// The file's length, buffered writes included, kept up to date so that
    /// bounds checks on hot paths cost no system call.
    len: u64,
    /// The length of what storage holds (buffered writes excluded).
    stored_len: u64,
    policy: ReadCache,
    reads: Mutex<Windows>,
    /// Whether `reads` holds any window.
    has_windows: AtomicBool,
    /// Where the last read ended.
    last_read_end: AtomicU64,
    /// Buffered writes `(offset, start in arena, length)`, in the order made.
    pending: Vec<(u64, usize, usize)>,
    arena: Vec<u8>,
    /// The byte range the buffered writes cover.
    pending_span: (u64, u64),
}

/// Cached windows `(offset, bytes)`, most recently used last.
#[derive(Default)]
struct Windows {
    windows: Vec<(u64, Vec<u8>)>,
}

impl Windows {
    /// Fills `buf` from a cached window holding all of it, if one does.
    fn cached(&mut self, offset: u64, buf: &mut [u8]) -> bool {
        let end = offset + buf.len() as u64;
        let Some(at) = self
            .windows
            .iter()
            .rposition(|(start, bytes)| *start <= offset && end <= start + bytes.len() as u64)
        else {
            return false;
        };
        let (start, bytes) = &self.windows[at];
        let from = (offset - start) as usize;
        buf.copy_from_slice(&bytes[from..from + buf.len()]);
        if at + 1 != self.windows.len() {
            let window = self.windows.remove(at);
            self.windows.push(window);
        }
        true
    }

    fn forget(&mut self, range: (u64, u64)) {
        self.windows
            .retain(|(start, bytes)| !overlaps(range, (*start, start + bytes.len() as u64)));
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl File {
    /// Opens `name` in `storage`, for reading only when `read_only`.
    pub(crate) fn open(
        storage: &dyn Storage,
        name: &str,
        policy: ReadCache,
        read_only: bool,
    ) -> Result<Self, Error> {
        let describe = storage.describe(name);
        let io = |source| Error::Io {
            file: describe.clone(),
            source,
        };
        let handle = if read_only {
            storage.open_read_only(name)
        } else {
            storage.open(name)
        };
        let handle = handle.map_err(io)?;
        let len = handle.len().map_err(io)?;
        Ok(File {
            name: describe,
            handle,
            len,
            stored_len: len,
            policy,
            reads: Mutex::new(Windows::default()),
            has_windows: AtomicBool::new(false),
            last_read_end: AtomicU64::new(u64::MAX),
            pending: Vec::new(),
            arena: Vec::new(),
            pending_span: (u64::MAX, 0),
        })
    }

    pub(crate) fn io(&self, source: io::Error) -> Error {
        Error::Io {
            file: self.name.clone(),
            source,
        }
    }

    pub(crate) fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            file: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file exists (it may be empty).
    pub(crate) fn exists(&self) -> bool {
        self.len > 0 || self.handle.exists()
    }

    /// Reads `len` bytes at `offset`.
    pub(crate) fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0; len];
        self.read_into(offset, &mut buf)?;
        Ok(buf)
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, Windows> {
        // A panic while the lock was held leaves valid (if stale-free) windows.
        self.reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fills `buf` with the bytes at `offset`.
    pub(crate) fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let len = buf.len();
        let end = offset.saturating_add(len as u64);
        if overlaps((offset, end), self.pending_span) {
            return self.read_pending(offset, buf);
        }
        // Where the last read ended lives outside the windows' lock, and a
        // file with no windows is not locked at all: random reads of the
        // data file from several threads then never wait for each other.
        let sequential = self.last_read_end.swap(end, Ordering::Relaxed) == offset;
        if self.has_windows.load(Ordering::Acquire) && self.windows().cached(offset, buf) {
            return Ok(());
        }
        let window = match self.policy {
            ReadCache::Pages { size, .. } if len <= size => {
                let start = offset - offset % size as u64;
                (end <= start + size as u64).then_some((start, size))
            }
            ReadCache::Sequential { size, .. } if sequential && len < size => Some((offset, size)),
            _ => None,
        };
        // A window holds only what storage holds, and nothing that buffered
        // writes will change (a window over them would go stale once they
        // are flushed).
        let window = window.and_then(|(start, size)| {
            let mut limit = self.stored_len.min(start + size as u64);
            if self.pending_span.0 < self.pending_span.1 && start < self.pending_span.1 {
                limit = limit.min(self.pending_span.0);
            }
            (limit >= end).then(|| (start, (limit - start) as usize))
        });
        match window {
            Some((start, size)) => {
                let bytes = self.read_direct(start, size)?;
                let at = (offset - start) as usize;
                buf.copy_from_slice(&bytes[at..at + len]);
                let count = match self.policy {
                    ReadCache::Pages { count, .. } | ReadCache::Sequential { count, .. } => count,
                    ReadCache::None => 0,
                };
                let mut reads = self.windows();
                if reads.windows.len() >= count {
                    reads.windows.remove(0);
                }
                reads.windows.push((start, bytes));
                self.has_windows.store(true, Ordering::Release);
                Ok(())
            }
            _ => {
                let result = self.handle.read_exact_at(offset, buf);
                result.map_err(|e| self.io(e))
            }
        }
    }

    /// A read that overlaps buffered writes: what storage holds, with the
    /// buffered writes laid over it in the order they were made.
    fn read_pending(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let end = offset + buf.len() as u64;
        if end > self.len {
            return Err(self.io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            )));
        }
        buf.fill(0);
        let stored_end = end.min(self.stored_len);
        if stored_end > offset {
            let part = &mut buf[..(stored_end - offset) as usize];
            let result = self.handle.read_exact_at(offset, part);
            result.map_err(|e| self.io(e))?;
        }
        // In the order made, so a later write to the same bytes wins. (Such
        // reads are rare: a feed flushes before others may read it.)
        for &(at, from, len) in &self.pending {
            let (lo, hi) = (at.max(offset), (at + len as u64).min(end));
            if lo < hi {
                let src = from + (lo - at) as usize;
                let dst = (lo - offset) as usize;
                let n = (hi - lo) as usize;
                buf[dst..dst + n].copy_from_slice(&self.arena[src..src + n]);
            }
        }
        Ok(())
    }

    fn read_direct(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let result = self.handle.read_at(offset, len);
        result.map_err(|e| self.io(e))
    }

    fn forget(&mut self, range: (u64, u64)) {
        self.reads
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .forget(range);
    }

    /// Writes `data` at `offset` now.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let range = (offset, offset + data.len() as u64);
        if overlaps(range, self.pending_span) {
            self.flush()?;
        }
        self.forget(range);
        let result = self.handle.write_all_at(offset, data);
        result.map_err(|e| self.io(e))?;
        self.len = self.len.max(range.1);
        self.stored_len = self.stored_len.max(range.1);
        Ok(())
    }

    /// Writes `data` at `offset` by the next [`File::flush`].
    pub(crate) fn write_buffered(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let range = (offset, offset + data.len() as u64);
        self.forget(range);
        self.pending.push((offset, self.arena.len(), data.len()));
        self.arena.extend_from_slice(data);
        self.pending_span = (
            self.pending_span.0.min(range.0),
            self.pending_span.1.max(range.1),
        );
        self.len = self.len.max(range.1);
        if self.arena.len() > MAX_PENDING {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered writes, one call per contiguous run of them.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let arena = std::mem::take(&mut self.arena);
        self.pending_span = (u64::MAX, 0);
        // Lay out the runs by offset, then copy the writes in the order they
        // were made, so a later write to the same bytes wins.
        let mut order: Vec<usize> = (0..pending.len()).collect();
        order.sort_by_key(|&i| pending[i].0);
        let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
        for &i in &order {
            let (offset, _, len) = pending[i];
            let end = offset + len as u64;
            match runs.last_mut() {
                Some((start, bytes)) if offset <= *start + bytes.len() as u64 => {
                    let run_end = (*start + bytes.len() as u64).max(end);
                    bytes.resize((run_end - *start) as usize, 0);
                }
                _ => runs.push((offset, vec![0; len])),
            }
        }
        for (offset, from, len) in pending {
            let at = runs.partition_point(|(start, _)| *start <= offset) - 1;
            let (start, bytes) = &mut runs[at];
            let to = (offset - *start) as usize;
            bytes[to..to + len].copy_from_slice(&arena[from..from + len]);
        }
        for (offset, bytes) in runs {
            self.forget((offset, offset + bytes.len() as u64));
            let result = self.handle.write_all_at(offset, &bytes);
            result.map_err(|e| self.io(e))?;
            self.stored_len = self.stored_len.max(offset + bytes.len() as u64);
        }
        Ok(())
    }

    /// Flushes buffered writes, then asks storage to make the file durable.
    pub(crate) fn sync_all(&mut self) -> Result<(), Error> {
        self.flush()?;
        let result = self.handle.sync_all();
        result.map_err(|e| self.io(e))
    }

    /// Cuts the file to `len` bytes (nothing happens when it is shorter).
    pub(crate) fn truncate(&mut self, len: u64) -> Result<(), Error> {
        self.flush()?;
        if self.len <= len {
            return Ok(());
        }
        self.forget((len, u64::MAX));
        let result = self.handle.truncate(len);
        result.map_err(|e| self.io(e))?;
        self.len = len;
        self.stored_len = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{File, ReadCache};
    use crate::storage::{MemoryStorage, Storage};

    fn file(storage: &MemoryStorage, policy: ReadCache) -> File {
        File::open(storage as &dyn Storage, "f", policy, false).unwrap()
    }

    #[test]
    fn buffered_writes_coalesce_and_later_writes_win() {
        let storage = MemoryStorage::new();
        let mut f = file(&storage, ReadCache::None);
        f.write_buffered(10, b"bbbb").unwrap();
        f.write_buffered(0, b"aaaaaaaaaa").unwrap();
        f.write_buffered(12, b"CC").unwrap();
        f.write_buffered(30, b"z").unwrap();
        assert_eq!(f.len(), 31);
        assert!(
            storage.contents("f").is_empty(),
            "nothing written before flush"
        );
        // A read of buffered bytes sees them.
        assert_eq!(f.read(8, 6).unwrap(), b"aabbCC");
        assert_eq!(f.read(29, 2).unwrap(), [0, b'z'], "a gap reads as zeros");
        assert!(f.read(30, 2).is_err(), "past the end");
        assert!(storage.contents("f").is_empty(), "reads write nothing");
        f.flush().unwrap();
        // Buffered writes over stored bytes, and past their end.
        f.write_buffered(12, b"dd").unwrap();
        f.write_buffered(30, b"yx").unwrap();
        assert_eq!(f.read(10, 6).unwrap(), b"bbdd\0\0");
        assert_eq!(f.read(29, 3).unwrap(), [0, b'y', b'x']);
        f.flush().unwrap();
        let mut want = b"aaaaaaaaaabbdd".to_vec();
        want.resize(30, 0);
        want.extend_from_slice(b"yx");
        assert_eq!(storage.contents("f"), want);
    }

    #[test]
    fn a_window_never_holds_bytes_a_buffered_write_changes() {
        let storage = MemoryStorage::new();
        storage.set_contents("f", vec![7; 200]);
        for policy in [
            ReadCache::Pages { size: 64, count: 2 },
            ReadCache::Sequential { size: 64, count: 2 },
        ] {
            let mut f = file(&storage, policy);
            f.write_buffered(150, b"xx").unwrap();
            f.write_buffered(240, b"yy").unwrap();
            // Reads before the buffered bytes, which could load a window
            // over them.
            assert_eq!(f.read(120, 10).unwrap(), [7; 10]);
            assert_eq!(f.read(130, 4).unwrap(), [7; 4]);
            assert_eq!(f.read(150, 2).unwrap(), b"xx");
            f.flush().unwrap();
            assert_eq!(f.read(148, 4).unwrap(), [7, 7, b'x', b'x']);
            assert_eq!(f.read(238, 4).unwrap(), [0, 0, b'y', b'y']);
            storage.set_contents("f", vec![7; 200]);
        }
    }

    #[test]
    fn cached_windows_follow_writes() {
        let storage = MemoryStorage::new();
        storage.set_contents("f", (0..=255u8).cycle().take(10_000).collect());
        for policy in [
            ReadCache::Pages { size: 64, count: 2 },
            ReadCache::Sequential { size: 64, count: 2 },
        ] {
            let mut f = file(&storage, policy);
            assert_eq!(f.read(100, 4).unwrap(), [100, 101, 102, 103]);
            assert_eq!(f.read(104, 4).unwrap(), [104, 105, 106, 107]);
            f.write(105, b"x").unwrap();
            assert_eq!(f.read(104, 3).unwrap(), [104, b'x', 106]);
            f.write_buffered(106, b"y").unwrap();
            assert_eq!(f.read(104, 3).unwrap(), [104, b'x', b'y']);
            // Reads at the end of the file and across windows.
            assert_eq!(f.read(9_998, 2).unwrap(), [14, 15]);
            assert_eq!(f.read(60, 10).unwrap(), (60..70).collect::<Vec<u8>>());
            assert!(f.read(9_999, 2).is_err());
            f.write(105, &[105, 106]).unwrap();
        }
    }
}
