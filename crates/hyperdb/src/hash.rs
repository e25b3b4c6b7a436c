//! The path hash: where a key sits in the trie.
//!
//! A key is split on `/` into components; each component is hashed with
//! SipHash-2-4 under an all-zero key, and the 8 hash bytes are spread into 32
//! two-bit digits (low bits first). A terminator digit `4` ends the path of a
//! key (lookups of a prefix leave it out).

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

/// Digits per key component.
pub const DIGITS_PER_COMPONENT: usize = 32;
/// The digit that ends a key's path.
pub const TERMINATOR: u8 = 4;

/// The components of a key, as hyperdb splits them: a leading and a trailing
/// empty component are dropped.
pub fn components(key: &str) -> Vec<&str> {
    parts(key).collect()
}

/// [`components`] without collecting them.
pub fn parts(key: &str) -> impl Iterator<Item = &str> {
    let total = key.matches('/').count() + 1;
    // The first piece is empty for "" and "/...", the last for ".../".
    let skip = usize::from(key.is_empty() || key.starts_with('/'));
    let rest = total - skip;
    let take = rest - usize::from(rest > 0 && key.ends_with('/'));
    key.split('/').skip(skip).take(take)
}

/// The path of `key`, with the terminator when `terminate`.
///
/// ```
/// let path = hyperdb::hash::path("a/b", true);
/// assert_eq!(path.len(), 65);
/// assert_eq!(path[64], 4);
/// ```
pub fn path(key: &str, terminate: bool) -> Vec<u8> {
    let parts = components(key);
    let mut out = vec![0; parts.len() * DIGITS_PER_COMPONENT + usize::from(terminate)];
    for (part, digits) in parts.iter().zip(out.chunks_exact_mut(DIGITS_PER_COMPONENT)) {
        let mut hasher = SipHasher24::new_with_keys(0, 0);
        hasher.write(part.as_bytes());
        let hash = hasher.finish();
        for (i, digit) in digits.iter_mut().enumerate() {
            *digit = (hash >> (2 * i)) as u8 & 3;
        }
    }
    if terminate {
        *out.last_mut().expect("room for the terminator") = TERMINATOR;
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
        fn parts_are_the_pieces_less_an_empty_first_and_last(key in "[a/]{0,8}") {
            let mut pieces: Vec<&str> = key.split('/').collect();
            if pieces.first() == Some(&"") {
                pieces.remove(0);
            }
            if pieces.last() == Some(&"") {
                pieces.pop();
            }
            prop_assert_eq!(parts(&key).collect::<Vec<_>>(), pieces);
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
