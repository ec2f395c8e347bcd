//! Reading: [`Reader`] over a live journal or a directory on disk,
//! [`JournalReader`] for tools (no runtime, read-only), and [`verify`].
//!
//! A live reader never reads at or beyond the written frontier, so it never
//! sees a frame being written. An offline reader treats the first invalid
//! frame of the last segment as the end (a torn tail); anywhere else an
//! invalid frame is `Error::Corrupt` naming the file and LSN. Atomic batches
//! are delivered only whole.

pub(crate) mod cursor;
mod replay;
mod subscribe;

pub use replay::{replay, ReplayReport};
pub use subscribe::Subscription;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cursor::{FrameCursor, Step};

use crate::format::{self, FLAG_BATCH_CONTINUES, KIND_RECORD, KIND_REQUIRED};
use crate::gate::Level;
use crate::journal::Shared;
use crate::segment::retention::Pin;
use crate::storage::OsStorage;
use crate::{segment, Error, Lsn, Result};

/// One record read back.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    start: Lsn,
    end: Lsn,
    payload: Vec<u8>,
}

impl Record {
    /// The record's LSN: its end, as `append` returned it.
    pub fn lsn(&self) -> Lsn {
        self.end
    }
    /// Where the record's frame starts.
    pub fn start_lsn(&self) -> Lsn {
        self.start
    }
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The payload, owned.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("len", &self.payload.len())
            .finish()
    }
}

#[derive(Debug)]
enum Source {
    /// A live journal, read up to its written (or durable) frontier.
    Live(Arc<Shared>, Level),
    Offline(Vec<u64>),
}

impl Source {
    /// (segment bases, the LSN no read may reach) as of now.
    fn view(&self) -> (Vec<u64>, u64) {
        match self {
            Source::Live(shared, level) => {
                // Frontier first: a segment it reaches is already listed.
                let limit = match level {
                    Level::Written => shared.gate.written_lsn().as_u64(),
                    Level::Durable => shared.gate.durable_lsn().as_u64(),
                };
                let bases = shared.segments.read().unwrap_or_else(|p| p.into_inner()).clone();
                (bases, limit)
            }
            Source::Offline(bases) => (bases.clone(), u64::MAX),
        }
    }
}

#[derive(Debug)]
struct OpenSegment {
    base: u64,
    /// Where the next segment starts, once one exists (the segment is sealed).
    next: Option<u64>,
    path: PathBuf,
    file: File,
    cursor: FrameCursor,
    /// Keeps a live journal from deleting the file while it is read.
    _pin: Option<Pin>,
}

/// Reads records in LSN order. See the module docs.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    source: Source,
    pos: u64,
    fresh: bool,
    seg: Option<OpenSegment>,
    ready: VecDeque<Record>,
}

impl Reader {
    pub(crate) fn live(shared: Arc<Shared>, from: Lsn, level: Level) -> Result<Reader> {
        let dir = shared.dir.clone();
        Reader::new(dir, Source::Live(shared, level), from)
    }

    fn new(dir: PathBuf, source: Source, from: Lsn) -> Result<Reader> {
        let (bases, limit) = source.view();
        let first = bases.first().copied().unwrap_or(0);
        let mut pos = from.as_u64();
        if pos < first {
            if pos != 0 {
                return Err(Error::InvalidLsn {
                    lsn: from,
                    reason: format!("before the oldest retained record ({first})"),
                });
            }
            pos = first;
        }
        if pos > limit {
            return Err(Error::InvalidLsn { lsn: from, reason: format!("beyond the written end ({limit})") });
        }
        Ok(Reader { dir, source, pos, fresh: true, seg: None, ready: VecDeque::new() })
    }

    /// The LSN the next record starts at (or the end reached so far).
    pub fn position(&self) -> Lsn {
        Lsn::new(self.ready.front().map_or(self.pos, |r| r.start.as_u64()))
    }

    /// The next record, or `None` at the end of what is written.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(record) = self.ready.pop_front() {
                return Ok(Some(record));
            }
            let (bases, limit) = self.source.view();
            if self.pos >= limit {
                return Ok(None);
            }
            // The segment already open serves while it holds `pos`, even
            // if truncation has since dropped it from the listing (its pin
            // keeps the file).
            let held = self.seg.as_ref().filter(|s| s.base <= self.pos && s.next.is_some_and(|n| self.pos < n));
            // A reader leaving a segment moves to the one after it, even if
            // truncation has condemned that one too (it is kept until no
            // reader needs it).
            let moving_on = self.seg.as_ref().filter(|s| s.next == Some(self.pos)).map(|s| s.base);
            let (base, next_base) = match (held, moving_on, &self.source) {
                (Some(s), _, _) => (s.base, s.next),
                (None, Some(_), Source::Live(shared, _)) => {
                    (self.pos, shared.retention.next_after(&shared.segments, self.pos))
                }
                _ => {
                    let idx = bases.partition_point(|&b| b <= self.pos);
                    if idx == 0 {
                        return Err(Error::InvalidLsn {
                            lsn: Lsn::new(self.pos),
                            reason: "the segment holding it was truncated".into(),
                        });
                    }
                    (bases[idx - 1], bases.get(idx).copied())
                }
            };
            if self.seg.as_ref().is_none_or(|s| s.base != base) {
                // Pin the next before letting go of the last.
                self.seg = Some(self.open_segment(base)?);
            }
            let seg = self.seg.as_mut().expect("opened above");
            if seg.next.is_none() {
                seg.next = next_base;
            }
            let bound = next_base.unwrap_or(u64::MAX).min(limit);
            let last = next_base.is_none();
            if !self.read_unit(bound, last)? {
                return Ok(None);
            }
        }
    }

    fn open_segment(&self, base: u64) -> Result<OpenSegment> {
        let pin = match &self.source {
            Source::Live(shared, _) => Some(shared.retention.pin(&shared.segments, base)?),
            Source::Offline(_) => None,
        };
        let (seg, _) = segment::open(&OsStorage, &self.dir, base, false)?;
        Ok(OpenSegment { base, next: None, path: seg.path, file: seg.file, cursor: FrameCursor::new(base), _pin: pin })
    }

    /// Reads one record or one whole batch into `ready`, or steps to the
    /// next segment. False at the end of the log (offline torn tail).
    fn read_unit(&mut self, bound: u64, last: bool) -> Result<bool> {
        let offline = matches!(self.source, Source::Offline(_));
        let seg = self.seg.as_mut().expect("opened by the caller");
        let mut at = self.pos;
        let mut batch = Vec::new();
        loop {
            let step = seg
                .cursor
                .step(&seg.file, at, bound)
                .map_err(|e| Error::io_at("read segment", &seg.path, Lsn::new(at), e))?;
            let why = match step {
                Step::Frame(frame) => {
                    at = frame.end_lsn();
                    if frame.kind == KIND_RECORD {
                        batch.push(Record {
                            start: Lsn::new(frame.start_lsn),
                            end: Lsn::new(at),
                            payload: frame.payload.to_vec(),
                        });
                    } else if frame.kind & KIND_REQUIRED != 0 {
                        return Err(Error::corrupt(
                            &seg.path,
                            Lsn::new(frame.start_lsn),
                            format!("required frame kind {:#04x} unknown to this version", frame.kind),
                        ));
                    }
                    if frame.flags & FLAG_BATCH_CONTINUES == 0 {
                        self.pos = at;
                        self.fresh = false;
                        self.ready.extend(batch);
                        return Ok(true);
                    }
                    continue;
                }
                Step::End if batch.is_empty() && at == bound && !last => return Ok(true), // next segment
                Step::End => "the segment ends early",
                Step::Torn => "the segment ends inside a frame",
                Step::Invalid(why) => why,
            };
            if offline && last {
                return Ok(false); // a torn tail ends an offline log
            }
            // A segment's base always starts a record: nothing readable
            // there is damage, not a wrong LSN.
            if self.fresh && batch.is_empty() && at == self.pos && at != seg.base {
                return Err(Error::InvalidLsn {
                    lsn: Lsn::new(at),
                    reason: format!("no record starts here in {} ({why})", seg.path.display()),
                });
            }
            return Err(Error::corrupt(&seg.path, Lsn::new(at), why));
        }
    }
}

/// Read-only access to a journal directory, without a runtime and without
/// taking its lock (so it works while another process owns the journal).
#[derive(Debug, Clone)]
pub struct JournalReader {
    dir: PathBuf,
    bases: Vec<u64>,
}

impl JournalReader {
    /// Lists the segments of the journal in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<JournalReader> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::io(
                "open journal directory",
                &dir,
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        let bases = segment::list(&OsStorage, &dir, false)?;
        if bases.is_empty() {
            return Err(Error::corrupt(&dir, Lsn::ZERO, "no segment files: not a tidelog journal"));
        }
        Ok(JournalReader { dir, bases })
    }

    /// Base LSNs of the segment files.
    pub fn segments(&self) -> &[u64] {
        &self.bases
    }

    /// The oldest LSN held.
    pub fn first_lsn(&self) -> Lsn {
        Lsn::new(self.bases[0])
    }

    /// A reader from `from` (which must start a record, or be `Lsn::ZERO`).
    pub fn reader(&self, from: Lsn) -> Result<Reader> {
        Reader::new(self.dir.clone(), Source::Offline(self.bases.clone()), from)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: usize,
    /// Complete records found.
    pub records: u64,
    /// End of the valid log.
    pub end_lsn: Lsn,
    /// Non-zero bytes after the end of the last segment (a torn tail).
    pub torn_tail_bytes: u64,
    /// Damage anywhere else, each naming the file and LSN.
    pub corruption: Vec<String>,
}

impl VerifyReport {
    /// No damage and no torn tail.
    pub fn is_clean(&self) -> bool {
        self.corruption.is_empty() && self.torn_tail_bytes == 0
    }
}

/// Checks every frame of every segment in `dir` (read-only, no runtime).
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    let journal = JournalReader::open(dir.as_ref())?;
    let mut report = VerifyReport { segments: journal.bases.len(), ..VerifyReport::default() };
    for (i, &base) in journal.bases.iter().enumerate() {
        let (seg, _) = match segment::open(&OsStorage, &journal.dir, base, false) {
            Ok(opened) => opened,
            Err(e) => {
                report.corruption.push(e.to_string());
                continue;
            }
        };
        let scan = crate::recovery::scan_segment(&seg.file, base, &seg.path)?;
        report.records += scan.records;
        let len = seg.file.metadata().map_err(|e| Error::io("stat segment", &seg.path, e))?.len();
        let tail = nonzero_extent(&seg.file, format::file_offset(base, scan.end), len)
            .map_err(|e| Error::io("read segment", &seg.path, e))?;
        match journal.bases.get(i + 1) {
            Some(&next) if scan.end != next || tail > 0 => report.corruption.push(format!(
                "{}: valid frames end at LSN {} but the next segment starts at {next}",
                seg.path.display(),
                scan.end
            )),
            Some(_) => {}
            None => {
                report.end_lsn = Lsn::new(scan.end);
                report.torn_tail_bytes = tail;
            }
        }
    }
    Ok(report)
}

/// Bytes from `from` to the last non-zero byte before `len`.
pub(crate) fn nonzero_extent(file: &File, from: u64, len: u64) -> std::io::Result<u64> {
    // Without read-ahead, the pages a read brings in are only the ones it
    // asked for; the next SEEK_DATA then skips preallocated zeros instead
    // of finding read-ahead pages there (which made reopening after a
    // crash read the whole preallocated segment).
    crate::storage::os::advise_random(file, true);
    let result = scan_nonzero(file, from, len);
    crate::storage::os::advise_random(file, false);
    result
}

fn scan_nonzero(file: &File, from: u64, len: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut last = from;
    let mut off = from;
    while off < len {
        // Skip holes and unwritten (preallocated) extents: they read as zeros.
        match crate::storage::os::next_data(file, off)? {
            Some(data) if data < len => off = data,
            Some(_) | None => break,
        }
        // End each read on a page boundary: a partly read page is cached,
        // and SEEK_DATA from inside it would report data there, chaining
        // reads through every preallocated zero.
        let end = ((off + buf.len() as u64) & !4095).max(off + 1).min(len);
        let want = (end - off) as usize;
        let n = file.read_at(&mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        if let Some(i) = last_nonzero(&buf[..n]) {
            last = off + i as u64 + 1;
        }
        off += n as u64;
    }
    Ok(last - from)
}

/// Index of the last non-zero byte. This runs over whole preallocated
/// segments: all-zero blocks are skipped by comparing against zeros (a
/// memcmp), and only the last block with data is searched byte by byte.
fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 4096;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut end = bytes.len();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let block = &bytes[start..end];
        if block != &ZEROS[..block.len()] {
            return block.iter().rposition(|&b| b != 0).map(|i| start + i);
        }
        end = start;
    }
    None
}

#[cfg(all(test, tidelog_linux))]
mod tests {
    #[test]
    fn last_nonzero_finds_the_last_set_byte_at_every_position() {
        for len in [0usize, 1, 7, 8, 9, 4095, 4096, 4097, 9000] {
            assert_eq!(super::last_nonzero(&vec![0u8; len]), None);
            for at in (0..len).filter(|at| len < 100 || at % 97 == 0 || at + 2 >= len || at % 4096 < 2) {
                let mut bytes = vec![0u8; len];
                bytes[at] = 1;
                if at > 0 {
                    bytes[0] = 2;
                }
                assert_eq!(super::last_nonzero(&bytes), Some(at), "len {len}, set at {at}");
            }
        }
    }

    use std::os::unix::fs::FileExt;

    use super::nonzero_extent;
    use crate::storage::os;

    /// Bytes this thread has read through read syscalls (`rchar`).
    fn thread_rchar() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
        io.lines().find_map(|l| l.strip_prefix("rchar: ")).expect("rchar").trim().parse().expect("number")
    }

    /// The scan past a torn tail must not read a preallocated segment's
    /// zeros. It once did: each 1 MiB read ended inside a page, that page
    /// was then cached, SEEK_DATA reported data there, and the chain went
    /// to the end of the file (0.3–0.7 s per reopen of a 64 MiB segment).
    #[test]
    fn scanning_past_the_tail_skips_preallocated_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(dir.path().join("seg")).unwrap();
        let len = 64u64 << 20;
        os::allocate(&file, len).unwrap();
        if os::next_data(&file, 1 << 20).unwrap().is_some_and(|d| d < len) {
            let why = "this filesystem reports preallocated extents as data to SEEK_DATA";
            crate::testing::skip(crate::testing::Capability::SeekData, "the scan past a torn tail", why);
            return;
        }
        let data = vec![0xA5u8; 150_001];
        file.write_all_at(&data, 0).unwrap();
        // Torn bytes a little past the end of the valid frames.
        file.write_all_at(b"torn", 150_001 + 100).unwrap();
        // A reader has been here before: cache the pages around the tail.
        let mut buf = vec![0u8; 1 << 20];
        file.read_at(&mut buf, 123).unwrap();

        let before = thread_rchar();
        let tail = nonzero_extent(&file, 150_001, len).unwrap();
        let read = thread_rchar() - before;
        assert_eq!(tail, 104, "up to the last non-zero byte");
        assert!(read <= 4 << 20, "read {read} bytes of a {len}-byte preallocated file");
    }
}
