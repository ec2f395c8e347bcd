//! Rollover: the next segment is made ahead of need (the *spare*:
//! created, space reserved, synced), named when the active one is full,
//! and *sealed*. The writer runs these on its I/O threads; the order is
//! what keeps a crash from leaving a segment under a name without its
//! header, or a new segment without the end of the one before it:
//!
//! 1. the sealed segment is synced before the next one is named;
//! 2. the spare gets its header, then its name (`activate`);
//! 3. the seal syncs the new segment (its header) and the directory (its
//!    name); the writer reports nothing in it, nor its base, durable before.

use std::fs::File;
use std::io;
use std::path::Path;

use super::{create, reserve, Preallocate, SegmentFile, SPARE_NAME};
use crate::format::{self, SegmentHeader};
use crate::storage::{os, Storage};
use crate::{Error, Lsn, Result};

/// Makes the spare for the next segment: created, space reserved, synced.
/// It gets its header and name at rollover ([`activate`]).
pub(crate) fn make_spare(storage: &dyn Storage, dir: &Path, size: u64, how: Preallocate) -> io::Result<File> {
    let file = storage.create(&dir.join(SPARE_NAME))?;
    reserve(storage, &file, 0, size, how)?;
    // The allocation itself is durable now, not in the first sync of a
    // record in this segment.
    storage.sync_data(&file)?;
    Ok(file)
}

/// Removes an unused spare (at close; open removes leftovers anyway).
pub(crate) fn discard_spare(storage: &dyn Storage, dir: &Path) -> io::Result<()> {
    storage.remove(&dir.join(SPARE_NAME))
}

/// Whether `from` is the spare: renaming it to a segment name activates it.
pub(crate) fn is_spare(from: &Path) -> bool {
    from.file_name().is_some_and(|n| n == SPARE_NAME)
}

/// Turns the spare into the segment based at `base`: header, then name. Not
/// durable yet: the seal syncs the file and the directory before any LSN
/// in it is reported durable.
fn activate(storage: &dyn Storage, dir: &Path, spare: File, base: u64, journal_id: u64) -> Result<SegmentFile> {
    let path = dir.join(format::segment_file_name(base));
    let header = format::encode_segment_header(&SegmentHeader { base_lsn: base, journal_id, flags: 0 });
    storage
        .write_all_at(&spare, &header, 0)
        .and_then(|()| storage.rename(&dir.join(SPARE_NAME), &path))
        .map_err(|e| Error::io_at("activate segment", &path, Lsn::new(base), e))?;
    Ok(SegmentFile::new(base, path, spare))
}

/// The blocking part of a rollover to the segment based at `base`: syncs
/// the segment being sealed, then names the next one — the spare if one
/// was made, else a segment made (and synced, name and all) here — and
/// turns `O_DIRECT` on for it when `direct`.
#[allow(clippy::too_many_arguments)] // the rollover's whole state, passed to a thread
pub(crate) fn roll(
    storage: &dyn Storage,
    dir: &Path,
    sealed: &File,
    sealed_path: &Path,
    spare: Option<File>,
    base: u64,
    journal_id: u64,
    direct: bool,
) -> Result<SegmentFile> {
    storage.sync_data(sealed).map_err(|e| Error::io_at("fdatasync", sealed_path, Lsn::new(base), e))?;
    let made = match spare {
        Some(file) => activate(storage, dir, file, base, journal_id)?,
        None => create(storage, dir, base, journal_id)?,
    };
    if direct {
        os::set_direct(&made.file).map_err(|e| Error::io_at("set O_DIRECT", &made.path, Lsn::new(base), e))?;
    }
    Ok(made)
}

/// The seal of the segment based at `base`: its header, then its name.
pub(crate) fn seal(storage: &dyn Storage, dir: &Path, file: &File, path: &Path, base: u64) -> Result<()> {
    storage.sync_data(file).map_err(|e| Error::io_at("fdatasync", path, Lsn::new(base), e))?;
    storage.sync_dir(dir).map_err(|e| Error::io_at("sync journal directory", dir, Lsn::new(base), e))
}
