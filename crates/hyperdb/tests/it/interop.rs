//! The database against the running JS reference (hyperdb 3.5.0 in
//! `interop/`): folders written by either open in the other with the same
//! answers, and the same operations with the same key pair give the same
//! bytes.

use std::collections::BTreeMap;
use std::path::Path;

use hypercore_feed::KeyPair;
use hyperdb::{Db, Op, OpenOptions};
use serde_json::{json, Value};
use testkit::node;

fn open_existing(dir: &Path) -> Db {
    Db::open_with(
        dir,
        OpenOptions {
            create: false,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Every live key with its sorted values, as our lookups answer.
fn rust_values(db: &Db, keys: &[String]) -> BTreeMap<String, Vec<String>> {
    keys.iter()
        .map(|k| {
            let mut values: Vec<String> = db
                .get(k)
                .unwrap()
                .iter()
                .map(|n| hex::encode(n.value.as_deref().unwrap_or_default()))
                .collect();
            values.sort();
            (k.clone(), values)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// Every key JS lists with its sorted values.
fn js_values(dump: &Value) -> BTreeMap<String, Vec<String>> {
    dump["keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let mut values: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect();
            values.sort();
            (k.clone(), values)
        })
        .collect()
}

fn dump(dir: &Path) -> Value {
    node("db-dump.js", &[dir.to_str().unwrap()])
}

#[test]
fn the_seed_example_written_by_js_opens_in_rust() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = node("db-seed-example.js", &[tmp.path().to_str().unwrap()]);
    let db1_key = keys["db1"]["key"].as_str().unwrap().to_string();
    let db2_local = keys["db2"]["localKey"].as_str().unwrap().to_string();

    for name in ["db1", "db2"] {
        let dir = tmp.path().join(name);
        let db = open_existing(&dir);
        assert_eq!(hex::encode(db.key()), db1_key);
        let writers = db.writers();
        assert_eq!(writers.len(), 2, "{name}: two feeds");
        assert_eq!(hex::encode(writers[0].key), db1_key);
        assert_eq!(hex::encode(writers[1].key), db2_local);
        assert!(
            writers.iter().all(|w| w.authorized),
            "{name}: both authorized"
        );
        assert_eq!(
            writers[0].length, 4,
            "{name}: header, two puts, an authorization"
        );
        assert_eq!(writers[1].length, 3);

        // db1's source feed, entry by entry, as the seed prints it.
        let first = db.node(0, 1).unwrap().unwrap();
        assert_eq!(
            (first.key.as_str(), first.value_str().as_deref()),
            ("example/first", Some("db1 was here"))
        );
        assert_eq!(db.raw_entry(0, 1).unwrap().unwrap().clock, vec![2]);
        assert_eq!(first.inflate, 1);
        assert!(first.trie.is_empty());
        let second = db.node(0, 2).unwrap().unwrap();
        assert_eq!(second.key, "example/second");
        assert_eq!(db.raw_entry(0, 2).unwrap().unwrap().clock, vec![3]);
        assert_eq!(
            second.trie.get(32, 1),
            &[hyperdb::trie::Ptr { feed: 0, seq: 1 }]
        );
        let inflated = db.node(0, 3).unwrap().unwrap();
        assert_eq!(inflated.key, "");
        assert_eq!(inflated.value, None);
        assert_eq!(inflated.inflate, 3);
        assert_eq!(inflated.clock, vec![4, 0]);
        let feeds = inflated.feeds.as_ref().unwrap();
        assert_eq!(
            feeds.iter().map(hex::encode).collect::<Vec<_>>(),
            vec![db1_key.clone(), db2_local.clone()]
        );
        let third = db.node(1, 1).unwrap().unwrap();
        assert_eq!(third.key, "example/third");
        assert_eq!(db.raw_entry(1, 1).unwrap().unwrap().clock, vec![0, 2]);
        assert_eq!(db.raw_entry(1, 2).unwrap().unwrap().clock, vec![0, 3]);
        assert_eq!(db.node(1, 2).unwrap().unwrap().clock, vec![0, 3]);

        let values = db.get("example/second").unwrap();
        let mut texts: Vec<String> = values.iter().map(|n| n.value_str().unwrap()).collect();
        texts.sort();
        assert_eq!(
            texts,
            ["db1 was here", "db2 was here"],
            "{name}: the conflict"
        );
        assert_eq!(
            db.get("example/first").unwrap()[0].value_str().unwrap(),
            "db1 was here"
        );
        assert_eq!(
            db.get("example/third").unwrap()[0].value_str().unwrap(),
            "db2 was here"
        );
        assert!(db.get("example/fourth").unwrap().is_empty());

        let js = dump(&dir);
        let keys: Vec<String> = js_values(&js).keys().cloned().collect();
        assert_eq!(
            rust_values(&db, &keys),
            js_values(&js),
            "{name}: same answers as JS"
        );
    }
}

fn secret_key_args(pair: &KeyPair) -> Vec<String> {
    vec![
        "--key".into(),
        hex::encode(pair.public_key),
        "--secret-key".into(),
        hex::encode(pair.secret_key),
    ]
}

fn js_ops(dir: &Path, extra: &[String], ops: &Value) -> Value {
    let ops = ops.to_string();
    let mut args: Vec<&str> = vec![dir.to_str().unwrap()];
    args.extend(extra.iter().map(String::as_str));
    args.extend(["--ops", &ops]);
    node("db-ops.js", &args)
}

fn apply_rust(db: &Db, ops: &Value) {
    for op in ops.as_array().unwrap() {
        let key = op["key"].as_str().unwrap_or("");
        match op["type"].as_str().unwrap() {
            "put" => {
                db.put(key, op["value"].as_str().unwrap().as_bytes())
                    .unwrap();
            }
            "del" => {
                db.del(key).unwrap();
            }
            "authorize" => {
                db.authorize(&hex::decode(key).unwrap()).unwrap();
            }
            "batch" => {
                let batch: Vec<Op> = op["ops"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| match o["type"].as_str().unwrap() {
                        "put" => Op::Put {
                            key: o["key"].as_str().unwrap().into(),
                            value: o["value"].as_str().unwrap().as_bytes().to_vec(),
                        },
                        _ => Op::Del {
                            key: o["key"].as_str().unwrap().into(),
                        },
                    })
                    .collect();
                db.batch(&batch).unwrap();
            }
            other => panic!("unknown op {other}"),
        }
    }
}

fn single_writer_ops(authorized: &str) -> Value {
    let mut ops = vec![
        json!({"type": "put", "key": "hello", "value": "world"}),
        json!({"type": "put", "key": "a/b/c", "value": "nested"}),
        json!({"type": "put", "key": "/a/b/d", "value": "leading slash"}),
        json!({"type": "put", "key": "hello", "value": "again"}),
        json!({"type": "put", "key": "idgcmnmna", "value": "collides"}),
        json!({"type": "put", "key": "mpomeiehc", "value": "with this"}),
        json!({"type": "del", "key": "a/b/c"}),
        json!({"type": "batch", "ops": [
            {"type": "put", "key": "batch/1", "value": "one"},
            {"type": "put", "key": "batch/2", "value": "two"},
            {"type": "del", "key": "hello"},
            {"type": "put", "key": "batch/1", "value": "uno"},
        ]}),
        json!({"type": "authorize", "key": authorized}),
        json!({"type": "put", "key": "after/authorize", "value": "inflated"}),
    ];
    for i in 0..60 {
        ops.push(
            json!({"type": "put", "key": format!("k{}/{}", i % 7, i), "value": format!("v{i}")}),
        );
    }
    for i in (0..60).step_by(5) {
        ops.push(json!({"type": "del", "key": format!("k{}/{}", i % 7, i)}));
    }
    Value::Array(ops)
}

#[test]
fn same_operations_give_byte_identical_feeds() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = KeyPair::generate();
    let writer = KeyPair::generate();
    let ops = single_writer_ops(&hex::encode(writer.public_key));
    let (first, second) = {
        let all = ops.as_array().unwrap();
        (
            Value::Array(all[..30].to_vec()),
            Value::Array(all[30..].to_vec()),
        )
    };
    let js_dir = tmp.path().join("js");
    let rust_dir = tmp.path().join("rust");
    // Two sessions each, so reopening is covered.
    js_ops(&js_dir, &secret_key_args(&pair), &first);
    js_ops(&js_dir, &secret_key_args(&pair), &second);
    for part in [&first, &second] {
        let db = Db::open_with(&rust_dir, owner_options(&pair)).unwrap();
        apply_rust(&db, part);
    }
    let writer_dir = format!(
        "peers/{}",
        hex::encode(hypercore_feed::crypto::discovery_key(&writer.public_key))
    );
    for feed in ["source", writer_dir.as_str()] {
        assert_same_feed_files(&js_dir, &rust_dir, feed);
    }
}

/// The files of feed folder `feed` are byte for byte the same in both
/// database folders (or missing from both).
fn assert_same_feed_files(js_dir: &Path, rust_dir: &Path, feed: &str) {
    for file in hypercore_feed::storage::FEED_FILES {
        let js = std::fs::read(js_dir.join(feed).join(file)).ok();
        let rust = std::fs::read(rust_dir.join(feed).join(file)).ok();
        assert_eq!(
            js.is_some(),
            rust.is_some(),
            "{feed}/{file}: exists in one only"
        );
        let (Some(js), Some(rust)) = (js, rust) else {
            continue;
        };
        if js != rust {
            let at = js.iter().zip(&rust).position(|(a, b)| a != b);
            panic!(
                "{feed}/{file} differs (lengths {} and {}, first difference at {at:?})",
                js.len(),
                rust.len()
            );
        }
    }
}

/// Options that open (or create) the database of key pair `pair`.
fn owner_options(pair: &KeyPair) -> OpenOptions {
    OpenOptions {
        key: Some(pair.public_key),
        secret_key: Some(pair.secret_key),
        ..Default::default()
    }
}

/// Puts, deletes and batches into one writer's database: keys one to
/// three components deep, prefixes of each other, rewritten, deleted, twice
/// in one batch; a session's worth from `from` on.
fn one_writer_ops(from: usize, to: usize) -> Value {
    let key = |i: usize| match i % 11 {
        0 => format!("d{}", i % 4),
        1 => format!("d{}/s{}", i % 4, i % 3),
        _ => format!("d{}/s{}/k{}", i % 4, i % 3, i % 97),
    };
    let mut ops = Vec::new();
    for i in from..to {
        ops.push(match i % 9 {
            0 => json!({"type": "del", "key": key(i * 7)}),
            1 => json!({"type": "batch", "ops": [
                {"type": "put", "key": key(i), "value": format!("b{i}")},
                {"type": "put", "key": key(i + 1), "value": format!("c{i}")},
                {"type": "del", "key": key(i * 3)},
                {"type": "put", "key": key(i), "value": format!("again {i}")},
            ]}),
            _ => json!({"type": "put", "key": key(i), "value": format!("v{i}")}),
        });
    }
    Value::Array(ops)
}

/// A one-writer database whose puts the index of paths answers holds the
/// same bytes as hyperdb 3.5.0's after the same operations; so it does
/// after two keys of one path, when the index gives up and puts walk. The
/// index is built in the first session once walks have read enough, and
/// written to its file on closing (the session adds more than 4,096
/// entries); the second session's puts walk too little to build it, so it
/// answers them only because it was read back from that file.
#[test]
fn puts_answered_by_the_index_of_paths_write_the_bytes_hyperdb_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = KeyPair::generate();
    let collide = json!([
        {"type": "put", "key": "idgcmnmna", "value": "collides"},
        {"type": "put", "key": "mpomeiehc", "value": "with this"},
        {"type": "put", "key": "d1/s1/after", "value": "walked"},
    ]);
    let mut first = one_writer_ops(0, 220);
    for from in (0..4_200).step_by(700) {
        let bulk: Vec<Value> = (from..from + 700)
            .map(|i| json!({"type": "put", "key": format!("bulk/{}/{i}", i % 50), "value": "b"}))
            .collect();
        first
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "batch", "ops": bulk}));
    }
    let sessions = [first, one_writer_ops(220, 400), collide];
    let js_dir = tmp.path().join("js");
    let rust_dir = tmp.path().join("rust");
    for (i, ops) in sessions.iter().enumerate() {
        // Each run of the reference takes its operations as one argument,
        // which has a size limit.
        let (mut group, mut bytes) = (Vec::new(), 0);
        for op in ops.as_array().unwrap() {
            let size = op.to_string().len();
            if bytes + size > 64 << 10 {
                js_ops(&js_dir, &secret_key_args(&pair), &Value::Array(group));
                (group, bytes) = (Vec::new(), 0);
            }
            group.push(op.clone());
            bytes += size;
        }
        js_ops(&js_dir, &secret_key_args(&pair), &Value::Array(group));
        let db = Db::open_with(&rust_dir, owner_options(&pair)).unwrap();
        apply_rust(&db, ops);
        let len = db.feed(0).unwrap().len();
        let index = db.path_index();
        if i == 1 {
            assert!(len > 4_400);
        }
        if i < 2 {
            assert_eq!(index.map(|i| i.covered), Some(len), "session {i}");
        } else {
            assert!(index.is_none(), "two keys of one path");
        }
    }
    assert_same_feed_files(&js_dir, &rust_dir, "source");
}

#[test]
fn a_database_written_by_rust_opens_in_js_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = KeyPair::generate();
    let ops = single_writer_ops(&hex::encode(writer.public_key));
    let db = Db::open(tmp.path()).unwrap();
    apply_rust(&db, &ops);
    let keys: Vec<String> = {
        let js = dump(tmp.path());
        js_values(&js).keys().cloned().collect()
    };
    assert!(keys.contains(&"batch/1".to_string()));
    assert!(!keys.contains(&"hello".to_string()), "deleted in the batch");
    let js = dump(tmp.path());
    assert_eq!(rust_values(&db, &keys), js_values(&js));
    assert_eq!(js["authorized"][hex::encode(writer.public_key)], true);
    drop(db);

    // JS keeps writing to the Rust-made folder; Rust reads it back.
    js_ops(
        tmp.path(),
        &[],
        &json!([
            {"type": "put", "key": "from/js", "value": "hi"},
            {"type": "del", "key": "batch/2"},
        ]),
    );
    let db = open_existing(tmp.path());
    assert_eq!(db.get("from/js").unwrap()[0].value_str().unwrap(), "hi");
    assert!(db.get("batch/2").unwrap().is_empty());
    assert_eq!(db.get("batch/1").unwrap()[0].value_str().unwrap(), "uno");
}

/// A database of 8,150 entries whose next batch of 100 was killed after its
/// signature, between its two bitfield pages, in `dir`.
fn crashed_mid_batch(dir: &Path) -> KeyPair {
    use hyperdb::fault::{Crash, Faults};
    use hyperdb::DbStorage;
    let pair = KeyPair::from_seed(&[5; 32]);
    let options = OpenOptions {
        secret_key: Some(pair.secret_key),
        ..Default::default()
    };
    let entries = |range: std::ops::Range<usize>| -> Vec<Op> {
        range
            .map(|i| Op::Put {
                key: format!("k{i}"),
                value: format!("v{i}").into_bytes(),
            })
            .collect()
    };
    // The same writes in memory first, to count the batch's write points.
    let faults = Faults::new();
    let db = Db::open_storage(
        DbStorage::memory().with_faults(faults.clone()),
        options.clone(),
    )
    .unwrap();
    db.write_all(entries(0..8_150), 1_000).unwrap();
    let before = faults.points();
    db.batch(&entries(8_150..8_250)).unwrap();
    let points = faults.points() - before;

    let faults = Faults::new();
    let db = Db::open_storage(DbStorage::dir(dir).with_faults(faults.clone()), options).unwrap();
    db.write_all(entries(0..8_150), 1_000).unwrap();
    faults.crash_at(faults.points() + points, Crash::Kill);
    assert!(db.batch(&entries(8_150..8_250)).is_err());
    pair
}

#[test]
fn a_folder_repaired_after_a_crash_opens_in_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    crashed_mid_batch(&dir);
    let db = open_existing(&dir);
    assert!(!db.recovered().is_empty(), "opening repaired the folder");
    let keys: Vec<String> = (0..8_250).map(|i| format!("k{i}")).collect();
    let ours = rust_values(&db, &keys);
    assert_eq!(ours.len(), 8_250, "the batch was signed: it is recovered");
    drop(db);

    let js = dump(&dir);
    assert_eq!(
        js_values(&js),
        ours,
        "the reference reads the repaired folder alike"
    );
    // And writes to it.
    js_ops(
        &dir,
        &[],
        &json!([{"type": "put", "key": "from", "value": "js"}]),
    );
    let db = open_existing(&dir);
    assert_eq!(
        db.get("from").unwrap()[0].value.as_deref(),
        Some(&b"js"[..])
    );
    assert!(db.recovered().is_empty());
}

#[test]
fn a_rebuilt_bitfield_opens_in_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::open(&dir).unwrap();
    for i in 0..50 {
        db.put(&format!("k{i}"), format!("v{i}").as_bytes())
            .unwrap();
    }
    drop(db);
    let bitfield = dir.join("source/bitfield");
    let original = std::fs::read(&bitfield).unwrap();
    std::fs::write(&bitfield, b"").unwrap();
    let db = open_existing(&dir);
    assert_eq!(db.get("k49").unwrap().len(), 1);
    drop(db);
    assert_eq!(
        std::fs::read(&bitfield).unwrap(),
        original,
        "rebuilt byte for byte"
    );
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    assert_eq!(js_values(&dump(&dir)).len(), keys.len());
}

/// A folder with the key index and the index of paths beside its feeds
/// (`index/`) opens in the reference, which writes to it; the key index,
/// now behind the feed, catches up on opening, and every answer is the
/// reference's; the index of paths, read back, catches up over what the
/// reference wrote and answers the next puts (too few to build it), each
/// trie the walk's (debug builds compare them).
#[test]
fn a_folder_with_a_key_index_opens_in_js_and_what_js_writes_is_caught_up() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    let ops = (0..5_000).map(|i| Op::Put {
        key: format!("many/{i}"),
        value: format!("v{i}").into_bytes(),
    });
    db.write_all(ops, 1_000).unwrap();
    drop(db);
    let names = crate::support::index_files(tmp.path());
    assert!(names.iter().any(|n| n.starts_with("keys-")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("paths-")), "{names:?}");
    js_ops(
        tmp.path(),
        &[],
        &json!([
            {"type": "put", "key": "many/7", "value": "from js"},
            {"type": "del", "key": "many/8"},
            {"type": "batch", "ops": [
                {"type": "put", "key": "js/new", "value": "new"},
                {"type": "put", "key": "many/9", "value": "batched"},
            ]},
        ]),
    );
    let db = open_existing(tmp.path());
    let index = db.key_index().expect("one writer: indexed");
    assert_eq!(index.covered, db.feed(0).unwrap().len(), "caught up");
    assert!(index.usable && index.in_file >= 5_000);
    assert_eq!(db.get("many/7").unwrap()[0].value_str().unwrap(), "from js");
    assert!(db.get("many/8").unwrap().is_empty());
    assert_eq!(db.get("many/9").unwrap()[0].value_str().unwrap(), "batched");
    assert_eq!(db.get("js/new").unwrap()[0].value_str().unwrap(), "new");
    let js = dump(tmp.path());
    let keys: Vec<String> = (0..5_000)
        .map(|i| format!("many/{i}"))
        .chain(["js/new".to_string()])
        .collect();
    assert_eq!(rust_values(&db, &keys), js_values(&js));
    for i in 0..200 {
        db.put(&format!("many/{}", i * 7), b"after").unwrap();
    }
    let len = db.feed(0).unwrap().len();
    assert_eq!(db.path_index().map(|i| i.covered), Some(len));
    assert_eq!(db.get("many/7").unwrap()[0].value_str().unwrap(), "after");
}

/// A database the reference wrote (puts, overwrites, deletes, batches),
/// read by keys in a cache so small that it is full almost at once: gets
/// answered by the key index then cache an entry only from its second read
/// (see `EntryCache::admits`). Every pass, first reads, second reads and
/// reads from the cache, gives hyperdb 3.5.0's answers.
#[test]
fn gets_in_a_full_cache_answer_as_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ops = Vec::new();
    for round in 0..3 {
        for from in (0..1_000).step_by(250) {
            let batch: Vec<Value> = (from..from + 250)
                .map(|i| match (round, i % 11) {
                    (2, 0) => json!({"type": "del", "key": format!("k/{}/{i}", i % 13)}),
                    _ => json!({"type": "put", "key": format!("k/{}/{i}", i % 13),
                                "value": format!("v{round}-{i}")}),
                })
                .collect();
            ops.push(json!({"type": "batch", "ops": batch}));
        }
    }
    // Too long for an argument: the script reads it from a file.
    let file = tmp.path().join("ops.json");
    std::fs::write(&file, Value::Array(ops).to_string()).unwrap();
    let dir = tmp.path().join("db");
    node(
        "db-ops.js",
        &[
            dir.to_str().unwrap(),
            "--ops",
            &format!("@{}", file.display()),
        ],
    );
    let js = js_values(&dump(&dir));
    assert_eq!(js.len(), 1_000 - 91, "the deletes left out");
    // 64 KiB holds a couple of hundred of these entries: the first pass
    // fills it and evicts.
    let db = Db::open_with(
        &dir,
        OpenOptions {
            create: false,
            cache_bytes: 64 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        db.key_index().is_some_and(|i| i.usable),
        "gets use the key index"
    );
    let mut keys: Vec<String> = (0..1_000).map(|i| format!("k/{}/{i}", i % 13)).collect();
    keys.push("k/absent".into());
    for pass in 0..3 {
        // Each pass in another order; a key read twice in a row as well.
        keys.rotate_left(337);
        let mut twice = keys.clone();
        twice.extend(keys.iter().step_by(3).cloned());
        let got = rust_values(&db, &twice);
        assert_eq!(got, js, "pass {pass}");
    }
}
