//! hyperdb 3.5.0's `test/reopen-and-write.js`, ported: a writer reopened on
//! its storage keeps its feed list and does not inflate again.

use crate::ported_support::*;
use hyperdb::{Db, DbStorage, OpenOptions};

/// The JS scenario on the owner's storage `storage`: three writers, the owner
/// writes, is reopened and writes, and is reopened again.
fn reopen_and_write(storage: DbStorage) {
    let first = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
    let mut dbs = many_from(first, 3);
    dbs[0].put("foo", b"bar").unwrap();
    assert_eq!(dbs[0].writers().len(), 3, "correct number of writers");
    let writer_keys: Vec<_> = dbs[0].writers().iter().map(|w| w.key).collect();
    // Close the owner (the replicas stay open, as in JS).
    drop(dbs.remove(0));

    let reopened = Db::open_storage(storage.clone(), OpenOptions::default()).unwrap();
    reopened.put("foo2", b"bar2").unwrap();
    drop(reopened);

    let reopened = Db::open_storage(storage, OpenOptions::default()).unwrap();
    assert_eq!(reopened.feed(0).unwrap().len(), 5, "correct length");
    let entry = reopened.raw_entry(0, 4).unwrap().unwrap();
    assert_eq!(entry.inflate, Some(2), "correct inflate for new entry");
    assert!(entry.feeds.is_empty(), "the new entry is not inflated");

    // Not in the JS test: the reopened owner knows the same writers, and
    // both writes.
    assert!(reopened.is_owner());
    let keys: Vec<_> = reopened.writers().iter().map(|w| w.key).collect();
    assert_eq!(keys, writer_keys);
    assert!(reopened.writers().iter().all(|w| w.authorized));
    assert_one(&reopened, "foo", "foo", "bar");
    assert_one(&reopened, "foo2", "foo2", "bar2");
}

// hyperdb test/reopen-and-write.js: '3 writers, re-open and write, re-open again'
#[test]
fn three_writers_reopen_and_write_reopen_again() {
    reopen_and_write(DbStorage::memory());
}

// hyperdb test/reopen-and-write.js: '3 writers, re-open and write, re-open again'
// (the same on disk)
#[test]
fn three_writers_reopen_and_write_reopen_again_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    reopen_and_write(DbStorage::dir(tmp.path()));
}
