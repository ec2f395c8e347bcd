//! Substrates: the engines that move bytes, behind one small seam.
//!
//! The journal's writer task (`journal::writer`) decides *what* to write and sync; a
//! [`Backend`] only performs ops and reports their completions. Each op owns
//! its buffer and its file until the completion is handed back, so memory
//! and fds referenced by the kernel stay alive whatever happens to the future
//! that asked. Tests wrap a backend to inject faults at the completion level
//! (`testing::FaultPlan`), identically for both substrates.

mod blocking;
mod buf;
mod file;
#[cfg(tidelog_linux)]
pub(crate) mod range_ring;
pub(crate) mod threads;
#[cfg(tidelog_linux)]
pub(crate) mod uring;

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::FileOffset;

pub(crate) use blocking::BlockingBackend;
pub(crate) use buf::AlignedBuf;
pub(crate) use file::IoFile;
pub(crate) use threads::IoThreads;

/// Which substrate to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SubstrateChoice {
    /// The substrate that measured faster for this filesystem and these
    /// I/O options: native io_uring where its writes need no fsync request
    /// or go inline (`RWF_DSYNC` writes and direct overwrites of
    /// zero-filled segments, on ext4 and XFS) and the kernel offers a ring;
    /// `Blocking` elsewhere: there the ring's requests are punted to io-wq
    /// workers (ext4, tmpfs) or its single sync lane loses to the blocking
    /// substrate's two (XFS), at 64 durable appenders. Setting
    /// [`sqpoll`](crate::JournalOptions::sqpoll) asks for the ring. The rule and the figures
    /// behind it are in `docs/benchmarks.md` ("Auto's rule");
    /// [`Stats::substrate_reason`](crate::Stats::substrate_reason) says
    /// which applied.
    #[default]
    Auto,
    /// Native io_uring or fail with [`Error::Unsupported`](crate::Error::Unsupported).
    IoUring,
    /// Pwrite and fdatasync on the journal's own I/O threads.
    Blocking,
}

/// The substrate a journal actually runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Substrate {
    /// One io_uring ring, driven by the journal's writer task.
    IoUring,
    /// Pwrite and fdatasync on the journal's own I/O threads.
    Blocking,
}

/// What an op does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OpKind {
    /// Write `buf[start..end]` at `offset`.
    Write,
    /// `fdatasync` the file.
    Sync,
    /// Write, then (only if the write was complete) sync — one round trip
    /// (linked SQEs on the ring, one blocking task otherwise).
    WriteSync,
}

/// One unit of work handed to a backend.
#[derive(Debug)]
pub(crate) struct Op {
    pub(crate) kind: OpKind,
    pub(crate) file: Arc<IoFile>,
    /// Where in the file the write's first byte (`buf_from`) goes.
    pub(crate) offset: FileOffset,
    /// What a write writes: bytes `[buf_from, buf_to)` of these buffers
    /// laid end to end (one `pwritev`/`Writev` when there are several).
    /// Empty for a sync.
    pub(crate) bufs: Vec<AlignedBuf>,
    /// Positions in `bufs` laid end to end (not in the file, not LSNs).
    pub(crate) buf_from: usize,
    pub(crate) buf_to: usize,
    /// `WriteSync` as one write with `RWF_DSYNC` instead of a write and an
    /// `fdatasync`.
    pub(crate) dsync: bool,
    /// Which of the file's sync lanes (`IoFile::sync_fd`) a sync uses.
    pub(crate) lane: usize,
    /// The writer expects its next op soon, under a light load: the
    /// blocking substrate's thread watches for it before sleeping
    /// (`threads::SPIN`). The ring ignores it.
    pub(crate) linger: bool,
    /// The submitter's name for the op (the writer: its write's start
    /// LSN), handed back with the completion, also a failed one.
    pub(crate) tag: u64,
}

impl Op {
    pub(crate) fn sync(file: Arc<IoFile>) -> Op {
        let offset = FileOffset::new(0);
        Op {
            kind: OpKind::Sync,
            file,
            offset,
            bufs: Vec::new(),
            buf_from: 0,
            buf_to: 0,
            dsync: false,
            lane: 0,
            linger: false,
            tag: 0,
        }
    }

    /// Writes all of `bufs`, contiguous from `offset`.
    pub(crate) fn write(kind: OpKind, file: Arc<IoFile>, offset: FileOffset, bufs: Vec<AlignedBuf>) -> Op {
        let buf_to = bufs.iter().map(AlignedBuf::len).sum();
        Op { kind, file, offset, bufs, buf_from: 0, buf_to, dsync: false, lane: 0, linger: false, tag: 0 }
    }

    /// The write went `n` bytes: what is left starts `n` further on.
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.write_len());
        self.buf_from += n;
        self.offset += n as u64;
    }

    pub(crate) fn is_write(&self) -> bool {
        !self.bufs.is_empty()
    }

    /// A `WriteSync` carried by one `RWF_DSYNC` write.
    pub(crate) fn is_dsync_write(&self) -> bool {
        self.dsync && self.kind == OpKind::WriteSync
    }

    pub(crate) fn write_len(&self) -> usize {
        self.buf_to - self.buf_from
    }

    /// The bytes still to write, as slices of the buffers, in order.
    pub(crate) fn slices(&self) -> impl Iterator<Item = &[u8]> {
        let (start, end) = (self.buf_from, self.buf_to);
        let mut at = 0;
        self.bufs.iter().filter_map(move |buf| {
            let (from, to) = (at, at + buf.len());
            at = to;
            let (lo, hi) = (start.max(from), end.min(to));
            (lo < hi).then(|| &buf.as_slice()[lo - from..hi - from])
        })
    }
}

/// An op's outcome, with the op (and so its buffer) handed back.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) op: Op,
    /// Bytes written (`Write`, `WriteSync`).
    pub(crate) written: Option<io::Result<usize>>,
    /// The sync's result (`Sync`; `WriteSync` when the write was complete).
    pub(crate) synced: Option<io::Result<()>>,
}

/// The seam between the writer and the OS.
pub(crate) trait Backend: Send + 'static {
    /// Starts `op`. Failures come back as completions, never here.
    fn submit(&mut self, op: Op);
    /// The next completion; `Pending` registers the waker.
    fn poll_complete(&mut self, cx: &mut Context<'_>) -> Poll<Done>;
    /// Performs `op` on the calling thread and returns its outcome: a
    /// blocking caller leading its own round (`journal/writer/lead.rs`),
    /// with nothing else in flight. The ring is not used for it.
    fn perform_now(&mut self, op: Op) -> Done;
    /// Ops submitted and not yet reported.
    fn in_flight(&self) -> usize;
    /// Nothing of ours is in the kernel's hands: no op in flight, nor one
    /// already reported failed whose buffers the kernel may still use.
    /// Dropping a backend that is not settled blocks until it is.
    fn settled(&self) -> bool {
        self.in_flight() == 0
    }
    /// Which substrate this is.
    fn substrate(&self) -> crate::Substrate;
}

/// Performs an op synchronously (the blocking substrate's worker body, and
/// the ring's fallback for ops it cannot carry).
pub(crate) fn perform(op: Op) -> Done {
    let written = op.is_write().then(|| {
        let slices: Vec<&[u8]> = op.slices().collect();
        crate::storage::os::pwritev(&op.file.file, &slices, op.offset.get(), op.is_dsync_write())
    });
    let complete = match &written {
        None => true,
        Some(Ok(n)) => *n == op.write_len(),
        Some(Err(_)) => false,
    };
    let synced = match (op.kind, complete) {
        (OpKind::Write, _) | (_, false) => None,
        // The kernel made exactly the bytes written durable.
        _ if op.is_dsync_write() => Some(Ok(())),
        _ => Some(crate::storage::os::sync_data(op.file.sync_fd(op.lane))),
    };
    Done { op, written, synced }
}
