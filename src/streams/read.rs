//! Reading entries back: the frames the index points at, read with one
//! `pread` per run of adjacent frames, each checked (CRC, LSN, stream and
//! index) before it is handed out.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use super::index::Pos;
use super::StreamEntry;
use crate::format::{self, StreamOp};
use crate::segment::retention::Pin;
use crate::{Error, Lsn, Result};

/// Reads at most this many bytes on the caller's task; more go to the
/// journal's I/O threads.
const INLINE_BYTES: u64 = 256 << 10;
/// Open segment files kept for reading.
const KEEP_FILES: usize = 64;

/// Open segment files, by base LSN. A deleted segment's file stays readable
/// through a descriptor opened before, and sealed segments never change, so
/// a descriptor is good for as long as it is kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct Files {
    open: Arc<Mutex<BTreeMap<u64, Arc<File>>>>,
}

impl Files {
    fn get(&self, dir: &Path, base: u64) -> Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = open.get(&base) {
            return Ok(f.clone());
        }
        let path = dir.join(format::segment_file_name(base));
        let file = Arc::new(File::open(&path).map_err(|e| Error::io("open segment", &path, e))?);
        if open.len() >= KEEP_FILES {
            // The oldest first: reads favour recent entries.
            open.pop_first();
        }
        open.insert(base, file.clone());
        Ok(file)
    }

    /// Forgets the files of segments below `base` (deleted, or about to be).
    pub(crate) fn forget_below(&self, base: u64) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        *open = open.split_off(&base);
    }
}

/// Entries to read: which, where, and the pins that keep their segments.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    stream: u64,
    /// Runs of adjacent frames in one segment: (segment base, first index,
    /// positions).
    runs: Vec<(u64, u64, Vec<Pos>)>,
    _pins: Vec<Pin>,
}

impl Plan {
    /// Groups `wanted` (index, position; ascending indexes) into runs and
    /// pins their segments with `pin`.
    pub(crate) fn new(
        stream: u64,
        wanted: Vec<(u64, Pos)>,
        mut pin: impl FnMut(u64) -> Result<Option<Pin>>,
        segments: &RwLock<Vec<u64>>,
    ) -> Result<Plan> {
        let bases = segments.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut plan = Plan { stream, ..Plan::default() };
        for (i, p) in wanted {
            let at = bases.partition_point(|&b| b <= p.lsn());
            let Some(&base) = at.checked_sub(1).and_then(|k| bases.get(k)) else {
                return Err(Error::Internal(format!("stream {stream} entry {i} lies below every segment")));
            };
            match plan.runs.last_mut() {
                Some((b, _, run)) if *b == base && run.last().is_some_and(|q| q.end() == p.lsn()) => run.push(p),
                _ => {
                    if plan.runs.last().is_none_or(|(b, ..)| *b != base) {
                        plan._pins.extend(pin(base)?);
                    }
                    plan.runs.push((base, i, vec![p]));
                }
            }
        }
        Ok(plan)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The end of the last frame to read.
    pub(crate) fn end(&self) -> u64 {
        self.runs.iter().filter_map(|(_, _, r)| r.last()).map(Pos::end).max().unwrap_or(0)
    }

    /// Whether to read on the caller's task: little, from the page cache.
    pub(crate) fn inline(&self, direct_io: bool) -> bool {
        let bytes: u64 = self.runs.iter().flat_map(|(_, _, r)| r).map(|p| p.len() as u64).sum();
        !direct_io && bytes <= INLINE_BYTES
    }

    /// Reads and checks every entry, in order.
    pub(crate) fn run(&self, files: &Files, dir: &Path) -> Result<Vec<StreamEntry>> {
        let mut out = Vec::with_capacity(self.runs.iter().map(|(_, _, r)| r.len()).sum());
        let mut buf = Vec::new();
        for (base, first_index, run) in &self.runs {
            let file = files.get(dir, *base)?;
            let start = run[0].lsn();
            let len = (run[run.len() - 1].end() - start) as usize;
            buf.resize(len, 0);
            let path = || dir.join(format::segment_file_name(*base));
            file.read_exact_at(&mut buf, format::file_offset(*base, start))
                .map_err(|e| Error::io_at("read stream entries", path(), Lsn::new(start), e))?;
            for (k, p) in run.iter().enumerate() {
                let at = (p.lsn() - start) as usize;
                let index = first_index + k as u64;
                let bad = |why: &str| {
                    Error::corrupt(path(), Lsn::new(p.lsn()), format!("stream {} entry {index}: {why}", self.stream))
                };
                let frame =
                    format::decode_frame(&buf[at..at + p.len()], p.lsn()).map_err(|e| bad(&format!("{e:?}")))?;
                if frame.kind != format::KIND_STREAM_ENTRY {
                    return Err(bad("the index points at a frame that is not a stream entry"));
                }
                let decoded = format::decode_stream(frame.kind, frame.payload).map_err(bad)?;
                match decoded.op {
                    StreamOp::Entry { index: at_index, data } if decoded.stream == self.stream && at_index == index => {
                        out.push(StreamEntry { index, lsn: Lsn::new(p.end()), payload: data.to_vec() })
                    }
                    _ => return Err(bad("the frame holds another stream's or another index's entry")),
                }
            }
        }
        Ok(out)
    }
}
