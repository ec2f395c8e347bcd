//! The backup's file work, in the order that makes it crash-safe:
//!
//! 1. every segment to back up is opened (and its header checked) before
//!    anything is made, so a segment deleted by truncation afterwards is
//!    still read through its open file — the backup never has a gap;
//! 2. the backup is made in a temporary directory beside `DEST`: sealed
//!    segments hard-linked (copied where the filesystem refuses), the last
//!    one's prefix copied — paced on the journal's device, one small chunk
//!    in flight, see `pace` — and `fdatasync`ed;
//! 3. the temporary directory is synced, renamed to `DEST` (never over an
//!    existing one), and `DEST`'s parent synced.
//!
//! A crash before the rename's sync leaves no `DEST` (perhaps a
//! `DEST.tmp-…`, which nothing reads); after it, a complete backup. The
//! last segment of a backup is always a copy, never a link: opening the
//! backup appends to (and recovery may cut) its last segment, which must
//! not be a file of the source journal.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::pace::{self, Pacer, PACED_CHUNK_MAX};
use super::{BackupReport, BackupTimings};
use crate::format;
use crate::segment::{read_header, scan::scan_segment_to};
use crate::storage::os;
use crate::{Error, Lsn, Result};

/// Bytes per read and write of a copy.
const COPY_BUF: usize = 1 << 20;
/// Writeback unit of an unpaced copy (onto another device than the
/// journal's): about two of these are ever dirty per copy.
const WRITEBACK_CHUNK: u64 = 8 << 20;
const _: () = assert!(WRITEBACK_CHUNK % COPY_BUF as u64 == 0);
const _: () = assert!(PACED_CHUNK_MAX <= COPY_BUF as u64);
/// Temporary names tried beside `DEST`.
const TEMP_ATTEMPTS: u32 = 64;

/// One segment to back up, open.
#[derive(Debug)]
pub(super) struct Source {
    base: u64,
    path: PathBuf,
    file: File,
    /// Bytes of the file that belong to the backup.
    len: u64,
    /// Sealed, with a successor in the backup: may be hard-linked.
    sealed: bool,
}

/// The segments to back up, or the first one truncation deleted.
#[derive(Debug)]
pub(super) enum Opened {
    All(Vec<Source>),
    Vanished(u64),
}

/// `dest` must not exist: a backup replaces nothing.
pub(super) fn check_absent(dest: &Path) -> Result<()> {
    match fs::symlink_metadata(dest) {
        Ok(_) => Err(Error::io(
            "back up journal",
            dest,
            io::Error::new(io::ErrorKind::AlreadyExists, "the destination exists (a backup never replaces anything)"),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("stat backup destination", dest, e)),
    }
}

/// Opens the segments of `bases` (ascending) that hold LSNs below
/// `frontier`, or the one that starts at it, and finds how much of each
/// the backup takes.
pub(super) fn open_sources(dir: &Path, bases: &[u64], frontier: u64) -> Result<Opened> {
    let kept: Vec<u64> = bases.iter().copied().filter(|&b| b <= frontier).collect();
    if kept.is_empty() {
        let first = bases.first().map_or("none".to_string(), u64::to_string);
        return Err(Error::corrupt(
            dir,
            Lsn::new(frontier),
            format!("no segment holds the durable frontier (the oldest segment starts at {first})"),
        ));
    }
    let mut sources = Vec::with_capacity(kept.len());
    for (i, &base) in kept.iter().enumerate() {
        let next = kept.get(i + 1).copied();
        let path = dir.join(format::segment_file_name(base));
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Opened::Vanished(base)),
            Err(e) => return Err(Error::io_at("open segment", &path, Lsn::new(base), e)),
        };
        read_header(&file, &path, base)?;
        let end = next.unwrap_or(frontier);
        let have = file.metadata().map_err(|e| Error::io_at("stat segment", &path, Lsn::new(base), e))?.len();
        if have < format::file_offset(base, end) {
            return Err(Error::corrupt(
                &path,
                Lsn::new(end),
                format!("the file holds {have} bytes but LSN {end} lies at offset {}", format::file_offset(base, end)),
            ));
        }
        let end = if next.is_some() { end } else { record_end(&file, &path, base, frontier)? };
        let len = format::file_offset(base, end);
        sources.push(Source { base, path, file, len, sealed: next.is_some() });
    }
    Ok(Opened::All(sources))
}

/// Makes the backup of `sources` at `dest` (see the module docs).
/// `open` is how long opening `sources` took.
pub(super) fn make(dest: &Path, sources: Vec<Source>, frontier: u64, open: Duration) -> Result<BackupReport> {
    let temp = make_temp_dir(dest)?;
    let filled = fill(&temp, &sources, frontier).and_then(|report| {
        let started = Instant::now();
        publish(&temp, dest).map(|()| (report, started.elapsed()))
    });
    match filled {
        Ok((mut report, publish)) => {
            report.dest = dest.to_path_buf();
            report.timings.open = open;
            report.timings.publish = publish;
            tracing::info!(
                dest = %dest.display(), first_lsn = %report.first_lsn, end_lsn = %report.end_lsn,
                linked = report.segments_linked, copied = report.segments_copied, bytes = report.bytes_copied,
                timings = ?report.timings, "journal backed up"
            );
            Ok(report)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&temp);
            Err(e)
        }
    }
}

/// `DEST.tmp-<pid>-<n>`: beside `dest`, so the rename stays on one
/// filesystem.
fn make_temp_dir(dest: &Path) -> Result<PathBuf> {
    let mut last = None;
    for n in 0..TEMP_ATTEMPTS {
        let mut name = dest.as_os_str().to_owned();
        name.push(format!(".tmp-{}-{n}", std::process::id()));
        let temp = PathBuf::from(name);
        match fs::create_dir(&temp) {
            Ok(()) => return Ok(temp),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(temp),
            Err(e) => return Err(Error::io("create backup directory", &temp, e)),
        }
    }
    let temp = last.unwrap_or_else(|| dest.to_path_buf());
    Err(Error::io("create backup directory", temp, io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// Links or copies every source into `temp` and syncs `temp`.
fn fill(temp: &Path, sources: &[Source], frontier: u64) -> Result<BackupReport> {
    let mut report = BackupReport { frontier: Lsn::new(frontier), ..BackupReport::default() };
    let last = sources.last().expect("open_sources returns at least one segment");
    report.first_lsn = Lsn::new(sources[0].base);
    let t = &mut report.timings;
    for s in sources {
        let to = temp.join(format::segment_file_name(s.base));
        let started = Instant::now();
        if s.sealed && link(s, &to)? {
            t.link += started.elapsed();
            report.segments_linked += 1;
        } else {
            copy_prefix(s, &to, t)?;
            report.segments_copied += 1;
            report.bytes_copied += s.len;
        }
    }
    report.end_lsn = Lsn::new(last.base + last.len - format::SEGMENT_HEADER_LEN as u64);
    let started = Instant::now();
    os::sync_dir(temp).map_err(|e| Error::io("sync backup directory", temp, e))?;
    report.timings.sync_dir = started.elapsed();
    Ok(report)
}

/// Hard-links a sealed segment; false where the filesystem cannot (or the
/// name no longer is the file opened: truncation deleted it since), for
/// the caller to copy it instead. A linked segment needs no data sync: it
/// was durable before its successor was named.
fn link(s: &Source, to: &Path) -> Result<bool> {
    match fs::hard_link(&s.path, to) {
        Ok(()) => {
            let (linked, opened) = (fs::metadata(to), s.file.metadata());
            let at = |e| Error::io_at("stat segment", to, Lsn::new(s.base), e);
            let (linked, opened) = (linked.map_err(at)?, opened.map_err(at)?);
            if (linked.dev(), linked.ino()) == (opened.dev(), opened.ino()) {
                return Ok(true);
            }
            fs::remove_file(to).map_err(|e| Error::io_at("remove stray link", to, Lsn::new(s.base), e))?;
            Ok(false)
        }
        Err(e) if can_copy_instead(&e) => Ok(false),
        Err(e) => Err(Error::io_at("hard-link segment", to, Lsn::new(s.base), e)),
    }
}

fn can_copy_instead(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), CrossesDevices | PermissionDenied | Unsupported | NotFound)
        || e.raw_os_error() == Some(libc::EMLINK)
}

/// Copies `[0, s.len)` of the source to a new file `to` and syncs it,
/// adding its steps' times to `t`. Paced (onto the journal's device, see
/// `pace`): each small chunk is written back and waited for before the
/// next, then the device is left to the journal for about as long.
/// Unpaced (onto another device): writeback starts behind each 8 MiB
/// chunk and the chunk before is waited for, so about two chunks are ever
/// dirty. Written pages are dropped from the
/// cache (a backup's pages are not read again here).
fn copy_prefix(s: &Source, to: &Path, t: &mut BackupTimings) -> Result<()> {
    let at = |lsn: u64| Lsn::new(s.base + lsn.saturating_sub(format::SEGMENT_HEADER_LEN as u64));
    let started = Instant::now();
    let out = OpenOptions::new().write(true).create_new(true).open(to).map_err(|e| Error::io("create", to, e))?;
    let paced = pace::chunk(same_device(s, &out, to)?);
    let chunk = paced.unwrap_or(WRITEBACK_CHUNK);
    let mut pacer = Pacer::default();
    let mut buf = vec![0u8; COPY_BUF];
    let (mut off, mut chunk_start, mut behind) = (0u64, 0u64, None::<(u64, u64)>);
    while off < s.len {
        let want = (s.len - off).min(chunk).min(COPY_BUF as u64) as usize;
        let n = match s.file.read_at(&mut buf[..want], off) {
            Ok(0) => return Err(Error::corrupt(&s.path, at(off), "the segment ended while being backed up")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io_at("read segment", &s.path, at(off), e)),
        };
        os::pwrite_all(&out, &buf[..n], off).map_err(|e| Error::io_at("write", to, at(off), e))?;
        off += n as u64;
        if off - chunk_start < chunk && off < s.len {
            continue;
        }
        let len = off - chunk_start;
        if paced.is_some() {
            let waiting = Instant::now();
            os::wait_writeback(&out, chunk_start, len)
                .map_err(|e| Error::io_at("writeback", to, at(chunk_start), e))?;
            pacer.after_chunk(waiting.elapsed());
        } else {
            os::start_writeback(&out, chunk_start, len)
                .map_err(|e| Error::io_at("start writeback", to, at(chunk_start), e))?;
            if let Some((from, len)) = behind.replace((chunk_start, len)) {
                os::wait_writeback(&out, from, len).map_err(|e| Error::io_at("writeback", to, at(from), e))?;
            }
        }
        chunk_start = off;
    }
    t.copy += started.elapsed();
    t.paced += pacer.slept;
    let started = Instant::now();
    os::sync_data(&out).map_err(|e| Error::io_at("fdatasync", to, at(s.len), e))?;
    t.sync_data += started.elapsed();
    os::drop_cache(&out);
    Ok(())
}

/// Whether the copy `out` (at `to`) lies on the source's device: only
/// then does it queue beside the journal's syncs.
fn same_device(s: &Source, out: &File, to: &Path) -> Result<bool> {
    let src = s.file.metadata().map_err(|e| Error::io_at("stat segment", &s.path, Lsn::new(s.base), e))?;
    let dst = out.metadata().map_err(|e| Error::io_at("stat", to, Lsn::new(s.base), e))?;
    Ok(src.dev() == dst.dev())
}

/// The end of the last whole record (or batch) of the segment at or below
/// `frontier`: the frontier may lie inside a batch whose rest was not yet
/// durable, and the backup must end where a record does. Scans the
/// source, whose pages a live journal has in the cache, never past the
/// frontier.
fn record_end(file: &File, path: &Path, base: u64, frontier: u64) -> Result<u64> {
    let scan = scan_segment_to(file, base, path, frontier, false)?;
    if scan.end < frontier {
        tracing::info!(path = %path.display(), frontier, end = scan.end, "backup ends at the last whole record below the frontier");
    }
    Ok(scan.end)
}

/// Renames the synced temporary directory to `dest` and makes the rename
/// durable.
fn publish(temp: &Path, dest: &Path) -> Result<()> {
    os::rename_noreplace(temp, dest).map_err(|e| Error::io("rename backup into place", dest, e))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    os::sync_dir(parent).map_err(|e| Error::io("sync backup's parent directory", parent, e))
}
