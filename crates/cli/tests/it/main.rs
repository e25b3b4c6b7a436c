//! The `hyperdb` binary's integration tests, in one binary: a module per
//! subject, `support` for running the command, `netns` for networks of
//! namespaces.

mod cli;
mod crash;
mod demo;
mod discovery;
mod faults;
mod netns;
mod read_only;
mod serve_sync;
mod support;
