//! Replication with the running JS reference over TCP on loopback, both
//! roles (Rust serves and JS connects; JS serves and Rust connects), one-shot
//! and live.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use hyperdb::{local_sync, replicate, Db, OpenOptions, ReplicateOptions};
use serde_json::{json, Value};
use testkit::{node, NodeProcess};

use crate::support::js_values;
use tokio::net::{TcpListener, TcpStream};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn values(db: &Db, key: &str) -> BTreeSet<String> {
    db.get(key)
        .unwrap()
        .iter()
        .map(|n| n.value_str().unwrap())
        .collect()
}

const KEYS: [&str; 5] = ["x", "dir/one", "dir/two", "only/owner", "only/c"];

/// A three-writer database built in Rust: owner authorizes b, b authorizes
/// c, concurrent writes to `x`, a delete, nested keys.
fn rust_chain(root: &Path) -> Db {
    let owner = Db::open(root.join("owner")).unwrap();
    let key = *owner.key();
    let replica = |name: &str| {
        Db::open_with(
            root.join(name),
            OpenOptions {
                key: Some(key),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let b = replica("b");
    let c = replica("c");
    owner.put("x", b"owner").unwrap();
    owner.put("dir/one", b"1").unwrap();
    owner.put("only/owner", b"o").unwrap();
    owner.authorize(b.local_key()).unwrap();
    local_sync::sync(&owner, &b).unwrap();
    b.authorize(c.local_key()).unwrap();
    local_sync::sync(&b, &c).unwrap();
    b.put("x", b"b").unwrap();
    c.put("x", b"c").unwrap();
    c.del("dir/one").unwrap();
    c.put("dir/two", b"2").unwrap();
    c.put("only/c", b"c").unwrap();
    local_sync::sync(&b, &c).unwrap();
    local_sync::sync(&owner, &c).unwrap();
    owner
}

pub(crate) async fn serve(db: Db, options: ReplicateOptions) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let (db, options) = (db.clone(), options.clone());
            tokio::spawn(async move {
                let _ = replicate(db, socket, options).await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_serves_and_a_js_replica_that_knows_only_the_key_gets_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let owner = rust_chain(tmp.path());
    let key = hex::encode(owner.key());
    let expected: BTreeMap<&str, BTreeSet<String>> =
        KEYS.iter().map(|k| (*k, values(&owner, k))).collect();
    assert_eq!(
        expected["x"],
        ["b", "c"].map(String::from).into(),
        "b and c wrote x concurrently, after owner"
    );
    let owner = owner;
    let (port, server) = serve(owner.clone(), ReplicateOptions::default()).await;

    let js_dir = tmp.path().join("js");
    let js_dir2 = js_dir.clone();
    let key2 = key.clone();
    let out = tokio::task::spawn_blocking(move || {
        node(
            "db-sync.js",
            &[p(&js_dir2), &port.to_string(), "--key", &key2],
        )
    })
    .await
    .unwrap();
    assert_eq!(out["error"], Value::Null, "{out}");
    server.abort();

    let dump = node("db-dump.js", &[p(&js_dir)]);
    assert_eq!(
        dump["feeds"].as_array().unwrap().len(),
        4,
        "source, its local, b and c"
    );
    let js = js_values(&dump);
    for key in KEYS {
        let theirs = js.get(key).cloned().unwrap_or_default();
        assert!(
            theirs.is_superset(&expected[key]),
            "{key}: JS has {theirs:?}, expected {:?}",
            expected[key]
        );
    }
    assert_eq!(js["x"], expected["x"]);
    assert!(!js.contains_key("dir/one"));
}

/// Serves the JS database in `js_dir` with the reference and syncs a new
/// Rust replica (at `rust_dir`, knowing only the db `key`) from it,
/// one-shot; checks the reference saw no error.
async fn sync_from_js(js_dir: &Path, rust_dir: &Path, key: [u8; 32]) -> (Db, hyperdb::Summary) {
    let mut server = NodeProcess::spawn("db-serve.js", &[p(js_dir)]);
    let port = server.read_json()["port"].as_u64().unwrap() as u16;
    let options = OpenOptions {
        key: Some(key),
        ..Default::default()
    };
    let db = Db::open_with(rust_dir, options).unwrap();
    let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let summary = tokio::time::timeout(
        Duration::from_secs(120),
        replicate(db.clone(), socket, ReplicateOptions::default()),
    )
    .await
    .expect("one-shot sync ends")
    .unwrap();
    let done = server.finish();
    assert_eq!(done["errors"], json!([]), "{done}");
    (db, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_serves_and_a_rust_replica_that_knows_only_the_key_gets_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = json!([
        {"op": "create", "name": "a"},
        {"op": "create", "name": "b", "of": "a"},
        {"op": "create", "name": "c", "of": "a"},
        {"op": "put", "db": "a", "key": "x", "value": "owner"},
        {"op": "put", "db": "a", "key": "dir/one", "value": "1"},
        {"op": "authorize", "db": "a", "target": "b"},
        {"op": "sync", "a": "a", "b": "b"},
        {"op": "authorize", "db": "b", "target": "c"},
        {"op": "sync", "a": "b", "b": "c"},
        {"op": "put", "db": "b", "key": "x", "value": "b"},
        {"op": "put", "db": "c", "key": "x", "value": "c"},
        {"op": "del", "db": "c", "key": "dir/one"},
        {"op": "put", "db": "c", "key": "dir/two", "value": "2"},
        {"op": "sync", "a": "b", "b": "c"},
        {"op": "sync", "a": "a", "b": "c"},
    ]);
    let out = node(
        "db-multi.js",
        &[p(tmp.path()), "--steps", &steps.to_string()],
    );
    let key: [u8; 32] = hex::decode(out["a"]["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let dump = node("db-dump.js", &[p(&tmp.path().join("a"))]);
    let js = js_values(&dump);

    let (db, summary) = sync_from_js(&tmp.path().join("a"), &tmp.path().join("rust"), key).await;
    assert!(summary.total_received() > 0);

    assert_eq!(db.writers().len(), 4);
    for key in ["x", "dir/one", "dir/two"] {
        let ours = values(&db, key);
        let theirs = js.get(key).cloned().unwrap_or_default();
        assert!(
            theirs.is_superset(&ours),
            "{key}: ours {ours:?}, JS {theirs:?}"
        );
    }
    assert_eq!(values(&db, "x"), ["b", "c"].map(String::from).into());
    assert!(values(&db, "dir/one").is_empty());
    assert_eq!(values(&db, "dir/two"), ["2".to_string()].into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_with_js_connecting_to_rust() {
    let tmp = tempfile::tempdir().unwrap();
    let owner = Db::open(tmp.path().join("owner")).unwrap();
    let key = hex::encode(owner.key());
    // The JS replica exists first, so the owner can authorize its writer.
    let js_dir = tmp.path().join("js");
    let created = node("db-ops.js", &[p(&js_dir), "--key", &key, "--ops", "[]"]);
    let js_local = hex::decode(created["localKey"].as_str().unwrap()).unwrap();
    let owner = owner;
    owner.authorize(&js_local).unwrap();
    let (port, server) = serve(
        owner.clone(),
        ReplicateOptions {
            live: true,
            ..Default::default()
        },
    )
    .await;

    let js_dir2 = js_dir.clone();
    let key2 = key.clone();
    let client = tokio::task::spawn_blocking(move || {
        node(
            "db-sync.js",
            &[
                p(&js_dir2),
                &port.to_string(),
                "--key",
                &key2,
                "--live",
                "--put",
                "js/said=hi",
                "--expect",
                "rust/said=hello",
            ],
        )
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if values(&owner, "js/said") == ["hi".to_string()].into() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the JS write did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    owner.put("rust/said", b"hello").unwrap();
    let out = client.await.unwrap();
    assert_eq!(out["error"], Value::Null, "{out}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_with_rust_connecting_to_js() {
    let tmp = tempfile::tempdir().unwrap();
    let js_dir = tmp.path().join("js");
    // The JS owner exists first; the Rust replica's writer is authorized
    // there before serving.
    let created = node("db-ops.js", &[p(&js_dir), "--ops", "[]"]);
    let key: [u8; 32] = hex::decode(created["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let db = Db::open_with(
        tmp.path().join("rust"),
        OpenOptions {
            key: Some(key),
            ..Default::default()
        },
    )
    .unwrap();
    let local = hex::encode(db.local_key());
    let mut server = NodeProcess::spawn(
        "db-serve.js",
        &[p(&js_dir), "--live", "--authorize", &local],
    );
    let port = server.read_json()["port"].as_u64().unwrap() as u16;
    let db = db;
    let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let session = tokio::spawn(replicate(
        db.clone(),
        socket,
        ReplicateOptions {
            live: true,
            ..Default::default()
        },
    ));

    // JS writes while connected; Rust sees it.
    assert_eq!(
        server.command(&json!({"put": {"key": "js/said", "value": "hi"}}))["ok"],
        true
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while values(&db, "js/said") != ["hi".to_string()].into() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the JS write did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(db.is_authorized(&hex::decode(&local).unwrap()).unwrap());
    // Rust writes while connected; JS sees it.
    db.put("rust/said", b"hello").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = server.command(&json!({"get": "rust/said"}));
        if got["values"] == json!(["hello"]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Rust write did not arrive: {got}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!session.is_finished(), "a live session stays open");
    session.abort();
    let done = server.finish();
    assert_eq!(done["connections"], 1);
}

/// Entries of [`ENTRY_BYTES`]-byte values: enough that the stream carries
/// hundreds of kilobytes each way, so encryption and decryption run on
/// long stretches (eight XSalsa20 blocks at a time on CPUs with AVX2) and
/// answers queue up behind the socket.
const ENTRIES: usize = 3000;
const ENTRY_BYTES: usize = 200;

fn big_value(i: usize) -> String {
    format!("{i:0width$}", width = ENTRY_BYTES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_database_crosses_to_and_from_the_reference() {
    let tmp = tempfile::tempdir().unwrap();

    // Rust serves; a JS replica that knows only the key gets every value.
    let owner = Db::open(tmp.path().join("rust-owner")).unwrap();
    let ops = (0..ENTRIES).map(|i| hyperdb::Op::Put {
        key: format!("big/{i}"),
        value: big_value(i).into_bytes(),
    });
    owner.write_all(ops, 1000).unwrap();
    let key = hex::encode(owner.key());
    let (port, server) = serve(owner, ReplicateOptions::default()).await;
    let js_dir = tmp.path().join("js-replica");
    let (dir, key2) = (js_dir.clone(), key.clone());
    let out = tokio::task::spawn_blocking(move || {
        node("db-sync.js", &[p(&dir), &port.to_string(), "--key", &key2])
    })
    .await
    .unwrap();
    assert_eq!(out["error"], Value::Null, "{out}");
    server.abort();
    let js = js_values(&node("db-dump.js", &[p(&js_dir)]));
    for i in 0..ENTRIES {
        assert_eq!(js[&format!("big/{i}")], [big_value(i)].into(), "big/{i}");
    }

    // JS serves what it wrote; a Rust replica that knows only the key gets
    // every value.
    let js_owner = tmp.path().join("js-owner");
    let batches: Vec<Value> = (0..ENTRIES)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|chunk| {
            let ops: Vec<Value> = chunk
                .iter()
                .map(|i| json!({"type": "put", "key": format!("big/{i}"), "value": big_value(*i)}))
                .collect();
            json!({"type": "batch", "ops": ops})
        })
        .collect();
    let ops_file = tmp.path().join("ops.json");
    std::fs::write(&ops_file, Value::Array(batches).to_string()).unwrap();
    let created = node(
        "db-ops.js",
        &[p(&js_owner), "--ops", &format!("@{}", p(&ops_file))],
    );
    let key: [u8; 32] = hex::decode(created["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let (db, summary) = sync_from_js(&js_owner, &tmp.path().join("rust-replica"), key).await;
    assert_eq!(summary.total_received(), ENTRIES as u64 + 1);
    for i in 0..ENTRIES {
        assert_eq!(
            values(&db, &format!("big/{i}")),
            [big_value(i)].into(),
            "big/{i}"
        );
    }
}

/// A JS peer on hyperdiscovery 8 (discovery-swarm 5) and a Rust
/// `Replicator` that connect to each other at once keep the same one of the
/// two connections, the one opened by the smaller peer id, and replicate
/// live over it. Run with the Rust id below and above any JS id, so each
/// side's connection is the one kept once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_swarm_peer_and_a_replicator_keep_the_same_one_of_two_connections() {
    for rust_id in [[0u8; 32], [0xff; 32]] {
        connect_both_ways(rust_id).await;
    }
}

async fn connect_both_ways(rust_id: [u8; 32]) {
    use hyperdb::Replicator;
    use tokio::task::block_in_place;

    let tmp = tempfile::tempdir().unwrap();
    let mut js = NodeProcess::spawn("swarm-peer.js", &[p(&tmp.path().join("js"))]);
    let hello = js.read_json();
    let js_port = hello["port"].as_u64().unwrap() as u16;
    let key: [u8; 32] = hex::decode(hello["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let js_id = hex::decode(hello["id"].as_str().unwrap()).unwrap();
    let db = Db::open_with(
        tmp.path().join("rust"),
        OpenOptions {
            key: Some(key),
            ..Default::default()
        },
    )
    .unwrap();
    let replicator = Replicator::new(
        db.clone(),
        ReplicateOptions {
            live: true,
            id: Some(rust_id),
            ..Default::default()
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rust_port = listener.local_addr().unwrap().port();
    let r = replicator.clone();
    let accepting = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let r = r.clone();
            tokio::spawn(async move { r.run(socket, false).await });
        }
    });
    // Each side opens a connection to the other, as two peers that found
    // each other do.
    block_in_place(|| js.command(&json!({"connect": rust_port})));
    let socket = TcpStream::connect(("127.0.0.1", js_port)).await.unwrap();
    let r = replicator.clone();
    let dialed = tokio::spawn(async move { r.run(socket, true).await });

    let js_opened_the_kept_one = js_id.as_slice() < rust_id.as_slice();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let js_view = loop {
        let view = block_in_place(|| js.command(&json!({"connections": true})));
        let settled = view["connections"].as_array().unwrap().len() == 1
            && view["redundant"].as_u64().unwrap() >= 1
            && replicator.peers() == 1
            && dialed.is_finished() == js_opened_the_kept_one;
        if settled {
            break view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "one connection should remain on both sides: JS has {view}, Rust {} peer(s), \
             the connection Rust opened finished: {}",
            replicator.peers(),
            dialed.is_finished()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let kept = &js_view["connections"][0];
    assert_eq!(kept["id"], json!(hex::encode(rust_id)), "JS saw our id");
    assert_eq!(
        kept["initiator"],
        json!(js_opened_the_kept_one),
        "JS keeps the connection opened by the smaller id"
    );

    // The kept connection carries live writes, and stays.
    block_in_place(|| js.command(&json!({"put": {"key": "over/swarm", "value": "yes"}})));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while values(&db, "over/swarm") != BTreeSet::from(["yes".to_string()]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the JS peer's write arrives"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = block_in_place(|| js.command(&json!({"connections": true})));
    assert_eq!(
        again["connections"], js_view["connections"],
        "no reconnection"
    );
    assert_eq!(replicator.peers(), 1);

    block_in_place(|| js.finish());
    accepting.abort();
    dialed.abort();
}
