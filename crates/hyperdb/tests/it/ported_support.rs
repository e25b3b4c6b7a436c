//! Shared helpers of the `ported_*` tests: the counterparts of hyperdb's
//! `test/helpers/create.js` (one database, or several authorized replicas of
//! one) and of its `replicate` helper (here an in-process block copy).

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
pub fn many_from(first: Db, count: usize) -> Vec<Db> {
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
pub fn sync(a: &Db, b: &Db) {
    local_sync::sync(a, b).unwrap();
}

/// The current values of `key`, as text, in the order `get` gives them.
pub fn values(db: &Db, key: &str) -> Vec<String> {
    db.get(key)
        .unwrap()
        .iter()
        .map(|n| n.value_str().expect("a current value of a put"))
        .collect()
}

/// The current values of `key`, as text, sorted.
pub fn sorted_values(db: &Db, key: &str) -> Vec<String> {
    let mut v = values(db, key);
    v.sort();
    v
}

/// The single current node of `key` (the JS helper's reduced `get`), checking
/// there is exactly one.
pub fn get_one(db: &Db, key: &str) -> Arc<Node> {
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
pub fn assert_one(db: &Db, key: &str, node_key: &str, value: &str) {
    let node = get_one(db, key);
    assert_eq!(node.key, node_key, "same key");
    assert_eq!(node.value_str().as_deref(), Some(value), "same value");
    assert!(!node.deleted);
}

/// Asserts that `key` has no current value (JS: `t.same(node, null)`).
pub fn assert_missing(db: &Db, key: &str) {
    let nodes = db.get(key).unwrap();
    assert!(
        nodes.is_empty(),
        "expected no value for {key:?}, got {:?}",
        nodes.iter().map(|n| n.value_str()).collect::<Vec<_>>()
    );
}

/// `create.three()`.
pub fn three() -> (Db, Db, Db) {
    let mut dbs = many(3);
    let c = dbs.pop().unwrap();
    let b = dbs.pop().unwrap();
    let a = dbs.pop().unwrap();
    (a, b, c)
}

/// `replicateAll` of `create.three()` (every pair until nothing moves).
pub fn sync3(a: &Db, b: &Db, c: &Db) {
    loop {
        let moved = local_sync::sync(a, b).unwrap()
            + local_sync::sync(a, c).unwrap()
            + local_sync::sync(b, c).unwrap();
        if moved == 0 {
            return;
        }
    }
}

/// The JS `put` helper with a list of strings: each key is written with
/// itself as value, in order.
pub fn put_keys(db: &Db, keys: &[&str]) {
    for k in keys {
        db.put(k, k.as_bytes()).unwrap();
    }
}

/// The JS `put` helper with `{key, value}` pairs, in order.
pub fn put_pairs(db: &Db, pairs: &[(&str, &str)]) {
    for (k, v) in pairs {
        db.put(k, v.as_bytes()).unwrap();
    }
}

/// The values of one iteration entry as text (`None` for a delete), sorted.
pub fn entry_values(nodes: &[Arc<Node>]) -> Vec<Option<String>> {
    let mut v: Vec<Option<String>> = nodes.iter().map(|n| n.value_str()).collect();
    v.sort();
    v
}

/// Drains an iterator into key -> sorted values (the JS tests' `all`
/// helper), failing on a key seen twice or an entry whose nodes are not all
/// under its key.
pub fn collect_entries<I>(iter: I) -> std::collections::BTreeMap<String, Vec<Option<String>>>
where
    I: IntoIterator<Item = hyperdb::Result<(String, Vec<Arc<Node>>)>>,
{
    let mut map = std::collections::BTreeMap::new();
    for entry in iter {
        let (key, nodes) = entry.unwrap();
        assert!(!nodes.is_empty(), "an entry without nodes for {key:?}");
        for n in &nodes {
            assert_eq!(n.key, key, "every node of an entry is under its key");
        }
        let values = entry_values(&nodes);
        assert!(
            map.insert(key.clone(), values).is_none(),
            "duplicate node for {key:?}"
        );
    }
    map
}

/// An expected `collect_entries` result from `(key, values)` pairs, `None`
/// values standing for deletes.
pub fn entries(
    list: &[(&str, &[Option<&str>])],
) -> std::collections::BTreeMap<String, Vec<Option<String>>> {
    list.iter()
        .map(|(k, vs)| {
            let mut vs: Vec<Option<String>> = vs.iter().map(|v| v.map(|s| s.to_string())).collect();
            vs.sort();
            (k.to_string(), vs)
        })
        .collect()
}

/// The keys an iterator yields, in order.
pub fn iter_keys<I>(iter: I) -> Vec<String>
where
    I: IntoIterator<Item = hyperdb::Result<(String, Vec<Arc<Node>>)>>,
{
    iter.into_iter().map(|e| e.unwrap().0).collect()
}
