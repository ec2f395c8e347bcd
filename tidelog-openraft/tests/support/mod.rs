//! Fixtures of the tests and the example (`examples/cluster.rs` includes
//! this folder with `#[path]`): a key-value application (`kv`) and an
//! in-process cluster of it (`cluster`). They are not the crate's API: a
//! user brings their own state machine and network, and these would only
//! tie the published crate to choices made for testing.
#![allow(dead_code)]
// openraft's traits fix the error types (`RPCError`, `StorageError`).
#![allow(clippy::result_large_err)]

pub mod cluster;
pub mod kv;
