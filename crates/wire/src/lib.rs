//! hypercore-protocol 6, the wire protocol of hypercore and hyperdb 3.5.0,
//! as a sans-IO state machine: bytes in, events and bytes out, no sockets.
//!
//! ```
//! use hypercore_wire::{Event, Message, Protocol, ProtocolOptions};
//! use hypercore_wire::messages::Want;
//!
//! let key = [7u8; 32];
//! let (mut a, mut b) = (Protocol::new(ProtocolOptions::default()), Protocol::new(ProtocolOptions::default()));
//! let dk = a.open(&key).unwrap();
//! b.open(&key).unwrap();
//! a.send(&dk, &Message::Want(Want { start: 0, length: Some(1024) }));
//! b.receive(&a.take_outgoing()).unwrap();
//! let mut saw_want = false;
//! while let Some(event) = b.next_event() {
//!     if let Event::Message { message: Message::Want(w), .. } = event {
//!         saw_want = w.length == Some(1024);
//!     }
//! }
//! assert!(saw_want);
//! ```

mod discovery;
pub mod messages;
mod protocol;
pub mod varint;
mod xsalsa;

pub use discovery::discovery_key;
pub use messages::Message;
pub use protocol::{Event, Protocol, ProtocolOptions, WireError, MAX_FRAME};
pub use xsalsa::XSalsa20;
