//! The cost of durability: puts and batched puts per second with
//! `Durability::Buffered` and `Durability::Fsync`, in the same run (the
//! modes alternate, round after round, on fresh folders in the system's
//! temporary folder), then the medians and their ratio.
//!
//! `cargo run --release -p hyperdb --example durability -- [PUTS] [ROUNDS]`
//! (defaults: 2,000 puts, and as many entries in batches of 100, 5 rounds).

use std::time::Instant;

use hyperdb::{Db, Durability, Op, OpenOptions};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let tmp = std::env::temp_dir().join(format!("hyperdb-durability-{}", std::process::id()));
    let modes = [Durability::Buffered, Durability::Fsync];
    let mut puts = [Vec::new(), Vec::new()];
    let mut batches = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (m, durability) in modes.into_iter().enumerate() {
            let _ = std::fs::remove_dir_all(&tmp);
            let options = OpenOptions {
                durability,
                ..Default::default()
            };
            let db = Db::open_with(tmp.join("put"), options.clone()).unwrap();
            let start = Instant::now();
            for i in 0..n {
                db.put(&format!("key/{i}"), b"a value of some length")
                    .unwrap();
            }
            puts[m].push(n as f64 / start.elapsed().as_secs_f64());

            let db = Db::open_with(tmp.join("batch"), options).unwrap();
            let start = Instant::now();
            for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
                let ops: Vec<Op> = chunk
                    .iter()
                    .map(|i| Op::Put {
                        key: format!("key/{i}"),
                        value: b"a value of some length".to_vec(),
                    })
                    .collect();
                db.batch(&ops).unwrap();
            }
            batches[m].push(n as f64 / start.elapsed().as_secs_f64());
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let (put, batch) = (puts.map(median), batches.map(median));
    println!("medians of {rounds} rounds, {n} puts and {n} entries in batches of 100 per round");
    println!("| durability | put/s | batched entries/s |");
    println!("| --- | --- | --- |");
    for (m, name) in ["buffered", "fsync"].into_iter().enumerate() {
        println!("| {name} | {:.0} | {:.0} |", put[m], batch[m]);
    }
    println!(
        "| buffered / fsync | {:.1}x | {:.1}x |",
        put[0] / put[1],
        batch[0] / batch[1]
    );
}
