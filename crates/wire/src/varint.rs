//! The LEB128 varints of frame lengths, headers and extension ids, with
//! prost's encoding functions.

use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};

/// Appends `value` as a varint.
pub fn encode(value: u64, out: &mut Vec<u8>) {
    encode_varint(value, out);
}

/// How many bytes `value` takes as a varint.
pub fn encoding_length(value: u64) -> usize {
    encoded_len_varint(value)
}

/// The varint at the start of `bytes` and how many bytes it took; `None`
/// when `bytes` ends first or the varint is longer than 10 bytes.
pub fn decode(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut rest = bytes;
    let value = decode_varint(&mut rest).ok()?;
    Some((value, bytes.len() - rest.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_stop_at_the_end() {
        for value in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            encode(value, &mut buf);
            assert_eq!(buf.len(), encoding_length(value));
            assert_eq!(decode(&buf), Some((value, buf.len())));
            assert_eq!(decode(&buf[..buf.len() - 1]), None, "truncated");
        }
        assert_eq!(decode(&[0x80; 11]), None, "too long");
    }
}
