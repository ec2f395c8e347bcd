//! Segment files: creation (header, sync, rename, directory sync), listing
//! and opening.
//!
//! A segment becomes visible under its final name only after its header is
//! durable, and its directory entry is synced before the segment is used, so
//! recovery never meets a half-made segment under a segment name.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

mod cursor;
pub(crate) mod frontier;
pub(crate) mod retention;
mod roll;
pub(crate) mod scan;

pub(crate) use cursor::{FrameCursor, Step};
pub(crate) use roll::{discard_spare, is_spare, make_spare, roll, seal};

use crate::format::{self, SegmentHeader};
use crate::storage::Storage;
use crate::{Error, Lsn, Result};

/// An open segment file.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
}

impl SegmentFile {
    pub(crate) fn new(base: u64, path: PathBuf, file: File) -> SegmentFile {
        SegmentFile { base, path, file }
    }
}

/// Suffix of a segment being made; such files are removed at open.
const TEMP_SUFFIX: &str = ".tlog.tmp";
/// The pre-created next segment (removed at open like any temp file).
pub(crate) const SPARE_NAME: &str = "spare.tlog.tmp";

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
pub(crate) fn reserve(storage: &dyn Storage, file: &File, from: u64, size: u64, how: Preallocate) -> io::Result<()> {
    match how {
        Preallocate::None => {}
        Preallocate::Fallocate => storage.allocate(file, size)?,
        Preallocate::Zero => {
            let zeros = vec![0u8; 1 << 20];
            let mut at = from;
            while at < size {
                let n = (size - at).min(zeros.len() as u64) as usize;
                storage.write_all_at(file, &zeros[..n], at)?;
                at += n as u64;
            }
        }
    }
    Ok(())
}

/// Creates the segment based at `base`, durable, file and directory entry.
pub(crate) fn create(storage: &dyn Storage, dir: &Path, base: u64, journal_id: u64) -> Result<SegmentFile> {
    let path = dir.join(format::segment_file_name(base));
    let temp = dir.join(format!("{base:020}{TEMP_SUFFIX}"));
    let header = format::encode_segment_header(&SegmentHeader { base_lsn: base, journal_id, flags: 0 });
    let made = (|| -> io::Result<File> {
        let file = storage.create(&temp)?;
        storage.write_all_at(&file, &header, 0)?;
        storage.sync_data(&file)?;
        storage.rename(&temp, &path)?;
        storage.sync_dir(dir)?;
        Ok(file)
    })();
    match made {
        Ok(file) => Ok(SegmentFile::new(base, path, file)),
        Err(e) => {
            let _ = storage.remove(&temp);
            Err(Error::io_at("create segment", path, Lsn::new(base), e))
        }
    }
}

/// Opens an existing segment for reading (and writing when `writable`)
/// and checks its header.
pub(crate) fn open(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    writable: bool,
) -> Result<(SegmentFile, SegmentHeader)> {
    let path = dir.join(format::segment_file_name(base));
    let file = storage.open(&path, writable).map_err(|e| Error::io_at("open segment", &path, Lsn::new(base), e))?;
    let header = read_header(&file, &path, base)?;
    Ok((SegmentFile::new(base, path, file), header))
}

pub(crate) fn read_header(file: &File, path: &Path, base: u64) -> Result<SegmentHeader> {
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

/// Opens segment `base` of the journal in `dir` for reading, without a
/// seam: readers only read.
pub(crate) fn open_to_read(dir: &Path, base: u64) -> Result<SegmentFile> {
    open(&crate::storage::OsStorage, dir, base, false).map(|(seg, _)| seg)
}

/// The segment bases in `dir`, for reading (nothing is cleaned up).
pub(crate) fn list_to_read(dir: &Path) -> Result<Vec<u64>> {
    list(&crate::storage::OsStorage, dir, false)
}

/// Drops a segment's pages from the page cache (after a reader consumed it,
/// so that reading a journal larger than memory evicts nothing else).
pub(crate) fn release_cache(seg: &SegmentFile) {
    crate::storage::os::drop_cache(&seg.file);
}

/// Base LSNs of the segment files in `dir`, ascending. Removes leftovers of
/// interrupted segment creation when `clean` is set.
pub(crate) fn list(storage: &dyn Storage, dir: &Path, clean: bool) -> Result<Vec<u64>> {
    let names = storage.list(dir).map_err(|e| Error::io("list journal directory", dir, e))?;
    let mut bases = Vec::new();
    for name in names {
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = format::parse_segment_file_name(name) {
            bases.push(base);
        } else if clean && name.ends_with(TEMP_SUFFIX) {
            let path = dir.join(name);
            storage.remove(&path).map_err(|e| Error::io("remove temp segment", &path, e))?;
        }
    }
    bases.sort_unstable();
    Ok(bases)
}
