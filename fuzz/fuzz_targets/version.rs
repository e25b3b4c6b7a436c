//! Version bytes (`checkout VERSION`, `diff VERSION`): 32-byte keys each
//! followed by a varint seq. Garbage is an error; what parses writes back
//! to bytes that parse the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(heads) = hyperdb::parse_version(data) {
        let again = hyperdb::parse_version(&hyperdb::version_bytes(&heads)).expect("parses");
        assert_eq!(again, heads);
    }
});
