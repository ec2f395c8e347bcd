//! The native substrate: one io_uring ring per journal, driven from the
//! journal's writer task.
//!
//! The writer task submits SQEs itself (no thread hop) and learns of
//! completions through `AsyncFd` readiness on the ring fd: clear readiness,
//! then drain the CQ, so no completion posted between the two is missed.
//! Nothing here blocks a tokio worker: `submit()` never waits for
//! completions. The ring is built without `SINGLE_ISSUER`/`DEFER_TASKRUN`
//! because the writer task may migrate between worker threads.
//!
//! Memory: each op (its buffer and its file, through an `Arc`) lives in a
//! slot until every CQE it produced has been reaped; only then is it handed
//! back. Dropping the backend waits for ops still in flight.
//!
//! Stuck ops: an op the kernel accepted but has not completed within
//! `STUCK_AFTER` is sent an `ASYNC_CANCEL`. One still queued (in io-wq with
//! no worker to run it, which this kernel has been seen to do) comes back
//! cancelled and is submitted again from its slot, buffers unmoved; one
//! already running is left to finish. A write redone is the same bytes at
//! the same offset, a sync redone is one more sync: neither can change what
//! was acknowledged.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring, Probe};
use tokio::io::unix::AsyncFd;

use super::{Backend, Done, Op, OpKind};

/// The most one write SQE carries; the rest follows as a short-write
/// continuation. Keeps lengths inside the `i32` result of a CQE.
const MAX_WRITE_LEN: usize = 1 << 30;
/// Ops the writer keeps in flight: two writes and one sync, the sync
/// linked to a write when it travels with one (two SQEs). The CQ is sized
/// well above that, so it never overflows.
const MAX_OPS: usize = 4;

pub(super) struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The iovec array of a `Writev` SQE, kept in its slot until the CQE.
struct IoVecs(Vec<libc::iovec>);

// SAFETY: the iovecs point into the buffers of the op in the same slot,
// which owns them; the pointers are only read by the kernel, never
// dereferenced by us, so moving the slot between threads is sound.
unsafe impl Send for IoVecs {}

impl std::fmt::Debug for IoVecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IoVecs({})", self.0.len())
    }
}

#[derive(Debug)]
struct Slot {
    op: Op,
    /// For a write of several buffers: their iovecs, alive until the CQE.
    _iovecs: IoVecs,
    cqes_left: u8,
    /// Its completion was already reported (failed: the ring broke under
    /// it); its buffers and file stay here until its CQEs are reaped.
    zombie: bool,
    written: Option<io::Result<usize>>,
    synced: Option<io::Result<()>>,
    /// When its SQEs were last handed over (submit or redo).
    since: Instant,
    /// An `ASYNC_CANCEL` was sent for it since then: a cancelled or
    /// interrupted result means "run it again", not a failure.
    cancel_sent: bool,
}

/// How long transient `io_uring_enter` failures (`EAGAIN`, `EBUSY`: the
/// kernel is short of memory for requests) are retried before the queued
/// ops fail.
const SUBMIT_RETRY_FOR: Duration = Duration::from_secs(2);
/// The pause between such retries.
const SUBMIT_RETRY_EVERY: Duration = Duration::from_millis(1);
/// How long an op may sit in the kernel before it is sent a cancel (which
/// only takes it back if it has not started; see the module docs).
const STUCK_AFTER: Duration = Duration::from_secs(1);
/// Marks the `user_data` of an `ASYNC_CANCEL` SQE; the rest is the target's.
const CANCEL_BIT: u64 = 1 << 63;

pub(crate) struct UringBackend {
    // Field order matters: the readiness registration goes before the ring.
    readiness: AsyncFd<RingFd>,
    ring: IoUring,
    slots: Vec<Option<Slot>>,
    /// SQEs pushed and not yet accepted by `io_uring_enter`, oldest first:
    /// (slot, how many SQEs of it).
    queued: VecDeque<(usize, u8)>,
    /// Since when `io_uring_enter` has failed transiently, and the timer
    /// that retries it (nothing else would wake the writer if no op is in
    /// the kernel).
    retrying: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
    /// The ring failed for good (a hard `io_uring_enter` or readiness
    /// error): every op still in it, and every later one, fails with this.
    broken: Option<(io::ErrorKind, String)>,
    zombies: usize,
    ready: VecDeque<Done>,
    /// Slots in use, zombies included.
    in_flight: usize,
    /// Wakes the writer to look for stuck ops. It never fires later than
    /// the oldest op's `since + stuck_after`; it may fire earlier (then it
    /// is re-armed), so it is moved at most once per `stuck_after`.
    watchdog: Pin<Box<tokio::time::Sleep>>,
    stuck_after: Duration,
    /// Cancels sent to ops held too long, and ops they took back and
    /// submitted again.
    cancels: u64,
    redone: u64,
    #[cfg(test)]
    inject: Inject,
}

/// Failures the unit tests inject where the kernel would report them.
#[cfg(test)]
#[derive(Default)]
struct Inject {
    /// Errnos the next `io_uring_enter` calls return instead of running.
    submit_errors: VecDeque<i32>,
    /// The submission queue reports no room.
    sq_full: bool,
    /// Readiness polling fails.
    readiness_error: bool,
    /// The next write SQE is swapped for a read of this empty pipe, which
    /// never completes on its own: a stand-in for an op the kernel holds.
    stuck_write: Option<RawFd>,
}

/// An op's outcome when it cannot reach the kernel or the ring broke under
/// it: the same kind, lane and tag, no bytes, every part failed with `why`.
fn failed(op: &Op, kind: io::ErrorKind, why: &str) -> Done {
    let err = || io::Error::new(kind, why.to_string());
    let returned = Op { kind: op.kind, lane: op.lane, tag: op.tag, ..Op::sync(op.file.clone()) };
    let written = (op.kind != OpKind::Sync).then(|| Err(err()));
    let synced = (op.kind != OpKind::Write).then(|| Err(err()));
    Done { op: returned, written, synced }
}

/// What an fsync CQE's result means. A linked sync cancelled because its
/// write came up short did not run: no result, and the writer starts a new
/// round. A plain sync cannot be cancelled by a link: a cancellation there
/// (the kernel tore the request down) is a failure, never silence.
fn sync_result(linked: bool, res: i32) -> Option<io::Result<()>> {
    match res {
        r if r >= 0 => Some(Ok(())),
        r if -r == libc::ECANCELED && linked => None,
        r => Some(Err(io::Error::from_raw_os_error(-r))),
    }
}

/// Registers `ring`'s fd with the runtime's reactor, to learn of completions.
/// Both owners (`UringBackend`, `range_ring::RangeRing`) declare the registration before
/// the ring, so it is dropped first.
pub(super) fn watch(ring: &IoUring) -> Result<AsyncFd<RingFd>, String> {
    let fd = RingFd(ring.as_raw_fd());
    let register = std::panic::AssertUnwindSafe(|| {
        // SAFETY: the ring fd stays open and refers to the same ring for the
        // AsyncFd's whole life: every owner drops the registration before
        // the ring (field order, above).
        unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
    });
    // tokio panics (rather than erring) when the runtime's I/O driver is
    // disabled; that is a reason to fall back, not to crash.
    std::panic::catch_unwind(register)
        .map_err(|_| "the tokio runtime has no I/O driver (Builder::enable_io)".to_string())?
        .map_err(|e| format!("cannot watch the ring fd: {e}"))
}

/// Why the kernel cannot run a ring, learned once per process.
pub(crate) fn probe() -> Result<(), String> {
    static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
    PROBED
        .get_or_init(|| {
            let ring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
            let mut probe = Probe::new();
            ring.submitter().register_probe(&mut probe).map_err(|e| format!("io_uring probe failed: {e}"))?;
            for (code, name) in
                [(opcode::Write::CODE, "WRITE"), (opcode::Writev::CODE, "WRITEV"), (opcode::Fsync::CODE, "FSYNC")]
            {
                if !probe.is_supported(code) {
                    return Err(format!("the kernel's io_uring lacks {name}"));
                }
            }
            if !ring.params().is_feature_nodrop() {
                return Err("the kernel's io_uring may drop completions (no IORING_FEAT_NODROP)".into());
            }
            Ok(())
        })
        .clone()
}

impl UringBackend {
    pub(crate) fn create(entries: u32, sqpoll_idle: Option<std::time::Duration>) -> Result<UringBackend, String> {
        probe()?;
        // Two SQEs per op at most, and room for a cancel of each.
        let entries = entries.max(MAX_OPS as u32 * 3);
        let mut builder = IoUring::builder();
        if let Some(idle) = sqpoll_idle {
            builder.setup_sqpoll(idle.as_millis().clamp(1, u32::MAX as u128) as u32);
        }
        let ring = builder.build(entries).map_err(|e| match sqpoll_idle {
            Some(_) => format!("io_uring_setup({entries}, SQPOLL) failed: {e}"),
            None => format!("io_uring_setup({entries}) failed: {e}"),
        })?;
        let readiness = watch(&ring)?;
        Ok(UringBackend {
            readiness,
            ring,
            slots: (0..MAX_OPS).map(|_| None).collect(),
            queued: VecDeque::new(),
            retrying: None,
            broken: None,
            zombies: 0,
            ready: VecDeque::new(),
            in_flight: 0,
            watchdog: Box::pin(tokio::time::sleep(Duration::ZERO)),
            stuck_after: STUCK_AFTER,
            cancels: 0,
            redone: 0,
            #[cfg(test)]
            inject: Inject::default(),
        })
    }

    /// Free submission-queue entries.
    fn sq_room(&mut self) -> usize {
        #[cfg(test)]
        if self.inject.sq_full {
            return 0;
        }
        let sq = self.ring.submission();
        sq.capacity() - sq.len()
    }

    fn enter(&mut self) -> io::Result<usize> {
        #[cfg(test)]
        if let Some(errno) = self.inject.submit_errors.pop_front() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.ring.submit()
    }

    /// Hands queued SQEs to the kernel without waiting. Transient errors
    /// leave them queued (`retrying` brings the writer back), for at most
    /// `SUBMIT_RETRY_FOR`; a hard error breaks the ring.
    fn flush(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        match self.enter() {
            Ok(mut taken) => {
                self.retrying = None;
                // The kernel takes SQEs in order: the oldest are accepted.
                while let Some(&(_, sqes)) = self.queued.front().filter(|&&(_, n)| taken >= usize::from(n)) {
                    taken -= usize::from(sqes);
                    self.queued.pop_front();
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {
                let since = self.retrying.as_ref().map_or_else(Instant::now, |r| r.0);
                if since.elapsed() >= SUBMIT_RETRY_FOR {
                    let why = format!("io_uring submit kept failing for {SUBMIT_RETRY_FOR:?}: {e}");
                    self.break_ring(io::ErrorKind::Other, why);
                    return;
                }
                let timer = Box::pin(tokio::time::sleep(SUBMIT_RETRY_EVERY));
                self.retrying = Some((since, timer));
            }
            Err(e) => self.break_ring(e.kind(), format!("io_uring submit failed: {e}")),
        }
    }

    /// The ring cannot be used any more: every op in it is reported failed
    /// now (the writer poisons the journal) and every later op fails at
    /// once. Their slots stay, buffers and files with them, until their
    /// CQEs are reaped (SQEs never accepted may still be, by a later enter:
    /// `Drop` waits for them or, if even that fails, leaks the slots).
    fn break_ring(&mut self, kind: io::ErrorKind, why: String) {
        tracing::error!(error = %why, "io_uring failed");
        self.queued.clear();
        self.retrying = None;
        for slot in self.slots.iter_mut().flatten().filter(|s| !s.zombie) {
            slot.zombie = true;
            self.zombies += 1;
            self.ready.push_back(failed(&slot.op, kind, &why));
        }
        self.broken = Some((kind, why));
    }

    /// Records one CQE result for `user_data`; completes the op when its
    /// last CQE is in.
    fn settle(&mut self, user_data: u64, res: i32) {
        if user_data & CANCEL_BIT != 0 {
            // 0: taken back (its own CQE follows, cancelled); EALREADY: it
            // is running; ENOENT: it completed meanwhile, or the kernel
            // cannot find it (then nothing but waiting is safe).
            let target = user_data & !CANCEL_BIT;
            tracing::warn!(slot = target >> 1, sync = target & 1 == 1, result = res, "cancel of a stuck io_uring op");
            return;
        }
        let (index, is_sync) = ((user_data >> 1) as usize, user_data & 1 == 1);
        let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            tracing::error!(user_data, "completion for an unknown io_uring op");
            return;
        };
        if is_sync {
            slot.synced = sync_result(slot.op.kind == OpKind::WriteSync, res);
        } else {
            slot.written = Some(if res >= 0 { Ok(res as usize) } else { Err(io::Error::from_raw_os_error(-res)) });
            if slot.op.is_dsync_write() && res >= 0 && res as usize == slot.op.write_len() {
                // RWF_DSYNC: the complete write is its own sync.
                slot.synced = Some(Ok(()));
            }
        }
        slot.cqes_left -= 1;
        if slot.cqes_left == 0 {
            if !slot.zombie && slot.cancel_sent && taken_back(slot) {
                self.redo(index);
                return;
            }
            let slot = self.slots[index].take().expect("checked above");
            self.in_flight -= 1;
            if slot.zombie {
                self.zombies -= 1;
                return;
            }
            self.ready.push_back(Done { op: slot.op, written: slot.written, synced: slot.synced });
        }
    }

    fn reap(&mut self) {
        let mut cq = self.ring.completion();
        cq.sync();
        let entries: Vec<(u64, i32)> = cq.map(|cqe| (cqe.user_data(), cqe.result())).collect();
        for (ud, res) in entries {
            self.settle(ud, res);
        }
    }

    /// The SQEs for `op`, which will live in slot `index`, and the iovecs a
    /// vectored write points to.
    fn entries(op: &Op, index: usize) -> (Vec<squeue::Entry>, Vec<libc::iovec>) {
        let fd = types::Fd(op.file.file.as_raw_fd());
        let ud = (index as u64) << 1;
        let mut entries = Vec::with_capacity(2);
        let dsync = op.is_dsync_write();
        let mut iovecs = Vec::new();
        if op.is_write() {
            let rw_flags = if dsync { libc::RWF_DSYNC } else { 0 };
            // At most MAX_WRITE_LEN per SQE: the rest comes back as a short
            // write, which the writer continues.
            let mut room = MAX_WRITE_LEN;
            let slices: Vec<&[u8]> = op
                .slices()
                .map_while(|s| {
                    let take = s.len().min(room);
                    room -= take;
                    (take > 0).then(|| &s[..take])
                })
                .collect();
            let write = if let [bytes] = slices[..] {
                opcode::Write::new(fd, bytes.as_ptr(), bytes.len() as u32)
                    .offset(op.offset.get())
                    .rw_flags(rw_flags)
                    .build()
            } else {
                iovecs = crate::storage::os::iovecs(&slices);
                // The Vec's heap array does not move when the Vec moves
                // into the slot.
                opcode::Writev::new(fd, iovecs.as_ptr(), iovecs.len() as u32)
                    .offset(op.offset.get())
                    .rw_flags(rw_flags)
                    .build()
            };
            let link = op.kind == OpKind::WriteSync && !dsync;
            let flags = if link { squeue::Flags::IO_LINK } else { squeue::Flags::empty() };
            entries.push(write.flags(flags).user_data(ud));
        }
        if op.kind != OpKind::Write && !dsync {
            let sync_fd = types::Fd(op.file.sync_fd(op.lane).as_raw_fd());
            let sync = opcode::Fsync::new(sync_fd).flags(types::FsyncFlags::DATASYNC).build();
            entries.push(sync.user_data(ud | 1));
        }
        (entries, iovecs)
    }
}

impl UringBackend {
    /// Whether `n` SQEs fit, after handing what is queued to the kernel.
    fn make_room(&mut self, n: usize) -> bool {
        if self.sq_room() < n {
            self.flush();
        }
        self.sq_room() >= n
    }

    /// Queues the SQEs of the op in slot `index` (room was made) and
    /// hands them to the kernel.
    fn push(&mut self, index: usize, entries: &[squeue::Entry]) {
        for entry in entries {
            // SAFETY: every pointer in `entry` refers to a buffer, iovec
            // array or fd owned by the op in `self.slots[index]`, which
            // stays there, unmoved on the heap, until the entry's CQE is
            // reaped (or, if it never can be, is leaked by `Drop`).
            let pushed = unsafe { self.ring.submission().push(entry) };
            debug_assert!(pushed.is_ok(), "room was made before");
        }
        self.queued.push_back((index, entries.len() as u8));
        self.flush();
    }

    /// Submits the op in slot `index` again: a cancel took it back before
    /// it ran (or interrupted it), and every CQE of its last try is in.
    fn redo(&mut self, index: usize) {
        let slot = self.slots[index].as_mut().expect("redo of a live slot");
        let (entries, iovecs) = Self::entries(&slot.op, index);
        tracing::warn!(
            path = %slot.op.file.path.display(),
            kind = ?slot.op.kind,
            offset = slot.op.offset.get(),
            len = slot.op.write_len(),
            "an io_uring op the kernel held for {:?} was taken back; submitting it again",
            slot.since.elapsed(),
        );
        // The old iovecs are no longer the kernel's: their CQEs are in.
        slot._iovecs = IoVecs(iovecs);
        slot.cqes_left = entries.len() as u8;
        slot.written = None;
        slot.synced = None;
        slot.since = Instant::now();
        slot.cancel_sent = false;
        self.redone += 1;
        if self.make_room(entries.len()) {
            self.push(index, &entries);
        } else {
            let slot = self.slots[index].take().expect("checked above");
            self.in_flight -= 1;
            let why = "an io_uring op taken back from the kernel could not be submitted again: the queue stays full";
            self.ready.push_back(failed(&slot.op, io::ErrorKind::Other, why));
        }
    }

    /// Sends a cancel to every op the kernel has held for `stuck_after`
    /// (again every `stuck_after` while it stays), then arms the watchdog
    /// for the next one. True if a cancel was queued.
    fn check_stuck(&mut self, cx: &mut Context<'_>) -> bool {
        let mut sent = false;
        while self.watchdog.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for index in 0..self.slots.len() {
                if self.queued.iter().any(|&(i, _)| i == index) {
                    continue; // not in the kernel yet
                }
                let Some(slot) = self.slots[index].as_ref().filter(|s| !s.zombie) else { continue };
                let due = slot.since + self.stuck_after;
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    continue;
                }
                let target = cancel_target(slot, index);
                if !self.make_room(1) {
                    next = Some(now + self.stuck_after); // try again later
                    continue;
                }
                let cancel = opcode::AsyncCancel::new(target).build().user_data(CANCEL_BIT | target);
                // SAFETY: a cancel SQE points to no memory; it names its
                // target by `user_data` only.
                let pushed = unsafe { self.ring.submission().push(&cancel) };
                debug_assert!(pushed.is_ok(), "room was made above");
                let slot = self.slots[index].as_mut().expect("checked above");
                slot.cancel_sent = true;
                slot.since = now;
                sent = true;
                self.cancels += 1;
                next = Some(next.map_or(now + self.stuck_after, |n| n.min(now + self.stuck_after)));
            }
            match next {
                Some(at) => self.watchdog.as_mut().reset(at.into()),
                None => break, // nothing in the kernel: left elapsed
            }
        }
        if sent {
            let _ = self.enter(); // a failure here leaves it queued for the next flush
        }
        sent
    }
}

/// The `user_data` a cancel of the op in slot `index` names: its write
/// while that is out, else its sync.
fn cancel_target(slot: &Slot, index: usize) -> u64 {
    let ud = (index as u64) << 1;
    let sync_sqe = slot.op.kind != OpKind::Write && !slot.op.is_dsync_write();
    if slot.op.is_write() && slot.written.is_none() || !sync_sqe {
        ud
    } else {
        ud | 1
    }
}

/// Whether a cancel took the op back (or interrupted it): it did not run,
/// or not to the end, and is to be submitted again.
fn taken_back(slot: &Slot) -> bool {
    let interrupted = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::ECANCELED | libc::EINTR));
    matches!(&slot.written, Some(Err(e)) if interrupted(e)) || matches!(&slot.synced, Some(Err(e)) if interrupted(e))
}

#[cfg(test)]
impl UringBackend {
    /// With `inject.stuck_write` set, swaps `op`'s write SQE for a read of
    /// that empty pipe (same `user_data` and link), which only a cancel ends.
    fn inject_stuck(&mut self, op: &Op, mut entries: Vec<squeue::Entry>) -> Vec<squeue::Entry> {
        if let Some(pipe) = self.inject.stuck_write.filter(|_| op.is_write()) {
            self.inject.stuck_write = None;
            let ud = entries[0].get_user_data();
            let link = entries.len() == 2;
            let flags = if link { squeue::Flags::IO_LINK } else { squeue::Flags::empty() };
            let sink: &'static mut [u8] = Box::leak(Box::new([0u8; 8]));
            entries[0] = opcode::Read::new(types::Fd(pipe), sink.as_mut_ptr(), 8).build().flags(flags).user_data(ud);
        }
        entries
    }
}

impl Backend for UringBackend {
    fn submit(&mut self, op: Op) {
        if let Some((kind, why)) = &self.broken {
            let done = failed(&op, *kind, why);
            self.ready.push_back(done);
            return;
        }
        let Some(index) = self.slots.iter().position(Option::is_none) else {
            // The writer never has more than MAX_OPS in flight; refuse loudly.
            self.ready.push_back(failed(&op, io::ErrorKind::Other, "io_uring op slots exhausted"));
            return;
        };
        let (entries, iovecs) = Self::entries(&op, index);
        if !self.make_room(entries.len()) {
            // Nothing accepted what is queued: fail this op rather than
            // wait for room that may never come.
            self.ready.push_back(failed(&op, io::ErrorKind::Other, "the io_uring submission queue stays full"));
            return;
        }
        #[cfg(test)]
        let entries = self.inject_stuck(&op, entries);
        self.slots[index] = Some(Slot {
            op,
            _iovecs: IoVecs(iovecs),
            cqes_left: entries.len() as u8,
            zombie: false,
            written: None,
            synced: None,
            since: Instant::now(),
            cancel_sent: false,
        });
        self.in_flight += 1;
        self.push(index, &entries);
    }

    fn poll_complete(&mut self, cx: &mut Context<'_>) -> Poll<Done> {
        loop {
            self.flush();
            if let Some(done) = self.ready.pop_front() {
                return Poll::Ready(done);
            }
            if self.in_flight == self.zombies {
                return Poll::Pending; // nothing of the writer's in flight
            }
            self.reap();
            if let Some(done) = self.ready.pop_front() {
                return Poll::Ready(done);
            }
            if let Some((_, timer)) = &mut self.retrying {
                if timer.as_mut().poll(cx).is_ready() {
                    continue; // submit again
                }
            }
            #[cfg(test)]
            let readiness = if self.inject.readiness_error {
                Poll::Ready(Err(io::Error::other("injected readiness failure")))
            } else {
                self.readiness.poll_read_ready(cx)
            };
            #[cfg(not(test))]
            let readiness = self.readiness.poll_read_ready(cx);
            match readiness {
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(), // then drain again
                Poll::Ready(Err(e)) => {
                    // Completions can no longer be learned of: fail what is
                    // in flight (reported next), never wait in silence.
                    self.break_ring(e.kind(), format!("io_uring readiness failed: {e}"));
                }
                Poll::Pending => {
                    if !self.check_stuck(cx) {
                        return Poll::Pending;
                    } // cancels sent: reap what they took back
                }
            }
        }
    }

    fn perform_now(&mut self, op: Op) -> Done {
        // On the caller's thread, not through the ring: a lone blocking
        // caller's round trip through the ring and the driver task is the
        // very hand-off it avoids.
        match &self.broken {
            Some((kind, why)) => failed(&op, *kind, why),
            None => super::perform(op),
        }
    }

    fn in_flight(&self) -> usize {
        // Zombies were reported already; only drop waits for their CQEs.
        self.in_flight - self.zombies
    }

    fn settled(&self) -> bool {
        self.in_flight == 0
    }

    fn substrate(&self) -> crate::Substrate {
        crate::Substrate::IoUring
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        // Reached with ops in flight only after a failure (on a thread of
        // its own) or when the runtime drops the writer mid-flight: the
        // kernel may still use their buffers, so wait. SQEs still queued
        // are submitted by this enter. Ops that have not started are
        // cancelled first: nothing will use their results, and one the
        // kernel holds indefinitely would otherwise hold this thread too.
        let live: Vec<u64> =
            self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| cancel_target(s, i))).collect();
        for target in live {
            let cancel = opcode::AsyncCancel::new(target).build().user_data(CANCEL_BIT | target);
            // SAFETY: a cancel SQE points to no memory.
            if unsafe { self.ring.submission().push(&cancel) }.is_err() {
                break; // no room: the wait below still ends when they do
            }
        }
        while self.in_flight > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot drain io_uring; leaking its buffers");
                    std::mem::forget(std::mem::take(&mut self.slots));
                    return;
                }
            }
            self.reap();
            self.ready.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::storage::OsStorage;
    use crate::substrate::AlignedBuf;
    use crate::substrate::IoFile;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// A ring backend (registered with `rt`) and a segment file to write,
    /// or `None` (said) where the kernel offers no ring.
    fn setup(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Option<(UringBackend, Arc<IoFile>)> {
        if let Err(why) = probe() {
            crate::testing::skip(crate::testing::Capability::IoUring, "the ring backend's unit tests", &why);
            return None;
        }
        let _in = rt.enter();
        let backend = UringBackend::create(8, None).expect("the kernel offers rings: one must be made");
        let seg = crate::segment::create(&OsStorage, dir, 0, 1).expect("segment");
        Some((backend, Arc::new(IoFile::new(seg.base, seg.path, seg.file, 0))))
    }

    fn write_op(file: &Arc<IoFile>) -> Op {
        let mut buf = AlignedBuf::with_capacity(4096, 4096);
        buf.extend(4096).fill(7);
        Op::write(OpKind::Write, file.clone(), crate::FileOffset::new(4096), vec![buf])
    }

    /// The next completion, or a loud failure after 10 s (a hang is the bug).
    async fn next(backend: &mut UringBackend) -> Done {
        tokio::time::timeout(Duration::from_secs(10), std::future::poll_fn(|cx| backend.poll_complete(cx)))
            .await
            .expect("the op was never reported: the backend hangs")
    }

    #[test]
    fn a_cancelled_plain_sync_is_a_failure_and_a_cancelled_linked_one_did_not_run() {
        assert!(sync_result(false, 0).unwrap().is_ok());
        let plain = sync_result(false, -libc::ECANCELED).expect("a plain sync always has a result");
        assert_eq!(plain.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
        assert!(sync_result(true, -libc::ECANCELED).is_none(), "a broken link: the sync did not run");
        assert_eq!(sync_result(true, -libc::EIO).unwrap().unwrap_err().raw_os_error(), Some(libc::EIO));
    }

    #[test]
    fn transient_submit_failures_with_nothing_in_flight_are_retried() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let Some((mut backend, file)) = setup(&rt, dir.path()) else { return };
        rt.block_on(async {
            backend.inject.submit_errors.extend([libc::EAGAIN, libc::EBUSY, libc::EAGAIN]);
            backend.submit(write_op(&file));
            let done = next(&mut backend).await;
            assert_eq!(done.written.unwrap().unwrap(), 4096);
            assert!(backend.settled());
        });
    }

    #[test]
    fn submit_failing_transiently_for_too_long_fails_the_op() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let Some((mut backend, file)) = setup(&rt, dir.path()) else { return };
        rt.block_on(async {
            backend.inject.submit_errors.extend(std::iter::repeat_n(libc::EAGAIN, 100_000));
            backend.submit(write_op(&file));
            let done = next(&mut backend).await;
            let err = done.written.unwrap().unwrap_err();
            assert!(err.to_string().contains("kept failing"), "{err}");
            backend.inject.submit_errors.clear();
        });
        drop(backend); // submits the queued SQE and waits for it
    }

    #[test]
    fn a_hard_submit_failure_fails_this_op_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let Some((mut backend, file)) = setup(&rt, dir.path()) else { return };
        rt.block_on(async {
            backend.inject.submit_errors.push_back(libc::EBADF);
            backend.submit(write_op(&file));
            let err = next(&mut backend).await.written.unwrap().unwrap_err();
            assert!(err.to_string().contains("submit failed"), "{err}");
            assert_eq!(backend.in_flight(), 0, "reported");
            assert!(!backend.settled(), "its buffer is still the kernel's to take");
            backend.submit(Op::sync(file.clone()));
            let done = next(&mut backend).await;
            assert!(done.synced.unwrap().is_err(), "a broken ring fails every later op at once");
        });
        drop(backend); // the queued SQE may still be consumed: waited for
    }

    #[test]
    fn a_full_submission_queue_fails_the_op_instead_of_spinning() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let Some((mut backend, file)) = setup(&rt, dir.path()) else { return };
        rt.block_on(async {
            backend.inject.sq_full = true;
            backend.submit(write_op(&file));
            let err = next(&mut backend).await.written.unwrap().unwrap_err();
            assert!(err.to_string().contains("stays full"), "{err}");
            assert!(backend.settled(), "nothing reached the ring");
            backend.inject.sq_full = false;
            backend.submit(write_op(&file));
            assert!(next(&mut backend).await.written.unwrap().is_ok(), "the ring itself is fine");
        });
    }

    #[test]
    fn a_readiness_failure_fails_what_is_in_flight_instead_of_waiting_in_silence() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let Some((mut backend, file)) = setup(&rt, dir.path()) else { return };
        rt.block_on(async {
            backend.inject.readiness_error = true;
            backend.submit(Op::sync(file.clone()));
            let done = next(&mut backend).await;
            let err = done.synced.unwrap().unwrap_err();
            assert!(err.to_string().contains("readiness"), "{err}");
        });
        drop(backend); // waits for the real fsync's completion
    }

    /// The bytes at 4096..8192 of the segment, read back through the file.
    fn written_back(file: &IoFile) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut back = vec![0u8; 4096];
        file.file.read_exact_at(&mut back, 4096).unwrap();
        back
    }

    #[test]
    fn an_op_the_kernel_holds_is_cancelled_and_submitted_again() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let Some((mut backend, file)) = setup(&rt, dir.path()) else { return };
        let (held, _writer) = std::io::pipe().unwrap();
        backend.stuck_after = Duration::from_millis(50);
        rt.block_on(async {
            for kind in [OpKind::Write, OpKind::WriteSync] {
                backend.inject.stuck_write = Some(held.as_raw_fd());
                let redone = backend.redone;
                let mut op = write_op(&file);
                op.kind = kind;
                backend.submit(op);
                let done = next(&mut backend).await;
                assert_eq!(done.written.unwrap().unwrap(), 4096, "{kind:?}: the write ran, once taken back");
                if kind == OpKind::WriteSync {
                    assert!(done.synced.unwrap().is_ok(), "its linked sync ran after it");
                }
                assert_eq!(backend.redone, redone + 1, "{kind:?}: taken back and submitted again once");
                assert!(backend.settled());
            }
        });
        assert_eq!(written_back(&file), vec![7u8; 4096]);
    }

    #[test]
    fn a_watchdog_firing_at_every_stage_of_an_op_neither_loses_nor_repeats_a_result() {
        // Cancels land on ops queued, running and already done; each op is
        // still reported exactly once, successful.
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let Some((mut backend, file)) = setup(&rt, dir.path()) else { return };
        backend.stuck_after = Duration::from_micros(20);
        rt.block_on(async {
            // Until the watchdog has fired a few dozen times (it ticks by
            // the millisecond), bounded.
            for round in 0..20_000 {
                if backend.cancels >= 30 {
                    break;
                }
                let mut op = write_op(&file);
                op.kind = if round % 2 == 0 { OpKind::WriteSync } else { OpKind::Write };
                backend.submit(op);
                backend.submit(Op::sync(file.clone()));
                let (mut writes, mut syncs) = (0, 0);
                for _ in 0..2 {
                    let done = next(&mut backend).await;
                    if let Some(w) = done.written {
                        assert_eq!(w.unwrap(), 4096, "round {round}");
                        writes += 1;
                    }
                    if let Some(s) = done.synced {
                        s.unwrap_or_else(|e| panic!("round {round}: a sync failed: {e}"));
                        syncs += 1;
                    }
                }
                assert_eq!(writes, 1, "round {round}");
                assert!(syncs >= 1, "round {round}");
                assert!(backend.settled(), "round {round}: nothing left in flight");
            }
        });
        assert!(backend.cancels > 0, "the watchdog never fired: the test proved nothing");
        assert_eq!(written_back(&file), vec![7u8; 4096]);
    }

    #[test]
    fn dropping_the_backend_cancels_an_op_the_kernel_holds_instead_of_waiting_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let Some((mut backend, file)) = setup(&rt, dir.path()) else { return };
        let (held, _writer) = std::io::pipe().unwrap();
        backend.inject.stuck_write = Some(held.as_raw_fd());
        backend.submit(write_op(&file));
        assert!(!backend.settled());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(backend);
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("the drop waited on an op only a cancel ends");
    }
}
