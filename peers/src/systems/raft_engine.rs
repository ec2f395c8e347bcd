//! raft-engine 0.4.2 (TiKV's log store), from threads.

use std::io;
use std::path::Path;

use super::{ReadBack, System, Wal};

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
    fn written_promise(&self) -> &'static str {
        "page cache"
    }
    fn name(&self) -> String {
        "raft-engine 0.4.2".into()
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        let engine = raft_engine::Engine::open(raft_engine_config(dir)).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Box::new(RaftEngineWal(engine)))
    }
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        let engine = raft_engine::Engine::open(raft_engine_config(dir)).map_err(|e| io::Error::other(e.to_string()))?;
        let mut groups = engine.raft_groups();
        groups.sort_unstable();
        let mut back = ReadBack::default();
        for group in groups {
            engine
                .scan_raw_messages(group, None, None, false, |_, value| {
                    back.add(value);
                    true
                })
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(back)
    }
}
