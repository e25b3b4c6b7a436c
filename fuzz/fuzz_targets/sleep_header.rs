//! The 32-byte headers of `bitfield`, `signatures` and `tree`: a check of
//! any bytes says yes or why not, and accepts only headers that say what
//! the one written says (the padding after the algorithm's name is not
//! read, as hypercore does not read it).
#![no_main]

use hypercore_feed::sleep::HeaderKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [
        HeaderKind::Bitfield,
        HeaderKind::Signatures,
        HeaderKind::Tree,
    ] {
        match kind.check(data) {
            Ok(()) => {
                let real = kind.encode();
                let meaningful = 8 + usize::from(real[7]);
                assert_eq!(
                    &data[..meaningful],
                    &real[..meaningful],
                    "only the real header passes"
                );
            }
            Err(reason) => assert!(!reason.is_empty()),
        }
    }
});
