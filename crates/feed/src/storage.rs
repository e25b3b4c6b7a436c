//! Where a feed keeps its six files.
//!
//! A feed reads and writes its files through [`RandomAccess`], opened by a
//! [`Storage`]. [`FileStorage`] keeps them in a folder exactly as hypercore 6
//! does (`key`, `secret_key`, `tree`, `data`, `bitfield`, `signatures`);
//! [`MemoryStorage`] keeps them in memory, for tests and short-lived feeds.
//!
//! A file is opened for writing ([`Storage::open`], created on its first
//! write) or for reading only ([`Storage::open_read_only`]: nothing is ever
//! created or written, so a folder the user may only read, or a read-only
//! file system, works).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The files of a feed, as hypercore 6 names them.
pub const FEED_FILES: [&str; 6] = [
    "key",
    "secret_key",
    "tree",
    "data",
    "bitfield",
    "signatures",
];

/// A file that can be read and written at any offset.
pub trait RandomAccess: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`; an error of kind
    /// `UnexpectedEof` when the file is shorter. Reads take `&self`: a
    /// positional read, so several threads may read one file at once.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes `data` at `offset`, growing the file (with zeros) as needed.
    fn write_all_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// The current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Flushes written data to durable storage.
    fn sync_all(&mut self) -> io::Result<()>;
    /// Whether the file exists (an empty file does; one never written to
    /// does not).
    fn exists(&self) -> bool {
        true
    }

    /// Reads `len` bytes at `offset` into a new buffer.
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.read_exact_at(offset, &mut buf)?;
        Ok(buf)
    }
}

/// Opens the files of one feed by name (`key`, `tree`, ...).
pub trait Storage: Send + Sync {
    /// Opens the file `name` for reading and writing; a missing file is
    /// created by its first write.
    fn open(&self, name: &str) -> io::Result<Box<dyn RandomAccess>>;
    /// Opens the file `name` for reading only: a missing file reads as
    /// empty, nothing is created, and every write fails.
    fn open_read_only(&self, name: &str) -> io::Result<Box<dyn RandomAccess>>;
    /// Where the files live, for error messages (a folder, or `memory`).
    fn describe(&self, name: &str) -> String;
}

/// The error a write to a file opened read-only gets.
fn read_only_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the file was opened read-only",
    )
}

/// A file opened read-only that does not exist: empty, and unwritable.
struct Absent;

impl RandomAccess for Absent {
    fn read_exact_at(&self, _offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "read past the end of the file",
        ))
    }

    fn write_all_at(&mut self, _offset: u64, _data: &[u8]) -> io::Result<()> {
        Err(read_only_error())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(0)
    }

    fn truncate(&mut self, _len: u64) -> io::Result<()> {
        Err(read_only_error())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn exists(&self) -> bool {
        false
    }
}

/// A feed's files in a folder on disk.
#[derive(Clone, Debug)]
pub struct FileStorage {
    dir: PathBuf,
}

impl FileStorage {
    /// Files in `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStorage { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Storage for FileStorage {
    fn open(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        let path = self.dir.join(name);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Box::new(DiskFile {
            path,
            file,
            read_only: false,
            unsynced_dirs: Vec::new(),
        }))
    }

    fn open_read_only(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        let path = self.dir.join(name);
        match std::fs::File::open(&path) {
            Ok(file) => Ok(Box::new(DiskFile {
                path,
                file: Some(file),
                read_only: true,
                unsynced_dirs: Vec::new(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(Absent)),
            Err(e) => Err(e),
        }
    }

    fn describe(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A file created on first write, as hypercore does (a feed that never
/// appended has no `data` file).
struct DiskFile {
    path: PathBuf,
    file: Option<File>,
    read_only: bool,
    /// Folders whose entries changed when this file (and the folders above
    /// it) were created: the next `sync_all` makes those entries durable too.
    unsynced_dirs: Vec<PathBuf>,
}

impl DiskFile {
    fn created(&mut self) -> io::Result<&File> {
        if self.read_only {
            return Err(read_only_error());
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                let mut missing = Vec::new();
                let mut at = Some(dir);
                while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                    missing.push(d.to_path_buf());
                    at = d.parent();
                }
                std::fs::create_dir_all(dir)?;
                // Each new folder is an entry in its parent; the file is an
                // entry in `dir`.
                self.unsynced_dirs.push(dir.to_path_buf());
                for d in missing {
                    if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
                        self.unsynced_dirs.push(parent.to_path_buf());
                    }
                }
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?;
            self.file = Some(file);
        }
        Ok(self.file.as_ref().expect("just opened"))
    }
}

/// Makes a folder's entries (files created or renamed in it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl RandomAccess for DiskFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match &self.file {
            Some(file) => std::os::unix::fs::FileExt::read_exact_at(file, buf, offset),
            None if buf.is_empty() => Ok(()),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            )),
        }
    }

    fn write_all_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self.created()?, data, offset)
    }

    fn len(&self) -> io::Result<u64> {
        match &self.file {
            Some(file) => Ok(file.metadata()?.len()),
            None => Ok(0),
        }
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.created()?.set_len(len)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        match &self.file {
            Some(file) => file.sync_data()?,
            None => return Ok(()),
        }
        for dir in std::mem::take(&mut self.unsynced_dirs) {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    fn exists(&self) -> bool {
        self.file.is_some()
    }
}

type SharedBytes = Arc<Mutex<Vec<u8>>>;
type Files = Arc<Mutex<HashMap<String, SharedBytes>>>;

/// A feed's files in memory. Clones share the same files, so a test can keep
/// one to look at the bytes a feed wrote, or reopen the feed on them.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    files: Files,
}

impl MemoryStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the bytes of file `name` (empty if it was never opened).
    pub fn contents(&self, name: &str) -> Vec<u8> {
        let files = self.files.lock().expect("memory storage lock");
        files
            .get(name)
            .map(|f| f.lock().expect("memory file lock").clone())
            .unwrap_or_default()
    }

    /// Replaces the bytes of file `name`.
    pub fn set_contents(&self, name: &str, bytes: Vec<u8>) {
        let mut files = self.files.lock().expect("memory storage lock");
        files.insert(name.to_string(), Arc::new(Mutex::new(bytes)));
    }

    /// An independent copy of every file (clones share the files; a copy
    /// does not), so a test can start many runs from one prepared state.
    pub fn deep_copy(&self) -> MemoryStorage {
        let files = self.files.lock().expect("memory storage lock");
        let copied = files
            .iter()
            .map(|(name, bytes)| {
                let bytes = bytes.lock().expect("memory file lock").clone();
                (name.clone(), Arc::new(Mutex::new(bytes)))
            })
            .collect();
        MemoryStorage {
            files: Arc::new(Mutex::new(copied)),
        }
    }

    /// Whether file `name` exists (a file is created by its first write).
    pub fn exists(&self, name: &str) -> bool {
        self.files
            .lock()
            .expect("memory storage lock")
            .contains_key(name)
    }

    /// Whether any file exists (a file is created by its first write).
    pub fn is_empty(&self) -> bool {
        self.files.lock().expect("memory storage lock").is_empty()
    }

    /// The names of the files that exist, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .files
            .lock()
            .expect("memory storage lock")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Removes file `name`, as unlinking a file does: handles that hold
    /// its bytes keep reading them.
    pub fn remove(&self, name: &str) {
        self.files.lock().expect("memory storage lock").remove(name);
    }
}

impl Storage for MemoryStorage {
    fn open(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        let files = self.files.lock().expect("memory storage lock");
        let file = files.get(name).cloned();
        Ok(Box::new(MemoryFile {
            bytes: file,
            created: Some((self.files.clone(), name.to_string())),
        }))
    }

    fn open_read_only(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        let files = self.files.lock().expect("memory storage lock");
        Ok(match files.get(name) {
            Some(file) => Box::new(MemoryFile {
                bytes: Some(file.clone()),
                created: None,
            }),
            None => Box::new(Absent),
        })
    }

    fn describe(&self, name: &str) -> String {
        format!("memory:{name}")
    }
}

/// A file in memory, created in its storage by the first write (as a file
/// on disk is); `created` is `None` for a file opened read-only.
struct MemoryFile {
    bytes: Option<SharedBytes>,
    created: Option<(Files, String)>,
}

impl MemoryFile {
    /// The file's bytes, if it exists (another handle may have created it).
    fn existing(&self) -> Option<SharedBytes> {
        if let Some(bytes) = &self.bytes {
            return Some(bytes.clone());
        }
        let (files, name) = self.created.as_ref()?;
        files
            .lock()
            .expect("memory storage lock")
            .get(name)
            .cloned()
    }

    fn bytes(&mut self) -> io::Result<&SharedBytes> {
        if self.bytes.is_none() {
            let (files, name) = self.created.as_ref().ok_or_else(read_only_error)?;
            let mut files = files.lock().expect("memory storage lock");
            self.bytes = Some(files.entry(name.clone()).or_default().clone());
        }
        Ok(self.bytes.as_ref().expect("just made"))
    }
}

impl RandomAccess for MemoryFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let Some(bytes) = self.existing() else {
            return Absent.read_exact_at(offset, buf);
        };
        let bytes = bytes.lock().expect("memory file lock");
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(buf.len()) {
            Some(end) if end <= bytes.len() => {
                buf.copy_from_slice(&bytes[start..end]);
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            )),
        }
    }

    fn write_all_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.created.is_none() {
            return Err(read_only_error());
        }
        let mut bytes = self.bytes()?.lock().expect("memory file lock");
        let start = usize::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let end = start + data.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[start..end].copy_from_slice(data);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self
            .existing()
            .map_or(0, |b| b.lock().expect("memory file lock").len() as u64))
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if self.created.is_none() {
            return Err(read_only_error());
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        self.bytes()?
            .lock()
            .expect("memory file lock")
            .resize(len, 0);
        Ok(())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn exists(&self) -> bool {
        self.existing().is_some()
    }
}

impl<S: Storage + ?Sized> Storage for Box<S> {
    fn open(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        (**self).open(name)
    }

    fn open_read_only(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        (**self).open_read_only(name)
    }

    fn describe(&self, name: &str) -> String {
        (**self).describe(name)
    }
}
