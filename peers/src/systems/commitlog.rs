//! commitlog 0.2.0, from threads (written appends only).

use std::io;
use std::path::Path;
use std::sync::Mutex;

use super::{unsupported, ReadBack, System, Wal};

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
    fn written_promise(&self) -> &'static str {
        "page cache"
    }
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
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        use commitlog::message::MessageSet;
        let log = commitlog::CommitLog::new(commitlog::LogOptions::new(dir))?;
        let mut back = ReadBack::default();
        let mut next = 0;
        loop {
            let buf = log
                .read(next, commitlog::ReadLimit::max_bytes(8 << 20))
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
            let before = back.records;
            for msg in buf.iter() {
                next = msg.offset() + 1;
                back.add(msg.payload());
            }
            if back.records == before {
                return Ok(back);
            }
        }
    }
}
