//! Replication between Rust replicas over TCP on loopback.

use std::time::Duration;

use hyperdb::{replicate, Db, ReplicateOptions};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{memory_db, sorted_values as values};

/// Replicates two databases over a real TCP connection, one-shot.
async fn sync(a: &Db, b: &Db) -> (hyperdb::Summary, hyperdb::Summary) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let a2 = a.clone();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        replicate(a2, socket, ReplicateOptions::default()).await
    });
    let socket = TcpStream::connect(addr).await.unwrap();
    let client = replicate(b.clone(), socket, ReplicateOptions::default());
    let (left, right) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(server, client)
    })
    .await
    .expect("replication finishes");
    (left.unwrap().unwrap(), right.unwrap())
}

/// An owner and a replica whose writer it authorized, synced once, so each
/// knows both writers.
async fn two_writers() -> (Db, Db) {
    let owner = memory_db(None);
    let key = *owner.key();
    let other = memory_db(Some(key));
    let other_key = *other.local_key();
    owner.authorize(&other_key).unwrap();
    sync(&owner, &other).await;
    (owner, other)
}

#[tokio::test]
async fn the_seed_flow_over_tcp() {
    let db1 = memory_db(None);
    db1.put("example/first", b"db1 was here").unwrap();
    db1.put("example/second", b"db1 was here").unwrap();
    let key = *db1.key();
    let db2 = memory_db(Some(key));
    db2.put("example/third", b"db2 was here").unwrap();
    db2.put("example/second", b"db2 was here").unwrap();
    let db2_local = *db2.local_key();
    db1.authorize(&db2_local).unwrap();

    let (s1, s2) = sync(&db1, &db2).await;
    assert!(s2.total_received() >= 3, "db2 received db1's feed: {s2:?}");
    assert!(
        s1.total_received() >= 2,
        "db1 received db2's writes: {s1:?}"
    );
    for db in [&db1, &db2] {
        assert_eq!(values(db, "example/first"), ["db1 was here"]);
        assert_eq!(
            values(db, "example/second"),
            ["db1 was here", "db2 was here"]
        );
        assert_eq!(values(db, "example/third"), ["db2 was here"]);
        assert!(db.is_authorized(&db2_local).unwrap());
    }
}

#[tokio::test]
async fn a_replica_that_knows_only_the_key_finds_a_chain_of_writers() {
    // owner -> b -> c, each writing; a fresh replica learns all three.
    let owner = memory_db(None);
    let key = *owner.key();
    let b = memory_db(Some(key));
    let c = memory_db(Some(key));
    owner.put("from/owner", b"o").unwrap();
    let b_key = *b.local_key();
    owner.authorize(&b_key).unwrap();
    sync(&owner, &b).await;
    let c_key = *c.local_key();
    b.authorize(&c_key).unwrap();
    b.put("from/b", b"b").unwrap();
    sync(&b, &c).await;
    c.put("from/c", b"c").unwrap();
    sync(&c, &owner).await;

    let fresh = memory_db(Some(key));
    sync(&owner, &fresh).await;
    let writers = fresh.writers();
    assert_eq!(writers.len(), 4, "source, its own local, b and c");
    for (k, v) in [("from/owner", "o"), ("from/b", "b"), ("from/c", "c")] {
        assert_eq!(values(&fresh, k), [v], "{k}");
    }
}

#[tokio::test]
async fn live_replication_carries_new_writes_both_ways() {
    let (a, b) = two_writers().await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let live = ReplicateOptions {
        live: true,
        ..Default::default()
    };
    let (a2, live2) = (a.clone(), live.clone());
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        replicate(a2, socket, live2).await
    });
    let (b2, live3) = (b.clone(), live.clone());
    let client = tokio::spawn(async move {
        let socket = TcpStream::connect(addr).await.unwrap();
        replicate(b2, socket, live3).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.put("live/a", b"from a").unwrap();
    b.put("live/b", b"from b").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let done = values(&b, "live/a") == ["from a"] && values(&a, "live/b") == ["from b"];
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "live writes did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.abort();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}

/// Two writers that each have much the other lacks send each other blocks
/// at the same time: neither may wait to finish writing before it reads, or
/// both would wait forever once the stream's buffers are full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_uploading_to_each_other_at_once_both_finish() {
    // Both know of both writers, so the sync downloads both feeds from
    // the start.
    let (owner, other) = two_writers().await;
    let entries = 6000;
    for (db, name) in [(&owner, "owner"), (&other, "other")] {
        let ops = (0..entries).map(|i| hyperdb::Op::Put {
            key: format!("{name}/{i}"),
            value: vec![b'v'; 300],
        });
        db.write_all(ops, 1000).unwrap();
    }
    // A stream that holds little, so answers cannot hide in its buffers.
    let (x, y) = tokio::io::duplex(16 * 1024);
    let (left, right) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            replicate(owner.clone(), x, ReplicateOptions::default()),
            replicate(other.clone(), y, ReplicateOptions::default())
        )
    })
    .await
    .expect("replication finishes");
    let (left, right) = (left.unwrap(), right.unwrap());
    assert_eq!(left.total_received(), entries as u64);
    assert_eq!(right.total_received(), entries as u64);
    for db in [&owner, &other] {
        assert_eq!(values(db, "owner/5999"), ["v".repeat(300)]);
        assert_eq!(values(db, "other/5999"), ["v".repeat(300)]);
    }
}

/// Fifty replicas syncing at once from one database, sharing one memory
/// budget as a server's connections do, all converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_syncs_converge() {
    let owner = memory_db(None);
    {
        let db = &owner;
        let ops = (0..1_000).map(|i| hyperdb::Op::Put {
            key: format!("k{i}"),
            value: format!("v{i}").into_bytes(),
        });
        db.write_all(ops, 100).unwrap();
    }
    let key = *owner.key();
    let budget = hyperdb::replicate::MemoryBudget::new(8 << 20);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let replica = memory_db(Some(key));
        let owner = owner.clone();
        let budget = budget.clone();
        tasks.push(tokio::spawn(async move {
            let (a, b) = tokio::io::duplex(1 << 16);
            let options = || ReplicateOptions {
                budget: Some(budget.clone()),
                ..Default::default()
            };
            let (served, synced) = tokio::join!(
                replicate(owner, a, options()),
                replicate(replica.clone(), b, options())
            );
            served.unwrap();
            assert_eq!(synced.unwrap().total_received(), 1_001);
            values(&replica, "k999")
        }));
    }
    for task in tasks {
        let got = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("the syncs finish")
            .unwrap();
        assert_eq!(got, ["v999"]);
    }
    assert_eq!(budget.used(), 0);
}

/// Two replicators connected twice (each side opened one connection, as
/// two peers that found each other do) keep the connection whose initiator
/// has the smaller peer id, on both sides, and replicate over it.
#[tokio::test]
async fn a_replicator_keeps_one_connection_per_peer() {
    use hyperdb::Replicator;
    let owner = memory_db(None);
    let replica = memory_db(Some(*owner.key()));
    let options = |id: u8| ReplicateOptions {
        live: true,
        id: Some([id; 32]),
        ..Default::default()
    };
    let a = Replicator::new(owner.clone(), options(1));
    let b = Replicator::new(replica.clone(), options(2));
    // x: a connected to b (initiator id 1…); y: b connected to a (2…).
    let (x1, x2) = tokio::io::duplex(1 << 16);
    let (y1, y2) = tokio::io::duplex(1 << 16);
    let (a2, b2) = (a.clone(), b.clone());
    let x_a = tokio::spawn(async move { a2.run(x1, true).await });
    let (a3, b3) = (a.clone(), b.clone());
    let y_b = tokio::spawn(async move { b3.run(y1, true).await });
    let y_a = tokio::spawn(async move { a3.run(y2, false).await });
    let x_b = tokio::spawn(async move { b2.run(x2, false).await });

    // y ends on both sides: the side that decides first as a duplicate
    // (the other may see it close first).
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        [y_a.await.unwrap(), y_b.await.unwrap()]
    })
    .await
    .expect("the duplicate connection ends");
    let duplicate = |r: &hyperdb::Result<hyperdb::Summary>| {
        matches!(
            r,
            Err(hyperdb::Error::Replication(
                hyperdb::ReplicationError::Duplicate { .. }
            ))
        )
    };
    assert!(ended.iter().any(duplicate), "{ended:?}");
    assert!(!x_a.is_finished() && !x_b.is_finished(), "x is kept");
    assert_eq!((a.peers(), b.peers()), (1, 1));

    // The kept connection replicates, live.
    owner.put("over/x", b"yes").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while values(&replica, "over/x") != ["yes"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live connection delivers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    x_a.abort();
    x_b.abort();
}

/// Of two connections opened by the same side, one after the other, both
/// sides keep the newer when that side's id is the smaller and the older
/// when it is the larger: discovery-swarm 5 decides on each new connection
/// alone, by who opened it.
#[tokio::test]
async fn of_two_connections_opened_by_one_side_both_sides_keep_the_same() {
    use hyperdb::Replicator;
    for (opener_id, other_id, newer_kept) in [(1u8, 2u8, true), (2, 1, false)] {
        let owner = memory_db(None);
        let replica = memory_db(Some(*owner.key()));
        let options = |id: u8| ReplicateOptions {
            live: true,
            id: Some([id; 32]),
            ..Default::default()
        };
        let a = Replicator::new(owner.clone(), options(opener_id));
        let b = Replicator::new(replica.clone(), options(other_id));
        let connect = || {
            let (x, y) = tokio::io::duplex(1 << 16);
            let (a, b) = (a.clone(), b.clone());
            [
                tokio::spawn(async move { a.run(x, true).await }),
                tokio::spawn(async move { b.run(y, false).await }),
            ]
        };
        let older = connect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while (a.peers(), b.peers()) != (1, 1) {
            assert!(tokio::time::Instant::now() < deadline, "first handshake");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let newer = connect();
        let (gone, kept) = if newer_kept {
            (older, newer)
        } else {
            (newer, older)
        };
        // Both ends finish; the side that decides first ends as a
        // duplicate (the other may see the connection close first).
        let mut ended = Vec::new();
        for end in gone {
            let result = tokio::time::timeout(Duration::from_secs(10), end)
                .await
                .expect("the connection not kept ends")
                .unwrap();
            ended.push(result);
        }
        assert!(
            ended.iter().any(|r| matches!(
                r,
                Err(hyperdb::Error::Replication(
                    hyperdb::ReplicationError::Duplicate { .. }
                ))
            )),
            "{ended:?}"
        );
        assert!(
            kept.iter().all(|t| !t.is_finished()),
            "ids {opener_id}, {other_id}"
        );
        assert_eq!((a.peers(), b.peers()), (1, 1));
        for t in kept {
            t.abort();
        }
    }
}

/// A replicator connected to itself drops the connection.
#[tokio::test]
async fn a_replicator_drops_a_connection_to_itself() {
    use hyperdb::Replicator;
    let db = memory_db(None);
    let r = Replicator::new(db, ReplicateOptions::default());
    let (x, y) = tokio::io::duplex(1 << 16);
    let (left, right) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(r.run(x, true), r.run(y, false))
    })
    .await
    .expect("ends");
    for result in [left, right] {
        let e = result.expect_err("a connection to itself");
        assert!(e.to_string().contains("this replicator itself"), "{e}");
    }
    assert_eq!(r.peers(), 0);
}

/// Waits (up to 20 s) until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects `a` and `b` with live sessions over an in-memory stream.
fn live_pair(a: &Db, b: &Db) -> [tokio::task::JoinHandle<hyperdb::Result<hyperdb::Summary>>; 2] {
    let live = ReplicateOptions {
        live: true,
        ..Default::default()
    };
    let (x, y) = tokio::io::duplex(64 << 10);
    [
        tokio::spawn(replicate(a.clone(), x, live.clone())),
        tokio::spawn(replicate(b.clone(), y, live)),
    ]
}

/// A hub between live peers relays: a block one peer sends wakes the hub's
/// sessions whose peers want that feed, and a writer the hub authorizes
/// meanwhile joins every session, so its writes reach every peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_hub_relays_writes_and_new_writers_between_its_peers() {
    let hub = memory_db(None);
    let key = *hub.key();
    let (b, c) = (memory_db(Some(key)), memory_db(Some(key)));
    hub.authorize(b.local_key()).unwrap();
    hub.authorize(c.local_key()).unwrap();
    let mut tasks = Vec::new();
    tasks.extend(live_pair(&hub, &b));
    tasks.extend(live_pair(&hub, &c));
    b.put("from/b", b"b").unwrap();
    c.put("from/c", b"c").unwrap();
    wait_until("b's and c's writes cross the hub", || {
        values(&b, "from/c") == ["c"] && values(&c, "from/b") == ["b"]
    })
    .await;

    let d = memory_db(Some(key));
    hub.authorize(d.local_key()).unwrap();
    d.put("from/d", b"d").unwrap();
    tasks.extend(live_pair(&hub, &d));
    wait_until("d's write reaches b and c through the hub", || {
        values(&b, "from/d") == ["d"] && values(&c, "from/d") == ["d"]
    })
    .await;
    b.put("again/b", b"b2").unwrap();
    wait_until("a later write reaches d", || {
        values(&d, "again/b") == ["b2"]
    })
    .await;
    for task in tasks {
        task.abort();
    }
}

/// A subscriber hears of the feeds it wants and of writers joining, not of
/// other feeds' growth.
#[test]
fn a_subscription_hears_only_of_the_feeds_it_wants() {
    let owner = memory_db(None);
    let other = memory_db(Some(*owner.key()));
    let (mine, elsewhere, everything) = (owner.subscribe(), owner.subscribe(), owner.subscribe());
    mine.want([*owner.local_key()]);
    elsewhere.want([*other.local_key()]);
    everything.want_all();
    owner.put("a", b"1").unwrap();
    assert_eq!(mine.try_changed().unwrap().feeds, [*owner.local_key()]);
    assert_eq!(
        everything.try_changed().unwrap().feeds,
        [*owner.local_key()]
    );
    assert_eq!(elsewhere.try_changed(), None);

    owner.authorize(other.local_key()).unwrap();
    let changed = elsewhere
        .try_changed()
        .expect("a new writer concerns everyone");
    assert!(changed.feed_set && changed.feeds.is_empty());
    assert!(mine.try_changed().unwrap().feed_set);
}

/// A one-shot session with a live peer (which never says it is done) ends
/// as soon as each side holds what the other has: it uploads what the live
/// peer lacks first, and does not wait out its idle ticks (a minute's
/// timeout here makes them 15 s each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_session_with_a_live_peer_ends_once_both_hold_the_same() {
    let owner = memory_db(None);
    for i in 0..50 {
        owner.put(&format!("k/{i}"), b"v").unwrap();
    }
    let replica = memory_db(Some(*owner.key()));
    let slow_ticks = Duration::from_secs(60);
    let (x, y) = tokio::io::duplex(64 << 10);
    let live_side = tokio::spawn(replicate(
        replica.clone(),
        y,
        ReplicateOptions {
            live: true,
            timeout: slow_ticks,
            ..Default::default()
        },
    ));
    let one_shot = ReplicateOptions {
        timeout: slow_ticks,
        ..Default::default()
    };
    let summary = tokio::time::timeout(
        Duration::from_secs(10),
        replicate(owner.clone(), x, one_shot.clone()),
    )
    .await
    .expect("the one-shot session ends without waiting for idle ticks")
    .unwrap();
    assert_eq!(summary.sent, 51, "the header and 50 entries went up first");
    assert_eq!(values(&replica, "k/49"), ["v"]);
    live_side.abort();

    // And downloading from a live peer that has more.
    let fresh = memory_db(Some(*owner.key()));
    let (x, y) = tokio::io::duplex(64 << 10);
    let live_side = tokio::spawn(replicate(
        owner.clone(),
        y,
        ReplicateOptions {
            live: true,
            timeout: slow_ticks,
            ..Default::default()
        },
    ));
    let summary = tokio::time::timeout(
        Duration::from_secs(10),
        replicate(fresh.clone(), x, one_shot),
    )
    .await
    .expect("ends once it holds everything")
    .unwrap();
    assert_eq!(summary.total_received(), 51);
    assert_eq!(values(&fresh, "k/0"), ["v"]);
    live_side.abort();
}
