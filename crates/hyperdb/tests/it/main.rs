//! The database's integration tests, in one binary: a module per subject
//! (`interop*` and `*_interop` run the JS reference; `ported_*` port its own
//! test suite; `support` and `ported_support` are shared helpers).

mod bad_input;
mod causal;
mod concurrent;
mod content_feeds;
mod crash;
mod diff_interop;
mod differential;
mod folder_lock;
mod history_interop;
mod interop;
mod iter_interop;
mod multi_writer_interop;
mod permissions;
mod ported_auth;
mod ported_basic;
mod ported_collisions;
mod ported_corruption;
mod ported_deletes;
mod ported_diff;
mod ported_fuzzing;
mod ported_history;
mod ported_hooks;
mod ported_iterator;
mod ported_iterator_order;
mod ported_key_history;
mod ported_read_stream;
mod ported_reopen;
mod ported_replicate;
mod ported_support;
mod ported_trie_encoding;
mod ported_watch;
mod replicate;
mod replicate_bad_input;
mod replicate_interop;
mod simulation;
mod support;
mod unauthorized;
