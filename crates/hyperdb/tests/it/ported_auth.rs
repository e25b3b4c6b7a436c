//! hyperdb 3.5.0's `test/auth.js`, ported: who counts as an authorized
//! writer, before and after replication.
//!
//! 'authorized is consistent' runs without the content feeds the JS test
//! enables (content feeds are a later milestone; they play no part in the
//! authorization it checks) and without its simulated storage latency.

use crate::ported_support::*;
use hyperdb::Error;

// hyperdb test/auth.js: 'authorized writer passes "authorized" api'
// (the first of two tests with this name: the owner writes)
#[test]
fn authorized_writer_passes_authorized_api() {
    let (a, b) = two();
    a.put("foo", b"bar").unwrap();
    let a_local = *a.local_key();
    let b_local = *b.local_key();
    assert!(a.is_authorized(&a_local).unwrap());
    assert!(b.is_authorized(&b_local).unwrap());
}

// hyperdb test/auth.js: 'authorized writer passes "authorized" api'
// (the second of two tests with this name: the authorized replica writes)
#[test]
fn authorized_writer_passes_authorized_api_after_replica_put() {
    let (a, b) = two();
    b.put("foo", b"bar").unwrap();
    let a_local = *a.local_key();
    let b_local = *b.local_key();
    assert!(a.is_authorized(&a_local).unwrap());
    assert!(b.is_authorized(&b_local).unwrap());
}

// hyperdb test/auth.js: 'unauthorized writer fails "authorized" api'
#[test]
fn unauthorized_writer_fails_authorized_api() {
    let a = one();
    let b = replica_of(a.key());
    let b_local = *b.local_key();
    assert!(!b.is_authorized(&b_local).unwrap());
}

// hyperdb test/auth.js: 'local unauthorized writes =/> authorized'
#[test]
fn local_unauthorized_writes_do_not_make_authorized() {
    let a = one();
    let b = replica_of(a.key());
    b.put("/foo", b"bar").unwrap();
    let b_local = *b.local_key();
    assert!(!b.is_authorized(&b_local).unwrap());
    assert!(b.is_authorized(a.local_key()).unwrap());
}

// hyperdb test/auth.js: 'unauthorized writer doing a put after replication'
#[test]
fn unauthorized_writer_doing_a_put_after_replication() {
    let a = one();
    let b = replica_of(a.key());
    sync(&a, &b);
    b.put("foo", b"bar").unwrap();
}

// hyperdb test/auth.js: 'unauthorized writer fails "authorized" after some writes'
#[test]
fn unauthorized_writer_fails_authorized_after_some_writes() {
    let a = one();
    for value in ["bar", "bar2", "bar3", "bar4"] {
        a.put("foo", value.as_bytes()).unwrap();
    }
    let b = replica_of(a.key());
    sync(&a, &b);
    let b_local = *b.local_key();
    assert!(!b.is_authorized(&b_local).unwrap());
    // Not in the JS test: the replica did get the owner's writes.
    assert_one(&b, "foo", "foo", "bar4");
}

// hyperdb test/auth.js: 'authorized is consistent'
#[test]
fn authorized_is_consistent() {
    let a = one();
    let b = replica_of(a.key());
    b.put("bar", b"foo").unwrap();
    a.put("foo", b"bar").unwrap();
    let b_local = *b.local_key();
    a.authorize(&b_local).unwrap();
    sync(&a, &b);
    assert!(a.is_authorized(&b_local).unwrap());
    assert!(b.is_authorized(&b_local).unwrap());
    // Not in the JS test: once authorized, b's earlier write counts for a.
    assert_one(&a, "bar", "bar", "foo");
    assert_one(&b, "foo", "foo", "bar");
}

// Not a JS test: JS's authorize silently accepts the db key or an
// already-authorized key; ours refuses both, and a key of the wrong length.
// (Counterpart of the authorize calls in test/auth.js.)
#[test]
fn authorize_refuses_db_key_repeats_and_bad_lengths() {
    let (a, b) = two();
    let db_key = *a.key();
    let b_local = *b.local_key();
    assert!(matches!(
        a.authorize(&db_key),
        Err(Error::AuthorizeDbKey(_))
    ));
    assert!(matches!(
        a.authorize(&b_local),
        Err(Error::AlreadyAuthorized(_))
    ));
    assert!(matches!(
        a.authorize(&[1; 31]),
        Err(Error::BadKeyLength(31))
    ));
}
