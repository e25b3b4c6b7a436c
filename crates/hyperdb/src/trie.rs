//! The trie stored in every entry, and its encoding (`lib/trie-encoding.js`).
//!
//! `trie[i][v]` lists the nodes to jump to when a lookup's path has digit
//! `v` at position `i` where this node's path differs: pointers to closer
//! nodes. The encoding is a sequence of `varint(i)`, a varint bitmask of the
//! digits present, then for each present digit its pointers as
//! `varint(feed << 1 | more)`, `varint(seq)`, where `feed` is in the writer's
//! own numbering of feeds.

use hypercore_feed::varint;

/// A pointer to an entry: local feed id and seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ptr {
    /// Index of the feed in the database's list of writers.
    pub feed: usize,
    /// Seq of the entry in that feed.
    pub seq: u64,
}

/// Pointers for each digit at one position.
pub type Bucket = Vec<Option<Vec<Ptr>>>;

/// A node's trie: a bucket per path position, most of them absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trie {
    buckets: Vec<Option<Bucket>>,
}

/// Largest path position a trie may hold (a key of 4,096 components).
pub const MAX_POSITION: u64 = 4096 * 32;

/// Why trie bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrieError {
    /// The bytes end in the middle of a varint.
    #[error("trie is truncated")]
    Truncated,
    /// A position beyond any real key's path.
    #[error("trie position {0} is out of range")]
    PositionOutOfRange(u64),
    /// A pointer names a feed the writer never listed.
    #[error("trie points at feed {0}, which the writer never listed")]
    UnknownFeed(u64),
}

impl Trie {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pointers for `digit` at `position`.
    pub fn get(&self, position: usize, digit: u8) -> &[Ptr] {
        self.buckets
            .get(position)
            .and_then(|b| b.as_ref())
            .and_then(|b| b.get(digit as usize))
            .and_then(|v| v.as_deref())
            .unwrap_or(&[])
    }

    /// The bucket at `position`.
    pub fn bucket(&self, position: usize) -> Option<&Bucket> {
        self.buckets.get(position).and_then(|b| b.as_ref())
    }

    /// Number of positions (the highest present + 1).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no position holds anything.
    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(|b| b.is_none())
    }

    /// Positions with a bucket, and the buckets.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Bucket)> {
        self.buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.as_ref().map(|b| (i, b)))
    }

    /// Adds a pointer for `digit` at `position` unless it is there already.
    pub fn push(&mut self, position: usize, digit: u8, ptr: Ptr) {
        if self.buckets.len() <= position {
            self.buckets.resize_with(position + 1, || None);
        }
        let bucket = self.buckets[position].get_or_insert_with(Vec::new);
        let d = digit as usize;
        if bucket.len() <= d {
            bucket.resize_with(d + 1, || None);
        }
        let values = bucket[d].get_or_insert_with(Vec::new);
        if !values.contains(&ptr) {
            values.push(ptr);
        }
    }

    /// Encodes the trie, numbering feeds with `map` (local id → writer's
    /// numbering).
    pub fn encode(&self, map: &[Option<usize>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, bucket) in self.iter() {
            varint::encode(i as u64, &mut out);
            let mut bits = 0u64;
            for (d, values) in bucket.iter().enumerate() {
                if values.as_ref().is_some_and(|v| !v.is_empty()) {
                    bits |= 1 << d;
                }
            }
            varint::encode(bits, &mut out);
            for values in bucket.iter().flatten() {
                for (j, ptr) in values.iter().enumerate() {
                    let feed = map.get(ptr.feed).copied().flatten().unwrap_or(ptr.feed);
                    let more = u64::from(j + 1 < values.len());
                    varint::encode(feed as u64 * 2 + more, &mut out);
                    varint::encode(ptr.seq, &mut out);
                }
            }
        }
        out
    }

    /// Decodes a trie, mapping the writer's feed numbers to local ids with
    /// `map`.
    pub fn decode(mut buf: &[u8], map: &[usize]) -> Result<Trie, TrieError> {
        let mut trie = Trie::new();
        let next = |buf: &mut &[u8]| -> Result<u64, TrieError> {
            let (v, used) = varint::decode(buf).ok_or(TrieError::Truncated)?;
            *buf = &buf[used..];
            Ok(v)
        };
        while !buf.is_empty() {
            let position = next(&mut buf)?;
            if position > MAX_POSITION {
                return Err(TrieError::PositionOutOfRange(position));
            }
            let position = position as usize;
            if trie.buckets.len() <= position {
                trie.buckets.resize_with(position + 1, || None);
            }
            let mut bucket: Bucket = Vec::new();
            let mut bits = next(&mut buf)?;
            let mut digit = 0;
            while bits != 0 {
                if bits & 1 == 1 {
                    let mut values = Vec::new();
                    loop {
                        let feed = next(&mut buf)?;
                        let seq = next(&mut buf)?;
                        let more = feed & 1 == 1;
                        let feed = feed >> 1;
                        let local = map
                            .get(feed as usize)
                            .copied()
                            .ok_or(TrieError::UnknownFeed(feed))?;
                        values.push(Ptr { feed: local, seq });
                        if !more {
                            break;
                        }
                    }
                    if bucket.len() <= digit {
                        bucket.resize_with(digit + 1, || None);
                    }
                    bucket[digit] = Some(values);
                }
                bits >>= 1;
                digit += 1;
            }
            trie.buckets[position] = Some(bucket);
        }
        Ok(trie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_feed_numbering() {
        let mut trie = Trie::new();
        trie.push(0, 1, Ptr { feed: 0, seq: 1 });
        trie.push(0, 1, Ptr { feed: 1, seq: 300 });
        trie.push(0, 3, Ptr { feed: 1, seq: 2 });
        trie.push(33, 4, Ptr { feed: 0, seq: 7 });
        trie.push(33, 4, Ptr { feed: 0, seq: 7 });
        // Local ids 0 and 1 are the writer's 1 and 0.
        let bytes = trie.encode(&[Some(1), Some(0)]);
        let back = Trie::decode(&bytes, &[1, 0]).unwrap();
        assert_eq!(back, trie);
        assert_eq!(back.get(33, 4), &[Ptr { feed: 0, seq: 7 }]);
        assert_eq!(back.get(0, 1).len(), 2);
        assert!(back.get(5, 0).is_empty());
    }

    #[test]
    fn matches_the_reference_bytes() {
        // The seed example: db1's second entry points at (feed 0, seq 1)
        // under digit 1 at position 32.
        let mut trie = Trie::new();
        trie.push(32, 1, Ptr { feed: 0, seq: 1 });
        assert_eq!(trie.encode(&[Some(0)]), vec![32, 0b10, 0, 1]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(Trie::decode(&[0x80], &[0]), Err(TrieError::Truncated));
        assert_eq!(
            Trie::decode(&[1, 1, 4, 1], &[0]),
            Err(TrieError::UnknownFeed(2))
        );
        assert!(matches!(
            Trie::decode(&[0xff, 0xff, 0xff, 0x7f], &[0]),
            Err(TrieError::PositionOutOfRange(_))
        ));
    }
}
