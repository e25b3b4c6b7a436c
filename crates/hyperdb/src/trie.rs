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

/// A node's trie: for each (position, digit) with pointers, the pointers in
/// the order they were added. Kept as one sorted list, so decoding a node
/// allocates once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trie {
    /// (position, digit) of each pointer, sorted; equal pairs are adjacent
    /// and keep their insertion order.
    slots: Vec<(u32, u8)>,
    ptrs: Vec<Ptr>,
}

/// Largest path position a trie may hold (a key of 4,096 components).
pub const MAX_POSITION: u64 = 4096 * 32;

thread_local! {
    /// Lists [`Trie::decode`] fills before copying them out.
    static SCRATCH: std::cell::RefCell<Trie> = Default::default();
}

/// Pointers the scratch lists keep room for between decodings: a huge trie
/// from a peer does not pin its size in every thread that read it.
const SCRATCH_KEEP: usize = 4096;

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

    fn range(&self, position: usize, digit: Option<u8>) -> std::ops::Range<usize> {
        let p = position as u32;
        let lo = self
            .slots
            .partition_point(|&(sp, sd)| (sp, sd) < (p, digit.unwrap_or(0)));
        // The slots found are adjacent and the caller walks them all, so
        // counting them costs no more than a second search would.
        let rest = &self.slots[lo..];
        let found = match digit {
            Some(d) => rest.iter().take_while(|&&slot| slot == (p, d)).count(),
            None => rest.iter().take_while(|&&(sp, _)| sp == p).count(),
        };
        lo..lo + found
    }

    /// The pointers for `digit` at `position`.
    pub fn get(&self, position: usize, digit: u8) -> &[Ptr] {
        &self.ptrs[self.range(position, Some(digit))]
    }

    /// The digits with pointers at `position`, in ascending order, each
    /// with its pointers.
    pub fn bucket(&self, position: usize) -> impl Iterator<Item = (u8, &[Ptr])> + '_ {
        let range = self.range(position, None);
        let mut i = range.start;
        std::iter::from_fn(move || {
            if i >= range.end {
                return None;
            }
            let digit = self.slots[i].1;
            let start = i;
            while i < range.end && self.slots[i].1 == digit {
                i += 1;
            }
            Some((digit, &self.ptrs[start..i]))
        })
    }

    /// Positions that hold pointers, ascending, without repeats.
    pub fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        let mut last = None;
        self.slots.iter().filter_map(move |&(p, _)| {
            if last == Some(p) {
                return None;
            }
            last = Some(p);
            Some(p as usize)
        })
    }

    /// Bytes the trie's lists take on the heap (with the allocator's
    /// headers), for [`crate::Node::memory`].
    pub fn memory(&self) -> usize {
        let list = |bytes: usize| if bytes == 0 { 0 } else { bytes + 16 };
        list(self.slots.capacity() * std::mem::size_of::<(u32, u8)>())
            + list(self.ptrs.capacity() * std::mem::size_of::<Ptr>())
    }

    /// An empty trie with room for `pointers` pointers.
    pub fn with_capacity(pointers: usize) -> Self {
        Trie {
            slots: Vec::with_capacity(pointers),
            ptrs: Vec::with_capacity(pointers),
        }
    }

    /// How many pointers the trie holds.
    pub fn len(&self) -> usize {
        self.ptrs.len()
    }

    /// Whether the trie holds no pointer.
    pub fn is_empty(&self) -> bool {
        self.ptrs.is_empty()
    }

    /// Adds a pointer for `digit` at `position` unless it is there already.
    pub fn push(&mut self, position: usize, digit: u8, ptr: Ptr) {
        // A put copies pointers position by position, so most go at the
        // end, past any slot they could repeat.
        let range = match self.slots.last() {
            Some(&last) if last >= (position as u32, digit) => self.range(position, Some(digit)),
            _ => self.slots.len()..self.slots.len(),
        };
        if self.ptrs[range.clone()].contains(&ptr) {
            return;
        }
        self.slots.insert(range.end, (position as u32, digit));
        self.ptrs.insert(range.end, ptr);
    }

    /// Encodes the trie, numbering feeds with `map` (local id → writer's
    /// numbering).
    pub fn encode(&self, map: &[Option<usize>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ptrs.len() * 4);
        // One pass over the sorted slots: each position's run of them, its
        // digits ascending, each digit's pointers side by side.
        let mut start = 0;
        while let Some(&(position, _)) = self.slots.get(start) {
            let run = &self.slots[start..];
            let end = start + run.iter().take_while(|&&(p, _)| p == position).count();
            varint::encode(u64::from(position), &mut out);
            let bits = self.slots[start..end]
                .iter()
                .fold(0u64, |bits, &(_, digit)| bits | 1 << digit);
            varint::encode(bits, &mut out);
            for j in start..end {
                let ptr = self.ptrs[j];
                let feed = map.get(ptr.feed).copied().flatten().unwrap_or(ptr.feed);
                let more = u64::from(j + 1 < end && self.slots[j + 1].1 == self.slots[j].1);
                varint::encode(feed as u64 * 2 + more, &mut out);
                varint::encode(ptr.seq, &mut out);
            }
            start = end;
        }
        out
    }

    /// Decodes a trie, mapping the writer's feed numbers to local ids with
    /// `map`.
    pub fn decode(buf: &[u8], map: &[usize]) -> Result<Trie, TrieError> {
        // One pass fills this thread's scratch lists, and the trie takes
        // copies at their final size: a decoded entry may stay cached, and
        // the cache weighs what it allocates.
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.slots.clear();
            scratch.ptrs.clear();
            let sorted = walk(buf, map, |position, ptr| {
                if let Some((digit, ptr)) = ptr {
                    scratch.slots.push((position, digit));
                    scratch.ptrs.push(ptr);
                }
            });
            let trie = match sorted {
                Ok(true) => Ok(Trie {
                    slots: scratch.slots.as_slice().into(),
                    ptrs: scratch.ptrs.as_slice().into(),
                }),
                Ok(false) => Ok(Self::decode_unordered(buf, map)),
                Err(e) => Err(e),
            };
            if scratch.ptrs.capacity() > SCRATCH_KEEP {
                *scratch = Trie::default();
            }
            trie
        })
    }

    /// [`Trie::decode`] of checked bytes whose positions do not ascend
    /// (no writer stores them so): as in the reference, a position written
    /// again replaces what was there, even with no pointers.
    fn decode_unordered(buf: &[u8], map: &[usize]) -> Trie {
        let mut buckets: std::collections::BTreeMap<u32, Vec<(u8, Ptr)>> = Default::default();
        let _ = walk(buf, map, |position, ptr| match ptr {
            None => {
                buckets.insert(position, Vec::new());
            }
            Some(pointer) => buckets.entry(position).or_default().push(pointer),
        });
        let mut trie = Trie::new();
        for (position, bucket) in buckets {
            for (digit, ptr) in bucket {
                trie.slots.push((position, digit));
                trie.ptrs.push(ptr);
            }
        }
        trie
    }
}

/// Reads trie bytes in the order stored, calling `each` with a position and
/// `None` where its bucket starts, then with each of its pointers (digit and
/// local pointer); whether positions strictly ascend.
fn walk(
    mut buf: &[u8],
    map: &[usize],
    mut each: impl FnMut(u32, Option<(u8, Ptr)>),
) -> Result<bool, TrieError> {
    let next = |buf: &mut &[u8]| -> Result<u64, TrieError> {
        let (v, used) = varint::decode(buf).ok_or(TrieError::Truncated)?;
        *buf = &buf[used..];
        Ok(v)
    };
    let mut sorted = true;
    let mut last: Option<u32> = None;
    while !buf.is_empty() {
        let position = next(&mut buf)?;
        if position > MAX_POSITION {
            return Err(TrieError::PositionOutOfRange(position));
        }
        let position = position as u32;
        if last.is_some_and(|l| position <= l) {
            sorted = false;
        }
        last = Some(position);
        each(position, None);
        let mut bits = next(&mut buf)?;
        let mut digit = 0u8;
        while bits != 0 {
            if bits & 1 == 1 {
                loop {
                    let feed = next(&mut buf)?;
                    let seq = next(&mut buf)?;
                    let more = feed & 1 == 1;
                    let feed = feed >> 1;
                    let local = map
                        .get(feed as usize)
                        .copied()
                        .ok_or(TrieError::UnknownFeed(feed))?;
                    each(position, Some((digit, Ptr { feed: local, seq })));
                    if !more {
                        break;
                    }
                }
            }
            bits >>= 1;
            digit += 1;
        }
    }
    Ok(sorted)
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
    fn a_huge_trie_decodes_and_its_scratch_room_is_let_go() {
        let mut trie = Trie::new();
        for i in 0..10_000u64 {
            trie.push((i / 3) as usize, (i % 3) as u8, Ptr { feed: 0, seq: i });
        }
        let back = Trie::decode(&trie.encode(&[Some(0)]), &[0]).unwrap();
        assert_eq!(back, trie);
        assert_eq!(back.ptrs.capacity(), 10_000, "copied out at its size");
        SCRATCH.with_borrow(|s| assert!(s.ptrs.capacity() <= SCRATCH_KEEP));
        // The thread's scratch serves the next decoding as before.
        let small = Trie::decode(&[5, 0b1, 0, 1], &[0]).unwrap();
        assert_eq!(small.get(5, 0), &[Ptr { feed: 0, seq: 1 }]);
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
    fn a_repeated_position_replaces_the_earlier_bucket() {
        // Position 5 with a pointer, 3 with one, 5 again with another, 3
        // again with none: as the reference decodes it (`trie[i] = []`),
        // only the last bucket of each position is left.
        let bytes = [5, 0b1, 0, 1, 3, 0b10, 0, 2, 5, 0b100, 0, 3, 3, 0];
        let trie = Trie::decode(&bytes, &[0]).unwrap();
        assert_eq!(trie.positions().collect::<Vec<_>>(), vec![5]);
        assert_eq!(trie.get(5, 2), &[Ptr { feed: 0, seq: 3 }]);
        assert!(trie.get(5, 0).is_empty());
        assert!(trie.get(3, 1).is_empty());
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
