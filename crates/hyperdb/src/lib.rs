//! hyperdb: a peer-to-peer, multi-writer key-value database made of
//! hypercore feeds, compatible on disk and on the wire with hyperdb 3.5.0.
//!
//! Every writer appends its puts and deletes to its own feed. Each entry
//! carries a vector clock (how much of every feed its writer had seen) and a
//! trie of pointers to other entries, so a lookup from the latest entries
//! (the *heads*) reaches any key in a few steps. A writer is *authorized*
//! when an authorized writer lists its feed in an inflated entry; the
//! database's first writer, the *source*, always is.
//!
//! ```
//! use hyperdb::{Db, DbStorage, OpenOptions};
//!
//! let db1 = Db::open_storage(DbStorage::memory(), OpenOptions::default()).unwrap();
//! db1.put("example/first", b"db1 was here").unwrap();
//!
//! // A second replica of the same database has its own writer...
//! let options = OpenOptions { key: Some(*db1.key()), ..Default::default() };
//! let db2 = Db::open_storage(DbStorage::memory(), options).unwrap();
//! // ...which counts once the owner authorizes its *local* key.
//! db1.authorize(db2.local_key()).unwrap();
//! assert!(db1.is_authorized(db2.local_key()).unwrap());
//! // Passing the database key is a mistake, and says so.
//! assert!(db1.authorize(db2.key()).is_err());
//! ```

mod changes;
mod db;
mod delivery;
mod diff;
mod error;
mod get;
pub mod hash;
mod history;
pub mod iter;
mod key_index;
mod latest_index;
pub mod local_sync;
mod lock;
pub mod messages;
mod node;
mod path_index;
pub mod policy;
mod put;
mod read_only;
mod reading;
pub mod replicate;
mod replicator;
mod storage;
pub mod trie;
mod write;
mod writers;

pub use changes::{Changed, Subscription};
pub use db::{DbReader, FeedReader, GetOptions, Op, OpenOptions, WriterInfo};
pub use diff::{Change, Watch};
pub use error::{Error, ReplicationError, Result};
pub use history::{parse_version, version_bytes, Checkout, History, KeyHistory};
pub use hypercore_feed::fault;
pub use hypercore_feed::{Durability, Recovery};
pub use hypercore_wire::WireError;
pub use iter::{Iter, IterOptions};
pub use key_index::KeyIndexInfo;
pub use latest_index::LatestIndexInfo;
pub use lock::LOCK_FILE;
pub use node::Node;
pub use path_index::PathIndexInfo;
pub use policy::{Permission, Record, RestrictionInfo};
pub use read_only::ReadOnlyDb;
pub use replicate::{replicate, ReplicateOptions, Summary};
pub use replicator::Replicator;
pub use storage::DbStorage;
pub use write::{AuthorizeOptions, Db};
