//! Helpers shared by the integration tests: databases in memory, the
//! causal rule computed by reading every entry, and the JS reference's dumps.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hyperdb::{Db, DbStorage, Node, OpenOptions};
use serde_json::Value;

/// The names of the files in a database folder's `index/`.
pub fn index_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("index"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// A database in memory: a new one (you own it), or with `key` a replica
/// of that database with its own writer.
pub fn memory_db(key: Option<[u8; 32]>) -> Db {
    Db::open_storage(
        DbStorage::memory(),
        OpenOptions {
            key,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Looks `keys` up until the database has built its index of each key's
/// latest entries (lookups walk until they have visited as many entries as
/// building it reads); whether it did within a thousand rounds.
pub fn build_latest_index(db: &Db, keys: &[&str]) -> bool {
    for _ in 0..1000 {
        if db.latest_index().is_some() {
            return true;
        }
        for key in keys {
            db.get(key).unwrap();
        }
    }
    db.latest_index().is_some()
}

/// The current values of `key` as text, sorted.
pub fn sorted_values(db: &Db, key: &str) -> Vec<String> {
    sorted_texts(&db.get(key).unwrap())
}

/// The values of `nodes` as text, sorted.
pub fn sorted_texts(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut v: Vec<String> = nodes.iter().map(|n| n.value_str().unwrap()).collect();
    v.sort();
    v
}

/// The causal rule, computed from every entry the replica holds that is
/// complete here (see [`complete`]): the writes to `key` that no other
/// write to it has seen, deletes left out.
pub fn causal_writes(db: &Db, key: &str) -> Vec<Arc<Node>> {
    counting_writes(db, key, &|_| true)
}

/// [`causal_writes`] among the writes `counts` lets count: the others are
/// left out before the rule, so they neither give values nor hide any.
pub fn counting_writes(db: &Db, key: &str, counts: &dyn Fn(&Node) -> bool) -> Vec<Arc<Node>> {
    let writes: Vec<Arc<Node>> = complete_entries(db)
        .into_iter()
        .filter(|n| n.key == key && counts(n))
        .collect();
    writes
        .iter()
        .filter(|n| {
            !writes
                .iter()
                .any(|m| (m.feed, m.seq) != (n.feed, n.seq) && m.has_seen(n))
        })
        .filter(|n| !n.deleted)
        .cloned()
        .collect()
}

/// Every entry of an authorized (or the local) writer that is complete
/// here (see [`complete`]).
pub fn complete_entries(db: &Db) -> Vec<Arc<Node>> {
    let writers = db.writers();
    let mut held = Vec::new();
    let mut all = Vec::new();
    for (i, w) in writers.iter().enumerate() {
        // Entries count from the header on, without a gap.
        if !db.feed(i).is_some_and(|f| f.has(0)) {
            held.push(0);
            continue;
        }
        let mut seq = 1;
        while let Some(node) = db.node(i, seq).unwrap() {
            if w.authorized || w.local {
                all.push(node);
            }
            seq += 1;
        }
        held.push(seq);
    }
    let local = writers.iter().position(|w| w.local);
    let mut memo = HashMap::new();
    all.into_iter()
        .filter(|n| complete(db, local, n.feed, n.seq, &held, &mut memo))
        .collect()
}

/// Whether entry `seq` of writer `feed` counts here: the replica's own
/// entries always do; another writer's when its previous entry counts and,
/// of every other writer, everything its clock says it saw is held here
/// and the latest of that counts.
fn complete(
    db: &Db,
    local: Option<usize>,
    feed: usize,
    seq: u64,
    held: &[u64],
    memo: &mut HashMap<(usize, u64), bool>,
) -> bool {
    if seq == 0 || Some(feed) == local {
        return true;
    }
    if let Some(&known) = memo.get(&(feed, seq)) {
        return known;
    }
    let node = db.node(feed, seq).unwrap().expect("a held entry");
    let ok = complete(db, local, feed, seq - 1, held, memo)
        && node.clock.iter().enumerate().all(|(u, &seen)| {
            u == feed
                || seen == 0
                || (seen <= held.get(u).copied().unwrap_or(0)
                    && complete(db, local, u, seen - 1, held, memo))
        });
    memo.insert((feed, seq), ok);
    ok
}

/// [`causal_writes`] as text values.
pub fn causal_values(db: &Db, key: &str) -> BTreeSet<String> {
    causal_writes(db, key)
        .iter()
        .map(|n| n.value_str().unwrap())
        .collect()
}

/// Every key of a `db-dump.js` output with its (hex-encoded) values as text;
/// null values (deleted nodes in a conflict) are left out.
pub fn js_values(dump: &Value) -> BTreeMap<String, BTreeSet<String>> {
    dump["keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let set = v
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|x| x.as_str())
                .map(|x| String::from_utf8(hex::decode(x).unwrap()).unwrap())
                .collect();
            (k.clone(), set)
        })
        .collect()
}

/// Whether the reference numbers the writers as we do (`feeds` of
/// `db-history.js`).
fn same_numbering(db: &Db, js: &Value) -> bool {
    js["feeds"].as_array().map(|f| {
        f.iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    }) == Some(db.writers().iter().map(|w| hex::encode(w.key)).collect())
}

/// Checks the version bytes against the reference's: identical when both
/// number the writers alike, else the same heads in another order.
pub fn check_version(db: &Db, js: &Value, what: &str) {
    let ours = hex::encode(db.version().unwrap());
    if same_numbering(db, js) {
        assert_eq!(ours, js["version"], "{what}: version bytes");
        return;
    }
    // Each head is 32 key bytes and a varint seq; the seqs here stay small.
    let heads = |hex_version: &str| {
        let bytes = hex::decode(hex_version).unwrap();
        let mut set = BTreeSet::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = 32 + rest[32..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
            set.insert(rest[..len].to_vec());
            rest = &rest[len..];
        }
        set
    };
    assert_eq!(
        heads(&ours),
        heads(js["version"].as_str().unwrap()),
        "{what}: version heads"
    );
}

/// Checks a history listing from the reference against ours: the same
/// entries in the same order when both number the writers alike (the order
/// of concurrent writes follows that numbering, which the reference builds
/// in the order its feed files finish opening); otherwise the same entries,
/// each writer's in seq order.
pub fn check_history(db: &Db, js: &Value, reverse: bool, what: &str) {
    let writers = db.writers();
    let nodes: Vec<Arc<Node>> = db.history(reverse).unwrap().map(|n| n.unwrap()).collect();
    let ours: Vec<Value> = nodes
        .iter()
        .map(|n| serde_json::json!({"feed": hex::encode(writers[n.feed].key), "seq": n.seq, "key": n.key}))
        .collect();
    let field = if reverse { "reverse" } else { "history" };
    if same_numbering(db, js) {
        assert_eq!(Value::Array(ours), js[field], "{what}: {field}");
        return;
    }
    let mut a: Vec<String> = ours.iter().map(Value::to_string).collect();
    let mut b: Vec<String> = js[field]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "{what}: {field} entries");
    // The reference's merge is not a strict causal order (it compares with
    // a writer's *next* entry), but each writer's entries come in seq order.
    for (i, earlier) in nodes.iter().enumerate() {
        for later in nodes[i + 1..].iter().filter(|n| n.feed == earlier.feed) {
            let ordered = if reverse {
                later.seq < earlier.seq
            } else {
                later.seq > earlier.seq
            };
            assert!(
                ordered,
                "{what}: {field} lists a writer's entries out of order"
            );
        }
    }
}
