//! The 32-byte SLEEP header at the start of the `bitfield`, `tree` and
//! `signatures` files: magic `05 02 57`, a file type, version 0, the size of
//! one entry (big-endian u16), then the length and name of the algorithm.

/// Length of every header.
pub const HEADER_SIZE: u64 = 32;

/// The files that carry a header, with what hypercore 6 writes in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// `bitfield`: type 0, 3,584-byte pages, no algorithm.
    Bitfield,
    /// `signatures`: type 1, 64-byte entries, `Ed25519`.
    Signatures,
    /// `tree`: type 2, 40-byte nodes, `BLAKE2b`.
    Tree,
}

impl HeaderKind {
    fn file_type(self) -> u8 {
        match self {
            HeaderKind::Bitfield => 0,
            HeaderKind::Signatures => 1,
            HeaderKind::Tree => 2,
        }
    }

    fn entry_size(self) -> u16 {
        match self {
            HeaderKind::Bitfield => crate::bitfield::PAGE_SIZE as u16,
            HeaderKind::Signatures => 64,
            HeaderKind::Tree => 40,
        }
    }

    fn algorithm(self) -> &'static str {
        match self {
            HeaderKind::Bitfield => "",
            HeaderKind::Signatures => "Ed25519",
            HeaderKind::Tree => "BLAKE2b",
        }
    }

    /// The header hypercore 6 writes for this file.
    pub fn encode(self) -> [u8; 32] {
        let mut buf = [0u8; 32];
        buf[..4].copy_from_slice(&[5, 2, 87, self.file_type()]);
        buf[5..7].copy_from_slice(&self.entry_size().to_be_bytes());
        let name = self.algorithm().as_bytes();
        buf[7] = name.len() as u8;
        buf[8..8 + name.len()].copy_from_slice(name);
        buf
    }

    /// Checks a header read from disk; the error says what is wrong.
    pub fn check(self, header: &[u8]) -> Result<(), String> {
        if header.len() < HEADER_SIZE as usize {
            return Err(format!(
                "the header is truncated ({} of 32 bytes)",
                header.len()
            ));
        }
        if header[..3] != [5, 2, 87] {
            return Err(format!(
                "bad magic number {:02x}{:02x}{:02x} (expected 050257): not a SLEEP file",
                header[0], header[1], header[2]
            ));
        }
        if header[3] != self.file_type() {
            return Err(format!(
                "file type {} where {} was expected",
                header[3],
                self.file_type()
            ));
        }
        if header[4] != 0 {
            return Err(format!("unsupported SLEEP version {}", header[4]));
        }
        let size = u16::from_be_bytes([header[5], header[6]]);
        if size != self.entry_size() {
            return Err(format!(
                "entry size {size} where {} was expected",
                self.entry_size()
            ));
        }
        let name_len = header[7] as usize;
        let name = header
            .get(8..8 + name_len)
            .ok_or("algorithm name overflows the header")?;
        if name != self.algorithm().as_bytes() {
            return Err(format!(
                "algorithm {:?} where {:?} was expected",
                String::from_utf8_lossy(name),
                self.algorithm()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_hypercore() {
        // The first 32 bytes of the tree file in hypercore 6's compat test.
        assert_eq!(
            hex::encode(HeaderKind::Tree.encode()),
            "0502570200002807424c414b4532620000000000000000000000000000000000"
        );
        assert_eq!(
            hex::encode(HeaderKind::Signatures.encode()),
            "050257010000400745643235353139000000000000000000000000000000000000"[..64]
        );
        for kind in [
            HeaderKind::Bitfield,
            HeaderKind::Signatures,
            HeaderKind::Tree,
        ] {
            assert_eq!(kind.check(&kind.encode()), Ok(()));
        }
    }

    #[test]
    fn bad_headers_say_why() {
        let mut h = HeaderKind::Tree.encode();
        h[0] = 9;
        assert!(HeaderKind::Tree.check(&h).unwrap_err().contains("magic"));
        let mut h = HeaderKind::Tree.encode();
        h[8] = b'X';
        assert!(HeaderKind::Tree
            .check(&h)
            .unwrap_err()
            .contains("algorithm"));
        assert!(HeaderKind::Tree
            .check(&HeaderKind::Signatures.encode())
            .unwrap_err()
            .contains("file type"));
        assert!(HeaderKind::Tree
            .check(&[5, 2])
            .unwrap_err()
            .contains("truncated"));
    }
}
