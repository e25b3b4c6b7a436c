//! A multicast DNS packet from anyone on the network: read without a
//! panic, naming peers only for the topic asked about.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let topic = [7u8; 20];
    let heard = hyperdb_discovery::mdns::read(data, Ipv4Addr::new(10, 0, 0, 2), &topic, "own");
    // Each peer came from a record of at most a packet's size.
    assert!(heard.peers.len() <= data.len() / 6 + 1);
});
