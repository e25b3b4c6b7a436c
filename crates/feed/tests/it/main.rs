//! The feed's integration tests, in one binary: a module per subject.

mod bad_input;
mod compat;
mod crash;
mod download;
mod interop;
