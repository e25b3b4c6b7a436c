//! The discovery key a stream announces for a feed.

/// The discovery key of a feed: a keyed BLAKE2b-256 hash of its public key
/// over `hypercore`, what a stream announces instead of the key itself.
pub fn discovery_key(public_key: &[u8; 32]) -> [u8; 32] {
    use blake2::digest::consts::U32;
    use blake2::digest::Mac;
    let mut mac =
        <blake2::Blake2bMac<U32> as Mac>::new_from_slice(public_key).expect("32-byte key");
    mac.update(b"hypercore");
    mac.finalize().into_bytes().into()
}
