//! The `bitfield` file of hypercore 6: three bitfields interleaved in pages.
//!
//! After the 32-byte header the file is a list of 3,584-byte pages. Page `p`
//! holds 1,024 bytes of the *data* bitfield (which blocks are stored, one bit
//! per block, most significant bit first), then 2,048 bytes of the *tree*
//! bitfield (which merkle tree nodes are stored, one bit per node), then 512
//! bytes of the *index*: a flat tree of 2-bit summaries of the data bitfield
//! (`11` all set, `00` none, `01` some) that lets a reader skip full or empty
//! regions. Writers rewrite whole pages, and the exact bytes depend on how the
//! index is updated, so this module follows hypercore 6's algorithm step for
//! step: the same operations give the same file.

use crate::flat;

/// Size of one page of the bitfield file.
pub const PAGE_SIZE: usize = 3584;
const DATA_PAGE: u64 = 1024;
const TREE_PAGE: u64 = 2048;
const INDEX_PAGE: u64 = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Data = 0,
    Tree = 1,
    Index = 2,
}

impl View {
    fn page_size(self) -> u64 {
        match self {
            View::Data => DATA_PAGE,
            View::Tree => TREE_PAGE,
            View::Index => INDEX_PAGE,
        }
    }

    fn page_offset(self) -> usize {
        match self {
            View::Data => 0,
            View::Tree => DATA_PAGE as usize,
            View::Index => (DATA_PAGE + TREE_PAGE) as usize,
        }
    }
}

const INDEX_UPDATE_MASK: [u8; 4] = [63, 207, 243, 252];
const INDEX_ITERATE_MASK: [u8; 4] = [0, 192, 240, 252];
const DATA_ITERATE_MASK: [u8; 8] = [128, 192, 224, 240, 248, 252, 254, 255];
const DATA_UPDATE_MASK: [u8; 8] = [127, 191, 223, 239, 247, 251, 253, 254];

fn map_parent_right(byte: u8) -> u8 {
    let squash = |n: u8| match n {
        15 => 3,
        0 => 0,
        _ => 1,
    };
    (squash(byte >> 4) << 2) | squash(byte & 15)
}

fn map_parent_left(byte: u8) -> u8 {
    map_parent_right(byte) << 4
}

/// Position of the first zero bit of a byte (most significant first), or
/// `None` for 255.
fn next_data_zero_bit(byte: u8) -> Option<u32> {
    if byte == 255 {
        None
    } else {
        Some((!byte).leading_zeros())
    }
}

fn next_index_zero_bit(byte: u8) -> Option<u32> {
    next_data_zero_bit(byte).map(|b| b / 2)
}

fn index_value(byte: u8) -> u8 {
    match byte {
        255 => 192,
        0 => 0,
        _ => 64,
    }
}

/// Anything that answers "is bit `i` set" and can set bits: the tree bits of
/// a [`Bitfield`], or a [`SparseBits`] that records what a remote peer has.
pub trait Bits {
    /// Whether bit `i` is set.
    fn get(&self, i: u64) -> bool;
    /// Sets or clears bit `i`; true when that changed it.
    fn set(&mut self, i: u64, value: bool) -> bool;
    /// Number of bits the set covers so far (a multiple of 8).
    fn bit_len(&self) -> u64;
}

/// A growable set of bits in memory.
#[derive(Clone, Debug, Default)]
pub struct SparseBits {
    bytes: Vec<u8>,
}

impl SparseBits {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Bits for SparseBits {
    fn get(&self, i: u64) -> bool {
        let byte = (i / 8) as usize;
        self.bytes
            .get(byte)
            .is_some_and(|b| b & (128 >> (i & 7)) != 0)
    }

    fn set(&mut self, i: u64, value: bool) -> bool {
        let byte = usize::try_from(i / 8).expect("bit index fits in memory");
        let mask = 128u8 >> (i & 7);
        if byte >= self.bytes.len() {
            if !value {
                return false;
            }
            self.bytes.resize(byte + 1, 0);
        }
        let old = self.bytes[byte];
        let new = if value { old | mask } else { old & !mask };
        self.bytes[byte] = new;
        old != new
    }

    fn bit_len(&self) -> u64 {
        8 * self.bytes.len() as u64
    }
}

type Page = Box<[u8; PAGE_SIZE]>;

/// The three bitfields of a feed, page for page as hypercore 6 keeps them.
#[derive(Clone, Debug, Default)]
pub struct Bitfield {
    pages: Vec<Option<Page>>,
    /// Byte length of each view (data, tree, index), as the reference tracks it.
    byte_lengths: [u64; 3],
    dirty: std::collections::BTreeSet<usize>,
}

impl Bitfield {
    /// An empty bitfield.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bitfield stored in a file's pages (the bytes after the header). A
    /// partial last page is padded with zeros.
    pub fn from_pages(bytes: &[u8]) -> Self {
        let mut pages = Vec::with_capacity(bytes.len().div_ceil(PAGE_SIZE));
        for chunk in bytes.chunks(PAGE_SIZE) {
            if chunk.iter().all(|&b| b == 0) {
                pages.push(None);
            } else {
                let mut page: Page = Box::new([0; PAGE_SIZE]);
                page[..chunk.len()].copy_from_slice(chunk);
                pages.push(Some(page));
            }
        }
        let n = pages.len() as u64;
        Bitfield {
            byte_lengths: [n * DATA_PAGE, n * TREE_PAGE, n * INDEX_PAGE],
            pages,
            dirty: Default::default(),
        }
    }

    /// Pages changed since the last call, as (byte offset after the header,
    /// page bytes). Hypercore writes whole pages.
    pub fn take_dirty_pages(&mut self) -> Vec<(u64, Vec<u8>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|p| {
                let bytes = match &self.pages[p] {
                    Some(page) => page.to_vec(),
                    None => vec![0; PAGE_SIZE],
                };
                ((p * PAGE_SIZE) as u64, bytes)
            })
            .collect()
    }

    /// Whether pages wait to be written.
    pub fn has_dirty_pages(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Every page, as (byte offset after the header, page bytes).
    pub fn all_pages(&self) -> Vec<(u64, Vec<u8>)> {
        self.pages
            .iter()
            .enumerate()
            .map(|(p, page)| {
                let bytes = match page {
                    Some(page) => page.to_vec(),
                    None => vec![0; PAGE_SIZE],
                };
                ((p * PAGE_SIZE) as u64, bytes)
            })
            .collect()
    }

    /// How many of the blocks in `start..end` are marked stored, counted
    /// from the data bits alone (the index is not consulted, nor changed).
    pub fn count(&self, start: u64, end: u64) -> u64 {
        let mut total = 0;
        let mut i = start;
        while i < end && !i.is_multiple_of(8) {
            total += u64::from(self.get(i));
            i += 1;
        }
        while i + 8 <= end {
            total += u64::from(self.byte(View::Data, i / 8).count_ones());
            i += 8;
        }
        while i < end {
            total += u64::from(self.get(i));
            i += 1;
        }
        total
    }

    fn byte(&self, view: View, i: u64) -> u8 {
        let size = view.page_size();
        let page = (i / size) as usize;
        match self.pages.get(page) {
            Some(Some(p)) => p[(i % size) as usize + view.page_offset()],
            _ => 0,
        }
    }

    fn set_byte(&mut self, view: View, i: u64, b: u8) -> bool {
        let size = view.page_size();
        let page_index = usize::try_from(i / size).expect("bitfield page fits in memory");
        if page_index >= self.pages.len() {
            self.pages.resize_with(page_index + 1, || None);
        }
        let page = self.pages[page_index].get_or_insert_with(|| Box::new([0; PAGE_SIZE]));
        let o = (i % size) as usize + view.page_offset();
        if page[o] == b {
            return false;
        }
        page[o] = b;
        let len = &mut self.byte_lengths[view as usize];
        if i >= *len {
            *len = i + 1;
        }
        self.dirty.insert(page_index);
        true
    }

    fn bit_len(&self, view: View) -> u64 {
        8 * self.byte_lengths[view as usize]
    }

    /// Number of bits the data bitfield covers so far.
    pub fn data_len(&self) -> u64 {
        self.bit_len(View::Data)
    }

    /// Whether block `i` is stored.
    pub fn get(&self, i: u64) -> bool {
        self.byte(View::Data, i / 8) & (128 >> (i & 7)) != 0
    }

    /// Marks block `i` as stored or not; true when that changed anything.
    pub fn set(&mut self, i: u64, value: bool) -> bool {
        let o = (i & 7) as usize;
        let byte_index = i / 8;
        let old = self.byte(View::Data, byte_index);
        let v = if value {
            old | (128 >> o)
        } else {
            old & DATA_UPDATE_MASK[o]
        };
        if !self.set_byte(View::Data, byte_index, v) {
            return false;
        }
        self.set_index(byte_index, v);
        true
    }

    fn set_index(&mut self, data_byte: u64, value: u8) {
        let o = (data_byte & 3) as usize;
        let start = 2 * (data_byte / 4);
        let mut byte = (self.byte(View::Index, start) & INDEX_UPDATE_MASK[o])
            | (index_value(value) >> (2 * o));
        let len = self.bit_len(View::Index);
        let max_length = self.pages.len() as u64 * INDEX_PAGE;
        let mut ite = flat::Iterator::new(start);
        while ite.index < max_length && self.set_byte(View::Index, ite.index, byte) {
            let sibling = self.byte(View::Index, ite.sibling_index());
            byte = if ite.is_left() {
                map_parent_left(byte) | map_parent_right(sibling)
            } else {
                map_parent_right(byte) | map_parent_left(sibling)
            };
            ite.parent();
        }
        if len != self.bit_len(View::Index) {
            self.expand(len);
        }
    }

    fn expand(&mut self, len: u64) {
        for root in flat::full_roots(2 * len) {
            let mut ite = flat::Iterator::new(root);
            let mut byte = self.byte(View::Index, ite.index);
            loop {
                let sibling = self.byte(View::Index, ite.sibling_index());
                byte = if ite.is_left() {
                    map_parent_left(byte) | map_parent_right(sibling)
                } else {
                    map_parent_right(byte) | map_parent_left(sibling)
                };
                let parent = ite.parent();
                // The reference never grows the index while expanding it.
                if 8 * parent >= self.bit_len(View::Index) {
                    break;
                }
                if !self.set_byte(View::Index, parent, byte) {
                    break;
                }
            }
        }
    }

    /// How many of the blocks in `start..end` are stored.
    pub fn total(&mut self, start: u64, end: u64) -> u64 {
        if end <= start {
            return 0;
        }
        if end > self.data_len() {
            self.expand(end);
        }
        let o = start & 7;
        let e = end & 7;
        let pos = (start - o) / 8;
        let last = (end - e) / 8;
        let left_mask = 255
            - if o > 0 {
                DATA_ITERATE_MASK[o as usize - 1]
            } else {
                0
            };
        let right_mask = if e > 0 {
            DATA_ITERATE_MASK[e as usize - 1]
        } else {
            0
        };
        let first = self.byte(View::Data, pos);
        if pos == last {
            return u64::from((first & left_mask & right_mask).count_ones());
        }
        let mut total = u64::from((first & left_mask).count_ones());
        for i in pos + 1..last {
            total += u64::from(self.byte(View::Data, i).count_ones());
        }
        total + u64::from((self.byte(View::Data, last) & right_mask).count_ones())
    }

    /// The first block in `start..end` that is *not* stored, skipping full
    /// regions through the index.
    pub fn next_missing(&self, start: u64, end: u64) -> Option<u64> {
        let mut pos = start / 8;
        let o = start & 7;
        let mut byte = self.byte(View::Data, pos)
            | if o > 0 {
                DATA_ITERATE_MASK[o as usize - 1]
            } else {
                0
            };
        let index_end = 2 * end.div_ceil(32);
        loop {
            if let Some(free) = next_data_zero_bit(byte) {
                let n = 8 * pos + u64::from(free);
                return (n < end).then_some(n);
            }
            pos += 1;
            if 8 * pos >= end {
                return None;
            }
            byte = self.byte(View::Data, pos);
            if byte == 255 {
                pos = self.skip_ahead(pos, index_end)?;
                if 8 * pos >= end {
                    return None;
                }
                byte = self.byte(View::Data, pos);
            }
        }
    }

    fn skip_ahead(&self, start: u64, tree_end: u64) -> Option<u64> {
        let o = start & 3;
        let mut ite = flat::Iterator::new(2 * (start / 4));
        let mut tree_byte = self.byte(View::Index, ite.index) | INDEX_ITERATE_MASK[o as usize];
        while next_index_zero_bit(tree_byte).is_none() {
            if ite.is_left() {
                ite.next_at_depth();
            } else {
                ite.next_at_depth();
                ite.parent();
            }
            if ite.right_span() >= tree_end {
                while ite.right_span() >= tree_end && ite.index & 1 == 1 {
                    ite.left_child();
                }
                if ite.right_span() >= tree_end {
                    return None;
                }
            }
            tree_byte = self.byte(View::Index, ite.index);
        }
        while ite.factor > 2 {
            if next_index_zero_bit(tree_byte).unwrap_or(4) < 2 {
                ite.left_child();
            } else {
                ite.right_child();
            }
            tree_byte = self.byte(View::Index, ite.index);
        }
        let free = u64::from(next_index_zero_bit(tree_byte).unwrap_or(4));
        let next = ite.index * 2 + free;
        Some(if next <= start { start + 1 } else { next })
    }

    /// The data bits of `start..start + length` blocks (both multiples of
    /// 8,192, one page), run-length encoded as a Have message carries them;
    /// with both zero, the whole data bitfield.
    pub fn compress(&self, start: u64, length: u64) -> Vec<u8> {
        if start == 0 && length == 0 {
            let mut all = Vec::with_capacity(self.pages.len() * DATA_PAGE as usize);
            for page in &self.pages {
                match page {
                    Some(p) => all.extend_from_slice(&p[..DATA_PAGE as usize]),
                    None => all.extend_from_slice(&[0; DATA_PAGE as usize]),
                }
            }
            return crate::rle::encode(&all);
        }
        let bytes = usize::try_from(length / 8).unwrap_or(0);
        let mut buf = vec![0u8; bytes];
        let first_page = start / 8 / DATA_PAGE;
        let pages = (length / 8).div_ceil(DATA_PAGE);
        for p in 0..pages {
            if let Some(Some(page)) = self.pages.get((first_page + p) as usize) {
                let at = (p * DATA_PAGE) as usize;
                let n = (DATA_PAGE as usize).min(buf.len().saturating_sub(at));
                buf[at..at + n].copy_from_slice(&page[..n]);
            }
        }
        crate::rle::encode(&buf)
    }
}

/// The tree bits of the bitfield: which merkle nodes are stored.
impl Bits for Bitfield {
    fn get(&self, i: u64) -> bool {
        self.byte(View::Tree, i / 8) & (128 >> (i & 7)) != 0
    }

    fn set(&mut self, i: u64, value: bool) -> bool {
        let byte_index = i / 8;
        let old = self.byte(View::Tree, byte_index);
        let mask = 128u8 >> (i & 7);
        let new = if value { old | mask } else { old & !mask };
        self.set_byte(View::Tree, byte_index, new)
    }

    fn bit_len(&self) -> u64 {
        self.bit_len(View::Tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_bits_round_trip_and_count() {
        let mut b = Bitfield::new();
        for i in [0u64, 1, 5, 8, 9000, 20000] {
            assert!(b.set(i, true));
            assert!(!b.set(i, true));
        }
        assert!(b.get(9000));
        assert!(!b.get(9001));
        assert_eq!(b.total(0, 30000), 6);
        assert_eq!(b.total(1, 9000), 3);
        assert!(b.set(5, false));
        assert_eq!(b.total(0, 10), 3);
    }

    #[test]
    fn next_missing_skips_full_regions() {
        let mut b = Bitfield::new();
        for i in 0..5000 {
            b.set(i, true);
        }
        b.set(5001, true);
        assert_eq!(b.next_missing(0, 10000), Some(5000));
        assert_eq!(b.next_missing(5001, 10000), Some(5002));
        assert_eq!(b.next_missing(0, 5000), None);
        assert_eq!(b.next_missing(10, 4000), None);
    }

    #[test]
    fn reload_keeps_every_bit() {
        let mut b = Bitfield::new();
        for i in (0..20000).step_by(3) {
            b.set(i, true);
            Bits::set(&mut b, 2 * i, true);
        }
        let mut file = vec![];
        for (offset, page) in b.take_dirty_pages() {
            let end = offset as usize + page.len();
            if file.len() < end {
                file.resize(end, 0);
            }
            file[offset as usize..end].copy_from_slice(&page);
        }
        let again = Bitfield::from_pages(&file);
        for i in 0..20000 {
            assert_eq!(again.get(i), i % 3 == 0);
            assert_eq!(Bits::get(&again, 2 * i), i % 3 == 0);
        }
    }
}
