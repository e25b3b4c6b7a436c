//! hyperdb 3.5.0's `test/basic.js`, ported: puts, gets, batches and a
//! conflict between two writers.
//!
//! Not ported: 'version' (needs `version`/`checkout`), 'does not reinsert if
//! isNotExists is true in put' and 'normal insertions work with ifNotExists'
//! (our `put` has no `ifNotExists` option), 'opts is not mutated' (a JS
//! options object; nothing to mutate here). The iterator half of 'can insert
//! falsy values' and the `ifNotExists` half of 'put with ifNotExists does not
//! reinsert with conflict' are left out; their put/get halves are below.

use crate::ported_support::*;
use hyperdb::{Db, Op, OpenOptions};
use serde_json::{json, Value};

fn put_op(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

// hyperdb test/basic.js: 'basic put/get'
#[test]
fn basic_put_get() {
    let db = one();
    let node = db.put("hello", b"world").unwrap();
    assert_eq!(node.key, "hello");
    assert_eq!(node.value_str().as_deref(), Some("world"));
    assert_one(&db, "hello", "hello", "world");
}

// hyperdb test/basic.js: 'get on empty db'
#[test]
fn get_on_empty_db() {
    let db = one();
    assert_missing(&db, "hello");
}

// hyperdb test/basic.js: 'not found'
#[test]
fn not_found() {
    let db = one();
    db.put("hello", b"world").unwrap();
    assert_missing(&db, "hej");
}

// hyperdb test/basic.js: 'leading / is ignored'
#[test]
fn leading_slash_is_ignored() {
    let db = one();
    db.put("/hello", b"world").unwrap();
    assert_one(&db, "/hello", "hello", "world");
    assert_one(&db, "hello", "hello", "world");
}

// hyperdb test/basic.js: 'multiple put/get'
#[test]
fn multiple_put_get() {
    let db = one();
    db.put("hello", b"world").unwrap();
    db.put("world", b"hello").unwrap();
    assert_one(&db, "hello", "hello", "world");
    assert_one(&db, "world", "world", "hello");
}

// hyperdb test/basic.js: 'overwrites'
#[test]
fn overwrites() {
    let db = one();
    db.put("hello", b"world").unwrap();
    assert_one(&db, "hello", "hello", "world");
    db.put("hello", b"verden").unwrap();
    assert_one(&db, "hello", "hello", "verden");
}

// hyperdb test/basic.js: 'put/gets namespaces'
#[test]
fn put_gets_namespaces() {
    let db = one();
    db.put("hello/world", b"world").unwrap();
    db.put("world", b"hello").unwrap();
    assert_one(&db, "hello/world", "hello/world", "world");
    assert_one(&db, "world", "world", "hello");
}

// hyperdb test/basic.js: 'put in tree'
#[test]
fn put_in_tree() {
    let db = one();
    db.put("hello", b"a").unwrap();
    db.put("hello/world", b"b").unwrap();
    assert_one(&db, "hello", "hello", "a");
    assert_one(&db, "hello/world", "hello/world", "b");
}

// hyperdb test/basic.js: 'put in tree reverse order'
#[test]
fn put_in_tree_reverse_order() {
    let db = one();
    db.put("hello/world", b"b").unwrap();
    db.put("hello", b"a").unwrap();
    assert_one(&db, "hello", "hello", "a");
    assert_one(&db, "hello/world", "hello/world", "b");
}

// hyperdb test/basic.js: 'multiple put in tree'
#[test]
fn multiple_put_in_tree() {
    let db = one();
    db.put("hello/world", b"b").unwrap();
    db.put("hello", b"a").unwrap();
    db.put("hello/verden", b"c").unwrap();
    db.put("hello", b"d").unwrap();
    assert_one(&db, "hello", "hello", "d");
    assert_one(&db, "hello/world", "hello/world", "b");
    assert_one(&db, "hello/verden", "hello/verden", "c");
}

// hyperdb test/basic.js: 'insert 100 values and get them all'
#[test]
fn insert_100_values_and_get_them_all() {
    let db = one();
    for i in 0..100 {
        let kv = format!("#{i}");
        db.put(&kv, kv.as_bytes()).unwrap();
    }
    for i in 0..100 {
        let kv = format!("#{i}");
        assert_one(&db, &kv, &kv, &kv);
    }
}

// hyperdb test/basic.js: 'race works'
// (JS issues the ten puts without waiting; ours are synchronous, so this is
// ten puts in a row followed by the reads.)
#[test]
fn race_works() {
    let db = one();
    for i in 0..10 {
        let kv = format!("#{i}");
        db.put(&kv, kv.as_bytes()).unwrap();
    }
    for i in 0..10 {
        let kv = format!("#{i}");
        assert_one(&db, &kv, &kv, &kv);
    }
}

// hyperdb test/basic.js: 'basic batch'
#[test]
fn basic_batch() {
    let db = one();
    db.batch(&[
        put_op("hello", "world"),
        put_op("hej", "verden"),
        put_op("hello", "welt"),
    ])
    .unwrap();
    assert_one(&db, "hello", "hello", "welt");
    assert_one(&db, "hej", "hej", "verden");
}

// hyperdb test/basic.js: 'batch with del'
#[test]
fn batch_with_del() {
    let db = one();
    db.batch(&[
        put_op("hello", "world"),
        put_op("hej", "verden"),
        put_op("hello", "welt"),
    ])
    .unwrap();
    db.batch(&[put_op("hello", "verden"), Op::Del { key: "hej".into() }])
        .unwrap();
    assert_one(&db, "hello", "hello", "verden");
    assert_missing(&db, "hej");
}

// hyperdb test/basic.js: 'multiple batches'
#[test]
fn multiple_batches() {
    let db = one();
    let nodes = db
        .batch(&[put_op("foo", "foo"), put_op("bar", "bar")])
        .unwrap();
    assert_eq!(nodes.len(), 2);
    assert_one(&db, "foo", "foo", "foo");
    assert_one(&db, "bar", "bar", "bar");
    let nodes = db
        .batch(&[
            put_op("foo", "foo2"),
            put_op("bar", "bar2"),
            put_op("baz", "baz"),
        ])
        .unwrap();
    assert_eq!(nodes.len(), 3);
    assert_one(&db, "foo", "foo", "foo2");
    assert_one(&db, "bar", "bar", "bar2");
    assert_one(&db, "baz", "baz", "baz");
}

// hyperdb test/basic.js: 'createWriteStream'
// (We have no write stream; it turns each chunk written into a batch, which
// is what this does: one chunk of two puts, then one of a single put.)
#[test]
fn create_write_stream() {
    let db = one();
    db.batch(&[put_op("foo", "foo"), put_op("bar", "bar")])
        .unwrap();
    db.batch(&[put_op("baz", "baz")]).unwrap();
    assert_one(&db, "foo", "foo", "foo");
    assert_one(&db, "bar", "bar", "bar");
    assert_one(&db, "baz", "baz", "baz");
}

// hyperdb test/basic.js: 'createWriteStream pipe'
// (1000 puts piped into the write stream, which batches what it has
// buffered; here as batches of 64.)
#[test]
fn create_write_stream_pipe() {
    let db = one();
    let ops: Vec<Op> = (0..1000)
        .map(|i| put_op(&format!("foo{i}"), &i.to_string()))
        .collect();
    for chunk in ops.chunks(64) {
        db.batch(chunk).unwrap();
    }
    assert_one(&db, "foo1", "foo1", "1");
    assert_one(&db, "foo50", "foo50", "50");
    assert_one(&db, "foo999", "foo999", "999");
}

// hyperdb test/basic.js: 'create with precreated keypair'
#[test]
fn create_with_precreated_keypair() {
    let key_pair = hypercore_feed::KeyPair::generate();
    let tmp = tempfile::tempdir().unwrap();
    let options = OpenOptions {
        key: Some(key_pair.public_key),
        secret_key: Some(key_pair.secret_key),
        ..Default::default()
    };
    let db = Db::open_with(tmp.path(), options).unwrap();
    let node = db.put("hello", b"world").unwrap();
    assert_eq!(node.value_str().as_deref(), Some("world"));
    assert_eq!(db.key(), &key_pair.public_key, "pubkey matches");
    assert!(db.is_owner());
    let stored = std::fs::read(tmp.path().join("source").join("secret_key")).unwrap();
    assert_eq!(stored, key_pair.secret_key, "secret key is stored");
    assert_one(&db, "hello", "hello", "world");
}

/// The JSON value stored at `key` (the JS test opens the db with
/// `valueEncoding: 'json'`; ours stores bytes, so the test encodes).
fn get_json(db: &Db, key: &str) -> Value {
    let node = get_one(db, key);
    serde_json::from_slice(node.value.as_deref().expect("a value")).unwrap()
}

// hyperdb test/basic.js: 'can insert falsy values'
// (The iterator half is left for the iterator milestone. Besides JSON 0 and
// false, the byte-level falsy value, an empty value, must be a value too.)
#[test]
fn can_insert_falsy_values() {
    let db = one();
    db.put("hello", &serde_json::to_vec(&json!(0)).unwrap())
        .unwrap();
    db.put("world", &serde_json::to_vec(&json!(false)).unwrap())
        .unwrap();
    db.put("empty", b"").unwrap();
    assert_eq!(get_json(&db, "hello"), json!(0));
    assert_eq!(get_json(&db, "world"), json!(false));
    let empty = get_one(&db, "empty");
    assert!(!empty.deleted);
    assert_eq!(empty.value.as_deref(), Some(&b""[..]));
}

// hyperdb test/basic.js: 'can put/get a null value'
// (JS's json codec stores no value at all for null; our put always stores
// bytes, so null travels as the JSON text `null`.)
#[test]
fn can_put_get_a_null_value() {
    let db = one();
    db.put("some key", &serde_json::to_vec(&Value::Null).unwrap())
        .unwrap();
    assert_eq!(get_json(&db, "some key"), Value::Null);
}

// hyperdb test/basic.js: 'put with ifNotExists does not reinsert with conflict'
// (Only the conflict: the final `put('1', '1c', {ifNotExists: true})` needs
// an option we lack. JS expects ['1b', '1a'] from its get; ours orders by
// writer, so the values are compared as a set.)
#[test]
fn put_with_if_not_exists_does_not_reinsert_with_conflict() {
    let (db1, db2) = two();
    db1.put("0", b"0").unwrap();
    sync(&db1, &db2);
    db1.put("1", b"1a").unwrap();
    db2.put("1", b"1b").unwrap();
    db1.put("10", b"10").unwrap();
    sync(&db1, &db2);
    db1.put("2", b"2").unwrap();
    db1.put("1/0", b"1/0").unwrap();

    assert_eq!(sorted_values(&db1, "1"), ["1a", "1b"]);
    assert_eq!(sorted_values(&db2, "1"), ["1a", "1b"]);
    for (key, value) in [("0", "0"), ("10", "10"), ("2", "2"), ("1/0", "1/0")] {
        assert_one(&db1, key, key, value);
    }
}
