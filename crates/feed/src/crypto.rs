//! The cryptography of hypercore 6: ed25519 key pairs and signatures, and
//! BLAKE2b-256 hashes of leaves, parents and roots with type prefixes (so a
//! leaf can never be passed off as a parent), and the discovery key.

use blake2::digest::consts::U32;
use blake2::digest::{Digest, Mac};
use blake2::{Blake2b, Blake2bMac};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

/// A 32-byte BLAKE2b-256 digest.
pub type Hash = [u8; 32];

type Blake2b256 = Blake2b<U32>;

const LEAF_TYPE: u8 = 0;
const PARENT_TYPE: u8 = 1;
const ROOT_TYPE: u8 = 2;

/// An ed25519 key pair in the layout libsodium (and so hypercore) stores:
/// the public key is 32 bytes, the secret key 64 (seed then public key).
#[derive(Clone)]
pub struct KeyPair {
    /// The public key: the feed's key.
    pub public_key: [u8; 32],
    /// The secret key: 32 bytes of seed followed by the public key.
    pub secret_key: [u8; 64],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &hex::encode(self.public_key))
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The key pair whose seed is `seed` (as libsodium's `crypto_sign_seed_keypair`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    /// A key pair from a 64-byte libsodium secret key; `None` when its second
    /// half is not the public key of its first.
    pub fn from_secret_key(secret_key: &[u8; 64]) -> Option<Self> {
        SigningKey::from_keypair_bytes(secret_key)
            .ok()
            .map(Self::from_signing_key)
    }

    fn from_signing_key(key: SigningKey) -> Self {
        KeyPair {
            public_key: key.verifying_key().to_bytes(),
            secret_key: key.to_keypair_bytes(),
        }
    }

    pub(crate) fn signing_key(&self) -> SigningKey {
        SigningKey::from_keypair_bytes(&self.secret_key).expect("checked at construction")
    }
}

/// Signs `message` with a secret key.
pub fn sign(signing_key: &SigningKey, message: &[u8]) -> [u8; 64] {
    signing_key.sign(message).to_bytes()
}

/// Checks an ed25519 signature; false for a malformed key or signature.
pub fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    key.verify(message, &signature).is_ok()
}

/// Hash of a block (a leaf of the merkle tree).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Blake2b256::new();
    h.update([LEAF_TYPE]);
    h.update((data.len() as u64).to_be_bytes());
    h.update(data);
    h.finalize().into()
}

/// Hash of a parent from its two children (in any order) and their total size.
pub fn parent_hash(a: &crate::Node, b: &crate::Node) -> Hash {
    let (left, right) = if a.index > b.index { (b, a) } else { (a, b) };
    let mut h = Blake2b256::new();
    h.update([PARENT_TYPE]);
    h.update((left.size + right.size).to_be_bytes());
    h.update(left.hash);
    h.update(right.hash);
    h.finalize().into()
}

/// Hash of a list of roots: what a feed signs.
pub fn tree_hash(roots: &[crate::Node]) -> Hash {
    let mut h = Blake2b256::new();
    h.update([ROOT_TYPE]);
    for root in roots {
        h.update(root.hash);
        h.update(root.index.to_be_bytes());
        h.update(root.size.to_be_bytes());
    }
    h.finalize().into()
}

/// The discovery key of a feed: a keyed hash of the word `hypercore`, so peers
/// can find each other without revealing the key that reads the feed.
pub fn discovery_key(public_key: &[u8; 32]) -> [u8; 32] {
    let mut mac = <Blake2bMac<U32> as Mac>::new_from_slice(public_key).expect("32-byte key");
    mac.update(b"hypercore");
    mac.finalize().into_bytes().into()
}

/// libsodium's `crypto_kdf_derive_from_key`: a 32-byte subkey of `key` for a
/// numeric id and an 8-byte context.
pub fn derive_subkey(key: &[u8; 32], subkey_id: u64, context: &[u8; 8]) -> [u8; 32] {
    let mut salt = [0u8; 16];
    salt[..8].copy_from_slice(&subkey_id.to_le_bytes());
    let mut persona = [0u8; 16];
    persona[..8].copy_from_slice(context);
    let mac = Blake2bMac::<U32>::new_with_salt_and_personal(key, &salt, &persona)
        .expect("valid key, salt and persona sizes");
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pair_round_trips_through_the_secret_key() {
        let pair = KeyPair::generate();
        let again = KeyPair::from_secret_key(&pair.secret_key).unwrap();
        assert_eq!(pair.public_key, again.public_key);
        let mut bad = pair.secret_key;
        bad[40] ^= 1;
        assert!(KeyPair::from_secret_key(&bad).is_none());
    }

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let pair = KeyPair::generate();
        let sig = sign(&pair.signing_key(), b"hello");
        assert!(verify(&pair.public_key, b"hello", &sig));
        assert!(!verify(&pair.public_key, b"hellO", &sig));
        assert!(!verify(&pair.public_key, b"hello", &sig[..10]));
    }
}
