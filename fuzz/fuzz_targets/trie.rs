//! The trie field of an entry: pointers to other writers' entries, in the
//! writer's numbering of feeds (the first input byte says how many feeds it
//! lists). Garbage or a pointer to a feed it does not list is an error;
//! what decodes encodes back to the same trie.
#![no_main]

use hyperdb::trie::Trie;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&feeds, rest)) = data.split_first() else {
        return;
    };
    let feeds = usize::from(feeds % 8);
    // Writer's number i is local id i.
    let decode_map: Vec<usize> = (0..feeds).collect();
    if let Ok(trie) = Trie::decode(rest, &decode_map) {
        let encode_map: Vec<Option<usize>> = (0..feeds).map(Some).collect();
        let again =
            Trie::decode(&trie.encode(&encode_map), &decode_map).expect("our own encoding decodes");
        assert_eq!(again, trie);
    }
});
