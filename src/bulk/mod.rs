//! Bulk sequential writes beside a journal — snapshots, checkpoints,
//! compaction output — with bounded dirty memory.
//!
//! Left alone, the kernel lets a large write pile up dirty pages until a
//! writeback burst stalls everything on the device, the journal's
//! `fdatasync` included. [`WritebackFile`] keeps the pile small: each time a
//! `chunk` of output is complete it starts writeback of that chunk
//! (`sync_file_range(WRITE)`) and waits for the *previous* one
//! (`WAIT_BEFORE | WRITE | WAIT_AFTER`), so about two chunks are ever dirty.
//! Nothing blocks a tokio worker: on the native substrate the writeback
//! calls are `IORING_OP_SYNC_FILE_RANGE` ops on a small ring of the
//! writer's own, awaited through the ring fd's readiness; otherwise they run
//! on tokio's blocking pool, as the writes always do. They run on a second
//! open file description of the file, so that a writeback error they
//! report is not consumed for the final `fdatasync` on the writing one.
//!
//! The chunk adapts: it grows while the measured waits stay short (the
//! device keeps up) and shrinks when their p95 gets long, within
//! [4 MiB, 256 MiB], seeded from the [`StorageClass`]. A wait longer than the
//! deadline marks the writer degraded: one `tracing::error!`, later chunks
//! skip the wait, and `finish` still makes the file durable. The abandoned
//! wait is not forgotten (the stuck call finishes in the kernel or on its
//! blocking thread, holding its own handle to the file): `finish` looks at
//! its result, after its `fdatasync`, for up to one more deadline.
//!
//! A failed write or writeback wait is final, as a failed sync is for the
//! journal: the writer keeps the first error, every later `write_all`
//! returns it, and `finish` returns it without renaming anything — it must
//! never report durable what the kernel may have dropped.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::storage::os;
#[cfg(tidelog_linux)]
use crate::substrate::range_ring::RangeFault;
use crate::{Error, Result, StorageClass, Substrate, SubstrateChoice};
use tuner::ChunkTuner;

mod tuner;

/// Smallest adaptive chunk.
pub const MIN_CHUNK: u64 = 4 << 20;
/// Largest adaptive chunk.
pub const MAX_CHUNK: u64 = 256 << 20;
/// Bytes staged in memory before one `pwrite`.
const STAGE: usize = 1 << 20;

/// How a [`WritebackFile`] behaves.
#[derive(Clone, Debug)]
pub struct WritebackOptions {
    chunk: Option<u64>,
    wait_deadline: Duration,
    atomic: bool,
    adaptive: bool,
    wait_delay: Option<Duration>,
    faults: Faults,
    substrate: SubstrateChoice,
}

/// Test seam: which writeback wait and which write to report as failed
/// (`EIO`). 1-based; 0 means never.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    fail_wait_nth: u64,
    fail_write_nth: u64,
}

impl Default for WritebackOptions {
    fn default() -> Self {
        WritebackOptions {
            chunk: None,
            wait_deadline: Duration::from_secs(30),
            atomic: false,
            adaptive: true,
            wait_delay: None,
            faults: Faults::default(),
            substrate: SubstrateChoice::Auto,
        }
    }
}

impl WritebackOptions {
    /// The defaults: chunk seeded from the storage class, adaptive, 30 s
    /// wait deadline, written in place.
    pub fn new() -> Self {
        Self::default()
    }
    /// The starting chunk (clamped to [`MIN_CHUNK`], [`MAX_CHUNK`]).
    pub fn chunk(mut self, bytes: u64) -> Self {
        self.chunk = Some(bytes);
        self
    }
    /// Where the writeback calls run: `Auto` (default) uses an io_uring ring
    /// where the kernel allows, `IoUring` fails `create` with
    /// [`Error::Unsupported`] where it does not, `Blocking` uses tokio's
    /// blocking pool.
    pub fn substrate(mut self, choice: SubstrateChoice) -> Self {
        self.substrate = choice;
        self
    }
    /// Keep the chunk fixed instead of adapting it (default: adaptive).
    pub fn adaptive(mut self, on: bool) -> Self {
        self.adaptive = on;
        self
    }
    /// A writeback wait longer than this degrades the writer (default 30 s).
    pub fn wait_deadline(mut self, deadline: Duration) -> Self {
        self.wait_deadline = deadline;
        self
    }
    /// Write to a temporary name and rename into place at `finish`: readers
    /// of the path see the old file or the whole new one (default off).
    pub fn atomic(mut self, on: bool) -> Self {
        self.atomic = on;
        self
    }
    /// Test seam: every writeback wait takes this much longer (a slow
    /// device). Not a stable API.
    #[doc(hidden)]
    pub fn inject_wait_delay(mut self, delay: Duration) -> Self {
        self.wait_delay = Some(delay);
        self
    }
    /// Test seam: the `nth` writeback wait (1-based) is performed, then
    /// reported as failed with `EIO`, as a device error would be. Not a
    /// stable API.
    #[doc(hidden)]
    pub fn inject_wait_failure(mut self, nth: u64) -> Self {
        self.faults.fail_wait_nth = nth;
        self
    }
    /// Test seam: the `nth` write (1-based; one per staged MiB) is
    /// performed, then reported as failed with `EIO`. Not a stable API.
    #[doc(hidden)]
    pub fn inject_write_failure(mut self, nth: u64) -> Self {
        self.faults.fail_write_nth = nth;
        self
    }
}

/// What a [`WritebackFile`] has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WritebackStats {
    /// Bytes accepted by `write_all`.
    pub bytes: u64,
    /// The current chunk size.
    pub chunk: u64,
    /// Chunks completed (writeback started).
    pub chunks: u64,
    /// Waits for a previous chunk's writeback.
    pub waits: u64,
    /// The longest of those waits.
    pub max_wait: Duration,
    /// A wait overran the deadline; waits are skipped since.
    pub degraded: bool,
}

/// An async sequential file writer with bounded dirty pages. See the module
/// docs.
#[derive(Debug)]
pub struct WritebackFile {
    /// The writing description: every `pwrite`, and the final `fdatasync`
    /// that decides durability.
    file: Arc<File>,
    /// A second open file description of the same file, for the writeback
    /// calls only, so that they never consume a writeback error the final
    /// `fdatasync` must see (see `create`).
    writeback: Arc<File>,
    /// Where the bytes go (a temporary name when atomic).
    path: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    atomic: bool,
    class: StorageClass,
    stage: Vec<u8>,
    /// Bytes handed to the kernel.
    written: u64,
    chunk_start: u64,
    /// The previous chunk, whose writeback was started: (offset, len).
    previous: Option<(u64, u64)>,
    tuner: ChunkTuner,
    deadline: Duration,
    wait_delay: Option<Duration>,
    faults: Faults,
    /// Writeback waits and writes issued, for the fault seam's counts.
    waits_issued: u64,
    writes_issued: u64,
    stats: WritebackStats,
    done: bool,
    /// The first failed write or writeback call. Final: the kernel may have
    /// dropped the pages, so nothing after it may be called durable.
    failed: Option<Error>,
    /// Blocking substrate: the writeback job abandoned at its deadline,
    /// kept so that `finish` still sees its result. At most one: the writer
    /// degrades and issues no more waits.
    abandoned: Option<tokio::task::JoinHandle<std::io::Result<Option<Duration>>>>,
    /// That job's outcome, once `settle_abandoned_waits` awaited it.
    abandoned_outcome: Option<Result<std::io::Result<Option<Duration>>>>,
    /// The writeback ring (native substrate), if any.
    #[cfg(tidelog_linux)]
    ring: Option<crate::substrate::range_ring::RangeRing>,
}

async fn blocking<T: Send + 'static>(
    path: &Path,
    job: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<std::io::Result<T>> {
    tokio::task::spawn_blocking(job).await.map_err(|e| task_failed(path, e))
}

fn task_failed(path: &Path, e: tokio::task::JoinError) -> Error {
    Error::io("bulk write task", path, std::io::Error::other(e.to_string()))
}

impl WritebackFile {
    /// Creates (or truncates) `path` for writing. Needs a tokio runtime.
    pub async fn create(path: impl AsRef<Path>, opts: WritebackOptions) -> Result<WritebackFile> {
        crate::error::runtime()?; // its deadlines need the time driver
        let target = path.as_ref().to_path_buf();
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| Error::InvalidOptions(format!("{}: not a file path", target.display())))?;
        let path =
            if opts.atomic { dir.join(format!(".{}.tidelog-tmp", name.to_string_lossy())) } else { target.clone() };
        let class = StorageClass::of(&dir)?;
        let open_path = path.clone();
        let (file, writeback) = blocking(&path, move || {
            let file = OpenOptions::new().write(true).create(true).truncate(true).open(&open_path)?;
            // The writeback calls get a description of their own. A failed
            // writeback is reported once per open file description (errseq):
            // a `sync_file_range` wait on the writing description would
            // consume the error, and the final `fdatasync` there would then
            // succeed over lost pages. Each description sees every error
            // since its open, so the `fdatasync` on `file` still sees an
            // error that a wait on this one already reported. (Read access
            // would do for Linux's `sync_file_range`; write access keeps the
            // non-Linux fallback, an fsync, legal everywhere.)
            let writeback = OpenOptions::new().write(true).open(&open_path)?;
            Ok((file, writeback))
        })
        .await?
        .map_err(|e| Error::io("create file", &path, e))?;
        #[cfg(tidelog_linux)]
        let ring = match opts.substrate {
            SubstrateChoice::Blocking => None,
            choice => match crate::substrate::range_ring::RangeRing::new() {
                Ok(ring) => Some(ring),
                Err(why) if choice == SubstrateChoice::IoUring => return Err(Error::Unsupported(why)),
                Err(why) => {
                    tracing::debug!(path = %target.display(), why, "writeback waits on the blocking pool");
                    None
                }
            },
        };
        #[cfg(not(tidelog_linux))]
        if opts.substrate == SubstrateChoice::IoUring {
            return Err(Error::Unsupported("io_uring is Linux-only".into()));
        }
        let seed = opts.chunk.unwrap_or_else(|| ChunkTuner::seed(class));
        let tuner = ChunkTuner::new(seed, opts.adaptive);
        tracing::debug!(path = %target.display(), class = %class, chunk = tuner.chunk, "writeback file");
        Ok(WritebackFile {
            file: Arc::new(file),
            writeback: Arc::new(writeback),
            path,
            target,
            dir,
            atomic: opts.atomic,
            class,
            stage: Vec::with_capacity(STAGE),
            written: 0,
            chunk_start: 0,
            previous: None,
            stats: WritebackStats { chunk: tuner.chunk, ..WritebackStats::default() },
            tuner,
            deadline: opts.wait_deadline,
            wait_delay: opts.wait_delay,
            faults: opts.faults,
            waits_issued: 0,
            writes_issued: 0,
            done: false,
            failed: None,
            abandoned: None,
            abandoned_outcome: None,
            #[cfg(tidelog_linux)]
            ring,
        })
    }

    /// Where the writeback calls run.
    pub fn substrate(&self) -> Substrate {
        #[cfg(tidelog_linux)]
        if self.ring.is_some() {
            return Substrate::IoUring;
        }
        Substrate::Blocking
    }

    /// The filesystem the file is on.
    pub fn storage_class(&self) -> StorageClass {
        self.class
    }

    /// Counters so far.
    pub fn stats(&self) -> WritebackStats {
        WritebackStats { chunk: self.tuner.chunk, ..self.stats.clone() }
    }

    /// Appends `data` to the file. After a failed write or writeback wait
    /// every call returns that first error again, as `finish` does.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        if self.done {
            return Err(Error::Closed);
        }
        if let Some(first) = &self.failed {
            return Err(first.clone());
        }
        self.stats.bytes += data.len() as u64;
        while !data.is_empty() {
            let n = (STAGE - self.stage.len()).min(data.len());
            self.stage.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.stage.len() == STAGE {
                if let Err(e) = self.flush_stage().await {
                    return Err(self.fail(e));
                }
            }
        }
        Ok(())
    }

    /// Marks the writer failed (keeping the first error) and returns the
    /// first error. Never undone: a failed write or writeback may have lost
    /// pages that no later sync would report.
    fn fail(&mut self, err: Error) -> Error {
        self.failed.get_or_insert(err).clone()
    }

    async fn flush_stage(&mut self) -> Result<()> {
        if self.stage.is_empty() {
            return Ok(());
        }
        // Until the write and its writeback calls complete, the writer
        // counts as failed: a caller that drops `write_all` (or `finish`)
        // mid-flight loses the staged bytes, and nothing after that may
        // claim the file whole.
        debug_assert!(self.failed.is_none(), "callers check for a failure first");
        let why = "a write_all or finish was cancelled while writing: bytes were lost";
        self.failed = Some(Error::io("write", &self.path, std::io::Error::other(why)));
        let result = self.write_stage().await;
        self.failed = None;
        result
    }

    async fn write_stage(&mut self) -> Result<()> {
        let stage = std::mem::take(&mut self.stage);
        let (file, offset) = (self.file.clone(), self.written);
        self.writes_issued += 1;
        let fail = self.writes_issued == self.faults.fail_write_nth;
        let (result, stage) = blocking(&self.path, move || {
            let mut result = os::pwrite_all(&file, &stage, offset);
            if fail && result.is_ok() {
                result = Err(std::io::Error::from_raw_os_error(libc::EIO)); // test seam
            }
            Ok((result, stage))
        })
        .await?
        .map_err(|e| Error::io("write", &self.path, e))?;
        result.map_err(|e| Error::io("write", &self.path, e))?;
        self.written += stage.len() as u64;
        self.stage = stage;
        self.stage.clear();
        while self.written - self.chunk_start >= self.tuner.chunk {
            let chunk = (self.chunk_start, self.tuner.chunk);
            self.chunk_start += chunk.1;
            self.chunk_done(chunk).await?;
        }
        Ok(())
    }

    /// Starts writeback of `chunk` and waits for the previous one's.
    async fn chunk_done(&mut self, chunk: (u64, u64)) -> Result<()> {
        self.stats.chunks += 1;
        if self.class.is_memory() || self.stats.degraded {
            return Ok(()); // nothing to write back, or the device is stuck
        }
        let (file, previous, delay) = (self.writeback.clone(), self.previous.replace(chunk), self.wait_delay);
        if previous.is_some() {
            self.waits_issued += 1;
        }
        let fail = self.waits_issued == self.faults.fail_wait_nth && previous.is_some();
        #[cfg(tidelog_linux)]
        if let Some(ring) = self.ring.as_mut() {
            let job = async move {
                ring.sync_range(&file, chunk.0, chunk.1, os::SFR_START, RangeFault::default()).await?;
                let Some(prev) = previous else { return Ok(None) };
                let t = Instant::now();
                // Test seam: a slow device holds the wait in the kernel.
                let fault = RangeFault { delay, fail };
                ring.sync_range(&file, prev.0, prev.1, os::SFR_WAIT, fault).await?;
                Ok(Some(t.elapsed()))
            };
            // At the deadline the op is dropped here but filed as abandoned
            // by the ring, which keeps its result for `finish`.
            let outcome = tokio::time::timeout(self.deadline, job).await.ok();
            return self.waited(outcome);
        }
        let mut job = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Duration>> {
            os::start_writeback(&file, chunk.0, chunk.1)?;
            let Some(prev) = previous else { return Ok(None) };
            let t = Instant::now();
            if let Some(delay) = delay {
                std::thread::sleep(delay); // test seam: a slow device
            }
            os::wait_writeback(&file, prev.0, prev.1)?;
            if fail {
                return Err(std::io::Error::from_raw_os_error(libc::EIO)); // test seam
            }
            Ok(Some(t.elapsed()))
        });
        match tokio::time::timeout(self.deadline, &mut job).await {
            Ok(joined) => {
                let done = joined.map_err(|e| task_failed(&self.path, e))?;
                self.waited(Some(done))
            }
            Err(_) => {
                // Not dropped: `finish` still looks at its result.
                assert!(self.abandoned.is_none(), "a degraded writer issues no more writeback calls");
                self.abandoned = Some(job);
                self.waited(None)
            }
        }
    }

    /// Accounts for one chunk's writeback calls: the wait's latency, or the
    /// error, or (`None`) a deadline overrun, which degrades the writer.
    fn waited(&mut self, outcome: Option<std::io::Result<Option<Duration>>>) -> Result<()> {
        match outcome {
            Some(done) => {
                if let Some(wait) = done.map_err(|e| Error::io("sync_file_range", &self.path, e))? {
                    self.stats.waits += 1;
                    self.stats.max_wait = self.stats.max_wait.max(wait);
                    self.tuner.record(wait);
                }
            }
            None => {
                self.stats.degraded = true;
                tracing::error!(
                    path = %self.target.display(), deadline_s = self.deadline.as_secs_f64(),
                    "writeback wait overran its deadline: the device is stalled; later chunks skip the wait"
                );
            }
        }
        Ok(())
    }

    /// Writes what is staged, makes the file durable (and its directory
    /// entry, after the rename when atomic). Returns the file's length.
    ///
    /// After a failed write or writeback wait (now or earlier) it returns
    /// the first error, never renames, and removes the temporary file when
    /// atomic: the target keeps its old contents, or stays absent.
    pub async fn finish(mut self) -> Result<u64> {
        if let Err(e) = self.make_durable().await {
            let first = self.fail(e);
            self.remove_temporary().await;
            return Err(first);
        }
        self.done = true;
        let (path, target, dir, atomic) = (self.path.clone(), self.target.clone(), self.dir.clone(), self.atomic);
        blocking(&self.target, move || -> std::io::Result<()> {
            if atomic {
                std::fs::rename(&path, &target)?;
            }
            os::sync_dir(&dir)
        })
        .await?
        .map_err(|e| Error::io("finish", &self.target, e))?;
        Ok(self.written)
    }

    /// Writes what is staged and makes it durable, unless the writer failed.
    async fn make_durable(&mut self) -> Result<()> {
        if let Some(first) = &self.failed {
            return Err(first.clone());
        }
        self.flush_stage().await?;
        let file = self.file.clone();
        blocking(&self.path, move || os::sync_data(&file)).await?.map_err(|e| Error::io("fdatasync", &self.path, e))?;
        self.check_abandoned().await
    }

    /// Fails if a writeback call abandoned at its deadline (the degraded
    /// path) failed.
    ///
    /// The `fdatasync` just done on the writing description is the
    /// authority: it waited for all of the file's writeback and saw every
    /// writeback error since that description was opened, whatever the
    /// waits on the other description consumed. An abandoned wait matters
    /// only if it failed — on a filesystem that reports writeback errors
    /// without errseq, its wait may have cleared the error the `fdatasync`
    /// needed. So: once the `fdatasync` is back, that writeback is over and
    /// an abandoned call's result comes promptly; wait for it up to one
    /// deadline (never forever: the device may be stuck), fail on an error,
    /// and leave one still stuck after that to the `fdatasync`.
    /// Test seam: waits, without bound, until every writeback wait
    /// abandoned at its deadline has completed (its result is then kept
    /// for `finish`). Not a stable API.
    #[doc(hidden)]
    pub async fn settle_abandoned_waits(&mut self) {
        #[cfg(tidelog_linux)]
        if let Some(ring) = self.ring.as_mut() {
            let _ = ring.abandoned_settled().await;
        }
        if let Some(job) = self.abandoned.take() {
            let outcome = job.await;
            self.abandoned_outcome = Some(outcome.map_err(|e| task_failed(&self.path, e)));
        }
    }

    async fn check_abandoned(&mut self) -> Result<()> {
        let settle = self.deadline;
        let mut stuck = 0;
        #[cfg(tidelog_linux)]
        if let Some(ring) = self.ring.as_mut() {
            if let Ok(Err(e)) = tokio::time::timeout(settle, ring.abandoned_settled()).await {
                return Err(Error::io("sync_file_range (abandoned)", &self.path, e));
            }
            if let Some(e) = ring.abandoned_failure() {
                return Err(Error::io("sync_file_range (abandoned)", &self.path, e));
            }
            stuck += ring.abandoned_in_flight();
        }
        if let Some(outcome) = self.abandoned_outcome.take() {
            outcome?.map_err(|e| Error::io("sync_file_range (abandoned)", &self.path, e))?;
        }
        if let Some(mut job) = self.abandoned.take() {
            match tokio::time::timeout(settle, &mut job).await {
                Ok(joined) => {
                    joined
                        .map_err(|e| task_failed(&self.path, e))?
                        .map_err(|e| Error::io("sync_file_range (abandoned)", &self.path, e))?;
                }
                Err(_) => stuck += 1, // its thread keeps its own handle to the file
            }
        }
        if stuck > 0 {
            tracing::warn!(
                path = %self.target.display(), stuck,
                "an abandoned writeback wait is still stuck after fdatasync; relying on fdatasync's result"
            );
        }
        Ok(())
    }

    /// After a failed atomic finish: the temporary file holds nothing that
    /// was published or durable; remove it (a later `create` would truncate
    /// it anyway, so failing to is only logged).
    async fn remove_temporary(&mut self) {
        if !self.atomic {
            return;
        }
        self.done = true;
        let path = self.path.clone();
        let removed = blocking(&self.path, move || std::fs::remove_file(&path)).await;
        if let Err(e) = removed.and_then(|r| r.map_err(|e| Error::io("remove", &self.path, e))) {
            tracing::warn!(error = %e, "cannot remove the temporary file of a failed atomic finish");
        }
    }

    /// Abandons the file: removes what this writer created (the temporary
    /// file when atomic, else the partial file).
    pub async fn abort(mut self) -> Result<()> {
        self.done = true;
        let path = self.path.clone();
        blocking(&self.path, move || std::fs::remove_file(&path)).await?.map_err(|e| Error::io("remove", &self.path, e))
    }
}
