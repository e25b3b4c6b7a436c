//! XSalsa20, the stream cipher of hypercore-protocol 6.
//!
//! Every byte on an encrypted stream is XORed with this keystream once by
//! the sender and once by the receiver, which made the cipher the largest
//! single cost of replication. The `salsa20` crate computes one 64-byte
//! block at a time; here, on x86-64 CPUs with AVX2, runs of whole blocks are
//! computed eight at a time, one block per 32-bit lane of the 256-bit
//! registers, which doubles throughput. The crate computes the rest (the
//! bytes before and after those runs, and everything on other CPUs), and
//! its HSalsa20 gives the subkey the wide path needs. The tests check the
//! keystream byte for byte against the crate's `XSalsa20`.

use salsa20::cipher::consts::U10;
use salsa20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

/// "expand 32-byte k", the Salsa20 constants.
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// The XSalsa20 keystream for one key and nonce, applied in order.
///
/// ```
/// let key = [7u8; 32];
/// let nonce = [9u8; 24];
/// let mut message = *b"a message";
/// hypercore_wire::XSalsa20::new(&key, &nonce).apply_keystream(&mut message);
/// assert_ne!(&message, b"a message");
/// // Applying the same keystream again restores the message.
/// hypercore_wire::XSalsa20::new(&key, &nonce).apply_keystream(&mut message);
/// assert_eq!(&message, b"a message");
/// ```
pub struct XSalsa20 {
    /// The crate's cipher, for everything the wide path does not compute.
    narrow: salsa20::XSalsa20,
    /// Bytes of keystream used so far.
    position: u64,
    /// The Salsa20 input of the wide path: constants, subkey and nonce
    /// (words 8 and 9, the block counter, are set per block); `None` when
    /// the CPU has no AVX2.
    wide: Option<[u32; 16]>,
}

impl std::fmt::Debug for XSalsa20 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("XSalsa20").finish_non_exhaustive()
    }
}

impl XSalsa20 {
    /// The keystream of `key` and the 24-byte `nonce`, from its start.
    pub fn new(key: &[u8; 32], nonce: &[u8; 24]) -> Self {
        let narrow = salsa20::XSalsa20::new(key.into(), nonce.into());
        let wide = wide::available().then(|| {
            let subkey = salsa20::hsalsa::<U10>(key.into(), nonce[..16].into());
            let word = |bytes: &[u8], i: usize| {
                u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"))
            };
            let k = |i| word(&subkey, i);
            let n = |i| word(&nonce[16..], i);
            [
                SIGMA[0],
                k(0),
                k(1),
                k(2),
                k(3),
                SIGMA[1],
                n(0),
                n(1),
                0,
                0,
                SIGMA[2],
                k(4),
                k(5),
                k(6),
                k(7),
                SIGMA[3],
            ]
        });
        XSalsa20 {
            narrow,
            position: 0,
            wide,
        }
    }

    /// XORs `data` with the next `data.len()` bytes of keystream.
    pub fn apply_keystream(&mut self, data: &mut [u8]) {
        let head = ((64 - self.position % 64) % 64) as usize;
        let (Some(input), true) = (self.wide, data.len() >= head + 512) else {
            self.narrow.apply_keystream(data);
            self.position += data.len() as u64;
            return;
        };
        // Up to a block boundary, then whole runs of eight blocks, then the
        // rest, the crate seeking past what the wide path computed.
        let (first, rest) = data.split_at_mut(head);
        self.narrow.apply_keystream(first);
        self.position += head as u64;
        let runs = rest.len() / 512;
        let (middle, last) = rest.split_at_mut(runs * 512);
        let mut keystream = [0u8; 512];
        for chunk in middle.chunks_exact_mut(512) {
            wide::blocks8(&input, self.position / 64, &mut keystream);
            xor(chunk, &keystream);
            self.position += 512;
        }
        self.narrow.seek(self.position);
        self.narrow.apply_keystream(last);
        self.position += last.len() as u64;
    }
}

/// `data ^= keystream`, eight bytes at a time (both hold a multiple of 8).
fn xor(data: &mut [u8], keystream: &[u8]) {
    debug_assert!(data.len().is_multiple_of(8) && data.len() == keystream.len());
    for (d, k) in data.chunks_exact_mut(8).zip(keystream.chunks_exact(8)) {
        let v = u64::from_ne_bytes((&*d).try_into().expect("8 bytes"))
            ^ u64::from_ne_bytes(k.try_into().expect("8 bytes"));
        d.copy_from_slice(&v.to_ne_bytes());
    }
}

/// The Salsa20 double round's eight quarter rounds, as (a, b, c, d).
#[cfg(target_arch = "x86_64")]
const QUARTER_ROUNDS: [[usize; 4]; 8] = [
    [0, 4, 8, 12],
    [5, 9, 13, 1],
    [10, 14, 2, 6],
    [15, 3, 7, 11],
    [0, 1, 2, 3],
    [5, 6, 7, 4],
    [10, 11, 8, 9],
    [15, 12, 13, 14],
];

#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    /// Whether this CPU has AVX2.
    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx2")
    }

    /// Eight blocks of keystream, from block `counter` on.
    ///
    /// Only called when [`available`] said yes.
    pub(super) fn blocks8(input: &[u32; 16], counter: u64, out: &mut [u8; 512]) {
        // SAFETY: callers hold the wide path's input only when `available()`
        // said yes (`XSalsa20::new` sets it no other way), so the CPU has
        // AVX2.
        unsafe { blocks8_avx2(input, counter, out) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn rotate<const LEFT: i32, const RIGHT: i32>(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi32::<LEFT>(x), _mm256_srli_epi32::<RIGHT>(x))
    }

    #[target_feature(enable = "avx2")]
    fn blocks8_avx2(input: &[u32; 16], counter: u64, out: &mut [u8; 512]) {
        // Lane l of register i holds word i of block `counter + l`.
        let counters: [u64; 8] = std::array::from_fn(|l| counter.wrapping_add(l as u64));
        let low = |l: usize| counters[l] as i32;
        let high = |l: usize| (counters[l] >> 32) as i32;
        let mut init = [_mm256_setzero_si256(); 16];
        for (i, word) in init.iter_mut().enumerate() {
            *word = match i {
                8 => _mm256_set_epi32(
                    low(7),
                    low(6),
                    low(5),
                    low(4),
                    low(3),
                    low(2),
                    low(1),
                    low(0),
                ),
                9 => _mm256_set_epi32(
                    high(7),
                    high(6),
                    high(5),
                    high(4),
                    high(3),
                    high(2),
                    high(1),
                    high(0),
                ),
                _ => _mm256_set1_epi32(input[i] as i32),
            };
        }
        let mut x = init;
        for _ in 0..10 {
            for [a, b, c, d] in super::QUARTER_ROUNDS {
                x[b] = _mm256_xor_si256(x[b], rotate::<7, 25>(_mm256_add_epi32(x[a], x[d])));
                x[c] = _mm256_xor_si256(x[c], rotate::<9, 23>(_mm256_add_epi32(x[b], x[a])));
                x[d] = _mm256_xor_si256(x[d], rotate::<13, 19>(_mm256_add_epi32(x[c], x[b])));
                x[a] = _mm256_xor_si256(x[a], rotate::<18, 14>(_mm256_add_epi32(x[d], x[c])));
            }
        }
        for i in 0..16 {
            x[i] = _mm256_add_epi32(x[i], init[i]);
        }
        // Transpose: words 4g..4g+4 of each block are 16 contiguous bytes.
        // Unpacking works within each 128-bit half, so the low half yields
        // blocks 0-3 and the high half blocks 4-7.
        for g in 0..4 {
            let (a, b, c, d) = (x[4 * g], x[4 * g + 1], x[4 * g + 2], x[4 * g + 3]);
            let ab_low = _mm256_unpacklo_epi32(a, b);
            let ab_high = _mm256_unpackhi_epi32(a, b);
            let cd_low = _mm256_unpacklo_epi32(c, d);
            let cd_high = _mm256_unpackhi_epi32(c, d);
            let rows = [
                _mm256_unpacklo_epi64(ab_low, cd_low),
                _mm256_unpackhi_epi64(ab_low, cd_low),
                _mm256_unpacklo_epi64(ab_high, cd_high),
                _mm256_unpackhi_epi64(ab_high, cd_high),
            ];
            for (k, row) in rows.into_iter().enumerate() {
                // SAFETY: both types are 32 bytes of plain data.
                let bytes: [u8; 32] = unsafe { std::mem::transmute(row) };
                let (low, high) = (k * 64 + g * 16, (k + 4) * 64 + g * 16);
                out[low..low + 16].copy_from_slice(&bytes[..16]);
                out[high..high + 16].copy_from_slice(&bytes[16..]);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod wide {
    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn blocks8(_: &[u32; 16], _: u64, _: &mut [u8; 512]) {
        unreachable!("never available on this architecture")
    }
}

#[cfg(test)]
mod tests {
    use super::XSalsa20;
    use proptest::prelude::*;
    use salsa20::cipher::{KeyIvInit, StreamCipher};

    /// Applies the keystream in pieces of the given lengths, with and
    /// without the wide path, and with the `salsa20` crate.
    fn check(key: [u8; 32], nonce: [u8; 24], pieces: &[usize]) {
        let total: usize = pieces.iter().sum();
        let plain: Vec<u8> = (0..total).map(|i| (i * 31 % 251) as u8).collect();
        let mut expected = plain.clone();
        salsa20::XSalsa20::new(&key.into(), &nonce.into()).apply_keystream(&mut expected);
        for wide in [false, true] {
            let mut cipher = XSalsa20::new(&key, &nonce);
            if !wide {
                cipher.wide = None;
            }
            let mut ours = plain.clone();
            let mut at = 0;
            for &n in pieces {
                cipher.apply_keystream(&mut ours[at..at + n]);
                at += n;
            }
            assert_eq!(ours, expected, "wide: {wide}, pieces {pieces:?}");
        }
    }

    #[test]
    fn long_runs_match_the_salsa20_crate() {
        check([1; 32], [2; 24], &[100_000]);
        check(
            [3; 32],
            [4; 24],
            &[1, 511, 512, 513, 4096, 63, 64, 65, 0, 7],
        );
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_wide_path_carries_the_counter_into_its_high_word() {
        let Some(input) = XSalsa20::new(&[5; 32], &[6; 24]).wide else {
            return; // no AVX2 here: nothing to compare
        };
        let first = u32::MAX as u64 - 3;
        let mut wide = [0u8; 512];
        super::wide::blocks8(&input, first, &mut wide);
        let mut narrow = salsa20::XSalsa20::new(&[5; 32].into(), &[6; 24].into());
        salsa20::cipher::StreamCipherSeek::seek(&mut narrow, first * 64);
        let mut expected = [0u8; 512];
        narrow.apply_keystream(&mut expected);
        assert_eq!(wide, expected);
    }

    proptest! {
        #[test]
        fn any_split_matches_the_salsa20_crate(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 24]>(),
            pieces in proptest::collection::vec(0usize..1500, 0..12),
        ) {
            check(key, nonce, &pieces);
        }
    }
}
