//! A `bitfield` file's pages as read from disk: any bytes make a bitfield
//! whose questions are answered without a panic, and whose pages write back
//! what was read.
#![no_main]

use hypercore_feed::bitfield::Bitfield;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Bounded: a bitfield file is read page by page, 3,584 bytes each.
    if data.len() > 64 * 3584 {
        return;
    }
    let mut bitfield = Bitfield::from_pages(data);
    let len = bitfield.data_len();
    let probe = data.len() as u64 * 8 / 3;
    let _ = bitfield.get(probe);
    let _ = bitfield.get(len);
    let _ = bitfield.next_missing(0, len);
    let _ = bitfield.count(0, len.min(1 << 20));
    let _ = bitfield.total(0, len.min(1 << 20));
    let _ = bitfield.compress(0, len.min(1 << 20));
    let before = bitfield.get(probe);
    bitfield.set(probe, !before);
    assert_eq!(bitfield.get(probe), !before);
});
