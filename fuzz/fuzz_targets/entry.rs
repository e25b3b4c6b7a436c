//! hyperdb's `Header` and `InflatedEntry` messages (an `Entry` is an
//! `InflatedEntry` without its feed list) as stored in a writer's feed:
//! garbage is an error, and what decodes encodes to bytes that decode the
//! same. A permission record that decodes to a `Record` encodes back to the
//! same record.
#![no_main]

use hyperdb::messages::{decode_entry, Header};
use hyperdb::Record;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = decode_entry(data) {
        let again = decode_entry(&entry.to_bytes()).expect("our own encoding decodes");
        assert_eq!(again, entry);
        if let Some(record) = entry.policy.as_ref().and_then(Record::decode) {
            assert_eq!(Record::decode(&record.encode()), Some(record));
        }
    }
    if let Ok(header) = Header::decode(data) {
        let again = Header::decode(header.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(again, header);
    }
});
