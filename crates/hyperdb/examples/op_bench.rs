//! Times one operation on a file-backed database of N keys, in a fresh
//! process: for comparing two builds on the same files, interleaved,
//! without writing the database again for every run (`bench` writes its
//! databases each time).
//!
//! The first run writes the database into DIR (N puts one at a time, keys
//! `key/<i mod 100>/<i>` as `bench` writes them); later runs reuse it.
//! Then it opens the database (caches empty, the files in the operating
//! system's page cache) and runs OP once, printing one JSON object with
//! operations per second and how long closing took (`close_ms`: closing
//! writes the indexes' files when they hold much that their files do
//! not). OP is one of:
//! - `get`: N gets of random keys that are there;
//! - `absent`: N gets of random keys that are not;
//! - `list`: listing every key in the reference's order;
//! - `list_unordered`: listing every key in the order written;
//! - `history`: walking every write;
//! - `batch`: 100,000 more keys in batches of 1,000, written to a copy of
//!   the database (removed after): what a batch costs at N keys (for N
//!   well above 100,000), where `bench`'s figure averages it from an
//!   empty database up;
//! - `put`: 20,000 more keys, one put each, written to a copy likewise.
//!
//! An optional last argument sets the cache of decoded entries
//! (`OpenOptions::cache_bytes`, 64 MiB by default).
//!
//! `cargo run --release -p hyperdb --example op_bench -- /tmp/db-1m 1000000 history`

use std::time::Instant;

use hyperdb::{Db, IterOptions, OpenOptions};
use workload::{key, puts, value};

mod workload;

/// Keys the `batch` operation adds.
const BATCH_KEYS: usize = 100_000;

/// Keys the `put` operation adds.
const PUT_KEYS: usize = 20_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: op_bench DIR N get|absent|list|list_unordered|history|batch|put [CACHE_BYTES]";
    let (dir, n, op, cache) = match args.as_slice() {
        [dir, n, op] => (dir, n, op, None),
        [dir, n, op, cache] => (dir, n, op, Some(cache)),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let options = OpenOptions {
        cache_bytes: cache.map_or(OpenOptions::default().cache_bytes, |c| {
            c.parse().unwrap_or_else(|_| {
                eprintln!("{usage}: CACHE_BYTES is a number of bytes");
                std::process::exit(2);
            })
        }),
        ..OpenOptions::default()
    };
    let n: usize = n.parse().unwrap_or_else(|_| {
        eprintln!("{usage}: N is a number of keys");
        std::process::exit(2);
    });
    if !std::path::Path::new(dir).exists() {
        let db = Db::open(dir).unwrap();
        for i in 0..n {
            db.put(&key(i), &value(i)).unwrap();
        }
    }
    // `batch` and `put` write into a copy, removed at the end.
    let copy = (op == "batch" || op == "put").then(|| {
        let copy = std::env::temp_dir().join(format!("op-bench-batch-{}", std::process::id()));
        copy_dir(std::path::Path::new(dir), &copy).unwrap();
        copy
    });
    let db = Db::open_with(copy.as_deref().unwrap_or(dir.as_ref()), options).unwrap();
    let random = |n: usize| {
        let mut x = 12345usize;
        (0..n).map(move |_| {
            x = (x * 1103515245 + 12345) % (1 << 31);
            x % n
        })
    };
    let list = |unordered| {
        let options = IterOptions {
            unordered,
            ..Default::default()
        };
        db.iter("", options)
            .unwrap()
            .map(|entry| assert_eq!(entry.unwrap().1.len(), 1))
            .count()
    };
    // A batch's operations are built before the clock starts (formatting
    // keys and values is the workload's cost, as in `bench`).
    let batches: Vec<Vec<hyperdb::Op>> = match op.as_str() {
        "batch" => (n..n + BATCH_KEYS)
            .step_by(1000)
            .map(|from| puts(from..from + 1000))
            .collect(),
        _ => Vec::new(),
    };
    let start = Instant::now();
    let done = match op.as_str() {
        "get" => random(n)
            .map(|i| assert_eq!(db.get(&key(i)).unwrap().len(), 1))
            .count(),
        "absent" => random(n)
            .map(|i| assert!(db.get(&key(n + i)).unwrap().is_empty()))
            .count(),
        "list" => list(false),
        "list_unordered" => list(true),
        "history" => db.history(false).unwrap().count(),
        "batch" => batches.iter().map(|ops| db.batch(ops).unwrap().len()).sum(),
        "put" => {
            for i in n..n + PUT_KEYS {
                db.put(&key(i), &value(i)).unwrap();
            }
            PUT_KEYS
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let per_second = done as f64 / start.elapsed().as_secs_f64();
    // Closing writes what the indexes hold that their files do not.
    let start = Instant::now();
    drop(db);
    let close_ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "{{\"op\":\"{op}\",\"n\":{n},\"done\":{done},\"per_second\":{per_second:.0},\"close_ms\":{close_ms:.1}}}"
    );
    if let Some(copy) = copy {
        let _ = std::fs::remove_dir_all(copy);
    }
}

/// Copies the folder `from` (a database's files) to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
