//! The workload the benchmarks share: key `i` is `key/<i mod 100>/<i>`
//! (three components, a hundred folders), its value `value <i>`, as
//! `interop/bench-db.js` and `scripts/hyperbee/bench.js` write them.

// Each benchmark uses what it needs of this.
#![allow(dead_code)]

use hyperdb::Op;

/// Key `i`.
pub fn key(i: usize) -> String {
    format!("key/{}/{i}", i % 100)
}

/// The value of key `i`.
pub fn value(i: usize) -> Vec<u8> {
    format!("value {i}").into_bytes()
}

/// Puts of keys `keys` with their values, for one batch.
pub fn puts(keys: impl IntoIterator<Item = usize>) -> Vec<Op> {
    keys.into_iter()
        .map(|i| Op::Put {
            key: key(i),
            value: value(i),
        })
        .collect()
}
