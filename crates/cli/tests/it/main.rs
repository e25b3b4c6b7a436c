//! The `hyperdb` binary's integration tests, in one binary: a module per
//! subject, `support` for running the command.

mod cli;
mod crash;
mod demo;
mod discovery;
mod read_only;
mod serve_sync;
mod support;
