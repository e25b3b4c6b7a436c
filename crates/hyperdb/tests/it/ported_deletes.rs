//! hyperdb 3.5.0's `test/deletes.js`, ported.
//!
//! Not ported: 'delete one in many (iteration)' (needs iterators). 'delete
//! marks node as deleted' reads the two entries back by seq instead of
//! through a history stream.

use crate::ported_support::*;

// hyperdb test/deletes.js: 'basic delete'
#[test]
fn basic_delete() {
    let db = one();
    db.put("hello", b"world").unwrap();
    assert_one(&db, "hello", "hello", "world");
    db.del("hello").unwrap();
    assert_missing(&db, "hello");
}

// hyperdb test/deletes.js: 'delete one in many'
#[test]
fn delete_one_in_many() {
    let db = one();
    for i in 0..50 {
        let k = i.to_string();
        db.put(&k, k.as_bytes()).unwrap();
    }
    db.del("42").unwrap();
    assert_missing(&db, "42");
    assert_one(&db, "43", "43", "43");
    // Not in the JS test (its iteration variant checks this): every other
    // key is still there.
    for i in (0..50).filter(|&i| i != 42) {
        let k = i.to_string();
        assert_one(&db, &k, &k, &k);
    }
}

// hyperdb test/deletes.js: 'delete marks node as deleted'
#[test]
fn delete_marks_node_as_deleted() {
    let db = one();
    let put = db.put("hello", b"world").unwrap();
    let del = db.del("hello").unwrap();
    // What the writes returned...
    assert_eq!(
        (put.key.as_str(), put.value_str(), put.deleted),
        ("hello", Some("world".to_string()), false)
    );
    assert_eq!(
        (del.key.as_str(), del.value_str(), del.deleted),
        ("hello", None, true)
    );
    // ...and the feed's history, read back: the header, then the two writes.
    let index = db.writer_index(db.local_key()).unwrap();
    assert_eq!(db.feed(index).unwrap().len(), 3);
    let history: Vec<_> = (1..3)
        .map(|seq| {
            let n = db.node(index, seq).unwrap().unwrap();
            (n.key.clone(), n.value_str(), n.deleted)
        })
        .collect();
    assert_eq!(
        history,
        [
            ("hello".to_string(), Some("world".to_string()), false),
            ("hello".to_string(), None, true)
        ]
    );
}
