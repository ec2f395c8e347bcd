//! [`Streams`]: many logical logs in one journal, sharing its writes and
//! syncs (group commit across streams).
//!
//! A stream is named by a `u64` and holds entries at dense indexes 1, 2,
//! 3, … (or from wherever its prefix was truncated to). Every stream's
//! entries and operations are frames of the one journal (`format::stream`),
//! so appends to a thousand streams share one write and one `fdatasync`.
//! An in-memory [`index`] maps each live entry to its frame; it is rebuilt
//! at open by reading the journal's frames (`open`). Segments are deleted
//! once no stream needs them ([`Streams::purge`]); streams that lag keep
//! old segments alive until their live entries are copied forward
//! (`rewrite`).

mod checkpoint;
pub(crate) mod index;
mod open;
mod purge;
mod read;

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use purge::PurgeReport;

use crate::format::{self, StreamOp};
use crate::gate::{Level, Wait};
use crate::journal::{Placed, Shared};
use crate::{Error, Journal, JournalOptions, Lsn, Result, Ticket};
use index::Index;

/// Many logs in one journal, each a `u64`-named stream of entries at dense
/// indexes. Cheap to clone; clones share the journal and the index. See
/// `docs/streams.md`.
///
/// Appends and operations on streams (truncations, metadata, removal)
/// resolve once written, durable under `SyncPolicy::Always`; operations
/// resolve with an LSN to pass to [`Journal::sync_through_async`] for
/// durability otherwise: the end of the frame written, or, for one that
/// changed nothing, the journal's end then.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tidelog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use tidelog::{JournalOptions, Streams, SyncPolicy};
///
/// let opts = JournalOptions::default().sync_policy(SyncPolicy::Always);
/// let streams = Streams::open(dir.path(), opts).await?;
/// // Two Raft groups' logs, one journal: their appends share a sync.
/// let (a, b) = tokio::join!(streams.append_async(1, b"a-1"), streams.append_async(2, b"b-1"));
/// assert_eq!((a?, b?), (1, 1));
/// assert_eq!(streams.append_async(1, b"a-2").await?, 2);
/// streams.set_meta(1, b"vote: term 3").await?;
/// streams.truncate_suffix(1, 2).await?; // a Raft conflict: entry 2 goes
/// let entries = streams.read_async(1, 1, 100).await?;
/// assert_eq!(entries.len(), 1);
/// assert_eq!(entries[0].payload(), b"a-1");
/// streams.close().await?;
///
/// let streams = Streams::open(dir.path(), JournalOptions::default()).await?;
/// assert_eq!(streams.info(1).unwrap().next, 2);
/// assert_eq!(streams.meta(1).as_deref(), Some(&b"vote: term 3"[..]));
/// # streams.close().await }
/// ```
#[derive(Debug, Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    journal: Journal,
    index: Mutex<Index>,
    files: read::Files,
    /// One purge at a time.
    purging: tokio::sync::Mutex<()>,
    journal_id: u64,
    /// The cut of the last checkpoint written (or read at open).
    checkpointed: AtomicU64,
    /// One checkpoint at a time.
    checkpointing: tokio::sync::Mutex<()>,
    /// A background checkpoint is scheduled or running.
    checkpoint_scheduled: AtomicBool,
    /// A background purge is scheduled or running.
    purge_scheduled: AtomicBool,
    opened_from_checkpoint: Option<Lsn>,
    /// Where background purges and checkpoints run (the runtime that
    /// opened the journal: blocking appenders have none of their own).
    runtime: tokio::runtime::Handle,
}

/// One entry read back from a stream.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamEntry {
    index: u64,
    lsn: Lsn,
    payload: Vec<u8>,
}

impl StreamEntry {
    /// The entry's index in its stream.
    pub fn index(&self) -> u64 {
        self.index
    }
    /// The end of its frame in the journal (what `sync_through` takes).
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }
    /// The bytes appended.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The bytes appended, owned.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }
}

impl std::fmt::Debug for StreamEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamEntry")
            .field("index", &self.index)
            .field("lsn", &self.lsn)
            .field("len", &self.payload.len())
            .finish()
    }
}

/// What one stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamInfo {
    /// The stream's id.
    pub id: u64,
    /// Index of its first live entry (where the next goes, when empty).
    pub first: u64,
    /// Index the next append gets; live entries are `first..next`.
    pub next: u64,
    /// Bytes its live entries take in the journal (frames, headers included).
    pub bytes: u64,
    /// Length of its metadata, if it has any.
    pub meta_len: Option<usize>,
    /// The oldest LSN it keeps from deletion, if any.
    pub floor: Option<Lsn>,
}

/// The largest index an entry may have (so that the next index after it
/// still fits a `u64`, and `u64::MAX` is never one).
const LAST_INDEX: u64 = u64::MAX - 1;

/// Log bytes between automatic checkpoints of the stream index: what open
/// scans at most beyond the last one.
const CHECKPOINT_EVERY: u64 = 64 << 20;

/// Streams plus entries a checkpoint encodes per hold of the index lock:
/// a few microseconds, what an append may wait.
const CHECKPOINT_CHUNK: usize = 256;

/// A checkpoint's copying runs at most this long at a time, then pauses for
/// [`CHECKPOINT_PAUSE`].
const CHECKPOINT_BURST: std::time::Duration = std::time::Duration::from_micros(500);
const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

impl Streams {
    /// Opens (or creates) the journal in `dir` and rebuilds every stream's
    /// index from its frames. Needs a tokio runtime of either flavour.
    pub async fn open(dir: impl AsRef<Path>, opts: JournalOptions) -> Result<Streams> {
        Self::over(Journal::open(dir, opts).await?).await
    }

    /// Streams over a journal just opened (nothing appended since): its
    /// index rebuilt from the frames. Closes the journal on failure.
    pub(crate) async fn over(journal: Journal) -> Result<Streams> {
        let shared = journal.shared().clone();
        let io = shared.io.clone();
        let index = match io.run(move || open::rebuild(&shared)).await {
            Ok(index) => index,
            Err(panic) => Err(Error::Internal(format!("rebuilding the stream index: {panic}"))),
        };
        let (index, rebuilt) = match index {
            Ok(done) => done,
            Err(e) => {
                let _ = journal.close().await;
                return Err(e);
            }
        };
        let checkpointed = rebuilt.from_checkpoint.unwrap_or(0);
        Ok(Streams {
            inner: Arc::new(Inner {
                journal,
                index: Mutex::new(index),
                files: read::Files::default(),
                purging: tokio::sync::Mutex::new(()),
                journal_id: rebuilt.journal_id,
                checkpointed: AtomicU64::new(checkpointed),
                checkpointing: tokio::sync::Mutex::new(()),
                checkpoint_scheduled: AtomicBool::new(false),
                purge_scheduled: AtomicBool::new(false),
                opened_from_checkpoint: rebuilt.from_checkpoint.map(Lsn::new),
                runtime: tokio::runtime::Handle::current(),
            }),
        })
    }

    /// The journal underneath, for its frontiers, statistics, `sync_through`
    /// and `close`. Plain records appended through it live among the
    /// streams' frames but keep no segment from [`purge`](Self::purge).
    /// Do not call its `truncate_before`: it knows nothing of the streams'
    /// floors and would delete their live entries; `purge` deletes what no
    /// stream needs.
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    fn shared(&self) -> &Arc<Shared> {
        self.inner.journal.shared()
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.inner.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one entry to `stream` (creating it on first use); resolves
    /// with its index once written (durable under `SyncPolicy::Always`).
    pub async fn append_async(&self, stream: u64, payload: impl AsRef<[u8]>) -> Result<u64> {
        let range = self.append_batch_async(stream, &[payload]).await?;
        Ok(range.start)
    }

    /// Appends entries to `stream` as one atomic batch (after a crash all
    /// or none are there); resolves with their indexes once written
    /// (durable under `SyncPolicy::Always`).
    pub async fn append_batch_async<P: AsRef<[u8]>>(&self, stream: u64, payloads: &[P]) -> Result<Range<u64>> {
        let shared = self.shared();
        if let Some(lsn) = shared.backpressure() {
            Wait::new(&shared.gate, Level::Written, lsn).await?;
        }
        let (range, end) = self.place_entries(stream, payloads)?;
        Wait::new(&shared.gate, shared.append_level(), end).await?;
        Ok(range)
    }

    /// Appends one entry without waiting: returns its index now, and a
    /// [`Ticket`] that resolves once it is durable (written, under
    /// `SyncPolicy::Never`). Never blocks.
    pub fn submit(&self, stream: u64, payload: impl AsRef<[u8]>) -> Result<(u64, Ticket)> {
        let (range, end) = self.place_entries(stream, &[payload])?;
        Ok((range.start, self.inner.journal.ticket(end)))
    }

    /// [`submit`](Self::submit) for an atomic batch.
    pub fn submit_batch<P: AsRef<[u8]>>(&self, stream: u64, payloads: &[P]) -> Result<(Range<u64>, Ticket)> {
        let (range, end) = self.place_entries(stream, payloads)?;
        Ok((range, self.inner.journal.ticket(end)))
    }

    /// Blocking [`append_async`](Self::append_async), for threads that are
    /// not tokio workers. While the journal is idle the calling thread
    /// writes (and under `SyncPolicy::Always` syncs) the entry itself, as
    /// [`Journal::append`] does.
    pub fn append(&self, stream: u64, payload: impl AsRef<[u8]>) -> Result<u64> {
        let shared = self.shared();
        if let Some(lsn) = shared.backpressure() {
            shared.gate.wait_blocking(Level::Written, lsn)?;
        }
        let (range, placed) = self.place_entries_with(stream, &[payload], false)?;
        shared.wait_leading(shared.append_level(), placed.end, placed.wake_writer)?;
        Ok(range.start)
    }

    /// Encodes `payloads` as entries `next..` of `stream`, places them and
    /// indexes them, under the index lock (so a stream's indexes follow its
    /// LSNs). Returns their indexes and the end of the last frame.
    fn place_entries<P: AsRef<[u8]>>(&self, stream: u64, payloads: &[P]) -> Result<(Range<u64>, u64)> {
        self.place_entries_with(stream, payloads, true).map(|(range, placed)| (range, placed.end))
    }

    /// [`place_entries`](Self::place_entries); without `wake`, waking the
    /// writer is left to the caller (`Placed::wake_writer`).
    fn place_entries_with<P: AsRef<[u8]>>(
        &self,
        stream: u64,
        payloads: &[P],
        wake: bool,
    ) -> Result<(Range<u64>, Placed)> {
        let shared = self.shared();
        let max = shared.opts.max_record_size;
        if payloads.is_empty() {
            shared.check_open()?;
            let next = self.index().get(stream).map_or(1, |s| s.next());
            return Ok((next..next, Placed { end: shared.log.next_lsn_relaxed(), wake_writer: false }));
        }
        if let Some(p) = payloads.iter().find(|p| p.as_ref().len() > max) {
            return Err(Error::RecordTooLarge { len: p.as_ref().len(), max });
        }
        let mut index = self.index();
        let first = index.get(stream).map_or(1, |s| s.next());
        // The next index after them must still fit: the last is LAST_INDEX.
        if first.checked_add(payloads.len() as u64).is_none() {
            return Err(invalid(stream, first, &format!("entries past index {LAST_INDEX}, the largest")));
        }
        let body = |(p, i): (&P, u64)| EntryBody::new(stream, i, p.as_ref());
        let placed = if let [one] = payloads {
            // The common case: no allocation (small entries are encoded on
            // the stack).
            self.place_and_apply_with(&mut index, &[body((one, first))], &[format::KIND_STREAM_ENTRY], wake)?
        } else {
            let bodies: Vec<EntryBody> = payloads.iter().zip(first..).map(body).collect();
            self.place_and_apply_with(&mut index, &bodies, &vec![format::KIND_STREAM_ENTRY; bodies.len()], wake)?
        };
        drop(index);
        self.maybe_checkpoint(placed.end);
        Ok((first..first + payloads.len() as u64, placed))
    }

    /// Places frames (`bodies` with `kinds`) as one unit and applies each
    /// to the index, which the caller holds locked.
    fn place_and_apply<B: AsRef<[u8]>>(&self, index: &mut Index, bodies: &[B], kinds: &[u8]) -> Result<u64> {
        self.place_and_apply_with(index, bodies, kinds, true).map(|placed| placed.end)
    }

    /// [`place_and_apply`](Self::place_and_apply); without `wake`, waking
    /// the writer is left to the caller (`Placed::wake_writer`).
    fn place_and_apply_with<B: AsRef<[u8]>>(
        &self,
        index: &mut Index,
        bodies: &[B],
        kinds: &[u8],
        wake: bool,
    ) -> Result<Placed> {
        let shared = self.shared();
        let bytes = bodies.iter().map(|b| b.as_ref().len() as u64).sum();
        // Checked before anything is placed: what is placed is written.
        for (body, &kind) in bodies.iter().zip(kinds) {
            format::decode_stream(kind, body.as_ref()).map_err(|why| Error::Internal(why.into()))?;
        }
        let placed = shared.place_frames_with(bodies, Some(kinds), bytes, None, wake)?;
        let end = placed.end;
        // The frames are contiguous and end at `end`.
        let mut at = end - bodies.iter().map(|b| format::frame_len(b.as_ref().len()) as u64).sum::<u64>();
        for (body, &kind) in bodies.iter().zip(kinds) {
            let body = body.as_ref();
            let len = format::frame_len(body.len());
            let lsn = at;
            at += len as u64;
            let frame = format::decode_stream(kind, body).expect("decoded above");
            if let Err(misfit) = index.apply_in_unit(&frame, lsn, len) {
                // The frame is in the log buffer already: stop the journal
                // rather than let memory and disk disagree.
                let err = Error::Internal(misfit.0);
                shared.gate.fail(err.clone());
                if placed.wake_writer {
                    shared.gate.writer_wake.notify_one(); // the wake held back is not the caller's to pay now
                }
                index.settle();
                return Err(err);
            }
        }
        index.settle();
        Ok(placed)
    }

    /// Writes one control frame for `stream` under the index lock, if
    /// `check` (which sees the stream, `None` if unknown) says it changes
    /// anything; resolves once written (durable under `SyncPolicy::Always`)
    /// with the end of the frame — or, when nothing needed writing, the
    /// journal's end as the check saw it: every frame the stream's state
    /// rests on lies below the LSN returned.
    async fn control(
        &self,
        stream: u64,
        op: StreamOp<'_>,
        check: impl FnOnce(Option<&index::Stream>) -> Result<bool>,
    ) -> Result<Lsn> {
        let shared = self.shared();
        shared.check_open()?;
        if let Some(lsn) = shared.backpressure() {
            Wait::new(&shared.gate, Level::Written, lsn).await?;
        }
        let end = {
            let mut index = self.index();
            if !check(index.get(stream))? {
                return Ok(Lsn::new(shared.log.next_lsn()));
            }
            let body = format::encode_control(stream, &op);
            if body.len() > shared.opts.max_record_size + format::STREAM_ENTRY_HEADER_LEN * 2 {
                return Err(Error::RecordTooLarge { len: body.len(), max: shared.opts.max_record_size });
            }
            self.place_and_apply(&mut index, &[body], &[format::KIND_STREAM_CONTROL])?
        };
        Wait::new(&shared.gate, shared.append_level(), end).await
    }

    /// Drops the entries of `stream` below `first` (compaction: a Raft
    /// log purged up to a snapshot). When `first` is past the stream's
    /// end, the stream is left empty and its next entry gets index
    /// `first`. Entries at or past `first` stay. Space comes back when
    /// [`purge`](Self::purge) finds whole segments no stream needs.
    /// Resolves with the LSN to sync through (see [`Streams`]).
    pub async fn truncate_prefix(&self, stream: u64, first: u64) -> Result<Lsn> {
        if first == 0 {
            return Err(invalid(stream, first, "indexes start at 1"));
        }
        let lsn = self
            .control(stream, StreamOp::TruncatePrefix { first }, |s| Ok(s.map_or(first > 1, |s| first > s.first)))
            .await?;
        self.maybe_purge();
        Ok(lsn)
    }

    /// Drops the entries of `stream` at and after `from`, so that the next
    /// append gets index `from` (a Raft follower discarding a conflicting
    /// suffix). `from` below the stream's first live entry is an error;
    /// past its end, nothing happens.
    /// Resolves with the LSN to sync through (see [`Streams`]).
    pub async fn truncate_suffix(&self, stream: u64, from: u64) -> Result<Lsn> {
        self.control(stream, StreamOp::TruncateSuffix { from }, |s| {
            let (first, next) = s.map_or((1, 1), |s| (s.first, s.next()));
            if from < first {
                return Err(invalid(stream, from, &format!("below the stream's first live entry {first}")));
            }
            Ok(from < next)
        })
        .await
    }

    /// Sets the metadata of `stream` (a Raft group's vote and committed
    /// index, say): small bytes kept with the stream, written in the same
    /// group commit as entries. Replaces what was there.
    /// Resolves with the LSN to sync through (see [`Streams`]).
    pub async fn set_meta(&self, stream: u64, meta: &[u8]) -> Result<Lsn> {
        self.control(stream, StreamOp::Meta { data: meta }, |_| Ok(true)).await
    }

    /// The metadata of `stream`, if it has any.
    pub fn meta(&self, stream: u64) -> Option<Vec<u8>> {
        self.index().get(stream).and_then(|s| s.meta().map(<[u8]>::to_vec))
    }

    /// Removes `stream`: its entries and metadata. A later append to its id
    /// starts a new stream at index 1.
    /// Resolves with the LSN to sync through (see [`Streams`]).
    pub async fn remove(&self, stream: u64) -> Result<Lsn> {
        let lsn = self.control(stream, StreamOp::Remove, |s| Ok(s.is_some())).await?;
        self.maybe_purge();
        Ok(lsn)
    }

    /// What `stream` holds, or `None` if it holds nothing (never used,
    /// removed, or empty at index 1 without metadata).
    pub fn info(&self, stream: u64) -> Option<StreamInfo> {
        self.index().get(stream).map(|s| info(stream, s))
    }

    /// Every stream, by id.
    pub fn list(&self) -> Vec<StreamInfo> {
        let index = self.index();
        let mut out: Vec<StreamInfo> = index.streams.iter().map(|(&id, s)| info(id, s)).collect();
        out.sort_unstable_by_key(|s| s.id);
        out
    }

    /// Every stream of the journal in `dir` as it lies on disk, by id:
    /// for tools. Needs no runtime and takes no lock (like
    /// [`JournalReader`](crate::JournalReader)); the last segment's first
    /// invalid frame is taken as its end (a torn tail).
    pub fn list_dir(dir: impl AsRef<Path>) -> Result<Vec<StreamInfo>> {
        let index = open::rebuild_offline(dir.as_ref())?;
        let mut out: Vec<StreamInfo> = index.streams.iter().map(|(&id, s)| info(id, s)).collect();
        out.sort_unstable_by_key(|s| s.id);
        Ok(out)
    }

    /// Up to `max_entries` entries of `stream` from index `from` on, read
    /// from the journal in `dir` as it lies on disk: for tools, like
    /// [`list_dir`](Self::list_dir) (it rebuilds the index first, so read
    /// many entries per call).
    pub fn read_dir(dir: impl AsRef<Path>, stream: u64, from: u64, max_entries: usize) -> Result<Vec<StreamEntry>> {
        let dir = dir.as_ref();
        let index = open::rebuild_offline(dir)?;
        let Some(s) = index.get(stream) else {
            return if from <= 1 { Ok(Vec::new()) } else { Err(invalid(stream, from, "no such stream")) };
        };
        if from < s.first {
            return Err(invalid(stream, from, &format!("below the stream's first live entry {}", s.first)));
        }
        let wanted: Vec<(u64, index::Pos)> =
            (from..s.next()).take(max_entries).filter_map(|i| s.get(i).map(|p| (i, p))).collect();
        let segments = std::sync::RwLock::new(crate::segment::list_to_read(dir)?);
        let plan = read::Plan::new(stream, wanted, |_| Ok(None), &segments)?;
        plan.run(&read::Files::default(), dir)
    }

    /// Up to `max_entries` entries of `stream` from index `from` on, in
    /// order, waiting for them to be written if they are not yet (entries
    /// are readable once appended, durable or not). `from` below the first
    /// live entry is an error; at or past the end, the result is empty.
    pub async fn read_async(&self, stream: u64, from: u64, max_entries: usize) -> Result<Vec<StreamEntry>> {
        let shared = self.shared();
        let plan = loop {
            match self.plan_read(stream, from, max_entries)? {
                Planned::Ready(plan) => break plan,
                Planned::Unwritten(end) => Wait::new(&shared.gate, Level::Written, end).await?,
            };
        };
        if plan.is_empty() {
            return Ok(Vec::new());
        }
        if plan.inline(shared.opts.direct_io) {
            return plan.run(&self.inner.files, &shared.dir);
        }
        let (files, dir) = (self.inner.files.clone(), shared.dir.clone());
        match shared.io.run(move || plan.run(&files, &dir)).await {
            Ok(result) => result,
            Err(panic) => Err(Error::Internal(format!("reading a stream: {panic}"))),
        }
    }

    /// Blocking [`read_async`](Self::read_async).
    pub fn read(&self, stream: u64, from: u64, max_entries: usize) -> Result<Vec<StreamEntry>> {
        let shared = self.shared();
        let plan = loop {
            match self.plan_read(stream, from, max_entries)? {
                Planned::Ready(plan) => break plan,
                Planned::Unwritten(end) => shared.gate.wait_blocking(Level::Written, end)?,
            };
        };
        plan.run(&self.inner.files, &shared.dir)
    }

    /// What to read, pinned, once every frame of it is written: until then
    /// an entry's segment may not be listed yet (the log buffer moves to a
    /// new segment before the writer has made it), so the plan waits.
    fn plan_read(&self, stream: u64, from: u64, max_entries: usize) -> Result<Planned> {
        let shared = self.shared();
        shared.check_open()?;
        let index = self.index();
        let Some(s) = index.get(stream) else {
            return if from <= 1 {
                Ok(Planned::Ready(read::Plan::default()))
            } else {
                Err(invalid(stream, from, "no such stream"))
            };
        };
        if from < s.first {
            return Err(invalid(stream, from, &format!("below the stream's first live entry {}", s.first)));
        }
        let wanted: Vec<(u64, index::Pos)> =
            (from..s.next()).take(max_entries).filter_map(|i| s.get(i).map(|p| (i, p))).collect();
        let end = wanted.iter().map(|(_, p)| p.end()).max().unwrap_or(0);
        if end > shared.gate.written_lsn().as_u64() {
            return Ok(Planned::Unwritten(end));
        }
        // Pinned under the index lock: a live entry's segment is never
        // condemned, and these stay undeleted until read.
        let pin = |base| {
            shared.retention.pin(&shared.segments, base).map(Some).map_err(|e| {
                Error::Internal(format!("stream {stream}: the segment at {base} of a live entry is gone: {e}"))
            })
        };
        read::Plan::new(stream, wanted, pin, &shared.segments).map(Planned::Ready)
    }

    /// Writes a checkpoint of the stream index as of now, once everything
    /// it holds is durable (it syncs), so that the next open reads it and
    /// scans only what follows. Runs by itself every 64 MiB of log and at
    /// [`close`](Self::close). Returns the checkpoint's cut: where the next
    /// open starts reading the log.
    ///
    /// Appends go on while it runs: the index is encoded a few streams at a
    /// time, each under the lock for about 256 entries,
    /// yielding to other tasks in between and pausing for a millisecond
    /// after each half millisecond of work, and written outside the lock.
    /// An index of 10^6 entries takes a few hundred milliseconds so.
    pub async fn checkpoint(&self) -> Result<Lsn> {
        self.checkpoint_paced(true).await
    }

    /// [`checkpoint`](Self::checkpoint); `paced`, its copying pauses now
    /// and then so that appends keep the CPU (else it runs straight
    /// through: at close, nothing else runs).
    async fn checkpoint_paced(&self, paced: bool) -> Result<Lsn> {
        let _one = self.inner.checkpointing.lock().await;
        let shared = self.shared();
        shared.check_open()?;
        let (mut ids, entries, cut) = {
            let index = self.index();
            let entries = index.streams.values().map(|s| s.pos.len()).sum();
            (index.streams.keys().copied().collect::<Vec<u64>>(), entries, shared.log.next_lsn())
        };
        if cut <= self.inner.checkpointed.load(Ordering::Acquire) {
            return Ok(Lsn::new(cut)); // nothing new since the last one
        }
        let mut snap = checkpoint::Snapshot::new(&mut ids, entries, self.inner.journal_id, cut);
        let mut ran = std::time::Instant::now();
        loop {
            let more = {
                let index = self.index();
                // Every stream frame is placed and applied under the index
                // lock, so the index holds exactly those below the log's
                // end read here.
                snap.copy(&index, shared.log.next_lsn(), CHECKPOINT_CHUNK)
            };
            if !more {
                break;
            }
            snap.settle();
            shared.check_open()?; // a journal failed or closed meanwhile: stop here
            if !paced || ran.elapsed() < CHECKPOINT_BURST {
                tokio::task::yield_now().await; // appends on this worker go first
            } else {
                // Off the CPU for a while: on a machine with few cores a
                // copy that ran without pause would take whole time slices
                // from the threads that serve appends. On the journal's
                // runtime, which has a timer (the caller's may not).
                let _ = self.inner.runtime.spawn(async { tokio::time::sleep(CHECKPOINT_PAUSE).await }).await;
                ran = std::time::Instant::now();
            }
        }
        let (bytes, reach) = snap.finish();
        Wait::new(&shared.gate, Level::Durable, reach).await?;
        shared.check_open()?; // durable, but the directory may be another's now
        let (storage, dir) = (shared.storage.clone(), shared.dir.clone());
        let len = bytes.len();
        let written = shared.io.run(move || checkpoint::write(storage.as_ref(), &dir, &bytes));
        match written.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::io("write stream checkpoint", shared.dir.join(checkpoint::FILE_NAME), e)),
            Err(panic) => return Err(Error::Internal(format!("writing the stream checkpoint: {panic}"))),
        };
        self.inner.checkpointed.fetch_max(cut, Ordering::AcqRel);
        tracing::debug!(dir = %shared.dir.display(), cut, reach, bytes = len, "stream index checkpoint written");
        Ok(Lsn::new(cut))
    }

    /// Starts a checkpoint in the background when the log has grown by
    /// [`CHECKPOINT_EVERY`] since the last, and none is being written.
    fn maybe_checkpoint(&self, end: u64) {
        if end < self.inner.checkpointed.load(Ordering::Relaxed) + CHECKPOINT_EVERY {
            return;
        }
        // One background checkpoint at a time, scheduled or running.
        if self.inner.checkpoint_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        self.inner.runtime.spawn(async move {
            let result = this.checkpoint().await;
            this.inner.checkpoint_scheduled.store(false, Ordering::Release);
            match result {
                Ok(_) | Err(Error::Closed) => {}
                Err(e) => {
                    tracing::warn!(dir = %this.shared().dir.display(), error = %e, "stream index checkpoint failed")
                }
            }
        });
    }

    /// The cut of the checkpoint this journal's index was rebuilt from at
    /// open, if one was usable (`None`: every segment was scanned).
    pub fn opened_from_checkpoint(&self) -> Option<Lsn> {
        self.inner.opened_from_checkpoint
    }

    /// Writes a checkpoint (so the next open is quick), then flushes and
    /// syncs everything, stops the writer and releases the directory (see
    /// [`Journal::close`]). A failed checkpoint is logged, not returned:
    /// the journal closes whole either way.
    pub async fn close(&self) -> Result<()> {
        // A purge under way finishes first: none deletes a segment after
        // the directory is released.
        let _no_purge = self.inner.purging.lock().await;
        if self.shared().check_open().is_ok() {
            if let Err(e) = self.checkpoint_paced(false).await {
                tracing::warn!(dir = %self.shared().dir.display(), error = %e, "stream index checkpoint at close failed");
            }
        }
        self.inner.journal.close().await
    }
}

/// An entry frame's payload (stream id, index, bytes), on the stack when
/// small: most entries are, and an allocation per append shows.
#[allow(clippy::large_enum_variant)] // on the stack for one append, on purpose
enum EntryBody {
    Inline { buf: [u8; EntryBody::INLINE], len: usize },
    Heap(Vec<u8>),
}

impl EntryBody {
    const INLINE: usize = 256;

    fn new(stream: u64, index: u64, data: &[u8]) -> EntryBody {
        let header = format::entry_header(stream, index);
        let len = header.len() + data.len();
        if len <= Self::INLINE {
            let mut buf = [0u8; Self::INLINE];
            buf[..header.len()].copy_from_slice(&header);
            buf[header.len()..len].copy_from_slice(data);
            EntryBody::Inline { buf, len }
        } else {
            let mut body = Vec::with_capacity(len);
            body.extend_from_slice(&header);
            body.extend_from_slice(data);
            EntryBody::Heap(body)
        }
    }
}

impl AsRef<[u8]> for EntryBody {
    fn as_ref(&self) -> &[u8] {
        match self {
            EntryBody::Inline { buf, len } => &buf[..*len],
            EntryBody::Heap(body) => body,
        }
    }
}

/// A read's plan, or the frontier to wait for first.
enum Planned {
    Ready(read::Plan),
    Unwritten(u64),
}

fn info(id: u64, s: &index::Stream) -> StreamInfo {
    StreamInfo {
        id,
        first: s.first,
        next: s.next(),
        bytes: s.bytes,
        meta_len: s.meta().map(<[u8]>::len),
        floor: s.floor_lsn().map(Lsn::new),
    }
}

fn invalid(stream: u64, index: u64, reason: &str) -> Error {
    Error::InvalidIndex { stream, index, reason: reason.to_string() }
}
