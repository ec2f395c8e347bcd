//! [openraft](https://docs.rs/openraft) log storage on a [`tidelog`]
//! journal, for openraft 0.9 (stable) and 0.10 (pipelined log I/O).
//!
//! | feature | openraft | store |
//! |---|---|---|
//! | `openraft09` (default) | 0.9, `storage-v2` | [`LogStore`] and [`LogReader`] |
//! | `openraft010` | `=0.10.0-alpha.37` (the crate renamed `openraft010` here) | [`v010::LogStore`] and [`v010::LogReader`] |
//!
//! Many Raft groups can share one journal instead: [`MultiLog`] holds
//! each group's log as one stream of a [`tidelog::Streams`] journal and
//! hands out a store per group (`GroupStore` for 0.9, `v010::GroupStore`
//! for 0.10), so that one `fdatasync` serves the appends of every group
//! (`docs/replication.md`, "Many groups on one journal").
//!
//! Both are thin adapters over one version-independent core: every Raft
//! append becomes one journal record per entry; the callback that tells
//! openraft the entries are on disk fires from one flusher task that waits
//! for the journal's group commit, so many Raft appends (and the appends of
//! every other writer of the node) share one `fdatasync`. Under openraft
//! 0.9 the core awaits each append's flush before the next client write,
//! so a leader gets one entry per sync; under 0.10 appends are pipelined
//! and merged, and a leader gets many. Which to pick, and what is durable
//! when: `docs/replication.md`.
//!
//! The journal is append-only, so truncation and purge write *markers*; an
//! in-memory index (log index → journal LSN) is rebuilt from the records
//! on open. `purge` also deletes whole segments below the first entry still
//! needed, after writing a record that carries the vote and committed log
//! id forward.
//!
//! ```no_run
//! # #[cfg(feature = "openraft09")] mod demo {
//! use std::io::Cursor; // openraft 0.9's macro names its default snapshot type unqualified
//! use tidelog_openraft::LogStore;
//!
//! openraft::declare_raft_types!(
//!     /// The application's Raft types: its commands (`D`) and responses
//!     /// (`R`) must be serde-serializable.
//!     pub MyConfig:
//!         D = String,
//!         R = String,
//! );
//!
//! async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//!     let store = LogStore::<MyConfig>::open("/var/lib/node1/raft-log", tidelog::JournalOptions::new()).await?;
//!     // hand `store` to `openraft::Raft::new(id, config, network, store, state_machine)`
//!     drop(store);
//!     Ok(())
//! }
//! # }
//! ```
//!
//! The tests and examples share a small key-value state machine, an
//! in-memory log store and an in-process network (`tests/support/` in the
//! repository), and the repository's `tidelog-kv` crate runs a 3-process
//! cluster over TCP: fixtures, not this crate's API.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unsafe_op_in_unsafe_fn, unused_must_use)]
// openraft 0.9's traits fix the error types (`StorageError`); the private
// helpers return what the trait methods must.
#![allow(clippy::result_large_err)]

// With neither version's feature the crate is empty.
#[cfg(any(feature = "openraft09", feature = "openraft010"))]
mod core;
#[cfg(feature = "openraft010")]
mod group010;
#[cfg(feature = "openraft09")]
mod group09;
#[cfg(any(feature = "openraft09", feature = "openraft010"))]
mod multi;
#[cfg(feature = "openraft010")]
pub mod v010;
#[cfg(feature = "openraft09")]
mod v09;

#[cfg(any(feature = "openraft09", feature = "openraft010"))]
pub use core::Error;
#[cfg(feature = "openraft09")]
pub use group09::{GroupReader, GroupStore};
#[cfg(any(feature = "openraft09", feature = "openraft010"))]
pub use multi::MultiLog;
#[cfg(feature = "openraft09")]
pub use v09::{LogReader, LogStore};
