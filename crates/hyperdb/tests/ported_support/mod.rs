//! Shared helpers of the `ported_*` tests: the counterparts of hyperdb's
//! `test/helpers/create.js` (one database, or several authorized replicas of
//! one) and of its `replicate` helper (here an in-process block copy).

#![allow(dead_code)]

use std::sync::Arc;

use hyperdb::{local_sync, Db, DbStorage, Node, OpenOptions};

/// A fresh in-memory database (`create.one()`).
pub fn one() -> Db {
    Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap()
}

/// A fresh in-memory replica of the database with key `key`
/// (`create.one(key)`): it has its own, not yet authorized, writer.
pub fn replica_of(key: &[u8; 32]) -> Db {
    Db::open_storage(
        DbStorage::memory(),
        OpenOptions {
            key: Some(*key),
            ..Default::default()
        },
    )
    .unwrap()
}

/// `create.many(count)`: the first database authorizes each of the others'
/// local writers, then everyone replicates with everyone.
pub fn many(count: usize) -> Vec<Db> {
    many_from(one(), count)
}

/// `create.many(count)` with a given first database (for instance one on disk).
pub fn many_from(mut first: Db, count: usize) -> Vec<Db> {
    let mut dbs = Vec::with_capacity(count);
    let mut others = Vec::new();
    for _ in 1..count {
        let db = replica_of(first.key());
        first.authorize(db.local_key()).unwrap();
        others.push(db);
    }
    dbs.push(first);
    dbs.extend(others);
    sync_all(&mut dbs);
    dbs
}

/// `create.two()`.
pub fn two() -> (Db, Db) {
    let mut dbs = many(2);
    let b = dbs.pop().unwrap();
    let a = dbs.pop().unwrap();
    (a, b)
}

/// Two distinct databases of a slice, both mutable.
pub fn pair(dbs: &mut [Db], a: usize, b: usize) -> (&mut Db, &mut Db) {
    assert_ne!(a, b);
    if a < b {
        let (x, y) = dbs.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = dbs.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

/// Replicates every pair of databases until no block moves any more
/// (`replicateByIndex` over all of them).
pub fn sync_all(dbs: &mut [Db]) {
    loop {
        let mut moved = 0;
        for i in 0..dbs.len() {
            for j in i + 1..dbs.len() {
                let (a, b) = pair(dbs, i, j);
                moved += local_sync::sync(a, b).unwrap();
            }
        }
        if moved == 0 {
            return;
        }
    }
}

/// Replicates two databases both ways until nothing moves (`replicate(a, b)`).
pub fn sync(a: &mut Db, b: &mut Db) {
    local_sync::sync(a, b).unwrap();
}

/// The current values of `key`, as text, in the order `get` gives them.
pub fn values(db: &mut Db, key: &str) -> Vec<String> {
    db.get(key)
        .unwrap()
        .iter()
        .map(|n| n.value_str().expect("a current value of a put"))
        .collect()
}

/// The current values of `key`, as text, sorted.
pub fn sorted_values(db: &mut Db, key: &str) -> Vec<String> {
    let mut v = values(db, key);
    v.sort();
    v
}

/// The single current node of `key` (the JS helper's reduced `get`), checking
/// there is exactly one.
pub fn get_one(db: &mut Db, key: &str) -> Arc<Node> {
    let nodes = db.get(key).unwrap();
    assert_eq!(
        nodes.len(),
        1,
        "expected one value for {key:?}, got {:?}",
        nodes.iter().map(|n| n.value_str()).collect::<Vec<_>>()
    );
    nodes[0].clone()
}

/// Asserts that `key` has exactly one current value, `value`, under the
/// normalized key `node_key` (JS: `t.same(node.key, ...)`, `t.same(node.value, ...)`).
pub fn assert_one(db: &mut Db, key: &str, node_key: &str, value: &str) {
    let node = get_one(db, key);
    assert_eq!(node.key, node_key, "same key");
    assert_eq!(node.value_str().as_deref(), Some(value), "same value");
    assert!(!node.deleted);
}

/// Asserts that `key` has no current value (JS: `t.same(node, null)`).
pub fn assert_missing(db: &mut Db, key: &str) {
    let nodes = db.get(key).unwrap();
    assert!(
        nodes.is_empty(),
        "expected no value for {key:?}, got {:?}",
        nodes.iter().map(|n| n.value_str()).collect::<Vec<_>>()
    );
}
