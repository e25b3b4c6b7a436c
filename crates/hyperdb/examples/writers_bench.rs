//! How lookups scale with the number of writers. `W` writers each
//! batch-write their share of `N` keys into their own replica; the owner
//! (writer 0) authorizes every other writer and copies their feeds in.
//! Random gets then run on the owner's folder freshly reopened, first with
//! every writer's head concurrent, then after the owner writes one entry
//! that has seen every writer, then after the owner revokes a writer (so
//! the permission rule decides every answer). Prints one JSON object per
//! state: gets per second, and bytes per entry on disk (every feed's
//! files).
//!
//! `cargo run --release -p hyperdb --example writers_bench -- 100 100000`

use std::path::Path;
use std::time::Instant;

use hyperdb::{local_sync, Db, DbStorage, OpenOptions};
use workload::{key, puts};

mod workload;

fn main() {
    let mut args = std::env::args().skip(1);
    let w: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let w = w.max(1);
    let tmp = std::env::temp_dir().join(format!("hyperdb-writers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);

    let owner = Db::open(tmp.join("owner")).unwrap();
    let writers: Vec<Db> = (1..w)
        .map(|_| {
            Db::open_storage(
                DbStorage::memory(),
                OpenOptions {
                    key: Some(*owner.key()),
                    ..Default::default()
                },
            )
            .unwrap()
        })
        .collect();
    for writer in &writers {
        owner.authorize(writer.local_key()).unwrap();
        local_sync::sync(&owner, writer).unwrap();
    }
    // Writer j writes keys i with i % w == j, a thousand to a batch.
    for (j, db) in std::iter::once(&owner).chain(&writers).enumerate() {
        let mine: Vec<usize> = (j..n).step_by(w).collect();
        for chunk in mine.chunks(1000) {
            db.batch(&puts(chunk.iter().copied())).unwrap();
        }
    }
    for writer in &writers {
        local_sync::copy_feed(writer, &owner, writer.local_key(), None).unwrap();
    }
    drop(writers);
    drop(owner);
    let bytes = folder_bytes(&tmp.join("owner"));
    report(w, n, bytes, "concurrent", gets(&tmp.join("owner"), n, &key));

    let owner = Db::open(tmp.join("owner")).unwrap();
    owner.put("seen/all", b"yes").unwrap();
    drop(owner);
    report(
        w,
        n,
        bytes,
        "seen_by_one",
        gets(&tmp.join("owner"), n, &key),
    );

    // The same after the owner revokes a writer whose entries it has all
    // seen: every lookup now goes through the permission rule.
    if w > 1 {
        let owner = Db::open(tmp.join("owner")).unwrap();
        let revoked = owner.writers()[1].key;
        owner.revoke(&revoked).unwrap();
        drop(owner);
        report(
            w,
            n,
            bytes,
            "one_revoked",
            gets(&tmp.join("owner"), n, &key),
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Random gets per second on the database at `dir`, freshly opened.
fn gets(dir: &Path, n: usize, key: &dyn Fn(usize) -> String) -> f64 {
    let db = Db::open(dir).unwrap();
    let lookups = n.min(50_000);
    let start = Instant::now();
    let mut x = 12345usize;
    for _ in 0..lookups {
        x = (x * 1103515245 + 12345) % (1 << 31);
        let i = x % n;
        assert_eq!(db.get(&key(i)).unwrap().len(), 1, "key {}", key(i));
    }
    lookups as f64 / start.elapsed().as_secs_f64()
}

fn report(w: usize, n: usize, bytes: u64, heads: &str, get: f64) {
    let per_entry = bytes as f64 / n as f64;
    println!(
        "{{\"writers\":{w},\"n\":{n},\"heads\":\"{heads}\",\"get\":{get:.0},\"bytes_per_entry\":{per_entry:.0}}}"
    );
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => folder_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}
