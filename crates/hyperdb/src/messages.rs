//! The protobuf messages of hyperdb 3.5.0's `schema.proto`, field for field.
//!
//! Every block of a writer's feed after the `Header` at seq 0 is an `Entry`,
//! or an `InflatedEntry` when it also lists the writer's feeds. Both encode
//! fields in tag order as the reference does, `clock` unpacked (proto2).

use prost::Message;

/// Block 0 of every writer's feed.
#[derive(Clone, PartialEq, Message)]
pub struct Header {
    /// Always `hyperdb`.
    #[prost(string, required, tag = "1")]
    pub protocol: String,
}

/// A feed listed in an inflated entry.
#[derive(Clone, PartialEq, Message)]
pub struct FeedKey {
    /// The feed's public key.
    #[prost(bytes = "vec", required, tag = "1")]
    pub key: Vec<u8>,
}

/// Only the key of an entry (what the key index reads of every entry).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct EntryKey {
    /// The key written.
    #[prost(string, required, tag = "1")]
    pub key: String,
}

/// A write (put, delete or authorization), and with `feeds` set the list of
/// the writer's feeds: `Entry` and `InflatedEntry` share fields 1 to 6, so
/// one type decodes both.
#[derive(Clone, PartialEq, Message)]
pub struct InflatedEntry {
    /// The key written.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// The value; absent for deletes and authorizations.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub value: Option<Vec<u8>>,
    /// Present (true) on deletes.
    #[prost(bool, optional, tag = "3")]
    pub deleted: Option<bool>,
    /// The trie, encoded as `lib/trie-encoding.js` does (a slice of the
    /// block it was decoded from, when that was [`bytes::Bytes`]).
    #[prost(bytes = "bytes", required, tag = "4")]
    pub trie: bytes::Bytes,
    /// Vector clock: for each feed in the writer's numbering, its length.
    #[prost(uint64, repeated, packed = "false", tag = "5")]
    pub clock: Vec<u64>,
    /// Seq of the writer's latest inflated entry.
    #[prost(uint64, optional, tag = "6")]
    pub inflate: Option<u64>,
    /// The writer's feeds (inflated entries only).
    #[prost(message, repeated, tag = "7")]
    pub feeds: Vec<FeedKey>,
    /// The writer's content feed (inflated entries of databases with one).
    #[prost(bytes = "vec", optional, tag = "8")]
    pub content_feed: Option<Vec<u8>>,
    /// A change of who may write (inflated entries only; see
    /// [`crate::policy`]). Not in hyperdb 3.5.0's schema: its decoder skips
    /// the field, so its peers read such entries as authorizations.
    #[prost(message, optional, tag = "16")]
    pub policy: Option<PolicyRecord>,
}

/// A signed change of permissions, carried by an inflated entry.
#[derive(Clone, PartialEq, Message)]
pub struct PolicyRecord {
    /// What it does: one of the constants below; other values are kept
    /// for later kinds and change nothing here.
    #[prost(uint32, required, tag = "1")]
    pub action: u32,
    /// The writer's feed key (grants and revocations).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub writer: Option<Vec<u8>>,
    /// A grant that makes the writer an admin (the owner's only).
    #[prost(bool, optional, tag = "3")]
    pub admin: Option<bool>,
    /// A grant's prefixes: the writer writes only under them (none: anywhere).
    #[prost(string, repeated, tag = "4")]
    pub prefixes: Vec<String>,
    /// The prefix a restriction is about.
    #[prost(string, optional, tag = "5")]
    pub prefix: Option<String>,
    /// The writers a restriction still lets write under its prefix.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub writers: Vec<Vec<u8>>,
}

impl PolicyRecord {
    /// Authorizes a writer (again, after a revocation it has seen).
    pub const GRANT: u32 = 1;
    /// Revokes a writer from the entries its issuer had not seen on.
    pub const REVOKE: u32 = 2;
    /// Lets only some writers (and the owner and admins) write under a prefix.
    pub const RESTRICT: u32 = 3;
    /// Lifts the restrictions of a prefix that it has seen.
    pub const UNRESTRICT: u32 = 4;
}

impl InflatedEntry {
    /// Encodes to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

/// Decodes an entry (an `Entry` or `InflatedEntry` block).
pub fn decode_entry(bytes: &[u8]) -> Result<InflatedEntry, prost::DecodeError> {
    InflatedEntry::decode(bytes)
}

impl Header {
    /// The header every hyperdb feed starts with.
    pub fn hyperdb() -> Self {
        Header {
            protocol: "hyperdb".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_match_the_reference() {
        // Header.encode({protocol: 'hyperdb'}) in hyperdb 3.5.0.
        assert_eq!(
            hex::encode(Header::hyperdb().encode_to_vec()),
            "0a0768797065726462"
        );
    }
}
