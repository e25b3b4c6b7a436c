//! Recovery on open: a feed's state from what verifies.
//!
//! The `bitfield` file is a cache of what the other files hold, and it is
//! written last: a crash can leave it behind them (a signed tail whose bits
//! were never written), torn across pages, or, after damage, empty or
//! wrong. The truth is the signatures, the tree nodes they sign and the
//! blocks those nodes hash. Opening reconciles them:
//!
//! - The bitfield is trusted when the signature of the length it implies
//!   verifies against the roots it names, nothing is signed past that
//!   length, and (for the feed's own writer) it marks every block.
//! - Otherwise the state is rebuilt. A *writer* (a writable feed with its
//!   secret key) walks its blocks from the last trusted length, checking
//!   each against its leaf and recomputing the parents, and keeps the
//!   longest length that is signed (or that the bitfield claimed and the
//!   blocks support, signing it again: ed25519 signatures are
//!   deterministic, so the bytes are the ones it signed before). A
//!   *replica* (or a read-only open) takes the longest length whose
//!   signature verifies and checks the tree down from its roots, keeping
//!   the nodes and blocks that hash right.
//! - Whatever lies past the recovered length is a tail that was never
//!   signed: a writable open cuts it off, so the files match what an
//!   uninterrupted run would have written.
//!
//! A writer never appends at an index it has signed: if a signature exists
//! past what can be recovered and the blocks it signs are missing, opening
//! for writing fails with an error naming the file instead (a read-only
//! open shows what remains).

use std::collections::BTreeMap;

use crate::bitfield::{Bitfield, Bits};
use crate::crypto;
use crate::feed::{Feed, Node, Result};
use crate::sleep::HEADER_SIZE;
use crate::{flat, tree_index};

const NODE_SIZE: u64 = 40;
const SIGNATURE_SIZE: u64 = 64;
/// Signatures tried when looking for the longest signed length: a crash
/// leaves at most a few, and damaged files must not cost unbounded work.
const MAX_SIGNATURE_CHECKS: usize = 64;

/// What opening a feed repaired (see [`Feed::recovery`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The length the bitfield implied.
    pub bitfield_length: u64,
    /// The length recovered.
    pub length: u64,
    /// The bitfield was rebuilt from the tree and the blocks (it was
    /// missing, damaged, or torn by a crash).
    pub rebuilt: bool,
    /// Bytes past the recovered length (a tail that was never signed) were
    /// cut from these files.
    pub truncated: Vec<String>,
    /// The signature of this length was missing or damaged and was written
    /// again, with the same bytes.
    pub resigned: Option<u64>,
    /// The repair was written to the files (not for a read-only open, which
    /// repairs in memory only).
    pub written: bool,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} blocks", self.length)?;
        if self.length != self.bitfield_length {
            write!(f, " (the bitfield said {})", self.bitfield_length)?;
        }
        if self.rebuilt {
            write!(f, ", bitfield rebuilt")?;
        }
        if !self.truncated.is_empty() {
            write!(f, ", unsigned tail cut from {}", self.truncated.join(", "))?;
        }
        if let Some(length) = self.resigned {
            write!(f, ", signature of length {length} restored")?;
        }
        if !self.written {
            write!(f, " (in memory only: opened read-only)")?;
        }
        Ok(())
    }
}

/// What one signature slot holds.
enum Slot {
    /// Zeros, or past the end of the file.
    Empty,
    /// A signature that verifies against roots that are stored.
    Signed(Vec<Node>),
    /// A signature that does not verify against the stored roots (torn).
    Torn,
    /// A signature whose roots are not all stored.
    Unverifiable,
}

impl Feed {
    /// Reconciles the bitfield with the other files (see the module docs).
    pub(crate) fn recover(&mut self) -> Result<()> {
        self.nodes.clear();
        let claimed = tree_index::blocks(&self.bitfield);
        let base = self.signed_by_bits(claimed)?;
        let mut recovery = if self.signing_key.is_some() {
            self.recover_writer(claimed, base)?
        } else {
            self.recover_replica(claimed, base)?
        };
        *self
            .next_offset
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()) = (0, 0);
        let length = recovery.length;
        self.roots = self.roots_at(length)?;
        self.byte_length = self.roots.iter().map(|r| r.size).sum();
        self.length = length;
        if !self.read_only {
            self.trim(&mut recovery)?;
            recovery.written = true;
        } else {
            // Nothing may be written: the repaired pages stay in memory.
            self.bitfield.take_dirty_pages();
        }
        let changed = recovery.rebuilt
            || recovery.resigned.is_some()
            || !recovery.truncated.is_empty()
            || recovery.length != claimed;
        self.recovery = changed.then_some(recovery);
        Ok(())
    }

    /// The roots of `length` named by the bitfield, when the stored
    /// signature of that length verifies against them.
    fn signed_by_bits(&mut self, length: u64) -> Result<Option<Vec<Node>>> {
        if length == 0 {
            return Ok(Some(Vec::new()));
        }
        let mut marked = |feed: &mut Feed, index: u64| match Bits::get(&feed.bitfield, index) {
            true => feed.stored_node(index),
            false => Ok(None),
        };
        match self.slot(length - 1, &mut marked)? {
            Slot::Signed(roots) => Ok(Some(roots)),
            _ => Ok(None),
        }
    }

    /// Number of signature slots the file holds (a torn last one included).
    fn signature_slots(&self) -> u64 {
        self.signatures
            .len()
            .saturating_sub(HEADER_SIZE)
            .div_ceil(SIGNATURE_SIZE)
    }

    /// Number of leaves the tree file has room for.
    fn stored_leaves(&self) -> u64 {
        let nodes = self.tree.len().saturating_sub(HEADER_SIZE) / NODE_SIZE;
        nodes.div_ceil(2)
    }

    /// What signature slot `index` holds, checked against the roots of
    /// `index + 1` blocks that `node` finds.
    fn slot(
        &mut self,
        index: u64,
        node: &mut impl FnMut(&mut Feed, u64) -> Result<Option<Node>>,
    ) -> Result<Slot> {
        // A slot torn short cannot hold a signature: it reads as empty.
        let Some(signature) = self.read_signature(index)? else {
            return Ok(Slot::Empty);
        };
        let mut roots = Vec::new();
        for root in flat::full_roots(2 * (index + 1)) {
            match node(self, root)? {
                Some(n) => roots.push(n),
                None => return Ok(Slot::Unverifiable),
            }
        }
        if crypto::verify(&self.key, &crypto::tree_hash(&roots), &signature) {
            Ok(Slot::Signed(roots))
        } else {
            Ok(Slot::Torn)
        }
    }

    /// The writer's recovery (a feed with its secret key, opened for
    /// writing or not): its own blocks are all here, so the tree can be
    /// recomputed from them.
    fn recover_writer(&mut self, claimed: u64, base: Option<Vec<Node>>) -> Result<Recovery> {
        let base_signed = base.is_some();
        let (start, mut roots, rebuilt) = match base {
            Some(roots)
                if self.bitfield.count(0, claimed) == claimed
                    && self.data.len() >= roots.iter().map(|r| r.size).sum::<u64>() =>
            {
                (claimed, roots, false)
            }
            _ => (0, Vec::new(), true),
        };

        // Walk the blocks after `start` while each matches its stored leaf,
        // recomputing the parents; stored parents that differ are rewritten.
        let mut rewrite: BTreeMap<u64, Node> = BTreeMap::new();
        let mut offset: u64 = roots.iter().map(|r| r.size).sum();
        let mut whole = start;
        let limit = self.stored_leaves();
        while whole < limit {
            let Some(leaf) = self.stored_node(2 * whole)? else {
                break;
            };
            let Some(end) = offset.checked_add(leaf.size) else {
                break;
            };
            if end > self.data.len() {
                break;
            }
            let block = self.data.read(offset, leaf.size as usize)?;
            if crypto::leaf_hash(&block) != leaf.hash {
                break;
            }
            let mut parents = Vec::new();
            crate::feed::push_leaf(&mut roots, leaf, |n| parents.push(*n));
            for parent in parents.into_iter().filter(|p| p.index != leaf.index) {
                if self.stored_node(parent.index)? != Some(parent) {
                    rewrite.insert(parent.index, parent);
                }
            }
            whole += 1;
            offset = end;
        }

        // Nodes below `2 * whole` now hold what the blocks say.
        let mut node = |feed: &mut Feed, index: u64| -> Result<Option<Node>> {
            if let Some(n) = rewrite.get(&index) {
                return Ok(Some(*n));
            }
            feed.stored_node(index)
        };
        let mut signed = start;
        let mut checks = 0;
        let mut j = self.signature_slots().min(whole);
        while j > start && checks < MAX_SIGNATURE_CHECKS {
            j -= 1;
            match self.slot(j, &mut node)? {
                Slot::Empty => continue,
                Slot::Signed(_) => {
                    signed = j + 1;
                    break;
                }
                Slot::Torn | Slot::Unverifiable => checks += 1,
            }
        }
        // A signature over blocks that are gone may have reached a peer:
        // appending at those indexes would fork the feed.
        let mut signed_past = None;
        if claimed > whole && base_signed {
            signed_past = Some(claimed - 1);
        }
        for j in (whole..self.signature_slots()).rev() {
            if signed_past.is_some() {
                break;
            }
            if let Slot::Signed(_) | Slot::Unverifiable = self.slot(j, &mut node)? {
                signed_past = Some(j);
            }
        }
        if let Some(j) = signed_past.filter(|_| !self.read_only) {
            let (file, what) = if self.stored_node(2 * whole)?.is_none() {
                (&self.tree, format!("the node of block {whole} is missing"))
            } else {
                (
                    &self.data,
                    format!("block {whole} is missing or does not match its hash"),
                )
            };
            return Err(file.corrupt(format!(
                "{what} (the file is truncated or damaged), but this writer signed the feed up to \
                 block {j}: appending now would fork the feed. Open it read-only to read what \
                 remains, or restore the folder from a backup or a replica"
            )));
        }
        let mut length = signed;
        let mut resigned = None;
        // The bitfield says this length was acknowledged and the blocks are
        // whole: its signature was lost, and signing the same roots again
        // gives the same bytes. (Read-only, a damaged writer shows what
        // remains the same way, in memory.)
        let supported = if signed_past.is_some() {
            whole.min(claimed)
        } else {
            claimed
        };
        if supported <= whole && supported > signed {
            length = supported;
            resigned = Some(supported);
        }

        // The bits as the appends would have set them: from the trusted
        // length when only a tail is new, from the start when the bitfield
        // holds anything past it (a torn page).
        let start = if rebuilt || self.bits_past(claimed) {
            0
        } else {
            start
        };
        if start == 0 {
            self.bitfield = Bitfield::new();
        }
        for i in start..length {
            self.bitfield.set(i, true);
            tree_index::set(&mut self.bitfield, 2 * i);
        }
        for node in rewrite.values().filter(|n| n.index < 2 * length) {
            if self.read_only {
                self.nodes.insert(node.index, *node);
            } else {
                self.write_node(node)?;
            }
        }
        if let (Some(at), false) = (resigned, self.read_only) {
            let roots = self.roots_at(at)?;
            let signing_key = self.signing_key.as_ref().expect("a writer");
            let signature = crypto::sign(signing_key, &crypto::tree_hash(&roots));
            self.signatures
                .write(HEADER_SIZE + (at - 1) * SIGNATURE_SIZE, &signature)?;
        }
        Ok(Recovery {
            bitfield_length: claimed,
            length,
            rebuilt: start == 0 && length > 0 || length != claimed,
            resigned,
            ..Default::default()
        })
    }

    /// Whether the bitfield marks anything that the tree of `length` blocks
    /// does not hold: blocks or nodes past it, or parents of its roots.
    fn bits_past(&self, length: u64) -> bool {
        if self.bitfield.count(length, self.bitfield.data_len()) > 0 {
            return true;
        }
        let tree = &self.bitfield;
        let nodes = (2 * length).saturating_sub(1);
        if (nodes..Bits::bit_len(tree)).any(|i| Bits::get(tree, i)) {
            return true;
        }
        flat::full_roots(2 * length).into_iter().any(|root| {
            let mut parent = flat::parent(root);
            while parent < nodes {
                if Bits::get(tree, parent) {
                    return true;
                }
                parent = flat::parent(parent);
            }
            false
        })
    }

    /// A replica's recovery: the longest signed length, and the nodes and
    /// blocks that verify under its roots.
    fn recover_replica(&mut self, claimed: u64, base: Option<Vec<Node>>) -> Result<Recovery> {
        // Bits past the trusted length come from a torn page: start over.
        let base = base.filter(|_| !self.bits_past(claimed));
        let trusted = base.is_some();
        let floor = if trusted { claimed } else { 0 };
        let mut top = None;
        let mut checks = 0;
        let mut j = self.signature_slots().min(self.stored_leaves());
        while j > floor && checks < MAX_SIGNATURE_CHECKS {
            j -= 1;
            match self.slot(j, &mut |feed, index| feed.stored_node(index))? {
                Slot::Signed(roots) => {
                    top = Some((j + 1, roots));
                    break;
                }
                Slot::Empty | Slot::Unverifiable => {}
                Slot::Torn => checks += 1,
            }
        }
        let Some((length, roots)) = top else {
            if trusted {
                return Ok(Recovery {
                    bitfield_length: claimed,
                    length: claimed,
                    ..Default::default()
                });
            }
            // Nothing verifies: an empty feed, whatever the files claimed.
            self.bitfield = Bitfield::new();
            return Ok(Recovery {
                bitfield_length: claimed,
                length: 0,
                rebuilt: claimed > 0,
                ..Default::default()
            });
        };

        // Check the tree down from the signed roots. Under a trusted base,
        // the base's roots are known to be right and their subtrees marked.
        let known = base.unwrap_or_default();
        let mut verified: Vec<Node> = Vec::new();
        let mut blocks = Vec::new();
        let mut stack: Vec<(Node, u64)> = Vec::new();
        let mut offset = 0u64;
        for root in roots {
            stack.push((root, offset));
            offset = offset.saturating_add(root.size);
        }
        stack.reverse();
        while let Some((node, at)) = stack.pop() {
            if known.contains(&node) {
                continue;
            }
            verified.push(node);
            if node.index % 2 == 0 {
                let end = at.saturating_add(node.size);
                if end <= self.data.len() {
                    let block = self.data.read(at, node.size as usize)?;
                    if crypto::leaf_hash(&block) == node.hash {
                        blocks.push(node.index / 2);
                    }
                }
                continue;
            }
            let (Some(left), Some(right)) = (
                flat::left_child(node.index)
                    .map(|i| self.stored_node(i))
                    .transpose()?
                    .flatten(),
                flat::right_child(node.index)
                    .map(|i| self.stored_node(i))
                    .transpose()?
                    .flatten(),
            ) else {
                continue;
            };
            if left.size.checked_add(right.size) == Some(node.size)
                && crypto::parent_hash(&left, &right) == node.hash
            {
                stack.push((right, at + left.size));
                stack.push((left, at));
            }
        }

        if !trusted {
            self.bitfield = Bitfield::new();
        }
        let mut leaves: Vec<u64> = verified
            .iter()
            .filter(|n| n.index % 2 == 0)
            .map(|n| n.index / 2)
            .collect();
        leaves.sort_unstable();
        blocks.sort_unstable();
        for i in leaves {
            if blocks.binary_search(&i).is_ok() {
                self.bitfield.set(i, true);
            }
            tree_index::set(&mut self.bitfield, 2 * i);
        }
        for node in &verified {
            Bits::set(&mut self.bitfield, node.index, true);
        }
        Ok(Recovery {
            bitfield_length: claimed,
            length,
            rebuilt: true,
            ..Default::default()
        })
    }

    /// Cuts what lies past the recovered length from every file and writes
    /// the repaired bitfield.
    fn trim(&mut self, recovery: &mut Recovery) -> Result<()> {
        let length = self.length;
        let tree_nodes = (2 * length).saturating_sub(1);
        // Parents of the roots that an interrupted append wrote inside the
        // tree's range (the root of a larger tree can sit in the middle).
        for root in self.roots.clone() {
            let mut parent = flat::parent(root.index);
            while parent < tree_nodes {
                if self.stored_node(parent)?.is_some() {
                    let at = HEADER_SIZE + parent * NODE_SIZE;
                    self.tree.write(at, &[0; NODE_SIZE as usize])?;
                    if !recovery.truncated.contains(&self.tree.name) {
                        recovery.truncated.push(self.tree.name.clone());
                    }
                }
                parent = flat::parent(parent);
            }
        }
        let ends = [
            (&mut self.data, self.byte_length),
            (&mut self.tree, HEADER_SIZE + NODE_SIZE * tree_nodes),
            (&mut self.signatures, HEADER_SIZE + SIGNATURE_SIZE * length),
        ];
        for (file, end) in ends {
            if file.len() > end {
                file.truncate(end)?;
                if !recovery.truncated.contains(&file.name) {
                    recovery.truncated.push(file.name.clone());
                }
            }
        }
        if recovery.rebuilt {
            // Every page, and nothing after them: the old file may be longer.
            let pages = self.bitfield.all_pages();
            let end = HEADER_SIZE + pages.len() as u64 * crate::bitfield::PAGE_SIZE as u64;
            self.bitfield.take_dirty_pages();
            for (offset, page) in pages {
                self.bitfield_file.write(HEADER_SIZE + offset, &page)?;
            }
            self.bitfield_file.truncate(end)?;
        } else {
            for (offset, page) in self.bitfield.take_dirty_pages() {
                self.bitfield_file.write(HEADER_SIZE + offset, &page)?;
            }
        }
        if self.durability == crate::feed::Durability::Fsync {
            self.sync_all()?;
        }
        Ok(())
    }
}
