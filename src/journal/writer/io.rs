//! The writer's ops: writes (batched chunks, zeros ahead, linked syncs),
//! sync rounds, their completions, and the watch on ops that take too long.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::super::Chunk;
use super::Writer;
use crate::format;
use crate::storage::os;
use crate::substrate::{AlignedBuf, Done, Op, OpKind};
use crate::{Error, FileOffset, Lsn, Result};

/// Transient errors (`EINTR`, `EAGAIN`) retried per write before giving up.
pub(super) const MAX_WRITE_RETRIES: u32 = 64;
/// One write carries at most this many chunks (well under `IOV_MAX`)...
const MAX_BATCH_CHUNKS: usize = 64;
/// ... and at most this many bytes (unless one chunk alone is larger).
pub(super) const MAX_BATCH_BYTES: usize = 8 << 20;
/// A small write that reaches past everything written so far into its
/// segment carries zeros up to the next multiple of this. Blocks that
/// `fallocate` reserved are unwritten extents (and a growing file grows):
/// the first fdatasync after a write into one must also write the metadata
/// of its conversion. Written ahead in one piece, the conversion is paid
/// once per this many bytes and later rounds overwrite written blocks
/// (docs/benchmarks.md has the measurements behind the size). Zeros past
/// the written frontier are unused space to readers and recovery.
const ZERO_AHEAD: u64 = 256 << 10;
/// Writes at least this large convert their own extents; they go as they are.
const ZERO_AHEAD_BELOW: usize = 32 << 10;
/// Writes in flight at once, at most.
pub(super) const MAX_WRITES: usize = 2;
/// A write goes while another runs only when both carry at least this
/// many bytes, and an idle writer splits a backlog of twice this between
/// two writes: large writes gain from a second in flight (the device's
/// queue; `dd oflag=direct bs=1M` here: 1.5-1.6 GB/s alone, 1.7-2.2 GB/s
/// as two), while small ones go better batched into one.
pub(super) const OVERLAP_MIN: usize = 256 << 10;

/// An op carrying at most this many records, submitted with nothing else
/// in flight, is a lone appender's: its next op follows soon
/// (`Op::linger`). With a few appenders, a thread spinning between their
/// rounds took CPU the appenders needed (on two cores, 4 appenders lost
/// 10-15% with a bound of 4).
const LINGER_RECORDS: u64 = 1;

/// A write in flight.
#[derive(Debug)]
pub(super) struct WriteInFlight {
    /// Where its records begin, and end.
    start: Lsn,
    end: Lsn,
    /// Bytes of zeros it carries past `end` (a direct-I/O seal's fill,
    /// `ZERO_AHEAD`).
    zeros: u64,
    /// Its last buffer holds zeros ahead (`zeros_ahead`), to keep for the
    /// next once the write is done.
    zero_buf: bool,
    records: u64,
    /// Bytes of records it writes (not its zeros).
    bytes: usize,
    /// It completed, and waits for the writes before it to complete too.
    done: bool,
    retries: u32,
    pub(super) started: Instant,
    /// Its sync travels with it: the sync's stall report and timeout watch
    /// the op.
    linked: bool,
    pub(super) stall_logged: bool,
}

/// A sync round in flight.
#[derive(Debug)]
pub(super) struct SyncInFlight {
    /// Which of the segment's sync descriptors it runs on.
    lane: usize,
    /// What it makes durable: everything below this.
    covers: Lsn,
    /// Records written below `covers`, for records-per-sync figures.
    records: u64,
    pub(super) started: Instant,
    pub(super) stall_logged: bool,
    /// A debug span from submission to completion, so a subscriber sees
    /// each round's duration and what was logged inside it.
    span: tracing::Span,
}

impl SyncInFlight {
    fn new(lane: usize, covers: Lsn, records: u64, started: Instant, linked: bool) -> SyncInFlight {
        let span = tracing::debug_span!("sync_round", covers = covers.as_u64(), linked, lane);
        SyncInFlight { lane, covers, records, started, stall_logged: false, span }
    }
}

/// How many chunks from the front of `queue` the next write takes:
/// consecutive chunks of one segment, up to `MAX_BATCH_CHUNKS` and
/// `max_bytes` (unless one chunk alone is larger), and never ending
/// inside a frame (an owned payload's pieces go together, a frame is in
/// one segment), so the written frontier is always a frame boundary.
pub(super) fn batch_len(queue: &VecDeque<Chunk>, max_bytes: usize) -> usize {
    let Some(first) = queue.front() else { return 0 };
    let mut bytes = first.buf.len();
    let mut n = 1;
    for (prev, next) in queue.iter().zip(queue.iter().skip(1)) {
        let within = n < MAX_BATCH_CHUNKS && bytes + next.buf.len() <= max_bytes;
        if next.seg_base != first.seg_base || (prev.ends_frame && !within) {
            break;
        }
        bytes += next.buf.len();
        n += 1;
    }
    debug_assert!(queue[n - 1].ends_frame || n == queue.len(), "a write would end inside a frame");
    n
}

/// The zeros a write of `bytes` at `offset` carries (see `ZERO_AHEAD`),
/// given how far the segment's file is written (`zeroed_to`, moved on).
/// Made in `spare` when it is large enough (an earlier write's zeros,
/// back from the kernel): a fresh buffer of up to `ZERO_AHEAD` bytes is a
/// new mapping whose every page faults in on the writer's path, once per
/// `ZERO_AHEAD` bytes appended.
pub(super) fn zeros_ahead(
    zeroed_to: &mut FileOffset,
    opts: &crate::JournalOptions,
    block: u64,
    offset: FileOffset,
    bytes: usize,
    spare: &mut Option<AlignedBuf>,
) -> Option<AlignedBuf> {
    let end = offset + bytes as u64;
    if end <= *zeroed_to {
        return None;
    }
    let block = block.max(1);
    let target = FileOffset::new(end.get().next_multiple_of(ZERO_AHEAD).min(opts.segment_size));
    // Direct I/O keeps its promise that no block is written twice.
    let wanted = opts.preallocate != crate::Preallocate::Zero && !opts.direct_io && bytes < ZERO_AHEAD_BELOW;
    if !wanted || target <= end || end.get() % block != 0 || target.get() % block != 0 {
        *zeroed_to = end;
        return None;
    }
    *zeroed_to = target;
    let len = (target.get() - end.get()) as usize;
    let mut zeros = match spare.take() {
        Some(mut buf) if buf.capacity() >= len => {
            buf.clear();
            buf
        }
        _ => AlignedBuf::with_capacity(ZERO_AHEAD as usize, 4096),
    };
    zeros.extend(len).fill(0);
    Some(zeros)
}

/// Where the part of a write not yet written begins, for a write of
/// records ending at `end` that carries `zeros` bytes of zeros after them
/// and has `left` bytes still to write (its zeros are not records).
pub(super) fn unwritten_from(end: u64, zeros: u64, left: usize) -> u64 {
    (end + zeros).saturating_sub(left as u64).min(end)
}

impl Writer {
    /// The next write, if one may go now: consecutive chunks of one
    /// segment, within bounds. Beside a write in flight only a large one
    /// goes, and only beside large unlinked ones (`OVERLAP_MIN`); an idle
    /// writer facing a large backlog takes half of it, so that the rest can
    /// go beside it.
    pub(super) fn next_batch(&mut self) -> Option<Vec<Chunk>> {
        let max_bytes = if self.writes.is_empty() {
            let backlog: usize = self.queue.iter().map(|c| c.buf.len()).sum();
            if backlog >= 2 * OVERLAP_MIN {
                (backlog / 2).clamp(OVERLAP_MIN, MAX_BATCH_BYTES)
            } else {
                MAX_BATCH_BYTES
            }
        } else if self.may_overlap() {
            MAX_BATCH_BYTES
        } else {
            return None;
        };
        let n = batch_len(&self.queue, max_bytes);
        if n == 0 {
            return None;
        }
        if !self.writes.is_empty() && self.queue.iter().take(n).map(|c| c.buf.len()).sum::<usize>() < OVERLAP_MIN {
            return None; // a small write waits, to be batched with what follows
        }
        Some(self.queue.drain(..n).collect())
    }

    /// Whether a large write may go beside the writes in flight: they are
    /// all large, none carries a linked sync, and none carries zeros past
    /// its end (zeros ahead, a sealed block's fill): the next write starts
    /// at that end, and zeros landing after its data would overwrite it.
    pub(super) fn may_overlap(&self) -> bool {
        self.writes.iter().all(|w| !w.linked && w.zeros == 0 && w.bytes >= OVERLAP_MIN)
    }

    /// Where the next write begins: past the writes in flight.
    fn write_frontier(&self) -> u64 {
        self.writes.back().map_or(self.shared.gate.written_lsn().as_u64(), |w| w.end.as_u64())
    }

    /// Writes `batch` (contiguous chunks of the active segment) with one op.
    pub(super) fn submit_write(&mut self, mut batch: Vec<Chunk>) {
        let first = &batch[0];
        debug_assert_eq!(first.seg_base, self.active.key);
        debug_assert_eq!(first.start_lsn, self.write_frontier(), "writes stay in order");
        let offset = FileOffset::new(format::file_offset(first.seg_base, first.start_lsn));
        let start = Lsn::new(first.start_lsn);
        let end = Lsn::new(batch.last().expect("a batch is never empty").end_lsn());
        let block = self.shared.log.block() as usize;
        // Bytes past `end` the write carries: zeros, never records.
        let mut zeros = 0;
        let records_bytes: usize = batch.iter().map(|c| c.buf.len()).sum();
        let last = batch.last_mut().expect("a batch is never empty");
        if block != 0 && last.buf.len() % block != 0 {
            // Direct I/O: only a sealed segment's last chunk ends inside a
            // block (the log buffer pads every other). Zeros past the seal
            // are unused space to readers and recovery.
            debug_assert_eq!(offset.get() % block as u64, 0);
            let fill = block - last.buf.len() % block;
            last.buf.extend(fill).fill(0);
            zeros = fill as u64;
        }
        let records: u64 = batch.iter().map(|c| c.records).sum();
        let bytes: usize = batch.iter().map(|c| c.buf.len()).sum();
        let zero_buf = if let Some(buf) = self.zero_ahead(offset, bytes) {
            zeros += buf.len() as u64;
            let start_lsn = end.as_u64();
            let seg_base = self.active.key;
            batch.push(Chunk { seg_base, start_lsn, buf, records: 0, ends_frame: true, starts_frame: true });
            true
        } else {
            false
        };
        // A sync linked to this write must cover every byte before it: only
        // when no other write is in flight.
        let linked = self.writes.is_empty()
            && self.schedule.may_link(!self.queue.is_empty())
            && self.shared.gate.begin_linked_sync(end.as_u64());
        let kind = if linked { OpKind::WriteSync } else { OpKind::Write };
        let now = Instant::now();
        if linked {
            self.schedule.round_started(0, now.into_std());
            self.syncs.push(SyncInFlight::new(0, end, self.written_records + records, now, true));
        }
        debug_assert!(
            self.writes.iter().all(|w| w.end.as_u64() + w.zeros <= start.as_u64()),
            "a write begins inside the zeros another in flight carries"
        );
        let stall_logged = false;
        let w = WriteInFlight {
            start,
            end,
            zeros,
            zero_buf,
            records,
            bytes: records_bytes,
            done: false,
            retries: 0,
            started: now,
            linked,
            stall_logged,
        };
        if !self.writes.is_empty() {
            self.shared.stats.write_overlapped();
        }
        self.writes.push_back(w);
        let bufs = batch.into_iter().map(|c| c.buf).collect();
        let mut op = Op::write(kind, self.active.clone(), offset, bufs);
        op.tag = start.as_u64();
        op.linger = records <= LINGER_RECORDS && self.backend.in_flight() == 0;
        // RWF_DSYNC makes only this write's bytes durable (a FUA write does
        // not flush the device cache): it may stand for the sync only when
        // everything before it is durable already.
        op.dsync = linked && self.shared.opts.dsync_writes && self.shared.gate.durable_lsn() == start;
        self.backend.submit(op);
    }

    /// The zeros a write of `bytes` at `offset` carries (see `ZERO_AHEAD`).
    fn zero_ahead(&mut self, offset: FileOffset, bytes: usize) -> Option<AlignedBuf> {
        let (opts, block) = (&self.shared.opts, self.shared.log.block());
        zeros_ahead(&mut self.zeroed_to, opts, block, offset, bytes, &mut self.zero_spare)
    }

    pub(super) fn start_sync(&mut self, lane: usize, covers: Lsn) {
        let now = Instant::now();
        self.schedule.round_started(lane, now.into_std());
        self.syncs.push(SyncInFlight::new(lane, covers, self.written_records, now, false));
        let mut op = Op::sync(self.active.clone());
        op.lane = lane;
        op.linger =
            self.written_records.saturating_sub(self.synced_records) <= LINGER_RECORDS && self.backend.in_flight() == 0;
        self.backend.submit(op);
    }

    /// Takes the sync in flight on `lane`.
    fn take_sync(&mut self, lane: usize) -> Result<SyncInFlight> {
        match self.syncs.iter().position(|s| s.lane == lane) {
            Some(at) => Ok(self.syncs.swap_remove(at)),
            None => Err(self.internal("a sync completed on a lane with no sync in flight")),
        }
    }

    /// A linked sync that did not run: nothing became durable.
    fn abandon_linked(&mut self, lane: usize) -> Result<()> {
        let s = self.take_sync(lane)?;
        self.schedule.round_abandoned(lane);
        self.shared.gate.abandon_sync(s.covers.as_u64());
        Ok(())
    }

    pub(super) fn complete(&mut self, done: Done) -> Result<()> {
        let Done { op, written, synced } = done;
        let (op_kind, lane) = (op.kind, op.lane);
        if let Some(written) = written {
            if !self.complete_write(op, written)? {
                return Ok(()); // resubmitted: the linked sync did not run
            }
        }
        match (synced, op_kind) {
            (Some(synced), _) => self.complete_sync(lane, synced)?,
            // The link was broken after a complete write: nothing became
            // durable; the gate starts a new round for what it covered.
            (None, OpKind::WriteSync) => self.abandon_linked(lane)?,
            // A plain sync that reports no result did not run (cancelled):
            // never silence, or its round would stay in flight forever.
            (None, OpKind::Sync) => {
                let s = self.take_sync(lane)?;
                let e = std::io::Error::new(std::io::ErrorKind::Interrupted, "fdatasync was cancelled before it ran");
                return Err(Error::io_at("fdatasync", &self.active.path, s.covers, e));
            }
            (None, OpKind::Write) => {}
        }
        Ok(())
    }

    /// Returns false when the write was resubmitted (short or interrupted).
    fn complete_write(&mut self, mut op: Op, result: std::io::Result<usize>) -> Result<bool> {
        let Some(at) = self.writes.iter().position(|w| w.start.as_u64() == op.tag && !w.done) else {
            return Err(self.internal("a write completed that is not in flight"));
        };
        let w = &mut self.writes[at];
        // Where the part not yet written begins (its zeros are not records).
        let lsn = Lsn::new(unwritten_from(w.end.as_u64(), w.zeros, op.write_len()));
        match result {
            Ok(n) if n == op.write_len() => {}
            Ok(0) => {
                let e = std::io::Error::new(std::io::ErrorKind::WriteZero, "write made no progress");
                return Err(Error::io_at("write", &op.file.path, lsn, e));
            }
            Ok(n) => {
                op.advance(n);
                self.resubmit(at, op)?;
                return Ok(false);
            }
            Err(e) if os::is_transient(&e) && w.retries < MAX_WRITE_RETRIES => {
                w.retries += 1;
                self.resubmit(at, op)?;
                return Ok(false);
            }
            Err(e) => return Err(Error::io_at("write", &op.file.path, lsn, e)),
        }
        w.done = true;
        self.shared.stats.write_done(w.started.elapsed());
        if w.zero_buf {
            // The kernel is done with it: the next zeros ahead go in it.
            self.zero_spare = op.bufs.pop();
        }
        for buf in op.bufs.drain(..) {
            self.shared.log.recycle(buf);
        }
        // The written frontier moves over the completed prefix only.
        while self.writes.front().is_some_and(|w| w.done) {
            let w = self.writes.pop_front().expect("checked above");
            self.written_records += w.records;
            self.shared.gate.advance_written(w.end.as_u64());
        }
        Ok(true)
    }

    /// Resubmits the rest of a write as a plain write. A linked sync is
    /// abandoned (it was cancelled by the short write, or ran before all the
    /// bytes it must cover were written); the gate starts a new round once
    /// the write completes.
    fn resubmit(&mut self, at: usize, mut op: Op) -> Result<()> {
        if op.kind == OpKind::WriteSync {
            self.abandon_linked(op.lane)?;
        }
        self.writes[at].linked = false; // the write alone is watched from now on
        op.kind = OpKind::Write;
        self.backend.submit(op);
        Ok(())
    }

    fn complete_sync(&mut self, lane: usize, result: std::io::Result<()>) -> Result<()> {
        let s = self.take_sync(lane)?;
        if let Err(e) = result {
            return Err(Error::io_at("fdatasync", &self.active.path, s.covers, e));
        }
        let took = s.started.elapsed();
        if !s.stall_logged && took >= self.shared.opts.stall_threshold {
            self.shared.stats.stalled();
            tracing::error!(dir = %self.shared.dir.display(), took_ms = took.as_millis() as u64, "sync stalled");
        }
        let records = s.records.saturating_sub(self.synced_records);
        self.synced_records = self.synced_records.max(s.records);
        let more_waiting = !self.writes.is_empty()
            || !self.queue.is_empty()
            || self.shared.log.has_pending()
            || self.shared.gate.written_lsn() > s.covers;
        self.schedule.round_finished(lane, took, more_waiting);
        self.shared.stats.sync_done(records, took);
        tracing::debug!(parent: &s.span, covers = s.covers.as_u64(), records, took_us = took.as_micros() as u64, "sync round");
        // Records appended behind the round: written, queued, or still in
        // the log buffer (the count trails a concurrent append a little).
        let appended = self.shared.stats.appends.load(std::sync::atomic::Ordering::Relaxed);
        let behind = appended.saturating_sub(self.synced_records);
        let tasks = self.made_durable(s.covers.as_u64());
        self.schedule.round_released(tasks, records, behind);
        self.regroup_until = appended + tasks as u64;
        Ok(())
    }

    /// When an op in flight (the write, a sync, the seal) next needs
    /// attention: its stall report, or its timeout.
    pub(super) fn io_deadline(&self) -> Option<Instant> {
        let opts = &self.shared.opts;
        let seal = self.seal.as_ref().map(|s| (s.started, s.stall_logged));
        let writes = self.writes.iter().filter(|w| !w.linked && !w.done).map(|w| (w.started, w.stall_logged));
        self.syncs
            .iter()
            .map(|s| (s.started, s.stall_logged))
            .chain(seal)
            .chain(writes)
            .flat_map(|(started, stall_logged)| {
                let stall = (!stall_logged).then(|| started + opts.stall_threshold);
                let timeout = opts.sync_timeout.map(|t| started + t);
                [stall, timeout]
            })
            .flatten()
            .min()
    }

    /// Reports stalls of the ops in flight once each, and poisons the
    /// journal when one has run past `sync_timeout`.
    pub(super) fn io_overdue(&mut self) -> Result<()> {
        let opts = &self.shared.opts;
        let path = &self.active.path;
        let mut late: Vec<(&'static str, Lsn, Instant, &mut bool)> = Vec::new();
        for sync in &mut self.syncs {
            late.push(("fdatasync", sync.covers, sync.started, &mut sync.stall_logged));
        }
        if let Some(seal) = &mut self.seal {
            late.push(("seal segment", Lsn::new(self.active.key), seal.started, &mut seal.stall_logged));
        }
        for w in self.writes.iter_mut().filter(|w| !w.linked && !w.done) {
            late.push(("write", w.start, w.started, &mut w.stall_logged));
        }
        for (op, lsn, started, stall_logged) in late {
            let took = started.elapsed();
            if !*stall_logged && took >= opts.stall_threshold {
                *stall_logged = true;
                self.shared.stats.stalled();
                tracing::error!(
                    dir = %self.shared.dir.display(), op, lsn = lsn.as_u64(), waited_ms = took.as_millis() as u64,
                    "I/O stalled: the device has not completed an operation"
                );
            }
            if opts.sync_timeout.is_some_and(|t| took >= t) {
                let e =
                    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{op} did not complete within {took:?}"));
                return Err(Error::io_at(op, path, lsn, e));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::substrate::AlignedBuf;

    fn chunk(seg_base: u64, start_lsn: u64, len: usize, ends_frame: bool) -> Chunk {
        let mut buf = AlignedBuf::with_capacity(len, 8);
        buf.extend(len).fill(0);
        Chunk { seg_base, start_lsn, buf, records: 1, ends_frame, starts_frame: true }
    }

    fn batch_len_default(queue: &VecDeque<Chunk>) -> usize {
        batch_len(queue, MAX_BATCH_BYTES)
    }

    fn queue(chunks: &[(u64, usize, bool)]) -> VecDeque<Chunk> {
        let mut lsn = 0;
        chunks
            .iter()
            .map(|&(seg, len, ends)| {
                let c = chunk(seg, lsn, len, ends);
                lsn += len as u64;
                c
            })
            .collect()
    }

    #[test]
    fn zeros_ahead_reach_the_next_boundary_and_are_made_in_a_spare_buffer() {
        let opts = crate::JournalOptions::new();
        let (mut zeroed_to, mut spare) = (FileOffset::default(), None);
        let first = zeros_ahead(&mut zeroed_to, &opts, 0, FileOffset::new(0), 100, &mut spare).expect("zeros ahead");
        assert_eq!(first.len() as u64, ZERO_AHEAD - 100);
        assert_eq!(zeroed_to.get(), ZERO_AHEAD);
        assert!(first.as_slice().iter().all(|&b| b == 0));
        // Within what is zeroed: nothing to carry, and the spare is kept.
        let mut kept = Some(first);
        assert!(zeros_ahead(&mut zeroed_to, &opts, 0, FileOffset::new(100), 4096, &mut kept).is_none());
        let mut back = kept.expect("not taken when no zeros go");
        let at = back.as_slice().as_ptr();
        back.as_mut_slice()[7] = 0xAB; // whatever it holds, zeros go out
        let mut spare = Some(back);
        let second = zeros_ahead(&mut zeroed_to, &opts, 0, FileOffset::new(ZERO_AHEAD - 10), 20, &mut spare)
            .expect("past the boundary: zeros to the next");
        assert!(spare.is_none(), "the spare was taken");
        assert_eq!(second.as_slice().as_ptr(), at, "the same allocation");
        assert_eq!(second.len() as u64, ZERO_AHEAD - 10);
        assert_eq!(zeroed_to.get(), 2 * ZERO_AHEAD);
        assert!(second.as_slice().iter().all(|&b| b == 0));
        // Direct I/O writes no block twice: no zeros ahead.
        let direct = crate::JournalOptions::new().direct_io(true);
        let mut to = FileOffset::default();
        assert!(zeros_ahead(&mut to, &direct, 4096, FileOffset::new(0), 4096, &mut None).is_none());
    }

    #[test]
    fn a_write_takes_chunks_within_its_bounds_and_never_ends_inside_a_frame() {
        let mib = 1 << 20;
        assert_eq!(batch_len_default(&VecDeque::new()), 0);
        // Eight 1 MiB chunks fill a write; the ninth waits.
        assert_eq!(batch_len_default(&queue(&[(0, mib, true); 9])), 8);
        // An owned payload's pieces (header at the end of a chunk, the
        // payload, its padding) cross the bound together.
        let owned = queue(
            &[(0, mib, true); 7]
                .into_iter()
                .chain([(0, mib, false), (0, mib, false), (0, 8, true)])
                .collect::<Vec<_>>(),
        );
        assert_eq!(batch_len_default(&owned), 10);
        // A write stops at the segment's end.
        assert_eq!(batch_len_default(&queue(&[(0, 100, true), (0, 100, true), (200, 100, true)])), 2);
        // One chunk larger than the bound goes alone.
        assert_eq!(batch_len_default(&queue(&[(0, 9 * mib, true), (0, 100, true)])), 1);
        // At most MAX_BATCH_CHUNKS chunks, unless inside a frame.
        assert_eq!(batch_len_default(&queue(&[(0, 64, true); 100])), MAX_BATCH_CHUNKS);
        let mut many = vec![(0, 64, true); MAX_BATCH_CHUNKS - 1];
        many.extend([(0, 64, false), (0, 64, false), (0, 64, true), (0, 64, true)]);
        assert_eq!(batch_len_default(&queue(&many)), MAX_BATCH_CHUNKS + 2);
    }
}
