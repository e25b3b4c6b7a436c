//! Versions, checkouts and histories, against the running JS reference on
//! the same folders: the version bytes, the history order (both ways) and
//! the key history agree.

use std::collections::BTreeSet;
use std::path::Path;

use hyperdb::{Db, OpenOptions};
use serde_json::{json, Value};
use testkit::node;

fn open(dir: &Path) -> Db {
    Db::open_with(
        dir,
        OpenOptions {
            create: false,
            ..Default::default()
        },
    )
    .unwrap()
}

fn ours_key_history(db: &Db, key: &str) -> Vec<BTreeSet<(String, u64)>> {
    let writers = db.writers();
    db.key_history(key)
        .unwrap()
        .map(|step| {
            step.unwrap()
                .iter()
                .map(|n| (hex::encode(writers[n.feed].key), n.seq))
                .collect()
        })
        .collect()
}

fn theirs_key_history(js: &Value, key: &str) -> Vec<BTreeSet<(String, u64)>> {
    js["keyHistory"][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            step.as_array()
                .unwrap()
                .iter()
                .map(|n| {
                    (
                        n["feed"].as_str().unwrap().to_string(),
                        n["seq"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

fn compare(dir: &Path, keys: &[&str]) {
    let js = node(
        "db-history.js",
        &[dir.to_str().unwrap(), "--keys", &keys.join(",")],
    );
    let db = open(dir);
    let what = dir.display().to_string();
    crate::support::check_version(&db, &js, &what);
    for reverse in [false, true] {
        crate::support::check_history(&db, &js, reverse, &what);
    }
    for key in keys {
        assert_eq!(
            ours_key_history(&db, key),
            theirs_key_history(&js, key),
            "{}: key history of {key}",
            dir.display()
        );
    }
}

#[test]
fn the_seed_example_has_the_same_version_and_histories() {
    let tmp = tempfile::tempdir().unwrap();
    node("db-seed-example.js", &[tmp.path().to_str().unwrap()]);
    for db in ["db1", "db2"] {
        compare(
            &tmp.path().join(db),
            &["example/first", "example/second", "example/third"],
        );
    }
}

#[test]
fn a_three_writer_database_has_the_same_version_and_histories() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = json!([
        {"op": "create", "name": "a"},
        {"op": "create", "name": "b", "of": "a"},
        {"op": "create", "name": "c", "of": "a"},
        {"op": "put", "db": "a", "key": "x", "value": "a1"},
        {"op": "authorize", "db": "a", "target": "b"},
        {"op": "sync", "a": "a", "b": "b"},
        {"op": "authorize", "db": "b", "target": "c"},
        {"op": "sync", "a": "b", "b": "c"},
        {"op": "put", "db": "a", "key": "x", "value": "a2"},
        {"op": "put", "db": "b", "key": "x", "value": "b2"},
        {"op": "put", "db": "c", "key": "y", "value": "c1"},
        {"op": "del", "db": "b", "key": "x"},
        {"op": "sync", "a": "a", "b": "b"},
        {"op": "sync", "a": "b", "b": "c"},
        {"op": "put", "db": "c", "key": "x", "value": "c2"},
        {"op": "sync", "a": "a", "b": "c"},
    ]);
    node(
        "db-multi.js",
        &[tmp.path().to_str().unwrap(), "--steps", &steps.to_string()],
    );
    for name in ["a", "b", "c"] {
        compare(&tmp.path().join(name), &["x", "y"]);
    }
}

#[test]
fn a_checkout_reads_the_database_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    db.put("a", b"1").unwrap();
    let v1 = db.version().unwrap();
    db.put("a", b"2").unwrap();
    db.put("b", b"3").unwrap();
    let v2 = db.version().unwrap();
    db.del("a").unwrap();
    assert!(db.get("a").unwrap().is_empty());
    {
        let old = db.checkout(&v1).unwrap();
        assert_eq!(old.get("a").unwrap()[0].value_str().unwrap(), "1");
        assert!(old.get("b").unwrap().is_empty());
        assert_eq!(old.version(), v1);
        assert_eq!(old.history(false).count(), 1);
    }
    let mid = db.checkout(&v2).unwrap();
    assert_eq!(mid.get("a").unwrap()[0].value_str().unwrap(), "2");
    assert_eq!(mid.key_history("a").count(), 2);
    assert!(
        db.checkout(&[]).unwrap().get("a").unwrap().is_empty(),
        "the empty version is the empty db"
    );
    let err = db.checkout(&[1, 2, 3]).unwrap_err();
    assert!(err.to_string().contains("invalid version"), "{err}");

    // The version written by Rust is the version JS computes.
    drop(db);
    let js = node("db-history.js", &[tmp.path().to_str().unwrap()]);
    let db = open(tmp.path());
    assert_eq!(hex::encode(db.version().unwrap()), js["version"]);
}
