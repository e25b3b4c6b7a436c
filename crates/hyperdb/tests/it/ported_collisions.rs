//! hyperdb 3.5.0's `test/collisions.js`, ported: keys whose path hashes
//! collide.
//!
//! Not ported: 'two keys with same siphash (iterator)' and 'two prefixes
//! with same siphash (iterator)' (need iterators); the gets of the second
//! are below as an extra check.

use crate::ported_support::*;

// hyperdb test/collisions.js: 'two keys with same siphash'
#[test]
fn two_keys_with_same_siphash() {
    // The keys really do collide.
    assert_eq!(
        hyperdb::hash::path("idgcmnmna", false),
        hyperdb::hash::path("mpomeiehc", false)
    );
    let db = one();
    db.put("idgcmnmna", b"a").unwrap();
    db.put("mpomeiehc", b"b").unwrap();
    assert_one(&db, "idgcmnmna", "idgcmnmna", "a");
    assert_one(&db, "mpomeiehc", "mpomeiehc", "b");
}

// hyperdb test/collisions.js: 'two prefixes with same siphash (iterator)'
// (the put/get part only; the prefix iteration needs iterators)
#[test]
fn two_prefixes_with_same_siphash() {
    let db = one();
    db.put("idgcmnmna/a", b"a").unwrap();
    db.put("mpomeiehc/b", b"b").unwrap();
    assert_one(&db, "idgcmnmna/a", "idgcmnmna/a", "a");
    assert_one(&db, "mpomeiehc/b", "mpomeiehc/b", "b");
    assert_missing(&db, "idgcmnmna/b");
    assert_missing(&db, "mpomeiehc/a");
}
