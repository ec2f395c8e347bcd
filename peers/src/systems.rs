//! The systems under test, each used the way its own docs recommend for the
//! workload, behind one small interface.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tidelog::{Journal, JournalOptions, Lsn, Preallocate, SubstrateChoice};

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
    /// Opens the log in `dir` with the system's own reader and returns every
    /// record, in order (the honesty check and the recovery workload).
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>>;
}

fn unsupported(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, why.to_string())
}

// --- the raw floor -----------------------------------------------------------

/// `pwrite` + `fdatasync` per record into one growing file, records framed
/// by a 4-byte length: the floor a durable append cannot beat for one writer.
pub struct Raw;

struct RawWal {
    file: File,
    end: Mutex<u64>,
}

impl Wal for RawWal {
    fn append_durable(&self, record: &[u8]) -> io::Result<()> {
        self.append_written(record)?;
        self.file.sync_data()
    }
    fn append_written(&self, record: &[u8]) -> io::Result<()> {
        thread_local! {
            // One framing buffer per writer thread: no allocation per append.
            static FRAMED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        FRAMED.with_borrow_mut(|framed| {
            framed.clear();
            framed.extend_from_slice(&(record.len() as u32).to_le_bytes());
            framed.extend_from_slice(record);
            let at = {
                let mut end = self.end.lock().unwrap_or_else(|p| p.into_inner());
                let at = *end;
                *end += framed.len() as u64;
                at
            };
            self.file.write_all_at(framed, at)
        })
    }
    fn close(self: Box<Self>) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl System for Raw {
    fn name(&self) -> String {
        "raw pwrite+fdatasync".into()
    }
    fn concurrent_na(&self) -> Option<&'static str> {
        Some("one fdatasync per record, no group commit: the floor is for one writer")
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(dir.join("raw.log"))?;
        Ok(Box::new(RawWal { file, end: Mutex::new(0) }))
    }
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>> {
        let mut bytes = Vec::new();
        File::open(dir.join("raw.log"))?.read_to_end(&mut bytes)?;
        let mut out = Vec::new();
        let mut at = 0;
        while at + 4 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len == 0 || at + 4 + len > bytes.len() {
                break;
            }
            out.push(bytes[at + 4..at + 4 + len].to_vec());
            at += 4 + len;
        }
        Ok(out)
    }
}

// --- tidelog -----------------------------------------------------------------

/// tidelog on one substrate: `append_durable_async` / `append_async` from
/// tokio tasks, with default options or with zero-filled segments
/// (`Preallocate::Zero`: no extent conversion under each fdatasync).
pub struct Tidelog(pub SubstrateChoice, pub Preallocate);

impl Tidelog {
    fn options(&self) -> JournalOptions {
        JournalOptions::new().substrate(self.0).preallocate(self.1)
    }
}

struct TidelogWal(Journal);

impl AsyncWal for TidelogWal {
    fn append_durable<'a>(&'a self, record: &'a [u8]) -> Fut<'a, ()> {
        Box::pin(async move { self.0.append_durable_async(record).await.map(drop).map_err(io::Error::other) })
    }
    fn append_written<'a>(&'a self, record: &'a [u8]) -> Fut<'a, ()> {
        Box::pin(async move { self.0.append_async(record).await.map(drop).map_err(io::Error::other) })
    }
    fn close(self: Box<Self>) -> Fut<'static, ()> {
        Box::pin(async move { self.0.close().await.map_err(io::Error::other) })
    }
}

impl System for Tidelog {
    fn name(&self) -> String {
        let substrate = match self.0 {
            SubstrateChoice::IoUring => "io_uring",
            _ => "blocking",
        };
        let zero = if self.1 == Preallocate::Zero { ", zero-filled" } else { "" };
        format!("tidelog {substrate}{zero}")
    }
    fn open_async(&self, dir: PathBuf) -> Option<Fut<'static, Box<dyn AsyncWal>>> {
        let opts = self.options();
        Some(Box::pin(async move {
            let journal = Journal::open(dir, opts).await.map_err(io::Error::other)?;
            Ok(Box::new(TidelogWal(journal)) as Box<dyn AsyncWal>)
        }))
    }
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let opts = self.options();
        rt.block_on(async {
            let journal = Journal::open(dir, opts).await.map_err(io::Error::other)?;
            let mut reader = journal.reader(Lsn::ZERO).map_err(io::Error::other)?;
            let mut out = Vec::new();
            while let Some(r) = reader.next_record().map_err(io::Error::other)? {
                out.push(r.into_payload());
            }
            journal.close().await.map_err(io::Error::other)?;
            Ok(out)
        })
    }
}

// --- okaywal -----------------------------------------------------------------

/// okaywal 0.3.1: one entry per record, `commit` (which fsyncs, sharing the
/// sync among committing threads). Checkpointing is pushed out of reach so
/// the honesty check can read every entry back.
pub struct OkayWal;

#[derive(Debug, Default)]
struct Collect(Arc<Mutex<Vec<Vec<u8>>>>);

impl okaywal::LogManager for Collect {
    fn recover(&mut self, entry: &mut okaywal::Entry<'_>) -> io::Result<()> {
        if let Some(chunks) = entry.read_all_chunks()? {
            let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(chunks);
        }
        Ok(())
    }
    fn checkpoint_to(
        &mut self,
        _last: okaywal::EntryId,
        _entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> io::Result<()> {
        Ok(())
    }
}

struct OkayWalWal(okaywal::WriteAheadLog);

impl Wal for OkayWalWal {
    fn append_durable(&self, record: &[u8]) -> io::Result<()> {
        let mut entry = self.0.begin_entry()?;
        entry.write_chunk(record)?;
        entry.commit().map(drop)
    }
    fn append_written(&self, _record: &[u8]) -> io::Result<()> {
        Err(unsupported("okaywal has no commit without fsync"))
    }
    fn close(self: Box<Self>) -> io::Result<()> {
        self.0.shutdown()
    }
}

fn okaywal_config(dir: &Path) -> okaywal::Configuration {
    okaywal::Configuration::default_for(dir).checkpoint_after_bytes(u64::MAX / 4)
}

impl System for OkayWal {
    fn name(&self) -> String {
        "okaywal 0.3.1".into()
    }
    fn written_na(&self) -> Option<&'static str> {
        Some("every commit fsyncs")
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        Ok(Box::new(OkayWalWal(okaywal_config(dir).open(Collect::default())?)))
    }
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>> {
        let collected = Arc::new(Mutex::new(Vec::new()));
        let wal = okaywal_config(dir).open(Collect(collected.clone()))?;
        wal.shutdown()?;
        let out = std::mem::take(&mut *collected.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(out)
    }
}

// --- commitlog ---------------------------------------------------------------

/// commitlog 0.2.0: `append_msg` under a mutex (it takes `&mut self`). Its
/// `flush` flushes a `File`, which does not fsync: it has no durable mode.
pub struct CommitLog;

struct CommitLogWal(Mutex<commitlog::CommitLog>);

impl Wal for CommitLogWal {
    fn append_durable(&self, _record: &[u8]) -> io::Result<()> {
        Err(unsupported("no durable mode"))
    }
    fn append_written(&self, record: &[u8]) -> io::Result<()> {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        log.append_msg(record).map(drop).map_err(|e| io::Error::other(format!("{e:?}")))
    }
    fn close(self: Box<Self>) -> io::Result<()> {
        self.0.into_inner().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

impl System for CommitLog {
    fn name(&self) -> String {
        "commitlog 0.2.0".into()
    }
    fn durable_na(&self) -> Option<&'static str> {
        Some("no durable mode: its flush never fsyncs")
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        let log = commitlog::CommitLog::new(commitlog::LogOptions::new(dir))?;
        Ok(Box::new(CommitLogWal(Mutex::new(log))))
    }
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>> {
        use commitlog::message::MessageSet;
        let log = commitlog::CommitLog::new(commitlog::LogOptions::new(dir))?;
        let mut out = Vec::new();
        let mut next = 0;
        loop {
            let buf = log
                .read(next, commitlog::ReadLimit::max_bytes(8 << 20))
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
            let before = out.len();
            for msg in buf.iter() {
                next = msg.offset() + 1;
                out.push(msg.payload().to_vec());
            }
            if out.len() == before {
                return Ok(out);
            }
        }
    }
}

// --- fsys --------------------------------------------------------------------

/// fsys 1.1.3, its sync API with default options: `JournalHandle::append`,
/// then `sync_through` the returned LSN (its documented group commit).
pub struct Fsys;

struct FsysWal(fsys::JournalHandle);

impl Wal for FsysWal {
    fn append_durable(&self, record: &[u8]) -> io::Result<()> {
        let lsn = self.0.append(record).map_err(io::Error::other)?;
        self.0.sync_through(lsn).map_err(io::Error::other)
    }
    fn append_written(&self, record: &[u8]) -> io::Result<()> {
        self.0.append(record).map(drop).map_err(io::Error::other)
    }
    fn close(self: Box<Self>) -> io::Result<()> {
        let lsn = self.0.next_lsn();
        self.0.sync_through(lsn).map_err(io::Error::other)?;
        self.0.close().map_err(io::Error::other)
    }
}

impl System for Fsys {
    fn name(&self) -> String {
        "fsys 1.1.3 (sync API)".into()
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        std::fs::create_dir_all(dir)?;
        let fs = fsys::builder().build().map_err(io::Error::other)?;
        Ok(Box::new(FsysWal(fs.journal(dir.join("log.wal")).map_err(io::Error::other)?)))
    }
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>> {
        let mut reader = fsys::JournalReader::open(&dir.join("log.wal")).map_err(io::Error::other)?;
        reader.iter().map(|r| r.map(|r| r.payload).map_err(io::Error::other)).collect()
    }
}

/// fsys 1.1.3, its async API (`append_async`, then `sync_through_async` of
/// the returned LSN) from tokio tasks: natively on its io_uring ring, or —
/// with `fallback` — on its `spawn_blocking` path, which it takes when the
/// ring cannot be built. The harness forces that by setting the kernel's
/// `io_uring_disabled` for the cell (root only; restored afterwards).
pub struct FsysAsync {
    pub fallback: bool,
}

struct FsysAsyncWal {
    journal: Arc<fsys::JournalHandle>,
    _no_uring: Option<UringDisabled>,
}

impl AsyncWal for FsysAsyncWal {
    // fsys's async API takes the record as an owned `Vec`.
    fn append_durable<'a>(&'a self, record: &'a [u8]) -> Fut<'a, ()> {
        Box::pin(async move {
            let lsn = self.journal.clone().append_async(record.to_vec()).await.map_err(io::Error::other)?;
            self.journal.clone().sync_through_async(lsn).await.map_err(io::Error::other)
        })
    }
    fn append_written<'a>(&'a self, record: &'a [u8]) -> Fut<'a, ()> {
        Box::pin(
            async move { self.journal.clone().append_async(record.to_vec()).await.map(drop).map_err(io::Error::other) },
        )
    }
    fn close(self: Box<Self>) -> Fut<'static, ()> {
        Box::pin(async move {
            let lsn = self.journal.next_lsn();
            self.journal.clone().sync_through_async(lsn).await.map_err(io::Error::other)?;
            let journal = Arc::try_unwrap(self.journal).map_err(|_| io::Error::other("fsys journal still shared"))?;
            journal.close().map_err(io::Error::other)
        })
    }
}

/// Sets `kernel.io_uring_disabled` to 2 (no new rings in any process) until
/// dropped.
struct UringDisabled {
    before: String,
}

const URING_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

impl UringDisabled {
    fn new() -> io::Result<UringDisabled> {
        let before = std::fs::read_to_string(URING_SYSCTL)?;
        std::fs::write(URING_SYSCTL, "2")
            .map_err(|e| io::Error::new(e.kind(), format!("disabling io_uring for the fallback needs root: {e}")))?;
        Ok(UringDisabled { before })
    }
}

impl Drop for UringDisabled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(URING_SYSCTL, self.before.trim()) {
            eprintln!("tidelog-peers: could not restore {URING_SYSCTL} to {}: {e}", self.before.trim());
        }
    }
}

impl System for FsysAsync {
    fn name(&self) -> String {
        if self.fallback {
            "fsys 1.1.3 (async, fallback)".into()
        } else {
            "fsys 1.1.3 (async, io_uring)".into()
        }
    }
    fn open_async(&self, dir: PathBuf) -> Option<Fut<'static, Box<dyn AsyncWal>>> {
        let fallback = self.fallback;
        Some(Box::pin(async move {
            let no_uring = if fallback { Some(UringDisabled::new()?) } else { None };
            std::fs::create_dir_all(&dir)?;
            let fs = fsys::builder().build().map_err(io::Error::other)?;
            let journal = Arc::new(fs.journal(dir.join("log.wal")).map_err(io::Error::other)?);
            // The ring is built at the first async append: check that the
            // substrate is the one this row names.
            let lsn = journal.clone().append_async(Vec::new()).await.map_err(io::Error::other)?;
            journal.clone().sync_through_async(lsn).await.map_err(io::Error::other)?;
            if journal.native_iouring_active() == fallback {
                return Err(io::Error::other(format!(
                    "fsys's native io_uring is {}",
                    if fallback { "still active" } else { "not active" }
                )));
            }
            Ok(Box::new(FsysAsyncWal { journal, _no_uring: no_uring }) as Box<dyn AsyncWal>)
        }))
    }
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>> {
        // The same files as the sync API's; the empty probe record is skipped.
        Ok(Fsys.read_all(dir)?.into_iter().filter(|r| !r.is_empty()).collect())
    }
}

// --- raft-engine -------------------------------------------------------------

/// raft-engine 0.4.2 (TiKV's log store) with its default `Config`: each
/// writer is a Raft group of its own (as in TiKV, where groups share one
/// log stream), each record one key-value `put` in a `LogBatch` written with
/// `Engine::write(batch, sync)`, whose write queue groups concurrent writers
/// into one write and one fdatasync.
pub struct RaftEngine;

struct RaftEngineWal(raft_engine::Engine);

impl RaftEngineWal {
    fn put(&self, record: &[u8], sync: bool) -> io::Result<()> {
        let mut batch = raft_engine::LogBatch::default();
        let (group, key) = raft_key(record);
        batch.put(group, key, record.to_vec()).map_err(|e| io::Error::other(e.to_string()))?;
        self.0.write(&mut batch, sync).map(drop).map_err(|e| io::Error::other(e.to_string()))
    }
}

/// The group (writer + 1) and key (sequence number) of a harness record.
fn raft_key(record: &[u8]) -> (u64, Vec<u8>) {
    let writer = record.get(..4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let seq = record.get(4..12).map_or(&[][..], |b| b);
    // Big-endian so a scan returns a writer's records in order.
    let seq = u64::from_le_bytes(seq.try_into().unwrap_or([0; 8]));
    (writer as u64 + 1, seq.to_be_bytes().to_vec())
}

impl Wal for RaftEngineWal {
    fn append_durable(&self, record: &[u8]) -> io::Result<()> {
        self.put(record, true)
    }
    fn append_written(&self, record: &[u8]) -> io::Result<()> {
        self.put(record, false)
    }
    fn close(self: Box<Self>) -> io::Result<()> {
        self.0.sync().map_err(|e| io::Error::other(e.to_string()))
    }
}

fn raft_engine_config(dir: &Path) -> raft_engine::Config {
    raft_engine::Config { dir: dir.to_string_lossy().into_owned(), ..raft_engine::Config::default() }
}

impl System for RaftEngine {
    fn name(&self) -> String {
        "raft-engine 0.4.2".into()
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        let engine = raft_engine::Engine::open(raft_engine_config(dir)).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Box::new(RaftEngineWal(engine)))
    }
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>> {
        let engine = raft_engine::Engine::open(raft_engine_config(dir)).map_err(|e| io::Error::other(e.to_string()))?;
        let mut groups = engine.raft_groups();
        groups.sort_unstable();
        let mut out = Vec::new();
        for group in groups {
            engine
                .scan_raw_messages(group, None, None, false, |_, value| {
                    out.push(value.to_vec());
                    true
                })
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(out)
    }
}

// --- walrus-rust -------------------------------------------------------------

/// walrus-rust 0.2.0: one topic (one log) per cell, `FsyncSchedule::SyncEach`
/// for durable appends (an fsync after every entry, its only per-append
/// durable mode) and `NoFsync` for written ones. Its data directory comes
/// from `WALRUS_DATA_DIR`, which `main` points into the run's temp dir; each
/// cell is its own namespace key.
pub struct Walrus;

const TOPIC: &str = "bench";

struct WalrusWal(walrus_rust::Walrus);

impl Wal for WalrusWal {
    fn append_durable(&self, record: &[u8]) -> io::Result<()> {
        self.0.append_for_topic(TOPIC, record)
    }
    fn append_written(&self, record: &[u8]) -> io::Result<()> {
        self.0.append_for_topic(TOPIC, record)
    }
    fn close(self: Box<Self>) -> io::Result<()> {
        Ok(())
    }
}

fn walrus_key(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Opens walrus for the cell in `dir` (the fsync schedule is per instance
/// at creation).
fn walrus_open(dir: &Path, schedule: walrus_rust::FsyncSchedule) -> io::Result<walrus_rust::Walrus> {
    walrus_rust::Walrus::with_consistency_and_schedule_for_key(
        &walrus_key(dir),
        walrus_rust::ReadConsistency::StrictlyAtOnce,
        schedule,
    )
}

impl System for Walrus {
    fn name(&self) -> String {
        "walrus-rust 0.2.0".into()
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        // Which mode the harness wants is known from the cell's name.
        let schedule = if walrus_key(dir).contains("written") || walrus_key(dir).contains("recovery") {
            walrus_rust::FsyncSchedule::NoFsync
        } else {
            walrus_rust::FsyncSchedule::SyncEach
        };
        Ok(Box::new(WalrusWal(walrus_open(dir, schedule)?)))
    }
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>> {
        let wal = walrus_open(dir, walrus_rust::FsyncSchedule::NoFsync)?;
        let mut out = Vec::new();
        while let Some(entry) = wal.read_next(TOPIC, true)? {
            out.push(entry.data);
        }
        Ok(out)
    }
}

// --- nodedb-wal --------------------------------------------------------------

/// nodedb-wal 0.4.0: `WalWriter` with its default config (O_DIRECT) behind
/// the crate's `GroupCommitter` for durable appends. A written append is
/// `WalWriter::append`, which only fills its aligned buffer: the bytes reach
/// the OS at the next sync.
pub struct NodeDb;

struct NodeDbWal {
    writer: Mutex<nodedb_wal::WalWriter>,
    commits: nodedb_wal::GroupCommitter,
}

const PUT: u32 = nodedb_wal::RecordType::Put as u32;

impl Wal for NodeDbWal {
    fn append_durable(&self, record: &[u8]) -> io::Result<()> {
        let write = nodedb_wal::group_commit::PendingWrite {
            record_type: PUT,
            tenant_id: 0,
            vshard_id: 0,
            database_id: 0,
            payload: record.to_vec(),
        };
        self.commits.submit(&self.writer, write).map(drop).map_err(io::Error::other)
    }
    fn append_written(&self, record: &[u8]) -> io::Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.append(PUT, 0, 0, 0, record).map(drop).map_err(io::Error::other)
    }
    fn close(self: Box<Self>) -> io::Result<()> {
        self.writer.into_inner().unwrap_or_else(|p| p.into_inner()).sync().map_err(io::Error::other)
    }
}

impl System for NodeDb {
    fn name(&self) -> String {
        "nodedb-wal 0.4.0".into()
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        std::fs::create_dir_all(dir)?;
        let writer = nodedb_wal::WalWriter::open(&dir.join("wal.log"), nodedb_wal::writer::WalWriterConfig::default())
            .map_err(io::Error::other)?;
        Ok(Box::new(NodeDbWal { writer: Mutex::new(writer), commits: nodedb_wal::GroupCommitter::new() }))
    }
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>> {
        let reader = nodedb_wal::reader::WalReader::open(&dir.join("wal.log")).map_err(io::Error::other)?;
        reader.records().map(|r| r.map(|r| r.payload).map_err(io::Error::other)).collect()
    }
}

/// Every system, in table order.
pub fn all() -> Vec<Box<dyn System>> {
    vec![
        Box::new(Tidelog(SubstrateChoice::IoUring, Preallocate::default())),
        Box::new(Tidelog(SubstrateChoice::Blocking, Preallocate::default())),
        Box::new(Tidelog(SubstrateChoice::IoUring, Preallocate::Zero)),
        Box::new(Tidelog(SubstrateChoice::Blocking, Preallocate::Zero)),
        Box::new(Raw),
        Box::new(Fsys),
        Box::new(FsysAsync { fallback: false }),
        Box::new(FsysAsync { fallback: true }),
        Box::new(RaftEngine),
        Box::new(OkayWal),
        Box::new(Walrus),
        Box::new(NodeDb),
        Box::new(CommitLog),
    ]
}

/// A directory for one cell.
pub fn cell_dir(root: &Path, system: &str, workload: &str) -> PathBuf {
    let clean: String =
        format!("{system}-{workload}").chars().map(|c| if c.is_alphanumeric() { c } else { '_' }).collect();
    root.join(clean)
}
