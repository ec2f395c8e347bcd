//! The systems under test, each used the way its own docs recommend for the
//! workload, behind one small interface.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tidelog::{Journal, JournalOptions, Lsn, SubstrateChoice};

/// An open log that threads append to.
pub trait Wal: Send + Sync {
    /// Appends `record` and returns once it is durable.
    fn append_durable(&self, record: &[u8]) -> io::Result<()>;
    /// Appends `record` and returns once it is written (not synced).
    fn append_written(&self, record: &[u8]) -> io::Result<()>;
    /// Makes everything appended durable and closes the log.
    fn close(self: Box<Self>) -> io::Result<()>;
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
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>>;
    /// Opens the log in `dir` with the system's own reader and returns every
    /// record, in order (the honesty check and the recovery workload).
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>>;
    /// A tidelog journal wants tasks, not threads.
    fn tidelog(&self) -> Option<JournalOptions> {
        None
    }
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
        let mut framed = Vec::with_capacity(4 + record.len());
        framed.extend_from_slice(&(record.len() as u32).to_le_bytes());
        framed.extend_from_slice(record);
        let at = {
            let mut end = self.end.lock().unwrap_or_else(|p| p.into_inner());
            let at = *end;
            *end += framed.len() as u64;
            at
        };
        self.file.write_all_at(&framed, at)
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

/// tidelog on one substrate: appends from tokio tasks (the harness drives it
/// through [`System::tidelog`]).
pub struct Tidelog(pub SubstrateChoice);

impl System for Tidelog {
    fn name(&self) -> String {
        match self.0 {
            SubstrateChoice::IoUring => "tidelog io_uring".into(),
            _ => "tidelog blocking".into(),
        }
    }
    fn open(&self, _dir: &Path) -> io::Result<Box<dyn Wal>> {
        Err(unsupported("tidelog is driven from tasks"))
    }
    fn read_all(&self, dir: &Path) -> io::Result<Vec<Vec<u8>>> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let opts = self.tidelog().expect("tidelog options");
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
    fn tidelog(&self) -> Option<JournalOptions> {
        Some(JournalOptions::new().substrate(self.0))
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
        Box::new(Tidelog(SubstrateChoice::IoUring)),
        Box::new(Tidelog(SubstrateChoice::Blocking)),
        Box::new(Raw),
        Box::new(Fsys),
        Box::new(OkayWal),
        Box::new(Walrus),
        Box::new(NodeDb),
        Box::new(CommitLog),
    ]
}

/// Names of the systems the issue lists that this harness does not run yet,
/// and why (printed under the table).
pub fn missing() -> HashMap<&'static str, &'static str> {
    HashMap::from([("fsys 1.1.3 async API", "not wired in yet"), ("raft-engine", "not wired in yet")])
}

/// A directory for one cell.
pub fn cell_dir(root: &Path, system: &str, workload: &str) -> PathBuf {
    let clean: String =
        format!("{system}-{workload}").chars().map(|c| if c.is_alphanumeric() { c } else { '_' }).collect();
    root.join(clean)
}
