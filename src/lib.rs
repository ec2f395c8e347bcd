//! tidelog: an async-first, durable, segmented, append-only journal
//! (write-ahead log) for tokio.
//!
//! Appends are futures. Appenders copy their frames into one log buffer; a
//! driver task per journal writes what accumulated with one operation and
//! leads group-commit sync rounds, so many concurrent appenders share one
//! write and one `fdatasync`. On Linux the driver runs its I/O on a native
//! io_uring ring; elsewhere (or on request) on tokio's blocking pool.
//!
//! # Durability levels
//!
//! | call | resolves when the record is |
//! |---|---|
//! | [`Journal::submit`] | *sequenced* at once; its [`Ticket`] resolves when durable |
//! | [`Journal::append_async`] / [`Journal::append`] | *written*: survives a crash of the process |
//! | [`Journal::sync_through_async`] / [`Journal::append_durable_async`] | *durable*: survives power loss |
//!
//! # Example
//!
//! ```
//! use tidelog::{Journal, JournalOptions, Lsn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> tidelog::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let journal = Journal::open(dir.path(), JournalOptions::default()).await?;
//! let lsn = journal.append_async(b"hello").await?;      // written
//! journal.sync_through_async(lsn).await?;               // durable
//! journal.append_durable_async(b"world").await?;        // both, with group commit
//! journal.close().await?;
//!
//! let journal = Journal::open(dir.path(), JournalOptions::default()).await?;
//! let mut reader = journal.reader(Lsn::ZERO)?;
//! let first = reader.next_record()?.expect("recovered");
//! assert_eq!(first.payload(), b"hello");
//! assert_eq!(first.lsn(), lsn);
//! # Ok(()) }
//! ```
//!
//! See `docs/` for the architecture, the durability contract and the on-disk
//! format.

#![deny(unsafe_op_in_unsafe_fn, unused_must_use)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(unix))]
compile_error!("tidelog currently builds on Unix only (Linux, macOS, BSDs)");

pub mod bulk;
mod error;
pub mod format;
mod gate;
mod journal;
mod lsn;
mod read;
mod recovery;
mod segment;
mod stats;
mod storage;
mod substrate;

pub use error::{Error, Result};
pub use journal::options::{
    JournalOptions, RecoveryMode, Substrate, SubstrateChoice, SyncPolicy, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE,
};
pub use journal::{Journal, Ticket};
pub use lsn::Lsn;
pub use read::{replay, verify, JournalReader, Reader, Record, ReplayReport, Subscription, VerifyReport};
pub use recovery::RecoveryReport;
pub use segment::Preallocate;
pub use stats::{Percentiles, Stats};
pub use storage::StorageClass;

/// Test seams. Not a stable API: it may change in any release.
#[doc(hidden)]
pub mod testing {
    pub use crate::substrate::fault::FaultPlan;
}
