//! Rebuilding the stream index by reading every frame of the journal, in
//! LSN order, and applying the stream frames of each complete unit.

use std::path::Path;

use super::index::Index;
use crate::format::{self, Units, UnknownRequired};
use crate::journal::Shared;
use crate::segment::{self, FrameCursor, Step};
use crate::{Error, Lsn, Result};

/// The index of a journal just opened: every frame below its end is
/// written and valid (recovery cut what was not).
pub(crate) fn rebuild(shared: &Shared) -> Result<Index> {
    let bases = crate::read::LiveJournal::segments(shared);
    scan(&shared.dir, &bases, Some(shared.log.next_lsn()))
}

/// The index of the journal in `dir` as it lies on disk, for tools: the
/// last segment's first invalid frame is its end (a torn tail).
pub(crate) fn rebuild_offline(dir: &Path) -> Result<Index> {
    let bases = segment::list_to_read(dir)?;
    scan(dir, &bases, None)
}

/// A stream frame of a unit not yet complete: its kind and payload (for an
/// entry, only its header — the index does not need the bytes).
struct Held {
    kind: u8,
    payload: Vec<u8>,
    lsn: u64,
    len: usize,
}

fn scan(dir: &Path, bases: &[u64], end: Option<u64>) -> Result<Index> {
    let mut index = Index::default();
    let mut units = Units::default();
    let mut held: Vec<Held> = Vec::new();
    for (k, &base) in bases.iter().enumerate() {
        let last = k + 1 == bases.len();
        let limit = match bases.get(k + 1) {
            Some(&next) => next,
            None => end.unwrap_or(u64::MAX),
        };
        let seg = segment::open_to_read(dir, base)?;
        let mut cursor = FrameCursor::new(base);
        let mut pos = base;
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
                    index.apply(&f, h.lsn, h.len).map_err(|m| Error::corrupt(&seg.path, Lsn::new(h.lsn), m.0))?;
                }
            }
        }
    }
    // A unit still open here is a torn batch: it holds nothing.
    Ok(index)
}
