//! Online backup: a consistent copy of a journal up to a durable frontier,
//! made while appends go on — [`Journal::backup`](crate::Journal::backup)
//! in the journal's own process, [`backup_dir`] for a journal another
//! process holds (or nobody does).
//!
//! The frontier `F` is taken first, then the segments are listed: every
//! segment the frontier reaches is then listed. Segments based below `F`
//! with a successor based at or below `F` are sealed, durable and never
//! written again (segments are never recycled), so they are hard-linked;
//! the one holding `F` gets its prefix up to `F` copied. See `copy` for the
//! file work and its order. This module decides *what* to copy; it never
//! writes into the source journal.

mod copy;
mod pace;

pub(crate) use pace::{set_chunk as set_paced_chunk, PACED_CHUNK};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::segment::{self, scan::scan_segment};
use crate::storage::os;
use crate::{Error, JournalReader, Lsn, Result};

/// How many times [`backup_dir`] lists the segments again when truncation
/// in the owning process deleted one between the listing and its opening.
const RELIST_ATTEMPTS: usize = 16;

/// What a backup made.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BackupReport {
    /// The backup's directory (renamed into place, synced).
    pub dest: PathBuf,
    /// The oldest LSN the backup holds (its first segment's base).
    pub first_lsn: Lsn,
    /// The end of the backup's log: every record ending at or below it is
    /// in the backup. At most the frontier the backup was taken at, less
    /// only by an unfinished batch or record there.
    pub end_lsn: Lsn,
    /// The durable frontier the backup was taken at.
    pub frontier: Lsn,
    /// Sealed segments hard-linked (sharing the source's immutable files).
    pub segments_linked: usize,
    /// Segments copied: the last one always, sealed ones where the
    /// filesystem refused a hard link.
    pub segments_copied: usize,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// How long each step took.
    pub timings: BackupTimings,
}

/// How long each step of a backup took (wall time, on the thread doing
/// the file work).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct BackupTimings {
    /// Opening the segments and scanning the last one for its last whole
    /// record at or below the frontier.
    pub open: Duration,
    /// Hard-linking the sealed segments.
    pub link: Duration,
    /// Copying (the pacing sleeps included).
    pub copy: Duration,
    /// Of `copy`, the time slept to leave the device to the journal.
    pub paced: Duration,
    /// The copies' `fdatasync`s.
    pub sync_data: Duration,
    /// The backup directory's `fsync`.
    pub sync_dir: Duration,
    /// The rename into place and the parent directory's `fsync`.
    pub publish: Duration,
}

/// Backs up the journal in `src` to a new directory `dest`, without a
/// runtime and without taking the journal's lock, so it works on a journal
/// another process is appending to.
///
/// What it copies is the journal's durable state: up to the durable
/// frontier its writer publishes when a live process holds the journal's
/// lock (Linux tells from `/proc/locks`), or the whole valid log — what
/// recovery would keep — when none does. A live writer that publishes no
/// frontier (a tidelog before the published frontier) is refused. `dest`
/// must not exist; the backup is made under a temporary name beside it
/// (`DEST.tmp-…`), synced, renamed to `dest`, and `dest`'s parent synced
/// before this returns: a crash leaves either no `dest` or a complete one.
pub fn backup_dir(src: impl AsRef<Path>, dest: impl AsRef<Path>) -> Result<BackupReport> {
    let (src, dest) = (src.as_ref(), dest.as_ref());
    copy::check_absent(dest)?;
    let frontier = durable_state(src)?;
    for _ in 0..RELIST_ATTEMPTS {
        let started = Instant::now();
        let bases = segment::list_to_read(src)?;
        match copy::open_sources(src, &bases, frontier)? {
            copy::Opened::All(sources) => return copy::make(dest, sources, frontier, started.elapsed()),
            // Truncation deleted a segment (and every one before it, oldest
            // first) after the listing: list again.
            copy::Opened::Vanished(base) => tracing::debug!(base, "segment truncated while listed; listing again"),
        }
    }
    Err(Error::io(
        "back up journal",
        src,
        std::io::Error::other(format!("segments kept vanishing under truncation ({RELIST_ATTEMPTS} listings)")),
    ))
}

/// [`Journal::backup`](crate::Journal::backup)'s blocking part: `bases`
/// are the segments up to `frontier`, pinned by the caller.
pub(crate) fn backup_pinned(src: &Path, dest: &Path, bases: &[u64], frontier: u64) -> Result<BackupReport> {
    copy::check_absent(dest)?;
    let started = Instant::now();
    match copy::open_sources(src, bases, frontier)? {
        copy::Opened::All(sources) => copy::make(dest, sources, frontier, started.elapsed()),
        copy::Opened::Vanished(base) => {
            Err(Error::Internal(format!("segment {base} of {} vanished while pinned for a backup", src.display())))
        }
    }
}

/// The LSN up to which the journal in `src` is durable, as the backup
/// must take it: the published frontier under a live writer, else the end
/// of the valid log.
fn durable_state(src: &Path) -> Result<u64> {
    let lock = src.join(crate::format::LOCK_FILE_NAME);
    let holder = os::flock_holder(&lock);
    let published = JournalReader::open(src)?.published_frontier()?;
    match (holder, published) {
        (Ok(None), _) => offline_end(src),
        (Ok(Some(_)) | Err(_), Some(lsn)) => Ok(lsn.as_u64()),
        (Ok(Some(pid)), None) => Err(Error::io(
            "back up journal",
            &lock,
            std::io::Error::other(format!(
                "process {pid} holds the journal but publishes no durable frontier (a tidelog older than the \
                 FRONTIER file): back it up from that process with Journal::backup, or stop it first"
            )),
        )),
        (Err(e), None) => Err(Error::io("tell who holds the journal's lock", &lock, e)),
    }
}

/// The end of the valid log of a journal nobody holds: what recovery would
/// keep. A last segment whose header never became durable (a rollover cut
/// short) is what recovery drops; the end is then that of the one before.
fn offline_end(src: &Path) -> Result<u64> {
    let bases = segment::list_to_read(src)?;
    for &base in bases.iter().rev() {
        let seg = match segment::open_to_read(src, base) {
            Ok(seg) => seg,
            Err(Error::Corrupt { reason, .. }) => {
                tracing::warn!(dir = %src.display(), base, reason, "backup: the last segment's header is invalid; ending before it");
                continue;
            }
            Err(e) => return Err(e),
        };
        return Ok(scan_segment(&seg.file, base, &seg.path, false)?.end);
    }
    Err(Error::corrupt(src, Lsn::ZERO, "no readable segment: not a tidelog journal"))
}
