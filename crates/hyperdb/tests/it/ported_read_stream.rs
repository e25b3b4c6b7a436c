//! hyperdb 3.5.0's `test/read-stream.js`, ported: `createReadStream(prefix,
//! opts)` is our `Db::iter` (collected), with one or two writers.
//!
//! The JS tests check that every key read is expected and that none is
//! missing; here the exact set of keys (and each one's full set of values)
//! is compared.

use std::collections::BTreeMap;

use crate::ported_support::*;
use hyperdb::{Db, IterOptions};

type Map = BTreeMap<String, Vec<Option<String>>>;

/// `createReadStream(prefix, opts)`, collected as key -> sorted values.
fn read(db: &Db, prefix: &str, options: IterOptions) -> Map {
    collect_entries(db.iter(prefix, options).unwrap())
}

/// The keys of a read, sorted.
fn keys(map: &Map) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

/// `toKeyValuePairs(value)`: every key with the same value.
fn with_value<'a>(keys: &[&'a str], value: &'a str) -> Vec<(&'a str, &'a str)> {
    keys.iter().map(|k| (*k, value)).collect()
}

fn sorted<'a>(list: &[&'a str]) -> Vec<&'a str> {
    let mut v = list.to_vec();
    v.sort();
    v
}

// hyperdb test/read-stream.js: 'basic readStream'
#[test]
fn basic_read_stream() {
    let db = one();
    put_keys(
        &db,
        &[
            "foo", "foo/a", "foo/b", "a", "bar/a", "foo/abc", "foo/b", "bar/b", "foo/bar",
            "foo/a/b",
        ],
    );
    let map = read(
        &db,
        "foo/",
        IterOptions {
            gt: true,
            ..Default::default()
        },
    );
    // `foo` itself is left out (gt); `foo/b`, written twice, is read once.
    assert_eq!(
        keys(&map),
        sorted(&["foo/a", "foo/abc", "foo/b", "foo/bar", "foo/a/b"])
    );
    for (key, values) in &map {
        assert_eq!(values, &[Some(key.clone())]);
    }
}

// hyperdb test/read-stream.js: 'basic readStream (again)'
#[test]
fn basic_read_stream_again() {
    let db = one();
    put_keys(&db, &["foo/a", "foo/abc", "foo/a/b"]);
    // The prefix is a path prefix: `foo/a` and what is under it, not
    // `foo/abc`.
    let map = read(&db, "foo/a", IterOptions::default());
    assert_eq!(keys(&map), sorted(&["foo/a", "foo/a/b"]));
}

// hyperdb test/read-stream.js: 'readStream with two feeds'
#[test]
fn read_stream_with_two_feeds() {
    let (a, b) = two();
    put_pairs(&a, &with_value(&["b/a", "a/b/c", "b/c", "b/c/d"], "A"));
    sync(&a, &b);
    put_pairs(&b, &with_value(&["a/b", "a/b/c", "b/c/d", "b/c"], "B"));
    sync(&a, &b);

    let map = read(&a, "b/", IterOptions::default());
    assert_eq!(
        map,
        entries(&[
            ("b/c/d", &[Some("B")]),
            ("b/c", &[Some("B")]),
            ("b/a", &[Some("A")]),
        ])
    );
}

// hyperdb test/read-stream.js: 'readStream with two feeds (again)'
#[test]
fn read_stream_with_two_feeds_again() {
    let (a, b) = two();
    put_pairs(&a, &with_value(&["/a/a", "/a/b", "/a/c"], "A"));
    sync(&a, &b);
    put_pairs(
        &b,
        &with_value(&["/b/a", "/b/b", "/b/c", "/a/a", "/a/b", "/a/c"], "B"),
    );
    sync(&a, &b);

    // Keys come back normalized (no leading `/`); b's writes replaced a's.
    let map = read(&b, "/", IterOptions::default());
    let expected: Map = ["b/a", "b/b", "b/c", "a/a", "a/b", "a/c"]
        .iter()
        .map(|k| (k.to_string(), vec![Some("B".to_string())]))
        .collect();
    assert_eq!(map, expected);
}

// hyperdb test/read-stream.js: 'readStream with conflicting feeds'
#[test]
fn read_stream_with_conflicting_feeds() {
    let conflicting = ["c/a", "c/b", "c/c", "c/d"];
    let (a, b) = two();
    put_pairs(&a, &with_value(&["a/a", "a/b", "a/c"], "A"));
    sync(&a, &b);
    put_pairs(&b, &with_value(&["b/a", "b/b", "b/c"], "B"));
    sync(&a, &b);
    put_pairs(&a, &with_value(&conflicting, "A"));
    let mut reversed = conflicting;
    reversed.reverse();
    put_pairs(&b, &with_value(&reversed, "B"));
    sync(&a, &b);

    let map = read(&a, "/", IterOptions::default());
    let mut expected = entries(&[
        ("a/a", &[Some("A")]),
        ("a/b", &[Some("A")]),
        ("a/c", &[Some("A")]),
        ("b/a", &[Some("B")]),
        ("b/b", &[Some("B")]),
        ("b/c", &[Some("B")]),
    ]);
    // The concurrent writes of the two writers are both current.
    for k in conflicting {
        expected.extend(entries(&[(k, &[Some("A"), Some("B")])]));
    }
    assert_eq!(map, expected);
}

// hyperdb test/read-stream.js: 'returns no data if db is empty'
#[test]
fn returns_no_data_if_db_is_empty() {
    let db = one();
    assert_eq!(db.iter("foo/", IterOptions::default()).unwrap().count(), 0);
}
