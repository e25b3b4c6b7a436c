//! hyperdb 3.5.0's `test/history.js`, ported: `createHistoryStream(opts)` is
//! our `Db::history(reverse)`, every write in causal order.
//!
//! A node's `feed` is the writer's index in the database's own list of
//! writers (JS: `db.feeds.indexOf(...)`), here `Db::writer_index`.

use std::sync::Arc;

use crate::ported_support::*;
use hyperdb::{Db, Node};

/// `collect(db.createHistoryStream({reverse}))`.
fn history(db: &Db, reverse: bool) -> Vec<Arc<Node>> {
    db.history(reverse)
        .unwrap()
        .collect::<hyperdb::Result<_>>()
        .unwrap()
}

fn feed_seq(nodes: &[Arc<Node>]) -> Vec<(usize, u64)> {
    nodes.iter().map(|n| (n.feed, n.seq)).collect()
}

// hyperdb test/history.js: 'empty history'
#[test]
fn empty_history() {
    let db = one();
    assert!(history(&db, false).is_empty(), "diff as expected");
    // Not in the JS test: the same backwards.
    assert!(history(&db, true).is_empty());
}

// hyperdb test/history.js: 'single value'
#[test]
fn single_value() {
    let db = one();
    db.put("a", b"2").unwrap();
    let actual = history(&db, false);
    assert_eq!(actual.len(), 1);
    assert_eq!(actual[0].key, "a");
    assert_eq!(actual[0].value_str().as_deref(), Some("2"));
}

// hyperdb test/history.js: 'multiple values'
#[test]
fn multiple_values() {
    let db = one();
    db.put("a", b"2").unwrap();
    db.put("b/0", b"boop").unwrap();
    let actual = history(&db, false);
    assert_eq!(actual.len(), 2);
    assert_eq!(actual[0].key, "a");
    assert_eq!(actual[0].value_str().as_deref(), Some("2"));
    assert_eq!(actual[1].key, "b/0");
    assert_eq!(actual[1].value_str().as_deref(), Some("boop"));
}

// hyperdb test/history.js: 'multiple values: same key'
#[test]
fn multiple_values_same_key() {
    let db = one();
    db.put("a", b"2").unwrap();
    db.put("a", b"boop").unwrap();
    let actual = history(&db, false);
    assert_eq!(actual.len(), 2);
    assert_eq!(actual[0].key, "a");
    assert_eq!(actual[0].value_str().as_deref(), Some("2"));
    assert_eq!(actual[1].key, "a");
    assert_eq!(actual[1].value_str().as_deref(), Some("boop"));
}

/// The writes of '2 feeds' and 'reverse': a's authorization of b (a's
/// entry 1), then concurrently a's put (a's entry 2) and b's (b's entry 1).
/// Returns b and the two writers' indexes in b's list.
fn two_feeds() -> (Db, usize, usize) {
    let (a, b) = two();
    a.put("a", b"a").unwrap();
    b.put("b", b"12").unwrap();
    sync(&a, &b);
    let bi = b.writer_index(b.local_key()).unwrap();
    let ai = b.writer_index(a.local_key()).unwrap();
    assert_eq!(ai, if bi == 0 { 1 } else { 0 });
    (b, ai, bi)
}

// hyperdb test/history.js: '2 feeds'
#[test]
fn two_feeds_history() {
    let (b, ai, bi) = two_feeds();
    let actual = history(&b, false);
    assert_eq!(feed_seq(&actual), [(ai, 1), (ai, 2), (bi, 1)]);
    // Not in the JS test: what those entries are.
    assert!(
        actual[0].value.is_none() && !actual[0].deleted,
        "authorization"
    );
    assert_eq!(actual[1].key, "a");
    assert_eq!(actual[2].key, "b");
}

// hyperdb test/history.js: 'reverse'
#[test]
fn reverse() {
    let (b, ai, bi) = two_feeds();
    let actual = history(&b, true);
    assert_eq!(feed_seq(&actual), [(bi, 1), (ai, 2), (ai, 1)]);
}
