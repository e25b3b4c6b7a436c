//! put, batch put and get on a file-backed database of 100,000 keys.
//!
//! Run with `cargo bench -p hyperdb --bench db`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hyperdb::{Db, Op};
use workload::{key, puts};

#[path = "../examples/workload/mod.rs"]
mod workload;

const KEYS: usize = 100_000;

fn filled(dir: &std::path::Path) -> Db {
    let db = Db::open(dir).unwrap();
    for from in (0..KEYS).step_by(10_000) {
        db.batch(&puts(from..from + 10_000)).unwrap();
    }
    db
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let db = filled(&tmp.path().join("db"));
    let mut group = c.benchmark_group("db of 100,000 keys");

    let mut n = KEYS;
    group.throughput(Throughput::Elements(1));
    group.bench_function("put", |b| {
        b.iter(|| {
            n += 1;
            db.put(&key(n), b"a new value").unwrap()
        })
    });

    group.throughput(Throughput::Elements(1000));
    group.bench_function("batch of 1,000 puts", |b| {
        b.iter_batched(
            || {
                (0..1000)
                    .map(|_| {
                        n += 1;
                        Op::Put {
                            key: key(n),
                            value: b"batched value".to_vec(),
                        }
                    })
                    .collect::<Vec<_>>()
            },
            |ops| db.batch(&ops).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let mut x = 7usize;
    group.throughput(Throughput::Elements(1));
    group.bench_function("get", |b| {
        b.iter(|| {
            x = (x * 1103515245 + 12345) % (1 << 31);
            let values = db.get(&key(x % KEYS)).unwrap();
            assert_eq!(values.len(), 1);
            values
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
