//! hyperdb 3.5.0's `test/watch.js`, ported. A JS watch calls back when
//! something under its prefix changed; ours is polled: `Watch::changed`
//! says whether anything under the prefix changed since the watch started
//! or since it last said so. Each JS callback becomes a `changed()` that
//! returns true at the point the callback would have run, and the points
//! where the JS test relies on no callback become a `changed()` that
//! returns false.
//!
//! 'remote watch' replicates over the real protocol (an in-memory duplex
//! stream, as in `ported_replicate.rs`); the others use the in-process
//! block copy of `ported_support`.

use std::time::Duration;

use crate::ported_support::*;
use hyperdb::{local_sync, replicate, ReplicateOptions};

// hyperdb test/watch.js: 'basic watch'
#[test]
fn basic_watch() {
    let db = one();
    let mut w = db.watch("").unwrap();
    assert!(!w.changed(&db).unwrap(), "nothing written yet");
    db.put("hello", b"world").unwrap();
    assert!(w.changed(&db).unwrap(), "watch triggered");
    assert!(!w.changed(&db).unwrap(), "reported once");
}

// hyperdb test/watch.js: 'watch prefix'
#[test]
fn watch_prefix() {
    let db = one();
    let mut w = db.watch("foo").unwrap();
    db.put("hello", b"world").unwrap();
    assert!(!w.changed(&db).unwrap(), "a write outside the prefix");
    db.put("foo/bar", b"baz").unwrap();
    assert!(w.changed(&db).unwrap(), "a write under the prefix");
}

// hyperdb test/watch.js: 'recursive watch'
#[test]
fn recursive_watch() {
    let db = one();
    let mut w = db.watch("foo").unwrap();
    db.put("foo", b"bar").unwrap();
    // Each change is answered by another write to the watched key.
    let mut triggered = 0;
    while w.changed(&db).unwrap() {
        if triggered == 20 {
            break;
        }
        triggered += 1;
        assert!(!w.changed(&db).unwrap(), "once per write");
        db.put("foo", format!("bar-{triggered}").as_bytes())
            .unwrap();
    }
    assert_eq!(triggered, 20, "watch triggered");
    assert_eq!(values(&db, "foo"), ["bar-20"]);
}

// hyperdb test/watch.js: 'watch and stop watching'
#[test]
fn watch_and_stop_watching() {
    let db = one();
    let mut w = db.watch("foo").unwrap();
    db.put("foo/bar", b"baz").unwrap();
    assert!(w.changed(&db).unwrap(), "watch triggered once");
    // `w.destroy()`: a dropped watch reports nothing more.
    drop(w);
    db.put("foo/bar/baz", b"qux").unwrap();
    assert_eq!(values(&db, "foo/bar/baz"), ["qux"]);
    // Not in the JS test: a new watch starts from what is there now.
    let mut w = db.watch("foo").unwrap();
    assert!(!w.changed(&db).unwrap());
}

// hyperdb test/watch.js: 'remote watch'
#[tokio::test]
async fn remote_watch() {
    let db = one();
    let clone = replica_of(db.key());
    for i in 0..100 {
        db.put(&format!("hello-{i}"), format!("world-{i}").as_bytes())
            .unwrap();
    }
    db.put("flush", b"flush").unwrap();

    let mut w = clone.watch("").unwrap();
    assert!(!w.changed(&clone).unwrap(), "nothing arrived yet");

    // `replicate(db, clone)`: one session over the real protocol.
    let (a, b) = (db, clone);
    let (x, y) = tokio::io::duplex(1 << 20);
    let (ra, rb) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(
            replicate(a.clone(), x, ReplicateOptions::default()),
            replicate(b.clone(), y, ReplicateOptions::default())
        )
    })
    .await
    .expect("replication finishes within 20 s");
    ra.unwrap();
    rb.unwrap();

    assert!(w.changed(&b).unwrap(), "remote watch triggered");
    assert!(!w.changed(&b).unwrap(), "reported once");
    assert_eq!(values(&b, "flush"), ["flush"]);
    assert_eq!(values(&b, "hello-99"), ["world-99"]);
}

// hyperdb test/watch.js: 'watch with 3rd-party authorize'
#[test]
fn watch_with_3rd_party_authorize() {
    let (a, b) = two();
    let mut w = a.watch("").unwrap();
    let c = replica_of(a.key());

    sync(&a, &b);
    assert!(!w.changed(&a).unwrap(), "a and b were in sync already");
    sync(&b, &c);
    b.authorize(c.local_key()).unwrap();
    sync(&b, &c);
    c.put("hello2", b"world2").unwrap();
    sync(&b, &c);
    assert!(!w.changed(&a).unwrap(), "nothing reached a yet");

    // `replicate(a, b)`, which the JS watch sees in two steps, one per
    // writer updated under the prefix: first b's feed (b authorizing c)...
    let b_key = *b.local_key();
    let copied = local_sync::copy_feed(&b, &a, &b_key, None).unwrap();
    assert_eq!(copied, 1, "b's authorization of c");
    assert!(w.changed(&a).unwrap(), "watch called for b's authorization");
    assert!(!w.changed(&a).unwrap());
    // ...then c's feed (c's put), now that a knows c as a writer.
    sync(&a, &b);
    assert!(w.changed(&a).unwrap(), "watch called for c's put");
    assert!(!w.changed(&a).unwrap(), "nothing else changed");
    assert_eq!(values(&a, "hello2"), ["world2"]);
}

/// Not a JS test: `changed()` reports writes under the prefix whichever way
/// they come (here a peer's), and not others.
#[test]
fn watch_prefix_sees_replicated_writes_only_under_it() {
    let (a, b) = two();
    let mut w = a.watch("foo").unwrap();
    b.put("bar", b"1").unwrap();
    sync(&a, &b);
    assert!(!w.changed(&a).unwrap(), "a peer's write outside the prefix");
    b.put("foo/x", b"2").unwrap();
    sync(&a, &b);
    assert!(w.changed(&a).unwrap(), "a peer's write under the prefix");
}
