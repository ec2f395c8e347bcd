//! Rebuilding the stream index by reading every frame of the journal, in
//! LSN order, and applying the stream frames of each complete unit.

use std::path::Path;

use super::checkpoint::{self, Checkpoint};
use super::index::Index;
use crate::format::{self, Units, UnknownRequired};
use crate::journal::Shared;
use crate::segment::{self, FrameCursor, Step};
use crate::{Error, Lsn, Result};

/// How an index was rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rebuilt {
    /// The checkpoint's cut, if one was used.
    pub(crate) from_checkpoint: Option<u64>,
    /// The journal's id (from its last segment's header).
    pub(crate) journal_id: u64,
}

/// The index of a journal just opened: every frame below its end is
/// written and valid (recovery cut what was not). Starts from the
/// checkpoint when it is usable, else from the first segment.
pub(crate) fn rebuild(shared: &Shared) -> Result<(Index, Rebuilt)> {
    let bases = crate::read::LiveJournal::segments(shared);
    let end = shared.log.next_lsn();
    let last = *bases.last().ok_or_else(|| Error::Internal("an open journal without a segment".into()))?;
    let (_, header) = segment::open(shared.storage.as_ref(), &shared.dir, last, false)?;
    let journal_id = header.journal_id;
    let start = match usable_checkpoint(&shared.dir, journal_id, bases[0], end) {
        Ok(ckpt) => Some(ckpt),
        Err("none") => None,
        Err(why) => {
            tracing::warn!(dir = %shared.dir.display(), why, "stream index checkpoint not used; scanning the journal");
            // Gone before anything is appended: a log that grows back past
            // its cut must not make it look valid.
            checkpoint::discard(shared.storage.as_ref(), &shared.dir).map_err(|e| {
                Error::io("remove the stream index checkpoint", shared.dir.join(checkpoint::FILE_NAME), e)
            })?;
            None
        }
    };
    let from_checkpoint = start.as_ref().map(|c| c.cut);
    let index = scan(&shared.dir, &bases, Some(end), start)?;
    Ok((index, Rebuilt { from_checkpoint, journal_id }))
}

/// The checkpoint in `dir`, if it belongs to the journal and its cut and
/// reach lie within `first..=end` (a cut below the first segment is stale:
/// frames after it are gone); else why not (`"none"` when there is none).
fn usable_checkpoint(dir: &Path, journal_id: u64, first: u64, end: u64) -> Result<Checkpoint, &'static str> {
    let bytes = match std::fs::read(dir.join(checkpoint::FILE_NAME)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("none"),
        Err(_) => return Err("unreadable"),
    };
    let ckpt = checkpoint::decode(&bytes)?;
    if ckpt.journal_id != journal_id {
        return Err("it belongs to another journal");
    }
    if ckpt.cut < first || ckpt.reach > end {
        return Err("its cut or reach lies outside the journal's segments");
    }
    Ok(ckpt)
}

/// The index of the journal in `dir` as it lies on disk, for tools: the
/// last segment's first invalid frame is its end (a torn tail). Always
/// scans every segment (it also checks what a checkpoint would skip).
pub(crate) fn rebuild_offline(dir: &Path) -> Result<Index> {
    let bases = segment::list_to_read(dir)?;
    scan(dir, &bases, None, None)
}

/// A stream frame of a unit not yet complete: its kind and payload (for an
/// entry, only its header — the index does not need the bytes).
struct Held {
    kind: u8,
    payload: Vec<u8>,
    lsn: u64,
    len: usize,
}

/// Applies the stream frames of `bases` (up to `end`, or to the last
/// segment's first invalid frame) to `start`'s index from its cut (except
/// those its streams hold already), or to an empty index from the first
/// segment.
fn scan(dir: &Path, bases: &[u64], end: Option<u64>, start: Option<Checkpoint>) -> Result<Index> {
    let (mut index, from, start) = match start {
        Some(mut ckpt) => (std::mem::take(&mut ckpt.index), ckpt.cut, Some(ckpt)),
        None => (Index::default(), 0, None),
    };
    let mut units = Units::default();
    let mut held: Vec<Held> = Vec::new();
    // The segment holding `from` (a cut at a sealed segment's end is the
    // next one's base).
    let skip = bases.partition_point(|&b| b <= from).saturating_sub(1);
    for (k, &base) in bases.iter().enumerate().skip(skip) {
        let last = k + 1 == bases.len();
        let limit = match bases.get(k + 1) {
            Some(&next) => next,
            None => end.unwrap_or(u64::MAX),
        };
        let seg = segment::open_to_read(dir, base)?;
        let mut cursor = FrameCursor::new(base);
        let mut pos = base.max(from);
        loop {
            let step = cursor
                .step(&seg.file, pos, limit)
                .map_err(|e| Error::io_at("read segment", &seg.path, Lsn::new(pos), e))?;
            let frame = match step {
                Step::Frame(frame) => frame,
                Step::End if pos == limit || (last && end.is_none()) => break,
                Step::Torn | Step::Invalid(_) if last && end.is_none() => break,
                Step::End | Step::Torn => {
                    return Err(Error::corrupt(&seg.path, Lsn::new(pos), "segment ends before the next one starts"))
                }
                Step::Invalid(why) => return Err(Error::corrupt(&seg.path, Lsn::new(pos), why)),
            };
            let fed = units.feed(frame.kind, frame.flags).map_err(|UnknownRequired(kind)| {
                Error::corrupt(&seg.path, Lsn::new(pos), format!("required frame kind {kind:#04x} unknown"))
            })?;
            if matches!(frame.kind, format::KIND_STREAM_ENTRY | format::KIND_STREAM_CONTROL) {
                let keep = if frame.kind == format::KIND_STREAM_ENTRY {
                    format::STREAM_ENTRY_HEADER_LEN.min(frame.payload.len())
                } else {
                    frame.payload.len()
                };
                held.push(Held {
                    kind: frame.kind,
                    payload: frame.payload[..keep].to_vec(),
                    lsn: pos,
                    len: frame.len(),
                });
            }
            pos = frame.end_lsn();
            if fed.unit_ends {
                for h in held.drain(..) {
                    let f = format::decode_stream(h.kind, &h.payload)
                        .map_err(|why| Error::corrupt(&seg.path, Lsn::new(h.lsn), why))?;
                    if start.as_ref().is_some_and(|c| !c.applies(f.stream, h.lsn)) {
                        continue; // its stream's checkpointed state holds it
                    }
                    index
                        .apply_in_unit(&f, h.lsn, h.len)
                        .map_err(|m| Error::corrupt(&seg.path, Lsn::new(h.lsn), m.0))?;
                }
                index.settle();
            }
        }
    }
    // A unit still open here is a torn batch: it holds nothing.
    if let Some((stream, at)) = index.first_unknown() {
        let lsn = Lsn::new(end.unwrap_or(0));
        return Err(Error::corrupt(
            dir,
            lsn,
            format!("stream {stream} entry {at} is live but its frame was not found"),
        ));
    }
    index.shrink();
    Ok(index)
}
