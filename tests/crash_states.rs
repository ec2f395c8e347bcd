//! Crash-state enumeration (ALICE / SQLite test-VFS style).
//!
//! A workload runs on a real journal opened with a [`Recorder`]: every
//! write, size change, `fdatasync` and directory sync it issues is logged,
//! through the substrate seam and the segment paths outside it, each with
//! the directory listing seen at that moment. The checker replays the log
//! into a model of the disk — a *durable image* per file (what a completed
//! sync covered) plus the operations issued since — and after every event
//! builds the states a crash could leave:
//!
//! - the directory as of the last completed directory sync, or any later
//!   listing — each creation, rename and removal is an event of its own
//!   (metadata operations persist in order, as journaling filesystems commit
//!   them);
//! - every prefix of the unsynced operations; every subset of them when
//!   there are few (writes reordered or dropped), else each one dropped;
//! - each unsynced write torn: cut at its last sector boundary, or with its
//!   last sector garbage.
//!
//! Each distinct state is written to a tmpfs directory and opened with
//! `PointInTime` recovery, which must succeed; then: every record read back
//! is one that was appended, with its payload intact; the records form a
//! contiguous run of what was appended (no holes); every record acknowledged
//! durable before the crash point is there (above a truncation point);
//! atomic batches are all there or all gone; a new append continues after
//! the last record and reads back after another reopen.
//!
//! Negative control: a workload that calls records acknowledged as soon as
//! they are *written* (never synced) must fail the check in some state, or
//! the enumeration proves nothing.
//!
//! `TIDELOG_CRASH_RECORDS` (default 80 per task in an optimised build, 40
//! in a debug one) scales the workloads.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tidelog::testing::{skip, Capability, Event, FileId, Listing, Recorded, Recorder, Seams};
use tidelog::{Journal, JournalOptions, Lsn, Preallocate, Streams, SubstrateChoice};

/// Note tags.
const ACKED: u64 = 1;
const TRUNCATE: u64 = 2;

const SEGMENT: u64 = 1 << 20;
const SECTOR: u64 = 512;

#[derive(Clone, Copy, Debug)]
struct Workload {
    direct: bool,
    dsync: bool,
    preallocate: Preallocate,
    /// Negative control: note records as acknowledged once merely written.
    lie: bool,
    /// A checkpointer: one task appends, and each time a rollover names a
    /// new segment it truncates everything before it, while the rollover's
    /// seal (slowed through the fault seam) is still making the new
    /// segment's header and name durable.
    checkpoint: bool,
    /// Streams instead of plain records: four streams appended to (single
    /// entries and batches), truncated both ways, with metadata, beside a
    /// laggard stream that purges copy forward while the others run.
    streams: bool,
    /// Two of the four appenders are threads on the blocking API (`append`,
    /// then `sync_through`), leading their own rounds whenever the writer
    /// is idle, beside the two async tasks.
    threads: bool,
}

/// What the workload appended: payload by record LSN, and atomic batches.
#[derive(Default)]
struct Appended {
    payloads: BTreeMap<u64, Vec<u8>>,
    batches: Vec<Vec<u64>>,
    /// The streams workload: each stream's states, in order.
    streams: BTreeMap<u64, Vec<Snapshot>>,
}

/// One stream's state after an operation whose frame ends at `end` (the
/// first snapshot, at 0, is the stream before any).
#[derive(Debug, Clone, Default, PartialEq)]
struct Snapshot {
    end: u64,
    first: u64,
    entries: Vec<Vec<u8>>,
    meta: Option<Vec<u8>>,
}

impl Snapshot {
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Same stream state (whatever the frame that made it).
    fn same(&self, other: &Snapshot) -> bool {
        (self.first, &self.entries, &self.meta) == (other.first, &other.entries, &other.meta)
    }
}

/// Records per task: `TIDELOG_CRASH_RECORDS`, else 80 in an optimised
/// build and 40 in a debug one (two rollovers or more; the test checks).
fn records_per_task() -> usize {
    let default = if cfg!(debug_assertions) { 40 } else { 80 };
    std::env::var("TIDELOG_CRASH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A payload that names its task and sequence; sizes vary from 16 B to
/// 24 KiB so that fewer than a hundred records fill a 1 MiB segment.
fn payload(task: usize, seq: usize) -> Vec<u8> {
    let mut x = (task as u64 * 1_000_003 + seq as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    let len = 16 + (x % 24_576) as usize;
    let tag = format!("t{task}s{seq}:");
    let mut p: Vec<u8> = tag.bytes().cycle().take(len).collect();
    p[len - 1] = (x >> 8) as u8;
    p
}

async fn record(substrate: SubstrateChoice, w: Workload, dir: &Path) -> Option<(Vec<Recorded>, Appended)> {
    let opts = JournalOptions::new()
        .substrate(substrate)
        .direct_io(w.direct)
        .dsync_writes(w.dsync)
        .preallocate(w.preallocate)
        .segment_size(SEGMENT);
    let rec = Recorder::new(dir);
    let plan = Arc::new(tidelog::testing::FaultPlan::default());
    if w.checkpoint {
        plan.storage_sync_delay_ms.store(20, std::sync::atomic::Ordering::SeqCst);
    }
    if w.streams {
        let streams = match Seams::new().record(&rec).faults(&plan).open_streams(dir, opts).await {
            Ok(s) => s,
            Err(e @ tidelog::Error::Unsupported(_)) => {
                skip(Capability::IoUring, &format!("crash states ({substrate:?}, {w:?})"), &e.to_string());
                return None;
            }
            Err(e) => panic!("open: {e}"),
        };
        let appended = streams_workload(&streams, &rec, w.lie).await;
        streams.close().await.expect("close");
        return Some((rec.events(), appended));
    }
    let journal = match Seams::new().record(&rec).faults(&plan).open(dir, opts).await {
        Ok(j) => Arc::new(j),
        Err(e @ tidelog::Error::Unsupported(_)) => {
            let cap = if w.direct { Capability::Direct } else { Capability::IoUring };
            skip(cap, &format!("crash states ({substrate:?}, {w:?})"), &e.to_string());
            return None;
        }
        Err(e) => panic!("open: {e}"),
    };
    let appended = Arc::new(Mutex::new(Appended::default()));
    if w.checkpoint {
        checkpointer(&journal, &rec, &appended, dir).await;
        journal.close().await.expect("close");
        let appended = std::mem::take(&mut *appended.lock().unwrap());
        return Some((rec.events(), appended));
    }
    let per_task = records_per_task();
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (journal, rec, appended) = (journal.clone(), rec.clone(), appended.clone());
        if w.threads && task >= 2 {
            tasks.push(blocking_appender(journal, rec, appended, task, 0..per_task));
            continue;
        }
        tasks.push(tokio::spawn(async move {
            for seq in 0..per_task {
                match seq % 7 {
                    // An atomic batch of three, then a sync through it.
                    3 if !w.lie => {
                        let ps: Vec<Vec<u8>> = (0..3).map(|k| payload(task, seq * 10 + k)).collect();
                        let lsns = journal.append_batch_async(&ps).await.expect("batch");
                        let last = *lsns.last().expect("three");
                        journal.sync_through_async(last).await.expect("sync batch");
                        let mut a = appended.lock().unwrap();
                        for (lsn, p) in lsns.iter().zip(ps) {
                            rec.note(ACKED, lsn.as_u64());
                            a.payloads.insert(lsn.as_u64(), p);
                        }
                        a.batches.push(lsns.iter().map(|l| l.as_u64()).collect());
                    }
                    // Written, never waited on for durability (the control
                    // writes only these, and calls them acknowledged).
                    _ if seq % 7 == 5 || w.lie => {
                        let p = payload(task, seq * 10);
                        let lsn = journal.append_async(&p).await.expect("append");
                        if w.lie {
                            rec.note(ACKED, lsn.as_u64());
                        }
                        appended.lock().unwrap().payloads.insert(lsn.as_u64(), p);
                    }
                    _ => {
                        let p = payload(task, seq * 10);
                        let lsn = journal.append_durable_async(&p).await.expect("durable append");
                        rec.note(ACKED, lsn.as_u64());
                        appended.lock().unwrap().payloads.insert(lsn.as_u64(), p);
                    }
                }
                // Halfway, task 0 drops the segments below what it has made durable.
                if task == 0 && seq == per_task / 2 {
                    let below = journal.durable_lsn();
                    rec.note(TRUNCATE, below.as_u64());
                    journal.truncate_before(below).await.expect("truncate");
                }
            }
        }));
    }
    for t in tasks {
        common::within(120, "workload task", t).await.expect("task");
    }
    if w.threads {
        // Then each thread alone, so that the writer is idle between its
        // rounds and it leads most of them.
        for task in 2..4 {
            let alone = per_task..per_task + per_task / 2;
            let t = blocking_appender(journal.clone(), rec.clone(), appended.clone(), task, alone);
            common::within(120, "blocking appender", t).await.expect("thread");
        }
        let led = plan.performed_by_callers.load(std::sync::atomic::Ordering::SeqCst);
        assert!(led >= per_task as u64 / 2, "blocking callers led only {led} ops: the workload covers little new");
        eprintln!("{substrate:?} {w:?}: blocking callers performed {led} ops themselves");
    }
    journal.close().await.expect("close");
    let appended = std::mem::take(&mut *appended.lock().unwrap());
    Some((rec.events(), appended))
}

/// A thread on the blocking API appending `task`'s records `seqs`: every
/// other one with `append_durable`, the rest with `append` then
/// `sync_through`, each noted acknowledged, except every seventh (written
/// only).
fn blocking_appender(
    journal: Arc<Journal>,
    rec: Arc<Recorder>,
    appended: Arc<Mutex<Appended>>,
    task: usize,
    seqs: impl IntoIterator<Item = usize> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        for seq in seqs {
            let p = payload(task, seq * 10);
            let lsn = if seq % 2 == 0 && seq % 7 != 5 {
                let lsn = journal.append_durable(&p).expect("blocking durable append");
                rec.note(ACKED, lsn.as_u64());
                lsn
            } else {
                let lsn = journal.append(&p).expect("blocking append");
                if seq % 7 != 5 {
                    journal.sync_through(lsn).expect("blocking sync_through");
                    rec.note(ACKED, lsn.as_u64());
                }
                lsn
            };
            appended.lock().unwrap().payloads.insert(lsn.as_u64(), p);
        }
    })
}

/// The laggard stream of the streams workload: a few entries and metadata,
/// written first and never compacted.
const LAGGARD: u64 = 100;

/// The streams workload (see [`Workload::streams`]). Returns each stream's
/// snapshots; notes each operation acknowledged durable (with `lie`, each
/// entry as soon as it is submitted: the negative control).
async fn streams_workload(streams: &Streams, rec: &Arc<Recorder>, lie: bool) -> Appended {
    let history: Arc<Mutex<BTreeMap<u64, Vec<Snapshot>>>> = Arc::default();
    let start = || Snapshot { first: 1, ..Snapshot::default() };
    // Big payloads: the live data stays small (truncations) while the
    // journal rolls through several segments, so purges copy the laggard.
    let big = |task: usize, seq: usize| {
        let mut p = payload(task, seq);
        p.extend(payload(task, seq + 1_000));
        p
    };
    {
        let mut state = start();
        let mut h = vec![state.clone()];
        for seq in 0..3 {
            let p = payload(9, seq);
            let (_, ticket) = streams.submit(LAGGARD, &p).expect("submit");
            state.entries.push(p);
            state.end = ticket.lsn().as_u64();
            h.push(state.clone());
            rec.note(ACKED, ticket.await.expect("durable").as_u64());
        }
        let lsn = streams.set_meta(LAGGARD, b"laggard").await.expect("meta");
        streams.journal().sync_through_async(lsn).await.expect("sync");
        state.meta = Some(b"laggard".to_vec());
        state.end = lsn.as_u64();
        h.push(state);
        rec.note(ACKED, lsn.as_u64());
        history.lock().unwrap().insert(LAGGARD, h);
    }
    let per_task = records_per_task();
    let mut tasks = Vec::new();
    for task in 0..4usize {
        let (streams, rec, history) = (streams.clone(), rec.clone(), history.clone());
        tasks.push(tokio::spawn(async move {
            let id = task as u64;
            let mut state = start();
            let mut h = vec![state.clone()];
            for seq in 0..per_task {
                let ticket;
                match seq % 6 {
                    2 => {
                        let ps: Vec<Vec<u8>> = (0..3).map(|k| big(task, seq * 10 + k)).collect();
                        let (range, t) = streams.submit_batch(id, &ps).expect("batch");
                        assert_eq!(range.start, state.next());
                        state.entries.extend(ps);
                        state.end = t.lsn().as_u64();
                        ticket = Some(t);
                    }
                    5 => {
                        let lsn = if seq % 12 == 5 && state.entries.len() > 1 {
                            let from = state.next() - 1;
                            state.entries.pop();
                            streams.truncate_suffix(id, from).await.expect("truncate suffix")
                        } else {
                            let to = state.next().saturating_sub(2).max(state.first + 1);
                            let keep = state.entries.len().saturating_sub((to - state.first) as usize);
                            state.entries.drain(..state.entries.len() - keep);
                            state.first = to;
                            streams.truncate_prefix(id, to).await.expect("truncate prefix")
                        };
                        state.end = lsn.as_u64();
                        h.push(state.clone());
                        streams.journal().sync_through_async(lsn).await.expect("sync");
                        rec.note(ACKED, lsn.as_u64());
                        continue;
                    }
                    _ => {
                        let p = big(task, seq * 10);
                        let (index, t) = streams.submit(id, &p).expect("submit");
                        assert_eq!(index, state.next());
                        state.entries.push(p);
                        state.end = t.lsn().as_u64();
                        if lie {
                            rec.note(ACKED, t.lsn().as_u64());
                        }
                        // Every third single entry is never waited on.
                        ticket = (seq % 6 != 3 && !lie).then_some(t);
                    }
                }
                h.push(state.clone());
                if let Some(t) = ticket {
                    rec.note(ACKED, t.await.expect("durable").as_u64());
                }
                if task == 0 && seq == per_task / 2 {
                    // Later opens start from this cut and apply what follows.
                    streams.checkpoint().await.expect("checkpoint");
                }
                if seq % 10 == 7 {
                    let meta = format!("meta {task}/{seq}").into_bytes();
                    let lsn = streams.set_meta(id, &meta).await.expect("meta");
                    state.meta = Some(meta);
                    state.end = lsn.as_u64();
                    h.push(state.clone());
                }
            }
            history.lock().unwrap().insert(id, h);
        }));
    }
    for t in tasks {
        common::within(120, "workload task", t).await.expect("task");
    }
    // Whatever the background purges did, one more: the laggard must have
    // been copied forward for this workload to cover rewrites.
    streams.purge().await.expect("purge");
    let laggard_floor = streams.info(LAGGARD).expect("laggard").floor.expect("floor").as_u64();
    let history = std::mem::take(&mut *history.lock().unwrap());
    let original = history[&LAGGARD][1].end;
    assert!(laggard_floor > original + SEGMENT, "the laggard was never rewritten (floor {laggard_floor})");
    Appended { streams: history, ..Appended::default() }
}

/// Checks a crash state of the streams workload: it opens; there is one
/// cut of the log — a point every stream's state agrees with — at or past
/// every operation acknowledged durable; a new entry lands after it and
/// survives a reopen.
async fn check_streams(
    substrate: SubstrateChoice,
    dir: &Path,
    history: &BTreeMap<u64, Vec<Snapshot>>,
    acked: &[u64],
) -> Result<(), String> {
    let opts = JournalOptions::new().substrate(substrate).segment_size(SEGMENT).precreate_segments(false);
    let streams = Streams::open(dir, opts.clone()).await.map_err(|e| format!("open failed: {e}"))?;
    // Each stream's possible cuts: the spans [end_k, end_k+1) of the
    // snapshots its recovered state equals.
    let mut spans: Vec<Vec<(u64, u64)>> = Vec::new();
    for (&id, snaps) in history {
        let got = recovered(&streams, id).await?;
        let s: Vec<(u64, u64)> = snaps
            .iter()
            .enumerate()
            .filter(|(_, snap)| snap.same(&got))
            .map(|(k, snap)| (snap.end, snaps.get(k + 1).map_or(u64::MAX, |n| n.end)))
            .collect();
        if s.is_empty() {
            return Err(format!(
                "stream {id} recovered as first {} next {} meta {:?}, a state it never had",
                got.first,
                got.next(),
                got.meta.as_deref().map(String::from_utf8_lossy)
            ));
        }
        spans.push(s);
    }
    let durable = acked.iter().copied().max().unwrap_or(0);
    let candidates = spans.iter().flatten().map(|&(from, _)| from).chain([durable]);
    let cut = candidates
        .filter(|&e| e >= durable)
        .find(|&e| spans.iter().all(|s| s.iter().any(|&(from, to)| from <= e && e < to)));
    if cut.is_none() {
        return Err(format!(
            "no cut of the log fits every stream at or past {durable}, the end of the last acknowledged durable record"
        ));
    }
    let id = *history.keys().next().expect("streams");
    let before = recovered(&streams, id).await?;
    let index = streams.append_async(id, b"after the crash").await.map_err(|e| format!("append: {e}"))?;
    if index != before.next() {
        return Err(format!("new entry of stream {id} got index {index}, not {}", before.next()));
    }
    streams.close().await.map_err(|e| format!("close: {e}"))?;
    let streams = Streams::open(dir, opts).await.map_err(|e| format!("second open failed: {e}"))?;
    let again = recovered(&streams, id).await?;
    streams.close().await.map_err(|e| format!("close: {e}"))?;
    if again.entries.last().map(Vec::as_slice) != Some(&b"after the crash"[..]) || again.next() != index + 1 {
        return Err(format!("after a second reopen stream {id}'s new entry {index} is not its last"));
    }
    Ok(())
}

/// A stream's state as a reopened journal holds it.
async fn recovered(streams: &Streams, id: u64) -> Result<Snapshot, String> {
    let Some(info) = streams.info(id) else { return Ok(Snapshot { first: 1, ..Snapshot::default() }) };
    let entries = streams.read_async(id, info.first, usize::MAX).await.map_err(|e| format!("read stream {id}: {e}"))?;
    if entries.len() as u64 != info.next - info.first {
        return Err(format!("stream {id} lists {}..{} but reads {} entries", info.first, info.next, entries.len()));
    }
    let entries = entries.into_iter().map(|e| e.into_payload()).collect();
    Ok(Snapshot { end: 0, first: info.first, entries, meta: streams.meta(id) })
}

/// The checkpointer workload: appends (every third durable, the rest only
/// written) until three rollovers happened, truncating up to each new
/// segment as soon as its name appears.
async fn checkpointer(journal: &Journal, rec: &Recorder, appended: &Mutex<Appended>, dir: &Path) {
    let segments = |dir: &Path| -> Vec<u64> {
        let mut bases: Vec<u64> = std::fs::read_dir(dir)
            .expect("list")
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".tlog")?.parse().ok())
            .collect();
        bases.sort_unstable();
        bases
    };
    let mut known = segments(dir).len();
    let mut truncations = 0;
    let mut seq = 0;
    while truncations < 3 {
        let p = payload(0, seq);
        let lsn = if seq % 3 == 0 {
            let lsn = journal.append_durable_async(&p).await.expect("durable append");
            rec.note(ACKED, lsn.as_u64());
            lsn
        } else {
            journal.append_async(&p).await.expect("append")
        };
        appended.lock().unwrap().payloads.insert(lsn.as_u64(), p);
        seq += 1;
        let bases = segments(dir);
        if bases.len() > known {
            let base = *bases.last().expect("a new segment");
            rec.note(TRUNCATE, base);
            journal.truncate_before(Lsn::new(base)).await.expect("truncate");
            truncations += 1;
        }
        known = segments(dir).len();
    }
}

/// An operation issued and not yet covered by a completed sync.
#[derive(Clone)]
struct Pending {
    id: u64,
    file: FileId,
    op: PendingOp,
}

#[derive(Clone)]
enum PendingOp {
    /// Bytes at an offset; `ended` is how many were written, once known (an
    /// unfinished write may land whole).
    Write {
        offset: u64,
        data: Arc<[u8]>,
        ended: Option<usize>,
    },
    Extend(u64),
}

impl Pending {
    fn bytes(&self) -> Option<(u64, &[u8])> {
        match &self.op {
            PendingOp::Write { offset, data, ended } => Some((*offset, &data[..ended.unwrap_or(data.len())])),
            PendingOp::Extend(_) => None,
        }
    }

    /// False for a write that ended having written nothing.
    fn matters(&self) -> bool {
        self.bytes().is_none_or(|(_, b)| !b.is_empty())
    }
}

/// How one pending op is applied in a crash state.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Apply {
    Whole,
    /// Cut at the last sector boundary before its end.
    Cut,
    /// Its last sector holds garbage.
    Garbage,
}

fn apply(image: &mut Vec<u8>, p: &Pending, how: Apply) {
    match &p.op {
        PendingOp::Extend(len) => grow(image, *len as usize),
        PendingOp::Write { .. } => {
            let (offset, bytes) = p.bytes().expect("a write");
            let end = offset + bytes.len() as u64;
            let last_sector = ((end - 1) / SECTOR * SECTOR).max(offset);
            let keep = match how {
                Apply::Cut => (last_sector - offset) as usize,
                _ => bytes.len(),
            };
            grow(image, offset as usize + keep);
            image[offset as usize..offset as usize + keep].copy_from_slice(&bytes[..keep]);
            if how == Apply::Garbage {
                for (i, b) in image[last_sector as usize..end as usize].iter_mut().enumerate() {
                    *b = 0xA5 ^ (i as u8).wrapping_mul(31);
                }
            }
        }
    }
}

/// Extends `image` with zeros to `len` (`resize` is slow unoptimised).
fn grow(image: &mut Vec<u8>, len: usize) {
    if image.len() < len {
        let mut bigger = vec![0u8; len];
        bigger[..image.len()].copy_from_slice(image);
        *image = bigger;
    }
}

/// Writes `image` as a sparse file: all-zero 64 KiB pieces stay holes, as
/// preallocated space does on a real disk.
fn write_sparse(path: &Path, image: &[u8]) {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::create(path).expect("create crash state file");
    file.set_len(image.len() as u64).expect("size crash state file");
    for (k, piece) in image.chunks(64 << 10).enumerate() {
        // Slice equality is a memcmp, fast even unoptimised.
        if piece != &ZEROS[..piece.len()] {
            file.write_all_at(piece, (k as u64) << 16).expect("write crash state file");
        }
    }
}

/// The disk as the recorded events left it: durable images, pending ops,
/// and the directory listings a crash may leave.
#[derive(Default)]
struct Model {
    durable: HashMap<FileId, Vec<u8>>,
    /// Bumped whenever `durable` changes.
    version: u64,
    pending: Vec<Pending>,
    /// Sync id → (file, ops it covers, a linked write it covers, only that).
    syncs: HashMap<u64, (FileId, Vec<u64>, Option<u64>, bool)>,
    /// Dir sync id → index of its start event.
    dir_syncs: HashMap<u64, usize>,
    /// Index of the start event of the last completed directory sync.
    durable_from: Option<usize>,
}

impl Model {
    fn step(&mut self, events: &[Recorded], i: usize) {
        match &events[i].event {
            Event::Write { id, file, offset, data } => self.pending.push(Pending {
                id: *id,
                file: *file,
                op: PendingOp::Write { offset: *offset, data: data.clone(), ended: None },
            }),
            Event::WriteDone { id, written } => {
                for p in &mut self.pending {
                    if let (true, PendingOp::Write { ended, .. }) = (p.id == *id, &mut p.op) {
                        *ended = Some(*written);
                    }
                }
            }
            // Extends carry no id of their own; the event's index makes one.
            Event::Extend { file, len } => {
                self.pending.push(Pending { id: u64::MAX - i as u64, file: *file, op: PendingOp::Extend(*len) })
            }
            Event::SyncStart { id, file, linked, only_linked } => {
                let ended: Vec<u64> = if *only_linked {
                    Vec::new()
                } else {
                    self.pending
                        .iter()
                        .filter(|p| p.file == *file)
                        .filter(|p| match &p.op {
                            PendingOp::Write { ended, .. } => ended.is_some(),
                            PendingOp::Extend(_) => true,
                        })
                        .map(|p| p.id)
                        .collect()
                };
                self.syncs.insert(*id, (*file, ended, *linked, *only_linked));
            }
            Event::SyncDone { id, ok } => {
                let (file, covered, linked, _) = self.syncs.remove(id).expect("sync started");
                if *ok {
                    self.make_durable(file, &covered, linked);
                }
            }
            Event::DirSyncStart { id } => {
                self.dir_syncs.insert(*id, i);
            }
            Event::DirSyncDone { id, ok } => {
                let start = self.dir_syncs.remove(id).expect("dir sync started");
                if *ok && self.durable_from.is_none_or(|d| d < start) {
                    self.durable_from = Some(start);
                    self.version += 1;
                }
            }
            // Its listing is what a crash right after it leaves.
            Event::Namespace { .. } | Event::Note { .. } => {}
        }
    }

    /// Applies the covered ops (in issue order) to the durable image.
    fn make_durable(&mut self, file: FileId, covered: &[u64], linked: Option<u64>) {
        let mut image = self.durable.remove(&file).unwrap_or_default();
        let mut keep = Vec::new();
        let mut changed = false;
        for p in std::mem::take(&mut self.pending) {
            let is_covered = p.file == file && (covered.contains(&p.id) || Some(p.id) == linked);
            // A linked write covers only what it wrote.
            let ended = match &p.op {
                PendingOp::Write { ended, .. } => ended.is_some(),
                PendingOp::Extend(_) => true,
            };
            if is_covered && ended {
                apply(&mut image, &p, Apply::Whole);
                changed = true;
            } else {
                keep.push(p);
            }
        }
        self.pending = keep;
        self.durable.insert(file, image);
        if changed {
            self.version += 1;
        }
    }

    /// Listings a crash after event `i` may leave, oldest first.
    fn namespaces(&self, events: &[Recorded], i: usize) -> Vec<Listing> {
        let mut out: Vec<Listing> = Vec::new();
        let from = match self.durable_from {
            Some(d) => d,
            None => {
                out.push(Arc::new(Vec::new()));
                0
            }
        };
        for r in &events[from..=i] {
            if !out.iter().any(|l| Arc::ptr_eq(l, &r.names) || **l == *r.names) {
                out.push(r.names.clone());
            }
        }
        out
    }

    /// Which pending ops a crash state applies, and how.
    fn variants(&self) -> Vec<Vec<(usize, Apply)>> {
        let live: Vec<usize> = (0..self.pending.len()).filter(|&k| self.pending[k].matters()).collect();
        let n = live.len();
        let mut out: Vec<Vec<(usize, Apply)>> = Vec::new();
        let whole = |set: &[usize]| set.iter().map(|&k| (k, Apply::Whole)).collect::<Vec<_>>();
        if n <= 5 {
            for mask in 0u32..(1 << n) {
                let set: Vec<usize> = (0..n).filter(|b| mask & (1 << b) != 0).map(|b| live[b]).collect();
                out.push(whole(&set));
            }
        } else {
            for k in 0..=n {
                out.push(whole(&live[..k]));
            }
            for drop in 0..n {
                let set: Vec<usize> =
                    live.iter().copied().enumerate().filter(|&(j, _)| j != drop).map(|(_, k)| k).collect();
                out.push(whole(&set));
            }
        }
        for j in 0..n {
            if self.pending[live[j]].bytes().is_some() {
                for tear in [Apply::Cut, Apply::Garbage] {
                    let mut v = whole(&live[..j]);
                    v.push((live[j], tear));
                    out.push(v);
                }
            }
        }
        out
    }

    /// Writes the crash state into `dir`.
    fn materialize(&self, dir: &Path, names: &Listing, chosen: &[(usize, Apply)]) {
        for (name, file) in names.iter() {
            let mut image = self.durable.get(file).cloned().unwrap_or_default();
            for &(k, how) in chosen {
                if self.pending[k].file == *file {
                    apply(&mut image, &self.pending[k], how);
                }
            }
            write_sparse(&dir.join(name), &image);
        }
    }
}

/// A crash state, for telling new ones from repeats: the durable images'
/// version, the listing, and each applied op (id, bytes, how).
type StateKey = (u64, Vec<(String, FileId)>, Vec<(u64, usize, Apply)>);

/// What the checker found over one recorded workload.
#[derive(Debug, Default)]
struct Sweep {
    states: usize,
    /// Crash points (events) at which some state was new.
    points: usize,
    failures: Vec<String>,
}

fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

async fn sweep(substrate: SubstrateChoice, events: &[Recorded], appended: &Appended, stop_at_failure: bool) -> Sweep {
    let root = tempfile::tempdir_in(scratch_root()).expect("scratch dir");
    let all: Vec<u64> = appended.payloads.keys().copied().collect();
    let mut model = Model::default();
    let mut seen: HashSet<StateKey> = HashSet::new();
    let (mut acked, mut floor) = (Vec::new(), 0u64);
    let mut out = Sweep::default();
    for i in 0..events.len() {
        model.step(events, i);
        match events[i].event {
            Event::Note { tag: ACKED, value } => acked.push(value),
            Event::Note { tag: TRUNCATE, value } => floor = floor.max(value),
            _ => {}
        }
        let before = out.states;
        for names in model.namespaces(events, i) {
            for chosen in model.variants() {
                let key_ops = chosen
                    .iter()
                    .map(|&(k, how)| {
                        let p = &model.pending[k];
                        (p.id, p.bytes().map_or(0, |(_, b)| b.len()), how)
                    })
                    .collect();
                if !seen.insert((model.version, (*names).clone(), key_ops)) {
                    continue;
                }
                let dir = root.path().join(format!("s{}", out.states));
                std::fs::create_dir(&dir).expect("state dir");
                model.materialize(&dir, &names, &chosen);
                let checked = if appended.streams.is_empty() {
                    check(substrate, &dir, &all, appended, &acked, floor).await
                } else {
                    check_streams(substrate, &dir, &appended.streams, &acked).await
                };
                match checked {
                    Ok(()) => {}
                    Err(why) if stop_at_failure => out.failures.push(why),
                    Err(why) if out.failures.len() < 5 => {
                        // The state as it was before recovery touched it.
                        let kept = std::env::temp_dir().join(format!(
                            "tidelog-crash-state-{}-{}",
                            std::process::id(),
                            out.states
                        ));
                        std::fs::create_dir_all(&kept).expect("evidence dir");
                        model.materialize(&kept, &names, &chosen);
                        let ops: Vec<_> = chosen.iter().map(|&(k, how)| (model.pending[k].id, how)).collect();
                        out.failures.push(format!(
                            "after event {i} ({}), names {:?}, pending ops applied {ops:?}: {why} (state kept in {})",
                            describe(&events[i].event),
                            names.iter().map(|n| &n.0).collect::<Vec<_>>(),
                            kept.display()
                        ));
                    }
                    Err(_) => {}
                }
                let _ = std::fs::remove_dir_all(&dir);
                out.states += 1;
                if stop_at_failure && !out.failures.is_empty() {
                    return out;
                }
            }
        }
        out.points += usize::from(out.states > before);
    }
    out
}

fn describe(event: &Event) -> String {
    match event {
        Event::Write { id, file, offset, data } => {
            format!("write {id} of {} bytes at {offset} into inode {}", data.len(), file.ino)
        }
        other => format!("{other:?}"),
    }
}

async fn check(
    substrate: SubstrateChoice,
    dir: &Path,
    all: &[u64],
    appended: &Appended,
    acked: &[u64],
    floor: u64,
) -> Result<(), String> {
    // tmpfs: buffered I/O whatever the workload used; the bytes are the same.
    let opts = JournalOptions::new().substrate(substrate).segment_size(SEGMENT).precreate_segments(false);
    let journal = Journal::open(dir, opts.clone()).await.map_err(|e| format!("open failed: {e}"))?;
    let records = read_back(&journal)?;
    let mut at = None;
    for (lsn, payload) in &records {
        let Some(want) = appended.payloads.get(lsn) else {
            return Err(format!("a record at LSN {lsn} that was never appended"));
        };
        if want != payload {
            return Err(format!(
                "record at LSN {lsn} has a different payload ({} vs {} bytes)",
                payload.len(),
                want.len()
            ));
        }
        let idx = all.binary_search(lsn).expect("known");
        if at.is_some_and(|prev| idx != prev + 1) {
            return Err(format!("hole before LSN {lsn}: records are not a contiguous run"));
        }
        at = Some(idx);
    }
    let present: HashSet<u64> = records.iter().map(|r| r.0).collect();
    if let Some(lost) = acked.iter().find(|&&lsn| lsn > floor && !present.contains(&lsn)) {
        return Err(format!("acknowledged durable record at LSN {lost} is missing ({} read back)", records.len()));
    }
    for batch in &appended.batches {
        let there = batch.iter().filter(|l| present.contains(l)).count();
        if batch[0] > floor && there != 0 && there != batch.len() {
            return Err(format!("atomic batch {batch:?} is partly there ({there} of {})", batch.len()));
        }
    }
    let last = records.last().map_or(0, |r| r.0);
    let next = journal.append_durable_async(b"after the crash").await.map_err(|e| format!("append: {e}"))?;
    if next.as_u64() <= last || acked.iter().any(|&a| a >= next.as_u64()) {
        return Err(format!("new append got LSN {next}, not after the last record ({last})"));
    }
    journal.close().await.map_err(|e| format!("close: {e}"))?;
    let journal = Journal::open(dir, opts).await.map_err(|e| format!("second open failed: {e}"))?;
    let again = read_back(&journal)?;
    journal.close().await.map_err(|e| format!("close: {e}"))?;
    match again.last() {
        Some((lsn, p)) if *lsn == next.as_u64() && p == b"after the crash" && again.len() == records.len() + 1 => {}
        _ => return Err(format!("after a second reopen the new record at {next} is not the last one")),
    }
    Ok(())
}

fn read_back(journal: &Journal) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let mut reader = journal.reader(Lsn::ZERO).map_err(|e| format!("reader: {e}"))?;
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().map_err(|e| format!("read: {e}"))? {
        out.push((r.lsn().as_u64(), r.into_payload()));
    }
    Ok(out)
}

fn run(substrate: SubstrateChoice, w: Workload) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        if substrate == SubstrateChoice::IoUring {
            let probe = tempfile::tempdir().expect("tempdir");
            if let Err(e) = Journal::open(probe.path(), JournalOptions::new().substrate(substrate)).await {
                skip(Capability::IoUring, &format!("crash states ({substrate:?}, {w:?})"), &e.to_string());
                return;
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let Some((events, appended)) = record(substrate, w, dir.path()).await else { return };
        let recorded = started.elapsed();
        // The sweep grows with the workload: 600 s at the default scale,
        // more when TIDELOG_CRASH_RECORDS asks for more (the soak).
        let bound = 600 * (records_per_task() as u64 / 80).max(1);
        let sweep = common::within(bound, "crash-state sweep", sweep(substrate, &events, &appended, w.lie)).await;
        eprintln!(
            "{substrate:?} {w:?}: {} events, {} records ({} acknowledged) recorded in {:.1?}; \
             {} crash states at {} crash points checked in {:.1?}",
            events.len(),
            appended.payloads.len(),
            events.iter().filter(|e| matches!(e.event, Event::Note { tag: ACKED, .. })).count(),
            recorded,
            sweep.states,
            sweep.points,
            started.elapsed() - recorded,
        );
        if w.lie {
            assert!(
                sweep.failures.iter().any(|f| f.contains("acknowledged durable record")),
                "the control acknowledged unsynced records and no crash state lost one: the enumeration proves nothing"
            );
            eprintln!("control failed as it must: {}", sweep.failures[0]);
            return;
        }
        assert!(sweep.failures.is_empty(), "crash states failed:\n{}", sweep.failures.join("\n"));
        let segments: HashSet<&str> = events
            .iter()
            .flat_map(|e| e.names.iter())
            .map(|(n, _)| n.as_str())
            .filter(|n| n.ends_with(".tlog"))
            .collect();
        assert!(segments.len() >= 3, "the workload must roll over at least twice: {segments:?}");
        assert!(sweep.states >= 100, "only {} crash states: the recording saw too little", sweep.states);
    });
}

const BUFFERED: Workload = Workload {
    direct: false,
    dsync: false,
    preallocate: Preallocate::Fallocate,
    lie: false,
    checkpoint: false,
    streams: false,
    threads: false,
};
const DIRECT: Workload = Workload { direct: true, ..BUFFERED };
const DSYNC_GROWING: Workload = Workload { dsync: true, preallocate: Preallocate::None, ..BUFFERED };
const CONTROL: Workload = Workload { lie: true, ..BUFFERED };
const CHECKPOINT: Workload = Workload { checkpoint: true, ..BUFFERED };
const STREAMS: Workload = Workload { streams: true, ..BUFFERED };
const STREAMS_CONTROL: Workload = Workload { lie: true, ..STREAMS };
const THREADS: Workload = Workload { threads: true, ..BUFFERED };
const THREADS_DIRECT: Workload = Workload { threads: true, ..DIRECT };

#[test]
fn blocking_buffered() {
    run(SubstrateChoice::Blocking, BUFFERED);
}

#[test]
fn io_uring_buffered() {
    run(SubstrateChoice::IoUring, BUFFERED);
}

#[test]
fn blocking_direct() {
    run(SubstrateChoice::Blocking, DIRECT);
}

#[test]
fn io_uring_direct() {
    run(SubstrateChoice::IoUring, DIRECT);
}

#[test]
fn blocking_dsync_growing_files() {
    run(SubstrateChoice::Blocking, DSYNC_GROWING);
}

#[test]
fn io_uring_dsync_growing_files() {
    run(SubstrateChoice::IoUring, DSYNC_GROWING);
}

#[test]
fn blocking_checkpointer_truncating_at_each_rollover() {
    run(SubstrateChoice::Blocking, CHECKPOINT);
}

#[test]
fn io_uring_checkpointer_truncating_at_each_rollover() {
    run(SubstrateChoice::IoUring, CHECKPOINT);
}

#[test]
fn blocking_streams_with_truncations_and_rewrites() {
    run(SubstrateChoice::Blocking, STREAMS)
}

#[test]
fn io_uring_streams_with_truncations_and_rewrites() {
    run(SubstrateChoice::IoUring, STREAMS)
}

#[test]
fn blocking_threads_leading_rounds() {
    run(SubstrateChoice::Blocking, THREADS)
}

#[test]
fn io_uring_threads_leading_rounds() {
    run(SubstrateChoice::IoUring, THREADS)
}

#[test]
fn blocking_direct_threads_leading_rounds() {
    run(SubstrateChoice::Blocking, THREADS_DIRECT)
}

#[test]
fn negative_control_streams() {
    run(SubstrateChoice::Blocking, STREAMS_CONTROL)
}

#[test]
fn negative_control_blocking() {
    run(SubstrateChoice::Blocking, CONTROL);
}

#[test]
fn negative_control_io_uring() {
    run(SubstrateChoice::IoUring, CONTROL);
}
