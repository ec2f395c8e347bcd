//! nodedb-wal 0.4.0, from threads.

use std::io;
use std::path::Path;
use std::sync::Mutex;

use super::{ReadBack, System, Wal};

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
    fn written_promise(&self) -> &'static str {
        "process memory"
    }
    fn name(&self) -> String {
        "nodedb-wal 0.4.0".into()
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        std::fs::create_dir_all(dir)?;
        let writer = nodedb_wal::WalWriter::open(&dir.join("wal.log"), nodedb_wal::writer::WalWriterConfig::default())
            .map_err(io::Error::other)?;
        Ok(Box::new(NodeDbWal { writer: Mutex::new(writer), commits: nodedb_wal::GroupCommitter::new() }))
    }
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        let reader = nodedb_wal::reader::WalReader::open(&dir.join("wal.log")).map_err(io::Error::other)?;
        let mut back = ReadBack::default();
        for record in reader.records() {
            back.add(&record.map_err(io::Error::other)?.payload);
        }
        Ok(back)
    }
}
