//! Times one read operation on a file-backed database of N keys, in a
//! fresh process: for comparing two builds on the same files, interleaved,
//! without writing the database again for every run (`bench` writes its
//! databases each time).
//!
//! The first run writes the database into DIR (N puts one at a time, keys
//! `key/<i mod 100>/<i>` as `bench` writes them); later runs reuse it.
//! Then it opens the database (caches empty, the files in the operating
//! system's page cache) and runs OP once, printing one JSON object with
//! operations per second. OP is one of:
//! - `get`: N gets of random keys that are there;
//! - `absent`: N gets of random keys that are not;
//! - `list`: listing every key in the reference's order;
//! - `list_unordered`: listing every key in the order written;
//! - `history`: walking every write.
//!
//! `cargo run --release -p hyperdb --example op_bench -- /tmp/db-1m 1000000 history`

use std::time::Instant;

use hyperdb::{Db, IterOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: op_bench DIR N get|absent|list|list_unordered|history";
    let [dir, n, op] = args.as_slice() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let n: usize = n.parse().unwrap_or_else(|_| {
        eprintln!("{usage}: N is a number of keys");
        std::process::exit(2);
    });
    let key = |i: usize| format!("key/{}/{i}", i % 100);
    if !std::path::Path::new(dir).exists() {
        let db = Db::open(dir).unwrap();
        for i in 0..n {
            db.put(&key(i), format!("value {i}").as_bytes()).unwrap();
        }
    }
    let db = Db::open(dir).unwrap();
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
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let per_second = done as f64 / start.elapsed().as_secs_f64();
    println!("{{\"op\":\"{op}\",\"n\":{n},\"done\":{done},\"per_second\":{per_second:.0}}}");
}
