//! The bulk writer's writeback ring: `sync_file_range` as
//! `IORING_OP_SYNC_FILE_RANGE` on a small ring of its own (see
//! [`RangeRing`]). It shares the journal ring's probe and reactor
//! registration (`uring`), and never holds a caller's memory in flight.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types, IoUring, Probe};
use tokio::io::unix::AsyncFd;

use super::uring::{probe, watch, RingFd};

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
