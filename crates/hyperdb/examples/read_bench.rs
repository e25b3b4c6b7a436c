//! Parallel reads: random gets on one shared `Db` from 1 and 2 threads,
//! with nothing else running and while a replication stores new entries in
//! the same database (each get from the current heads, which the sync keeps
//! moving, or from a snapshot taken as the sync starts). Prints a table of
//! medians over the rounds.
//!
//! `cargo run --release -p hyperdb --example read_bench -- [N] [ROUNDS] [CACHE]`
//! (N keys, 100,000 by default; 5 rounds; CACHE megabytes of decoded
//! entries kept, `OpenOptions::cache_bytes`, 64 by default: give about a
//! kilobyte an entry to see reads that never decode).
//!
//! The database read is a replica of an owner with N keys, on disk, each
//! read once before the rounds. In a "sync" round the owner first writes
//! 50,000 more entries (under other keys), then the readers run for exactly
//! as long as the replica takes to fetch them, in this process: both ends
//! of the sync on one thread (a current-thread runtime), so on a 2-core
//! machine one reader has a core of its own, as it would if the serving
//! peer were another machine (two readers and the sync share two cores). A
//! "quiet" round runs the readers for as long again with nothing else going
//! on. Every run of readers draws its own random keys.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperdb::{replicate, Db, Op, OpenOptions, ReplicateOptions};

const NEW_PER_ROUND: usize = 50_000;

/// Runs of readers so far.
static PHASE: AtomicU64 = AtomicU64::new(0);

fn write(db: &Db, prefix: &str, range: std::ops::Range<usize>) {
    let ops = range.map(|i| Op::Put {
        key: format!("{prefix}/{i}"),
        value: format!("value {i}").into_bytes(),
    });
    db.write_all(ops, 1_000).unwrap();
}

/// Runs `threads` readers on `db` until `stop` is set; returns gets done.
/// With `snapshot`, each reader reads from a snapshot taken as it starts;
/// otherwise every get starts from the current heads.
fn read(db: &Db, n: usize, threads: usize, snapshot: bool, stop: &AtomicBool) -> u64 {
    // Every run draws keys of its own: replaying another run's keys would
    // find them cached or evicted according to what that run did.
    let phase = PHASE.fetch_add(1, Ordering::Relaxed);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| {
                s.spawn(move || {
                    let view = snapshot.then(|| db.snapshot().unwrap());
                    let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ ((phase * 16 + t + 1) * 0x9e37_79b9);
                    let mut gets = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let i = (rng % n as u64) as usize;
                        let key = format!("key/{i}");
                        let values = match &view {
                            Some(view) => view.get(&key).unwrap(),
                            None => db.get(&key).unwrap(),
                        };
                        assert_eq!(values.len(), 1);
                        gets += 1;
                    }
                    gets
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// Gets per second with `threads` readers for `duration`.
fn quiet(db: &Db, n: usize, threads: usize, duration: Duration) -> f64 {
    let stop = AtomicBool::new(false);
    let gets = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(duration);
            stop.store(true, Ordering::Relaxed);
        });
        read(db, n, threads, false, &stop)
    });
    gets as f64 / duration.as_secs_f64()
}

/// Gets per second with `threads` readers while `replica` fetches what
/// `owner` has; also returns how long the fetch took.
fn during_sync(
    owner: &Db,
    replica: &Db,
    n: usize,
    threads: usize,
    snapshot: bool,
    runtime: &tokio::runtime::Runtime,
) -> (f64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let (x, y) = tokio::io::duplex(1 << 16);
    let serving = runtime.spawn(replicate(owner.clone(), x, ReplicateOptions::default()));
    let fetching = runtime.spawn(replicate(replica.clone(), y, ReplicateOptions::default()));
    let gets = std::thread::scope(|s| {
        let stop2 = stop.clone();
        s.spawn(move || {
            runtime.block_on(async {
                serving.await.unwrap().unwrap();
                fetching.await.unwrap().unwrap();
            });
            stop2.store(true, Ordering::Relaxed);
        });
        read(replica, n, threads, snapshot, &stop)
    });
    let elapsed = start.elapsed();
    (gets as f64 / elapsed.as_secs_f64(), elapsed)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let cache_bytes: usize = args
        .next()
        .and_then(|a| a.parse::<usize>().ok())
        .map_or(OpenOptions::default().cache_bytes, |mb| mb << 20);
    let tmp = std::env::temp_dir().join(format!("hyperdb-read-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let owner = Db::open(tmp.join("owner")).unwrap();
    write(&owner, "key", 0..n);
    let replica = Db::open_with(
        tmp.join("replica"),
        OpenOptions {
            key: Some(*owner.key()),
            cache_bytes,
            ..Default::default()
        },
    )
    .unwrap();
    // Both ends of the sync on one thread: the readers have the other core
    // to themselves, as they would if the serving peer were another machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    during_sync(&owner, &replica, n, 0, false, &runtime);
    // Every key read once, so each round starts from the same cache.
    for i in 0..n {
        replica.get(&format!("key/{i}")).unwrap();
    }
    eprintln!("{n} keys replicated; {rounds} rounds");

    // Per reader count: quiet, during a sync, during a sync from a snapshot.
    let mut table: Vec<(usize, [Vec<f64>; 3])> =
        vec![(1, Default::default()), (2, Default::default())];
    let mut written = 0;
    for round in 0..rounds {
        for (threads, rates) in &mut table {
            let mut took = Duration::ZERO;
            for (column, snapshot) in [(1, false), (2, true)] {
                write(&owner, "new", written..written + NEW_PER_ROUND);
                written += NEW_PER_ROUND;
                let (rate, time) = during_sync(&owner, &replica, n, *threads, snapshot, &runtime);
                rates[column].push(rate);
                took += time;
            }
            rates[0].push(quiet(&replica, n, *threads, took / 2));
            eprintln!(
                "round {round}, {threads} reader(s): quiet {:.0} gets/s; during a sync {:.0} gets/s, from a snapshot {:.0} gets/s",
                rates[0].last().unwrap(),
                rates[1].last().unwrap(),
                rates[2].last().unwrap(),
            );
        }
    }
    let one = median(table[0].1[0].clone());
    println!("| readers | gets/s, quiet | during a sync | cost | during a sync, from a snapshot | cost | quiet, vs 1 reader |");
    println!("|---|---|---|---|---|---|---|");
    for (threads, rates) in &table {
        let [q, s, p] = rates.clone().map(median);
        println!(
            "| {threads} | {q:.0} | {s:.0} | {:.0}% | {p:.0} | {:.0}% | {:.2}x |",
            100.0 * (1.0 - s / q),
            100.0 * (1.0 - p / q),
            q / one
        );
    }
    drop((owner, replica));
    let _ = std::fs::remove_dir_all(&tmp);
}
