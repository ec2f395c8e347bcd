//! walrus-rust 0.2.0, from threads.

use std::io;
use std::path::Path;

use super::{ReadBack, System, Wal};

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
    fn written_promise(&self) -> &'static str {
        "page cache; on disk (O_SYNC) once a durable cell ran: docs/peers.md"
    }
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
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        let wal = walrus_open(dir, walrus_rust::FsyncSchedule::NoFsync)?;
        let mut back = ReadBack::default();
        while let Some(entry) = wal.read_next(TOPIC, true)? {
            back.add(&entry.data);
        }
        Ok(back)
    }
}
