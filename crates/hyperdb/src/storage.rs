//! Where a database keeps its feeds, and how new ones come into being.
//!
//! A database is a folder of feed folders (`source/`, `local/`,
//! `peers/<discovery key>/`, `content/<discovery key>/`), on disk or in
//! memory, and of the derived indexes' files (`index/`: the key index's,
//! see [`crate::key_index`], and the index of paths', see
//! [`crate::path_index`]). The feeds whose keys cannot be found again if
//! lost, `source/` and `local/` with their secret keys, are created whole or not at all:
//! built in a staging folder (`.new-source/`), synced, then renamed into
//! place, so a crash leaves either no feed or a whole one.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hypercore_feed::fault::{FaultStorage, Faults};
use hypercore_feed::storage::FEED_FILES;
use hypercore_feed::{Durability, Feed, FeedOptions, FileStorage, MemoryStorage, Storage};

use crate::error::{Error, Result};
use crate::lock::FolderLock;

/// Staging folders start with this (then the feed's folder name).
const STAGING: &str = ".new-";

/// The folder of the derived indexes ([`crate::key_index`],
/// [`crate::path_index`]): never a feed's, and nothing in it is needed to
/// read the database.
pub(crate) const INDEX_DIR: &str = "index";

#[derive(Clone, Debug)]
enum Place {
    Dir(PathBuf),
    Memory(Arc<Mutex<HashMap<String, MemoryStorage>>>),
}

/// Where a database keeps its feeds: a folder laid out as hyperdb 3.5.0
/// lays it out, or memory.
///
/// ```
/// use hyperdb::{Db, DbStorage, OpenOptions};
/// let storage = DbStorage::memory();
/// let db = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
/// db.put("a", b"1").unwrap();
/// drop(db);
/// // Clones share the feeds.
/// let mut again = Db::open_storage(storage, OpenOptions::default()).unwrap();
/// assert_eq!(again.get("a").unwrap().len(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct DbStorage {
    place: Place,
    faults: Option<Faults>,
}

impl DbStorage {
    /// The folder `dir` (created when a database is created there).
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        DbStorage {
            place: Place::Dir(dir.into()),
            faults: None,
        }
    }

    /// Fresh in-memory storage, for tests and short-lived replicas. Clones
    /// share the feeds.
    pub fn memory() -> Self {
        DbStorage {
            place: Place::Memory(Default::default()),
            faults: None,
        }
    }

    /// The same storage with every write passing through `faults`, which
    /// can fail, kill or cut the power at any write point (crash tests; see
    /// [`hypercore_feed::fault`]).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = Some(faults);
        self
    }

    /// An independent copy of in-memory storage (a folder is not copied:
    /// the copy is the same folder), so a test can start many runs from one
    /// prepared database.
    pub fn deep_copy(&self) -> Self {
        let place = match &self.place {
            Place::Dir(dir) => Place::Dir(dir.clone()),
            Place::Memory(feeds) => {
                let feeds = feeds.lock().expect("memory storage lock");
                let copied = feeds
                    .iter()
                    .map(|(dir, storage)| (dir.clone(), storage.deep_copy()))
                    .collect();
                Place::Memory(Arc::new(Mutex::new(copied)))
            }
        };
        DbStorage {
            place,
            faults: self.faults.clone(),
        }
    }

    /// The files of the feed in folder `dir`, for in-memory storage (shared:
    /// changing them changes the database's), so tests can look at them or
    /// damage them. `None` for a folder on disk or a feed never opened.
    pub fn memory_feed(&self, dir: &str) -> Option<MemoryStorage> {
        match &self.place {
            Place::Memory(feeds) => feeds.lock().expect("memory storage lock").get(dir).cloned(),
            Place::Dir(_) => None,
        }
    }

    /// Replaces the files of the feed in folder `dir` of in-memory storage
    /// (nothing happens for a folder on disk).
    pub fn set_memory_feed(&self, dir: &str, files: MemoryStorage) {
        if let Place::Memory(feeds) = &self.place {
            feeds
                .lock()
                .expect("memory storage lock")
                .insert(dir.to_string(), files);
        }
    }

    /// The folder, for storage on disk.
    pub fn path(&self) -> Option<&Path> {
        match &self.place {
            Place::Dir(dir) => Some(dir),
            Place::Memory(_) => None,
        }
    }

    /// The storage of the feed in folder `dir`.
    fn feed_storage(&self, dir: &str) -> Box<dyn Storage> {
        let inner: Box<dyn Storage> = match &self.place {
            Place::Dir(root) => Box::new(FileStorage::new(root.join(dir))),
            Place::Memory(feeds) => Box::new(
                feeds
                    .lock()
                    .expect("memory storage lock")
                    .entry(dir.to_string())
                    .or_default()
                    .clone(),
            ),
        };
        match &self.faults {
            Some(faults) => Box::new(FaultStorage::labelled(inner, faults.clone(), dir)),
            None => inner,
        }
    }

    /// A reader of the flushed blocks of `feed`, the feed in folder `dir`,
    /// for other threads than the one writing it.
    pub(crate) fn block_reader(&self, dir: &str, feed: &Feed) -> hypercore_feed::BlockReader {
        feed.block_reader(self.feed_storage(dir))
    }

    /// Opens the feed in folder `dir`.
    pub(crate) fn open_feed(
        &self,
        dir: &str,
        options: FeedOptions,
    ) -> hypercore_feed::Result<Feed> {
        Feed::open(self.feed_storage(dir), options)
    }

    /// File `name` of the index folder, opened for writing (created by its
    /// first write) or, when `read_only`, only to read.
    pub(crate) fn index_file(
        &self,
        name: &str,
        read_only: bool,
    ) -> io::Result<Box<dyn hypercore_feed::storage::RandomAccess>> {
        let storage = self.feed_storage(INDEX_DIR);
        if read_only {
            storage.open_read_only(name)
        } else {
            storage.open(name)
        }
    }

    /// The names of the files in the index folder.
    pub(crate) fn index_files(&self) -> Vec<String> {
        match &self.place {
            Place::Dir(root) => match std::fs::read_dir(root.join(INDEX_DIR)) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect(),
                Err(_) => Vec::new(),
            },
            Place::Memory(feeds) => feeds
                .lock()
                .expect("memory storage lock")
                .get(INDEX_DIR)
                .map(|s| s.names())
                .unwrap_or_default(),
        }
    }

    /// Removes file `name` of the index folder; readers that opened it
    /// keep reading it.
    pub(crate) fn remove_index_file(&self, name: &str) -> io::Result<()> {
        match &self.place {
            Place::Dir(root) => match std::fs::remove_file(root.join(INDEX_DIR).join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Place::Memory(feeds) => {
                if let Some(s) = feeds.lock().expect("memory storage lock").get(INDEX_DIR) {
                    s.remove(name);
                }
                Ok(())
            }
        }
    }

    /// Whether a database is here (whole or damaged): its `source` feed
    /// has any file.
    pub fn holds_database(&self) -> bool {
        self.has_feed("source")
    }

    /// Whether folder `dir` holds a feed, whole or damaged: any of a feed's
    /// files exists there.
    pub(crate) fn has_feed(&self, dir: &str) -> bool {
        FEED_FILES.iter().any(|name| self.has_file(dir, name))
    }

    /// Whether file `name` of the feed in folder `dir` exists.
    pub(crate) fn has_file(&self, dir: &str, name: &str) -> bool {
        match &self.place {
            Place::Dir(root) => root.join(dir).join(name).exists(),
            Place::Memory(feeds) => feeds
                .lock()
                .expect("memory storage lock")
                .get(dir)
                .is_some_and(|s| s.exists(name)),
        }
    }

    /// Creates the feed in folder `dir` whole or not at all: `build` runs on
    /// it in a staging folder, every file is synced, and the folder is
    /// renamed into place.
    pub(crate) fn create_feed(
        &self,
        dir: &str,
        options: FeedOptions,
        build: impl FnOnce(&mut Feed) -> Result<()>,
    ) -> Result<()> {
        let staging = format!("{STAGING}{dir}");
        self.remove(&staging)?;
        let options = FeedOptions {
            durability: Durability::Fsync,
            read_only: false,
            create_if_missing: true,
            ..options
        };
        let mut feed = self.open_feed(&staging, options)?;
        build(&mut feed)?;
        feed.sync_all()?;
        drop(feed);
        self.publish(&staging, dir)
    }

    /// Moves the synced feed folder `staging` to `dir` in one step.
    fn publish(&self, staging: &str, dir: &str) -> Result<()> {
        if let Some(faults) = &self.faults {
            faults.point().map_err(|e| self.io_error(dir, e))?;
        }
        match &self.place {
            Place::Dir(root) => {
                let from = root.join(staging);
                let to = root.join(dir);
                // Syncing the feed synced the staging folder's entries (each
                // file's first sync syncs the folders made for it).
                std::fs::rename(&from, &to).map_err(|e| {
                    if e.kind() == io::ErrorKind::DirectoryNotEmpty {
                        Error::Io {
                            path: to.display().to_string(),
                            source: io::Error::new(
                                e.kind(),
                                "the folder holds files that are not a feed's: move them away",
                            ),
                        }
                    } else {
                        self.io_error(dir, e)
                    }
                })?;
                let parent = to.parent().unwrap_or(root);
                hypercore_feed::storage::sync_dir(parent).map_err(|e| self.io_error(dir, e))?;
            }
            Place::Memory(feeds) => {
                let mut feeds = feeds.lock().expect("memory storage lock");
                let staged = feeds.remove(staging).unwrap_or_default();
                feeds.insert(dir.to_string(), staged);
            }
        }
        if let Some(faults) = &self.faults {
            faults.forget(&format!("{staging}/"));
        }
        Ok(())
    }

    /// Removes what an interrupted creation left behind.
    pub(crate) fn clean_staging(&self) -> Result<()> {
        let leftovers: Vec<String> = match &self.place {
            Place::Dir(root) => match std::fs::read_dir(root) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| name.starts_with(STAGING))
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(self.io_error("", e)),
            },
            Place::Memory(feeds) => feeds
                .lock()
                .expect("memory storage lock")
                .keys()
                .filter(|name| name.starts_with(STAGING))
                .cloned()
                .collect(),
        };
        for dir in leftovers {
            self.remove(&dir)?;
        }
        Ok(())
    }

    fn remove(&self, dir: &str) -> Result<()> {
        match &self.place {
            Place::Dir(root) => match std::fs::remove_dir_all(root.join(dir)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.io_error(dir, e)),
                _ => Ok(()),
            },
            Place::Memory(feeds) => {
                feeds.lock().expect("memory storage lock").remove(dir);
                Ok(())
            }
        }
    }

    /// Takes the folder's writer lock (none for memory storage).
    pub(crate) fn lock(&self) -> Result<Option<FolderLock>> {
        match &self.place {
            Place::Dir(root) => crate::lock::lock(root),
            Place::Memory(_) => Ok(None),
        }
    }

    fn io_error(&self, dir: &str, source: io::Error) -> Error {
        let path = match &self.place {
            Place::Dir(root) => root.join(dir).display().to_string(),
            Place::Memory(_) => format!("memory:{dir}"),
        };
        Error::Io { path, source }
    }

    /// Where the database lives, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.place {
            Place::Dir(root) => root.display().to_string(),
            Place::Memory(_) => "memory".into(),
        }
    }
}
