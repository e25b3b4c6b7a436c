//! Replication between two replicas in the same process, by copying blocks
//! with their proofs (each block is verified before it is stored, as it is
//! when it comes over the wire). Useful for tests and tools; over a network
//! use the replication protocol instead.

use hypercore_feed::SparseBits;

use crate::error::Result;
use crate::write::Db;

/// Copies blocks of writer `key`'s feed from `from` to `to`, up to `up_to`
/// blocks (or all). Both replicas must know the writer. Returns how many
/// blocks were copied.
pub fn copy_feed(from: &Db, to: &Db, key: &[u8; 32], up_to: Option<u64>) -> Result<u64> {
    let (Some(src), Some(dst)) = (from.writer_index(key), to.writer_index(key)) else {
        return Ok(0);
    };
    let src_len = from.feed(src).expect("known writer").len();
    let end = up_to.map_or(src_len, |n| n.min(src_len));
    let mut copied = 0;
    let mut sent = SparseBits::new();
    for i in 0..end {
        let target = to.feed(dst).expect("known writer");
        if target.has(i) {
            continue;
        }
        let digest = target.digest(i);
        let source = from.feed(src).expect("known writer");
        if !source.has(i) {
            continue;
        }
        let block = source.get(i)?;
        let proof = source.proof(i, digest, false, &mut sent)?;
        to.with_feed_mut(dst, |feed| feed.put(i, Some(&block), &proof))
            .expect("known writer")?;
        copied += 1;
    }
    Ok(copied)
}

/// Replicates both ways until neither side learns anything more: every feed
/// that both sides count as authorized is copied, and newly discovered
/// writers are followed. Returns the number of blocks copied.
pub fn sync(a: &Db, b: &Db) -> Result<u64> {
    let mut total = 0;
    loop {
        let mut copied = 0;
        copied += sync_one_way(a, b)?;
        copied += sync_one_way(b, a)?;
        total += copied;
        if copied == 0 {
            return Ok(total);
        }
    }
}

fn sync_one_way(from: &Db, to: &Db) -> Result<u64> {
    from.heads()?;
    to.heads()?;
    let mut copied = 0;
    let keys: Vec<[u8; 32]> = to
        .writers()
        .iter()
        .filter(|w| w.authorized)
        .map(|w| w.key)
        .collect();
    for key in keys {
        let shared = from.writers().iter().any(|w| w.key == key && w.authorized);
        if shared {
            copied += copy_feed(from, to, &key, None)?;
        }
    }
    to.heads()?;
    Ok(copied)
}
