//! Flat-tree indexing: a binary tree laid out in a flat array.
//!
//! Leaves (the blocks of a feed) sit at even indexes, parents at odd ones:
//!
//! ```text
//!       3
//!   1       5
//! 0   2   4   6
//! ```
//!
//! Block `i` is node `2 * i`. These are the functions hypercore 6 uses to walk
//! its merkle tree, with the same results as the `flat-tree` module it uses.
//!
//! ```
//! use hypercore_feed::flat;
//! assert_eq!(flat::parent(0), 1);
//! assert_eq!(flat::sibling(5), 1);
//! assert_eq!(flat::full_roots(6), vec![1, 4]);
//! ```

/// Depth of a node: 0 for leaves, 1 for their parents and so on.
pub fn depth(index: u64) -> u32 {
    (!index).trailing_zeros()
}

/// Position of a node among the nodes of its depth.
pub fn offset(index: u64) -> u64 {
    offset_at(index, depth(index))
}

fn offset_at(index: u64, depth: u32) -> u64 {
    (index + 1) >> (depth + 1)
}

/// The index of the node at `depth` and `offset`.
pub fn index(depth: u32, offset: u64) -> u64 {
    ((1 + 2 * offset) << depth) - 1
}

/// The parent of a node.
pub fn parent(index: u64) -> u64 {
    let d = depth(index);
    self::index(d + 1, offset_at(index, d) >> 1)
}

/// The other child of this node's parent.
pub fn sibling(index: u64) -> u64 {
    let d = depth(index);
    let o = offset_at(index, d);
    self::index(d, o ^ 1)
}

/// Left child of a parent node; `None` for a leaf.
pub fn left_child(index: u64) -> Option<u64> {
    if index & 1 == 0 {
        return None;
    }
    let d = depth(index);
    Some(self::index(d - 1, offset_at(index, d) * 2))
}

/// Right child of a parent node; `None` for a leaf.
pub fn right_child(index: u64) -> Option<u64> {
    if index & 1 == 0 {
        return None;
    }
    let d = depth(index);
    Some(self::index(d - 1, offset_at(index, d) * 2 + 1))
}

/// The leftmost leaf under a node.
pub fn left_span(index: u64) -> u64 {
    if index & 1 == 0 {
        return index;
    }
    let d = depth(index);
    offset_at(index, d) << (d + 1)
}

/// The rightmost leaf under a node.
pub fn right_span(index: u64) -> u64 {
    if index & 1 == 0 {
        return index;
    }
    let d = depth(index);
    ((offset_at(index, d) + 1) << (d + 1)) - 2
}

/// Number of nodes in the subtree rooted at `index`.
pub fn count(index: u64) -> u64 {
    if index & 1 == 0 {
        1
    } else {
        (2u64 << depth(index)) - 1
    }
}

/// The roots of the complete subtrees covering every leaf before leaf `index`
/// (an even index), left to right. `full_roots(2 * n)` are the roots of a
/// feed of `n` blocks.
pub fn full_roots(index: u64) -> Vec<u64> {
    full_roots_iter(index).collect()
}

/// [`full_roots`] one at a time, with nothing allocated (a random block
/// read sums their sizes).
pub fn full_roots_iter(index: u64) -> impl std::iter::Iterator<Item = u64> {
    debug_assert!(index & 1 == 0, "full_roots takes a leaf index");
    let mut remaining = index / 2;
    let mut offset = 0;
    std::iter::from_fn(move || {
        if remaining == 0 {
            return None;
        }
        let factor = 1u64 << (63 - remaining.leading_zeros());
        let root = offset + factor - 1;
        offset += 2 * factor;
        remaining -= factor;
        Some(root)
    })
}

/// A cursor that moves through the tree, as the reference's flat-tree iterator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Iterator {
    /// Current node.
    pub index: u64,
    /// Offset of the current node at its depth.
    pub offset: u64,
    /// Twice the number of leaves under the current node.
    pub factor: u64,
}

impl Iterator {
    /// A cursor positioned at `index`.
    pub fn new(index: u64) -> Self {
        let mut it = Iterator::default();
        it.seek(index);
        it
    }

    /// Moves to `index`.
    pub fn seek(&mut self, index: u64) {
        self.index = index;
        if index & 1 == 1 {
            self.offset = offset(index);
            self.factor = 2u64 << depth(index);
        } else {
            self.offset = index / 2;
            self.factor = 2;
        }
    }

    /// Whether the current node is a left child.
    pub fn is_left(&self) -> bool {
        self.offset & 1 == 0
    }

    /// Moves to the parent and returns its index.
    pub fn parent(&mut self) -> u64 {
        if self.offset & 1 == 1 {
            self.index -= self.factor / 2;
            self.offset = (self.offset - 1) / 2;
        } else {
            self.index += self.factor / 2;
            self.offset /= 2;
        }
        self.factor *= 2;
        self.index
    }

    /// Index of the sibling, without moving.
    pub fn sibling_index(&self) -> u64 {
        if self.is_left() {
            self.index + self.factor
        } else {
            self.index - self.factor
        }
    }

    /// Moves to the next node at the same depth and returns its index.
    pub fn next_at_depth(&mut self) -> u64 {
        self.offset += 1;
        self.index += self.factor;
        self.index
    }

    /// Moves to the left child and returns its index (stays on a leaf).
    pub fn left_child(&mut self) -> u64 {
        if self.factor == 2 {
            return self.index;
        }
        self.factor /= 2;
        self.index -= self.factor / 2;
        self.offset *= 2;
        self.index
    }

    /// Moves to the right child and returns its index (stays on a leaf).
    pub fn right_child(&mut self) -> u64 {
        if self.factor == 2 {
            return self.index;
        }
        self.factor /= 2;
        self.index += self.factor / 2;
        self.offset = 2 * self.offset + 1;
        self.index
    }

    /// The rightmost leaf under the current node.
    pub fn right_span(&self) -> u64 {
        self.index + self.factor / 2 - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_layout() {
        assert_eq!(depth(0), 0);
        assert_eq!(depth(1), 1);
        assert_eq!(depth(3), 2);
        assert_eq!(depth(7), 3);
        assert_eq!(offset(0), 0);
        assert_eq!(offset(2), 1);
        assert_eq!(offset(5), 1);
        assert_eq!(offset(11), 1);
        assert_eq!(parent(0), 1);
        assert_eq!(parent(2), 1);
        assert_eq!(parent(1), 3);
        assert_eq!(parent(5), 3);
        assert_eq!(parent(3), 7);
        assert_eq!(sibling(0), 2);
        assert_eq!(sibling(2), 0);
        assert_eq!(sibling(1), 5);
        assert_eq!(sibling(5), 1);
        assert_eq!(left_child(3), Some(1));
        assert_eq!(right_child(3), Some(5));
        assert_eq!(left_child(4), None);
        assert_eq!(left_span(3), 0);
        assert_eq!(right_span(3), 6);
        assert_eq!(right_span(23), 30);
        assert_eq!(left_span(23), 16);
        assert_eq!(count(3), 7);
        assert_eq!(full_roots(0), Vec::<u64>::new());
        assert_eq!(full_roots(2), vec![0]);
        assert_eq!(full_roots(8), vec![3]);
        assert_eq!(full_roots(20), vec![7, 17]);
        assert_eq!(full_roots(18), vec![7, 16]);
        assert_eq!(full_roots(16), vec![7]);
        assert_eq!(index(3, 1), 23);
    }

    #[test]
    fn iterator_walks_like_the_functions() {
        let mut it = Iterator::new(0);
        assert!(it.is_left());
        assert_eq!(it.parent(), 1);
        assert_eq!(it.parent(), 3);
        assert_eq!(it.factor, 8);
        assert_eq!(it.next_at_depth(), 11);
        assert_eq!(it.left_child(), 9);
        assert_eq!(it.right_child(), 10);
        let mut it = Iterator::new(11);
        assert!(!it.is_left());
        assert_eq!(it.sibling_index(), 3);
        assert_eq!(it.parent(), 7);
        for i in [0u64, 1, 2, 3, 5, 7, 9, 21, 47, 1023] {
            let mut it = Iterator::new(i);
            assert_eq!(it.sibling_index(), sibling(i), "sibling of {i}");
            assert_eq!(it.right_span(), right_span(i), "right span of {i}");
            assert_eq!(it.parent(), parent(i), "parent of {i}");
        }
    }
}
