//! hyperdb 3.5.0's `test/diff.js`, ported: `db.createDiffStream(other,
//! prefix)` is our `Db::diff(version, prefix)`, the database now (left)
//! against itself at an older version (right). `other` is `null` (the empty
//! database: an empty version), the database itself (its current version),
//! or a `db.snapshot()` taken earlier (the version at that point).
//!
//! The JS tests read `left` and `right` as single nodes where one writer
//! (and the `reduce` of `create.one`) gives one; here they are lists of the
//! key's current writes, so we check they hold exactly that node.

use std::sync::Arc;

use crate::ported_support::*;
use hyperdb::{Change, Db, Node};

/// `collect(db.createDiffStream(version, prefix))`.
fn diff(db: &Db, version: &[u8], prefix: &str) -> Vec<Change> {
    db.diff(version, prefix).unwrap()
}

/// The JS `sort`: by the key of the change.
fn sorted(mut changes: Vec<Change>) -> Vec<Change> {
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    changes
}

/// Asserts a side of a change is exactly one write of `key` with `value`.
fn assert_single(side: &Option<Vec<Arc<Node>>>, key: &str, value: &str) {
    let nodes = side.as_ref().expect("a side with writes");
    assert_eq!(nodes.len(), 1, "one write: {nodes:?}");
    assert_eq!(nodes[0].key, key);
    assert_eq!(nodes[0].value_str().as_deref(), Some(value));
}

// hyperdb test/diff.js: 'empty diff'
#[test]
fn empty_diff() {
    let db = one();
    assert_eq!(diff(&db, &[], "a"), [], "diff as expected");
}

// hyperdb test/diff.js: 'implicit checkout'
#[test]
fn implicit_checkout() {
    let db = one();
    db.put("a", b"2").unwrap();
    let actual = diff(&db, &[], "a");
    assert_eq!(actual.len(), 1);
    assert_eq!(actual[0].key, "a");
    assert_single(&actual[0].left, "a", "2");
    assert_eq!(actual[0].right, None);
}

// hyperdb test/diff.js: 'new value'
#[test]
fn new_value() {
    let db = one();
    db.put("a", b"1").unwrap();
    db.put("a", b"2").unwrap();
    let actual = diff(&db, &[], "a");
    assert_eq!(actual.len(), 1);
    assert_single(&actual[0].left, "a", "2");
    assert_eq!(actual[0].right, None);
}

// hyperdb test/diff.js: 'two new nodes'
#[test]
fn two_new_nodes() {
    let db = one();
    db.put("a/foo", b"quux").unwrap();
    db.put("a/bar", b"baz").unwrap();
    let actual = sorted(diff(&db, &[], "a"));
    assert_eq!(actual.len(), 2);
    assert_single(&actual[0].left, "a/bar", "baz");
    assert_eq!(actual[0].right, None);
    assert_single(&actual[1].left, "a/foo", "quux");
    assert_eq!(actual[1].right, None);
}

// hyperdb test/diff.js: 'checkout === head'
#[test]
fn checkout_head() {
    let db = one();
    db.put("a", b"2").unwrap();
    let head = db.version().unwrap();
    assert_eq!(diff(&db, &head, "a").len(), 0);
}

// hyperdb test/diff.js: 'new value, twice'
#[test]
fn new_value_twice() {
    let db = one();
    let snap = db.version().unwrap();
    db.put("/a", b"1").unwrap();
    db.put("/a", b"2").unwrap();
    let actual = diff(&db, &snap, "a");
    assert_eq!(actual.len(), 1);
    assert_eq!(actual[0].key, "a");
    assert_single(&actual[0].left, "a", "2");
    assert_eq!(actual[0].right, None);
}

// hyperdb test/diff.js: 'untracked value'
#[test]
fn untracked_value() {
    let db = one();
    db.put("a", b"1").unwrap();
    let snap = db.version().unwrap();
    db.put("a", b"2").unwrap();
    db.put("b", b"17").unwrap();
    let actual = diff(&db, &snap, "a");
    assert_eq!(actual.len(), 1);
    assert_single(&actual[0].left, "a", "2");
    assert_single(&actual[0].right, "a", "1");
}

// hyperdb test/diff.js: 'diff root'
#[test]
fn diff_root() {
    let db = one();
    db.put("a", b"1").unwrap();
    let snap = db.version().unwrap();
    db.put("a", b"2").unwrap();
    db.put("b", b"17").unwrap();
    let actual = sorted(diff(&db, &snap, ""));
    assert_eq!(actual.len(), 2);
    assert_single(&actual[0].left, "a", "2");
    assert_single(&actual[0].right, "a", "1");
    assert_single(&actual[1].left, "b", "17");
    assert_eq!(actual[1].right, None);
}

// hyperdb test/diff.js: 'updated value'
#[test]
fn updated_value() {
    let db = one();
    db.put("a/d/r", b"1").unwrap();
    let snap = db.version().unwrap();
    db.put("a/d/r", b"3").unwrap();
    let actual = diff(&db, &snap, "a");
    assert_eq!(actual.len(), 1);
    assert_single(&actual[0].left, "a/d/r", "3");
    assert_single(&actual[0].right, "a/d/r", "1");
}

// hyperdb test/diff.js: 'basic with 2 feeds'
#[test]
fn basic_with_2_feeds() {
    let (a, b) = two();
    a.put("a", b"a").unwrap();
    sync(&a, &b);
    let actual = diff(&b, &[], "a");
    assert_eq!(actual.len(), 1);
    assert_single(&actual[0].left, "a", "a");
    assert_eq!(actual[0].right, None);
}

// hyperdb test/diff.js: 'two feeds /w competing for a value'
#[test]
fn two_feeds_w_competing_for_a_value() {
    let (a, b) = two();
    a.put("a", b"a").unwrap();
    b.put("a", b"b").unwrap();
    sync(&a, &b);
    let actual = diff(&b, &[], "a");
    assert_eq!(actual.len(), 1);
    let mut left = actual[0].left.clone().expect("writes now");
    left.sort_by(|x, y| x.value.cmp(&y.value));
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].key, "a");
    assert_eq!(left[0].value_str().as_deref(), Some("a"));
    assert_eq!(left[1].key, "a");
    assert_eq!(left[1].value_str().as_deref(), Some("b"));
    assert_eq!(actual[0].right, None);
}

// hyperdb test/diff.js: 'small diff on big db'
#[test]
fn small_diff_on_big_db() {
    let db = one();
    let keys: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    for k in &keys {
        db.put(k, k.as_bytes()).unwrap();
    }
    let snap = db.version().unwrap();
    db.put("42", b"42*").unwrap();
    let actual = diff(&db, &snap, "");
    assert_eq!(actual.len(), 1);
    assert_single(&actual[0].left, "42", "42*");
    assert_single(&actual[0].right, "42", "42");
}
