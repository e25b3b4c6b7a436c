//! One writer per folder: a second writable open is refused, read-only
//! opens work beside it and refuse every write.

use std::sync::{Arc, Mutex};

use hyperdb::{local_sync, replicate, Db, Error, Op, OpenOptions, ReplicateOptions};

fn read_only() -> OpenOptions {
    OpenOptions {
        read_only: true,
        ..Default::default()
    }
}

#[test]
fn a_second_writer_is_refused_until_the_first_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut first = Db::open(&dir).unwrap();
    first.put("a", b"1").unwrap();

    let err = Db::open(&dir).unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err:?}");
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );

    drop(first);
    let mut again = Db::open(&dir).unwrap();
    assert_eq!(again.get("a").unwrap()[0].value.as_deref(), Some(&b"1"[..]));
}

#[test]
fn read_only_opens_see_the_writes_and_refuse_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut writer = Db::open(&dir).unwrap();
    writer.put("a", b"1").unwrap();
    let files_before = listing(&dir);

    let mut reader = Db::open_with(&dir, read_only()).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.get("a").unwrap().len(), 1);
    let refused = |r: hyperdb::Result<_>| {
        let err = r.expect_err("a write to a read-only database fails");
        assert!(matches!(err, Error::ReadOnly(_)), "{err:?}");
    };
    refused(reader.put("b", b"2").map(|_| ()));
    refused(reader.del("a").map(|_| ()));
    refused(reader.batch(&[Op::Del { key: "a".into() }]).map(|_| ()));
    refused(reader.authorize(&[7; 32]).map(|_| ()));
    assert_eq!(listing(&dir), files_before, "the reader wrote no file");

    // The writer keeps writing; a fresh read-only open sees it.
    writer.put("b", b"2").unwrap();
    let mut later = Db::open_with(&dir, read_only()).unwrap();
    assert_eq!(later.get("b").unwrap().len(), 1);
}

#[tokio::test]
async fn a_read_only_database_does_not_replicate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    Db::open(&dir).unwrap().put("a", b"1").unwrap();
    let mut reader = Db::open_with(&dir, read_only()).unwrap();
    let mut other = Db::open_storage(
        hyperdb::DbStorage::memory(),
        OpenOptions {
            key: Some(*reader.key()),
            ..Default::default()
        },
    )
    .unwrap();
    let err = local_sync::sync(&mut other, &mut reader).unwrap_err();
    assert!(matches!(err, Error::ReadOnly(_)), "{err:?}");

    let (a, _b) = tokio::io::duplex(1 << 16);
    let err = replicate(Arc::new(Mutex::new(reader)), a, ReplicateOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnly(_)), "{err:?}");
}

#[test]
fn a_read_only_open_never_creates_a_database() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nothing");
    let err = Db::open_with(&dir, read_only()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert!(!dir.exists());
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
