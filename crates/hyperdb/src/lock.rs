//! One writer per folder.
//!
//! A writable open takes an exclusive lock on the file `.lock` in the
//! database folder, so that two processes never append to the same feeds
//! (two appends at one index would fork a feed for good). The lock is a
//! POSIX record lock (`fcntl`): the system releases it when the process
//! ends, however it ends, and, unlike `flock`, a child process does not
//! inherit it, so a program that starts other programs (a test suite
//! running Node.js, say) never holds a folder a moment longer than its
//! database stays open. Within one process, a registry of locked folders
//! refuses a second writer, which record locks alone would not.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use rustix::fs::{fcntl_lock, FlockOperation};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// The lock file's name in the database folder.
pub const LOCK_FILE: &str = ".lock";

/// Folders this process holds, by device and inode.
static HELD: Mutex<BTreeSet<(u64, u64)>> = Mutex::new(BTreeSet::new());

fn held() -> std::sync::MutexGuard<'static, BTreeSet<(u64, u64)>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// A folder's writer lock, released when dropped.
#[derive(Debug)]
pub(crate) struct FolderLock {
    /// `None` on a file system without record locks (some network mounts),
    /// where the folder opens unlocked, as the reference's always do.
    file: Option<File>,
    folder: (u64, u64),
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Close the lock file before another thread may open it: closing
        // any descriptor of the file releases this process's lock on it.
        drop(self.file.take());
        held().remove(&self.folder);
    }
}

/// Locks the folder `root` for writing, creating it if needed.
pub(crate) fn lock(root: &Path) -> Result<Option<FolderLock>> {
    let io_error = |source| Error::Io {
        path: root.display().to_string(),
        source,
    };
    if !root.exists() {
        std::fs::create_dir_all(root).map_err(io_error)?;
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            hypercore_feed::storage::sync_dir(parent).map_err(io_error)?;
        }
    }
    let meta = std::fs::metadata(root).map_err(io_error)?;
    let folder = (meta.dev(), meta.ino());
    let mut held = held();
    if held.contains(&folder) {
        return Err(Error::Locked(root.display().to_string()));
    }
    let path = root.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
    let file = match fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Some(file),
        Err(Errno::AGAIN | Errno::ACCESS) => return Err(Error::Locked(root.display().to_string())),
        Err(Errno::NOLCK | Errno::NOTSUP | Errno::NOSYS) => None,
        Err(e) => return Err(io_error(e.into())),
    };
    held.insert(folder);
    Ok(Some(FolderLock { file, folder }))
}
