//! A blocking caller that leads its own round while the writer is idle.
//!
//! A lone durable appender on the blocking API would otherwise cross three
//! threads per record: its append wakes the writer task on a tokio worker,
//! the writer hands the write and the fdatasync to an I/O thread, whose
//! completion wakes the writer, which wakes the caller. On a VM each wake of
//! a parked thread is the wake of a halted vCPU. So an idle writer lends
//! what a round needs (the backend, the active segment, the frontier
//! publisher) to whichever caller of [`Journal::append`] or
//! [`Journal::sync_through`] comes first; that caller writes everything
//! pending, its own records and any placed meanwhile, and syncs on its own
//! thread, as raft-engine's callers do. Everyone else keeps the usual path:
//! an appender that finds the lease taken wakes the writer, and the writer
//! takes the lease back as soon as the leader returns it.
//!
//! Only what is simple goes this way: chunks of the active segment that fit
//! one write, without a `sync_timeout` or a group-commit window. Anything
//! else (a rollover, a sealed segment's fill, a large backlog) goes back to
//! the writer untouched. A failure is handed to the writer, which poisons
//! the journal exactly as if its own op had failed. Ops go through the
//! backend's `perform_now`, so the test seams (faults, crash recording)
//! see them as they see the writer's. A leader's op is not watched while
//! it runs (the writer's stall report and `sync_timeout` watch only its
//! own ops): a slow sync is reported once it completed, and a journal with
//! a `sync_timeout` never lends. A leader that panics hands the lease back
//! marked failed, and the writer poisons the journal.
//!
//! [`Journal::append`]: crate::Journal::append
//! [`Journal::sync_through`]: crate::Journal::sync_through

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::io::{batch_len, unwritten_from, zeros_ahead, MAX_BATCH_BYTES, MAX_WRITE_RETRIES};
use crate::gate::Level;
use crate::journal::{Chunk, Shared};
use crate::segment::frontier::Publisher;
use crate::storage::os;
use crate::substrate::{Backend, IoFile, Op, OpKind};
use crate::{format, Error, FileOffset, Lsn, Result};

/// What a round needs, lent by an idle writer.
pub(crate) struct Lease {
    pub(super) backend: Box<dyn Backend>,
    pub(super) active: Arc<IoFile>,
    pub(super) zeroed_to: FileOffset,
    pub(super) frontier: Arc<Mutex<Publisher>>,
    pub(super) written_records: u64,
    pub(super) synced_records: u64,
    /// Chunks taken from the log buffer that the leader did not write: the
    /// writer writes them first.
    pub(super) returned: VecDeque<Chunk>,
    /// What failed under the leader: the writer poisons the journal with it.
    pub(super) failed: Option<Error>,
}

/// Where an idle writer leaves its [`Lease`].
#[derive(Default)]
pub(crate) struct LeaseSlot {
    slot: Mutex<Option<Lease>>,
    /// For a writer that must wait without a runtime (its `Drop`).
    back: Condvar,
    /// For the writer task waiting to take the lease back.
    pub(super) returned: tokio::sync::Notify,
}

impl std::fmt::Debug for LeaseSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseSlot")
    }
}

impl LeaseSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Lease>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn put(&self, lease: Lease) {
        *self.lock() = Some(lease);
        self.back.notify_all();
        self.returned.notify_one();
    }

    pub(super) fn take(&self) -> Option<Lease> {
        self.lock().take()
    }

    /// The lease, if it is here and nobody is handling the slot right now.
    fn try_take(&self) -> Option<Lease> {
        match self.slot.try_lock() {
            Ok(mut slot) => slot.take(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Blocks until a leader returns the lease.
    pub(super) fn take_blocking(&self) -> Lease {
        let mut slot = self.lock();
        loop {
            if let Some(lease) = slot.take() {
                return lease;
            }
            slot = self.back.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A lease taken by a leader: returned to the slot when dropped, also if
/// the leader panics. Then it is marked failed and the writer woken, which
/// poisons the journal: nobody waits forever for the lease, nor for
/// records the leader took and did not write.
struct Held<'a> {
    shared: &'a Shared,
    lease: Option<Lease>,
    /// The thread was unwinding already when the lease was taken (a
    /// destructor appending during a panic of the caller's own): only a
    /// panic that began during the round is the leader's.
    unwinding: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let Some(mut lease) = self.lease.take() else { return };
        let panicked = std::thread::panicking() && !self.unwinding;
        if panicked && lease.failed.is_none() {
            let why = format!("{}: a blocking caller panicked while leading a round", self.shared.dir.display());
            lease.failed = Some(Error::Internal(why));
        }
        self.shared.lease.put(lease);
        if panicked {
            self.shared.gate.writer_wake.notify_one();
        }
    }
}

/// Tells readers in other processes, then waiters, that everything below
/// `covers` is durable (see `Writer::made_durable`); returns the tasks woken.
pub(super) fn made_durable(shared: &Shared, frontier: &Mutex<Publisher>, covers: u64) -> usize {
    if shared.gate.failure().is_none() {
        let mut frontier = frontier.lock().unwrap_or_else(|p| p.into_inner());
        frontier.publish(covers.max(shared.gate.durable_lsn().as_u64()));
    }
    shared.gate.complete_sync(covers)
}

impl Shared {
    /// The blocking API's wait for `lsn` to reach `level`: leads the round
    /// itself when the writer is idle, waits for the writer otherwise.
    /// `wake_owed`: the caller placed records without waking the writer.
    pub(crate) fn wait_leading(&self, level: Level, lsn: u64, wake_owed: bool) -> Result<Lsn> {
        let reached = match level {
            Level::Written => self.gate.written_lsn(),
            Level::Durable => self.gate.durable_lsn(),
        };
        if reached.as_u64() < lsn {
            match self.lease.try_take() {
                Some(lease) => {
                    let unwinding = std::thread::panicking();
                    let mut held = Held { shared: self, lease: Some(lease), unwinding };
                    let lease = held.lease.as_mut().expect("just taken");
                    // Chunks a leader handed back come before anything in
                    // the log buffer: only the writer goes on from there.
                    if lease.failed.is_none() && lease.returned.is_empty() {
                        self.lead(lease, level, lsn);
                    }
                    let writer_needed = !lease.returned.is_empty() || lease.failed.is_some();
                    drop(held);
                    // Appenders that placed meanwhile counted on the wake
                    // held back above; a need for durability registered
                    // meanwhile may have been kept from the writer too.
                    if writer_needed || self.log.has_pending() || !self.gate.nothing_wanted() {
                        self.gate.writer_wake.notify_one();
                    }
                }
                None if wake_owed => self.gate.writer_wake.notify_one(),
                None => {}
            }
        } else if wake_owed {
            self.gate.writer_wake.notify_one();
        }
        self.gate.wait_blocking(level, lsn)
    }

    /// Writes what is pending, and syncs it if `level` is durable.
    fn lead(&self, lease: &mut Lease, level: Level, lsn: u64) {
        let gate = &self.gate;
        let durable = level == Level::Durable;
        if durable {
            gate.want_sync(lsn);
        }
        if gate.written_lsn().as_u64() < lsn {
            let mut chunks = VecDeque::new();
            self.log.take(&mut chunks);
            if !chunks.is_empty() && !self.lead_write(lease, chunks, durable) {
                return;
            }
        }
        if durable && gate.durable_lsn().as_u64() < lsn {
            if let Some(covers) = gate.begin_sync(false) {
                self.lead_sync(lease, covers);
            }
        }
    }

    /// Writes `chunks` (everything that was pending) with one op, linked to
    /// a sync if `sync`. False when it did not: the chunks went back to the
    /// writer, or the write failed.
    fn lead_write(&self, lease: &mut Lease, chunks: VecDeque<Chunk>, sync: bool) -> bool {
        let block = self.log.block() as usize;
        let first = &chunks[0];
        let last = &chunks[chunks.len() - 1];
        let fits = chunks.iter().all(|c| c.seg_base == lease.active.key)
            && batch_len(&chunks, MAX_BATCH_BYTES) == chunks.len()
            && (block == 0 || last.buf.len() % block == 0)
            && first.start_lsn == self.gate.written_lsn().as_u64();
        if !fits {
            lease.returned.extend(chunks);
            return false;
        }
        let (start, end) = (first.start_lsn, last.end_lsn());
        let offset = FileOffset::new(format::file_offset(first.seg_base, start));
        let records: u64 = chunks.iter().map(|c| c.records).sum();
        let bytes: usize = chunks.iter().map(|c| c.buf.len()).sum();
        let mut bufs: Vec<_> = chunks.into_iter().map(|c| c.buf).collect();
        let zeros = zeros_ahead(&mut lease.zeroed_to, &self.opts, self.log.block(), offset, bytes, &mut None);
        let zero_bytes = zeros.as_ref().map_or(0, |z| z.len() as u64);
        bufs.extend(zeros);
        let mut linked = sync && self.gate.begin_linked_sync(end);
        let kind = if linked { OpKind::WriteSync } else { OpKind::Write };
        let mut op = Op::write(kind, lease.active.clone(), offset, bufs);
        op.tag = start;
        op.dsync = linked && self.opts.dsync_writes && self.gate.durable_lsn().as_u64() == start;
        let started = Instant::now();
        let mut retries = 0;
        let mut done = loop {
            let done = lease.backend.perform_now(op);
            let Some(written) = &done.written else {
                return self.lead_failed(lease, linked.then_some(end), self.internal("a write reported no result"));
            };
            let at = Lsn::new(unwritten_from(end, zero_bytes, done.op.write_len()));
            match written {
                Ok(n) if *n == done.op.write_len() => break done,
                Ok(0) => {
                    let e = std::io::Error::new(std::io::ErrorKind::WriteZero, "write made no progress");
                    let err = Error::io_at("write", &lease.active.path, at, e);
                    return self.lead_failed(lease, linked.then_some(end), err);
                }
                Ok(n) => {
                    let n = *n;
                    op = done.op;
                    op.advance(n);
                }
                Err(e) if os::is_transient(e) && retries < MAX_WRITE_RETRIES => {
                    retries += 1;
                    op = done.op;
                }
                Err(e) => {
                    let err = Error::io_at("write", &lease.active.path, at, clone_io(e));
                    return self.lead_failed(lease, linked.then_some(end), err);
                }
            }
            // The rest goes as a plain write; the sync, if any, after it.
            if linked {
                self.gate.abandon_sync(end);
                linked = false;
            }
            op.kind = OpKind::Write;
        };
        self.stats.write_done(started.elapsed());
        for buf in done.op.bufs.drain(..) {
            self.log.recycle(buf);
        }
        lease.written_records += records;
        self.gate.advance_written(end);
        if linked {
            match done.synced {
                Some(Ok(())) => self.lead_synced(lease, end, started),
                Some(Err(e)) => {
                    let err = Error::io_at("fdatasync", &lease.active.path, Lsn::new(end), e);
                    return self.lead_failed(lease, Some(end), err);
                }
                // The link was broken after a complete write: nothing
                // became durable; a plain sync follows.
                None => self.gate.abandon_sync(end),
            }
        }
        true
    }

    /// A plain sync covering `covers` (begun on the gate).
    fn lead_sync(&self, lease: &mut Lease, covers: u64) {
        let started = Instant::now();
        let done = lease.backend.perform_now(Op::sync(lease.active.clone()));
        let failure = match done.synced {
            Some(Ok(())) => return self.lead_synced(lease, covers, started),
            Some(Err(e)) => e,
            None => std::io::Error::new(std::io::ErrorKind::Interrupted, "fdatasync was cancelled before it ran"),
        };
        let err = Error::io_at("fdatasync", &lease.active.path, Lsn::new(covers), failure);
        self.lead_failed(lease, Some(covers), err);
    }

    fn lead_synced(&self, lease: &mut Lease, covers: u64, started: Instant) {
        let took = started.elapsed();
        if took >= self.opts.stall_threshold {
            self.stats.stalled();
            tracing::error!(dir = %self.dir.display(), took_ms = took.as_millis() as u64, "sync stalled");
        }
        let records = lease.written_records.saturating_sub(lease.synced_records);
        lease.synced_records = lease.written_records;
        self.stats.sync_done(records, took);
        made_durable(self, &lease.frontier, covers);
    }

    /// Hands `err` to the writer; the round begun for `round`, if any, did
    /// not make anything durable. Always false (nothing was written).
    fn lead_failed(&self, lease: &mut Lease, round: Option<u64>, err: Error) -> bool {
        if let Some(covers) = round {
            self.gate.abandon_sync(covers);
        }
        lease.failed = Some(err);
        false
    }

    fn internal(&self, what: &str) -> Error {
        Error::Internal(format!("{}: {what}", self.dir.display()))
    }
}

/// An `io::Error` rebuilt from a borrowed one (its kind, OS code and text).
fn clone_io(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}
