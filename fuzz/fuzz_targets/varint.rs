//! LEB128 varints as the feed files and the wire read them: a decoded value
//! never claims more bytes than it was given, and encodes back to a prefix
//! that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    type Decode = fn(&[u8]) -> Option<(u64, usize)>;
    type Encode = fn(u64, &mut Vec<u8>);
    let codecs: [(Decode, Encode); 2] = [
        (
            hypercore_feed::varint::decode,
            hypercore_feed::varint::encode,
        ),
        (
            hypercore_wire::varint::decode,
            hypercore_wire::varint::encode,
        ),
    ];
    for (decode, encode) in codecs {
        if let Some((value, used)) = decode(data) {
            assert!(used >= 1 && used <= data.len());
            let mut again = Vec::new();
            encode(value, &mut again);
            assert_eq!(decode(&again), Some((value, again.len())));
        }
    }
});
