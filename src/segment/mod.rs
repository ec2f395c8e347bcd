//! Segment files: creation (header, sync, rename, directory sync), listing
//! and opening.
//!
//! A segment becomes visible under its final name only after its header is
//! durable, and its directory entry is synced before the segment is used, so
//! recovery never meets a half-made segment under a segment name.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

pub(crate) mod retention;

use crate::format::{self, SegmentHeader};
use crate::substrate::record;
use crate::{Error, Lsn, Result};

/// An open segment file.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Further open file descriptions of the same file, one for each sync
    /// that may run beside another. The kernel reports a writeback error
    /// once per open file description (errseq), so two concurrent
    /// `fdatasync`s on one description could split an error between them:
    /// the one whose range failed might return success. On descriptions of
    /// their own, each sees every error since its previous sync.
    pub(crate) lanes: Vec<File>,
}

impl SegmentFile {
    fn new(base: u64, path: PathBuf, file: File) -> SegmentFile {
        SegmentFile { base, path, file, lanes: Vec::new() }
    }

    /// Opens descriptions for up to `more` further concurrent syncs. Fewer
    /// lanes only means fewer overlapping syncs, so a failure is logged,
    /// not returned.
    pub(crate) fn open_lanes(&mut self, more: usize) {
        while self.lanes.len() < more {
            match File::open(&self.path) {
                Ok(file) => self.lanes.push(file),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot open a second sync lane");
                    return;
                }
            }
        }
    }

    /// How many syncs may run on this file at once.
    pub(crate) fn sync_lanes(&self) -> usize {
        1 + self.lanes.len()
    }

    /// The descriptor sync lane `lane` uses (0 is the one writes use).
    pub(crate) fn sync_fd(&self, lane: usize) -> &File {
        lane.checked_sub(1).and_then(|i| self.lanes.get(i)).unwrap_or(&self.file)
    }
}

/// Suffix of a segment being made; such files are removed at open.
const TEMP_SUFFIX: &str = ".tlog.tmp";
/// The pre-created next segment (removed at open like any temp file).
const SPARE_NAME: &str = "spare.tlog.tmp";

/// How the pre-created next segment's space is reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Preallocate {
    /// The file grows as records are written.
    None,
    /// `fallocate` the whole segment: the blocks are reserved (a full disk
    /// shows up before the rollover, not at a write), but unwritten, so
    /// every first write into a block still changes metadata.
    #[default]
    Fallocate,
    /// Write zeros over the whole segment ahead of time: later writes
    /// overwrite allocated, written blocks, so an `fdatasync` carries no
    /// metadata. Costs a segment's worth of extra writes in the background.
    Zero,
}

/// Reserves `[from, size)` of a new segment file as `how` says (not synced).
pub(crate) fn reserve(dir: &Path, file: &File, from: u64, size: u64, how: Preallocate) -> io::Result<()> {
    match how {
        Preallocate::None => {}
        Preallocate::Fallocate => record::allocate(dir, file, size)?,
        Preallocate::Zero => {
            let zeros = vec![0u8; 1 << 20];
            let mut at = from;
            while at < size {
                let n = (size - at).min(zeros.len() as u64) as usize;
                record::pwrite_all(dir, file, &zeros[..n], at)?;
                at += n as u64;
            }
        }
    }
    Ok(())
}

/// Makes the spare for the next segment: created, space reserved, synced.
/// It gets its header and name at rollover ([`activate`]).
pub(crate) fn make_spare(dir: &Path, size: u64, how: Preallocate) -> io::Result<File> {
    let path = dir.join(SPARE_NAME);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    record::created(dir, &file);
    reserve(dir, &file, 0, size, how)?;
    // The allocation itself is durable now, not in the first sync of a
    // record in this segment.
    record::sync_data(dir, &file)?;
    Ok(file)
}

/// Removes an unused spare (at close; open removes leftovers anyway).
pub(crate) fn discard_spare(dir: &Path) -> io::Result<()> {
    record::remove_file(dir, &dir.join(SPARE_NAME))
}

/// Turns the spare into the segment based at `base`: header, then name. Not
/// durable yet: the driver's seal syncs the file and the directory before
/// any LSN in it is reported durable.
pub(crate) fn activate(dir: &Path, spare: File, base: u64, journal_id: u64) -> Result<SegmentFile> {
    let path = dir.join(format::segment_file_name(base));
    let header = format::encode_segment_header(&SegmentHeader { base_lsn: base, journal_id, flags: 0 });
    record::pwrite_all(dir, &spare, &header, 0)
        .and_then(|()| record::rename(dir, &dir.join(SPARE_NAME), &path))
        .map_err(|e| Error::io_at("activate segment", &path, Lsn::new(base), e))?;
    Ok(SegmentFile::new(base, path, spare))
}

/// Creates the segment based at `base`, durable, file and directory entry.
pub(crate) fn create(dir: &Path, base: u64, journal_id: u64) -> Result<SegmentFile> {
    let path = dir.join(format::segment_file_name(base));
    let temp = dir.join(format!("{base:020}{TEMP_SUFFIX}"));
    let header = format::encode_segment_header(&SegmentHeader { base_lsn: base, journal_id, flags: 0 });
    let made = (|| -> io::Result<File> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&temp)?;
        record::created(dir, &file);
        record::pwrite_all(dir, &file, &header, 0)?;
        record::sync_data(dir, &file)?;
        record::rename(dir, &temp, &path)?;
        record::sync_dir(dir)?;
        Ok(file)
    })();
    match made {
        Ok(file) => Ok(SegmentFile::new(base, path, file)),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(Error::io_at("create segment", path, Lsn::new(base), e))
        }
    }
}

/// Opens an existing segment for reading and writing and checks its header.
pub(crate) fn open(dir: &Path, base: u64, writable: bool) -> Result<(SegmentFile, SegmentHeader)> {
    let path = dir.join(format::segment_file_name(base));
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(&path)
        .map_err(|e| Error::io_at("open segment", &path, Lsn::new(base), e))?;
    let header = read_header(&file, &path, base)?;
    Ok((SegmentFile::new(base, path, file), header))
}

fn read_header(file: &File, path: &Path, base: u64) -> Result<SegmentHeader> {
    use std::os::unix::fs::FileExt;
    let mut block = vec![0u8; format::SEGMENT_HEADER_LEN];
    let mut got = 0;
    while got < block.len() {
        match file.read_at(&mut block[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io_at("read segment header", path, Lsn::new(base), e)),
        }
    }
    let header =
        format::decode_segment_header(&block[..got]).map_err(|why| Error::corrupt(path, Lsn::new(base), why))?;
    if header.base_lsn != base {
        return Err(Error::corrupt(
            path,
            Lsn::new(base),
            format!("header says base LSN {} but the file name says {base}", header.base_lsn),
        ));
    }
    Ok(header)
}

/// Base LSNs of the segment files in `dir`, ascending. Removes leftovers of
/// interrupted segment creation when `clean` is set.
pub(crate) fn list(dir: &Path, clean: bool) -> Result<Vec<u64>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list journal directory", dir, e))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list journal directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = format::parse_segment_file_name(name) {
            bases.push(base);
        } else if clean && name.ends_with(TEMP_SUFFIX) {
            record::remove_file(dir, &entry.path()).map_err(|e| Error::io("remove temp segment", entry.path(), e))?;
        }
    }
    bases.sort_unstable();
    Ok(bases)
}
