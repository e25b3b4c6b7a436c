//! The cryptography of hypercore 6: ed25519 key pairs and signatures, and
//! BLAKE2b-256 hashes of leaves, parents and roots with type prefixes (so a
//! leaf can never be passed off as a parent), and the discovery key.
//!
//! The tree's hashes, computed for every block written, read or received,
//! use `blake2b_simd`, which picks AVX2 at run time; the keyed hashes,
//! computed once per feed or connection, use RustCrypto's `blake2`.

use blake2::digest::consts::U32;
use blake2::digest::Mac;
use blake2::Blake2bMac;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

/// A 32-byte BLAKE2b-256 digest.
pub type Hash = [u8; 32];

/// A BLAKE2b-256 hasher (unkeyed).
fn blake2b256() -> blake2b_simd::State {
    blake2b_simd::Params::new().hash_length(32).to_state()
}

fn digest(state: &blake2b_simd::State) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(state.finalize().as_bytes());
    out
}

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
    let mut h = blake2b256();
    // Small blocks (most entries) go in as one input: the hasher's
    // buffering of three pieces costs more than copying the block.
    let mut input = [0u8; 1024];
    if let Some(rest) = input.get_mut(9..9 + data.len()) {
        rest.copy_from_slice(data);
        input[0] = LEAF_TYPE;
        input[1..9].copy_from_slice(&(data.len() as u64).to_be_bytes());
        h.update(&input[..9 + data.len()]);
    } else {
        h.update(&[LEAF_TYPE]);
        h.update(&(data.len() as u64).to_be_bytes());
        h.update(data);
    }
    digest(&h)
}

/// The hashes of several blocks, as [`leaf_hash`] gives each: hashed side
/// by side (four at once with AVX2), which for blocks of a few hundred
/// bytes takes about half the time of hashing them one by one.
pub fn leaf_hashes(blocks: &[&[u8]]) -> Vec<Hash> {
    if let [block] = blocks {
        return vec![leaf_hash(block)];
    }
    let mut inputs = Vec::with_capacity(blocks.iter().map(|b| b.len() + 9).sum());
    for block in blocks {
        inputs.push(LEAF_TYPE);
        inputs.extend_from_slice(&(block.len() as u64).to_be_bytes());
        inputs.extend_from_slice(block);
    }
    let mut params = blake2b_simd::Params::new();
    params.hash_length(32);
    let mut rest = &inputs[..];
    let mut jobs: Vec<_> = blocks
        .iter()
        .map(|block| {
            let (input, after) = rest.split_at(block.len() + 9);
            rest = after;
            blake2b_simd::many::HashManyJob::new(&params, input)
        })
        .collect();
    blake2b_simd::many::hash_many(jobs.iter_mut());
    jobs.iter()
        .map(|job| {
            let mut out = [0u8; 32];
            out.copy_from_slice(job.to_hash().as_bytes());
            out
        })
        .collect()
}

/// Hash of a parent from its two children (in any order) and their total size.
pub fn parent_hash(a: &crate::Node, b: &crate::Node) -> Hash {
    let (left, right) = if a.index > b.index { (b, a) } else { (a, b) };
    // One buffer, one update: the whole input is a single compression.
    let mut input = [0u8; 73];
    input[0] = PARENT_TYPE;
    input[1..9].copy_from_slice(&(left.size + right.size).to_be_bytes());
    input[9..41].copy_from_slice(&left.hash);
    input[41..].copy_from_slice(&right.hash);
    let mut h = blake2b256();
    h.update(&input);
    digest(&h)
}

/// Hash of a list of roots: what a feed signs.
pub fn tree_hash(roots: &[crate::Node]) -> Hash {
    let mut h = blake2b256();
    h.update(&[ROOT_TYPE]);
    for root in roots {
        h.update(&root.hash);
        h.update(&root.index.to_be_bytes());
        h.update(&root.size.to_be_bytes());
    }
    digest(&h)
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

    /// The tree's hashes, computed by RustCrypto's BLAKE2b: the SIMD one
    /// must give the same bytes for every input length.
    #[test]
    fn tree_hashes_match_rustcrypto_blake2b() {
        use blake2::digest::Digest;
        let reference = |parts: &[&[u8]]| -> Hash {
            let mut h = blake2::Blake2b::<U32>::new();
            for part in parts {
                h.update(part);
            }
            h.finalize().into()
        };
        let lens = [
            0usize, 1, 55, 119, 127, 128, 129, 200, 256, 1000, 1015, 1016, 5000,
        ];
        let blocks: Vec<Vec<u8>> = lens
            .iter()
            .map(|&len| (0..len).map(|i| (i * 7 + len) as u8).collect())
            .collect();
        for data in &blocks {
            let len = data.len();
            assert_eq!(
                leaf_hash(data),
                reference(&[&[LEAF_TYPE], &(len as u64).to_be_bytes(), data]),
                "leaf of {len} bytes"
            );
        }
        // Hashed side by side, in every count (the SIMD lanes are filled
        // four at a time, the rest one by one).
        for count in 0..=blocks.len() {
            let some: Vec<&[u8]> = blocks[..count].iter().map(Vec::as_slice).collect();
            let one_by_one: Vec<Hash> = some.iter().map(|b| leaf_hash(b)).collect();
            assert_eq!(leaf_hashes(&some), one_by_one, "{count} blocks");
        }
        let a = crate::Node {
            index: 0,
            size: 10,
            hash: [1; 32],
        };
        let b = crate::Node {
            index: 2,
            size: 20,
            hash: [2; 32],
        };
        let want = reference(&[&[PARENT_TYPE], &30u64.to_be_bytes(), &a.hash, &b.hash]);
        assert_eq!(parent_hash(&a, &b), want);
        assert_eq!(parent_hash(&b, &a), want, "children in either order");
        let roots = [a, b];
        let mut parts: Vec<Vec<u8>> = vec![vec![ROOT_TYPE]];
        for r in &roots {
            parts.extend([
                r.hash.to_vec(),
                r.index.to_be_bytes().to_vec(),
                r.size.to_be_bytes().to_vec(),
            ]);
        }
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        assert_eq!(tree_hash(&roots), reference(&parts));
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
