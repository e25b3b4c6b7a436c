//! hyperdb 3.5.0's `test/iterator.js`, ported: iterating every key (or the
//! keys under a prefix) of one database or of several writers after
//! replication, with the `recursive: false` (`shallow`), `gt` and `deletes`
//! options.
//!
//! The JS `all` helper collects key -> value (one writer, reduced) or key ->
//! sorted values (several writers); here every entry is key -> its sorted
//! values, so a single value is a one-element list and a delete is `None`.
//! Replication is the in-process block copy of `ported_support` (the JS
//! `replicate` of `create.two` syncs the two; `replicateAll` of
//! `create.three` syncs every pair).

use std::collections::BTreeMap;

use crate::ported_support::*;
use hyperdb::{Db, IterOptions};

type Map = BTreeMap<String, Vec<Option<String>>>;

/// `all(db.iterator(prefix, opts))`.
fn all(db: &Db, prefix: &str, options: IterOptions) -> Map {
    collect_entries(db.iter(prefix, options).unwrap())
}

/// The JS `toMap`: each key to itself.
fn to_map(keys: &[String]) -> Map {
    keys.iter()
        .map(|k| (k.clone(), vec![Some(k.clone())]))
        .collect()
}

/// The JS `range(n, v)`: `v0`, `v1`, ..., `v{n-1}`.
fn range(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const DELETES: IterOptions = IterOptions {
    shallow: false,
    reverse: false,
    gt: false,
    deletes: true,
    unordered: false,
};

// hyperdb test/iterator.js: 'basic iteration'
#[test]
fn basic_iteration() {
    let db = one();
    let vals = ["a", "b", "c"].map(String::from);
    put_keys(&db, &strs(&vals));
    assert_eq!(
        all(&db, "", IterOptions::default()),
        to_map(&vals),
        "iterated all values"
    );
}

// hyperdb test/iterator.js: 'iterate a big db'
#[test]
fn iterate_a_big_db() {
    let db = one();
    let vals = range(1000, "#");
    put_keys(&db, &strs(&vals));
    assert_eq!(
        all(&db, "", IterOptions::default()),
        to_map(&vals),
        "iterated all values"
    );
}

// hyperdb test/iterator.js: 'prefix basic iteration'
#[test]
fn prefix_basic_iteration() {
    let db = one();
    let vals = ["foo/a", "foo/b", "foo/c"].map(String::from);
    let expected = to_map(&vals);
    put_keys(&db, &strs(&vals));
    put_keys(&db, &["a", "b", "c"]);
    assert_eq!(
        all(&db, "foo", IterOptions::default()),
        expected,
        "iterated all values"
    );
}

// hyperdb test/iterator.js: 'empty prefix iteration'
#[test]
fn empty_prefix_iteration() {
    let db = one();
    put_keys(&db, &["foo/a", "foo/b", "foo/c"]);
    assert_eq!(
        all(&db, "bar", IterOptions::default()),
        Map::new(),
        "iterated all values"
    );
}

// hyperdb test/iterator.js: 'prefix iterate a big db'
#[test]
fn prefix_iterate_a_big_db() {
    let db = one();
    let vals = range(1000, "foo/#");
    let expected = to_map(&vals);
    put_keys(&db, &strs(&vals));
    put_keys(&db, &strs(&range(1000, "#")));
    assert_eq!(
        all(&db, "foo", IterOptions::default()),
        expected,
        "iterated all values"
    );
}

// hyperdb test/iterator.js: 'non recursive iteration'
#[test]
fn non_recursive_iteration() {
    let db = one();
    put_keys(&db, &["a", "a/b/c/d", "a/c", "b", "b/b/c", "c/a", "c"]);
    let map = all(
        &db,
        "",
        IterOptions {
            shallow: true,
            ..Default::default()
        },
    );
    // One entry per top-level component (a BTreeMap's keys come sorted).
    let firsts: Vec<&str> = map.keys().map(|k| k.split('/').next().unwrap()).collect();
    assert_eq!(firsts, ["a", "b", "c"], "iterated all values");

    // Not in the JS test: the order, and which key stands for each
    // component, are the reference's (hyperdb 3.5.0 gives these on the same
    // writes).
    let shallow = IterOptions {
        shallow: true,
        ..Default::default()
    };
    assert_eq!(
        iter_keys(db.iter("", shallow).unwrap()),
        ["c", "b/b/c", "a/c"]
    );
    let reverse = IterOptions {
        reverse: true,
        ..shallow
    };
    assert_eq!(
        iter_keys(db.iter("", reverse).unwrap()),
        ["a/c", "b/b/c", "c"]
    );
}

// hyperdb test/iterator.js: 'mixed nested and non nexted iteration'
#[test]
fn mixed_nested_and_non_nexted_iteration() {
    let db = one();
    let vals = ["a", "a/a", "a/b", "a/c", "a/a/a", "a/a/b", "a/a/c"].map(String::from);
    put_keys(&db, &strs(&vals));
    assert_eq!(
        all(&db, "", IterOptions::default()),
        to_map(&vals),
        "iterated all values"
    );
}

// hyperdb test/iterator.js: 'two writers, simple fork'
#[test]
fn two_writers_simple_fork() {
    let (db1, db2) = two();
    db1.put("0", b"0").unwrap();
    sync(&db1, &db2);
    db1.put("1", b"1a").unwrap();
    db2.put("1", b"1b").unwrap();
    db1.put("10", b"10").unwrap();
    sync(&db1, &db2);
    db1.put("2", b"2").unwrap();
    db1.put("1/0", b"1/0").unwrap();

    assert_eq!(
        all(&db1, "", IterOptions::default()),
        entries(&[
            ("0", &[Some("0")]),
            ("1", &[Some("1a"), Some("1b")]),
            ("10", &[Some("10")]),
            ("2", &[Some("2")]),
            ("1/0", &[Some("1/0")]),
        ])
    );
    assert_eq!(
        all(&db2, "", IterOptions::default()),
        entries(&[
            ("0", &[Some("0")]),
            ("1", &[Some("1a"), Some("1b")]),
            ("10", &[Some("10")]),
        ])
    );
}

/// The keys `2` to `9` with themselves as values, and `0`, `1` as given.
fn digits(zero: &str, one: &[Option<&'static str>]) -> Map {
    let mut map = entries(&[("0", &[Some(zero)])]);
    map.extend(entries(&[("1", one)]));
    for k in 2..10 {
        let k = k.to_string();
        map.insert(k.clone(), vec![Some(k)]);
    }
    map
}

// hyperdb test/iterator.js: 'two writers, one fork'
#[test]
fn two_writers_one_fork() {
    let (db1, db2) = two();
    db1.put("0", b"0").unwrap();
    put_keys(&db2, &["2", "3", "4", "5", "6", "7", "8", "9"]);
    sync(&db1, &db2);
    db1.put("1", b"1a").unwrap();
    db2.put("1", b"1b").unwrap();
    sync(&db1, &db2);
    db1.put("0", b"00").unwrap();
    sync(&db1, &db2);
    db2.put("hi", b"ho").unwrap();

    let expected = digits("00", &[Some("1a"), Some("1b")]);
    assert_eq!(all(&db1, "", IterOptions::default()), expected);
    let mut expected = expected;
    expected.extend(entries(&[("hi", &[Some("ho")])]));
    assert_eq!(all(&db2, "", IterOptions::default()), expected);
}

// hyperdb test/iterator.js: 'two writers, one fork, many values'
#[test]
fn two_writers_one_fork_many_values() {
    let r = range(100, "i");
    let (db1, db2) = two();
    db1.put("0", b"0").unwrap();
    put_keys(&db2, &["2", "3", "4", "5", "6", "7", "8", "9"]);
    sync(&db1, &db2);
    db1.put("1", b"1a").unwrap();
    db2.put("1", b"1b").unwrap();
    sync(&db1, &db2);
    db1.put("0", b"00").unwrap();
    put_keys(&db1, &strs(&r));
    sync(&db1, &db2);

    let mut expected = digits("00", &[Some("1a"), Some("1b")]);
    expected.extend(to_map(&r));
    assert_eq!(all(&db1, "", IterOptions::default()), expected);
    assert_eq!(all(&db2, "", IterOptions::default()), expected);
}

// hyperdb test/iterator.js: 'two writers, fork'
#[test]
fn two_writers_fork() {
    let (a, b) = two();
    a.put("a", b"a").unwrap();
    sync(&a, &b);
    b.put("a", b"b").unwrap();
    a.put("b", b"c").unwrap();
    sync(&a, &b);

    let expected = entries(&[("b", &[Some("c")]), ("a", &[Some("b")])]);
    assert_eq!(all(&a, "", IterOptions::default()), expected);
    assert_eq!(all(&b, "", IterOptions::default()), expected);
}

// hyperdb test/iterator.js: 'three writers, two forks'
#[test]
fn three_writers_two_forks() {
    let (mut a, mut b, mut c) = three();
    a.put("a", b"a").unwrap();
    sync3(&a, &b, &c);
    b.put("a", b"ab").unwrap();
    a.put("some", b"some").unwrap();
    sync(&a, &c);
    c.put("c", b"c").unwrap();
    sync3(&a, &b, &c);

    let expected = entries(&[
        ("a", &[Some("ab")]),
        ("c", &[Some("c")]),
        ("some", &[Some("some")]),
    ]);
    for db in [&mut a, &mut b, &mut c] {
        assert_eq!(all(db, "", IterOptions::default()), expected);
    }
}

// hyperdb test/iterator.js: 'list buffers an iterator'
#[test]
fn list_buffers_an_iterator() {
    let db = one();
    put_keys(&db, &["a", "b", "b/c"]);
    let mut keys: Vec<String> = db.list("").unwrap().into_iter().map(|e| e.0).collect();
    keys.sort();
    assert_eq!(keys, ["a", "b", "b/c"]);

    // `db.list('b', {gt: true})`: our `list` has no options; it is the
    // collected iterator.
    let gt: Vec<_> = db
        .iter(
            "b",
            IterOptions {
                gt: true,
                ..Default::default()
            },
        )
        .unwrap()
        .collect::<hyperdb::Result<_>>()
        .unwrap();
    assert_eq!(gt.len(), 1);
    assert_eq!(gt[0].0, "b/c");
    assert_eq!(gt[0].1[0].key, "b/c");
}

// hyperdb test/iterator.js: 'options to get deleted keys'
#[test]
fn options_to_get_deleted_keys() {
    let db = one();
    put_keys(&db, &["a", "b", "c"]);
    db.del("a").unwrap();
    assert_eq!(
        all(&db, "", DELETES),
        entries(&[("a", &[None]), ("b", &[Some("b")]), ("c", &[Some("c")])]),
        "iterated all values"
    );
    // Not in the JS test: without the option the deleted key is left out.
    assert_eq!(
        all(&db, "", IterOptions::default()),
        entries(&[("b", &[Some("b")]), ("c", &[Some("c")])])
    );
}

// hyperdb test/iterator.js: 'three writers, two forks with deletes'
#[test]
fn three_writers_two_forks_with_deletes() {
    let (mut a, mut b, mut c) = three();
    a.put("a", b"a").unwrap();
    sync3(&a, &b, &c);
    b.put("a", b"ab").unwrap();
    a.put("some", b"some").unwrap();
    sync(&a, &c);
    c.put("c", b"c").unwrap();
    c.del("c").unwrap();
    a.del("a").unwrap();
    a.del("some").unwrap();
    sync3(&a, &b, &c);

    // `a`: b's put and a's delete are concurrent, so both are current.
    let expected = entries(&[
        ("a", &[Some("ab"), None]),
        ("c", &[None]),
        ("some", &[None]),
    ]);
    for db in [&mut a, &mut b, &mut c] {
        assert_eq!(all(db, "", DELETES), expected);
        // Not in the JS test: without the option only the live value shows.
        assert_eq!(
            all(db, "", IterOptions::default()),
            entries(&[("a", &[Some("ab")])])
        );
    }
}
