//! tidelog itself, from tokio tasks, and from threads on its blocking API.

use std::io;
use std::path::{Path, PathBuf};

use tidelog::{Journal, JournalOptions, Lsn, Preallocate, SubstrateChoice};

use super::{AsyncWal, Fut, ReadBack, System, Wal};

/// tidelog on one substrate: `append_durable_async` / `append_async` from
/// tokio tasks, with default options or with zero-filled segments
/// (`Preallocate::Zero`: no extent conversion under each fdatasync).
pub struct Tidelog(pub SubstrateChoice, pub Preallocate);

impl Tidelog {
    fn options(&self) -> JournalOptions {
        JournalOptions::new().substrate(self.0).preallocate(self.1)
    }
}

/// tidelog driven by `submit` for its written appends: the call returns
/// once the frame is in tidelog's log buffer (process memory), the promise
/// nodedb-wal's `append` makes, and its ticket is dropped (the record is
/// still written and synced, and a dropped ticket never loses it). Its
/// durable appends would be the `append_async` rows': not measured again.
pub struct TidelogSubmit(pub SubstrateChoice);

struct TidelogWal(Journal);

struct SubmitWal(Journal);

impl AsyncWal for SubmitWal {
    fn append_durable<'a>(&'a self, record: &'a [u8]) -> Fut<'a, ()> {
        Box::pin(async move { self.0.append_durable_async(record).await.map(drop).map_err(io::Error::other) })
    }
    fn append_written<'a>(&'a self, record: &'a [u8]) -> Fut<'a, ()> {
        Box::pin(async move { self.0.submit(record).map(drop).map_err(io::Error::other) })
    }
    fn close(self: Box<Self>) -> Fut<'static, ()> {
        Box::pin(async move { self.0.close().await.map_err(io::Error::other) })
    }
}

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
    fn written_promise(&self) -> &'static str {
        "page cache (append_async)"
    }
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
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let opts = self.options();
        rt.block_on(async {
            // Recovery as an embedding database does it: open (which
            // recovers the tail), then replay every record into its state
            // with `replay_ref` (segments decoded in parallel, payloads
            // borrowed from the mapping).
            let journal = Journal::open(dir, opts).await.map_err(io::Error::other)?;
            let mut back = ReadBack::default();
            tidelog::replay_ref(dir, Lsn::ZERO, |r| {
                back.add(r.payload());
                Ok(())
            })
            .map_err(io::Error::other)?;
            journal.close().await.map_err(io::Error::other)?;
            Ok(back)
        })
    }
}

impl System for TidelogSubmit {
    fn name(&self) -> String {
        let substrate = if self.0 == SubstrateChoice::IoUring { "io_uring" } else { "blocking" };
        format!("tidelog {substrate}, submit")
    }
    fn written_promise(&self) -> &'static str {
        "process memory (submit)"
    }
    fn durable_na(&self) -> Option<&'static str> {
        Some("the append_async row's")
    }
    fn open_async(&self, dir: PathBuf) -> Option<Fut<'static, Box<dyn AsyncWal>>> {
        let opts = JournalOptions::new().substrate(self.0);
        Some(Box::pin(async move {
            let journal = Journal::open(dir, opts).await.map_err(io::Error::other)?;
            Ok(Box::new(SubmitWal(journal)) as Box<dyn AsyncWal>)
        }))
    }
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        Tidelog(self.0, Preallocate::default()).read_all(dir)
    }
}

/// tidelog driven from threads through its blocking API, as raft-engine is:
/// a durable append is `append_durable`, a written one `append`.
/// While the journal is idle the calling thread writes and syncs itself;
/// otherwise it waits for the writer's round. The journal's writer runs on
/// a runtime of its own.
pub struct TidelogThreads(pub SubstrateChoice);

struct ThreadsWal {
    journal: Journal,
    rt: tokio::runtime::Runtime,
}

impl Wal for ThreadsWal {
    fn append_durable(&self, record: &[u8]) -> io::Result<()> {
        self.journal.append_durable(record).map(drop).map_err(io::Error::other)
    }
    fn append_written(&self, record: &[u8]) -> io::Result<()> {
        self.journal.append(record).map(drop).map_err(io::Error::other)
    }
    fn close(self: Box<Self>) -> io::Result<()> {
        let ThreadsWal { journal, rt } = *self;
        rt.block_on(journal.close()).map_err(io::Error::other)
    }
}

impl System for TidelogThreads {
    fn name(&self) -> String {
        let substrate = if self.0 == SubstrateChoice::IoUring { "io_uring" } else { "blocking" };
        format!("tidelog {substrate}, threads (blocking API)")
    }
    fn written_promise(&self) -> &'static str {
        "page cache (append)"
    }
    fn bulk_na(&self) -> Option<&'static str> {
        Some("the append_async row's (same journal)")
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let opts = JournalOptions::new().substrate(self.0);
        let journal = rt.block_on(Journal::open(dir, opts)).map_err(io::Error::other)?;
        Ok(Box::new(ThreadsWal { journal, rt }))
    }
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        Tidelog(self.0, Preallocate::default()).read_all(dir)
    }
}
