//! One database used from several threads at once: readers beside a
//! replication of tens of thousands of entries and beside local writes, all
//! answers right.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyperdb::{replicate, Db, DbStorage, Op, OpenOptions, ReplicateOptions};

use crate::support::memory_db;

const ENTRIES: usize = 20_000;

fn value_of(i: usize) -> Vec<u8> {
    format!("value {i}").into_bytes()
}

/// A little xorshift, so each reader walks the keys in its own order.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn the_handle_is_shared_between_threads() {
    fn shared<T: Clone + Send + Sync + 'static>() {}
    shared::<Db>();
    fn sync<T: Send + Sync>() {}
    sync::<hyperdb::ReadOnlyDb>();
    sync::<hyperdb::Checkout<'static>>();
}

#[test]
fn readers_on_several_threads_see_right_answers_while_a_replication_runs() {
    let owner = memory_db(None);
    let ops = (0..ENTRIES).map(|i| Op::Put {
        key: format!("k/{i}"),
        value: value_of(i),
    });
    owner.write_all(ops, 1_000).unwrap();
    let replica = memory_db(Some(*owner.key()));

    let done = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (x, y) = tokio::io::duplex(1 << 16);
    let serving = runtime.spawn(replicate(owner.clone(), x, ReplicateOptions::default()));
    let fetching = runtime.spawn(replicate(replica.clone(), y, ReplicateOptions::default()));

    let readers: Vec<_> = (0..3u64)
        .map(|t| {
            let (owner, replica, done) = (owner.clone(), replica.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (t + 1);
                let (mut reads, mut found) = (0u64, 0u64);
                // At least a few hundred reads each, and on until the
                // replication is over.
                while reads < 300 || !done.load(Ordering::Acquire) {
                    let i = (next(&mut rng) % ENTRIES as u64) as usize;
                    let key = format!("k/{i}");
                    // The replica holds the key or not yet; never a wrong one.
                    let values = replica.get(&key).unwrap();
                    assert!(values.len() <= 1, "{key}: {} values", values.len());
                    if let Some(node) = values.first() {
                        assert_eq!(node.value.as_deref(), Some(&value_of(i)[..]), "{key}");
                        found += 1;
                    }
                    // The owner serves and answers at once.
                    let values = owner.get(&key).unwrap();
                    assert_eq!(values[0].value.as_deref(), Some(&value_of(i)[..]));
                    // A snapshot answers for its moment, whatever arrives.
                    if reads % 50 == 0 {
                        let snapshot = replica.snapshot().unwrap();
                        let before = snapshot.list("k/1").unwrap().len();
                        assert!(before <= snapshot.list("k/1").unwrap().len());
                    }
                    reads += 1;
                }
                (reads, found)
            })
        })
        .collect();

    let summaries = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            (serving.await.unwrap(), fetching.await.unwrap())
        })
        .await
        .expect("the replication ends")
    });
    done.store(true, Ordering::Release);
    summaries.0.unwrap();
    summaries.1.unwrap();
    for reader in readers {
        let (reads, found) = reader.join().expect("a reader failed");
        eprintln!("reader: {reads} reads, {found} found on the replica");
        assert!(reads >= 300);
    }
    // Everything arrived, and every key reads right.
    for i in (0..ENTRIES).step_by(97) {
        let values = replica.get(&format!("k/{i}")).unwrap();
        assert_eq!(values[0].value.as_deref(), Some(&value_of(i)[..]));
    }
    assert_eq!(replica.list("k").unwrap().len(), ENTRIES);
}

#[test]
fn writes_from_several_threads_are_made_one_at_a_time_and_all_kept() {
    let db = memory_db(None);
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let key = format!("t{t}/{i}");
                    db.put(&key, key.as_bytes()).unwrap();
                    // Each thread reads its own write at once.
                    assert_eq!(
                        db.get(&key).unwrap()[0].value.as_deref(),
                        Some(key.as_bytes())
                    );
                }
            })
        })
        .collect();
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut last = 0;
            for _ in 0..200 {
                // The feed only grows, and what is listed is whole.
                let len = db.feed(0).unwrap().len();
                assert!(len >= last);
                last = len;
                for (key, values) in db.list("t0").unwrap() {
                    assert_eq!(values[0].value.as_deref(), Some(key.as_bytes()));
                }
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    reader.join().unwrap();
    assert_eq!(db.feed(0).unwrap().len(), 1 + 4 * 200);
    for t in 0..4 {
        assert_eq!(db.list(&format!("t{t}")).unwrap().len(), 200);
    }
}

#[test]
fn a_lookup_decodes_stored_entries_while_a_write_holds_the_state() {
    // A cache that holds almost nothing: every lookup decodes entries.
    let options = OpenOptions {
        cache_bytes: 0,
        ..Default::default()
    };
    let db = Db::open_storage(DbStorage::memory(), options).unwrap();
    let ops = (0..2_000).map(|i| Op::Put {
        key: format!("k/{i}"),
        value: value_of(i),
    });
    db.write_all(ops, 500).unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    let reader = {
        let db = db.clone();
        move || {
            for i in (0..2_000).step_by(7) {
                let values = db.get(&format!("k/{i}")).unwrap();
                assert_eq!(values[0].value.as_deref(), Some(&value_of(i)[..]));
            }
            let _ = done.send(());
        }
    };
    // The closure runs with the database's state held for writing, as an
    // append or a replication storing blocks holds it.
    let read_meanwhile = db
        .with_feed_mut(0, |_| {
            let reader = std::thread::spawn(reader);
            let read = finished.recv_timeout(Duration::from_secs(30)).is_ok();
            (read, reader)
        })
        .unwrap();
    let (read, reader) = read_meanwhile;
    reader.join().expect("the reader's answers were right");
    assert!(read, "lookups waited for a write in progress");
}
