//! The writer: one task per journal that owns every file and all its I/O.
//!
//! It takes what appenders left in the log buffer, writes it with one op per
//! batch of chunks (`io.rs`), leads every sync round of the gate as the
//! schedule allows (`super::schedule`), rolls segments (`roll.rs`), and on
//! shutdown flushes and drains. Writes go one at a time, except large ones:
//! while a write of at least `io::OVERLAP_MIN` bytes runs, the next large
//! one may go too (the device takes more with two in flight). Writes
//! complete in any order; the written frontier advances only over the
//! completed prefix of them. A sync covers what was written when it began;
//! it may run while the next write does.
//!
//! It must never report an LSN written or durable before the bytes below it
//! are, and never hand a buffer or file the kernel may still use back to
//! anyone: ops own them until their completion is reaped.
//!
//! When it has nothing in flight and nothing to do, it lends its backend and
//! the active segment to the next blocking caller (`lead.rs`), which writes
//! and syncs on its own thread; any wake takes the lease back first.

mod io;
mod lead;
mod roll;

pub(crate) use lead::LeaseSlot;

use std::collections::VecDeque;
use std::fs::File;
use std::future::{pending, poll_fn};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::open::DirLock;
use super::schedule::SyncSchedule;
use super::{Chunk, Shared};
use crate::segment::frontier::Publisher;
use crate::segment::SegmentFile;
use crate::substrate::threads::Running;
use crate::substrate::{Backend, Done, IoFile, Op};
use crate::{Error, FileOffset, Lsn, Result, Substrate, SyncPolicy};

use io::{SyncInFlight, WriteInFlight};
use lead::Lease;
use roll::Seal;

/// Sync rounds that may run at once, per substrate: overlapping fdatasyncs
/// from the I/O threads raised throughput at 64 durable appenders, on the
/// ring they lowered it (docs/benchmarks.md).
fn sync_lanes(substrate: Substrate) -> usize {
    match substrate {
        Substrate::Blocking => 2,
        Substrate::IoUring => 1,
    }
}

/// The most times the writer yields for the tasks a round released to
/// append again (`Writer::regroup`).
const REGROUP_YIELDS: usize = 16;

/// The regroup rule's wait: yields until the appends count reaches `until`
/// (as many records as the last round released tasks: a stand-in for each
/// of them having appended again, since the count is of records, batches
/// and other tasks' appends included), or
/// `REGROUP_YIELDS` times. One yield runs what the writer's worker has
/// queued, but a released task woken on the other worker, or behind a busy
/// queue, may need a few more; a task that does not come back (its work
/// done, or waiting on something else) costs the next round those yields
/// and no more.
async fn regroup(appends: &std::sync::atomic::AtomicU64, until: u64) {
    for _ in 0..REGROUP_YIELDS {
        tokio::task::yield_now().await;
        if appends.load(Ordering::Relaxed) >= until {
            return;
        }
    }
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    backend: Box<dyn Backend>,
    /// The segment appends go to.
    active: Arc<IoFile>,
    journal_id: u64,
    /// The next segment, being made or made, ahead of need.
    spare: Option<Running<std::io::Result<File>>>,
    seal: Option<Seal>,
    /// Held until the writer (or its reaper) ends: the directory's lock.
    lock: Option<DirLock>,
    /// Chunks taken from the log buffer and not yet written.
    queue: VecDeque<Chunk>,
    /// Writes in flight, in LSN order (at most `io::MAX_WRITES`).
    writes: VecDeque<WriteInFlight>,
    syncs: Vec<SyncInFlight>,
    schedule: SyncSchedule,
    interval: Option<Interval>,
    written_records: u64,
    synced_records: u64,
    /// The appends count (`Stats::appends`) at which every task the last
    /// round released has appended again: where the regroup wait ends.
    regroup_until: u64,
    /// How far into the active segment's file has been written, data or
    /// zeros (`io::ZERO_AHEAD`).
    zeroed_to: FileOffset,
    /// The last zeros-ahead buffer, back from the kernel, for the next.
    zero_spare: Option<crate::substrate::AlignedBuf>,
    /// Tells readers in other processes how far the log is durable.
    frontier: Arc<Mutex<Publisher>>,
    /// The backend, the active file and the frontier are lent to a
    /// blocking caller leading a round (`lead.rs`), or waiting for one.
    lent: bool,
    /// What stands in `backend` while it is lent, kept between lends so
    /// that lending allocates nothing.
    stand_in: Option<Box<dyn Backend>>,
}

impl Writer {
    pub(super) fn new(
        shared: Arc<Shared>,
        backend: Box<dyn Backend>,
        active: SegmentFile,
        journal_id: u64,
        lock: DirLock,
    ) -> Writer {
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
        let schedule = SyncSchedule::new(lanes, shared.opts.group_commit_window, shared.opts.dsync_writes);
        let frontier = Publisher::new(&shared.dir, journal_id, shared.gate.durable_lsn().as_u64());
        Writer {
            shared,
            backend,
            active: Arc::new(active),
            journal_id,
            spare: None,
            seal: None,
            lock: Some(lock),
            queue: VecDeque::new(),
            writes: VecDeque::new(),
            syncs: Vec::new(),
            schedule,
            interval,
            written_records: 0,
            synced_records: 0,
            regroup_until: 0,
            zeroed_to: FileOffset::default(),
            zero_spare: None,
            frontier: Arc::new(Mutex::new(frontier)),
            lent: false,
            stand_in: None,
        }
    }

    /// A sync round (or a seal) made everything below `covers` durable:
    /// readers in other processes are told, then waiters. Published first,
    /// so that a record acknowledged durable is already within the
    /// published frontier (a backup or follower in another process started
    /// after the acknowledgement sees it); never for a poisoned journal.
    /// Returns the tasks woken.
    fn made_durable(&mut self, covers: u64) -> usize {
        lead::made_durable(&self.shared, &self.frontier, covers)
    }

    /// Lends what a round needs to the next blocking caller, when nothing
    /// is in flight or waiting and no option asks for the writer's watch
    /// (a sync timeout) or its pacing (a group-commit window).
    fn lend(&mut self) {
        let (shared, opts) = (&self.shared, &self.shared.opts);
        let idle = self.writes.is_empty()
            && self.syncs.is_empty()
            && self.queue.is_empty()
            && self.seal.is_none()
            && self.backend.settled()
            && !self.shutting_down()
            && opts.sync_timeout.is_none()
            && opts.group_commit_window.is_zero();
        if self.lent || !idle || shared.log.has_pending() || !shared.gate.nothing_wanted() {
            return;
        }
        let substrate = self.backend.substrate();
        let stand_in = self.stand_in.take().unwrap_or_else(|| Box::new(Lent { substrate, refused: VecDeque::new() }));
        let backend = std::mem::replace(&mut self.backend, stand_in);
        shared.lease.put(Lease {
            backend,
            active: self.active.clone(),
            zeroed_to: self.zeroed_to,
            frontier: self.frontier.clone(),
            written_records: self.written_records,
            synced_records: self.synced_records,
            returned: VecDeque::new(),
            failed: None,
        });
        self.lent = true;
    }

    /// Takes the lease back, waiting for a leader to return it. A failure
    /// under the leader is the writer's own.
    async fn reclaim(&mut self) -> Result<()> {
        if !self.lent {
            return Ok(());
        }
        let lease = loop {
            let returned = self.shared.lease.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable(); // armed before the look: no return is missed
            if let Some(lease) = self.shared.lease.take() {
                break lease;
            }
            returned.await;
        };
        self.restore(lease)
    }

    fn restore(&mut self, lease: Lease) -> Result<()> {
        self.lent = false;
        let Lease { backend, zeroed_to, written_records, synced_records, returned, failed, .. } = lease;
        self.stand_in = Some(std::mem::replace(&mut self.backend, backend));
        self.zeroed_to = zeroed_to;
        self.written_records = written_records;
        self.synced_records = synced_records;
        debug_assert!(self.queue.is_empty(), "the writer lends only with nothing queued");
        self.queue.extend(returned);
        failed.map_or(Ok(()), Err)
    }

    /// Serves until the journal closes or fails, then winds down: the
    /// first failure poisons the journal; every waiter is answered.
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
        // Only after a failure (or a timed-out write or sync): a wedged
        // syscall must not hold `close` hostage.
        self.reap_elsewhere();
        self.release_lock();
        self.shared.gate.fail(Error::Closed);
        result
    }

    /// With ops still in flight, hands the backend and the directory lock
    /// to a thread of its own, which drops the backend (it waits until the
    /// kernel has let go of every op's buffers and files) and then releases
    /// the lock: nothing on a tokio worker waits for a wedged syscall.
    fn reap_elsewhere(&mut self) {
        if self.backend.settled() {
            return;
        }
        let backend = self.take_backend();
        let (io, lock) = (self.shared.io.clone(), self.lock.take());
        let reaper = std::thread::Builder::new().name("tidelog-reaper".into()).spawn(move || {
            drop(backend);
            io.hold_until_idle(lock);
        });
        if let Err(e) = reaper {
            // The closure, with the backend and the lock, is dropped here:
            // this thread waits for the I/O in flight.
            tracing::error!(error = %e, "cannot start a reaper thread; waiting for the I/O in flight here");
        }
    }

    /// The backend, replaced by one with nothing in flight.
    fn take_backend(&mut self) -> Box<dyn Backend> {
        let idle = Box::new(crate::substrate::BlockingBackend::new(self.shared.io.clone()));
        std::mem::replace(&mut self.backend, idle)
    }

    /// Hands the directory lock to the I/O threads, which release it once
    /// every job running or queued (a rollover, a seal, the spare) has
    /// ended: the next owner never shares the directory with our I/O.
    fn release_lock(&mut self) {
        if let Some(lock) = self.lock.take() {
            self.shared.io.hold_until_idle(Some(lock));
        }
    }

    async fn serve(&mut self) -> Result<()> {
        self.make_spare();
        loop {
            if self.schedule.take_regroup() {
                // The tasks the last round released run first: what they
                // append joins the next round (the schedule's regroup rule).
                let (appends, until) = (&self.shared.stats.appends, self.regroup_until);
                regroup(appends, until).await;
            }
            self.reclaim().await?;
            self.pump().await?;
            if self.finished() {
                return Ok(());
            }
            self.lend();
            let deadline = self.io_deadline();
            let wake_at = self.schedule.wake_at().map(Instant::from_std);
            let interval = &mut self.interval;
            let backend = &mut self.backend;
            let wake = &self.shared.gate.writer_wake;
            let seal = &mut self.seal;
            tokio::select! {
                done = poll_fn(|cx| backend.poll_complete(cx)) => self.complete(done)?,
                sealed = async { match seal { Some(s) => (&mut s.task).await, None => pending().await } } => {
                    self.sealed(sealed)?;
                }
                () = wake.notified() => {}
                _ = async { match interval { Some(i) => i.tick().await, None => pending().await } } => {
                    self.schedule.interval_ticked();
                }
                () = sleep_until(wake_at) => {}
                () = sleep_until(deadline) => self.io_overdue()?,
            }
        }
    }

    fn shutting_down(&self) -> bool {
        self.shared.shutdown.load(Ordering::Acquire)
    }

    fn final_sync_needed(&self) -> bool {
        self.shared.close_sync.load(Ordering::Acquire) || self.shared.opts.sync_policy != SyncPolicy::Never
    }

    fn all_written(&self) -> bool {
        self.writes.is_empty() && self.queue.is_empty() && !self.shared.log.has_pending()
    }

    fn finished(&self) -> bool {
        if !self.shutting_down() || !self.all_written() || !self.syncs.is_empty() || self.seal.is_some() {
            return false;
        }
        let gate = &self.shared.gate;
        !self.final_sync_needed() || gate.durable_lsn() >= gate.written_lsn()
    }

    /// Submits whatever can be submitted now: the next write (switching
    /// segments first if it belongs to the next one), then a sync round if
    /// the schedule allows one and the gate wants one.
    async fn pump(&mut self) -> Result<()> {
        while self.writes.len() < io::MAX_WRITES {
            if !self.writes.is_empty() && !self.may_overlap() {
                break;
            }
            if self.queue.is_empty() {
                // Beside a write in flight only a large write may go: what
                // is smaller stays in the log buffer, where later appends
                // join it, until the write slot is free.
                if !self.writes.is_empty() && self.shared.log.pending_bytes() < io::OVERLAP_MIN {
                    break;
                }
                self.shared.log.take(&mut self.queue);
            }
            let next_base = self.queue.front().map(|c| c.seg_base);
            if let Some(base) = next_base.filter(|&b| b != self.active.key) {
                if !self.writes.is_empty() {
                    break; // roll once the writes in flight complete
                }
                if !self.schedule.may_roll() {
                    return Ok(()); // roll once the rounds in flight complete
                }
                self.rollover(base).await?;
            }
            match self.next_batch() {
                Some(batch) => self.submit_write(batch),
                None => break,
            }
        }
        let forced =
            self.schedule.interval_due() || (self.shutting_down() && self.final_sync_needed() && self.all_written());
        let gate = &self.shared.gate;
        let wanted = gate.sync_wanted() > gate.durable_lsn().as_u64();
        let now = Instant::now().into_std();
        if let Some(lane) = self.schedule.lane_for_round(now, self.active.sync_lanes(), wanted, forced) {
            if let Some(covers) = self.shared.gate.begin_sync(forced) {
                self.start_sync(lane, Lsn::new(covers));
            }
        }
        Ok(())
    }

    fn internal(&self, what: &str) -> Error {
        Error::Internal(format!("{}: {what}", self.shared.dir.display()))
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => pending().await,
    }
}

/// Removes an unused spare segment when dropped.
struct DiscardSpare(std::path::PathBuf, Arc<dyn crate::storage::Storage>);

impl Drop for DiscardSpare {
    fn drop(&mut self) {
        if let Err(e) = crate::segment::discard_spare(self.1.as_ref(), &self.0) {
            tracing::debug!(dir = %self.0.display(), error = %e, "the unused spare segment was not removed");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Also reached when the runtime drops the task mid-flight: nobody
        // may wait forever, and nothing more is accepted.
        self.shared.log.refuse(Error::Closed);
        self.shared.gate.fail(Error::Closed);
        if self.lent {
            // A leader may be in a write or a sync: the directory is not
            // released before it has returned the backend.
            let lease = self.shared.lease.take_blocking();
            let _ = self.restore(lease);
        }
        // The backend waits for its ops in flight as it drops; only then
        // (and once the I/O threads are idle) is the directory released.
        // With ops in flight (the runtime shutting down mid-flight) that
        // wait runs on a thread of its own: an op that never completes
        // must not hang the runtime's shutdown on this worker.
        self.reap_elsewhere();
        drop(self.take_backend());
        self.release_lock();
    }
}

/// The writer's backend while it is lent: nothing may be submitted to it.
/// Should something be, it fails, and the writer poisons the journal.
struct Lent {
    substrate: Substrate,
    refused: VecDeque<Op>,
}

impl Backend for Lent {
    fn submit(&mut self, op: Op) {
        debug_assert!(false, "an op submitted while the backend is lent");
        self.refused.push_back(op);
    }

    fn poll_complete(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Done> {
        match self.refused.pop_front() {
            Some(op) => std::task::Poll::Ready(Self::refuse(op)),
            None => std::task::Poll::Pending,
        }
    }

    fn perform_now(&mut self, op: Op) -> Done {
        Self::refuse(op)
    }

    fn in_flight(&self) -> usize {
        self.refused.len()
    }

    fn substrate(&self) -> Substrate {
        self.substrate
    }
}

impl Lent {
    fn refuse(op: Op) -> Done {
        let lent = || std::io::Error::other("internal: an op submitted while the backend was lent");
        let written = op.is_write().then(|| Err(lent()));
        let synced = (op.kind != crate::substrate::OpKind::Write).then(|| Err(lent()));
        Done { op, written, synced }
    }
}

#[cfg(test)]
mod tests {
    use super::{regroup, REGROUP_YIELDS};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime")
    }

    #[test]
    fn the_regroup_waits_for_tasks_that_need_more_than_one_yield_to_append() {
        runtime().block_on(async {
            let appends = Arc::new(AtomicU64::new(0));
            // Three released tasks, each a yield later than the one before
            // (as if behind other work on its worker).
            for delay in 0..3 {
                let appends = appends.clone();
                tokio::spawn(async move {
                    for _ in 0..delay {
                        tokio::task::yield_now().await;
                    }
                    appends.fetch_add(1, Ordering::Relaxed);
                });
            }
            tokio::time::timeout(Duration::from_secs(10), regroup(&appends, 3)).await.expect("the regroup ends");
            assert_eq!(appends.load(Ordering::Relaxed), 3, "the next round starts with all three records");
        });
    }

    #[test]
    fn the_regroup_gives_up_on_a_task_that_does_not_come_back() {
        runtime().block_on(async {
            let appends = AtomicU64::new(0);
            let polls = Arc::new(AtomicU64::new(0));
            let counter = polls.clone();
            let other = tokio::spawn(async move {
                loop {
                    counter.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            });
            tokio::time::timeout(Duration::from_secs(10), regroup(&appends, 1)).await.expect("the regroup ends");
            let yields = polls.load(Ordering::Relaxed);
            other.abort();
            assert!(yields <= REGROUP_YIELDS as u64 + 1, "{yields} polls of the other task: the wait is bounded");
        });
    }
}
