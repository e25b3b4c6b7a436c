//! A peer's bytes on an unencrypted stream, cut into pieces where the input
//! says (frames arrive split anywhere): errors end the stream, nothing
//! panics, and what waits to be parsed stays bounded.
#![no_main]

use hypercore_wire::{Protocol, ProtocolOptions, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let mut protocol = Protocol::new(ProtocolOptions {
        id: [1; 32],
        encrypted: false,
        ..Default::default()
    });
    protocol.open(&[9; 32]).expect("opens");
    for piece in bytes.chunks(usize::from(cut).max(1)) {
        if protocol.receive(piece).is_err() {
            return;
        }
        while protocol.next_event().is_some() {}
        assert!(protocol.input_len() as u64 <= MAX_FRAME + 16);
    }
    let _ = protocol.tick();
});
