//! [`Journal`]: the handle users hold, and the state its clones share.
//!
//! Appenders copy frames into the log buffer and wait on the gate; the writer
//! task (`writer/`) does the I/O, or lends what it needs to a blocking
//! caller while it is idle (`writer/lead.rs`). This module never touches a
//! file descriptor on the append path.

mod auto;
mod logbuf;
mod open;
pub(crate) use open::{Hooks, LOCK_FILE};
pub(crate) mod options;
mod schedule;
mod ticket;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub(crate) use logbuf::{Chunk, LogBuffer, Placed};
pub use ticket::Ticket;

use crate::gate::{Gate, Level, Wait};
use crate::read::{Reader, Record};
use crate::recovery::RecoveryReport;
use crate::stats::{Stats, StatsInner};
use crate::{format, Error, JournalOptions, Lsn, Result, Substrate, SyncPolicy};

/// State shared by every clone of a journal, its tickets, readers and writer.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) opts: JournalOptions,
    pub(crate) substrate: Substrate,
    /// Why it runs on `substrate` (for `Stats` and the open log line).
    pub(crate) substrate_reason: String,
    /// The filesystem the journal lives on.
    pub(crate) class: crate::StorageClass,
    /// Where its file and directory operations go.
    pub(crate) storage: Arc<dyn crate::storage::Storage>,
    pub(crate) log: LogBuffer,
    pub(crate) gate: Gate,
    /// What an idle writer lends to a blocking caller leading its round.
    pub(crate) lease: writer::LeaseSlot,
    /// Base LSNs of the segment files, ascending (the writer appends).
    pub(crate) segments: RwLock<Vec<u64>>,
    /// Reader pins and deferred deletion of truncated segments.
    pub(crate) retention: Arc<crate::segment::retention::Retention>,
    pub(crate) stats: StatsInner,
    pub(crate) report: RecoveryReport,
    pub(crate) shutdown: AtomicBool,
    pub(crate) close_sync: AtomicBool,
    pub(crate) writer: Mutex<Option<tokio::task::JoinHandle<Result<()>>>>,
    /// Fired when the directory lock is released.
    pub(crate) released: Arc<ReleaseSignal>,
    /// The journal's own threads for blocking work (never tokio's pool).
    pub(crate) io: crate::substrate::IoThreads,
    /// Compresses records before they are placed (`None`: stored plain).
    #[cfg(feature = "compression")]
    pub(crate) compressor: Option<crate::compress::Compressor>,
}

impl crate::read::LiveJournal for Shared {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn segments(&self) -> Vec<u64> {
        self.segments.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn pin(&self, base: u64) -> Result<crate::segment::retention::Pin> {
        self.retention.pin(&self.segments, base)
    }

    fn next_segment(&self, base: u64) -> Option<u64> {
        self.retention.next_after(&self.segments, base)
    }

    fn follow_level(&self) -> Level {
        if self.opts.sync_policy == SyncPolicy::Never {
            Level::Written
        } else {
            Level::Durable
        }
    }

    fn page_cached(&self) -> bool {
        !self.opts.direct_io
    }
}

/// Set once, when the directory lock has been released.
#[derive(Debug, Default)]
pub(crate) struct ReleaseSignal {
    done: AtomicBool,
    notify: tokio::sync::Notify,
}

impl ReleaseSignal {
    pub(crate) fn fire(&self) {
        self.done.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Resolves once a journal's directory lock has been released: after
/// [`Journal::close`] returned, or once the last handle was dropped and the
/// journal flushed what it held and ended its I/O. A new `Journal::open` of
/// the directory then no longer fails with [`Error::Locked`] (unless another
/// process took it). It does not keep the journal alive.
#[derive(Debug, Clone)]
#[must_use = "a future does nothing unless awaited"]
pub struct Released {
    signal: Arc<ReleaseSignal>,
}

impl Released {
    /// Whether the lock is already released.
    pub fn is_released(&self) -> bool {
        self.signal.done.load(Ordering::Acquire)
    }
}

impl std::future::IntoFuture for Released {
    type Output = ();
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            loop {
                let notified = self.signal.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable(); // armed before the check: no fire is missed
                if self.is_released() {
                    return;
                }
                notified.await;
            }
        })
    }
}

/// Payloads handed over as a `Vec` are written from it, not copied, from
/// this size on: below it, the copy costs less than the extra pieces of
/// the write.
const OWNED_MIN: usize = 64 << 10;

impl Shared {
    /// Stops accepting appends and tells the writer to finish.
    pub(crate) fn begin_shutdown(&self, sync: bool) {
        self.log.refuse(Error::Closed);
        if sync {
            self.close_sync.store(true, Ordering::Release);
        }
        self.shutdown.store(true, Ordering::Release);
        self.gate.writer_wake.notify_one();
    }

    /// Validates sizes, compresses what the options ask to, and copies the
    /// frames into the log buffer. Returns the end of the last frame; with
    /// `lsns`, also each record's LSN.
    pub(crate) fn place<P: AsRef<[u8]>>(&self, payloads: &[P], lsns: Option<&mut Vec<Lsn>>) -> Result<u64> {
        self.place_with(payloads, lsns, true).map(|p| p.end)
    }

    /// [`place`](Self::place); without `wake`, waking the writer is left to
    /// the caller (`Placed::wake_writer` says whether it is owed).
    pub(crate) fn place_with<P: AsRef<[u8]>>(
        &self,
        payloads: &[P],
        lsns: Option<&mut Vec<Lsn>>,
        wake: bool,
    ) -> Result<Placed> {
        let max = self.opts.max_record_size;
        let mut bytes = 0u64;
        for p in payloads {
            let len = p.as_ref().len();
            if len > max {
                return Err(Error::RecordTooLarge { len, max });
            }
            bytes += len as u64;
        }
        // Compressed here, on the appender's thread, before the log
        // buffer's critical section.
        #[cfg(feature = "compression")]
        if let Some(compressor) = &self.compressor {
            let lsn = self.log.next_lsn_relaxed();
            if let [one] = payloads {
                // The common case, without the batch's vectors.
                return match compressor.compress(one.as_ref(), lsn) {
                    Some(packed) => {
                        self.place_frames_with(&[&packed], Some(&[format::KIND_COMPRESSED]), bytes, lsns, wake)
                    }
                    None => self.place_frames_with(payloads, None, bytes, lsns, wake),
                };
            }
            let packed: Vec<Option<Vec<u8>>> = payloads.iter().map(|p| compressor.compress(p.as_ref(), lsn)).collect();
            if packed.iter().any(Option::is_some) {
                let bodies: Vec<&[u8]> =
                    packed.iter().zip(payloads).map(|(c, p)| c.as_deref().unwrap_or(p.as_ref())).collect();
                let kinds: Vec<u8> = packed
                    .iter()
                    .map(|c| if c.is_some() { format::KIND_COMPRESSED } else { format::KIND_RECORD })
                    .collect();
                return self.place_frames_with(&bodies, Some(&kinds), bytes, lsns, wake);
            }
        }
        self.place_frames_with(payloads, None, bytes, lsns, wake)
    }

    /// [`place`](Self::place) for one payload handed over as a `Vec`: at
    /// least [`OWNED_MIN`] bytes, on buffered I/O and uncompressed, it is
    /// written from the `Vec` itself, never copied; otherwise copied as
    /// every payload is. Its CRC is computed here, on the appender's
    /// thread, before the log buffer's lock.
    pub(crate) fn place_owned(&self, payload: Vec<u8>) -> Result<u64> {
        #[cfg(feature = "compression")]
        let compresses = self.compressor.is_some();
        #[cfg(not(feature = "compression"))]
        let compresses = false;
        if payload.len() < OWNED_MIN || self.log.block() != 0 || compresses {
            return self.place(&[payload], None);
        }
        let (len, max) = (payload.len(), self.opts.max_record_size);
        if len > max {
            return Err(Error::RecordTooLarge { len, max });
        }
        let capacity = self.opts.segment_size - format::SEGMENT_HEADER_LEN as u64;
        if format::frame_len(len) as u64 > capacity {
            return Err(Error::RecordTooLarge { len: format::frame_len(len), max: capacity as usize });
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&payload);
        let placed = self.log.append_owned(payload, &crc)?;
        self.stats.appended(1, len as u64, len as u64, 0);
        if placed.wake_writer {
            self.gate.writer_wake.notify_one();
        }
        Ok(placed.end)
    }

    /// [`place`](Self::place) once each frame's payload and kind are known;
    /// without `wake`, waking the writer is left to the caller
    /// (`Placed::wake_writer` says whether it is owed).
    pub(crate) fn place_frames_with<B: AsRef<[u8]>>(
        &self,
        bodies: &[B],
        kinds: Option<&[u8]>,
        bytes: u64,
        lsns: Option<&mut Vec<Lsn>>,
        wake: bool,
    ) -> Result<Placed> {
        let total: u64 = bodies.iter().map(|b| format::frame_len(b.as_ref().len()) as u64).sum();
        let capacity = self.opts.segment_size - format::SEGMENT_HEADER_LEN as u64;
        if total > capacity {
            return Err(Error::RecordTooLarge { len: total as usize, max: capacity as usize });
        }
        let placed = self.log.append(bodies, kinds, total)?;
        let stored: u64 = bodies.iter().map(|b| b.as_ref().len() as u64).sum();
        let compressed = kinds.map_or(0, |k| k.iter().filter(|&&k| k == format::KIND_COMPRESSED).count() as u64);
        self.stats.appended(bodies.len() as u64, bytes, stored, compressed);
        if wake && placed.wake_writer {
            self.gate.writer_wake.notify_one();
        }
        if let Some(lsns) = lsns {
            let mut lsn = placed.end - total;
            for b in bodies {
                lsn += format::frame_len(b.as_ref().len()) as u64;
                lsns.push(Lsn::new(lsn));
            }
        }
        Ok(placed)
    }

    /// LSN an appender must see written before it may add more (the soft
    /// bound on unwritten bytes), if it must wait at all.
    pub(crate) fn backpressure(&self) -> Option<u64> {
        let next = self.log.next_lsn_relaxed();
        // Read after `next`: the writer may have written past the `next` we
        // saw, so the difference saturates; wrapping would make an appender
        // wait forever for an LSN near u64::MAX.
        let written = self.gate.written_lsn().as_u64();
        must_wait(next, written, self.opts.buffer_size as u64)
    }

    pub(crate) fn append_level(&self) -> Level {
        match self.opts.sync_policy {
            SyncPolicy::Always => Level::Durable,
            _ => Level::Written,
        }
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        match self.gate.failure() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Shuts the writer down when the last `Journal` clone goes away.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.begin_shutdown(false);
    }
}

/// A durable, segmented, append-only journal. Cheap to clone; all clones
/// share one log buffer, one writer task and one commit gate.
#[derive(Debug, Clone)]
pub struct Journal {
    handle: Arc<Handle>,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, running recovery. Needs a
    /// tokio runtime of either flavour.
    pub async fn open(dir: impl AsRef<Path>, opts: JournalOptions) -> Result<Journal> {
        Self::open_with(dir.as_ref(), opts, open::Hooks::default()).await
    }

    /// [`open`](Self::open) through `hooks` (the test seams).
    pub(crate) async fn open_with(dir: &Path, opts: JournalOptions, hooks: open::Hooks) -> Result<Journal> {
        let shared = open::open(dir, opts, hooks).await?;
        Ok(Journal { handle: Arc::new(Handle { shared }) })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// A ticket for what ends at `end` (already placed), as `submit` gives.
    pub(crate) fn ticket(&self, end: u64) -> Ticket {
        let shared = self.shared();
        let level = if shared.opts.sync_policy == SyncPolicy::Never { Level::Written } else { Level::Durable };
        Ticket::new(shared.clone(), level, end)
    }

    /// Appends one record; resolves with its LSN once *written* (durable
    /// under `SyncPolicy::Always`).
    pub async fn append_async(&self, payload: impl AsRef<[u8]>) -> Result<Lsn> {
        let shared = self.shared();
        if let Some(lsn) = shared.backpressure() {
            Wait::new(&shared.gate, Level::Written, lsn).await?;
        }
        let end = shared.place(&[payload], None)?;
        Wait::new(&shared.gate, shared.append_level(), end).await
    }

    /// Appends records as one atomic batch: after a crash, all or none are
    /// there. Resolves with each record's LSN once written.
    pub async fn append_batch_async<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Vec<Lsn>> {
        let shared = self.shared();
        if payloads.is_empty() {
            shared.check_open()?;
            return Ok(Vec::new());
        }
        if let Some(lsn) = shared.backpressure() {
            Wait::new(&shared.gate, Level::Written, lsn).await?;
        }
        let mut lsns = Vec::with_capacity(payloads.len());
        let end = shared.place(payloads, Some(&mut lsns))?;
        Wait::new(&shared.gate, shared.append_level(), end).await?;
        Ok(lsns)
    }

    /// Resolves once every byte below `lsn` is durable.
    pub async fn sync_through_async(&self, lsn: Lsn) -> Result<()> {
        let shared = self.shared();
        shared.check_open()?;
        check_not_ahead(shared, lsn)?;
        Wait::new(&shared.gate, Level::Durable, lsn.as_u64()).await.map(drop)
    }

    /// Appends one record and resolves once it is durable, sharing the sync
    /// with every concurrent caller (group commit).
    pub async fn append_durable_async(&self, payload: impl AsRef<[u8]>) -> Result<Lsn> {
        let shared = self.shared();
        if let Some(lsn) = shared.backpressure() {
            Wait::new(&shared.gate, Level::Written, lsn).await?;
        }
        let end = shared.place(&[payload], None)?;
        Wait::new(&shared.gate, Level::Durable, end).await
    }

    /// [`append_async`](Self::append_async) for a payload the caller hands
    /// over: one of at least 64 KiB is written to the file from `payload`
    /// itself, without the copy into the journal's log buffer that every
    /// other append makes (with buffered I/O and no compression; otherwise
    /// it is copied like any payload). Its memory is freed once the write
    /// completed, and also when the append fails (`RecordTooLarge`, a
    /// closed or poisoned journal): keep a copy if you must retry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tidelog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let journal = tidelog::Journal::open(dir.path(), Default::default()).await?;
    /// let snapshot: Vec<u8> = vec![7; 1 << 20];
    /// let lsn = journal.append_owned_async(snapshot).await?;
    /// journal.sync_through_async(lsn).await?;
    /// # journal.close().await }
    /// ```
    pub async fn append_owned_async(&self, payload: Vec<u8>) -> Result<Lsn> {
        let shared = self.shared();
        if let Some(lsn) = shared.backpressure() {
            Wait::new(&shared.gate, Level::Written, lsn).await?;
        }
        let end = shared.place_owned(payload)?;
        Wait::new(&shared.gate, shared.append_level(), end).await
    }

    /// [`submit`](Self::submit) for a payload the caller hands over,
    /// written without a copy as [`append_owned_async`](Self::append_owned_async)
    /// says. Several large records can so be in the journal's hands at once.
    pub fn submit_owned(&self, payload: Vec<u8>) -> Result<Ticket> {
        let end = self.shared().place_owned(payload)?;
        Ok(self.ticket(end))
    }

    /// Appends one record without waiting; the [`Ticket`] resolves with its
    /// LSN once durable (once written under `SyncPolicy::Never`). Never
    /// blocks; dropping the ticket does not drop the record.
    pub fn submit(&self, payload: impl AsRef<[u8]>) -> Result<Ticket> {
        let shared = self.shared();
        let end = shared.place(&[payload], None)?;
        // The need for durability is registered when the ticket is first
        // polled: submit itself is one copy into the log buffer.
        Ok(self.ticket(end))
    }

    /// Blocking [`append_async`](Self::append_async), for threads that are
    /// not tokio workers (it parks the calling thread). When the journal
    /// is idle, the calling thread writes (and under `SyncPolicy::Always`
    /// syncs) the record itself rather than hand it to the I/O threads and
    /// wait to be woken: a lone caller's round trip is then one thread's.
    pub fn append(&self, payload: impl AsRef<[u8]>) -> Result<Lsn> {
        let shared = self.shared();
        if let Some(lsn) = shared.backpressure() {
            shared.gate.wait_blocking(Level::Written, lsn)?;
        }
        let placed = shared.place_with(&[payload], None, false)?;
        shared.wait_leading(shared.append_level(), placed.end, placed.wake_writer)
    }

    /// Blocking [`append_durable_async`](Self::append_durable_async): one
    /// call and one wait where [`append`](Self::append) then
    /// [`sync_through`](Self::sync_through) take two. While the journal is
    /// idle the calling thread writes and syncs the record itself, with one
    /// linked write and fdatasync; otherwise it shares the writer's round.
    pub fn append_durable(&self, payload: impl AsRef<[u8]>) -> Result<Lsn> {
        let shared = self.shared();
        if let Some(lsn) = shared.backpressure() {
            shared.gate.wait_blocking(Level::Written, lsn)?;
        }
        let placed = shared.place_with(&[payload], None, false)?;
        shared.wait_leading(Level::Durable, placed.end, placed.wake_writer)
    }

    /// Blocking [`sync_through_async`](Self::sync_through_async). When the
    /// journal is idle, the calling thread runs the fdatasync itself (see
    /// [`append`](Self::append)); concurrent callers share it, or the
    /// round the journal's own writer runs.
    pub fn sync_through(&self, lsn: Lsn) -> Result<()> {
        let shared = self.shared();
        shared.check_open()?;
        check_not_ahead(shared, lsn)?;
        shared.wait_leading(Level::Durable, lsn.as_u64(), false).map(drop)
    }

    /// A future that resolves once this journal's directory lock has been
    /// released (see [`Released`]). Take it before dropping the last
    /// handle to learn when the directory can be opened again:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tidelog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let journal = tidelog::Journal::open(dir.path(), Default::default()).await?;
    /// journal.append_async(b"kept").await?;
    /// let released = journal.released();
    /// drop(journal); // flushes in the background
    /// released.await;
    /// let journal = tidelog::Journal::open(dir.path(), Default::default()).await?;
    /// # journal.close().await }
    /// ```
    pub fn released(&self) -> Released {
        Released { signal: self.shared().released.clone() }
    }

    /// The substrate actually running.
    pub fn substrate(&self) -> Substrate {
        self.shared().substrate
    }

    /// True when the native io_uring substrate is serving this journal.
    pub fn native_iouring_active(&self) -> bool {
        self.substrate() == Substrate::IoUring
    }

    /// The LSN the next append will start at.
    pub fn next_lsn(&self) -> Lsn {
        Lsn::new(self.shared().log.next_lsn())
    }

    /// Every byte below this LSN has reached the OS.
    pub fn written_lsn(&self) -> Lsn {
        self.shared().gate.written_lsn()
    }

    /// Every byte below this LSN is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared().gate.durable_lsn()
    }

    /// Counters and latency percentiles.
    pub fn stats(&self) -> Stats {
        let shared = self.shared();
        let poisoned = matches!(shared.gate.failure(), Some(Error::Poisoned(_)));
        shared.stats.snapshot((shared.substrate, &shared.substrate_reason), poisoned)
    }

    /// What recovery found and cut when this journal was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.shared().report
    }

    /// The filesystem the journal lives on (as `statfs` tells at open).
    pub fn storage_class(&self) -> crate::StorageClass {
        self.shared().class
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// A reader over *written* records whose start is at or after `from`:
    /// it reads up to the written frontier as it stands at each step, so
    /// it may return a record that is not durable yet (one a power cut
    /// could still take). To read only durable records, stop at
    /// [`durable_lsn`](Self::durable_lsn), or use [`subscribe`](Self::subscribe).
    pub fn reader(&self, from: Lsn) -> Result<Reader> {
        Reader::live(self.shared().clone(), from, Level::Written)
    }

    /// A stream of the records from `from` on: those already durable, then
    /// each as it becomes durable (written, under `SyncPolicy::Never`). It
    /// never causes a sync itself and never holds up appenders: it reads
    /// from the segment files. It ends cleanly after `close` once it has
    /// delivered everything durable, and with the error if the journal is
    /// poisoned.
    pub fn subscribe(&self, from: Lsn) -> crate::read::Subscription {
        crate::read::Subscription::new(self.shared().clone(), from)
    }

    /// Up to `max_records` *written* records from `from` (durable or not,
    /// as [`reader`](Self::reader)), and whether more are written beyond
    /// them.
    pub fn read_batch(&self, from: Lsn, max_records: usize) -> Result<(Vec<Record>, bool)> {
        let mut reader = self.reader(from)?;
        let mut records = Vec::with_capacity(max_records.min(1024));
        while records.len() < max_records {
            match reader.next_record()? {
                Some(r) => records.push(r),
                None => return Ok((records, false)),
            }
        }
        let more = reader.position() < self.written_lsn();
        Ok((records, more))
    }

    /// Deletes whole segments entirely below `lsn` (typically after a
    /// checkpoint made their records unnecessary). The segment holding `lsn`
    /// and every later one stay; records below `lsn` that share it remain
    /// readable.
    ///
    /// Everything below the new first segment is made durable first. A
    /// segment that a reader or subscriber is still reading leaves the
    /// listing at once but is deleted only when they let go. Deletion goes
    /// oldest first, so a crash midway leaves a contiguous journal that
    /// reopens cleanly (calling `truncate_before` again finishes the job).
    pub async fn truncate_before(&self, lsn: Lsn) -> Result<()> {
        let shared = self.shared();
        shared.check_open()?;
        check_not_ahead(shared, lsn)?;
        let keep_from = {
            let bases = shared.segments.read().unwrap_or_else(|p| p.into_inner());
            // The last segment starting at or below `lsn` holds it: keep it.
            let idx = bases.partition_point(|&b| b <= lsn.as_u64());
            match idx.checked_sub(1) {
                Some(i) if i > 0 => bases[i],
                _ => return Ok(()), // nothing lies wholly below `lsn`
            }
        };
        // The new first segment's start must be durable: every sealed
        // segment before it (and its own file) is then on disk, so no
        // acknowledged record depends on what is deleted.
        self.sync_through_async(Lsn::new(keep_from)).await?;
        let now = shared.retention.condemn(&shared.segments, keep_from);
        let deferred = shared.retention.deferred();
        let dir = shared.dir.clone();
        let count = now.len();
        if !now.is_empty() {
            let storage = shared.storage.clone();
            shared
                .io
                .run(move || crate::segment::retention::delete(storage.as_ref(), &dir, &now))
                .await
                .map_err(|e| Error::io("truncate task", &shared.dir, std::io::Error::other(e)))??;
        }
        tracing::info!(dir = %shared.dir.display(), deleted = count, deferred, keep_from, "truncate_before");
        Ok(())
    }

    /// Makes a consistent copy of the journal at `dest` (a new directory)
    /// up to its durable frontier as it stands at the call; appends go on
    /// meanwhile. Sealed segments are hard-linked where the filesystem
    /// allows (copied otherwise), the active segment's durable prefix is
    /// copied, and the copy — files, directory, its name in `dest`'s parent
    /// — is durable when this returns. The copy opens as a journal and
    /// verifies clean. The segments it needs are pinned meanwhile, so
    /// `truncate_before` defers their deletion until it is done. The file
    /// work runs on tokio's blocking pool, never on a runtime worker.
    ///
    /// Under `SyncPolicy::Never` the durable frontier moves only when
    /// asked: call [`sync_through_async`](Self::sync_through_async) first.
    /// See [`backup_dir`](crate::backup_dir) for a journal another process
    /// holds, and `docs/operations.md` for restoring.
    pub async fn backup(&self, dest: impl AsRef<Path>) -> Result<crate::BackupReport> {
        let shared = self.shared();
        shared.check_open()?;
        // Frontier first: a segment it reaches is already listed.
        let frontier = shared.gate.durable_lsn().as_u64();
        let (bases, pins) = pin_through(shared, frontier)?;
        let (dir, dest) = (shared.dir.clone(), dest.as_ref().to_path_buf());
        tokio::task::spawn_blocking(move || {
            let _pins = pins; // held until the copy is complete
            crate::backup::backup_pinned(&dir, &dest, &bases, frontier)
        })
        .await
        .map_err(|e| Error::io("backup task", &shared.dir, std::io::Error::other(e.to_string())))?
    }

    /// Flushes and syncs everything appended, stops the writer and releases
    /// the directory lock. Later calls on any clone return `Error::Closed`.
    pub async fn close(&self) -> Result<()> {
        let shared = self.shared();
        shared.begin_shutdown(true);
        let task = shared.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(task) = task else {
            return Err(Error::Closed);
        };
        match task.await {
            Ok(result) => result,
            Err(join) => Err(Error::io("join the writer task", &shared.dir, std::io::Error::other(join.to_string()))),
        }
    }
}

/// The listed segments holding LSNs up to `frontier`, each pinned. A
/// segment truncation deleted between the listing and its pin makes the
/// listing stale: it is taken again (truncation deletes oldest first and
/// never past the durable frontier, so a few rounds settle).
fn pin_through(shared: &Shared, frontier: u64) -> Result<(Vec<u64>, Vec<crate::segment::retention::Pin>)> {
    const ATTEMPTS: usize = 16;
    for _ in 0..ATTEMPTS {
        let bases: Vec<u64> =
            crate::read::LiveJournal::segments(shared).into_iter().filter(|&b| b <= frontier).collect();
        let pins: Result<Vec<_>> = bases.iter().map(|&b| shared.retention.pin(&shared.segments, b)).collect();
        if let Ok(pins) = pins {
            return Ok((bases, pins));
        }
    }
    Err(Error::InvalidLsn { lsn: Lsn::new(frontier), reason: "segments kept being truncated during a backup".into() })
}

/// The written LSN an appender must wait for before adding more, if any.
fn must_wait(next: u64, written: u64, limit: u64) -> Option<u64> {
    (next.saturating_sub(written) > limit).then(|| next - limit)
}

fn check_not_ahead(shared: &Shared, lsn: Lsn) -> Result<()> {
    let next = shared.log.next_lsn_relaxed();
    if lsn.as_u64() > next {
        return Err(Error::InvalidLsn { lsn, reason: format!("beyond the end of the journal ({next})") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::must_wait;

    #[test]
    fn backpressure_tolerates_a_stale_next_lsn() {
        // `written` read after `next` may be ahead of it: never a wait.
        assert_eq!(must_wait(100, 200, 4096), None);
        assert_eq!(must_wait(0, 1 << 40, 4096), None);
        assert_eq!(must_wait(10_000, 1_000, 4096), Some(10_000 - 4096));
        assert_eq!(must_wait(5_000, 1_000, 4096), None);
    }
}
