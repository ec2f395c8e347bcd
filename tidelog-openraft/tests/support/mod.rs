//! Fixtures of the tests and the examples (they include this folder with
//! `#[path]`, as does the `tidelog-kv` crate): a key-value application
//! (`cmd`, and `kv` / `kv010` for openraft 0.9 / 0.10), proposal batching
//! for 0.9 (`propose`), an in-process cluster (`cluster`) and the model
//! the recovery tests check stores against (`model`). They are not
//! the crate's API: a user brings their own state machine and network,
//! and these would only tie the published crate to choices made for
//! testing.
#![allow(dead_code, unreachable_pub)]
// openraft's traits fix the error types (`RPCError`, `StorageError`).
#![allow(clippy::result_large_err)]

#[cfg(feature = "openraft09")]
pub mod cluster;
pub mod cmd;
#[cfg(feature = "openraft09")]
pub mod kv;
#[cfg(feature = "openraft010")]
pub mod kv010;
#[cfg(feature = "openraft09")]
pub mod model;
#[cfg(feature = "openraft09")]
pub mod propose;
