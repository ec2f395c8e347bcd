//! fsys 1.1.3: its sync API from threads, its async API from tasks
//! (native io_uring, and its fallback with io_uring disabled).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{AsyncWal, Fut, ReadBack, System, Wal};

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
    fn written_promise(&self) -> &'static str {
        "page cache"
    }
    fn name(&self) -> String {
        "fsys 1.1.3 (sync API)".into()
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        std::fs::create_dir_all(dir)?;
        let fs = fsys::builder().build().map_err(io::Error::other)?;
        Ok(Box::new(FsysWal(fs.journal(dir.join("log.wal")).map_err(io::Error::other)?)))
    }
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        read_fsys(dir, false)
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
    fn written_promise(&self) -> &'static str {
        "page cache"
    }
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
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        // The same files as the sync API's; the empty probe record is skipped.
        read_fsys(dir, true)
    }
}

fn read_fsys(dir: &Path, skip_empty: bool) -> io::Result<ReadBack> {
    let mut reader = fsys::JournalReader::open(&dir.join("log.wal")).map_err(io::Error::other)?;
    let mut back = ReadBack::default();
    for record in reader.iter() {
        let record = record.map_err(io::Error::other)?;
        if !(skip_empty && record.payload.is_empty()) {
            back.add(&record.payload);
        }
    }
    Ok(back)
}
