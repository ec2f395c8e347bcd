//! The driver: one task per journal that owns every file and all I/O.
//!
//! It takes what appenders left in the log buffer, writes it with one op per
//! chunk, leads every sync round of the gate, rolls segments, and on shutdown
//! flushes and drains. At most one write is in flight, so the written
//! frontier is simply the end of the last completed write. Where it pays
//! (`sync_lanes`), more than one sync runs at once, each on its own open
//! file description, each covering what was written when it began: a sync runs
//! while the next write does, and the next round begins as soon as that
//! write completes rather than when the previous round does (devices and
//! filesystems serve overlapping flushes faster than back-to-back ones).
//! When a write is submitted while someone waits for durability and no sync
//! runs, the write and its sync travel together (`OpKind::WriteSync`).

use std::collections::VecDeque;
use std::fs::File;
use std::future::{pending, poll_fn, Future};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::open::DirLock;
use super::{Chunk, Shared};
use crate::segment::{self, SegmentFile};
use crate::storage::os;
use crate::substrate::threads::Running;
use crate::substrate::IoFile;
use crate::substrate::{AlignedBuf, Backend, Done, Op, OpKind};
use crate::{format, Error, Lsn, Result, SyncPolicy};

/// Transient errors (`EINTR`, `EAGAIN`) retried per write before giving up.
const MAX_WRITE_RETRIES: u32 = 64;
/// One write carries at most this many chunks (well under `IOV_MAX`)...
const MAX_BATCH_CHUNKS: usize = 64;
/// ... and at most this many bytes (unless one chunk alone is larger).
const MAX_BATCH_BYTES: usize = 8 << 20;
/// A small write that reaches past everything written so far into its
/// segment carries zeros up to the next multiple of this. Blocks that
/// `fallocate` reserved are unwritten extents (and a growing file grows):
/// the first fdatasync after a write into one must also write the
/// metadata of its conversion, which made every round of small appends pay
/// for metadata. Written ahead in one piece, the conversion is paid once per
/// this many bytes, and later rounds overwrite written blocks: 5-20% more
/// durable appends/s at 64 and 256 tasks here (docs/benchmarks.md), most of
/// what zero-filled segments buy, without writing every byte twice. 256 KiB
/// rather than 1 MiB: the round that carries the zeros flushes them, and a
/// smaller piece kept p99 lower. Zeros past the written frontier are unused
/// space to readers and recovery.
const ZERO_AHEAD: u64 = 256 << 10;
/// Writes at least this large convert their own extents; they go as they are.
const ZERO_AHEAD_BELOW: usize = 32 << 10;

/// Sync rounds that may be in flight at once, per substrate. Measured at 64
/// durable appenders on a 2-vCPU VM (docs/benchmarks.md): overlapping
/// fdatasyncs from the blocking pool raised throughput by 5-40% across runs,
/// while on the ring they lowered it by 8-12% (twice, with and without
/// zeros ahead), so the ring keeps one.
fn sync_lanes(substrate: crate::Substrate) -> usize {
    match substrate {
        crate::Substrate::Blocking => 2,
        _ => 1,
    }
}

#[derive(Debug)]
struct WriteInFlight {
    /// Where its records begin.
    start: u64,
    end: u64,
    /// Bytes of zeros the write carries past `end` (a direct-I/O seal's
    /// fill, `ZERO_AHEAD`).
    zeros: u64,
    records: u64,
    retries: u32,
    started: Instant,
    /// Its sync travels with it: the sync's stall report and timeout
    /// watch the op.
    linked: bool,
    stall_logged: bool,
}

#[derive(Debug)]
struct SyncInFlight {
    /// Which of the segment's sync descriptors it runs on.
    lane: usize,
    covers: u64,
    records: u64,
    started: Instant,
    stall_logged: bool,
    /// A debug span from submission to completion, so a subscriber sees
    /// each round's duration and what was logged inside it.
    span: tracing::Span,
}

impl SyncInFlight {
    fn new(lane: usize, covers: u64, records: u64, started: Instant, linked: bool) -> SyncInFlight {
        let span = tracing::debug_span!("sync_round", covers, linked, lane);
        SyncInFlight { lane, covers, records, started, stall_logged: false, span }
    }
}

/// The syncs that make a new segment durable: its header and its directory
/// entry (the sealed segment was synced before it was named). Runs while
/// writes go on into the new segment; no sync round starts until it is done.
///
/// The round that covers the sealed segment completes only with the seal:
/// the durable frontier reaches a segment's base only once that segment's
/// header and name are durable. Otherwise `truncate_before(base)` could
/// delete every older segment (and sync the directory, making the new name
/// durable) while the new header is not, and a power cut would leave one
/// segment with a blank header and nothing before it.
struct Seal {
    task: Running<Result<()>>,
    /// The round covering everything below the new segment's base.
    covers: Option<u64>,
    /// Records written below it.
    records: u64,
    started: Instant,
    stall_logged: bool,
}

pub(super) struct Driver {
    shared: Arc<Shared>,
    /// The next segment, being made or made, ahead of need.
    spare: Option<Running<std::io::Result<File>>>,
    seal: Option<Seal>,
    backend: Box<dyn Backend>,
    active: Arc<IoFile>,
    journal_id: u64,
    /// Held until the driver (or its reaper) ends: the directory's lock.
    lock: Option<DirLock>,
    queue: VecDeque<Chunk>,
    write: Option<WriteInFlight>,
    syncs: Vec<SyncInFlight>,
    written_records: u64,
    synced_records: u64,
    interval: Option<Interval>,
    interval_due: bool,
    window_until: Option<Instant>,
    /// The last round ended with more records already waiting behind it:
    /// writes then go alone, so their syncs can overlap.
    busy: bool,
    /// A moving average of sync latency: an overlapping round starts no
    /// sooner than half of it after the round before, so that each round
    /// carries a share of the arrivals rather than a record or two.
    sync_avg: std::time::Duration,
    stagger_until: Option<Instant>,
    /// How many sync rounds may overlap (`sync_lanes`).
    lanes: usize,
    /// File offset up to which the driver has written the active segment,
    /// data or zeros (`ZERO_AHEAD`).
    zeroed_to: u64,
}

impl Driver {
    pub(super) fn new(
        shared: Arc<Shared>,
        backend: Box<dyn Backend>,
        active: SegmentFile,
        journal_id: u64,
        lock: DirLock,
    ) -> Driver {
        let lanes = sync_lanes(backend.substrate());
        let active = IoFile::new(active.base, active.path, active.file, lanes - 1);
        let interval = match shared.opts.sync_policy {
            SyncPolicy::Interval(every) => {
                let mut i = tokio::time::interval_at(Instant::now() + every, every);
                i.set_missed_tick_behavior(MissedTickBehavior::Delay);
                Some(i)
            }
            _ => None,
        };
        Driver {
            shared,
            spare: None,
            seal: None,
            backend,
            active: Arc::new(active),
            journal_id,
            lock: Some(lock),
            queue: VecDeque::new(),
            write: None,
            syncs: Vec::new(),
            written_records: 0,
            synced_records: 0,
            interval,
            interval_due: false,
            window_until: None,
            busy: false,
            sync_avg: std::time::Duration::ZERO,
            stagger_until: None,
            lanes,
            zeroed_to: 0,
        }
    }

    pub(super) async fn run(mut self) -> Result<()> {
        let result = self.serve().await.map_err(|err| {
            tracing::error!(dir = %self.shared.dir.display(), error = %err, "journal poisoned");
            self.shared.stats.poisoned();
            let poisoned = Error::Poisoned(Arc::new(err));
            self.shared.log.refuse(poisoned.clone());
            self.shared.gate.fail(poisoned.clone());
            poisoned
        });
        if self.spare.take().is_some() {
            // The job making the spare runs on; once it (and every other
            // I/O job) has ended, the spare is removed, and only then is
            // the directory released (`release_lock`, below): it never
            // writes into the next owner's spare.
            self.shared.io.hold_until_idle(DiscardSpare(self.shared.dir.clone(), self.shared.storage.clone()));
        }
        if result.is_ok() {
            // A clean close ends every job of ours (the spare's making, a
            // truncation's deletions) before it returns, so that the lock
            // is free when `close` returns. After a failure, `close`
            // returns at once and the lock follows the wedged I/O.
            self.shared.io.idle().await;
        }
        if !self.backend.settled() {
            // Only after a failure (or a timed-out write or sync): a wedged
            // syscall must not hold `close` hostage. A thread of its own
            // drops the backend, which waits until the kernel has let go of
            // every op's buffers and files.
            let backend = std::mem::replace(
                &mut self.backend,
                Box::new(crate::substrate::BlockingBackend::new(self.shared.io.clone())),
            );
            let (io, lock) = (self.shared.io.clone(), self.lock.take());
            let reaper = std::thread::Builder::new().name("tidelog-reaper".into()).spawn(move || {
                drop(backend);
                io.hold_until_idle(lock);
            });
            if let Err(e) = reaper {
                tracing::error!(error = %e, "cannot start a reaper thread; waiting for the I/O in flight here");
            }
        }
        self.release_lock();
        self.shared.gate.fail(Error::Closed);
        result
    }

    /// Hands the directory lock to the I/O threads, which release it once
    /// every job running or queued (a rollover, a seal, the spare) has
    /// ended: the next owner never shares the directory with our I/O.
    fn release_lock(&mut self) {
        if let Some(lock) = self.lock.take() {
            self.shared.io.hold_until_idle(Some(lock));
        }
    }

    fn make_spare(&mut self) {
        if !self.shared.opts.precreate {
            return;
        }
        let (dir, size, how) = (self.shared.dir.clone(), self.shared.opts.segment_size, self.shared.opts.preallocate);
        let storage = self.shared.storage.clone();
        self.spare = Some(self.shared.io.run(move || segment::make_spare(storage.as_ref(), &dir, size, how)));
    }

    async fn serve(&mut self) -> Result<()> {
        self.make_spare();
        loop {
            self.pump().await?;
            if self.finished() {
                return Ok(());
            }
            let deadline = self.io_deadline();
            let interval = &mut self.interval;
            let window = self.window_until.into_iter().chain(self.stagger_until).min();
            let backend = &mut self.backend;
            let wake = &self.shared.gate.driver_wake;
            let seal = &mut self.seal;
            tokio::select! {
                done = poll_fn(|cx| backend.poll_complete(cx)) => self.complete(done)?,
                sealed = async { match seal { Some(s) => (&mut s.task).await, None => pending().await } } => {
                    self.sealed(sealed)?;
                }
                () = wake.notified() => {}
                _ = async { match interval { Some(i) => i.tick().await, None => pending().await } } => {
                    self.interval_due = true;
                }
                () = async { match window { Some(t) => tokio::time::sleep_until(t).await, None => pending().await } } => {}
                () = async { match deadline { Some(t) => tokio::time::sleep_until(t).await, None => pending().await } } => {
                    self.io_overdue()?;
                }
            }
        }
    }

    /// When an op in flight (the write, a sync, the seal) next needs
    /// attention: its stall report, or its timeout.
    fn io_deadline(&self) -> Option<Instant> {
        let opts = &self.shared.opts;
        let seal = self.seal.as_ref().map(|s| (s.started, s.stall_logged));
        let write = self.write.as_ref().filter(|w| !w.linked).map(|w| (w.started, w.stall_logged));
        self.syncs
            .iter()
            .map(|s| (s.started, s.stall_logged))
            .chain(seal)
            .chain(write)
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
    fn io_overdue(&mut self) -> Result<()> {
        let opts = &self.shared.opts;
        let path = &self.active.path;
        let mut late: Vec<(&'static str, Lsn, Instant, &mut bool)> = Vec::new();
        for sync in &mut self.syncs {
            late.push(("fdatasync", Lsn::new(sync.covers), sync.started, &mut sync.stall_logged));
        }
        if let Some(seal) = &mut self.seal {
            late.push(("seal segment", Lsn::new(self.active.key), seal.started, &mut seal.stall_logged));
        }
        if let Some(w) = self.write.as_mut().filter(|w| !w.linked) {
            late.push(("write", Lsn::new(w.start), w.started, &mut w.stall_logged));
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

    /// A sync lane of the active segment with no sync on it, if any.
    fn free_lane(&self) -> Option<usize> {
        let lanes = self.active.sync_lanes().min(self.lanes);
        (0..lanes).find(|&lane| self.syncs.iter().all(|s| s.lane != lane))
    }

    fn shutting_down(&self) -> bool {
        self.shared.shutdown.load(Ordering::Acquire)
    }

    fn final_sync_needed(&self) -> bool {
        self.shared.close_sync.load(Ordering::Acquire) || self.shared.opts.sync_policy != SyncPolicy::Never
    }

    fn all_written(&self) -> bool {
        self.write.is_none() && self.queue.is_empty() && !self.shared.log.has_pending()
    }

    fn finished(&self) -> bool {
        if !self.shutting_down() || !self.all_written() || !self.syncs.is_empty() || self.seal.is_some() {
            return false;
        }
        let gate = &self.shared.gate;
        !self.final_sync_needed() || gate.durable_lsn() >= gate.written_lsn()
    }

    /// Submits whatever can be submitted now.
    async fn pump(&mut self) -> Result<()> {
        if self.write.is_none() {
            if self.queue.is_empty() {
                self.shared.log.take(&mut self.queue);
            }
            let next_base = self.queue.front().map(|c| c.seg_base);
            if let Some(base) = next_base.filter(|&b| b != self.active.key) {
                if !self.syncs.is_empty() || self.seal.is_some() {
                    return Ok(()); // roll once the rounds in flight complete
                }
                self.rollover(base).await?;
            }
            if let Some(first) = self.queue.pop_front() {
                // Consecutive chunks of one segment go out as one write.
                let mut bytes = first.buf.len();
                let mut batch = vec![first];
                while let Some(next) = self.queue.front() {
                    if next.seg_base != batch[0].seg_base
                        || batch.len() >= MAX_BATCH_CHUNKS
                        || bytes + next.buf.len() > MAX_BATCH_BYTES
                    {
                        break;
                    }
                    bytes += next.buf.len();
                    batch.extend(self.queue.pop_front());
                }
                self.submit_write(batch);
            }
        }
        if let Some(lane) = self.free_lane().filter(|_| self.seal.is_none() && self.staggered()) {
            let forced = self.interval_due || (self.shutting_down() && self.final_sync_needed() && self.all_written());
            if forced || self.window_open() {
                if let Some(covers) = self.shared.gate.begin_sync(forced) {
                    self.interval_due = false;
                    self.start_sync(lane, covers);
                }
            }
        }
        Ok(())
    }

    /// Whether an overlapping round may start now (see `sync_avg`).
    fn staggered(&mut self) -> bool {
        self.stagger_until = None;
        let Some(last) = self.syncs.iter().map(|s| s.started).max() else { return true };
        let due = last + self.sync_avg / 2;
        if Instant::now() >= due {
            return true;
        }
        self.stagger_until = Some(due);
        false
    }

    /// With a group-commit window, a sync waits that long after it is first
    /// wanted, so that followers can join the round.
    fn window_open(&mut self) -> bool {
        let window = self.shared.opts.group_commit_window;
        if window.is_zero() {
            return true;
        }
        let gate = &self.shared.gate;
        if gate.sync_wanted() <= gate.durable_lsn().as_u64() {
            self.window_until = None;
            return false;
        }
        let until = *self.window_until.get_or_insert_with(|| Instant::now() + window);
        if Instant::now() < until {
            return false;
        }
        self.window_until = None;
        true
    }

    /// Writes `batch` (contiguous chunks of the active segment) with one op.
    fn submit_write(&mut self, mut batch: Vec<Chunk>) {
        let first = &batch[0];
        debug_assert_eq!(first.seg_base, self.active.key);
        debug_assert_eq!(first.start_lsn, self.shared.gate.written_lsn().as_u64(), "writes stay in order");
        let (offset, start) = (format::file_offset(first.seg_base, first.start_lsn), first.start_lsn);
        let last = batch.last_mut().expect("a batch is never empty");
        let end = last.end_lsn();
        let block = self.shared.log.block() as usize;
        // Bytes past `end` the write carries: zeros, never records.
        let mut zeros = 0;
        if block != 0 && last.buf.len() % block != 0 {
            // Direct I/O: only a sealed segment's last chunk ends inside a
            // block (the log buffer pads every other). Zeros past the seal
            // are unused space to readers and recovery.
            debug_assert_eq!(offset % block as u64, 0);
            let fill = block - last.buf.len() % block;
            last.buf.extend(fill).fill(0);
            zeros = fill as u64;
        }
        let records: u64 = batch.iter().map(|c| c.records).sum();
        let bytes: usize = batch.iter().map(|c| c.buf.len()).sum();
        if let Some(buf) = self.zero_ahead(offset, bytes) {
            zeros += buf.len() as u64;
            batch.push(Chunk { seg_base: self.active.key, start_lsn: end, buf, records: 0 });
        }
        // A write and its sync travel linked when the sync is wanted now and
        // nothing else waits to be written; under load the write goes alone,
        // so the next write can start while this one's sync runs.
        let linked = self.syncs.is_empty()
            && !self.busy
            && self.seal.is_none()
            && self.queue.is_empty()
            && self.shared.opts.group_commit_window.is_zero()
            && self.shared.gate.begin_linked_sync(end);
        let kind = if linked { OpKind::WriteSync } else { OpKind::Write };
        let now = Instant::now();
        if linked {
            let records = self.written_records + records;
            self.syncs.push(SyncInFlight::new(0, end, records, now, true));
        }
        self.write =
            Some(WriteInFlight { start, end, zeros, records, retries: 0, started: now, linked, stall_logged: false });
        let bufs = batch.into_iter().map(|c| c.buf).collect();
        let mut op = Op::write(kind, self.active.clone(), offset, bufs);
        // RWF_DSYNC makes only this write's bytes durable (a FUA write does
        // not flush the device cache): it may stand for the sync only when
        // everything before it is durable already.
        op.dsync = linked && self.shared.opts.dsync_writes && self.shared.gate.durable_lsn().as_u64() == start;
        self.backend.submit(op);
    }

    /// The zeros a write of `bytes` at `offset` carries (see `ZERO_AHEAD`).
    fn zero_ahead(&mut self, offset: u64, bytes: usize) -> Option<AlignedBuf> {
        let end = offset + bytes as u64;
        if end <= self.zeroed_to {
            return None;
        }
        let opts = &self.shared.opts;
        let block = self.shared.log.block().max(1);
        let target = end.next_multiple_of(ZERO_AHEAD).min(opts.segment_size);
        // Direct I/O keeps its promise that no block is written twice.
        let wanted = opts.preallocate != crate::Preallocate::Zero && !opts.direct_io && bytes < ZERO_AHEAD_BELOW;
        if !wanted || target <= end || end % block != 0 || target % block != 0 {
            self.zeroed_to = end;
            return None;
        }
        self.zeroed_to = target;
        let len = (target - end) as usize;
        let mut zeros = AlignedBuf::with_capacity(len, 4096);
        zeros.extend(len).fill(0);
        Some(zeros)
    }

    fn start_sync(&mut self, lane: usize, covers: u64) {
        self.syncs.push(SyncInFlight::new(lane, covers, self.written_records, Instant::now(), false));
        let mut op = Op::sync(self.active.clone());
        op.lane = lane;
        self.backend.submit(op);
    }

    /// Takes the sync in flight on `lane`.
    fn take_sync(&mut self, lane: usize) -> Result<SyncInFlight> {
        match self.syncs.iter().position(|s| s.lane == lane) {
            Some(at) => Ok(self.syncs.swap_remove(at)),
            None => Err(self.internal("sync completion with no sync in flight")),
        }
    }

    /// A linked sync that did not run: nothing became durable.
    fn abandon_linked(&mut self, lane: usize) -> Result<()> {
        let s = self.take_sync(lane)?;
        self.shared.gate.abandon_sync(s.covers);
        Ok(())
    }

    fn complete(&mut self, done: Done) -> Result<()> {
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
                return Err(Error::io_at("fdatasync", &self.active.path, Lsn::new(s.covers), e));
            }
            (None, OpKind::Write) => {}
        }
        Ok(())
    }

    /// Returns false when the write was resubmitted (short or interrupted).
    fn complete_write(&mut self, mut op: Op, result: std::io::Result<usize>) -> Result<bool> {
        let Some(w) = self.write.as_mut() else {
            return Err(self.internal("write completion with no write in flight"));
        };
        // Where the part not yet written begins (its zeros are not records).
        let lsn = Lsn::new((w.end + w.zeros).saturating_sub(op.write_len() as u64).min(w.end));
        match result {
            Ok(n) if n == op.write_len() => {}
            Ok(0) => {
                let e = std::io::Error::new(std::io::ErrorKind::WriteZero, "write made no progress");
                return Err(Error::io_at("write", &op.file.path, lsn, e));
            }
            Ok(n) => {
                op.start += n;
                op.offset += n as u64;
                self.resubmit(op)?;
                return Ok(false);
            }
            Err(e) if os::is_transient(&e) && w.retries < MAX_WRITE_RETRIES => {
                w.retries += 1;
                self.resubmit(op)?;
                return Ok(false);
            }
            Err(e) => return Err(Error::io_at("write", &op.file.path, lsn, e)),
        }
        let w = self.write.take().expect("checked above");
        self.shared.stats.write_done(w.started.elapsed());
        self.written_records += w.records;
        self.shared.gate.advance_written(w.end);
        for buf in op.bufs.drain(..) {
            self.shared.log.recycle(buf);
        }
        Ok(true)
    }

    /// Resubmits the rest of a write as a plain write. A linked sync is
    /// abandoned (it was cancelled by the short write, or ran before all the
    /// bytes it must cover were written); the gate starts a new round once
    /// the write completes.
    fn resubmit(&mut self, mut op: Op) -> Result<()> {
        if op.kind == OpKind::WriteSync {
            self.abandon_linked(op.lane)?;
        }
        if let Some(w) = self.write.as_mut() {
            w.linked = false; // the write alone is watched from now on
        }
        op.kind = OpKind::Write;
        self.backend.submit(op);
        Ok(())
    }

    fn complete_sync(&mut self, lane: usize, result: std::io::Result<()>) -> Result<()> {
        let s = self.take_sync(lane)?;
        if let Err(e) = result {
            return Err(Error::io_at("fdatasync", &self.active.path, Lsn::new(s.covers), e));
        }
        let took = s.started.elapsed();
        self.sync_avg = (self.sync_avg * 7 + took) / 8;
        if !s.stall_logged && took >= self.shared.opts.stall_threshold {
            self.shared.stats.stalled();
            tracing::error!(dir = %self.shared.dir.display(), took_ms = took.as_millis() as u64, "sync stalled");
        }
        let records = s.records.saturating_sub(self.synced_records);
        self.synced_records = self.synced_records.max(s.records);
        self.busy = self.write.is_some()
            || !self.queue.is_empty()
            || self.shared.log.has_pending()
            || self.shared.gate.written_lsn().as_u64() > s.covers;
        self.shared.stats.sync_done(records, took);
        tracing::debug!(parent: &s.span, covers = s.covers, records, took_us = took.as_micros() as u64, "sync round");
        self.shared.gate.complete_sync(s.covers);
        Ok(())
    }

    /// Switches to the next segment: syncs the sealed one, then, with a
    /// spare made ahead, writes its header and renames it into place; the
    /// syncs that make the new segment durable (its header, the directory)
    /// run as the seal while writes continue into it, and the round that
    /// covers everything below the new base completes with the seal (see
    /// [`Seal`]). Without a spare (its making failed), the segment is made
    /// and synced here, as a fallback, and the round completes at once.
    async fn rollover(&mut self, base: u64) -> Result<()> {
        debug_assert!(self.write.is_none() && self.syncs.is_empty() && self.seal.is_none());
        tracing::info!(dir = %self.shared.dir.display(), base, "segment rollover");
        let spare = match self.spare.take() {
            Some(making) => match self.bounded("make the next segment", base, making).await? {
                Ok(file) => Some(file),
                Err(e) => {
                    tracing::warn!(dir = %self.shared.dir.display(), error = %e, "making the next segment ahead failed");
                    None
                }
            },
            None => None,
        };
        let old = self.active.clone();
        let (dir, storage) = (self.shared.dir.clone(), self.shared.storage.clone());
        let id = self.journal_id;
        let covers = self.shared.gate.begin_sync(true);
        let has_spare = spare.is_some();
        let direct = self.shared.opts.direct_io;
        let lanes = self.lanes;
        let job = self.shared.io.run(move || -> Result<IoFile> {
            let storage = storage.as_ref();
            // The sealed segment is durable before the next one is named, so
            // no crash keeps the new name while losing the sealed segment's
            // end (the state tests/crash_states.rs found when this sync ran
            // in the seal, beside the new segment's first writes).
            storage.sync_data(&old.file).map_err(|e| Error::io_at("fdatasync", &old.path, Lsn::new(base), e))?;
            let made = match spare {
                Some(file) => segment::activate(storage, &dir, file, base, id)?,
                None => segment::create(storage, &dir, base, id)?,
            };
            if direct {
                os::set_direct(&made.file).map_err(|e| Error::io_at("set O_DIRECT", &made.path, Lsn::new(base), e))?;
            }
            Ok(IoFile::new(made.base, made.path, made.file, lanes - 1))
        });
        let made = self.bounded("rollover", base, job).await??;
        self.shared.segments.write().unwrap_or_else(|p| p.into_inner()).push(base);
        self.active = Arc::new(made);
        self.zeroed_to = 0;
        if let Some(covers) = covers {
            debug_assert_eq!(covers, base, "a sealed segment ends where the next begins");
        }
        if has_spare {
            let (new, dir, storage) = (self.active.clone(), self.shared.dir.clone(), self.shared.storage.clone());
            let task = self.shared.io.run(move || -> Result<()> {
                storage.sync_data(&new.file).map_err(|e| Error::io_at("fdatasync", &new.path, Lsn::new(base), e))?;
                storage.sync_dir(&dir).map_err(|e| Error::io_at("sync journal directory", &dir, Lsn::new(base), e))
            });
            let records = self.written_records;
            self.seal = Some(Seal { task, covers, records, started: Instant::now(), stall_logged: false });
        } else if let Some(covers) = covers {
            // `segment::create` made the new segment durable, name and all.
            self.synced_records = self.written_records;
            self.shared.gate.complete_sync(covers);
        }
        self.make_spare();
        Ok(())
    }

    /// The seal ended: with success, everything below the new segment's
    /// base is durable, and so is the segment itself.
    fn sealed(&mut self, result: crate::substrate::threads::Outcome<Result<()>>) -> Result<()> {
        let seal = self.seal.take().expect("polled only while a seal runs");
        result.map_err(|why| self.internal(&format!("seal job: {why}")))??;
        if let Some(covers) = seal.covers {
            self.synced_records = self.synced_records.max(seal.records);
            self.shared.gate.complete_sync(covers);
        }
        Ok(())
    }

    /// Awaits a job of the journal's I/O threads, for at most
    /// `sync_timeout` when one is set (the job itself runs on; the
    /// directory lock is kept until it ends).
    fn bounded<T>(
        &self,
        op: &'static str,
        lsn: u64,
        job: Running<T>,
    ) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
    {
        let (limit, path, dir) = (self.shared.opts.sync_timeout, self.active.path.clone(), self.shared.dir.clone());
        async move {
            let outcome = match limit {
                None => job.await,
                Some(limit) => tokio::time::timeout(limit, job).await.map_err(|_| {
                    let why = format!("{op} did not complete within {limit:?}");
                    Error::io_at(op, path, Lsn::new(lsn), std::io::Error::new(std::io::ErrorKind::TimedOut, why))
                })?,
            };
            outcome.map_err(|why| Error::io("driver", dir, std::io::Error::other(format!("{op} job: {why}"))))
        }
    }

    fn internal(&self, what: &str) -> Error {
        Error::io("driver", &self.shared.dir, std::io::Error::other(what.to_string()))
    }
}

/// Removes an unused spare segment when dropped.
struct DiscardSpare(std::path::PathBuf, Arc<dyn crate::storage::Storage>);

impl Drop for DiscardSpare {
    fn drop(&mut self) {
        if let Err(e) = segment::discard_spare(self.1.as_ref(), &self.0) {
            tracing::debug!(dir = %self.0.display(), error = %e, "the unused spare segment was not removed");
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Also reached when the runtime drops the task mid-flight: nobody
        // may wait forever, and nothing more is accepted.
        self.shared.log.refuse(Error::Closed);
        self.shared.gate.fail(Error::Closed);
        // The backend waits for its ops in flight as it drops; only then
        // (and once the I/O threads are idle) is the directory released.
        let placeholder = Box::new(crate::substrate::BlockingBackend::new(self.shared.io.clone()));
        drop(std::mem::replace(&mut self.backend, placeholder));
        self.release_lock();
    }
}
