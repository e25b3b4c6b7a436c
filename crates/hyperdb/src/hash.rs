//! The path hash: where a key sits in the trie.
//!
//! A key is split on `/` into components; each component is hashed with
//! SipHash-2-4 under an all-zero key, and the 8 hash bytes are spread into 32
//! two-bit digits (low bits first). A terminator digit `4` ends the path of a
//! key (lookups of a prefix leave it out).

use siphasher::sip::SipHasher24;

/// Digits per key component.
pub const DIGITS_PER_COMPONENT: usize = 32;
/// The digit that ends a key's path.
pub const TERMINATOR: u8 = 4;

/// The four digits of each byte of a hash, low bits first: a path spreads
/// a component's hash a byte at a time.
const DIGITS_OF_BYTE: [[u8; 4]; 256] = {
    let mut table = [[0u8; 4]; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = [
            (byte & 3) as u8,
            (byte >> 2 & 3) as u8,
            (byte >> 4 & 3) as u8,
            (byte >> 6 & 3) as u8,
        ];
        byte += 1;
    }
    table
};

/// The components of a key, as hyperdb splits them: a leading and a trailing
/// empty component are dropped.
pub fn components(key: &str) -> Vec<&str> {
    parts(key).collect()
}

/// [`components`] without collecting them.
pub fn parts(key: &str) -> impl Iterator<Item = &str> {
    // Splitting on `/`, the first piece is empty for "" and "/...", the
    // last for ".../": both are dropped ("/" has no component at all).
    let rest = key.strip_prefix('/').unwrap_or(key);
    let rest = (!rest.is_empty()).then(|| rest.strip_suffix('/').unwrap_or(rest));
    rest.into_iter().flat_map(|rest| rest.split('/'))
}

/// The path of `key`, with the terminator when `terminate`.
///
/// ```
/// let path = hyperdb::hash::path("a/b", true);
/// assert_eq!(path.len(), 65);
/// assert_eq!(path[64], 4);
/// ```
pub fn path(key: &str, terminate: bool) -> Vec<u8> {
    // Every entry decoded computes its key's path: one allocation, made at
    // its size (a `/` more than the components is harmless room).
    let slashes = key.bytes().filter(|&b| b == b'/').count();
    let mut out = Vec::with_capacity((slashes + 1) * DIGITS_PER_COMPONENT + 1);
    for part in parts(key) {
        let hash = SipHasher24::new_with_keys(0, 0).hash(part.as_bytes());
        for byte in hash.to_le_bytes() {
            out.extend_from_slice(&DIGITS_OF_BYTE[usize::from(byte)]);
        }
    }
    if terminate {
        out.push(TERMINATOR);
    }
    out
}

/// Drops one leading `/`, as hyperdb normalizes keys.
pub fn normalize(key: &str) -> &str {
    key.strip_prefix('/').unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Counted or collected, the components hyperdb splits a key into:
        /// a leading and a trailing empty piece dropped, inner ones kept.
        #[test]
        fn parts_are_the_pieces_less_an_empty_first_and_last(key in "[ab/]{0,8}") {
            let mut pieces: Vec<&str> = key.split('/').collect();
            if pieces.first() == Some(&"") {
                pieces.remove(0);
            }
            if pieces.last() == Some(&"") {
                pieces.pop();
            }
            prop_assert_eq!(parts(&key).collect::<Vec<_>>(), pieces.clone());
            // The path is each piece's SipHash spread into digits.
            let mut want = Vec::new();
            for piece in &pieces {
                use std::hash::Hasher;
                let mut hasher = SipHasher24::new_with_keys(0, 0);
                hasher.write(piece.as_bytes());
                let hash = hasher.finish();
                want.extend((0..32).map(|i| (hash >> (2 * i)) as u8 & 3));
            }
            prop_assert_eq!(path(&key, false), want.clone());
            want.push(TERMINATOR);
            prop_assert_eq!(path(&key, true), want);
        }
    }

    #[test]
    fn known_collision_collides() {
        // The two keys of hyperdb's own collision test share a SipHash.
        assert_eq!(path("idgcmnmna", true), path("mpomeiehc", true));
        assert_ne!(path("idgcmnmna", true), path("idgcmnmnb", true));
    }

    #[test]
    fn components_and_terminator() {
        assert_eq!(path("", true), vec![4]);
        assert_eq!(path("/a/", true), path("a", true));
        assert_eq!(path("a/b", false).len(), 64);
        assert_eq!(&path("a/b", true)[..32], &path("a", false)[..]);
        assert_eq!(components("a//b"), vec!["a", "", "b"]);
        assert_eq!(components("//"), vec![""]);
        assert!(components("/").is_empty() && components("").is_empty());
        assert_eq!(normalize("/x/y"), "x/y");
    }
}
