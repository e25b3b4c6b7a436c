//! A replication session fed whatever a remote sends: a real first frame
//! (plaintext, with the sender's nonce), then the input encrypted as that
//! sender would, cut where the input says, the session's own output drained
//! as it goes. Errors end the session; nothing panics; and nothing
//! unverified is stored: every block the replica holds is the owner's.
#![no_main]

use std::sync::OnceLock;

use hypercore_wire::XSalsa20;
use hyperdb::replicate::Session;
use hyperdb::{Db, DbStorage, Op, OpenOptions, ReplicateOptions};
use hyperdb_fuzz::first_frame;
use libfuzzer_sys::fuzz_target;

fn owner() -> &'static Db {
    static OWNER: OnceLock<Db> = OnceLock::new();
    OWNER.get_or_init(|| {
        let db = Db::open_storage(DbStorage::memory(), OpenOptions::default()).expect("opens");
        let ops = (0..30).map(|i| Op::Put {
            key: format!("k/{i}"),
            value: format!("v{i}").into_bytes(),
        });
        db.write_all(ops, 10).expect("writes");
        db
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let owner = owner();
    let key = *owner.key();
    let options = OpenOptions {
        key: Some(key),
        ..Default::default()
    };
    let replica = Db::open_storage(DbStorage::memory(), options).expect("opens");
    let mut session = Session::new(&replica, ReplicateOptions::default()).expect("a session");
    let (first, nonce) = first_frame(&key);
    let mut stream = bytes.to_vec();
    XSalsa20::new(&key, &nonce).apply_keystream(&mut stream);
    let pieces = std::iter::once(&first[..]).chain(stream.chunks(usize::from(cut).max(1)));
    for piece in pieces {
        if session.receive(&replica, piece).is_err() {
            break;
        }
        let out = session.outgoing().len();
        session.consume(out);
        if session.answer_deferred(&replica).is_err() {
            break;
        }
    }
    let theirs = owner.feed(0).expect("the source feed");
    let ours = replica.feed(0).expect("the source feed");
    for index in 0..ours.len() {
        if ours.has(index) {
            assert_eq!(
                ours.get(index).ok(),
                theirs.get(index).ok(),
                "block {index}"
            );
        }
    }
});
