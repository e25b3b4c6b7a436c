//! The run-length encoding of bitfields peers send in `Have` messages:
//! decoding stays within its bound, and what decodes encodes back to
//! something that decodes the same.
#![no_main]

use hypercore_feed::rle;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    if let Ok(bits) = rle::decode(data, MAX) {
        assert!(bits.len() <= MAX);
        let encoded = rle::encode(&bits);
        let again = rle::decode(&encoded, MAX).expect("our own encoding decodes");
        // Encoding may drop trailing zero bytes; what is left is the same.
        assert!(again.len() <= bits.len());
        assert_eq!(&again[..], &bits[..again.len()]);
        assert!(bits[again.len()..].iter().all(|&b| b == 0));
    }
});
