//! A writer that no authorized writer lists counts nowhere: not in `get`,
//! nor in the history, the history of a key, a checkout or a diff, even
//! when its feed is stored here.

use hyperdb::{local_sync, Db, DbStorage, Error, OpenOptions};

fn replica_of(key: &[u8; 32]) -> Db {
    let options = OpenOptions {
        key: Some(*key),
        ..Default::default()
    };
    Db::open_storage(DbStorage::memory(), options).unwrap()
}

/// An unauthorized replica `b` that itself "authorized" `c` (which makes
/// nothing authorized) and holds `c`'s feed, each having written `k`.
fn unauthorized_feed_stored() -> (Db, [u8; 32]) {
    let owner = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
    let b = replica_of(owner.key());
    let c = replica_of(owner.key());
    let c_key = *c.local_key();
    b.put("k", b"from b").unwrap();
    b.authorize(&c_key).unwrap();
    c.put("k", b"from c").unwrap();
    c.put("only/c", b"from c").unwrap();
    let copied = local_sync::copy_feed(&c, &b, &c_key, None).unwrap();
    assert_eq!(copied, 3, "c's header and two entries are stored in b");
    assert!(!b.is_authorized(&c_key).unwrap());
    (b, c_key)
}

#[test]
fn an_unlisted_writer_is_in_no_answer() {
    let (b, c_key) = unauthorized_feed_stored();
    let c = b.writer_index(&c_key).unwrap();
    let values: Vec<_> = b
        .get("k")
        .unwrap()
        .iter()
        .map(|n| n.value.clone())
        .collect();
    assert_eq!(values, [Some(b"from b".to_vec())]);
    assert!(b.get("only/c").unwrap().is_empty());

    let history: Vec<_> = b.history(false).unwrap().map(|n| n.unwrap()).collect();
    assert!(!history.is_empty());
    assert!(
        history.iter().all(|n| n.feed != c),
        "history shows c's writes"
    );
    let history: Vec<_> = b.history(true).unwrap().map(|n| n.unwrap()).collect();
    assert!(
        history.iter().all(|n| n.feed != c),
        "reverse history shows c's writes"
    );
    for step in b.key_history("k").unwrap() {
        assert!(
            step.unwrap().iter().all(|n| n.feed != c),
            "key history shows c's writes"
        );
    }

    // A version naming c's head (as a replica that counts c would give).
    let mut version = c_key.to_vec();
    hypercore_feed::varint::encode(2, &mut version);
    let err = b.checkout(&version).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("not authorized"), "{err}");
    let changes = b.diff(&[], "").unwrap();
    assert!(
        changes.iter().all(|c| c.key != "only/c"),
        "diff shows c's writes"
    );
}
