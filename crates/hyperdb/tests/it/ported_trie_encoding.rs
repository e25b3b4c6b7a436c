//! hyperdb 3.5.0's `test/trie-encoding.js`, ported: the trie's byte
//! encoding, with the JS test's byte vectors.
//!
//! The JS encoder takes `map` as writer numbering indexed by local feed id;
//! ours takes the same as `&[Option<usize>]`. The JS decoder's `map` is the
//! writer's numbering → local id, as ours.

use hyperdb::trie::{Ptr, Trie};

fn ptr(feed: usize, seq: u64) -> Ptr {
    Ptr { feed, seq }
}

/// A trie with the pointers `ptrs` under `digit` at `position` (the JS
/// test's `set(position, set(digit, ptrs))`).
fn trie_with(position: usize, digit: u8, ptrs: &[Ptr]) -> Trie {
    let mut trie = Trie::new();
    for p in ptrs {
        trie.push(position, digit, *p);
    }
    trie
}

// hyperdb test/trie-encoding.js: 'encode trie'
#[test]
fn encode_trie() {
    assert_eq!(Trie::new().encode(&[]), Vec::<u8>::new(), "empty trie");
    assert_eq!(
        trie_with(0, 0, &[ptr(0, 0)]).encode(&[Some(0)]),
        [0, 1, 0, 0]
    );
    assert_eq!(
        trie_with(1, 0, &[ptr(0, 0)]).encode(&[Some(0)]),
        [1, 1, 0, 0]
    );
    assert_eq!(
        trie_with(1, 0, &[ptr(0, 0)]).encode(&[Some(1)]),
        [1, 1, 2, 0]
    );
    assert_eq!(
        trie_with(1, 0, &[ptr(0, 0), ptr(0, 1)]).encode(&[Some(0)]),
        [1, 1, 1, 0, 0, 1]
    );
    assert_eq!(
        trie_with(1, 1, &[ptr(0, 0), ptr(0, 1)]).encode(&[Some(0)]),
        [1, 2, 1, 0, 0, 1]
    );
}

// hyperdb test/trie-encoding.js: 'decode trie'
#[test]
fn decode_trie() {
    assert_eq!(Trie::decode(&[], &[]).unwrap(), Trie::new(), "empty trie");
    assert_eq!(
        Trie::decode(&[0, 1, 0, 0], &[0]).unwrap(),
        trie_with(0, 0, &[ptr(0, 0)])
    );
    assert_eq!(
        Trie::decode(&[1, 1, 0, 0], &[0]).unwrap(),
        trie_with(1, 0, &[ptr(0, 0)])
    );
    assert_eq!(
        Trie::decode(&[1, 1, 2, 0], &[1, 0]).unwrap(),
        trie_with(1, 0, &[ptr(0, 0)])
    );
    assert_eq!(
        Trie::decode(&[1, 1, 1, 0, 0, 1], &[0]).unwrap(),
        trie_with(1, 0, &[ptr(0, 0), ptr(0, 1)])
    );
    assert_eq!(
        Trie::decode(&[1, 2, 1, 0, 0, 1], &[0]).unwrap(),
        trie_with(1, 1, &[ptr(0, 0), ptr(0, 1)])
    );
}

// hyperdb test/trie-encoding.js: 'encode and decode complex trie'
// (The JS target is `set(32, set(2, [{feed: 0, seq: 0}], ...))`; its `set`
// ignores the extra arguments, so it is one pointer under digit 2 at
// position 32. The other two pointers are added here at other digits.)
#[test]
fn encode_and_decode_complex_trie() {
    let mut target = trie_with(32, 2, &[ptr(0, 0)]);
    target.push(32, 0, ptr(0, 2));
    target.push(32, 3, ptr(0, 0));
    let clone = Trie::decode(&target.encode(&[Some(0)]), &[0]).unwrap();
    assert_eq!(clone, target);
    assert_eq!(clone.get(32, 2), &[ptr(0, 0)]);
    assert_eq!(clone.get(32, 0), &[ptr(0, 2)]);
    assert_eq!(clone.get(32, 3), &[ptr(0, 0)]);
}
