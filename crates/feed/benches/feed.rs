//! Append and read throughput of a file-backed feed (100-byte blocks).
//!
//! Run with `cargo bench -p hypercore-feed`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hypercore_feed::{Feed, FeedOptions, FileStorage};

fn bench(c: &mut Criterion) {
    let block = [7u8; 100];
    let mut group = c.benchmark_group("feed");

    let dir = tempfile::tempdir().unwrap();
    let mut feed = Feed::open(
        FileStorage::new(dir.path().join("single")),
        FeedOptions::default(),
    )
    .unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("append one 100-byte block", |b| {
        b.iter(|| feed.append(&block).unwrap())
    });

    let mut feed = Feed::open(
        FileStorage::new(dir.path().join("batch")),
        FeedOptions::default(),
    )
    .unwrap();
    let batch = vec![block; 1000];
    group.throughput(Throughput::Elements(1000));
    group.bench_function("append a batch of 1,000 blocks", |b| {
        b.iter(|| feed.append_batch(&batch).unwrap())
    });

    let mut feed = Feed::open(
        FileStorage::new(dir.path().join("get")),
        FeedOptions::default(),
    )
    .unwrap();
    for _ in 0..100 {
        feed.append_batch(&batch).unwrap();
    }
    let mut i = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("get (verified) from 100,000 blocks", |b| {
        b.iter_batched(
            || {
                i = (i * 7919 + 13) % 100_000;
                i
            },
            |i| feed.get(i).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
