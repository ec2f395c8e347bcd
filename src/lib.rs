//! tidelog: an async-first, durable, segmented, append-only journal
//! (write-ahead log) for tokio.
//!
//! Appends are futures. Appenders copy their frames into one log buffer; a
//! writer task per journal writes what accumulated with one operation and
//! leads group-commit sync rounds, so many concurrent appenders share one
//! write and one `fdatasync`. On Linux the writer runs its I/O on a native
//! io_uring ring; elsewhere (or on request) on tokio's blocking pool.
//!
//! # Durability levels
//!
//! | call | resolves when the record is |
//! |---|---|
//! | [`Journal::submit`] | *sequenced* at once; its [`Ticket`] resolves when durable |
//! | [`Journal::append_async`] / [`Journal::append`] | *written*: survives a crash of the process |
//! | [`Journal::sync_through_async`] / [`Journal::append_durable_async`] / [`Journal::append_durable`] | *durable*: survives power loss |
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
//! # Which call to use
//!
//! - **A request that must not be answered before its record survives power
//!   loss** (an HTTP `POST`, a Raft vote): [`Journal::append_durable_async`].
//!   Concurrent callers share one write and one `fdatasync`; no window is
//!   waited for a lone caller.
//! - **Many records, then one durability point** (a transaction's records,
//!   a batch import): [`Journal::append_async`] for each (or
//!   [`Journal::append_batch_async`] when they must survive all or none),
//!   then [`Journal::sync_through_async`] with the last LSN.
//! - **Sequencing under your own lock, waiting outside it** (a store that
//!   applies changes in LSN order): [`Journal::submit`] returns at once with
//!   the LSN; await its [`Ticket`] after releasing the lock.
//! - **Large records you built for the journal** (a snapshot chunk, a
//!   serialized batch): [`Journal::append_owned_async`] /
//!   [`Journal::submit_owned`] take the `Vec` over and, from 64 KiB on,
//!   write it without copying it into the log buffer.
//! - **Plain threads**: [`Journal::append`], [`Journal::sync_through`] and
//!   [`Journal::append_durable`] park the thread (never call them on a
//!   runtime worker); while the journal is idle, the calling thread writes
//!   and syncs its record itself.
//! - **Following the journal**: [`Journal::subscribe`] (a `Stream` of
//!   durable records), [`Journal::reader`] / [`Journal::read_batch`] (every
//!   *written* record: what survives a crash of the process; bound them by
//!   [`Journal::durable_lsn`] to read only what survives power loss), or
//!   [`replay`] for a whole directory at start-up.
//! - **Following from another process**: [`JournalReader::follow`] (a
//!   `Stream` of the records the writer made durable, never one it has not;
//!   `docs/operations.md`).
//! - **Many logs** (a Raft group per shard, a log per tenant): [`Streams`]
//!   keeps each as a `u64`-named stream with dense indexes in one journal,
//!   so appends to all of them share its writes and syncs
//!   (`docs/streams.md`).
//!
//! A failed write or sync poisons the journal: every waiter and every later
//! call gets [`Error::Poisoned`], and nothing is reported durable after it.
//! Reopen to recover from what is on disk.
//!
//! # Cargo features
//!
//! None is on by default: the library's dependency tree is the journal's
//! own. (The `tidelog` command — `bench`, `verify`, `inspect`, `dump`,
//! `repair` — is the repository's `tidelog-cli` crate, not a feature.)
//!
//! - `metrics`: exports [`Stats`] through the `metrics` facade —
//!   `tidelog_appends_total`, `tidelog_append_bytes_total`,
//!   `tidelog_writes_total`, `tidelog_syncs_total`, `tidelog_stalls_total`
//!   (counters), `tidelog_write_seconds`, `tidelog_sync_seconds`,
//!   `tidelog_records_per_sync` (histograms) and `tidelog_poisoned` (gauge),
//!   labelled `journal` (its directory) and `substrate`; and what
//!   compression saves: `tidelog_stored_bytes_total`,
//!   `tidelog_compressed_records_total` (counters) and
//!   `tidelog_compression_ratio` (gauge, payload bytes over stored bytes).
//! - `compression`: [`JournalOptions::compression`] with
//!   [`Compression::Lz4`] stores records LZ4-compressed (pure Rust,
//!   `lz4_flex`), each on its own, when that saves at least an eighth of
//!   it. Readers decompress whatever the option says; a build without the
//!   feature reads plain records and stops at a compressed one with
//!   [`Error::Unsupported`] naming the file and LSN.
//!
//! See `docs/` for the architecture, the durability contract and the on-disk
//! format, and `examples/` for a durable HTTP service, a key-value store
//! with snapshots and crash recovery, and a change-data-capture follower.

#![deny(unsafe_op_in_unsafe_fn, unused_must_use)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(unix))]
compile_error!("tidelog currently builds on Unix only (Linux, macOS, BSDs)");

mod backup;
pub mod bulk;
mod compress;
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
mod streams;
mod substrate;

pub use backup::{backup_dir, BackupReport, BackupTimings};
pub use compress::Compression;
pub use error::{Error, Result};
pub use journal::options::{JournalOptions, SyncPolicy, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE};
pub use journal::{Journal, Released, Ticket};
pub(crate) use lsn::FileOffset;
pub use lsn::Lsn;
pub use read::{
    replay, replay_ref, verify, Follower, JournalReader, Reader, Record, RecordRef, ReplayReport, Subscription,
    VerifyReport,
};
pub use recovery::{RecoveryMode, RecoveryReport};
pub use segment::Preallocate;
pub use stats::{Percentiles, Stats};
pub use storage::StorageClass;
pub use streams::{PurgeReport, StreamEntry, StreamInfo, Streams};
pub use substrate::{Substrate, SubstrateChoice};

// Test seams (documented inside): not a stable API.
#[doc(hidden)]
pub mod testing;
