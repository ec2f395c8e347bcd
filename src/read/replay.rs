//! [`replay`]: read a whole journal directory fast — segments decoded in
//! parallel threads, records delivered to one callback in LSN order.
//! [`replay_ref`] hands the callback each payload borrowed from the mapped
//! segment, with no allocation or copy per record; [`replay`] gives owned
//! [`Record`]s.
//!
//! Sealed segments (every one but the last) are mapped read-only with
//! `MADV_SEQUENTIAL` and dropped from the page cache
//! (`POSIX_FADV_DONTNEED`) once decoded, so replaying a journal larger than
//! memory does not evict the caller's working set. The last segment is read
//! like any offline reader reads it: its first invalid frame is the end (a
//! torn tail), and an atomic batch missing its last frame is not delivered.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::{JournalReader, Record};
use crate::format::{self, FrameError, Units, UnknownRequired};
use crate::{segment, Error, Lsn, Result};

/// Records per message from a decoding thread to the caller.
const BATCH: usize = 1024;
/// Batches a decoding thread may run ahead of the caller, per segment.
const AHEAD: usize = 8;

/// What [`replay`] delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records delivered.
    pub records: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// End of the last record delivered (where appends would continue).
    pub end_lsn: Lsn,
}

/// One record as [`replay_ref`] hands it over: its payload borrowed from
/// the mapped segment (or, for a compressed record, from a buffer holding
/// it decompressed), valid for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    start: Lsn,
    end: Lsn,
    payload: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// The record's LSN: the end of its frame, as `append` returned it.
    pub fn lsn(&self) -> Lsn {
        self.end
    }

    /// Where the record's frame starts.
    pub fn start_lsn(&self) -> Lsn {
        self.start
    }

    /// The payload, as appended.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record { start: self.start, end: self.end, payload: self.payload.to_vec() }
    }
}

/// Replays every record of the journal in `dir` whose start is at or after
/// `from`, calling `f` for each in LSN order. Needs no runtime and takes no
/// lock (like [`JournalReader`]). Stops at the first error `f` returns.
/// Each payload is copied into its own [`Record`]; [`replay_ref`] lends it
/// instead.
pub fn replay(dir: impl AsRef<Path>, from: Lsn, mut f: impl FnMut(Record) -> Result<()>) -> Result<ReplayReport> {
    replay_ref(dir, from, |record| f(record.to_record()))
}

/// [`replay`] without an allocation or a copy per record: `f` gets each
/// record's payload borrowed from the segment's read-only mapping (a
/// compressed record's from the buffer it was decompressed into), valid
/// for the call. Copy what must outlive it ([`RecordRef::to_record`]).
pub fn replay_ref(
    dir: impl AsRef<Path>,
    from: Lsn,
    mut f: impl FnMut(RecordRef<'_>) -> Result<()>,
) -> Result<ReplayReport> {
    let journal = JournalReader::open(dir.as_ref())?;
    let bases = journal.segments().to_vec();
    // The first segment that can hold `from`.
    let first = bases.partition_point(|&b| b <= from.as_u64()).saturating_sub(1);
    let jobs: Vec<Job> = (first..bases.len())
        .map(|i| Job {
            dir: dir.as_ref().to_path_buf(),
            base: bases[i],
            next: bases.get(i + 1).copied(),
            from: from.as_u64(),
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4).min(jobs.len().max(1));
    let mut report = ReplayReport { records: 0, bytes: 0, end_lsn: Lsn::new(bases[first].max(from.as_u64())) };
    let (senders, receivers): (Vec<_>, Vec<_>) = jobs.iter().map(|_| sync_channel::<Result<Batch>>(AHEAD)).unzip();
    let next_job = AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let senders = &senders;
        let (jobs, next_job) = (&jobs, &next_job);
        for _ in 0..threads {
            // Workers take segments in ascending order, so the oldest
            // unfinished segment always has a worker: the caller, draining
            // segments in order, never waits on one nobody decodes.
            scope.spawn(move || loop {
                let i = next_job.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { return };
                let tx = senders[i].clone();
                if let Err(e) = job.run(&tx) {
                    let _ = tx.send(Err(e));
                }
            });
        }
        // On an early stop `deliver` drops the receivers, so workers blocked
        // on a send fail it and end; the scope then joins them.
        deliver(dir.as_ref(), receivers, &mut f, &mut report)
    })?;
    drop(senders);
    Ok(report)
}

/// A segment's read-only mapping, shared by the batches that borrow from
/// it. When the last lets go it is unmapped, and the segment's pages are
/// dropped from the page cache (a mapped page would not be).
struct Mapped {
    map: Option<memmap2::Mmap>,
    seg: segment::SegmentFile,
}

impl Mapped {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        drop(self.map.take());
        segment::release_cache(&self.seg);
    }
}

/// Where one record's payload lies.
struct Span {
    start: u64,
    end: u64,
    /// In the mapping, or (`owned`) in the batch's own buffer.
    at: usize,
    len: usize,
    owned: bool,
}

/// Records decoded from one segment, their payloads in its mapping. A
/// batch with no spans ends its segment.
struct Batch {
    mapped: Arc<Mapped>,
    spans: Vec<Span>,
    /// Payloads that are not in the mapping as stored (decompressed).
    owned: Vec<u8>,
}

impl Batch {
    fn new(mapped: &Arc<Mapped>) -> Batch {
        Batch { mapped: mapped.clone(), spans: Vec::with_capacity(BATCH), owned: Vec::new() }
    }

    fn payload(&self, span: &Span) -> &[u8] {
        let bytes = if span.owned { &self.owned[..] } else { self.mapped.bytes() };
        &bytes[span.at..span.at + span.len]
    }
}

fn deliver(
    dir: &Path,
    receivers: Vec<Receiver<Result<Batch>>>,
    f: &mut impl FnMut(RecordRef<'_>) -> Result<()>,
    report: &mut ReplayReport,
) -> Result<()> {
    for rx in receivers {
        // Each segment's sender stays alive in `senders` until replay ends,
        // so a worker marks the end of its segment with an empty batch.
        loop {
            let batch = rx
                .recv()
                .map_err(|_| Error::io("replay", dir, std::io::Error::other("a decoding thread ended early")))??;
            if batch.spans.is_empty() {
                break;
            }
            for span in &batch.spans {
                let payload = batch.payload(span);
                report.records += 1;
                report.bytes += payload.len() as u64;
                report.end_lsn = Lsn::new(span.end);
                f(RecordRef { start: Lsn::new(span.start), end: Lsn::new(span.end), payload })?;
            }
        }
    }
    Ok(())
}

struct Job {
    dir: PathBuf,
    base: u64,
    /// The next segment's base: this one is sealed and ends there.
    next: Option<u64>,
    from: u64,
}

impl Job {
    fn run(&self, tx: &SyncSender<Result<Batch>>) -> Result<()> {
        let seg = segment::open_to_read(&self.dir, self.base)?;
        let len = seg.file.metadata().map_err(|e| Error::io("stat segment", &seg.path, e))?.len();
        let header = format::SEGMENT_HEADER_LEN as u64;
        let bound = match self.next {
            Some(next) => format::file_offset(self.base, next),
            None => len,
        };
        if bound > len {
            return Err(Error::corrupt(&seg.path, Lsn::new(self.base), "segment is shorter than its successor's base"));
        }
        let map = map_sealed(&seg.file, bound).map_err(|e| Error::io("mmap segment", &seg.path, e))?;
        let path = seg.path.clone();
        let mapped = Arc::new(Mapped { map: Some(map), seg });
        let from = header.min(bound) as usize;
        let bytes = &mapped.bytes()[from..bound as usize];
        let sealed = self.next.is_some();
        let mut at = 0usize;
        let mut lsn = self.base;
        let mut out = Batch::new(&mapped);
        // Spans of an atomic batch not yet whole (its owned bytes are in
        // `out.owned` already: only spans wait).
        let mut pending = Vec::new();
        let mut units = Units::default();
        loop {
            if at == bytes.len() {
                break;
            }
            let frame = match format::decode_frame(&bytes[at..], lsn) {
                Ok(frame) => frame,
                Err(_) if !sealed => break, // the torn tail of the last segment
                Err(FrameError::Truncated { .. }) => {
                    return Err(Error::corrupt(&path, Lsn::new(lsn), "frame extends past the end of its segment"))
                }
                Err(FrameError::Invalid(why)) => return Err(Error::corrupt(&path, Lsn::new(lsn), why)),
            };
            let end = frame.end_lsn();
            let fed = units.feed(frame.kind, frame.flags).map_err(|UnknownRequired(kind)| {
                Error::corrupt(&path, Lsn::new(lsn), format!("required frame kind {kind:#04x} unknown to this version"))
            })?;
            if fed.record && frame.start_lsn >= self.from {
                let span = if frame.kind == format::KIND_COMPRESSED {
                    let payload = crate::compress::record_payload(&frame, &path)?;
                    let span = Span { start: lsn, end, at: out.owned.len(), len: payload.len(), owned: true };
                    out.owned.extend_from_slice(&payload);
                    span
                } else {
                    let offset = from + at + format::FRAME_HEADER_LEN;
                    Span { start: lsn, end, at: offset, len: frame.payload.len(), owned: false }
                };
                pending.push(span);
            }
            let batch_ends = fed.unit_ends;
            at += frame.len();
            lsn = end;
            if batch_ends {
                out.spans.append(&mut pending);
                if out.spans.len() >= BATCH && tx.send(Ok(std::mem::replace(&mut out, Batch::new(&mapped)))).is_err() {
                    return Ok(()); // the caller stopped
                }
            }
        }
        if sealed && units.open() {
            return Err(Error::corrupt(&path, Lsn::new(lsn), "an atomic batch is cut by the segment's end"));
        }
        if !out.spans.is_empty() && tx.send(Ok(std::mem::replace(&mut out, Batch::new(&mapped)))).is_err() {
            return Ok(());
        }
        let _ = tx.send(Ok(out)); // no spans: the end of this segment
        Ok(())
    }
}

/// Maps `[0, len)` of a segment read-only, advised sequential.
fn map_sealed(file: &File, len: u64) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is read-only and private to this function's
    // caller. The bytes mapped (up to the next segment's base, or the file's
    // length for the last segment) are never rewritten or cut while a
    // journal exists: sealed segments are immutable, only deleted whole
    // (an unlinked file stays mapped), and the live tail of the last
    // segment only grows. Recovery cuts only a damaged tail at open, which
    // a concurrent offline replay of that same torn region could meet as a
    // SIGBUS — the same hazard as reading any file another process
    // truncates; documented for tools that replay a journal being opened.
    let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(file)? };
    // Sequential: aggressive read-ahead, pages behind dropped early.
    // WillNeed: start reading the whole segment now, so page faults find
    // pages in flight rather than each waiting for its own read.
    let _ = map.advise(memmap2::Advice::Sequential);
    let _ = map.advise(memmap2::Advice::WillNeed);
    Ok(map)
}
