//! Where a feed keeps its six files.
//!
//! A feed reads and writes its files through [`RandomAccess`], opened by a
//! [`Storage`]. [`FileStorage`] keeps them in a folder exactly as hypercore 6
//! does (`key`, `secret_key`, `tree`, `data`, `bitfield`, `signatures`);
//! [`MemoryStorage`] keeps them in memory, for tests and short-lived feeds.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A file that can be read and written at any offset.
pub trait RandomAccess: Send {
    /// Reads exactly `buf.len()` bytes at `offset`; an error of kind
    /// `UnexpectedEof` when the file is shorter.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
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

    /// Reads `len` bytes at `offset` into a new buffer.
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.read_exact_at(offset, &mut buf)?;
        Ok(buf)
    }
}

/// Opens the files of one feed by name (`key`, `tree`, ...).
pub trait Storage: Send + Sync {
    /// Opens (creating if missing) the file `name`.
    fn open(&self, name: &str) -> io::Result<Box<dyn RandomAccess>>;
    /// Where the files live, for error messages (a folder, or `memory`).
    fn describe(&self, name: &str) -> String;
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
        Ok(Box::new(DiskFile { path, file }))
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
}

impl DiskFile {
    fn created(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
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

impl RandomAccess for DiskFile {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
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
        match &self.file {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }
}

type SharedBytes = Arc<Mutex<Vec<u8>>>;

/// A feed's files in memory. Clones share the same files, so a test can keep
/// one to look at the bytes a feed wrote, or reopen the feed on them.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    files: Arc<Mutex<HashMap<String, SharedBytes>>>,
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
}

impl Storage for MemoryStorage {
    fn open(&self, name: &str) -> io::Result<Box<dyn RandomAccess>> {
        let mut files = self.files.lock().expect("memory storage lock");
        let file = files.entry(name.to_string()).or_default().clone();
        Ok(Box::new(MemoryFile { bytes: file }))
    }

    fn describe(&self, name: &str) -> String {
        format!("memory:{name}")
    }
}

struct MemoryFile {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl RandomAccess for MemoryFile {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let bytes = self.bytes.lock().expect("memory file lock");
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
        let mut bytes = self.bytes.lock().expect("memory file lock");
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
        Ok(self.bytes.lock().expect("memory file lock").len() as u64)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        self.bytes.lock().expect("memory file lock").resize(len, 0);
        Ok(())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        Ok(())
    }
}
