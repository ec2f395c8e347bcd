//! Fault injection, for both substrates: a journal opened with
//! `Seams::faults` runs on a [`FaultBackend`] and a [`FaultStorage`].
//!
//! [`FaultBackend`] wraps a real backend. Ops still reach the OS (so a failed
//! write may well have reached the page cache, as in life); what the writer
//! is *told* is rewritten according to a [`FaultPlan`]: errors on the k-th
//! write or sync, short writes, `EINTR`, slow syncs, completions reported
//! out of order. [`FaultStorage`] wraps the file seam: it fails the n-th
//! activation of a spare segment (a rollover) before it happens, and holds
//! the file syncs of segment work (a rollover's sync of the sealed segment,
//! the seal, the spare) to make them slow.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

use crate::storage::Storage;
use crate::substrate::{Backend, Done, Op, OpKind};

/// What to inject. All counters are 1-based; 0 means never. Shared with the
/// test through an `Arc`, so it can be changed while the journal runs.
#[derive(Debug)]
pub struct FaultPlan {
    /// Report the n-th completed write as failed with `errno`.
    pub fail_write_nth: AtomicU64,
    /// Report the n-th completed sync as failed with `errno`.
    pub fail_sync_nth: AtomicU64,
    /// The errno reported (default `EIO`).
    pub errno: AtomicI32,
    /// Shorten this many upcoming writes to half their length.
    pub short_writes: AtomicU64,
    /// Fail this many upcoming writes with `EINTR` without performing them.
    pub eintr_writes: AtomicU64,
    /// Fail the n-th activation of a spare segment (a rollover: the rename
    /// that names it) with `errno`, before it happens.
    pub fail_segment_create_nth: AtomicU64,
    /// Spare activations (rollovers) attempted so far.
    pub segments_created: AtomicU64,
    /// Hold every sync completion this long (milliseconds).
    pub sync_delay_ms: AtomicU64,
    /// Hold every write completion this long (milliseconds).
    pub write_delay_ms: AtomicU64,
    /// Hold every file sync of the file seam this long (milliseconds): a
    /// rollover's sync of the sealed segment, its seal's sync of the new
    /// one, the spare's, recovery's. It makes a rollover's seal slow.
    pub storage_sync_delay_ms: AtomicU64,
    /// Report the n-th completed plain sync as one that never ran (the
    /// kernel cancelled it): no result at all.
    pub cancel_sync_nth: AtomicU64,
    /// Plain syncs completed so far.
    pub plain_syncs_seen: AtomicU64,
    /// Report completions out of order: while another op is in flight, a
    /// completion is held back and reported after the next one.
    pub reorder: std::sync::atomic::AtomicBool,
    /// Completions reported after one that completed later.
    pub reordered: AtomicU64,
    /// The most ops ever in flight at once.
    pub max_in_flight: AtomicU64,
    /// Syncs (plain or linked) submitted and not yet reported.
    pub syncs_in_flight: AtomicU64,
    /// The most syncs ever in flight at once.
    pub max_syncs_in_flight: AtomicU64,
    /// Writes completed so far (counted after injection decisions).
    pub writes_seen: AtomicU64,
    /// Syncs completed so far.
    pub syncs_seen: AtomicU64,
    /// Writes submitted as one `RWF_DSYNC` write standing for write + sync.
    pub dsync_writes_seen: AtomicU64,
    /// Every completed write: (segment base, file offset, bytes written).
    pub write_log: std::sync::Mutex<Vec<(u64, u64, usize)>>,
    /// Ops a blocking caller performed on its own thread, leading its
    /// round while the writer was idle (the rest went through the writer).
    pub performed_by_callers: AtomicU64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            fail_write_nth: AtomicU64::new(0),
            fail_sync_nth: AtomicU64::new(0),
            errno: AtomicI32::new(libc::EIO),
            short_writes: AtomicU64::new(0),
            eintr_writes: AtomicU64::new(0),
            fail_segment_create_nth: AtomicU64::new(0),
            segments_created: AtomicU64::new(0),
            sync_delay_ms: AtomicU64::new(0),
            write_delay_ms: AtomicU64::new(0),
            storage_sync_delay_ms: AtomicU64::new(0),
            cancel_sync_nth: AtomicU64::new(0),
            plain_syncs_seen: AtomicU64::new(0),
            reorder: std::sync::atomic::AtomicBool::new(false),
            reordered: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            syncs_in_flight: AtomicU64::new(0),
            max_syncs_in_flight: AtomicU64::new(0),
            writes_seen: AtomicU64::new(0),
            syncs_seen: AtomicU64::new(0),
            dsync_writes_seen: AtomicU64::new(0),
            write_log: std::sync::Mutex::new(Vec::new()),
            performed_by_callers: AtomicU64::new(0),
        }
    }
}

/// The file seam with faults: see the module docs.
#[derive(Debug)]
pub(crate) struct FaultStorage {
    pub(crate) inner: Arc<dyn Storage>,
    pub(crate) plan: Arc<FaultPlan>,
}

impl Storage for FaultStorage {
    fn create(&self, path: &std::path::Path) -> io::Result<std::fs::File> {
        self.inner.create(path)
    }

    fn open(&self, path: &std::path::Path, write: bool) -> io::Result<std::fs::File> {
        self.inner.open(path, write)
    }

    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
        if crate::segment::is_spare(from) {
            let n = self.plan.segments_created.fetch_add(1, SeqCst) + 1;
            if n == self.plan.fail_segment_create_nth.load(SeqCst) {
                return Err(io::Error::from_raw_os_error(self.plan.errno.load(SeqCst)));
            }
        }
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &std::path::Path) -> io::Result<()> {
        self.inner.remove(path)
    }

    fn set_len(&self, file: &std::fs::File, len: u64) -> io::Result<()> {
        self.inner.set_len(file, len)
    }

    fn allocate(&self, file: &std::fs::File, len: u64) -> io::Result<()> {
        self.inner.allocate(file, len)
    }

    fn write_all_at(&self, file: &std::fs::File, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(file, buf, offset)
    }

    fn sync_data(&self, file: &std::fs::File) -> io::Result<()> {
        let delay = self.plan.storage_sync_delay_ms.load(SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay)); // on an I/O thread
        }
        self.inner.sync_data(file)
    }

    fn sync_dir(&self, dir: &std::path::Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn list(&self, dir: &std::path::Path) -> io::Result<Vec<std::ffi::OsString>> {
        self.inner.list(dir)
    }
}

fn take_one(counter: &AtomicU64) -> bool {
    counter.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok()
}

type Delayed = Pin<Box<dyn Future<Output = Done> + Send>>;

pub(crate) struct FaultBackend {
    inner: Box<dyn Backend>,
    plan: Arc<FaultPlan>,
    /// Short writes are cut at multiples of this (0: of 8 bytes).
    block: usize,
    /// (segment base, offset, original end, original kind) of writes we shortened.
    shortened: Vec<(u64, u64, usize, OpKind)>,
    ready: VecDeque<Done>,
    delayed: FuturesUnordered<Delayed>,
    /// A completion held back to be overtaken (`FaultPlan::reorder`).
    held: Option<Done>,
}

impl FaultBackend {
    /// `direct`: writes go to `O_DIRECT` files, so short writes are cut at
    /// 4096-byte boundaries (a multiple of any block size tidelog accepts).
    pub(crate) fn new(inner: Box<dyn Backend>, plan: Arc<FaultPlan>, direct: bool) -> FaultBackend {
        let block = if direct { 4096 } else { 0 };
        FaultBackend {
            inner,
            plan,
            block,
            shortened: Vec::new(),
            ready: VecDeque::new(),
            delayed: FuturesUnordered::new(),
            held: None,
        }
    }

    fn errno(&self) -> io::Error {
        io::Error::from_raw_os_error(self.plan.errno.load(SeqCst))
    }

    fn rewrite(&mut self, mut done: Done) -> Option<Done> {
        if let Some(i) = self.shortened.iter().position(|s| (s.0, s.1) == (done.op.file.key, done.op.offset.get())) {
            let (_, _, end, kind) = self.shortened.swap_remove(i);
            done.op.buf_to = end;
            done.op.kind = kind;
        }
        if let Some(Ok(bytes)) = &done.written {
            let mut log = self.plan.write_log.lock().unwrap_or_else(|p| p.into_inner());
            log.push((done.op.file.key, done.op.offset.get(), *bytes));
        }
        if done.written.is_some() {
            let n = self.plan.writes_seen.fetch_add(1, SeqCst) + 1;
            if n == self.plan.fail_write_nth.load(SeqCst) {
                done.written = Some(Err(self.errno()));
                done.synced = None;
            }
        }
        if done.op.kind == OpKind::Sync {
            let n = self.plan.plain_syncs_seen.fetch_add(1, SeqCst) + 1;
            if n == self.plan.cancel_sync_nth.load(SeqCst) {
                done.synced = None;
            }
        }
        let mut delay = 0;
        if done.synced.is_some() {
            let n = self.plan.syncs_seen.fetch_add(1, SeqCst) + 1;
            if n == self.plan.fail_sync_nth.load(SeqCst) {
                done.synced = Some(Err(self.errno()));
            }
            delay = self.plan.sync_delay_ms.load(SeqCst);
        }
        if done.written.is_some() {
            delay = delay.max(self.plan.write_delay_ms.load(SeqCst));
        }
        if delay > 0 {
            // A thread of its own holds the completion back (not a tokio
            // timer): a backend dropped off the runtime waits for it, as it
            // would for a wedged syscall.
            let (tx, rx) = futures::channel::oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                let _ = tx.send(done);
            });
            self.delayed.push(Box::pin(async move { rx.await.expect("the delaying thread sends") }));
            return None;
        }
        Some(done)
    }
}

impl FaultBackend {
    /// What `submit` does before the op reaches the inner backend: counts
    /// it, and fails (`EINTR`) or shortens it as planned. `Err`: the op
    /// completed here.
    fn prepare(&mut self, mut op: Op) -> Result<Op, Done> {
        // Counted by the kind asked for, as the completion reports it.
        if op.kind != OpKind::Write {
            let syncs = self.plan.syncs_in_flight.fetch_add(1, SeqCst) + 1;
            self.plan.max_syncs_in_flight.fetch_max(syncs, SeqCst);
        }
        if op.is_dsync_write() {
            self.plan.dsync_writes_seen.fetch_add(1, SeqCst);
        }
        if op.is_write() && take_one(&self.plan.eintr_writes) {
            let synced = None;
            return Err(Done { op, written: Some(Err(io::Error::from_raw_os_error(libc::EINTR))), synced });
        }
        // Direct I/O writes are cut at a block boundary, as a kernel would.
        let cut = match self.block {
            0 => op.write_len() / 2 / 8 * 8,
            block => op.write_len() / 2 / block * block,
        };
        if op.is_write() && cut > 0 && take_one(&self.plan.short_writes) {
            self.shortened.push((op.file.key, op.offset.get(), op.buf_to, op.kind));
            op.buf_to = op.buf_from + cut;
            if op.kind == OpKind::WriteSync {
                op.kind = OpKind::Write; // as the kernel cancels a link after a short write
            }
        }
        Ok(op)
    }

    fn reported(&self, done: &Done) {
        if done.op.kind != OpKind::Write {
            self.plan.syncs_in_flight.fetch_sub(1, SeqCst);
        }
    }
}

impl Backend for FaultBackend {
    fn submit(&mut self, op: Op) {
        match self.prepare(op) {
            Ok(op) => {
                self.inner.submit(op);
                self.plan.max_in_flight.fetch_max(self.inner.in_flight() as u64, SeqCst);
            }
            Err(done) => self.ready.push_back(done),
        }
    }

    fn perform_now(&mut self, op: Op) -> Done {
        self.plan.performed_by_callers.fetch_add(1, SeqCst);
        let done = match self.prepare(op) {
            Err(done) => done,
            Ok(op) => {
                self.plan.max_in_flight.fetch_max(1, SeqCst);
                let done = self.inner.perform_now(op);
                match self.rewrite(done) {
                    Some(done) => done,
                    // Held back by a thread of its own (a slow op).
                    None => futures::executor::block_on(self.delayed.next()).expect("a held-back completion"),
                }
            }
        };
        self.reported(&done);
        done
    }

    fn poll_complete(&mut self, cx: &mut Context<'_>) -> Poll<Done> {
        let done = self.poll_rewritten(cx);
        if let Poll::Ready(done) = &done {
            self.reported(done);
        }
        done
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight() + self.ready.len() + self.delayed.len() + usize::from(self.held.is_some())
    }

    fn settled(&self) -> bool {
        self.inner.settled() && self.in_flight() == 0
    }

    fn substrate(&self) -> crate::Substrate {
        self.inner.substrate()
    }
}

impl Drop for FaultBackend {
    fn drop(&mut self) {
        // Held-back completions stand for syscalls still running.
        while futures::executor::block_on(self.delayed.next()).is_some() {}
    }
}

impl FaultBackend {
    fn poll_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<Done> {
        loop {
            if let Some(done) = self.ready.pop_front() {
                return Poll::Ready(done);
            }
            if let Poll::Ready(done) = self.inner.poll_complete(cx) {
                let Some(done) = self.rewrite(done) else { continue };
                if self.plan.reorder.load(SeqCst) && self.held.is_none() && self.inner.in_flight() > 0 {
                    // Another op is in flight: let its completion overtake this one.
                    self.held = Some(done);
                    continue;
                }
                if let Some(older) = self.held.take() {
                    self.plan.reordered.fetch_add(1, SeqCst);
                    self.ready.push_back(older);
                }
                return Poll::Ready(done);
            }
            if self.inner.in_flight() == 0 {
                // Nothing left in flight to overtake it.
                if let Some(done) = self.held.take() {
                    return Poll::Ready(done);
                }
            }
            return match self.delayed.poll_next_unpin(cx) {
                Poll::Ready(Some(done)) => Poll::Ready(done),
                _ => Poll::Pending,
            };
        }
    }
}
