//! hyperdb 3.5.0's `test/iterator-order.js`, ported: iteration comes in the
//! order of the keys' path hashes (a key's components hashed, without the
//! terminator, compared digit by digit), or the opposite order with
//! `reverse`, whether the keys were written by one writer or split across
//! two; and a folder is visited fully before the next one.

use crate::ported_support::*;
use hyperdb::{Db, IterOptions};

/// The JS `sortByHash` order (`reverse`: `reverseSortByHash`).
fn hash_sorted(keys: &[&str], reverse: bool) -> Vec<String> {
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort_by_key(|k| hyperdb::hash::path(k, false));
    if reverse {
        sorted.reverse();
    }
    sorted
}

/// `testIteratorOrder`: the iterator yields exactly the keys, in hash order.
fn assert_iterator_order(db: &Db, keys: &[&str], reverse: bool) {
    let options = IterOptions {
        reverse,
        ..Default::default()
    };
    let got: Vec<String> = db
        .iter("", options)
        .unwrap()
        .map(|entry| {
            let (key, nodes) = entry.unwrap();
            assert_eq!(nodes.len(), 1, "one value for {key:?}");
            assert_eq!(nodes[0].key, key);
            key
        })
        .collect();
    assert_eq!(got, hash_sorted(keys, reverse), "reverse: {reverse}");
}

/// `testSingleFeedWithKeys`.
fn single_feed_with_keys(keys: &[&str], reverse: bool) {
    let db = one();
    put_keys(&db, keys);
    assert_iterator_order(&db, keys, reverse);
}

/// `testTwoFeedsWithKeys`: the first half written by one writer, the rest
/// by the other, then replicated; both see the same order.
fn two_feeds_with_keys(keys: &[&str], reverse: bool) {
    let (db1, db2) = two();
    let half = keys.len() / 2;
    put_keys(&db1, &keys[..half]);
    put_keys(&db2, &keys[half..]);
    sync(&db1, &db2);
    assert_iterator_order(&db1, keys, reverse);
    assert_iterator_order(&db2, keys, reverse);
}

fn hash_order_sorted(keys: &[&str]) {
    single_feed_with_keys(keys, false);
    two_feeds_with_keys(keys, false);
    single_feed_with_keys(keys, true);
    two_feeds_with_keys(keys, true);
}

// hyperdb test/iterator-order.js: 'iterator is hash order sorted (simple)'
#[test]
fn iterator_is_hash_order_sorted_simple() {
    hash_order_sorted(&["a", "b", "c"]);
}

// hyperdb test/iterator-order.js: 'iterator is hash order sorted (mixed depth from root)'
#[test]
fn iterator_is_hash_order_sorted_mixed_depth_from_root() {
    hash_order_sorted(&["a/a", "a/b", "a/c", "b", "c"]);
}

// hyperdb test/iterator-order.js: 'iterator is hash order sorted (3 paths deep)'
#[test]
fn iterator_is_hash_order_sorted_3_paths_deep() {
    hash_order_sorted(&["a", "a/a", "a/b", "a/c", "a/a/a", "a/a/b", "a/a/c"]);
}

// hyperdb test/iterator-order.js: 'fully visit a folder before visiting the next one'
#[test]
fn fully_visit_a_folder_before_visiting_the_next_one() {
    let db = one();
    put_keys(&db, &["a", "a/b", "a/b/c", "b/c", "b/c/d"]);
    let keys = iter_keys(db.iter("", IterOptions::default()).unwrap());
    // Whichever folder comes first, it is visited fully (and in order)
    // before the other.
    let a = ["a", "a/b", "a/b/c"];
    let b = ["b/c", "b/c/d"];
    let a_first: Vec<&str> = a.iter().chain(&b).copied().collect();
    let b_first: Vec<&str> = b.iter().chain(&a).copied().collect();
    assert!(
        keys == a_first || keys == b_first,
        "folders visited one after the other: {keys:?}"
    );
    // The same in reverse (not in the JS test): the folders swap, and each
    // is visited deepest first.
    let reverse = IterOptions {
        reverse: true,
        ..Default::default()
    };
    let mut reversed = iter_keys(db.iter("", reverse).unwrap());
    reversed.reverse();
    assert_eq!(reversed, keys);
}
