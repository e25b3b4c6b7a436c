//! Two protocol state machines talking through memory: channels,
//! encryption, buffering, keep-alives and every kind of bad input.

use hypercore_wire::messages::{Data, DataNode, Have, Info, Request, Want};
use hypercore_wire::{Event, Message, Protocol, ProtocolOptions, WireError};
use proptest::prelude::*;

fn pair() -> (Protocol, Protocol) {
    (
        Protocol::new(ProtocolOptions::default()),
        Protocol::new(ProtocolOptions::default()),
    )
}

fn shuttle(from: &mut Protocol, to: &mut Protocol) -> Result<(), WireError> {
    let bytes = from.take_outgoing();
    to.receive(&bytes)
}

fn events(p: &mut Protocol) -> Vec<Event> {
    std::iter::from_fn(|| p.next_event()).collect()
}

fn messages(p: &mut Protocol) -> Vec<Message> {
    events(p)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_channels_and_messages_flow_both_ways() {
    let (mut a, mut b) = pair();
    let key = [1u8; 32];
    let other = [2u8; 32];
    let dk = a.open(&key).unwrap();
    a.open(&other).unwrap();
    b.open(&key).unwrap();
    shuttle(&mut a, &mut b).unwrap();
    shuttle(&mut b, &mut a).unwrap();
    let got = events(&mut b);
    assert!(got
        .iter()
        .any(|e| matches!(e, Event::Handshake(h) if h.live == Some(false))));
    assert!(got.contains(&Event::RemoteOpened(dk)));
    assert!(b.remote_opened(&hypercore_wire::discovery_key(&other)));
    assert!(a.remote_handshake().is_some());

    let data = Message::Data(Data {
        index: 3,
        value: Some(b"hello".to_vec().into()),
        nodes: vec![DataNode {
            index: 2,
            hash: [9; 32],
            size: 5,
        }],
        signature: Some(vec![1; 64].into()),
    });
    a.send(
        &dk,
        &Message::Want(Want {
            start: 0,
            length: Some(1 << 20),
        }),
    );
    a.send(&dk, &data);
    a.send(
        &dk,
        &Message::Info(Info {
            uploading: Some(true),
            downloading: Some(false),
        }),
    );
    shuttle(&mut a, &mut b).unwrap();
    let got = messages(&mut b);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1], data);
}

#[test]
fn everything_after_the_first_feed_message_is_encrypted() {
    let (mut a, _) = pair();
    a.open(&[3u8; 32]).unwrap();
    a.send(
        &hypercore_wire::discovery_key(&[3u8; 32]),
        &Message::Request(Request {
            index: 0,
            bytes: None,
            hash: None,
            nodes: Some(0),
        }),
    );
    let bytes = a.take_outgoing();
    let dk = hypercore_wire::discovery_key(&[3u8; 32]);
    // The discovery key is in the clear (first message) ...
    assert!(bytes.windows(32).any(|w| w == dk));
    // ... the handshake's id is not.
    let mut plain = Protocol::new(ProtocolOptions {
        encrypted: false,
        ..Default::default()
    });
    plain.open(&[3u8; 32]).unwrap();
    let clear = plain.take_outgoing();
    assert_ne!(bytes[bytes.len() - 10..], clear[clear.len() - 10..]);
}

#[test]
fn messages_before_we_open_a_feed_wait_for_it() {
    let (mut a, mut b) = pair();
    let first = [4u8; 32];
    let second = [5u8; 32];
    a.open(&first).unwrap();
    let dk2 = a.open(&second).unwrap();
    a.send(
        &dk2,
        &Message::Have(Have {
            start: 0,
            length: Some(3),
            bitfield: None,
            ack: None,
        }),
    );
    // b has not opened anything yet: it must wait for its key to decrypt.
    shuttle(&mut a, &mut b).unwrap();
    let got = events(&mut b);
    assert!(
        got.iter().all(|e| matches!(e, Event::RemoteOpened(_))),
        "{got:?}"
    );
    b.open(&first).unwrap();
    let got = events(&mut b);
    assert!(got
        .iter()
        .any(|e| matches!(e, Event::RemoteOpened(d) if *d == dk2)));
    assert!(
        messages(&mut b).is_empty(),
        "the Have waits until b opens the second feed"
    );
    b.open(&second).unwrap();
    assert_eq!(messages(&mut b).len(), 1);
}

#[test]
fn input_split_at_every_byte_parses_the_same() {
    let (mut a, mut b) = pair();
    let key = [6u8; 32];
    let dk = a.open(&key).unwrap();
    b.open(&key).unwrap();
    for i in 0..20 {
        a.send(
            &dk,
            &Message::Have(Have {
                start: i,
                length: None,
                bitfield: None,
                ack: None,
            }),
        );
    }
    for byte in a.take_outgoing() {
        b.receive(&[byte]).unwrap();
    }
    assert_eq!(messages(&mut b).len(), 20);
}

proptest! {
    /// Output written at the socket's pace (some bytes, then more messages,
    /// then some more bytes) reaches the peer whole and in order, however
    /// large the backlog grows.
    #[test]
    fn output_consumed_in_pieces_arrives_whole(
        steps in proptest::collection::vec((0usize..40, 0usize..50_000), 1..30),
    ) {
        let (mut a, mut b) = pair();
        let key = [8u8; 32];
        let dk = a.open(&key).unwrap();
        b.open(&key).unwrap();
        let mut sent = 0;
        for (messages_now, write_at_most) in steps {
            for _ in 0..messages_now {
                a.send(&dk, &Message::Have(Have {
                    start: sent,
                    length: Some(1000 + sent),
                    bitfield: Some(vec![7; 3000]),
                    ack: None,
                }));
                sent += 1;
            }
            let piece = a.outgoing();
            let piece = piece[..piece.len().min(write_at_most)].to_vec();
            a.consume(piece.len());
            b.receive(&piece).unwrap();
            prop_assert_eq!(a.outgoing_len(), a.outgoing().len());
        }
        b.receive(&a.take_outgoing()).unwrap();
        prop_assert!(!a.has_outgoing());
        let starts: Vec<u64> = messages(&mut b)
            .into_iter()
            .filter_map(|m| match m {
                Message::Have(h) => Some(h.start),
                _ => None,
            })
            .collect();
        prop_assert_eq!(starts, (0..sent).collect::<Vec<_>>());
    }
}

#[test]
fn a_peer_serving_another_feed_is_refused_with_a_clear_error() {
    let (mut a, mut b) = pair();
    a.open(&[7u8; 32]).unwrap();
    b.open(&[8u8; 32]).unwrap();
    let err = shuttle(&mut a, &mut b).unwrap_err();
    assert!(matches!(err, WireError::DifferentFeed(_)));
    assert!(err.to_string().contains("another database"));
}

#[test]
fn an_oversized_frame_is_refused() {
    let (_, mut b) = pair();
    b.open(&[9u8; 32]).unwrap();
    let mut bytes = vec![];
    hypercore_wire::varint::encode(9 * 1024 * 1024, &mut bytes);
    assert!(matches!(
        b.receive(&bytes),
        Err(WireError::FrameTooLarge(_))
    ));
    // The stream stays failed.
    assert!(b.receive(&[0]).is_err());
}

#[test]
fn an_unknown_type_or_channel_is_refused() {
    let key = [10u8; 32];
    let mut a = Protocol::new(ProtocolOptions {
        encrypted: false,
        ..Default::default()
    });
    let mut b = Protocol::new(ProtocolOptions {
        encrypted: false,
        ..Default::default()
    });
    a.open(&key).unwrap();
    b.open(&key).unwrap();
    shuttle(&mut a, &mut b).unwrap();
    // Channel 0, type 12.
    assert!(matches!(
        b.receive(&[2, 12, 0]),
        Err(WireError::UnknownType(12))
    ));
    let mut c = Protocol::new(ProtocolOptions {
        encrypted: false,
        ..Default::default()
    });
    c.open(&key).unwrap();
    // Channel 3, never opened.
    assert!(matches!(
        c.receive(&[2, 3 << 4 | 2, 0]),
        Err(WireError::UnknownChannel(3))
    ));
}

#[test]
fn a_silent_peer_times_out_and_a_quiet_one_is_pinged() {
    let (mut a, _) = pair();
    a.open(&[11u8; 32]).unwrap();
    a.take_outgoing();
    for _ in 0..5 {
        a.tick().unwrap();
    }
    assert!(
        !a.take_outgoing().is_empty(),
        "a keep-alive after three quiet ticks"
    );
    assert!(matches!(a.tick(), Err(WireError::Timeout(_))));
}

#[test]
fn too_many_channels_are_refused() {
    let mut a = Protocol::new(ProtocolOptions {
        max_channels: 3,
        ..Default::default()
    });
    for i in 0..3u8 {
        a.open(&[i + 20; 32]).unwrap();
    }
    assert!(matches!(
        a.open(&[99; 32]),
        Err(WireError::TooManyChannels(3))
    ));
}

#[test]
fn a_peer_reusing_a_channel_id_for_new_feeds_leaves_nothing_behind() {
    let (mut a, mut b) = pair();
    let shared = [30u8; 32];
    a.open(&shared).unwrap();
    b.open(&shared).unwrap();
    let have = Message::Have(Have {
        start: 0,
        length: Some(1),
        bitfield: None,
        ack: None,
    });
    for i in 0..1_000u32 {
        let mut key = [31u8; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        let dk = a.open(&key).unwrap();
        for _ in 0..16 {
            a.send(&dk, &have);
        }
        a.close(&dk);
        shuttle(&mut a, &mut b).unwrap();
        while b.next_event().is_some() {}
    }
    assert_eq!(
        b.remote_only_channels(),
        1,
        "only the feed the id names now"
    );
}

proptest! {
    /// Garbage after a valid opening never panics.
    #[test]
    fn garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (mut a, mut b) = pair();
        a.open(&[12u8; 32]).unwrap();
        b.open(&[12u8; 32]).unwrap();
        shuttle(&mut a, &mut b).unwrap();
        let _ = b.receive(&garbage);
        while b.next_event().is_some() {}
    }

    /// Garbage as the very first bytes never panics either.
    #[test]
    fn garbage_first_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut b = Protocol::new(ProtocolOptions::default());
        let _ = b.receive(&garbage);
        let _ = b.open(&[13u8; 32]);
        while b.next_event().is_some() {}
    }
}
