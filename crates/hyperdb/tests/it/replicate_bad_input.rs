//! Replication with misbehaving peers: every bad input ends that connection
//! with a clear error, stores nothing unverified, leaves the database
//! intact, and a later sync completes from where it stopped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypercore_feed::SparseBits;
use hypercore_wire::messages::{Data, DataNode, Have};
use hypercore_wire::{Event, Message, Protocol, ProtocolOptions};
use hyperdb::{replicate, Db, ReplicateOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::support::memory_db;

fn values(db: &Db, key: &str) -> Vec<String> {
    db.get(key)
        .unwrap()
        .iter()
        .map(|n| n.value_str().unwrap())
        .collect()
}

async fn sync(
    a: &Db,
    b: &Db,
) -> (
    hyperdb::Result<hyperdb::Summary>,
    hyperdb::Result<hyperdb::Summary>,
) {
    let (x, y) = tokio::io::duplex(1 << 20);
    tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(
            replicate(a.clone(), x, ReplicateOptions::default()),
            replicate(b.clone(), y, ReplicateOptions::default())
        )
    })
    .await
    .expect("sync ends")
}

/// A peer driven by the test through the wire state machine.
struct Fake {
    protocol: Protocol,
    io: DuplexStream,
}

impl Fake {
    async fn flush(&mut self) {
        let out = self.protocol.take_outgoing();
        if !out.is_empty() {
            let _ = self.io.write_all(&out).await;
        }
    }

    /// Reads for a while and returns the messages seen.
    async fn read(&mut self, for_ms: u64) -> Vec<Message> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(for_ms);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
            if n == 0 || self.protocol.receive(&buf[..n]).is_err() {
                break;
            }
            while let Some(event) = self.protocol.next_event() {
                if let Event::Message { message, .. } = event {
                    got.push(message);
                }
            }
        }
        got
    }
}

/// A database with a few entries, and a replica that knows only its key,
/// replicating with a fake peer that has the owner's feed.
fn owner_with_entries() -> Db {
    let owner = memory_db(None);
    for i in 0..5 {
        owner
            .put(&format!("k{i}"), format!("v{i}").as_bytes())
            .unwrap();
    }
    owner
}

type Session = tokio::task::JoinHandle<hyperdb::Result<hyperdb::Summary>>;

/// Replicates `db` (with a short timeout) with a fake peer that has opened
/// the feed of `key`, over a stream holding `capacity` bytes.
fn fake_peer(db: &Db, key: &[u8; 32], capacity: usize) -> (Fake, Session) {
    let (x, y) = tokio::io::duplex(capacity);
    let options = ReplicateOptions {
        timeout: Duration::from_millis(800),
        ..Default::default()
    };
    let session = tokio::spawn(replicate(db.clone(), x, options));
    let mut fake = Fake {
        protocol: Protocol::new(ProtocolOptions::default()),
        io: y,
    };
    fake.protocol.open(key).unwrap();
    (fake, session)
}

/// A replica that knows only the owner's key, replicating with a fake peer
/// that serves the owner's feed.
async fn fake_serving(owner: &Db) -> (Fake, Session, Db) {
    let key = *owner.key();
    let replica = memory_db(Some(key));
    let (mut fake, session) = fake_peer(&replica, &key, 1 << 20);
    fake.flush().await;
    (fake, session, replica)
}

fn proof_data(owner: &Db, index: u64) -> Data {
    let db = &owner;
    let feed = db.feed(0).unwrap();
    let proof = feed.proof(index, 0, false, &mut SparseBits::new()).unwrap();
    Data {
        index,
        value: Some(feed.get(index).unwrap().into()),
        nodes: proof
            .nodes
            .into_iter()
            .map(|n| DataNode {
                index: n.index,
                hash: n.hash,
                size: n.size,
            })
            .collect(),
        signature: proof.signature.map(|s| s.to_vec().into()),
    }
}

async fn expect_error(session: Session, needle: &str) {
    let result = tokio::time::timeout(Duration::from_secs(20), session)
        .await
        .expect("session ends")
        .unwrap();
    let err = result.expect_err("the session fails").to_string();
    assert!(
        err.contains(needle),
        "error {err:?} should mention {needle:?}"
    );
}

#[tokio::test]
async fn data_that_does_not_verify_is_rejected_and_nothing_is_stored() {
    let owner = owner_with_entries();
    let (mut fake, session, replica) = fake_serving(&owner).await;
    let dk = hypercore_feed::crypto::discovery_key(owner.key());
    fake.read(200).await;
    fake.protocol.send(
        &dk,
        &Message::Have(Have {
            start: 0,
            length: Some(6),
            bitfield: None,
            ack: None,
        }),
    );
    fake.flush().await;
    let asked = fake.read(300).await;
    let index = asked
        .iter()
        .find_map(|m| match m {
            Message::Request(r) => Some(r.index),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a request: {asked:?}"));
    let mut data = proof_data(&owner, index);
    let mut signature = data.signature.take().unwrap().to_vec();
    signature[3] ^= 1;
    data.signature = Some(signature.into());
    fake.protocol.send(&dk, &Message::Data(data));
    fake.flush().await;
    expect_error(session, "does not verify").await;
    {
        let db = &replica;
        assert!(!db.feed(0).unwrap().has(index), "nothing stored");
        assert_eq!(db.feed(0).unwrap().len(), 0);
    }

    // A later honest sync completes.
    let (left, right) = sync(&owner, &replica).await;
    left.unwrap();
    right.unwrap();
    assert_eq!(values(&replica, "k3"), ["v3"]);
}

/// Blocks that arrive together are stored together; when a later one in
/// the same input does not verify, the session fails but the ones that
/// verified before it are kept.
#[tokio::test]
async fn what_verified_is_kept_when_a_later_block_of_the_same_input_does_not() {
    let owner = owner_with_entries();
    let (mut fake, session, replica) = fake_serving(&owner).await;
    let dk = hypercore_feed::crypto::discovery_key(owner.key());
    fake.read(200).await;
    fake.protocol.send(
        &dk,
        &Message::Have(Have {
            start: 0,
            length: Some(6),
            bitfield: None,
            ack: None,
        }),
    );
    fake.flush().await;
    let requests = |messages: &[Message]| -> Vec<u64> {
        messages
            .iter()
            .filter_map(|m| match m {
                Message::Request(r) => Some(r.index),
                _ => None,
            })
            .collect()
    };
    // The last block comes first, alone; then the rest are asked for.
    let asked = requests(&fake.read(300).await);
    assert_eq!(asked, [5]);
    fake.protocol
        .send(&dk, &Message::Data(proof_data(&owner, 5)));
    fake.flush().await;
    let asked = requests(&fake.read(300).await);
    assert!(asked.len() >= 2, "the rest is asked for: {asked:?}");
    let (good, bad) = (asked[0], asked[1]);
    let mut forged = proof_data(&owner, bad);
    forged.value = Some(b"not what was signed".to_vec().into());
    // Both in one write, so the replica reads them as one input.
    fake.protocol
        .send(&dk, &Message::Data(proof_data(&owner, good)));
    fake.protocol.send(&dk, &Message::Data(forged));
    fake.flush().await;
    expect_error(session, "does not verify").await;
    let feed = replica.feed(0).unwrap();
    assert!(feed.has(5) && feed.has(good), "what verified is kept");
    assert!(!feed.has(bad), "the forged block is not");
    assert_eq!(
        feed.get(good).unwrap(),
        owner.feed(0).unwrap().get(good).unwrap()
    );
}

#[tokio::test]
async fn garbage_an_oversized_frame_or_an_unknown_type_end_the_connection() {
    for (bytes, needle) in [
        (vec![0xff; 64], "invalid frame header"),
        (vec![0x80, 0x80, 0x80, 0x08], "8 MiB"),
        (vec![2, 12, 0], "unknown type"),
        (vec![3, 0x1f, 0, 0], "never opened"),
    ] {
        let owner = owner_with_entries();
        let (mut fake, session, replica) = fake_serving(&owner).await;
        fake.read(100).await;
        // Raw bytes, encrypted as the stream requires.
        let raw = encrypt_raw(&mut fake, &bytes);
        fake.io.write_all(&raw).await.unwrap();
        expect_error(session, needle).await;
        // The database is intact and a later sync completes.
        let (left, right) = sync(&owner, &replica).await;
        left.unwrap();
        right.unwrap();
        assert_eq!(values(&replica, "k4"), ["v4"], "after {needle}");
    }
}

/// Encrypts raw bytes with the fake's outgoing cipher by sending them as
/// keep-alive bytes (the stream XORs everything it sends).
fn encrypt_raw(fake: &mut Fake, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in bytes {
        fake.protocol.ping();
        out.extend(fake.protocol.take_outgoing());
    }
    // Each ping is one zero byte: XOR with the wanted byte gives the
    // ciphertext of that byte.
    out.iter().zip(bytes).map(|(k, b)| k ^ b).collect()
}

#[tokio::test]
async fn a_peer_that_stalls_times_out() {
    let owner = owner_with_entries();
    let (_fake, session, replica) = fake_serving(&owner).await;
    // The fake sends its opening and then nothing at all.
    expect_error(session, "timed out").await;
    let (left, right) = sync(&owner, &replica).await;
    left.unwrap();
    right.unwrap();
    assert_eq!(values(&replica, "k0"), ["v0"]);
}

#[tokio::test]
async fn a_connection_cut_halfway_keeps_what_verified_and_resumes() {
    let owner = memory_db(None);
    let ops = (0..3000).map(|i| hyperdb::Op::Put {
        key: format!("key/{i}"),
        value: vec![b'x'; 200],
    });
    owner.write_all(ops, 300).unwrap();
    let key = *owner.key();
    let replica = memory_db(Some(key));
    let (x, y) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(replicate(owner.clone(), x, ReplicateOptions::default()));
    let client = tokio::spawn(replicate(replica.clone(), y, ReplicateOptions::default()));
    // Cut the connection once some blocks have arrived.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let have = replica.feed(0).unwrap().downloaded(0, 3001);
        if have > 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.abort();
    let result = tokio::time::timeout(Duration::from_secs(20), client)
        .await
        .unwrap()
        .unwrap();
    let partial = replica.feed(0).unwrap().downloaded(0, 3001);
    assert!(partial < 3001, "the cut came before the end");
    if let Err(e) = result {
        assert!(e.to_string().contains("replication"), "{e}");
    }
    {
        let db = &replica;
        let report = db.with_feed_mut(0, |f| f.audit()).unwrap().unwrap();
        assert_eq!(report.invalid, 0, "what was stored verifies");
        // Reads answer from what is there without failing.
        db.get("key/1").unwrap();
    }
    let (left, right) = sync(&owner, &replica).await;
    left.unwrap();
    let summary = right.unwrap();
    assert_eq!(
        summary.total_received(),
        3001 - partial,
        "the second sync fetches only what was missing"
    );
    assert_eq!(values(&replica, "key/2999"), ["x".repeat(200)]);
}

#[tokio::test]
async fn an_unauthorized_writer_never_reaches_the_answers() {
    let owner = owner_with_entries();
    let key = *owner.key();
    let stranger = memory_db(Some(key));
    stranger.put("k0", b"overwritten by a stranger").unwrap();
    stranger.put("stranger", b"was here").unwrap();
    let (left, right) = sync(&owner, &stranger).await;
    left.unwrap();
    right.unwrap();
    assert_eq!(values(&owner, "k0"), ["v0"]);
    assert!(values(&owner, "stranger").is_empty());
    assert_eq!(
        owner.writers().len(),
        1,
        "the stranger's feed was never opened"
    );
    // The stranger still sees its own writes, and the owner's.
    assert_eq!(values(&stranger, "stranger"), ["was here"]);
    assert_eq!(values(&stranger, "k1"), ["v1"]);
}

#[tokio::test]
async fn the_onwrite_hook_sees_entries_and_can_refuse_them() {
    let owner = owner_with_entries();
    let key = *owner.key();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let replica = memory_db(Some(key));
    let seen2 = seen.clone();
    let hook: hyperdb::replicate::OnWrite =
        Arc::new(move |e: &hyperdb::replicate::IncomingEntry| {
            seen2.lock().unwrap().push((e.seq, e.entry.key.clone()));
            if e.entry.key == "k3" {
                Err("k3 is not welcome".into())
            } else {
                Ok(())
            }
        });
    let (x, y) = tokio::io::duplex(1 << 20);
    let options = ReplicateOptions {
        on_write: Some(hook),
        ..Default::default()
    };
    let (_, theirs) = tokio::join!(
        replicate(owner.clone(), x, ReplicateOptions::default()),
        replicate(replica.clone(), y, options)
    );
    let err = theirs.unwrap_err().to_string();
    assert!(
        err.contains("refused") && err.contains("k3 is not welcome"),
        "{err}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(_, k)| k == "k3"));
    assert!(
        seen.iter().all(|(seq, _)| *seq > 0),
        "the header is not shown"
    );
    let db = &replica;
    assert!(
        !db.feed(0).unwrap().has(4),
        "the refused entry was not stored"
    );
}

#[tokio::test]
async fn a_peer_that_asks_but_never_reads_is_given_up() {
    let owner = owner_with_entries();
    let key = *owner.key();
    let dk = hypercore_feed::crypto::discovery_key(&key);
    let (mut fake, session) = fake_peer(&owner, &key, 1 << 16);
    // Far more answers than any buffer holds, then keep-alives only: the
    // peer stays talkative but never reads a byte.
    for round in 0..20_000u64 {
        fake.protocol.send(
            &dk,
            &Message::Request(hypercore_wire::messages::Request {
                index: round % 6,
                bytes: None,
                hash: None,
                nodes: None,
            }),
        );
    }
    let pinger = tokio::spawn(async move {
        fake.flush().await;
        loop {
            fake.protocol.ping();
            fake.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    expect_error(session, "stopped reading").await;
    pinger.abort();
    assert_eq!(values(&owner, "k4"), ["v4"], "the database is intact");
}

/// Peers that each announce a large frame and send most of it, then trickle
/// (a byte now and then, so they never time out), share one memory budget:
/// the sessions over their share end with an error once the budget is
/// spent, and what they hold together stays about the budget.
#[tokio::test]
async fn trickled_frames_stay_within_the_memory_budget() {
    use hyperdb::replicate::MemoryBudget;
    let owner = owner_with_entries();
    let budget = MemoryBudget::new(4 << 20);
    let frame = 2 << 20;
    let mut sessions = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..8 {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let options = ReplicateOptions {
            budget: Some(budget.clone()),
            timeout: Duration::from_secs(60),
            ..Default::default()
        };
        sessions.push(tokio::spawn(replicate(owner.clone(), ours, options)));
        peers.push(tokio::spawn(async move {
            // A 2 MiB frame, all but its last byte.
            let mut header = Vec::new();
            hypercore_feed::varint::encode(frame as u64, &mut header);
            theirs.write_all(&header).await?;
            theirs.write_all(&vec![7u8; frame - 1]).await?;
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Nothing more of the frame; keep reading what we are sent.
                let mut buf = [0u8; 4096];
                if let Ok(Ok(0)) =
                    tokio::time::timeout(Duration::from_millis(1), theirs.read(&mut buf)).await
                {
                    return Ok::<_, std::io::Error>(true);
                }
            }
            Ok(false)
        }));
    }
    let mut peak = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(budget.used());
    }
    let mut ended = 0;
    for session in sessions {
        // The others end when their peers hang up.
        let result = tokio::time::timeout(Duration::from_secs(10), session).await;
        if let Ok(Ok(Err(e))) = result {
            ended += usize::from(e.to_string().contains("memory budget"));
        }
    }
    for peer in peers {
        let _ = peer.await;
    }
    // Two frames of 2 MiB fit in 4 MiB: the others were turned away.
    assert!(ended >= 5, "{ended} sessions ended");
    assert!(peak <= (4 << 20) + frame + (1 << 16), "peak {peak}");
    assert_eq!(budget.used(), 0, "every session gave its share back");
}
