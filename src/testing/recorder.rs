//! Recording what reaches the OS, for crash-state enumeration.
//!
//! A [`Recorder`] sees every write, size change, `fdatasync` and directory
//! sync a journal opened with it (`Seams::record`) issues: through the
//! substrate seam ([`RecordingBackend`], identical for both substrates) and
//! through the file seam ([`RecordingStorage`]: segment creation, the spare,
//! the seal, truncation, recovery), where each creation, rename and removal
//! is an event of its own. Each event carries the directory listing seen
//! when it was recorded. From that log a checker can rebuild what a sync
//! made durable and what was merely issued, and so every state a crash
//! could leave behind (`tests/crash_states.rs`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use crate::storage::Storage;
use crate::substrate::{Backend, Done, Op, OpKind};

/// One file, across renames: its inode and how many times that inode number
/// was handed out to a file the journal created (inodes are reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// The inode number.
    pub ino: u64,
    /// Bumped each time a file with this inode number is created.
    pub generation: u32,
}

/// What happened, in the order the recorder saw it.
#[derive(Clone, Debug)]
pub enum Event {
    /// A write was handed to the kernel: from now on any part of `data` may
    /// reach the disk at `offset`.
    Write {
        /// Matches the [`Event::WriteDone`] (and a linked [`Event::SyncStart`]).
        id: u64,
        /// The file written.
        file: FileId,
        /// File offset of `data[0]`.
        offset: u64,
        /// The bytes.
        data: Arc<[u8]>,
    },
    /// The write ended having written `written` bytes; the rest never will be.
    WriteDone {
        /// The write's id.
        id: u64,
        /// Bytes written (0 when it failed).
        written: usize,
    },
    /// The file was extended to `len` bytes of zeros (`fallocate`), ended.
    Extend {
        /// The file.
        file: FileId,
        /// Its new length.
        len: u64,
    },
    /// An `fdatasync` started: when it succeeds, the file's writes that had
    /// ended by now are durable, and so is `linked` (a write that runs just
    /// before it in the same op). With `only_linked` (an `RWF_DSYNC` write)
    /// only the linked write is made durable.
    SyncStart {
        /// Matches the [`Event::SyncDone`].
        id: u64,
        /// The file synced.
        file: FileId,
        /// A write the sync covers although it has not ended yet.
        linked: Option<u64>,
        /// Only `linked` is made durable.
        only_linked: bool,
    },
    /// The `fdatasync` ended.
    SyncDone {
        /// The sync's id.
        id: u64,
        /// It succeeded.
        ok: bool,
    },
    /// A directory sync started: the listing recorded with this event is
    /// what it makes durable.
    DirSyncStart {
        /// Matches the [`Event::DirSyncDone`].
        id: u64,
    },
    /// The directory sync ended.
    DirSyncDone {
        /// The sync's id.
        id: u64,
        /// It succeeded.
        ok: bool,
    },
    /// A file was created, renamed or removed: the listing recorded with
    /// this event is the directory just after.
    Namespace {
        /// What happened ("create", "rename", "remove").
        what: &'static str,
    },
    /// A mark from the test (for example "the record at LSN v was
    /// acknowledged durable").
    Note {
        /// What the mark means, to the test.
        tag: u64,
        /// Its value.
        value: u64,
    },
}

/// The directory as seen at one event: names (sorted) and the files they
/// name. `LOCK` is left out: it holds no data.
pub type Listing = Arc<Vec<(String, FileId)>>;

/// One recorded event and the directory listing seen with it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// What happened.
    pub event: Event,
    /// The directory when it happened.
    pub names: Listing,
}

#[derive(Debug, Default)]
struct Log {
    events: Vec<Recorded>,
    generations: HashMap<u64, u32>,
    last: Listing,
}

/// Records what journals in one directory do. See the module docs.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    next_id: AtomicU64,
    log: Mutex<Log>,
}

impl Recorder {
    /// A recorder for journals in `dir` (pass it to `Seams::record`).
    pub fn new(dir: impl AsRef<Path>) -> Arc<Recorder> {
        Arc::new(Recorder {
            dir: dir.as_ref().to_path_buf(),
            next_id: AtomicU64::new(1),
            log: Mutex::new(Log::default()),
        })
    }

    /// Adds a mark of the test's own to the log.
    pub fn note(&self, tag: u64, value: u64) {
        self.push(Event::Note { tag, value });
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Recorded> {
        self.lock().events.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn push(&self, event: Event) {
        let mut log = self.lock();
        let names = self.listing(&log);
        log.last = names.clone();
        log.events.push(Recorded { event, names });
    }

    /// The directory now; the previous listing again if nothing changed.
    fn listing(&self, log: &Log) -> Listing {
        let mut names = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == crate::journal::LOCK_FILE {
                    continue;
                }
                if let Ok(meta) = entry.metadata() {
                    let ino = meta.ino();
                    names.push((name, FileId { ino, generation: log.generations.get(&ino).copied().unwrap_or(0) }));
                }
            }
        }
        names.sort();
        if *log.last == names {
            log.last.clone()
        } else {
            Arc::new(names)
        }
    }

    fn file_id(&self, file: &File) -> FileId {
        let ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
        FileId { ino, generation: self.lock().generations.get(&ino).copied().unwrap_or(0) }
    }

    fn created(&self, file: &File) {
        let ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
        *self.lock().generations.entry(ino).or_insert(0) += 1;
        self.push(Event::Namespace { what: "create" });
    }

    fn write_started(&self, file: FileId, offset: u64, data: Arc<[u8]>) -> u64 {
        let id = self.id();
        self.push(Event::Write { id, file, offset, data });
        id
    }

    fn sync_started(&self, file: FileId, linked: Option<u64>, only_linked: bool) -> u64 {
        let id = self.id();
        self.push(Event::SyncStart { id, file, linked, only_linked });
        id
    }
}

/// The file seam, recorded: each operation is done by `inner`, and what
/// reached the OS is logged.
#[derive(Debug)]
pub(crate) struct RecordingStorage {
    pub(crate) inner: Arc<dyn Storage>,
    pub(crate) rec: Arc<Recorder>,
}

impl Storage for RecordingStorage {
    fn create(&self, path: &Path) -> io::Result<File> {
        let file = self.inner.create(path)?;
        self.rec.created(&file);
        Ok(file)
    }

    fn open(&self, path: &Path, write: bool) -> io::Result<File> {
        self.inner.open(path, write)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)?;
        self.rec.push(Event::Namespace { what: "rename" });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)?;
        self.rec.push(Event::Namespace { what: "remove" });
        Ok(())
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        self.inner.set_len(file, len)
    }

    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        self.inner.allocate(file, len)?;
        self.rec.push(Event::Extend { file: self.rec.file_id(file), len });
        Ok(())
    }

    fn write_all_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        let id = self.rec.write_started(self.rec.file_id(file), offset, buf.into());
        let result = self.inner.write_all_at(file, buf, offset);
        self.rec.push(Event::WriteDone { id, written: if result.is_ok() { buf.len() } else { 0 } });
        result
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        let id = self.rec.sync_started(self.rec.file_id(file), None, false);
        let result = self.inner.sync_data(file);
        self.rec.push(Event::SyncDone { id, ok: result.is_ok() });
        result
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let id = self.rec.id();
        self.rec.push(Event::DirSyncStart { id });
        let result = self.inner.sync_dir(dir);
        self.rec.push(Event::DirSyncDone { id, ok: result.is_ok() });
        result
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.inner.list(dir)
    }
}

/// An op in flight: its segment, offset, kind and sync lane (overlapping
/// syncs of one file, which may complete in any order, differ in lane).
type OpKey = (u64, u64, OpKind, usize);
/// The ids its write and its sync were recorded under.
type OpIds = (Option<u64>, Option<u64>);

/// Wraps a journal's backend: records each op at submission (its bytes, and
/// the start of its sync) and at completion.
pub(crate) struct RecordingBackend {
    inner: Box<dyn Backend>,
    rec: Arc<Recorder>,
    /// (write id, sync id) of the ops in flight, by segment, offset and
    /// kind; oldest first where several share a key (syncs of one file).
    ids: HashMap<OpKey, Vec<OpIds>>,
}

impl RecordingBackend {
    pub(crate) fn new(inner: Box<dyn Backend>, rec: Arc<Recorder>) -> RecordingBackend {
        RecordingBackend { inner, rec, ids: HashMap::new() }
    }

    fn key(op: &Op) -> OpKey {
        (op.file.key, op.offset.get(), op.kind, op.lane)
    }
}

impl RecordingBackend {
    /// Records `op`'s start: its bytes, and the start of its sync.
    fn started(&self, op: &Op) -> OpIds {
        let file = self.rec.file_id(&op.file.file);
        let write = op.is_write().then(|| {
            let data: Vec<u8> = op.slices().flatten().copied().collect();
            self.rec.write_started(file, op.offset.get(), data.into())
        });
        let sync = (op.kind != OpKind::Write).then(|| self.rec.sync_started(file, write, op.is_dsync_write()));
        (write, sync)
    }

    /// Records the completion of the op started as `ids`.
    fn finished(&self, (write, sync): OpIds, done: &Done) {
        if let Some(id) = write {
            let written = match &done.written {
                Some(Ok(n)) => *n,
                _ => 0,
            };
            self.rec.push(Event::WriteDone { id, written });
        }
        if let Some(id) = sync {
            self.rec.push(Event::SyncDone { id, ok: matches!(done.synced, Some(Ok(()))) });
        }
    }
}

impl Backend for RecordingBackend {
    fn submit(&mut self, op: Op) {
        let ids = self.started(&op);
        self.ids.entry(Self::key(&op)).or_default().push(ids);
        self.inner.submit(op);
    }

    fn perform_now(&mut self, op: Op) -> Done {
        let ids = self.started(&op);
        let done = self.inner.perform_now(op);
        self.finished(ids, &done);
        done
    }

    fn poll_complete(&mut self, cx: &mut Context<'_>) -> Poll<Done> {
        let done = std::task::ready!(self.inner.poll_complete(cx));
        let key = Self::key(&done.op);
        let ids = match self.ids.get_mut(&key) {
            Some(list) if !list.is_empty() => list.remove(0),
            _ => (None, None),
        };
        if self.ids.get(&key).is_some_and(Vec::is_empty) {
            self.ids.remove(&key);
        }
        self.finished(ids, &done);
        Poll::Ready(done)
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }

    fn settled(&self) -> bool {
        self.inner.settled()
    }

    fn substrate(&self) -> crate::Substrate {
        self.inner.substrate()
    }
}
