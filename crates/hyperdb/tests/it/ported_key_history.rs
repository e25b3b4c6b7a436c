//! hyperdb 3.5.0's `test/key-history.js`, ported:
//! `createKeyHistoryStream(key)` is our `Db::key_history(key)`, the writes
//! to a key newest first, each step the writes that were current together
//! (several for concurrent writes).

use crate::ported_support::*;
use hyperdb::Db;

/// `testHistory(t, db, key, expected)`: the steps in order, each step's
/// values as a set. (Within a step of concurrent writes the JS test expects
/// the order its `get` happens to find them in, e.g. `world, again, welt`
/// for the writers 1, 2, 0; ours lists them by writer. Which writes make up
/// the step is what both promise.)
fn assert_history(db: &Db, key: &str, expected: &[&[&str]]) {
    let got: Vec<Vec<String>> = db
        .key_history(key)
        .unwrap()
        .map(|step| {
            let mut values: Vec<String> = step
                .unwrap()
                .iter()
                .map(|n| {
                    assert_eq!(n.key, key);
                    n.value_str().expect("a put")
                })
                .collect();
            values.sort();
            values
        })
        .collect();
    let expected: Vec<Vec<String>> = expected
        .iter()
        .map(|step| {
            let mut values: Vec<String> = step.iter().map(|v| v.to_string()).collect();
            values.sort();
            values
        })
        .collect();
    assert_eq!(got, expected, "history of {key:?}");
}

fn versions(db: &Db, values: &[String]) {
    for v in values {
        db.put("version", v.as_bytes()).unwrap();
    }
}

// hyperdb test/key-history.js: 'empty db'
#[test]
fn empty_db() {
    let db = one();
    assert_history(&db, "hello", &[]);
}

// hyperdb test/key-history.js: 'single feed'
#[test]
fn single_feed() {
    let db = one();
    put_pairs(
        &db,
        &[("hello", "welt"), ("null", "void"), ("hello", "world")],
    );
    assert_history(&db, "hello", &[&["world"], &["welt"]]);
    assert_history(&db, "null", &[&["void"]]);
}

// hyperdb test/key-history.js: 'single feed (same value)'
#[test]
fn single_feed_same_value() {
    let db = one();
    put_pairs(
        &db,
        &[("hello", "welt"), ("hello", "darkness"), ("hello", "world")],
    );
    assert_history(&db, "hello", &[&["world"], &["darkness"], &["welt"]]);
}

// hyperdb test/key-history.js: 'two feeds'
#[test]
fn two_feeds() {
    let (db1, db2) = two();
    put_pairs(&db1, &[("hello", "welt"), ("null", "void")]);
    sync(&db1, &db2);
    put_pairs(&db2, &[("hello", "world")]);
    sync(&db1, &db2);
    assert_history(&db1, "hello", &[&["world"], &["welt"]]);
}

// hyperdb test/key-history.js: 'two feeds with conflict'
#[test]
fn two_feeds_with_conflict() {
    let (db1, db2) = two();
    put_pairs(&db1, &[("hello", "welt"), ("null", "void")]);
    put_pairs(&db2, &[("hello", "world")]);
    sync(&db1, &db2);
    assert_history(&db1, "hello", &[&["world", "welt"]]);
}

// hyperdb test/key-history.js: 'three feeds with conflict'
#[test]
fn three_feeds_with_conflict() {
    let (db1, db2, db3) = three();
    put_pairs(&db1, &[("hello", "welt"), ("null", "void")]);
    sync(&db1, &db2);
    put_pairs(&db2, &[("hello", "world")]);
    sync(&db1, &db2);
    put_pairs(&db3, &[("hello", "again")]);
    sync3(&db1, &db2, &db3);
    // `world` replaced `welt`; `again` saw neither.
    assert_history(&db1, "hello", &[&["world", "again"], &["welt"]]);
}

// hyperdb test/key-history.js: 'three feeds with all conflicting'
#[test]
fn three_feeds_with_all_conflicting() {
    let (db1, db2, db3) = three();
    put_pairs(&db1, &[("hello", "welt"), ("null", "void")]);
    put_pairs(&db2, &[("hello", "world")]);
    put_pairs(&db3, &[("hello", "again")]);
    sync3(&db1, &db2, &db3);
    assert_history(&db1, "hello", &[&["world", "again", "welt"]]);
}

// hyperdb test/key-history.js: 'three feeds (again)'
#[test]
fn three_feeds_again() {
    let (db1, db2, db3) = three();
    let len = 5;
    let expected: Vec<String> = (0..len * 3).map(|i| i.to_string()).collect();
    versions(&db1, &expected[..len]);
    sync3(&db1, &db2, &db3);
    versions(&db2, &expected[len..len * 2]);
    sync3(&db1, &db2, &db3);
    versions(&db3, &expected[len * 2..]);
    sync3(&db1, &db2, &db3);
    let steps: Vec<[&str; 1]> = expected.iter().rev().map(|v| [v.as_str()]).collect();
    let steps: Vec<&[&str]> = steps.iter().map(|s| &s[..]).collect();
    assert_history(&db1, "version", &steps);
}

// Not a JS test: a write that is its writer's first entry, replaced by
// another writer's, is still in the history. (hyperdb 3.5.0 leaves it out:
// when stepping back it skips entry 1 of the other writers, `seq > 2` in
// `_nextHeads` of lib/key-history.js, and yields only `[['y']]` here.)
#[test]
fn a_peers_first_entry_is_in_the_history() {
    let (db1, db2) = two();
    db2.put("hello", b"x").unwrap();
    sync(&db1, &db2);
    db1.put("hello", b"y").unwrap();
    assert_history(&db1, "hello", &[&["y"], &["x"]]);
}
