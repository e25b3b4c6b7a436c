//! Replication throughput: a database of N entries (written in batches of
//! 1,000) replicated one-shot to an empty replica over loopback TCP, as
//! `interop/bench-replicate.js` measures the reference. Prints one JSON
//! object.
//!
//! `cargo run --release -p hyperdb --example replicate_bench -- 100000 [fsync]`
//! (with `fsync`, the replica syncs every batch of blocks it stores).

use std::time::Instant;

use hyperdb::{replicate, Db, Durability, Op, OpenOptions, ReplicateOptions};

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let durability = match std::env::args().nth(2).as_deref() {
        Some("fsync") => Durability::Fsync,
        _ => Durability::Buffered,
    };
    let tmp = std::env::temp_dir().join(format!("hyperdb-replicate-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let owner = Db::open(tmp.join("owner")).unwrap();
    for start in (0..n).step_by(1000) {
        let ops: Vec<Op> = (start..n.min(start + 1000))
            .map(|i| Op::Put {
                key: format!("key/{}/{i}", i % 100),
                value: format!("value {i}").into_bytes(),
            })
            .collect();
        owner.batch(&ops).unwrap();
    }
    let key = *owner.key();
    let replica = Db::open_with(
        tmp.join("replica"),
        OpenOptions {
            key: Some(key),
            durability,
            ..Default::default()
        },
    )
    .unwrap();
    let (owner, replica) = (owner, replica);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    // The owner outlives the timed part, as the reference's does in
    // interop/bench-replicate.js: closing a database is not replication.
    let serving = owner.clone();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        replicate(serving, socket, ReplicateOptions::default())
            .await
            .unwrap()
    });
    let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let summary = replicate(replica.clone(), socket, ReplicateOptions::default())
        .await
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    server.await.unwrap();
    drop(owner);
    assert_eq!(summary.total_received() as usize, n + 1);
    let got = replica
        .get(&format!("key/{}/{}", (n - 1) % 100, n - 1))
        .unwrap()
        .len();
    assert_eq!(got, 1);
    let _ = std::fs::remove_dir_all(&tmp);
    println!(
        "{{\"n\":{n},\"entries_per_second\":{:.0},\"cpu_seconds\":{cpu:.2},\"seconds\":{seconds:.2}}}",
        n as f64 / seconds
    );
}

/// CPU time this process used so far (user and system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields 14 and 15 (utime, stime) follow the parenthesised command name.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}
