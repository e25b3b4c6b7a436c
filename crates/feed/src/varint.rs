//! Unsigned LEB128 varints, as protobuf and hypercore's framing use them.

/// Appends the varint encoding of `n`.
#[inline]
pub fn encode(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Number of bytes `n` takes as a varint.
pub fn encoding_length(n: u64) -> usize {
    (64 - (n | 1).leading_zeros()).div_ceil(7) as usize
}

/// Decodes a varint at the start of `buf`: the value and the bytes it used;
/// `None` when it is truncated or longer than ten bytes.
#[inline(always)]
pub fn decode(buf: &[u8]) -> Option<(u64, usize)> {
    // Most varints in entries and tries are one byte: that test is inlined
    // into every caller (a trie decodes a hundred of them), the rest is not.
    if let Some(&byte) = buf.first() {
        if byte < 0x80 {
            return Some((u64::from(byte), 1));
        }
    }
    decode_long(buf)
}

#[inline]
fn decode_long(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        // At most 63: the tenth byte's bits past the 64th are dropped.
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        for n in [0u64, 1, 127, 128, 300, 1 << 32, u64::MAX] {
            let mut buf = vec![];
            super::encode(n, &mut buf);
            assert_eq!(buf.len(), super::encoding_length(n));
            assert_eq!(super::decode(&buf), Some((n, buf.len())));
        }
        assert_eq!(super::decode(&[0x80]), None);
    }
}
