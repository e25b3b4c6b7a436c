//! A peer's bytes on an encrypted stream: a real first frame (plaintext,
//! with the sender's nonce), then the input encrypted as that sender would
//! (the feed's key and its nonce), cut where the input says. The receiver
//! decrypts it back to the input, so the fuzzer steers the frames it sees.
#![no_main]

use hypercore_wire::{Protocol, ProtocolOptions, XSalsa20, MAX_FRAME};
use hyperdb_fuzz::first_frame;
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [9; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let (first, nonce) = first_frame(&KEY);
    let mut receiver = Protocol::new(ProtocolOptions {
        id: [1; 32],
        ..Default::default()
    });
    receiver.open(&KEY).expect("opens");
    receiver.receive(&first).expect("a real first frame");
    let mut stream = bytes.to_vec();
    XSalsa20::new(&KEY, &nonce).apply_keystream(&mut stream);
    for piece in stream.chunks(usize::from(cut).max(1)) {
        if receiver.receive(piece).is_err() {
            return;
        }
        while receiver.next_event().is_some() {}
        assert!(receiver.input_len() as u64 <= MAX_FRAME + 16);
    }
});
