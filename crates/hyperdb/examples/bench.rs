//! Throughput of put, batch put, get, list (in the reference's order and in
//! the order written) and history on a file-backed database, as
//! `interop/bench-db.js` measures the reference and `scripts/hyperbee/bench.js`
//! Hyperbee. Prints one JSON object: operations per second; `open_ms`, how
//! long reopening the database took before the gets, and `reindex_ms`, how
//! long opening took at the end with the key index deleted (rebuilt from
//! the feed); and `rss_mb`, the process's peak resident memory in MiB
//! (Linux).
//!
//! Gets run on the database freshly reopened (its caches empty, the files
//! in the operating system's page cache, as they are just written); the
//! listing streams every key, as a user listing a million keys would. The
//! listings after the gets find what the gets left in the cache of decoded
//! entries (at 20,000 keys every entry, at 1,000,000 about a tenth with the
//! default cache), so the listing in the reference's order runs once more
//! on the database reopened again (`list_reopened`): nothing cached, at
//! every size, its index of paths read back from its file.
//! Batch put times each `batch` call (freeing the entries it gives back
//! included), not the building of its thousand operations beforehand.
//! Each operation runs with only its own database open: the one filled by
//! single puts is closed before the batches, the batch-written one before
//! the gets (a large heap left live beside them slows glibc's allocator,
//! which would time the benchmark's layout rather than the operation).
//!
//! `cargo run --release -p hyperdb --example bench -- 20000`
//!
//! A second argument sets the cache of decoded entries
//! (`OpenOptions::cache_bytes`, 64 MiB by default): with one large enough
//! to hold every entry, the figures show what the operations cost when no
//! entry is read twice (`-- 1000000 8000000000`).

use std::time::Instant;

use hyperdb::{Db, IterOptions, OpenOptions};
use workload::{key, puts, value};

mod workload;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let cache_bytes = std::env::args()
        .nth(2)
        .map(|a| a.parse().expect("the cache size is a number of bytes"))
        .unwrap_or(OpenOptions::default().cache_bytes);
    let open = |dir: std::path::PathBuf| {
        let options = OpenOptions {
            cache_bytes,
            ..OpenOptions::default()
        };
        Db::open_with(dir, options).unwrap()
    };
    let tmp = std::env::temp_dir().join(format!("hyperdb-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);

    let db = open(tmp.join("put"));
    let start = Instant::now();
    for i in 0..n {
        db.put(&key(i), &value(i)).unwrap();
    }
    let put = n as f64 / start.elapsed().as_secs_f64();
    drop(db); // closed: each operation runs with only its own database open

    // Timed: each batch, and freeing the entries it gives back; not
    // building its operations (formatting a thousand keys and values),
    // which is the workload's cost, not the database's.
    let batched = open(tmp.join("batch"));
    let mut batching = std::time::Duration::ZERO;
    for from in (0..n).step_by(1000) {
        let ops = puts(from..n.min(from + 1000));
        let start = Instant::now();
        drop(batched.batch(&ops).unwrap());
        batching += start.elapsed();
    }
    let batch = n as f64 / batching.as_secs_f64();

    drop(batched);

    // Gets on a freshly opened database, so nothing is cached yet.
    let start = Instant::now();
    let db = open(tmp.join("put"));
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let mut x = 12345usize;
    for _ in 0..n {
        x = (x * 1103515245 + 12345) % (1 << 31);
        let i = x % n;
        assert_eq!(db.get(&key(i)).unwrap().len(), 1);
    }
    let get = n as f64 / start.elapsed().as_secs_f64();

    // Every key listed, each with its one value: keys per second.
    let list_all = |db: &Db, options: IterOptions| {
        let start = Instant::now();
        let listed = db
            .iter("", options)
            .unwrap()
            .map(|entry| assert_eq!(entry.unwrap().1.len(), 1))
            .count();
        assert_eq!(listed, n);
        n as f64 / start.elapsed().as_secs_f64()
    };
    let list = list_all(&db, IterOptions::default());
    // The same listing in the order written (read straight through the
    // feed, each key checked against the key index).
    let unordered = IterOptions {
        unordered: true,
        ..Default::default()
    };
    let list_unordered = list_all(&db, unordered);

    let start = Instant::now();
    let walked = db.history(false).unwrap().count();
    assert_eq!(walked, n);
    let history = n as f64 / start.elapsed().as_secs_f64();

    drop(db);
    let db = open(tmp.join("put"));
    let list_reopened = list_all(&db, IterOptions::default());

    drop(db);
    let _ = std::fs::remove_dir_all(tmp.join("put").join("index"));
    let start = Instant::now();
    let db = open(tmp.join("put"));
    let reindex_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(db.key_index().map(|i| i.covered), Some(n as u64 + 1));
    drop(db);

    let _ = std::fs::remove_dir_all(&tmp);
    let rss_mb = peak_rss_kib() / 1024;
    println!(
        "{}",
        format_args!(
            "{{\"n\":{n},\"put\":{put:.0},\"batch\":{batch:.0},\"get\":{get:.0},\"list\":{list:.0},\"list_unordered\":{list_unordered:.0},\"list_reopened\":{list_reopened:.0},\"history\":{history:.0},\"open_ms\":{open_ms:.1},\"reindex_ms\":{reindex_ms:.1},\"rss_mb\":{rss_mb}}}"
        )
    );
}

/// The process's peak resident memory in KiB (`VmHWM`), 0 where unknown.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}
