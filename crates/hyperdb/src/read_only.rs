//! A database opened for reading only.

use std::ops::Deref;
use std::path::Path;

use crate::db::{DbReader, OpenOptions};
use crate::error::{Error, Result};
use crate::storage::DbStorage;

/// A database opened for reading only: every read of [`DbReader`], and no
/// way to write. Its files are opened read-only, nothing is created or
/// repaired on disk (a feed a crash left half written is repaired in memory
/// only), and no lock is taken: it works beside a process writing the
/// folder, on a read-only file system, and for a user who may only read.
///
/// ```
/// use hyperdb::{Db, ReadOnlyDb};
/// let dir = tempfile::tempdir().unwrap();
/// Db::open(dir.path()).unwrap().put("a", b"1").unwrap();
/// let db = ReadOnlyDb::open(dir.path()).unwrap();
/// assert_eq!(db.get("a").unwrap()[0].value.as_deref(), Some(&b"1"[..]));
/// ```
///
/// It has no write methods, so a write does not compile:
///
/// ```compile_fail
/// let mut db = hyperdb::ReadOnlyDb::open("/tmp/some-db").unwrap();
/// db.put("a", b"1");
/// ```
///
/// nor can it be handed to anything that writes, such as replication:
///
/// ```compile_fail
/// let db = hyperdb::ReadOnlyDb::open("/tmp/some-db").unwrap();
/// let (stream, _) = tokio::io::duplex(64);
/// let _ = hyperdb::replicate(db, stream, Default::default());
/// ```
#[derive(Debug)]
pub struct ReadOnlyDb {
    reader: DbReader,
}

impl Deref for ReadOnlyDb {
    type Target = DbReader;

    fn deref(&self) -> &DbReader {
        &self.reader
    }
}

impl ReadOnlyDb {
    /// Opens the database in `dir` for reading.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_storage(DbStorage::dir(dir.as_ref()), OpenOptions::default())
    }

    /// Opens the database in any [`DbStorage`] for reading. Of the options,
    /// `key` (the database must be that one), `cache_bytes` and
    /// `content_feed` apply; there is no database to create.
    pub fn open_storage(storage: DbStorage, options: OpenOptions) -> Result<Self> {
        if !storage.has_feed("source") {
            return Err(Error::NotFound(storage.describe()));
        }
        let mut reader = DbReader::load(storage, &options, true)?;
        reader.discover()?;
        reader.open_key_index();
        Ok(ReadOnlyDb { reader })
    }
}
