//! A feed opened over arbitrary file contents (`key`, `secret_key`, `tree`,
//! `data`, `bitfield`, `signatures`, each prefixed by a 2-byte length):
//! opening fails with an error or gives a feed whose blocks read back as
//! verified or fail with an error, read-only and writable (which repairs).
#![no_main]

use hypercore_feed::storage::FEED_FILES;
use hypercore_feed::{Feed, FeedOptions, MemoryStorage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let storage = MemoryStorage::new();
    let mut rest = data;
    for name in FEED_FILES {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        if len > 0 || name == "key" {
            storage.set_contents(name, tail[..len].to_vec());
        }
        rest = &tail[len..];
    }
    for read_only in [true, false] {
        let files = storage.deep_copy();
        let options = FeedOptions {
            create_if_missing: false,
            read_only,
            ..Default::default()
        };
        let Ok(mut feed) = Feed::open(files, options) else {
            continue;
        };
        let len = feed.len();
        for index in [0, len / 2, len.saturating_sub(1), len] {
            if feed.has(index) {
                let _ = feed.get(index);
            }
        }
        if len <= 4096 {
            let _ = feed.audit();
        }
    }
});
