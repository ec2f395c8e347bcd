//! Recovery at open: find the end of the log, cut what follows it, report.
//!
//! Sealed segments were synced whole before the writer moved past them, so
//! only the last segment can hold a damaged tail; it is scanned frame by
//! frame. The first invalid frame ends the log; an atomic batch whose last
//! frame is missing ends it at the batch's start. Under `PointInTime` the
//! rest is copied to a sidecar (`<segment>.corrupt-<lsn>`, synced) and cut;
//! under `AbsoluteConsistency` valid frames after the end are `Corrupt`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::format;
use crate::segment::scan::{nonzero_extent, scan_segment};
use crate::segment::{self, SegmentFile};
use crate::storage::Storage;
use crate::{Error, Lsn, Result};

/// What recovery does with a damaged tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RecoveryMode {
    /// Keep the longest valid prefix; cut and report the rest.
    #[default]
    PointInTime,
    /// Tolerate at most one torn final frame (or batch); anything else is
    /// [`Error::Corrupt`].
    AbsoluteConsistency,
}

/// What open found and what it cut.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub(crate) end_lsn: Lsn,
    pub(crate) first_lsn: Lsn,
    pub(crate) segments: usize,
    pub(crate) tail_records: u64,
    pub(crate) truncated_bytes: u64,
    pub(crate) valid_frames_followed: bool,
    pub(crate) sidecar: Option<PathBuf>,
    pub(crate) created: bool,
}

impl RecoveryReport {
    /// The end of the recovered log: appends continue here.
    pub fn end_lsn(&self) -> Lsn {
        self.end_lsn
    }
    /// The oldest LSN still held.
    pub fn first_lsn(&self) -> Lsn {
        self.first_lsn
    }
    /// Bytes after the end that were cut, up to the last non-zero one (0 for
    /// a clean shutdown; zeros are unused or preallocated space).
    pub fn truncated_bytes(&self) -> u64 {
        self.truncated_bytes
    }
    /// Valid-looking frames followed the cut: more than a torn tail was lost.
    pub fn valid_frames_followed(&self) -> bool {
        self.valid_frames_followed
    }
    /// Where the cut bytes were saved, if any were.
    pub fn sidecar(&self) -> Option<&Path> {
        self.sidecar.as_deref()
    }
    /// Segment files found (or created).
    pub fn segments(&self) -> usize {
        self.segments
    }
    /// Records found in the last segment's scan.
    pub fn tail_records(&self) -> u64 {
        self.tail_records
    }
    /// The directory held no journal and a new one was created.
    pub fn created(&self) -> bool {
        self.created
    }
}

/// True if a valid frame starts anywhere in `tail`, which begins at `lsn`.
fn any_valid_frame(tail: &[u8], lsn: u64) -> bool {
    (0..tail.len()).step_by(format::FRAME_ALIGN).any(|at| format::decode_frame(&tail[at..], lsn + at as u64).is_ok())
}

/// What the caller needs to continue after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) bases: Vec<u64>,
    pub(crate) last: SegmentFile,
    /// `last` was made by recovery (a new journal, or one remade at its
    /// base): its space is still to be reserved.
    pub(crate) fresh: bool,
    pub(crate) journal_id: u64,
    pub(crate) report: RecoveryReport,
}

pub(crate) fn recover(storage: &dyn Storage, dir: &Path, mode: RecoveryMode) -> Result<Recovered> {
    let _span = tracing::info_span!("tidelog.recovery", dir = %dir.display()).entered();
    let mut bases = segment::list(storage, dir, true)?;
    let mut report = RecoveryReport::default();
    if bases.is_empty() {
        let journal_id = new_journal_id();
        let last = segment::create(storage, dir, 0, journal_id)?;
        bases.push(0);
        report.segments = 1;
        report.created = true;
        return Ok(Recovered { bases, last, fresh: true, journal_id, report });
    }
    let (last, header) = loop {
        let &base = bases.last().expect("not empty");
        match segment::open(storage, dir, base, true) {
            Ok(opened) => break opened,
            Err(Error::Corrupt { reason, .. }) => {
                drop_unsealed_segment(storage, dir, base, mode, &reason, bases.len() == 1, &mut report)?;
                bases.pop();
                if bases.is_empty() {
                    // It was the only one (truncation had removed those
                    // before it): the log continues at its base, in a new
                    // segment made there, so no LSN is ever handed out twice.
                    let journal_id = new_journal_id();
                    let last = segment::create(storage, dir, base, journal_id)?;
                    bases.push(base);
                    report.end_lsn = Lsn::new(base);
                    report.first_lsn = Lsn::new(base);
                    report.segments = 1;
                    return Ok(Recovered { bases, last, fresh: true, journal_id, report });
                }
            }
            Err(e) => return Err(e),
        }
    };
    let base = last.base;
    // Compressed records count as records; their payloads are not
    // decompressed here: the CRC vouches for the stored bytes, and a frame
    // whose bytes do not decompress was written so (cutting the log there
    // would drop the good records after it). Readers and `verify` report it.
    let scan = scan_segment(&last.file, base, &last.path, false)?;
    if let Some(kind) = scan.unknown_required {
        return Err(Error::corrupt(
            &last.path,
            Lsn::new(scan.stop),
            format!("frame kind {kind:#04x} is required but unknown to this version"),
        ));
    }
    let file_len = last.file.metadata().map_err(|e| Error::io("stat segment", &last.path, e))?.len();
    let end_offset = format::file_offset(base, scan.end);
    // Zeros after the end are unused space (a preallocated segment, or a
    // torn write that never reached the disk); only bytes up to the last
    // non-zero one are a damaged tail.
    let used = nonzero_extent(&last.file, end_offset, file_len)
        .map_err(|e| Error::io_at("read segment", &last.path, Lsn::new(scan.end), e))?;
    let tail = read_tail(&last.file, end_offset, end_offset + used)
        .map_err(|e| Error::io_at("read segment", &last.path, Lsn::new(scan.end), e))?;
    let garbage_from = (scan.stop - scan.end) as usize;
    let followed = tail.len() > garbage_from + format::FRAME_ALIGN
        && any_valid_frame(&tail[garbage_from + format::FRAME_ALIGN..], scan.stop + format::FRAME_ALIGN as u64);
    if followed && mode == RecoveryMode::AbsoluteConsistency {
        return Err(Error::corrupt(
            &last.path,
            Lsn::new(scan.end),
            "valid frames follow invalid bytes: more than a torn final write is damaged",
        ));
    }
    if !tail.is_empty() {
        report.sidecar = match try_save_sidecar(storage, dir, &last.path, scan.end, &tail) {
            Ok(path) => Some(path),
            // A full disk has no room for the evidence (an append that
            // failed with ENOSPC can leave just such a torn frame). A torn
            // final write, with no valid frame after it, holds nothing that
            // was acknowledged durable: it is cut without a copy, and said
            // so, so that the journal opens and truncation can free space.
            // Damage with valid frames after it stays refused.
            Err((e, _)) if e.raw_os_error() == Some(libc::ENOSPC) && !followed => {
                tracing::error!(
                    segment = %last.path.display(), end_lsn = scan.end, bytes = tail.len(),
                    "no space to save the torn tail before cutting it: cut without a copy"
                );
                None
            }
            Err((e, path)) => return Err(Error::io_at("save cut tail", &path, Lsn::new(scan.end), e)),
        };
        report.truncated_bytes += tail.len() as u64;
        report.valid_frames_followed = followed;
        tracing::warn!(
            segment = %last.path.display(), end_lsn = scan.end, bytes = tail.len(), valid_frames_followed = followed,
            "recovery cut a damaged tail"
        );
        discard_streams_checkpoint(storage, dir)?;
        storage
            .set_len(&last.file, end_offset)
            .map_err(|e| Error::io_at("truncate segment", &last.path, Lsn::new(scan.end), e))?;
    }
    // What a crashed process left in the page cache is durable from here on,
    // and so is the last segment's name: a process that crashed between a
    // rollover and its seal left a name that may not be durable yet, and
    // appends are about to be acknowledged in that segment.
    storage.sync_data(&last.file).map_err(|e| Error::io_at("fdatasync", &last.path, Lsn::new(scan.end), e))?;
    storage.sync_dir(dir).map_err(|e| Error::io("sync journal directory", dir, e))?;
    report.end_lsn = Lsn::new(scan.end);
    report.first_lsn = Lsn::new(bases[0]);
    report.segments = bases.len();
    report.tail_records = scan.records;
    Ok(Recovered { bases, last, fresh: false, journal_id: header.journal_id, report })
}

/// The last segment's header is invalid. A rollover names the new segment
/// before its header and directory entry are synced, and no LSN in it (nor
/// its base) is reported durable until they are; so a header that never
/// reached the disk (all zeros) means nothing in the segment was
/// acknowledged, and it is dropped (its bytes saved to a sidecar under
/// `PointInTime`). A segment never written past its header is dropped
/// whatever its header holds. A damaged header over data is `Corrupt`: that
/// data may have been durable. The same holds when it is the only segment
/// (`alone`: truncation removed those before it), except that its header
/// must then be blank: the log continues at the base its name gives.
fn drop_unsealed_segment(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    mode: RecoveryMode,
    reason: &str,
    alone: bool,
    report: &mut RecoveryReport,
) -> Result<()> {
    let path = dir.join(format::segment_file_name(base));
    let lsn = Lsn::new(base);
    let file = storage.open(&path, false).map_err(|e| Error::io_at("open segment", &path, lsn, e))?;
    let len = file.metadata().map_err(|e| Error::io_at("stat segment", &path, lsn, e))?.len();
    let header_len = format::SEGMENT_HEADER_LEN as u64;
    let data =
        nonzero_extent(&file, header_len.min(len), len).map_err(|e| Error::io_at("read segment", &path, lsn, e))?;
    let header_blank =
        nonzero_extent(&file, 0, header_len.min(len)).map_err(|e| Error::io_at("read segment", &path, lsn, e))? == 0;
    if data > 0 && (!header_blank || mode == RecoveryMode::AbsoluteConsistency) {
        return Err(Error::corrupt(&path, lsn, format!("segment header: {reason}, with records after it")));
    }
    if alone && !header_blank {
        // Only a header that never reached the disk says nothing: the log
        // would continue at the file name's base, which a header saying
        // otherwise makes doubtful.
        return Err(Error::corrupt(&path, lsn, format!("segment header: {reason}; it is the only segment")));
    }
    if data > 0 {
        let mut bytes = vec![0u8; (header_len + data).min(len) as usize];
        file.read_exact_at(&mut bytes, 0).map_err(|e| Error::io_at("read segment", &path, lsn, e))?;
        report.sidecar = Some(save_sidecar(storage, dir, &path, base, &bytes)?);
        report.truncated_bytes += bytes.len() as u64 - header_len;
    }
    tracing::warn!(segment = %path.display(), reason, saved_bytes = data, "dropping a segment whose rollover never became durable");
    discard_streams_checkpoint(storage, dir)?;
    storage.remove(&path).map_err(|e| Error::io_at("remove segment", &path, lsn, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io("sync journal directory", dir, e))
}

/// Deletes the stream index checkpoint, durably, before recovery cuts the
/// log: it may describe frames past the cut, and a log that grows back past
/// its cut must not make it look valid again. Durably first, so that a crash
/// cannot leave the cut done and the checkpoint back.
fn discard_streams_checkpoint(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let path = dir.join(format::STREAMS_CHECKPOINT_FILE_NAME);
    match storage.remove(&path) {
        Ok(()) => storage.sync_dir(dir).map_err(|e| Error::io("sync journal directory", dir, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove the stream index checkpoint", &path, e)),
    }
}

fn read_tail(file: &File, from: u64, file_len: u64) -> io::Result<Vec<u8>> {
    let len = file_len.saturating_sub(from) as usize;
    let mut tail = vec![0u8; len];
    file.read_exact_at(&mut tail, from)?;
    Ok(tail)
}

fn save_sidecar(storage: &dyn Storage, dir: &Path, segment: &Path, end: u64, bytes: &[u8]) -> Result<PathBuf> {
    try_save_sidecar(storage, dir, segment, end, bytes)
        .map_err(|(e, path)| Error::io_at("save cut tail", &path, Lsn::new(end), e))
}

/// Copies `bytes` to `<segment>.corrupt-<end>` (synced, name and all); on
/// failure removes what it made and returns the error and the path.
fn try_save_sidecar(
    storage: &dyn Storage,
    dir: &Path,
    segment: &Path,
    end: u64,
    bytes: &[u8],
) -> std::result::Result<PathBuf, (io::Error, PathBuf)> {
    let name = segment.file_name().and_then(|n| n.to_str()).unwrap_or("segment");
    let path = dir.join(format!("{name}.corrupt-{end}"));
    let saved = (|| -> io::Result<()> {
        let file = storage.create(&path)?;
        storage.write_all_at(&file, bytes, 0)?;
        storage.sync_data(&file)?;
        storage.sync_dir(dir)
    })();
    match saved {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = storage.remove(&path);
            Err((e, path))
        }
    }
}

fn new_journal_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}
