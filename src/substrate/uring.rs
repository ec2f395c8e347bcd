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
pub(super) fn probe() -> Result<(), String> {
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
