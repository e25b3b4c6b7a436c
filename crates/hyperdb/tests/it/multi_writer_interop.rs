//! Several writers, against the running JS reference: a three-writer
//! database built and replicated by hyperdb 3.5.0 opens in Rust from every
//! replica's folder with causal answers, and the seed's two-writer flow run
//! by both implementations with the same key pairs writes the same bytes.

use std::collections::BTreeSet;
use std::path::Path;

use hypercore_feed::KeyPair;
use hyperdb::{local_sync, Db, OpenOptions};
use serde_json::{json, Value};
use testkit::node;

use crate::support::{build_latest_index, causal_values, js_values};

fn multi(dir: &Path, steps: &Value) -> Value {
    node(
        "db-multi.js",
        &[dir.to_str().unwrap(), "--steps", &steps.to_string()],
    )
}

fn rust_values(db: &Db, key: &str) -> BTreeSet<String> {
    db.get(key)
        .unwrap()
        .iter()
        .map(|n| n.value_str().unwrap())
        .collect()
}

#[test]
fn a_three_writer_database_built_by_js_opens_in_rust_from_every_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = json!([
        {"op": "create", "name": "a"},
        {"op": "create", "name": "b", "of": "a"},
        {"op": "create", "name": "c", "of": "a"},
        {"op": "put", "db": "a", "key": "x", "value": "a1"},
        {"op": "put", "db": "a", "key": "dir/one", "value": "a"},
        {"op": "put", "db": "a", "key": "dir/sub/deep", "value": "a"},
        {"op": "authorize", "db": "a", "target": "b"},
        {"op": "sync", "a": "a", "b": "b"},
        {"op": "authorize", "db": "b", "target": "c"},
        {"op": "sync", "a": "b", "b": "c"},
        {"op": "put", "db": "a", "key": "x", "value": "a2"},
        {"op": "put", "db": "b", "key": "x", "value": "b2"},
        {"op": "put", "db": "c", "key": "x", "value": "c2"},
        {"op": "del", "db": "b", "key": "dir/one"},
        {"op": "put", "db": "c", "key": "dir/two", "value": "c"},
        {"op": "put", "db": "c", "key": "dir/sub/deep", "value": "c"},
        {"op": "sync", "a": "a", "b": "b"},
        {"op": "sync", "a": "b", "b": "c"},
        {"op": "sync", "a": "a", "b": "c"},
        {"op": "put", "db": "a", "key": "y", "value": "a after all"},
        {"op": "del", "db": "c", "key": "dir/sub/deep"},
        {"op": "sync", "a": "a", "b": "c"},
        {"op": "sync", "a": "a", "b": "b"},
        {"op": "sync", "a": "b", "b": "c"},
    ]);
    let out = multi(tmp.path(), &steps);
    let keys = ["x", "dir/one", "dir/two", "dir/sub/deep", "y", "nope"];
    let local_keys: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| out[n]["localKey"].as_str().unwrap().to_string())
        .collect();
    for name in ["a", "b", "c"] {
        let dir = tmp.path().join(name);
        let dump = node("db-dump.js", &[dir.to_str().unwrap()]);
        let js = js_values(&dump);
        let db = Db::open_with(
            &dir,
            OpenOptions {
                create: false,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(db.writers().len(), 3, "{name}: every writer discovered");
        for key in &local_keys {
            let key_bytes = hex::decode(key).unwrap();
            assert!(
                db.is_authorized(&key_bytes).unwrap(),
                "{name}: {key} authorized"
            );
            assert_eq!(dump["authorized"][key], true, "{name}: JS agrees on {key}");
        }
        assert!(!db.is_authorized(&[9; 32]).unwrap());
        for key in keys {
            let ours = rust_values(&db, key);
            let causal = causal_values(&db, key);
            assert_eq!(ours, causal, "{name}: {key} follows causality");
            let theirs = js.get(key).cloned().unwrap_or_default();
            assert!(
                theirs.is_superset(&causal),
                "{name}: {key}: JS {theirs:?} misses a causal value of {causal:?}"
            );
            if theirs == causal {
                assert_eq!(ours, theirs, "{name}: {key}");
            }
        }
        // Once lookups have walked enough, the index of each key's latest
        // entry in every writer's feed answers them: the same answers.
        assert!(build_latest_index(&db, &keys), "{name}: index built");
        for key in keys {
            assert_eq!(
                rust_values(&db, key),
                causal_values(&db, key),
                "{name}: {key} (index)"
            );
        }
        // Everyone saw a2, b2 and c2 concurrently.
        assert_eq!(
            rust_values(&db, "x"),
            ["a2", "b2", "c2"].map(String::from).into()
        );
        assert_eq!(rust_values(&db, "dir/one"), BTreeSet::new());
        assert_eq!(rust_values(&db, "dir/sub/deep"), BTreeSet::new());
    }
}

fn write_local_key_pair(dir: &Path, pair: &KeyPair) {
    std::fs::create_dir_all(dir.join("local")).unwrap();
    std::fs::write(dir.join("local/key"), pair.public_key).unwrap();
    std::fs::write(dir.join("local/secret_key"), pair.secret_key).unwrap();
}

#[test]
fn the_seed_flow_writes_the_same_bytes_in_both_implementations() {
    let tmp = tempfile::tempdir().unwrap();
    let owner = KeyPair::generate();
    let second = KeyPair::generate();
    let pair_json = |p: &KeyPair| json!({"key": hex::encode(p.public_key), "secretKey": hex::encode(p.secret_key)});
    let steps = json!([
        {"op": "create", "name": "db1", "keyPair": pair_json(&owner)},
        {"op": "put", "db": "db1", "key": "example/first", "value": "db1 was here"},
        {"op": "put", "db": "db1", "key": "example/second", "value": "db1 was here"},
        {"op": "create", "name": "db2", "of": "db1", "keyPair": pair_json(&second)},
        {"op": "put", "db": "db2", "key": "example/third", "value": "db2 was here"},
        {"op": "put", "db": "db2", "key": "example/second", "value": "db2 was here"},
        {"op": "authorize", "db": "db1", "target": "db2"},
        {"op": "sync", "a": "db1", "b": "db2"},
        {"op": "put", "db": "db1", "key": "example/fourth", "value": "db1 after sync"},
        {"op": "put", "db": "db2", "key": "example/first", "value": "db2 after sync"},
        {"op": "put", "db": "db2", "key": "example/second", "value": "db2 resolves"},
    ]);
    let js_dir = tmp.path().join("js");
    multi(&js_dir, &steps);

    let rust_dir = tmp.path().join("rust");
    let db1 = Db::open_with(
        rust_dir.join("db1"),
        OpenOptions {
            key: Some(owner.public_key),
            secret_key: Some(owner.secret_key),
            ..Default::default()
        },
    )
    .unwrap();
    db1.put("example/first", b"db1 was here").unwrap();
    db1.put("example/second", b"db1 was here").unwrap();
    write_local_key_pair(&rust_dir.join("db2"), &second);
    let db2 = Db::open_with(
        rust_dir.join("db2"),
        OpenOptions {
            key: Some(*db1.key()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(db2.local_key(), &second.public_key);
    db2.put("example/third", b"db2 was here").unwrap();
    db2.put("example/second", b"db2 was here").unwrap();
    db1.authorize(db2.local_key()).unwrap();
    local_sync::sync(&db1, &db2).unwrap();
    db1.put("example/fourth", b"db1 after sync").unwrap();
    db2.put("example/first", b"db2 after sync").unwrap();
    db2.put("example/second", b"db2 resolves").unwrap();
    assert_eq!(
        rust_values(&db2, "example/second"),
        ["db2 resolves".to_string()].into()
    );
    drop((db1, db2));

    // Each writer's own feed: the entries, tries and clocks it wrote.
    for feed in ["db1/source", "db2/local"] {
        for file in ["key", "tree", "data", "signatures", "bitfield"] {
            let js = std::fs::read(js_dir.join(feed).join(file)).unwrap();
            let rust = std::fs::read(rust_dir.join(feed).join(file)).unwrap();
            assert!(js == rust, "{feed}/{file} differs");
        }
    }
}
