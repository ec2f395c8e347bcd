//! okaywal 0.3.1, from threads.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{unsupported, ReadBack, System, Wal};

/// okaywal 0.3.1: one entry per record, `commit` (which fsyncs, sharing the
/// sync among committing threads). Checkpointing is pushed out of reach so
/// the honesty check can read every entry back.
pub struct OkayWal;

#[derive(Debug, Default)]
struct Collect(Arc<Mutex<ReadBack>>);

impl okaywal::LogManager for Collect {
    fn recover(&mut self, entry: &mut okaywal::Entry<'_>) -> io::Result<()> {
        if let Some(chunks) = entry.read_all_chunks()? {
            let mut back = self.0.lock().unwrap_or_else(|p| p.into_inner());
            for chunk in &chunks {
                back.add(chunk);
            }
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
    fn written_promise(&self) -> &'static str {
        "-"
    }
    fn name(&self) -> String {
        "okaywal 0.3.1".into()
    }
    fn written_na(&self) -> Option<&'static str> {
        Some("every commit fsyncs")
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        Ok(Box::new(OkayWalWal(okaywal_config(dir).open(Collect::default())?)))
    }
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        let collected = Arc::new(Mutex::new(ReadBack::default()));
        let wal = okaywal_config(dir).open(Collect(collected.clone()))?;
        wal.shutdown()?;
        let out = std::mem::take(&mut *collected.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(out)
    }
}
