//! Reading: [`Reader`] over a live journal or a directory on disk,
//! [`JournalReader`] for tools (no runtime, read-only), and [`verify`].
//!
//! A live reader never reads at or beyond the written frontier, so it never
//! sees a frame being written. An offline reader treats the first invalid
//! frame of the last segment as the end (a torn tail); anywhere else an
//! invalid frame is `Error::Corrupt` naming the file and LSN. Atomic batches
//! are delivered only whole.

/// A public stream of records: a named type around a boxed `Stream`, so
/// that it is `Send + Unpin + 'static` and its insides stay private.
macro_rules! record_stream {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name {
            inner: std::pin::Pin<Box<dyn futures::Stream<Item = crate::Result<super::Record>> + Send>>,
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl futures::Stream for $name {
            type Item = crate::Result<super::Record>;

            fn poll_next(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Self::Item>> {
                self.inner.as_mut().poll_next(cx)
            }
        }
    };
}

mod follow;
mod replay;
mod subscribe;

pub use follow::Follower;
pub use replay::{replay, replay_ref, RecordRef, ReplayReport};
pub use subscribe::Subscription;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::{self, Units, UnknownRequired};
use crate::gate::{Gate, Level};
use crate::segment::retention::Pin;
use crate::segment::scan::{nonzero_extent, scan_segment};
use crate::segment::{FrameCursor, Step};
use crate::{segment, Error, Lsn, Result};

/// What readers and subscribers need of a live journal, which implements
/// it: a narrow view, so that reading does not depend on the journal's
/// state.
pub(crate) trait LiveJournal: Send + Sync + std::fmt::Debug {
    /// The journal's directory.
    fn dir(&self) -> &Path;
    /// The segment bases, ascending.
    fn segments(&self) -> Vec<u64>;
    /// Its frontiers, its failure, and the notification of their moves.
    fn gate(&self) -> &Gate;
    /// Keeps segment `base` from being deleted while it is read.
    fn pin(&self, base: u64) -> Result<Pin>;
    /// The segment after `base`, among the listed ones and those truncated
    /// but not yet deleted (a reader still in them).
    fn next_segment(&self, base: u64) -> Option<u64>;
    /// What a subscriber follows: the durable frontier (the written one
    /// when the journal never syncs on its own).
    fn follow_level(&self) -> Level;
    /// Whether what was just written is in the page cache (not so with
    /// direct I/O): reading it back then costs a copy, not a device read.
    fn page_cached(&self) -> bool;
}

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
    Live(Arc<dyn LiveJournal>, Level),
    Offline(Vec<u64>),
    /// A journal another process may be writing, read up to the durable
    /// frontier its writer published (`follow.rs` moves it).
    Published {
        bases: Vec<u64>,
        limit: u64,
    },
}

impl Source {
    /// (segment bases, the LSN no read may reach) as of now.
    fn view(&self) -> (Vec<u64>, u64) {
        match self {
            Source::Live(journal, level) => {
                // Frontier first: a segment it reaches is already listed.
                let limit = match level {
                    Level::Written => journal.gate().written_lsn().as_u64(),
                    Level::Durable => journal.gate().durable_lsn().as_u64(),
                };
                (journal.segments(), limit)
            }
            Source::Offline(bases) => (bases.clone(), u64::MAX),
            Source::Published { bases, limit } => (bases.clone(), *limit),
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
    pub(crate) fn live(journal: Arc<dyn LiveJournal>, from: Lsn, level: Level) -> Result<Reader> {
        let dir = journal.dir().to_path_buf();
        Reader::new(dir, Source::Live(journal, level), from)
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
                (None, Some(_), Source::Live(journal, _)) => (self.pos, journal.next_segment(self.pos)),
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
            Source::Live(journal, _) => Some(journal.pin(base)?),
            Source::Offline(_) | Source::Published { .. } => None,
        };
        let seg = segment::open_to_read(&self.dir, base)?;
        Ok(OpenSegment { base, next: None, path: seg.path, file: seg.file, cursor: FrameCursor::new(base), _pin: pin })
    }

    /// Reads one record or one whole batch into `ready`, or steps to the
    /// next segment. False at the end of the log (offline torn tail).
    fn read_unit(&mut self, bound: u64, last: bool) -> Result<bool> {
        let offline = matches!(self.source, Source::Offline(_));
        let seg = self.seg.as_mut().expect("opened by the caller");
        let mut at = self.pos;
        let mut units = Units::default();
        let mut batch = Vec::new();
        loop {
            let step = seg
                .cursor
                .step(&seg.file, at, bound)
                .map_err(|e| Error::io_at("read segment", &seg.path, Lsn::new(at), e))?;
            let why = match step {
                Step::Frame(frame) => {
                    let fed = units.feed(frame.kind, frame.flags).map_err(|UnknownRequired(kind)| {
                        Error::corrupt(
                            &seg.path,
                            Lsn::new(frame.start_lsn),
                            format!("required frame kind {kind:#04x} unknown to this version"),
                        )
                    })?;
                    at = frame.end_lsn();
                    if fed.record {
                        let payload = crate::compress::record_payload(&frame, &seg.path)?;
                        batch.push(Record { start: Lsn::new(frame.start_lsn), end: Lsn::new(at), payload });
                    }
                    if fed.unit_ends {
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
        let bases = segment::list_to_read(&dir)?;
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

    /// The durable frontier the journal's writer last published (the
    /// `FRONTIER` file, rewritten after every sync round and at open):
    /// every record ending at or below it is durable. `None` when no
    /// frontier of this journal was published — a journal written before
    /// this version, or a file a power cut left unreadable, which the next
    /// open rewrites. A frontier left by a writer that has since died is
    /// still true: durable records stay durable.
    pub fn published_frontier(&self) -> Result<Option<Lsn>> {
        let published = segment::frontier::read_published(&self.dir)
            .map_err(|e| Error::io("read published frontier", self.dir.join(format::FRONTIER_FILE_NAME), e))?;
        let Some(published) = published else { return Ok(None) };
        // The file speaks for the journal whose segments carry its id, not
        // for one deleted and made again under the same name.
        let ours = newest_journal_id(&self.dir)? == Some(published.journal_id);
        Ok(ours.then(|| Lsn::new(published.durable)))
    }
}

/// The journal id in the header of the newest segment in `dir` that still
/// opens (truncation may remove any segment meanwhile).
fn newest_journal_id(dir: &Path) -> Result<Option<u64>> {
    for &base in segment::list_to_read(dir)?.iter().rev() {
        let path = dir.join(format::segment_file_name(base));
        let Ok(file) = File::open(&path) else { continue };
        return Ok(Some(segment::read_header(&file, &path, base)?.journal_id));
    }
    Ok(None)
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: usize,
    /// Complete records found (compressed ones are decompressed to check
    /// them; one that does not decompress is counted and reported in
    /// [`corruption`](Self::corruption)).
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
        let seg = match segment::open_to_read(&journal.dir, base) {
            Ok(opened) => opened,
            Err(e) => {
                report.corruption.push(e.to_string());
                continue;
            }
        };
        let scan = scan_segment(&seg.file, base, &seg.path, true)?;
        report.records += scan.records;
        report.corruption.extend(scan.undecodable.map(|e| e.to_string()));
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
