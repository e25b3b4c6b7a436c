//! The run-length encoding hypercore uses to send bitfields in Have messages
//! (the `bitfield-rle` format).
//!
//! The input is cut into runs of 0x00 or 0xFF bytes, encoded as a varint
//! `length << 2 | bit << 1 | 1`, and literal stretches, encoded as a varint
//! `length << 1` followed by the bytes. Trailing zero bytes are dropped.
//!
//! ```
//! use hypercore_feed::rle;
//! let bits = [255u8; 100];
//! let encoded = rle::encode(&bits);
//! assert_eq!(rle::decode(&encoded, 1 << 20).unwrap(), bits.to_vec());
//! ```

use crate::varint;

/// Encodes a bitfield.
pub fn encode(input: &[u8]) -> Vec<u8> {
    let mut len = input.len();
    while len > 0 && input[len - 1] == 0 {
        len -= 1;
    }
    let input = &input[..len];
    let mut out = Vec::new();
    let mut input_offset = 0usize;
    let mut run = 0usize;
    let mut bits = 0u8;
    for (i, &byte) in input.iter().enumerate() {
        if byte == bits {
            run += 1;
            continue;
        }
        if run > 0 {
            encode_update(input, &mut out, &mut input_offset, i, run, bits);
        }
        if byte == 0 || byte == 255 {
            bits = byte;
            run = 1;
        } else {
            run = 0;
        }
    }
    if run > 0 {
        encode_update(input, &mut out, &mut input_offset, input.len(), run, bits);
    }
    if input_offset < input.len() {
        encode_literal(input, &mut out, input_offset, input.len());
    }
    out
}

fn encode_literal(input: &[u8], out: &mut Vec<u8>, from: usize, to: usize) {
    varint::encode(2 * (to - from) as u64, out);
    out.extend_from_slice(&input[from..to]);
}

fn encode_update(
    input: &[u8],
    out: &mut Vec<u8>,
    input_offset: &mut usize,
    i: usize,
    run: usize,
    bits: u8,
) {
    let head = i - run - *input_offset;
    let head_cost = if head > 0 {
        varint::encoding_length(2 * head as u64) + head
    } else {
        0
    };
    let enc = 4 * run as u64 + if bits != 0 { 2 } else { 0 } + 1;
    let enc_cost = head_cost + varint::encoding_length(enc);
    let base_cost = varint::encoding_length(2 * (i - *input_offset) as u64) + i - *input_offset;
    if enc_cost >= base_cost {
        return;
    }
    if head > 0 {
        encode_literal(input, out, *input_offset, i - run);
    }
    varint::encode(enc, out);
    *input_offset = i;
}

/// Why an encoded bitfield was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RleError {
    /// A varint or literal runs past the end of the input.
    #[error("run-length encoded bitfield is truncated")]
    Truncated,
    /// The decoded bitfield would be larger than allowed.
    #[error("run-length encoded bitfield decodes to more than {0} bytes")]
    TooLarge(usize),
}

/// Decodes a bitfield, refusing one that decodes to more than `max_bytes`.
pub fn decode(mut input: &[u8], max_bytes: usize) -> Result<Vec<u8>, RleError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (next, used) = varint::decode(input).ok_or(RleError::Truncated)?;
        input = &input[used..];
        let repeat = next & 1 == 1;
        let len = if repeat { next >> 2 } else { next >> 1 };
        let len = usize::try_from(len).map_err(|_| RleError::TooLarge(max_bytes))?;
        if out.len().saturating_add(len) > max_bytes {
            return Err(RleError::TooLarge(max_bytes));
        }
        if repeat {
            let fill = if next & 2 != 0 { 255 } else { 0 };
            out.resize(out.len() + len, fill);
        } else {
            if input.len() < len {
                return Err(RleError::Truncated);
            }
            out.extend_from_slice(&input[..len]);
            input = &input[len..];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        // From the bitfield-rle test suite: runs collapse, literals stay.
        assert_eq!(encode(&[]), Vec::<u8>::new());
        assert_eq!(encode(&[0, 0, 0]), Vec::<u8>::new());
        let mut bits = vec![255u8; 16];
        bits.extend_from_slice(&[0; 16]);
        bits.push(1);
        let enc = encode(&bits);
        assert_eq!(decode(&enc, 1024).unwrap(), bits);
        assert!(enc.len() < bits.len());
    }

    #[test]
    fn round_trip_and_limits() {
        let mut bits = vec![0u8; 5000];
        for (i, b) in bits.iter_mut().enumerate() {
            *b = match i % 700 {
                0..=300 => 255,
                301..=310 => (i % 251) as u8,
                _ => 0,
            };
        }
        let enc = encode(&bits);
        let mut dec = decode(&enc, 10_000).unwrap();
        dec.resize(bits.len(), 0);
        assert_eq!(dec, bits);
        assert_eq!(decode(&enc, 100), Err(RleError::TooLarge(100)));
        assert_eq!(decode(&[0xff], 100), Err(RleError::Truncated));
        assert_eq!(decode(&[10, 1], 100), Err(RleError::Truncated));
    }
}
