//! The floor: `pwrite` + `fdatasync` per record, no log at all.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use super::{ReadBack, System, Wal};

/// `pwrite` + `fdatasync` per record into one file, records framed by a
/// 4-byte length: the floor a durable append cannot beat for one writer.
/// With `prezeroed`, the file is first written with `PREZEROED` bytes of
/// zeros and synced, so that each `fdatasync` flushes data alone (no block
/// allocation or extent conversion), as a log that recycles or zero-fills
/// its files does; otherwise it grows with every record.
pub struct Raw {
    pub prezeroed: bool,
}

/// Zeros written ahead by the pre-zeroed floor: more than a 128 B cell
/// appends in its seconds.
const PREZEROED: usize = 256 << 20;

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
    fn written_promise(&self) -> &'static str {
        "page cache"
    }
    fn name(&self) -> String {
        if self.prezeroed {
            "raw pwrite+fdatasync, pre-zeroed".into()
        } else {
            "raw pwrite+fdatasync".into()
        }
    }
    fn bulk_na(&self) -> Option<&'static str> {
        self.prezeroed.then_some("a floor for small records: 1 MiB records outrun its zeros (the growing file's row)")
    }
    fn concurrent_na(&self) -> Option<&'static str> {
        Some("one fdatasync per record, no group commit: the floor is for one writer")
    }
    fn open(&self, dir: &Path) -> io::Result<Box<dyn Wal>> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(dir.join("raw.log"))?;
        if self.prezeroed {
            let zeros = vec![0u8; 1 << 20];
            for at in (0..PREZEROED).step_by(zeros.len()) {
                file.write_all_at(&zeros, at as u64)?;
            }
            file.sync_all()?;
        }
        Ok(Box::new(RawWal { file, end: Mutex::new(0) }))
    }
    fn read_all(&self, dir: &Path) -> io::Result<ReadBack> {
        let mut bytes = Vec::new();
        File::open(dir.join("raw.log"))?.read_to_end(&mut bytes)?;
        let mut back = ReadBack::default();
        let mut at = 0;
        while at + 4 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len == 0 || at + 4 + len > bytes.len() {
                break;
            }
            back.add(&bytes[at + 4..at + 4 + len]);
            at += 4 + len;
        }
        Ok(back)
    }
}
