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
    // Seqs of pointers in a feed of up to 2^21 entries take two or three
    // bytes: those without the loop.
    if let [b0, b1, rest @ ..] = buf {
        let low = u64::from(b0 & 0x7f) | u64::from(b1 & 0x7f) << 7;
        if b1 & 0x80 == 0 {
            return Some((low, 2));
        }
        if let Some(&b2) = rest.first() {
            if b2 & 0x80 == 0 {
                return Some((low | u64::from(b2) << 14, 3));
            }
        }
    }
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

    /// What [`super::decode`] must give, worked out another way: the bytes
    /// up to the first without its high bit (within ten), their low seven
    /// bits taken most significant last.
    fn reference(buf: &[u8]) -> Option<(u64, usize)> {
        let last = buf.iter().take(10).position(|b| b & 0x80 == 0)?;
        let value = buf[..=last]
            .iter()
            .rev()
            .fold(0u64, |value, &b| value << 7 | u64::from(b & 0x7f));
        Some((value, last + 1))
    }

    proptest::proptest! {
        #[test]
        fn decodes_any_bytes_as_defined(buf in proptest::collection::vec(proptest::num::u8::ANY, 0..12)) {
            proptest::prop_assert_eq!(super::decode(&buf), reference(&buf));
        }

        #[test]
        fn round_trips_any_number(n in proptest::num::u64::ANY, tail in proptest::collection::vec(proptest::num::u8::ANY, 0..3)) {
            let mut buf = vec![];
            super::encode(n, &mut buf);
            let used = buf.len();
            buf.extend(tail);
            proptest::prop_assert_eq!(super::decode(&buf), Some((n, used)));
        }
    }
}
