//! Content feeds (hyperdb 3.5.0's `contentFeed` option): hyperdb's own
//! scenarios, and interop with the running reference on disk and over the
//! wire.

use std::time::Duration;

use hyperdb::{replicate, Db, DbStorage, OpenOptions, ReplicateOptions};
use testkit::{node, NodeProcess};

fn with_content(key: Option<[u8; 32]>) -> Db {
    Db::open_storage(
        DbStorage::memory(),
        OpenOptions {
            key,
            content_feed: true,
            ..Default::default()
        },
    )
    .unwrap()
}

// hyperdb test/content-feeds.js: 'basic content feed'
#[test]
fn basic_content_feed() {
    let db = with_content(None);
    db.with_local_content(|f| f.append(b"lots of data"))
        .unwrap()
        .unwrap();
    db.put("hello", br#"{"start":0,"end":1}"#).unwrap();
    let node = db.get("hello").unwrap()[0].clone();
    let local_content = db.with_local_content(|f| *f.key()).unwrap();
    let feed = db.content_feed(node.feed).unwrap();
    assert_eq!(
        feed.key(),
        &local_content,
        "the writer's content feed is the local one"
    );
    assert_eq!(feed.get(0).unwrap(), b"lots of data");
}

// hyperdb test/content-feeds.js: 'replicating content feeds'
#[tokio::test]
async fn replicating_content_feeds() {
    let db = with_content(None);
    db.put("hello", b"world").unwrap();
    db.with_local_content(|f| f.append(b"data"))
        .unwrap()
        .unwrap();
    let clone = with_content(Some(*db.key()));
    let (db, clone) = (db, clone);
    let (x, y) = tokio::io::duplex(1 << 20);
    let (a, b) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(
            replicate(db.clone(), x, ReplicateOptions::default()),
            replicate(clone.clone(), y, ReplicateOptions::default())
        )
    })
    .await
    .unwrap();
    a.unwrap();
    b.unwrap();
    let clone = &clone;
    let node = clone.get("hello").unwrap()[0].clone();
    assert_eq!(node.value_str().unwrap(), "world");
    assert_eq!(
        clone.content_feed(node.feed).unwrap().get(0).unwrap(),
        b"data"
    );
}

#[test]
fn content_feeds_on_disk_match_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let js = node(
        "db-content.js",
        &[
            tmp.path().to_str().unwrap(),
            "--append",
            "from js",
            "--put",
            "k=v",
        ],
    );
    // Opening the JS folder derives the same content key from the same
    // secret key, and reads what JS appended.
    let db = Db::open_with(
        tmp.path(),
        OpenOptions {
            content_feed: true,
            create: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        hex::encode(db.with_local_content(|f| *f.key()).unwrap()),
        js["contentKey"]
    );
    assert_eq!(
        db.with_local_content(|f| f.get(0)).unwrap().unwrap(),
        b"from js"
    );
    db.with_local_content(|f| f.append(b"from rust"))
        .unwrap()
        .unwrap();
    db.put("k2", b"v2").unwrap();
    drop(db);
    let js = node("db-content.js", &[tmp.path().to_str().unwrap(), "--read"]);
    assert_eq!(
        js["content"][0],
        serde_json::json!(["from js", "from rust"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_feeds_replicate_with_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let js_dir = tmp.path().join("js");
    let js = node(
        "db-content.js",
        &[
            js_dir.to_str().unwrap(),
            "--append",
            "js content",
            "--put",
            "k=v",
        ],
    );
    let key: [u8; 32] = hex::decode(js["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let mut server = NodeProcess::spawn("db-serve.js", &[js_dir.to_str().unwrap(), "--content"]);
    let port = server.read_json()["port"].as_u64().unwrap() as u16;
    let db = Db::open_with(
        tmp.path().join("rust"),
        OpenOptions {
            key: Some(key),
            content_feed: true,
            ..Default::default()
        },
    )
    .unwrap();
    let db = db;
    let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        replicate(db.clone(), socket, ReplicateOptions::default()),
    )
    .await
    .expect("sync ends")
    .unwrap();
    server.finish();
    let db = &db;
    assert_eq!(db.get("k").unwrap()[0].value_str().unwrap(), "v");
    assert_eq!(
        db.content_feed(0)
            .expect("the source's content feed")
            .get(0)
            .unwrap(),
        b"js content"
    );
}
