//! The native substrate: one io_uring ring per journal, driven from the
//! journal's driver task.
//!
//! The driver task submits SQEs itself (no thread hop) and learns of
//! completions through `AsyncFd` readiness on the ring fd: clear readiness,
//! then drain the CQ, so no completion posted between the two is missed.
//! Nothing here blocks a tokio worker: `submit()` never waits for
//! completions. The ring is built without `SINGLE_ISSUER`/`DEFER_TASKRUN`
//! because the driver task may migrate between worker threads.
//!
//! Memory: each op (its buffer and its file, through an `Arc`) lives in a
//! slot until every CQE it produced has been reaped; only then is it handed
//! back. Dropping the backend waits for ops still in flight.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use io_uring::{opcode, squeue, types, IoUring, Probe};
use tokio::io::unix::AsyncFd;

use super::{Backend, Done, Op, OpKind};

/// The most one write SQE carries; the rest follows as a short-write
/// continuation. Keeps lengths inside the `i32` result of a CQE.
const MAX_WRITE_LEN: usize = 1 << 30;
/// Ops the driver keeps in flight: one write and one sync (two SQEs when
/// linked). The CQ is sized well above that, so it never overflows.
const MAX_OPS: usize = 4;

struct RingFd(RawFd);

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
    /// Its completion was already reported (submission failed); reaping
    /// its CQEs only frees the slot.
    zombie: bool,
    written: Option<io::Result<usize>>,
    synced: Option<io::Result<()>>,
}

pub(crate) struct UringBackend {
    // Field order matters: the readiness registration goes before the ring.
    readiness: AsyncFd<RingFd>,
    ring: IoUring,
    slots: Vec<Option<Slot>>,
    /// SQEs pushed but not yet accepted by `io_uring_enter`.
    unsubmitted: bool,
    /// Slots whose SQEs sit in the SQ not yet accepted by the kernel.
    queued_slots: Vec<usize>,
    /// Buffers of ops failed at submission, kept until drop.
    parked: Vec<Op>,
    zombies: usize,
    ready: VecDeque<Done>,
    in_flight: usize,
}

/// Registers `ring`'s fd with the runtime's reactor, to learn of completions.
/// Both owners (`UringBackend`, `RangeRing`) declare the registration before
/// the ring, so it is dropped first.
fn watch(ring: &IoUring) -> Result<AsyncFd<RingFd>, String> {
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
fn probe() -> Result<(), String> {
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
        let entries = entries.max(MAX_OPS as u32 * 2);
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
            unsubmitted: false,
            queued_slots: Vec::new(),
            parked: Vec::new(),
            zombies: 0,
            ready: VecDeque::new(),
            in_flight: 0,
        })
    }

    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every pointer in `entry` refers to a buffer and fd
            // owned by an op in `self.slots`, which stays there, unmoved on
            // the heap, until the entry's CQE is reaped.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.unsubmitted = true;
                return;
            }
            // SQ full: hand what is queued to the kernel, then retry. With
            // MAX_OPS bounded well below the SQ size this does not recur.
            self.flush();
        }
    }

    /// Hands queued SQEs to the kernel without waiting. Transient errors
    /// leave them queued for the next call.
    fn flush(&mut self) {
        if !self.unsubmitted {
            return;
        }
        match self.ring.submit() {
            Ok(_) => {
                self.unsubmitted = !self.ring.submission().is_empty();
                if !self.unsubmitted {
                    self.queued_slots.clear();
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {}
            Err(e) => {
                // A hard failure of io_uring_enter: complete every queued op
                // with the error rather than leave its waiters hanging.
                tracing::error!(error = %e, "io_uring submit failed");
                self.fail_unsubmitted(e);
            }
        }
    }

    /// `io_uring_enter` failed hard: the queued SQEs were not consumed. Their
    /// ops complete with the error (the driver poisons the journal), while
    /// their buffers stay parked until the backend is dropped, in case a
    /// later enter consumes the SQEs after all.
    fn fail_unsubmitted(&mut self, err: io::Error) {
        self.unsubmitted = false;
        for index in std::mem::take(&mut self.queued_slots) {
            let Some(slot) = self.slots[index].as_mut() else {
                continue;
            };
            let parked = Op { bufs: std::mem::take(&mut slot.op.bufs), ..Op::sync(slot.op.file.clone()) };
            let returned = Op { kind: slot.op.kind, lane: slot.op.lane, ..Op::sync(slot.op.file.clone()) };
            self.parked.push(parked);
            slot.zombie = true;
            let failed = || io::Error::new(err.kind(), format!("io_uring submit failed: {err}"));
            let written = (returned.kind != OpKind::Sync).then(|| Err(failed()));
            let synced = (returned.kind != OpKind::Write).then(|| Err(failed()));
            self.zombies += 1;
            self.ready.push_back(Done { op: returned, written, synced });
        }
    }

    /// Records one CQE result for `user_data`; completes the op when its
    /// last CQE is in.
    fn settle(&mut self, user_data: u64, res: i32) {
        let (index, is_sync) = ((user_data >> 1) as usize, user_data & 1 == 1);
        let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            tracing::error!(user_data, "completion for an unknown io_uring op");
            return;
        };
        if is_sync {
            slot.synced = match res {
                r if r >= 0 => Some(Ok(())),
                r if -r == libc::ECANCELED => None, // link broken by the write
                r => Some(Err(io::Error::from_raw_os_error(-r))),
            };
        } else {
            slot.written = Some(if res >= 0 { Ok(res as usize) } else { Err(io::Error::from_raw_os_error(-res)) });
            if slot.op.is_dsync_write() && res >= 0 && res as usize == slot.op.write_len() {
                // RWF_DSYNC: the complete write is its own sync.
                slot.synced = Some(Ok(()));
            }
        }
        slot.cqes_left -= 1;
        if slot.cqes_left == 0 {
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
}

impl Backend for UringBackend {
    fn submit(&mut self, op: Op) {
        let Some(index) = self.slots.iter().position(Option::is_none) else {
            // The driver never has more than MAX_OPS in flight; refuse loudly.
            let err = || io::Error::other("io_uring op slots exhausted");
            let written = op.is_write().then(|| Err(err()));
            let synced = (op.kind != OpKind::Write).then(|| Err(err()));
            self.ready.push_back(Done { op, written, synced });
            return;
        };
        let fd = types::Fd(op.file.file.as_raw_fd());
        let ud = (index as u64) << 1;
        let mut entries = Vec::with_capacity(2);
        let dsync = op.is_dsync_write();
        let mut iovecs = Vec::new();
        if op.is_write() {
            let rw_flags = if dsync { libc::RWF_DSYNC } else { 0 };
            // At most MAX_WRITE_LEN per SQE: the rest comes back as a short
            // write, which the driver continues.
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
                opcode::Write::new(fd, bytes.as_ptr(), bytes.len() as u32).offset(op.offset).rw_flags(rw_flags).build()
            } else {
                iovecs = super::platform::iovecs(&slices);
                // The Vec's heap array does not move when the Vec moves
                // into the slot below.
                opcode::Writev::new(fd, iovecs.as_ptr(), iovecs.len() as u32)
                    .offset(op.offset)
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
        let iovecs = IoVecs(iovecs);
        self.slots[index] = Some(Slot {
            op,
            _iovecs: iovecs,
            cqes_left: entries.len() as u8,
            zombie: false,
            written: None,
            synced: None,
        });
        self.in_flight += 1;
        self.queued_slots.push(index);
        for entry in &entries {
            self.push(entry);
        }
        self.flush();
    }

    fn poll_complete(&mut self, cx: &mut Context<'_>) -> Poll<Done> {
        loop {
            self.flush();
            if let Some(done) = self.ready.pop_front() {
                return Poll::Ready(done);
            }
            if self.in_flight == 0 {
                return Poll::Pending;
            }
            self.reap();
            if let Some(done) = self.ready.pop_front() {
                return Poll::Ready(done);
            }
            match self.readiness.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(), // then drain again
                Poll::Ready(Err(e)) => {
                    tracing::error!(error = %e, "io_uring readiness failed");
                    return Poll::Pending;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn in_flight(&self) -> usize {
        // Zombies were reported already; only drop waits for their CQEs.
        self.in_flight - self.zombies
    }

    fn substrate(&self) -> crate::Substrate {
        crate::Substrate::IoUring
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        // Reached with ops in flight only when the runtime drops the driver
        // mid-flight: the kernel may still use their buffers, so wait.
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

/// A small ring for `sync_file_range` (`IORING_OP_SYNC_FILE_RANGE`), so a
/// bulk writer's writeback waits run in the kernel's workers while the task
/// awaits the completion, not on a thread of tokio's blocking pool.
///
/// No user memory is referenced by its SQEs but a file descriptor, which
/// the kernel takes its own reference to at submission (and the test seam's
/// timer, which the kernel copies at submission). Both are also kept here
/// until the completion is reaped, so a wait abandoned by a timeout leaves
/// nothing behind but a later-reaped CQE — whose result is not dropped: the
/// op is filed as abandoned, and its owner inspects it later
/// ([`RangeRing::abandoned_settled`], [`RangeRing::abandoned_failure`]).
pub(crate) struct RangeRing {
    // Field order matters: the readiness registration goes before the ring.
    readiness: AsyncFd<RingFd>,
    ring: IoUring,
    next_id: u64,
    /// Ops submitted and not reaped.
    pending: Vec<InFlight>,
    /// Results reaped for ids still awaited (or abandoned).
    results: std::collections::HashMap<u64, i32>,
    /// Ops whose awaiting future was dropped before their result came: a
    /// writeback wait abandoned at its deadline. Their results stay in
    /// `results` until `abandoned_failure` takes them. Bounded by the
    /// owner: a bulk writer abandons at most one op, then submits no more.
    abandoned: Vec<u64>,
}

/// Files an awaited op as abandoned if the future awaiting it is dropped
/// before taking its result.
struct Awaiting<'a> {
    ring: &'a mut RangeRing,
    id: u64,
    armed: bool,
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.ring.abandoned.push(self.id);
        }
    }
}

/// Test seam: a fault injected into one range op; the default injects
/// nothing.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RangeFault {
    /// Hold the op in the kernel this long before it runs (a timer SQE
    /// hard-linked ahead of it): a slow device, with the op really in
    /// flight, so a caller that gives up on it abandons a live op.
    pub(crate) delay: Option<std::time::Duration>,
    /// Report the op as failed with `EIO`, whatever the kernel returned.
    pub(crate) fail: bool,
}

/// One SQE in the kernel and what it needs alive until its CQE is reaped.
struct InFlight {
    id: u64,
    held: Held,
    /// Test seam: report it as failed with `EIO`.
    fail: bool,
}

/// Kept only to be alive until the CQE (hence never read).
enum Held {
    /// A range op's file: its fd stays open, so cannot be reused under it.
    File { _file: std::sync::Arc<std::fs::File> },
    /// A seam timer's timespec, which its SQE points to. Its CQE (`-ETIME`)
    /// is nobody's result.
    Timer { _timespec: Box<types::Timespec> },
}

/// At most this many SQEs in flight (a chunk's start and the previous
/// chunk's wait, a seam timer, plus ops abandoned by a deadline); the CQ
/// holds twice the ring's entries.
const RANGE_RING_ENTRIES: u32 = 8;

impl RangeRing {
    /// A ring, or why the kernel cannot give one.
    pub(crate) fn new() -> Result<RangeRing, String> {
        probe()?;
        let ring = IoUring::new(RANGE_RING_ENTRIES).map_err(|e| format!("io_uring_setup failed: {e}"))?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(|e| format!("io_uring probe failed: {e}"))?;
        if !probe.is_supported(opcode::SyncFileRange::CODE) {
            return Err("the kernel's io_uring lacks SYNC_FILE_RANGE".into());
        }
        let readiness = watch(&ring)?;
        Ok(RangeRing {
            readiness,
            ring,
            next_id: 0,
            pending: Vec::new(),
            results: Default::default(),
            abandoned: Vec::new(),
        })
    }

    /// `sync_file_range(file, offset, len, flags)`, awaited; `fault` is a
    /// test seam (`RangeFault::default()` in production).
    pub(crate) async fn sync_range(
        &mut self,
        file: &std::sync::Arc<std::fs::File>,
        offset: u64,
        len: u64,
        flags: u32,
        fault: RangeFault,
    ) -> io::Result<()> {
        let id = self.push(file, offset, len, flags, fault)?;
        // From here the op is the kernel's: dropping this future (a caller's
        // deadline) files it as abandoned rather than losing its result.
        let mut op = Awaiting { ring: self, id, armed: true };
        let result = op.ring.await_result(id).await;
        op.armed = false;
        result
    }

    /// Submits what is queued and awaits `id`'s result.
    async fn await_result(&mut self, id: u64) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => break,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(e),
            }
        }
        loop {
            self.reap();
            if let Some(res) = self.results.remove(&id) {
                return if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(()) };
            }
            let mut guard = self.readiness.readable().await?;
            guard.clear_ready(); // then drain again: nothing posted meanwhile is missed
        }
    }

    /// Resolves once every abandoned op has completed (its result reaped,
    /// not yet taken). Never resolves for an op stuck in the kernel: bound
    /// it with a timeout.
    pub(crate) async fn abandoned_settled(&mut self) -> io::Result<()> {
        // An op abandoned while its submission was being retried may still
        // sit in the SQ; nothing else would submit it now. (A transient
        // refusal here leaves it to the caller's timeout.)
        match self.ring.submit() {
            Err(e) if !matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => return Err(e),
            _ => {}
        }
        loop {
            self.reap();
            if self.abandoned_in_flight() == 0 {
                return Ok(());
            }
            let mut guard = self.readiness.readable().await?;
            guard.clear_ready(); // then drain again: nothing posted meanwhile is missed
        }
    }

    /// Takes the results of abandoned ops that have completed: the first
    /// failure among them, if any. Ops still in flight stay abandoned.
    pub(crate) fn abandoned_failure(&mut self) -> Option<io::Error> {
        self.reap();
        let mut failure = None;
        let results = &mut self.results;
        self.abandoned.retain(|id| match results.remove(id) {
            None => true,
            Some(res) => {
                if res < 0 && failure.is_none() {
                    failure = Some(io::Error::from_raw_os_error(-res));
                }
                false
            }
        });
        failure
    }

    /// Abandoned ops whose completion has not been reaped yet.
    pub(crate) fn abandoned_in_flight(&self) -> usize {
        self.abandoned.iter().filter(|id| !self.results.contains_key(id)).count()
    }

    /// Queues the op (behind the seam's timer, if any); returns its id.
    fn push(
        &mut self,
        file: &std::sync::Arc<std::fs::File>,
        offset: u64,
        len: u64,
        flags: u32,
        fault: RangeFault,
    ) -> io::Result<u64> {
        let sqes = if fault.delay.is_some() { 2 } else { 1 };
        if self.pending.len() + sqes > RANGE_RING_ENTRIES as usize {
            return Err(io::Error::other("too many writeback waits still in the kernel"));
        }
        let len = u32::try_from(len).map_err(|_| io::Error::other("a writeback range over 4 GiB"))?;
        let (timer_id, id) = (self.next_id, self.next_id + 1);
        self.next_id += 2;
        let op = opcode::SyncFileRange::new(types::Fd(file.as_raw_fd()), len)
            .offset(offset)
            .flags(flags)
            .build()
            .user_data(id);
        let timer = fault.delay.map(|delay| Box::new(types::Timespec::from(delay)));
        let pushed = match &timer {
            // SAFETY: the entry references no memory of ours, only the fd,
            // which stays open (`pending` holds the file) until its CQE is
            // reaped.
            None => unsafe { self.ring.submission().push(&op) },
            Some(ts) => {
                let head = opcode::Timeout::new(&**ts).build().flags(squeue::Flags::IO_HARDLINK).user_data(timer_id);
                // SAFETY: as above for `op`; the timer's entry points to the
                // boxed timespec, which `pending` keeps (unmoved on the heap)
                // until its CQE is reaped. A hard link runs `op` after the
                // timer expires although the timer "fails" with -ETIME.
                unsafe { self.ring.submission().push_multiple(&[head, op]) }
            }
        };
        if pushed.is_err() {
            return Err(io::Error::other("the writeback ring's submission queue is full"));
        }
        if let Some(ts) = timer {
            self.pending.push(InFlight { id: timer_id, held: Held::Timer { _timespec: ts }, fail: false });
        }
        self.pending.push(InFlight { id, held: Held::File { _file: file.clone() }, fail: fault.fail });
        Ok(id)
    }

    fn reap(&mut self) {
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in cq {
            let id = cqe.user_data();
            // Every CQE answers an SQE in `pending`; nothing else uses the ring.
            let Some(at) = self.pending.iter().position(|p| p.id == id) else { continue };
            let done = self.pending.swap_remove(at);
            if let Held::File { .. } = done.held {
                self.results.insert(id, if done.fail { -libc::EIO } else { cqe.result() });
            }
        }
    }
}

impl std::fmt::Debug for RangeRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RangeRing({} pending, {} abandoned)", self.pending.len(), self.abandoned.len())
    }
}
