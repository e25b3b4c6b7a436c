//! One writer per folder: a second writable open is refused, read-only
//! opens work beside it and write nothing.

use hyperdb::{Db, Error, ReadOnlyDb};

#[test]
fn a_second_writer_is_refused_until_the_first_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let first = Db::open(&dir).unwrap();
    first.put("a", b"1").unwrap();

    let err = Db::open(&dir).unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err:?}");
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );

    drop(first);
    let again = Db::open(&dir).unwrap();
    assert_eq!(again.get("a").unwrap()[0].value.as_deref(), Some(&b"1"[..]));
}

#[test]
fn read_only_opens_see_the_writes_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let writer = Db::open(&dir).unwrap();
    writer.put("a", b"1").unwrap();
    let files_before = listing(&dir);

    let reader = ReadOnlyDb::open(&dir).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.get("a").unwrap().len(), 1);
    assert_eq!(listing(&dir), files_before, "the reader wrote no file");

    // The writer keeps writing; a fresh read-only open sees it.
    writer.put("b", b"2").unwrap();
    let later = ReadOnlyDb::open(&dir).unwrap();
    assert_eq!(later.get("b").unwrap().len(), 1);
}

#[test]
fn a_read_only_open_never_creates_a_database() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nothing");
    let err = ReadOnlyDb::open(&dir).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert!(!dir.exists());
}

/// A child process started while a database is open inherits none of its
/// lock: the folder reopens at once after the database is dropped, however
/// many children other threads are starting meanwhile.
#[test]
fn starting_processes_never_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    Db::open(&dir).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::process::Command::new("true").status();
            }
        })
    };
    for _ in 0..200 {
        let db = Db::open(&dir).unwrap_or_else(|e| panic!("reopen failed: {e}"));
        drop(db);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spawner.join().unwrap();
}

/// Every file under `dir` with its length, recursively.
fn listing(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(listing(&path));
        } else {
            let len = path.metadata().unwrap().len();
            out.push((path, len));
        }
    }
    out.sort();
    out
}
