//! [`replay`]: read a whole journal directory fast — segments decoded in
//! parallel threads, records delivered to one callback in LSN order.
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

/// Replays every record of the journal in `dir` whose start is at or after
/// `from`, calling `f` for each in LSN order. Needs no runtime and takes no
/// lock (like [`JournalReader`]). Stops at the first error `f` returns.
pub fn replay(dir: impl AsRef<Path>, from: Lsn, mut f: impl FnMut(Record) -> Result<()>) -> Result<ReplayReport> {
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
    let (senders, receivers): (Vec<_>, Vec<_>) =
        jobs.iter().map(|_| sync_channel::<Result<Vec<Record>>>(AHEAD)).unzip();
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

fn deliver(
    dir: &Path,
    receivers: Vec<Receiver<Result<Vec<Record>>>>,
    f: &mut impl FnMut(Record) -> Result<()>,
    report: &mut ReplayReport,
) -> Result<()> {
    for rx in receivers {
        // Each segment's sender stays alive in `senders` until replay ends,
        // so a worker marks the end of its segment with an empty batch.
        loop {
            let batch = rx
                .recv()
                .map_err(|_| Error::io("replay", dir, std::io::Error::other("a decoding thread ended early")))??;
            if batch.is_empty() {
                break;
            }
            for record in batch {
                report.records += 1;
                report.bytes += record.payload().len() as u64;
                report.end_lsn = record.lsn();
                f(record)?;
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
    fn run(&self, tx: &SyncSender<Result<Vec<Record>>>) -> Result<()> {
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
        let bytes = &map[header.min(bound) as usize..bound as usize];
        let sealed = self.next.is_some();
        let mut at = 0usize;
        let mut lsn = self.base;
        let (mut out, mut pending) = (Vec::with_capacity(BATCH), Vec::new());
        let mut units = Units::default();
        loop {
            if at == bytes.len() {
                break;
            }
            let frame = match format::decode_frame(&bytes[at..], lsn) {
                Ok(frame) => frame,
                Err(_) if !sealed => break, // the torn tail of the last segment
                Err(FrameError::Truncated { .. }) => {
                    return Err(Error::corrupt(&seg.path, Lsn::new(lsn), "frame extends past the end of its segment"))
                }
                Err(FrameError::Invalid(why)) => return Err(Error::corrupt(&seg.path, Lsn::new(lsn), why)),
            };
            let end = frame.end_lsn();
            let fed = units.feed(frame.kind, frame.flags).map_err(|UnknownRequired(kind)| {
                Error::corrupt(
                    &seg.path,
                    Lsn::new(lsn),
                    format!("required frame kind {kind:#04x} unknown to this version"),
                )
            })?;
            if fed.record && frame.start_lsn >= self.from {
                let payload = crate::compress::record_payload(&frame, &seg.path)?;
                pending.push(Record { start: Lsn::new(lsn), end: Lsn::new(end), payload });
            }
            let batch_ends = fed.unit_ends;
            at += frame.len();
            lsn = end;
            if batch_ends {
                out.append(&mut pending);
                if out.len() >= BATCH && tx.send(Ok(std::mem::replace(&mut out, Vec::with_capacity(BATCH)))).is_err() {
                    return Ok(()); // the caller stopped
                }
            }
        }
        if sealed && units.open() {
            return Err(Error::corrupt(&seg.path, Lsn::new(lsn), "an atomic batch is cut by the segment's end"));
        }
        drop(map);
        segment::release_cache(&seg);
        if !out.is_empty() && tx.send(Ok(out)).is_err() {
            return Ok(());
        }
        let _ = tx.send(Ok(Vec::new())); // end of this segment
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
