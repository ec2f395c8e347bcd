//! The systems under test, each used the way its own docs recommend for the
//! workload, behind one small interface. One file per system, named after
//! it (`journal` is tidelog's); this file holds the interface and the list.

mod commitlog;
mod fsys;
mod journal;
mod nodedb;
mod okaywal;
mod raft_engine;
mod raw;
mod streams;
mod walrus;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use tidelog::{Preallocate, SubstrateChoice};

/// An open log that threads append to.
pub trait Wal: Send + Sync {
    /// Appends `record` and returns once it is durable.
    fn append_durable(&self, record: &[u8]) -> io::Result<()>;
    /// Appends `record` and returns once it is written (not synced).
    fn append_written(&self, record: &[u8]) -> io::Result<()>;
    /// Makes everything appended durable and closes the log.
    fn close(self: Box<Self>) -> io::Result<()>;
}

/// A boxed future, for the async interface.
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// An open log that tokio tasks append to (a system with an async API).
pub trait AsyncWal: Send + Sync {
    /// Appends `record` and resolves once it is durable.
    fn append_durable<'a>(&'a self, record: &'a [u8]) -> Fut<'a, ()>;
    /// Appends `record` and resolves once it is written (not synced).
    fn append_written<'a>(&'a self, record: &'a [u8]) -> Fut<'a, ()>;
    /// Makes everything appended durable and closes the log.
    fn close(self: Box<Self>) -> Fut<'static, ()>;
}

/// One system: how to open it, what it can express, and its own reader.
pub trait System: Sync {
    fn name(&self) -> String;
    /// Why it has no durable append, if it has none.
    fn durable_na(&self) -> Option<&'static str> {
        None
    }
    /// Why it has no written-not-durable append, if it has none.
    fn written_na(&self) -> Option<&'static str> {
        None
    }
    /// Where a record is when its written (not durable) append returns, as
    /// its source says (docs/peers.md cites the lines): "process memory"
    /// (lost with the process), "page cache" (survives the process, not a
    /// power cut), or what else.
    fn written_promise(&self) -> &'static str;
    /// Why it has no row for the bulk workloads (1 MiB records, recovery),
    /// if it has none.
    fn bulk_na(&self) -> Option<&'static str> {
        None
    }
    /// Why it cannot take concurrent writers, if it cannot.
    fn concurrent_na(&self) -> Option<&'static str> {
        None
    }
    /// Opens the log for threads (systems without an async API).
    fn open(&self, _dir: &Path) -> io::Result<Box<dyn Wal>> {
        Err(unsupported("driven from tasks"))
    }
    /// Opens the log for tokio tasks, if the system has an async API
    /// (then the harness drives it from tasks, not threads).
    fn open_async(&self, _dir: PathBuf) -> Option<Fut<'static, Box<dyn AsyncWal>>> {
        None
    }
    /// Opens the log in `dir` with the system's own reader and reads every
    /// record, in order (the honesty check and the recovery workload).
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack>;
}

/// What reading a log back found: its records' count, bytes and keys,
/// not their payloads. The recovery cell reads a gigabyte: keeping its
/// payloads took 0.8-2.8 s of fresh memory (a page fault and a cleared
/// page per 4 KiB) where reading them took 0.2 s (docs/peers.md,
/// "Recovery, read back without keeping"), so the cell timed the
/// allocator, not the reader.
#[derive(Debug, Default)]
pub struct ReadBack {
    pub records: u64,
    pub bytes: u64,
    /// The key of every record that carries one (`key_of`).
    pub keys: Vec<u64>,
}

impl ReadBack {
    /// Counts one record read back.
    pub fn add(&mut self, payload: &[u8]) {
        self.records += 1;
        self.bytes += payload.len() as u64;
        if let Some(key) = key_of(payload) {
            self.keys.push(key);
        }
    }
}

/// The key the harness writes at the start of every record: its writer
/// and its sequence number.
pub fn key_of(record: &[u8]) -> Option<u64> {
    let writer = u32::from_le_bytes(record.get(..4)?.try_into().ok()?) as u64;
    let seq = u64::from_le_bytes(record.get(4..12)?.try_into().ok()?);
    Some(writer << 40 | seq)
}

fn unsupported(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, why.to_string())
}

/// Every system, in table order.
pub fn all() -> Vec<Box<dyn System>> {
    vec![
        Box::new(journal::Tidelog(SubstrateChoice::IoUring, Preallocate::default())),
        Box::new(journal::Tidelog(SubstrateChoice::Blocking, Preallocate::default())),
        Box::new(journal::Tidelog(SubstrateChoice::IoUring, Preallocate::Zero)),
        Box::new(journal::Tidelog(SubstrateChoice::Blocking, Preallocate::Zero)),
        Box::new(journal::TidelogSubmit(SubstrateChoice::IoUring)),
        Box::new(journal::TidelogSubmit(SubstrateChoice::Blocking)),
        Box::new(journal::TidelogThreads(SubstrateChoice::IoUring)),
        Box::new(journal::TidelogThreads(SubstrateChoice::Blocking)),
        Box::new(streams::TidelogStreams),
        Box::new(raw::Raw { prezeroed: false }),
        Box::new(raw::Raw { prezeroed: true }),
        Box::new(fsys::Fsys),
        Box::new(fsys::FsysAsync { fallback: false }),
        Box::new(fsys::FsysAsync { fallback: true }),
        Box::new(raft_engine::RaftEngine),
        Box::new(okaywal::OkayWal),
        Box::new(walrus::Walrus),
        Box::new(nodedb::NodeDb),
        Box::new(commitlog::CommitLog),
    ]
}

/// A directory for one cell.
pub fn cell_dir(root: &Path, system: &str, workload: &str) -> PathBuf {
    let clean: String =
        format!("{system}-{workload}").chars().map(|c| if c.is_alphanumeric() { c } else { '_' }).collect();
    root.join(clean)
}
