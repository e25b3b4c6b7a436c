//! hyperdb 3.5.0's `test/hooks.js`, ported, and the write stream's batching.

use hyperdb::trie::Ptr;
use hyperdb::{Db, DbStorage, GetOptions, Op, OpenOptions};

fn one() -> Db {
    Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap()
}

// hyperdb test/hooks.js: 'onlookup hook'
#[test]
fn onlookup_hook() {
    let db = one();
    let batch: Vec<Op> = (0..200)
        .map(|i| Op::Put {
            key: i.to_string(),
            value: i.to_string().into_bytes(),
        })
        .collect();
    db.batch(&batch).unwrap();
    let mut path = Vec::new();
    let found = db
        .get_with(
            "0",
            GetOptions {
                deletes: false,
                on_lookup: Some(&mut |ptr: Ptr| path.push(ptr)),
            },
        )
        .unwrap();
    let found = found[0].clone();
    let nodes: Vec<_> = path
        .iter()
        .map(|p| db.node(p.feed, p.seq).unwrap().unwrap())
        .collect();
    let length = db.writers()[0].length;
    assert_eq!(nodes[0].seq, length - 1, "first is head");
    for pair in nodes.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let in_trie = a.trie.positions().any(|p| {
            a.trie.bucket(p).any(|(_, ptrs)| {
                ptrs.contains(&Ptr {
                    feed: b.feed,
                    seq: b.seq,
                })
            })
        });
        assert!(in_trie, "each lookup follows the previous node's trie");
    }
    assert_eq!(
        nodes.last().unwrap().seq,
        found.seq,
        "last node is the found one"
    );
}

#[test]
fn write_all_batches_a_stream_of_operations() {
    let db = one();
    let ops = (0..2500).map(|i| Op::Put {
        key: format!("k/{i}"),
        value: vec![b'v'; 10],
    });
    assert_eq!(db.write_all(ops, 1000).unwrap(), 2500);
    assert_eq!(db.writers()[0].length, 2501);
    // One signature per batch: three batches.
    let feed = db.feed(0).unwrap();
    let signed = (1..2501)
        .filter(|&i| feed.signature(i).map(|(at, _)| at == i).unwrap_or(false))
        .count();
    assert_eq!(signed, 3);
    assert_eq!(db.get("k/2499").unwrap().len(), 1);
}
