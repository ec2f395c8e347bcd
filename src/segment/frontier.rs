//! The published-frontier file (`format::frontier`): the writer rewrites it
//! after each sync round; readers in other processes read it to know how far
//! they may read. It is advisory for the writer — a failure to publish is
//! logged, retried at the next round, and never fails an append — and
//! binding for followers, which never read past it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::format::{self, Frontier, FRONTIER_FILE_NAME, FRONTIER_LEN};
/// Wakes followers when the frontier file is rewritten (Linux).
#[cfg(tidelog_linux)]
pub(crate) use crate::storage::os::DirWatch;

/// The writer's side: rewrites the record in place (one `pwrite` of 32
/// bytes into the page cache, no sync).
#[derive(Debug)]
pub(crate) struct Publisher {
    path: PathBuf,
    file: Option<File>,
    journal_id: u64,
    published: Option<u64>,
    /// A failure was logged and no publish has succeeded since.
    failing: bool,
}

impl Publisher {
    /// Publishes `durable` (the recovered end at open) for the journal `journal_id`.
    pub(crate) fn new(dir: &Path, journal_id: u64, durable: u64) -> Publisher {
        let mut publisher =
            Publisher { path: dir.join(FRONTIER_FILE_NAME), file: None, journal_id, published: None, failing: false };
        publisher.publish(durable);
        publisher
    }

    /// Publishes `durable` if it moved. On a full disk or a read-only
    /// directory the file may not be made: that is logged once, and tried
    /// again at the next round.
    pub(crate) fn publish(&mut self, durable: u64) {
        if self.published == Some(durable) {
            return;
        }
        let record = format::encode_frontier(Frontier { journal_id: self.journal_id, durable });
        let result = match &self.file {
            Some(file) => file.write_all_at(&record, 0),
            None => OpenOptions::new().write(true).create(true).truncate(false).open(&self.path).and_then(|file| {
                let written = file.write_all_at(&record, 0);
                self.file = Some(file);
                written
            }),
        };
        match result {
            Ok(()) => {
                self.published = Some(durable);
                self.failing = false;
            }
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(
                    path = %self.path.display(), durable_lsn = durable, error = %e,
                    "cannot publish the durable frontier: followers in other processes wait until it can be"
                );
            }
            Err(_) => {}
        }
    }
}

/// The frontier the writer of the journal in `dir` published, or `None`
/// when there is none (never published, or left unreadable by a power cut:
/// the next open rewrites it).
pub(crate) fn read_published(dir: &Path) -> io::Result<Option<Frontier>> {
    let file = match File::open(dir.join(FRONTIER_FILE_NAME)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = [0u8; FRONTIER_LEN];
    // A read that overlaps the writer's rewrite may see a mix of old and
    // new bytes; the CRC refuses it and the next read sees one or the other.
    for _ in 0..16 {
        let n = read_at_most(&file, &mut buf)?;
        if let Some(f) = format::decode_frontier(&buf[..n]) {
            return Ok(Some(f));
        }
        if n < FRONTIER_LEN {
            return Ok(None);
        }
        std::thread::yield_now();
    }
    Ok(None)
}

fn read_at_most(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_rewrites_in_place_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_published(dir.path()).unwrap(), None);
        let mut p = Publisher::new(dir.path(), 7, 4096);
        assert_eq!(read_published(dir.path()).unwrap(), Some(Frontier { journal_id: 7, durable: 4096 }));
        p.publish(8192);
        assert_eq!(read_published(dir.path()).unwrap(), Some(Frontier { journal_id: 7, durable: 8192 }));
        let len = std::fs::metadata(dir.path().join(FRONTIER_FILE_NAME)).unwrap().len();
        assert_eq!(len, FRONTIER_LEN as u64);
        std::fs::write(dir.path().join(FRONTIER_FILE_NAME), [0xAB; 32]).unwrap();
        assert_eq!(read_published(dir.path()).unwrap(), None, "garbage is no frontier");
    }
}
