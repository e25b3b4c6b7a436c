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
/// the order they were added. Kept as one sorted list of 16-byte slots, so
/// a decoded node's trie is one allocation and a cached one weighs little.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trie {
    /// Sorted by (position, digit); equal pairs are adjacent and keep
    /// their insertion order.
    slots: Vec<Slot>,
}

/// One pointer of a [`Trie`] with where it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// `position << DIGIT_BITS | digit`: ordered as (position, digit).
    at: u32,
    /// The local feed id (a database has far fewer than 2^32 writers).
    feed: u32,
    seq: u64,
}

/// Bits of [`Slot::at`] that hold the digit: a bucket's digit mask is a
/// 64-bit varint, so digits go up to 63.
const DIGIT_BITS: u32 = 6;

impl Slot {
    fn new(position: u32, digit: u8, ptr: Ptr) -> Self {
        Slot {
            at: at(position, digit),
            feed: u32::try_from(ptr.feed).expect("fewer than 2^32 writers"),
            seq: ptr.seq,
        }
    }

    fn position(self) -> u32 {
        self.at >> DIGIT_BITS
    }

    fn digit(self) -> u8 {
        (self.at & ((1 << DIGIT_BITS) - 1)) as u8
    }

    fn ptr(self) -> Ptr {
        Ptr {
            feed: self.feed as usize,
            seq: self.seq,
        }
    }
}

fn at(position: u32, digit: u8) -> u32 {
    position << DIGIT_BITS | u32::from(digit)
}

/// The pointers of one (position, digit) of a [`Trie`], in the order they
/// were added.
#[derive(Clone, Copy)]
pub struct Ptrs<'a>(&'a [Slot]);

impl<'a> Ptrs<'a> {
    /// How many pointers there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first pointer, if any.
    pub fn first(&self) -> Option<Ptr> {
        self.0.first().map(|s| s.ptr())
    }

    /// Whether `ptr` is one of them.
    pub fn contains(&self, ptr: &Ptr) -> bool {
        self.iter().any(|p| p == *ptr)
    }

    /// The pointers in order.
    pub fn iter(&self) -> PtrIter<'a> {
        PtrIter(self.0.iter())
    }

    /// The pointers after the first `n`.
    pub fn skip(&self, n: usize) -> Ptrs<'a> {
        Ptrs(self.0.get(n..).unwrap_or(&[]))
    }
}

impl<'a> IntoIterator for Ptrs<'a> {
    type Item = Ptr;
    type IntoIter = PtrIter<'a>;

    fn into_iter(self) -> PtrIter<'a> {
        self.iter()
    }
}

/// The pointers of a [`Ptrs`], in order.
#[derive(Clone)]
pub struct PtrIter<'a>(std::slice::Iter<'a, Slot>);

impl Iterator for PtrIter<'_> {
    type Item = Ptr;

    fn next(&mut self) -> Option<Ptr> {
        self.0.next().map(|s| s.ptr())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for PtrIter<'_> {}

impl std::fmt::Debug for Ptrs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq<[Ptr]> for Ptrs<'_> {
    fn eq(&self, other: &[Ptr]) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == *b)
    }
}

impl<const N: usize> PartialEq<&[Ptr; N]> for Ptrs<'_> {
    fn eq(&self, other: &&[Ptr; N]) -> bool {
        *self == other[..]
    }
}

/// Largest path position a trie may hold (a key of 4,096 components).
pub const MAX_POSITION: u64 = 4096 * 32;

thread_local! {
    /// The list [`Trie::decode`] fills before copying it out.
    static SCRATCH: std::cell::RefCell<Vec<Slot>> = Default::default();
}

/// Pointers the scratch list keeps room for between decodings: a huge trie
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
        let lo = at(p, digit.unwrap_or(0));
        let start = self.slots.partition_point(|s| s.at < lo);
        // The slots found are adjacent and the caller walks them all, so
        // counting them costs no more than a second search would.
        let rest = &self.slots[start..];
        let found = match digit {
            Some(_) => rest.iter().take_while(|s| s.at == lo).count(),
            None => rest.iter().take_while(|s| s.position() == p).count(),
        };
        start..start + found
    }

    /// The pointers for `digit` at `position`.
    pub fn get(&self, position: usize, digit: u8) -> Ptrs<'_> {
        Ptrs(&self.slots[self.range(position, Some(digit))])
    }

    /// The digits with pointers at `position`, in ascending order, each
    /// with its pointers.
    pub fn bucket(&self, position: usize) -> impl Iterator<Item = (u8, Ptrs<'_>)> + '_ {
        let mut rest = &self.slots[self.range(position, None)];
        std::iter::from_fn(move || {
            let digit = rest.first()?.digit();
            let n = rest.iter().take_while(|s| s.digit() == digit).count();
            let (these, others) = rest.split_at(n);
            rest = others;
            Some((digit, Ptrs(these)))
        })
    }

    /// Positions that hold pointers, ascending, without repeats.
    pub fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        let mut last = None;
        self.slots.iter().filter_map(move |s| {
            let p = s.position();
            if last == Some(p) {
                return None;
            }
            last = Some(p);
            Some(p as usize)
        })
    }

    /// Bytes the trie's list takes on the heap (with the allocator's
    /// header), for [`crate::Node::memory`].
    pub fn memory(&self) -> usize {
        match self.slots.capacity() {
            0 => 0,
            n => n * std::mem::size_of::<Slot>() + 16,
        }
    }

    /// An empty trie with room for `pointers` pointers.
    pub fn with_capacity(pointers: usize) -> Self {
        Trie {
            slots: Vec::with_capacity(pointers),
        }
    }

    /// How many pointers the trie holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the trie holds no pointer.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a pointer for `digit` at `position` unless it is there already.
    pub fn push(&mut self, position: usize, digit: u8, ptr: Ptr) {
        let slot = Slot::new(position as u32, digit, ptr);
        // A put copies pointers position by position, so most go at the
        // end, past any slot they could repeat.
        let range = match self.slots.last() {
            Some(last) if last.at >= slot.at => self.range(position, Some(digit)),
            _ => self.slots.len()..self.slots.len(),
        };
        if self.slots[range.clone()].contains(&slot) {
            return;
        }
        self.slots.insert(range.end, slot);
    }

    /// Encodes the trie, numbering feeds with `map` (local id → writer's
    /// numbering).
    pub fn encode(&self, map: &[Option<usize>]) -> Vec<u8> {
        // Room for every varint at its usual size (pointers' seqs up to
        // 2^21 take three bytes), so the list seldom grows.
        let mut out = Vec::with_capacity(self.slots.len() * 6 + 8);
        self.encode_to(map, &mut out);
        out
    }

    /// [`Trie::encode`] at the end of `out` (a buffer its caller reuses).
    pub(crate) fn encode_to(&self, map: &[Option<usize>], out: &mut Vec<u8>) {
        // One pass over the sorted slots: each position's run of them, its
        // digits ascending, each digit's pointers side by side.
        let mut rest = &self.slots[..];
        while let Some(first) = rest.first() {
            let position = first.position();
            let n = rest.iter().take_while(|s| s.position() == position).count();
            let (run, others) = rest.split_at(n);
            rest = others;
            varint::encode(u64::from(position), out);
            let bits = run.iter().fold(0u64, |bits, s| bits | 1 << s.digit());
            varint::encode(bits, out);
            for (j, slot) in run.iter().enumerate() {
                let local = slot.feed as usize;
                let feed = map.get(local).copied().flatten().unwrap_or(local);
                let more = u64::from(run.get(j + 1).is_some_and(|next| next.at == slot.at));
                varint::encode(feed as u64 * 2 + more, out);
                varint::encode(slot.seq, out);
            }
        }
    }

    /// Decodes a trie, mapping the writer's feed numbers to local ids with
    /// `map`.
    pub fn decode(buf: &[u8], map: &[usize]) -> Result<Trie, TrieError> {
        // One pass fills this thread's scratch list, and the trie takes a
        // copy at its final size: a decoded entry may stay cached, and the
        // cache weighs what it allocates.
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            let sorted = walk(buf, map, |position, ptr| {
                if let Some((digit, ptr)) = ptr {
                    scratch.push(Slot::new(position, digit, ptr));
                }
            });
            let trie = match sorted {
                Ok(true) => Ok(Trie {
                    slots: scratch.as_slice().into(),
                }),
                Ok(false) => Ok(Self::decode_unordered(buf, map)),
                Err(e) => Err(e),
            };
            if scratch.capacity() > SCRATCH_KEEP {
                *scratch = Vec::new();
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
                trie.slots.push(Slot::new(position, digit, ptr));
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
        while bits != 0 {
            // The digits present, from the lowest bit set.
            let digit = bits.trailing_zeros() as u8;
            bits &= bits - 1;
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
        assert_eq!(back.slots.capacity(), 10_000, "copied out at its size");
        SCRATCH.with_borrow(|s| assert!(s.capacity() <= SCRATCH_KEEP));
        // The thread's scratch serves the next decoding as before.
        let small = Trie::decode(&[5, 0b1, 0, 1], &[0]).unwrap();
        assert_eq!(small.get(5, 0), &[Ptr { feed: 0, seq: 1 }]);
    }

    #[test]
    fn the_largest_positions_and_digits_keep_their_order() {
        let max = MAX_POSITION as usize;
        let mut trie = Trie::new();
        trie.push(
            max,
            63,
            Ptr {
                feed: 2,
                seq: u64::MAX,
            },
        );
        trie.push(max, 0, Ptr { feed: 1, seq: 1 });
        trie.push(0, 63, Ptr { feed: 0, seq: 2 });
        trie.push(max - 1, 4, Ptr { feed: 0, seq: 3 });
        assert_eq!(trie.positions().collect::<Vec<_>>(), vec![0, max - 1, max]);
        let digits: Vec<u8> = trie.bucket(max).map(|(d, _)| d).collect();
        assert_eq!(digits, vec![0, 63]);
        assert_eq!(
            trie.get(max, 63),
            &[Ptr {
                feed: 2,
                seq: u64::MAX
            }]
        );
        let back = Trie::decode(&trie.encode(&[Some(0), Some(1), Some(2)]), &[0, 1, 2]).unwrap();
        assert_eq!(back, trie);
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
