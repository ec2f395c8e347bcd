//! `Journal::open`: lock, choose the substrate, recover, spawn the writer.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use super::writer::Writer;
use super::{LogBuffer, Shared};
use crate::gate::Gate;
use crate::recovery::{self, Recovered};
use crate::segment::SegmentFile;
use crate::stats::StatsInner;
use crate::storage::{os, OsStorage, Storage};
use crate::substrate::{Backend, BlockingBackend, IoThreads};
use crate::{Error, JournalOptions, Lsn, Result, SubstrateChoice};

/// Name of the lock file inside a journal directory.
pub(crate) const LOCK_FILE: &str = crate::format::LOCK_FILE_NAME;
/// The most I/O threads a journal runs at once: two large writes, two
/// overlapping syncs, the next segment being made, and a truncation and a
/// seal beside them, with one to spare.
const IO_THREADS: usize = 8;

/// What a journal does its I/O through: the file seam, and (for tests) a
/// wrapper around the substrate it runs on. `Hooks::default()` is the
/// operating system, unwrapped.
pub(crate) struct Hooks {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) wrap_backend: Option<BackendWrapper>,
}

/// Wraps a journal's backend; it is told whether the journal uses direct I/O.
pub(crate) type BackendWrapper = Box<dyn FnOnce(Box<dyn Backend>, bool) -> Box<dyn Backend> + Send>;

impl Default for Hooks {
    fn default() -> Self {
        Hooks { storage: Arc::new(OsStorage), wrap_backend: None }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").field("storage", &self.storage).finish_non_exhaustive()
    }
}

pub(super) async fn open(dir: &Path, opts: JournalOptions, hooks: Hooks) -> Result<Arc<Shared>> {
    opts.validate()?;
    let runtime = crate::error::runtime()?;
    prepare_dir(dir)?;
    let class = crate::StorageClass::of(dir)?;
    if opts.direct_io && class.is_memory() {
        return Err(Error::Unsupported(format!(
            "direct_io: {} is on {class}, which keeps files in memory and has no O_DIRECT to offer",
            dir.display()
        )));
    }
    let released = Arc::new(super::ReleaseSignal::default());
    let lock = DirLock { file: Some(take_lock(dir)?), released: released.clone() };
    let io = IoThreads::new(format!("tidelog-io {}", dir.display()), IO_THREADS);
    let (mut backend, substrate_reason) = choose_backend(&opts, &io, class)?;
    if let Some(wrap) = hooks.wrap_backend {
        backend = wrap(backend, opts.direct_io);
    }
    let storage = hooks.storage;
    let (recover_dir, mode, recover_storage) = (dir.to_path_buf(), opts.recovery, storage.clone());
    let (size, how, direct) = (opts.segment_size, opts.preallocate, opts.direct_io);
    let (recovered, block) = io
        .run(move || {
            let storage = recover_storage.as_ref();
            let mut recovered = recovery::recover(storage, &recover_dir, mode)?;
            if recovered.fresh {
                // A segment recovery made is reserved like every later one
                // (the spare mechanism covers those).
                reserve_segment(storage, &recovered.last, size, how)?;
            }
            let block =
                if direct { prepare_direct(storage, &recover_dir, class, &mut recovered, size, how)? } else { 0 };
            Ok::<_, Error>((recovered, block))
        })
        .await
        .map_err(|e| Error::io("recovery task", dir, io::Error::other(e)))??;
    let end = recovered.report.end_lsn.as_u64();
    let last_base = recovered.last.base;
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        log: LogBuffer::new(end, last_base, opts.segment_size, 4096, block),
        gate: Gate::new(end),
        lease: Default::default(),
        segments: RwLock::new(recovered.bases.clone()),
        retention: Arc::new(crate::segment::retention::Retention::new(dir, storage.clone())),
        stats: StatsInner::new(dir, backend.substrate()),
        report: recovered.report,
        substrate: backend.substrate(),
        substrate_reason,
        class,
        storage,
        shutdown: AtomicBool::new(false),
        close_sync: AtomicBool::new(false),
        writer: Mutex::new(None),
        released,
        io,
        #[cfg(feature = "compression")]
        compressor: crate::compress::Compressor::new(opts.compression, opts.compression_min_bytes),
        opts,
    });
    tracing::info!(
        dir = %dir.display(), end_lsn = end, segments = shared.report.segments,
        substrate = ?shared.substrate, because = %shared.substrate_reason, storage = %class,
        direct_io_block = block, "journal open"
    );
    let writer = Writer::new(shared.clone(), backend, recovered.last, recovered.journal_id, lock);
    let task = runtime.spawn(writer.run());
    *shared.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    Ok(shared)
}

fn reserve_segment(storage: &dyn Storage, seg: &SegmentFile, size: u64, how: crate::Preallocate) -> Result<()> {
    let header = crate::format::SEGMENT_HEADER_LEN as u64;
    crate::segment::reserve(storage, &seg.file, header, size, how)
        .and_then(|()| storage.sync_data(&seg.file))
        .map_err(|e| Error::io_at("preallocate segment", &seg.path, Lsn::new(seg.base), e))
}

/// Direct I/O: learns the block size, makes sure the log continues on a
/// block boundary, and turns `O_DIRECT` on for the segment appends go to.
/// Returns the block size.
///
/// Recovery may end inside a block (a crash, or a journal written without
/// direct I/O). Continuing there would write that block again, over bytes
/// that may be acknowledged; instead the last segment is sealed where it
/// ends and appends continue in a new segment based at the end, whose first
/// frame lies at file offset 4096.
fn prepare_direct(
    storage: &dyn Storage,
    dir: &Path,
    class: crate::StorageClass,
    recovered: &mut Recovered,
    size: u64,
    how: crate::Preallocate,
) -> Result<u64> {
    let unsupported = |why: String| Error::Unsupported(format!("direct_io on {class} ({}): {why}", dir.display()));
    let last = &recovered.last;
    let (mem, block) = match os::dio_alignment(&last.file) {
        Ok(Some(align)) => align,
        Ok(None) if cfg!(tidelog_linux) => {
            return Err(unsupported("the kernel reports no O_DIRECT support for its files".into()))
        }
        Ok(None) => return Err(unsupported("tidelog does direct I/O on Linux only".into())),
        Err(e) => return Err(Error::io_at("statx", &last.path, Lsn::new(last.base), e)),
    };
    if !block.is_power_of_two() || block > 4096 || mem > 4096 {
        return Err(unsupported(format!(
            "needs {block}-byte offsets and {mem}-byte buffers; tidelog supports alignments up to 4096"
        )));
    }
    let block = u64::from(pad_block(block, os::physical_block_size(&last.file), dir));
    let end = recovered.report.end_lsn.as_u64();
    if crate::format::file_offset(last.base, end) % block != 0 {
        tracing::info!(dir = %dir.display(), end, block, "direct I/O: the log ends inside a block; continuing in a new segment");
        let made = crate::segment::create(storage, dir, end, recovered.journal_id)?;
        reserve_segment(storage, &made, size, how)?;
        recovered.bases.push(end);
        recovered.report.segments = recovered.bases.len();
        recovered.last = made;
    }
    let last = &recovered.last;
    os::set_direct(&last.file).map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => unsupported("the filesystem refuses O_DIRECT".into()),
        _ => Error::io_at("set O_DIRECT", &last.path, Lsn::new(last.base), e),
    })?;
    Ok(block)
}

/// The block that direct-I/O writes are padded to: the larger of the
/// offset alignment the kernel asks for and the device's physical block, so
/// that no later write shares a physical sector with acknowledged bytes (a
/// 512e drive would read-modify-write that sector, and a power cut during
/// it could tear them). A physical block beyond 4096 bytes (what the log
/// buffer and the segment header allow) cannot be honoured: it is reported.
fn pad_block(dio_align: u32, physical: Option<u32>, dir: &Path) -> u32 {
    match physical.filter(|p| p.is_power_of_two()) {
        Some(p) if p > 4096 => {
            tracing::warn!(
                dir = %dir.display(), physical_block = p,
                "direct I/O pads to 4096 bytes, below the device's physical block: a power cut during a write may tear the block it shares with acknowledged records"
            );
            4096.max(dio_align)
        }
        Some(p) => p.max(dio_align),
        None => dio_align,
    }
}

fn prepare_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::io(
            "open journal directory",
            dir,
            io::Error::new(io::ErrorKind::NotADirectory, "exists and is not a directory"),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| Error::io("create journal directory", dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                os::sync_dir(parent).map_err(|e| Error::io("sync parent directory", parent, e))?;
            }
            Ok(())
        }
        Err(e) => Err(Error::io("open journal directory", dir, e)),
    }
}

/// The directory's lock, held while anything of the journal may touch the
/// directory; dropping it releases the lock, then tells whoever awaits
/// [`Released`](super::Released).
#[derive(Debug)]
pub(super) struct DirLock {
    file: Option<std::fs::File>,
    released: Arc<super::ReleaseSignal>,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        drop(self.file.take()); // closing the file releases the flock
        self.released.fire();
    }
}

fn take_lock(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    match os::try_lock_exclusive(&file) {
        Ok(true) => Ok(file),
        Ok(false) => Err(Error::Locked { path }),
        Err(e) => Err(Error::io("flock", &path, e)),
    }
}

/// The journal's backend, and why it is that one.
fn choose_backend(
    opts: &JournalOptions,
    io: &IoThreads,
    class: crate::StorageClass,
) -> Result<(Box<dyn Backend>, String)> {
    let blocking = || -> Box<dyn Backend> { Box::new(BlockingBackend::new(io.clone())) };
    match opts.substrate {
        SubstrateChoice::Blocking => Ok((blocking(), "asked for (SubstrateChoice::Blocking)".into())),
        SubstrateChoice::IoUring => {
            native(opts).map(|b| (b, "asked for (SubstrateChoice::IoUring)".into())).map_err(Error::Unsupported)
        }
        SubstrateChoice::Auto => {
            let rule = super::auto::pick(class, opts);
            if rule.substrate == crate::Substrate::Blocking {
                return Ok((blocking(), format!("Auto: {}", rule.why)));
            }
            Ok(match native(opts) {
                Ok(ring) => (ring, format!("Auto: {}", rule.why)),
                Err(why) => {
                    warn_fallback_once(&why);
                    (blocking(), format!("Auto: io_uring unavailable ({why})"))
                }
            })
        }
    }
}

fn warn_fallback_once(why: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| tracing::warn!(reason = why, "io_uring unavailable; tidelog runs on the Blocking substrate"));
}

#[cfg(tidelog_linux)]
fn native(opts: &JournalOptions) -> std::result::Result<Box<dyn Backend>, String> {
    crate::substrate::uring::UringBackend::create(opts.ring_entries, opts.sqpoll_idle)
        .map(|b| Box::new(b) as Box<dyn Backend>)
}

#[cfg(not(tidelog_linux))]
fn native(_opts: &JournalOptions) -> std::result::Result<Box<dyn Backend>, String> {
    Err("io_uring exists only on Linux".into())
}

#[cfg(test)]
mod tests {
    use super::pad_block;
    use std::path::Path;

    #[test]
    fn direct_io_pads_to_the_physical_block_where_it_is_larger() {
        let dir = Path::new("/x");
        assert_eq!(pad_block(512, Some(4096), dir), 4096, "512e: pad to the physical sector");
        assert_eq!(pad_block(512, Some(512), dir), 512);
        assert_eq!(pad_block(4096, Some(512), dir), 4096, "never below the DIO alignment");
        assert_eq!(pad_block(512, None, dir), 512, "unknown: the DIO alignment");
        assert_eq!(pad_block(512, Some(65536), dir), 4096, "capped where the format cannot follow");
        assert_eq!(pad_block(512, Some(3000), dir), 512, "a nonsense report is ignored");
    }
}
