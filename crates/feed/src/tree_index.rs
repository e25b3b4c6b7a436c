//! Questions about which merkle nodes are stored, answered from the tree bits:
//! the feed length they imply, which nodes a proof must carry, and the digest
//! a requester sends to say which nodes it already has. Hypercore 6's
//! `tree-index`, over any [`Bits`].

use crate::bitfield::Bits;
use crate::flat;

/// Marks node `index` as stored, and every parent that now has both children.
pub fn set(bits: &mut impl Bits, mut index: u64) -> bool {
    if !bits.set(index, true) {
        return false;
    }
    while bits.get(flat::sibling(index)) {
        index = flat::parent(index);
        if !bits.set(index, true) {
            break;
        }
    }
    true
}

/// Which nodes a proof for `index` carries, and the feed length (as a leaf
/// index + 2) whose signature vouches for them (`0` when the remote can
/// verify them against nodes it already has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    /// Node indexes to send, in order.
    pub nodes: Vec<u64>,
    /// `2 * length` of the signed tree the proof reaches, or 0.
    pub verified_by: u64,
}

/// Plans the proof of node `index` for a remote whose known nodes are in
/// `remote` (updated with what the digest says it has). `None` when the node
/// is not stored here.
pub fn proof(
    local: &impl Bits,
    index: u64,
    digest: u64,
    include_hash: bool,
    remote: &mut impl Bits,
) -> Option<ProofPlan> {
    // A proof is an uncle a level plus a few roots: room for a tree of
    // 2^16 blocks without growing.
    let mut nodes = Vec::with_capacity(16);
    if !local.get(index) {
        return None;
    }
    if include_hash {
        nodes.push(index);
    }
    if digest == 1 {
        return Some(ProofPlan {
            nodes,
            verified_by: 0,
        });
    }

    let mut next = index;
    let has_root = digest & 1 == 1;
    let mut digest = digest >> 1;
    while digest > 0 {
        if digest == 1 && has_root {
            if local.get(next) {
                remote.set(next, true);
            }
            if flat::sibling(next) < next {
                next = flat::sibling(next);
            }
            for root in flat::full_roots(flat::right_span(next) + 2) {
                if local.get(root) {
                    remote.set(root, true);
                }
            }
            break;
        }
        let sibling = flat::sibling(next);
        if digest & 1 == 1 && local.get(sibling) {
            remote.set(sibling, true);
        }
        next = flat::parent(next);
        digest >>= 1;
    }

    let mut next = index;
    while !remote.get(next) {
        let sibling = flat::sibling(next);
        if !local.get(sibling) {
            // `next` should be a root of the local tree. A sparse tree may
            // hold it without its sibling though a longer signed tree
            // covers it: no proof can be made from here then.
            let verified_by = verified_by(local, next);
            let roots = flat::full_roots(verified_by);
            if !roots.contains(&next) {
                return None;
            }
            for root in roots {
                if root != next && !remote.get(root) {
                    nodes.push(root);
                }
            }
            return Some(ProofPlan { nodes, verified_by });
        } else if !remote.get(sibling) {
            nodes.push(sibling);
        }
        next = flat::parent(next);
    }
    Some(ProofPlan {
        nodes,
        verified_by: 0,
    })
}

/// The digest a requester of node `index` sends: a bit for each uncle it
/// already has, so the proof can leave those out (1 when it has the node).
pub fn digest(bits: &impl Bits, index: u64) -> u64 {
    if bits.get(index) {
        return 1;
    }
    let mut digest = 0u64;
    let mut next = flat::sibling(index);
    let max = (next + 2).max(bits.bit_len());
    let mut bit = 2u64;
    let mut parent = flat::parent(next);
    while flat::right_span(next) < max || flat::left_span(parent) > 0 {
        if bits.get(next) {
            digest += bit;
        }
        if bits.get(parent) {
            digest += 2 * bit;
            if digest & 1 == 0 {
                digest += 1;
            }
            if digest + 1 == 4 * bit {
                return 1;
            }
            return digest;
        }
        next = flat::sibling(parent);
        parent = flat::parent(next);
        match bit.checked_mul(2) {
            Some(b) => bit = b,
            None => break,
        }
    }
    digest
}

/// Number of blocks the stored nodes describe: the feed length.
pub fn blocks(bits: &impl Bits) -> u64 {
    let mut top = 0;
    let mut next = 0;
    let max = bits.bit_len();
    while flat::right_span(next) < max {
        next = flat::parent(next);
        if bits.get(next) {
            top = next;
        }
    }
    if bits.get(top) {
        verified_by(bits, top) / 2
    } else {
        0
    }
}

/// `2 * length` of the smallest feed whose roots include the tree around
/// `index` (0 when `index` is not stored).
pub fn verified_by(bits: &impl Bits, index: u64) -> u64 {
    if !bits.get(index) {
        return 0;
    }
    // Find the root of the complete tree holding `index`.
    let mut depth = flat::depth(index);
    let mut top = index;
    let mut parent = flat::parent(top);
    depth += 1;
    while bits.get(parent) && bits.get(flat::sibling(top)) {
        top = parent;
        parent = flat::parent(top);
        depth += 1;
    }
    // Then walk down the right side for the trees after it.
    depth -= 1;
    while depth > 0 {
        top = flat::index(depth, flat::offset(top) + 1);
        top = flat::left_child(top).unwrap_or(top);
        depth -= 1;
        while !bits.get(top) && depth > 0 {
            top = flat::left_child(top).unwrap_or(top);
            depth -= 1;
        }
    }
    if bits.get(top) {
        top + 2
    } else {
        top
    }
}

#[cfg(test)]
mod tests {
    //! Ported from hypercore 6's `test/tree-index.js`.
    use super::*;
    use crate::bitfield::SparseBits;

    fn tree(nodes: &[u64]) -> SparseBits {
        let mut bits = SparseBits::new();
        for &n in nodes {
            set(&mut bits, n);
        }
        bits
    }

    fn p(bits: &SparseBits, index: u64, digest: u64) -> (Vec<u64>, u64) {
        let plan = proof(bits, index, digest, false, &mut SparseBits::new()).unwrap();
        (plan.nodes, plan.verified_by)
    }

    #[test]
    fn digest_cases() {
        assert_eq!(digest(&tree(&[]), 0), 0b0);
        assert_eq!(digest(&tree(&[0]), 0), 0b1);
        assert_eq!(digest(&tree(&[1]), 0), 0b101);
        assert_eq!(digest(&tree(&[2]), 0), 0b10);
        assert_eq!(digest(&tree(&[1, 2]), 0), 0b1);
        assert_eq!(digest(&tree(&[3, 2]), 0), 0b1011);
        assert_eq!(digest(&tree(&[5]), 1), 0b10);
    }

    #[test]
    fn verified_by_cases() {
        let mut bits = tree(&[]);
        assert_eq!(verified_by(&bits, 0), 0);
        for (node, expected) in [(0, 2), (2, 4), (5, 8), (8, 10)] {
            set(&mut bits, node);
            assert_eq!(verified_by(&bits, 0), expected);
        }
        assert_eq!(verified_by(&tree(&[10, 8, 13, 3, 17]), 10), 20);
        let bits = tree(&[7, 16, 18, 21, 25, 28]);
        assert_eq!(verified_by(&bits, 16), 30);
        assert_eq!(verified_by(&bits, 18), 30);
        assert_eq!(verified_by(&bits, 17), 30);
    }

    #[test]
    fn blocks_counts_the_feed() {
        for n in [0u64, 1, 2, 3, 4, 5, 7, 8, 9, 31, 100] {
            let leaves: Vec<u64> = (0..n).map(|i| 2 * i).collect();
            assert_eq!(blocks(&tree(&leaves)), n, "{n} blocks");
        }
    }

    #[test]
    fn proof_without_a_digest() {
        let mut bits = tree(&[]);
        assert!(proof(&bits, 0, 0, false, &mut SparseBits::new()).is_none());
        set(&mut bits, 0);
        assert_eq!(p(&bits, 0, 0), (vec![], 2));
        set(&mut bits, 2);
        assert_eq!(p(&bits, 0, 0), (vec![2], 4));
        set(&mut bits, 5);
        assert_eq!(p(&bits, 0, 0), (vec![2, 5], 8));
        set(&mut bits, 8);
        assert_eq!(p(&bits, 0, 0), (vec![2, 5, 8], 10));

        let bits = tree(&[10, 8, 13, 3, 17]);
        assert_eq!(p(&bits, 10, 0), (vec![8, 13, 3, 17], 20));

        let bits = tree(&[7, 16, 18, 21, 25, 28]);
        assert_eq!(p(&bits, 16, 0), (vec![18, 21, 7, 25, 28], 30));
        assert_eq!(p(&bits, 18, 0), (vec![16, 21, 7, 25, 28], 30));
        assert_eq!(p(&bits, 17, 0), (vec![21, 7, 25, 28], 30));
    }

    #[test]
    fn proof_with_a_digest() {
        let mut bits = tree(&[0, 2]);
        assert_eq!(p(&bits, 0, 1), (vec![], 0));
        set(&mut bits, 5);
        assert_eq!(p(&bits, 0, 0b10), (vec![5], 8));
        assert_eq!(p(&bits, 0, 0b110), (vec![], 8));
        set(&mut bits, 8);
        assert_eq!(p(&bits, 0, 0b101), (vec![2], 0));
        assert_eq!(p(&bits, 0, 0b10), (vec![5, 8], 10));

        let bits = tree(&[10, 8, 13, 3, 17]);
        assert_eq!(p(&bits, 10, 0b1000001), (vec![8, 13, 3, 17], 20));
        assert_eq!(p(&bits, 10, 0b10001), (vec![8, 13, 3], 0));
        assert_eq!(p(&bits, 10, 0b1001), (vec![8, 13], 0));
        assert_eq!(p(&bits, 10, 0b1000), (vec![8, 13, 17], 20));

        let bits = tree(&[7, 16, 18, 21, 25, 28]);
        assert_eq!(p(&bits, 16, 1), (vec![], 0));
        assert_eq!(p(&bits, 18, 0b100), (vec![16, 7, 25, 28], 30));
        assert_eq!(p(&bits, 18, 0b10), (vec![21, 7, 25, 28], 30));
        assert_eq!(p(&bits, 17, 0b101), (vec![21], 0));
    }

    #[test]
    fn a_huge_digest_does_not_crash() {
        let bits = tree(&[0]);
        let _ = proof(&bits, 0, 999_999_999_999_999, false, &mut SparseBits::new());
        let _ = proof(&bits, 0, u64::MAX, false, &mut SparseBits::new());
    }
}
