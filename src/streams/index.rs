//! The in-memory index of every stream: where each live entry's frame lies,
//! each stream's range, metadata, and the oldest LSN it still needs.
//!
//! [`Index::apply_in_unit`] is the one place stream frames take effect, and
//! [`Index::settle`] ends each unit of them (an atomic batch). Live
//! operations check their arguments, write the frames, then apply them; open
//! applies every frame it finds in LSN order. So what a journal holds after
//! a reopen is what it held before, by construction.
//!
//! Segments are deleted oldest first, so open may see only the newer part
//! of a stream's history. That part always holds what the stream needs (its
//! *floor* is never deleted: its first live entry, its metadata frame, and,
//! for an empty stream that has moved past index 1, the frame that moved
//! it), and the rules below converge on the true state from any such part:
//! a stream first seen mid-history starts where its first frame says.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::format::{StreamFrame, StreamOp};

/// Where one entry's frame lies: its start LSN and its length on disk.
/// Packed to 12 bytes: a journal may index millions of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub(crate) struct Pos {
    lsn: u64,
    len: u32,
}

impl Pos {
    /// An entry a state frame declared live whose frame open has not met
    /// yet (a copy later in the log will say where it is).
    const UNKNOWN: Pos = Pos { lsn: u64::MAX, len: 0 };

    pub(crate) fn new(lsn: u64, len: usize) -> Pos {
        Pos { lsn, len: len as u32 }
    }
    fn known(&self) -> bool {
        self.lsn != u64::MAX
    }
    pub(crate) fn lsn(&self) -> u64 {
        self.lsn
    }
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }
    pub(crate) fn end(&self) -> u64 {
        self.lsn + u64::from(self.len)
    }
}

/// A stream's metadata and the frame that set it: boxed, so a stream
/// without any pays 8 bytes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    lsn: u64,
    bytes: Box<[u8]>,
}

/// One stream's state. Kept small: a journal may hold 10^4 idle streams
/// (the next index is `first + pos.len()`, not a field).
#[derive(Debug, Clone, Default)]
pub(crate) struct Stream {
    /// Index of the first live entry (or where the next goes, when empty).
    pub(crate) first: u64,
    /// Entry `first + k` lies at `pos[k]`.
    pub(crate) pos: VecDeque<Pos>,
    meta: Option<Box<Meta>>,
    /// The latest frame that set the range explicitly (truncation,
    /// rewrite); what an empty stream past index 1 needs kept.
    pub(crate) anchor: u64,
    /// Bytes of the live entries' frames.
    pub(crate) bytes: u64,
    /// The floor recorded in [`Index::floors`] (`NO_FLOOR`: none; not an
    /// `Option`, which would cost 8 bytes more).
    floor: u64,
    /// Stamped at every change to its entries but one appended at its end
    /// (see `Index::ticks`; metadata and the anchor are not entries), so
    /// that a checkpoint copying it a piece at a time can tell whether the
    /// pieces it took still stand.
    pub(crate) reshapes: u32,
}

impl Stream {
    fn new(first: u64) -> Stream {
        Stream { first, floor: NO_FLOOR, ..Stream::default() }
    }

    /// A stream as a checkpoint recorded it (`pos` covers its live range).
    pub(super) fn restored(first: u64, pos: VecDeque<Pos>, meta: Option<(u64, Box<[u8]>)>, anchor: u64) -> Stream {
        let bytes = pos.iter().map(|p| p.len() as u64).sum();
        let meta = meta.map(|(lsn, bytes)| Box::new(Meta { lsn, bytes }));
        Stream { first, pos, meta, anchor, bytes, floor: NO_FLOOR, reshapes: 0 }
    }

    /// Index the next append gets; live entries are `first..next()`.
    pub(crate) fn next(&self) -> u64 {
        self.first + self.pos.len() as u64
    }

    /// Its metadata, if any.
    pub(crate) fn meta(&self) -> Option<&[u8]> {
        self.meta.as_ref().map(|m| &m.bytes[..])
    }

    /// The frame that set its metadata, if it has any.
    pub(crate) fn meta_lsn(&self) -> Option<u64> {
        self.meta.as_ref().map(|m| m.lsn)
    }

    fn set_meta(&mut self, bytes: &[u8], lsn: u64) {
        self.meta = Some(Box::new(Meta { lsn, bytes: bytes.into() }));
    }

    /// The oldest LSN this stream needs kept (see the module docs). Its
    /// entries' frames are not in index order once part of it was copied
    /// forward, so this looks at each (callers skip it on a plain append,
    /// which cannot lower it).
    fn floor(&self) -> Option<u64> {
        let entries = self.pos.iter().filter(|p| p.known()).map(Pos::lsn).min();
        let anchor = (self.pos.is_empty() && self.first > 1).then_some(self.anchor);
        [entries, anchor, self.meta_lsn()].into_iter().flatten().min()
    }

    fn clear_from(&mut self, index: u64) {
        let keep = index.saturating_sub(self.first).min(self.pos.len() as u64) as usize;
        for p in self.pos.drain(keep..) {
            self.bytes -= p.len() as u64;
        }
    }

    fn clear_before(&mut self, index: u64) {
        let drop = index.saturating_sub(self.first).min(self.pos.len() as u64) as usize;
        for p in self.pos.drain(..drop) {
            self.bytes -= p.len() as u64;
        }
    }

    /// The oldest LSN it keeps from deletion.
    pub(crate) fn floor_lsn(&self) -> Option<u64> {
        (self.floor != NO_FLOOR).then_some(self.floor)
    }

    /// The position of entry `index`, if live.
    pub(crate) fn get(&self, index: u64) -> Option<Pos> {
        let k = index.checked_sub(self.first)?;
        self.pos.get(usize::try_from(k).ok()?).copied()
    }
}

const NO_FLOOR: u64 = u64::MAX;

/// Entries [`Index::live_per_segment`] counts per [`Index::add_live`]
/// (small in tests, so that they count in pieces).
#[cfg(test)]
const LIVE_PIECE: usize = 2;

/// Why a frame does not fit the stream it names (corruption, or a bug).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Misfit(pub(crate) String);

/// Every stream, and the floors they hold.
#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    pub(crate) streams: HashMap<u64, Stream>,
    /// How many streams have each floor: the smallest is the oldest LSN
    /// any stream needs.
    floors: BTreeMap<u64, u32>,
    /// Bytes of live entry frames across streams.
    pub(crate) live_bytes: u64,
    /// Counts changes to any stream's entries but appends, and streams
    /// made: each stamps its stream's `reshapes` with the count, so that no two states of one id
    /// (a stream removed and made again among them) share a stamp within
    /// 2^32 changes.
    ticks: u32,
    /// Streams whose recorded floor may lie below their true one: a copy
    /// moved the entry that held it, or new metadata replaced the frame
    /// that did. [`Index::settle`] recomputes them, once
    /// per unit of frames rather than once per copy (a recompute walks the
    /// stream's entries). Until then the floor is low, which keeps
    /// segments, never loses them.
    stale: Vec<u64>,
}

impl Index {
    pub(crate) fn get(&self, stream: u64) -> Option<&Stream> {
        self.streams.get(&stream)
    }

    /// The oldest LSN any stream needs, if any stream needs one.
    pub(crate) fn floor(&self) -> Option<u64> {
        self.floors.keys().next().copied()
    }

    /// Gives back the spare capacity the entry lists grew while open read
    /// the journal (a list that doubled holds up to twice its entries).
    pub(crate) fn shrink(&mut self) {
        for s in self.streams.values_mut() {
            s.pos.shrink_to_fit();
        }
        self.streams.shrink_to_fit();
    }

    /// Adds a stream restored from a checkpoint.
    pub(super) fn insert(&mut self, id: u64, mut stream: Stream) {
        let floor = stream.floor();
        stream.floor = floor.unwrap_or(NO_FLOOR);
        self.live_bytes += stream.bytes;
        self.set_floor(None, floor);
        if let Some(old) = self.streams.insert(id, stream) {
            self.live_bytes -= old.bytes;
            self.set_floor(old.floor_lsn(), None);
        }
    }

    /// A live entry whose frame was never met (a state frame declared it and
    /// no copy followed): what a complete journal never has.
    pub(crate) fn first_unknown(&self) -> Option<(u64, u64)> {
        self.streams.iter().find_map(|(&id, s)| s.pos.iter().position(|p| !p.known()).map(|k| (id, s.first + k as u64)))
    }

    /// The bytes of live entries in each segment below the last of `bases`
    /// (segment base LSNs, ascending): `out[k]` for `bases[k]..bases[k + 1]`.
    /// Walks only the streams that pin a segment below it, but every entry
    /// of those (a copy moves an entry above later ones, so a stream's
    /// positions are not in LSN order). Purge does the same a piece at a
    /// time ([`Index::add_live`]), releasing the lock in between.
    #[cfg(test)]
    pub(crate) fn live_per_segment(&self, bases: &[u64]) -> Vec<u64> {
        let Some(&top) = bases.last() else { return Vec::new() };
        let mut out = vec![0u64; bases.len() - 1];
        for id in self.pinning_below(top) {
            let mut from = 0;
            while let Some(next) = self.add_live(id, bases, from, LIVE_PIECE, &mut out) {
                from = next;
            }
        }
        out
    }

    /// Adds to `out` (as [`Index::live_per_segment`] counts) the bytes of
    /// stream `id`'s live entries `from..from + max` (positions in its
    /// list) that lie below the last of `bases`. Returns where the next
    /// piece starts, if any remain.
    pub(crate) fn add_live(&self, id: u64, bases: &[u64], from: usize, max: usize, out: &mut [u64]) -> Option<usize> {
        let (s, &top) = (self.streams.get(&id)?, bases.last()?);
        let end = from.saturating_add(max).min(s.pos.len());
        for p in s.pos.range(from.min(end)..end).filter(|p| p.known() && p.lsn() < top) {
            let k = bases.partition_point(|&b| b <= p.lsn()).saturating_sub(1);
            out[k] += p.len() as u64;
        }
        (end < s.pos.len()).then_some(end)
    }

    /// The first live entry of stream `id` at or after index `from` whose
    /// frame lies below `lsn`, looking at no more than `max` entries:
    /// `Ok(Some(index))`, `Ok(None)` when none up to the stream's end, and
    /// `Err(next)` where the next look starts (the stream gone: `Ok(None)`).
    pub(crate) fn first_below(&self, id: u64, lsn: u64, from: u64, max: u64) -> Result<Option<u64>, u64> {
        let Some(s) = self.streams.get(&id) else { return Ok(None) };
        let from = from.max(s.first);
        let end = from.saturating_add(max).min(s.next());
        match (from..end).find(|&i| s.get(i).is_some_and(|p| p.lsn() < lsn)) {
            Some(i) => Ok(Some(i)),
            None if end == s.next() => Ok(None),
            None => Err(end),
        }
    }

    /// Streams whose floor lies below `lsn`, oldest floor first.
    pub(crate) fn pinning_below(&self, lsn: u64) -> Vec<u64> {
        let mut out: Vec<(u64, u64)> =
            self.streams.iter().filter_map(|(&id, s)| s.floor_lsn().filter(|&f| f < lsn).map(|f| (f, id))).collect();
        out.sort_unstable();
        out.into_iter().map(|(_, id)| id).collect()
    }

    /// Applies the frame at `lsn` (`len` bytes on disk), floors settled.
    #[cfg(test)]
    pub(crate) fn apply(&mut self, frame: &StreamFrame<'_>, lsn: u64, len: usize) -> Result<(), Misfit> {
        self.apply_in_unit(frame, lsn, len)?;
        self.settle();
        Ok(())
    }

    /// Recomputes the floors that copies and metadata left stale.
    pub(crate) fn settle(&mut self) {
        let mut stale = std::mem::take(&mut self.stale);
        for &id in &stale {
            if let Some(s) = self.streams.get_mut(&id) {
                let (old, new) = (s.floor_lsn(), s.floor());
                s.floor = new.unwrap_or(NO_FLOOR);
                self.set_floor(old, new);
            }
        }
        stale.clear();
        self.stale = stale;
    }

    /// Applies the frame at `lsn` (`len` bytes on disk), one of a unit of
    /// frames after which the caller calls [`Index::settle`]. Live callers
    /// have checked the operation first, so a misfit there is a bug; at
    /// open it means the journal's stream frames contradict each other.
    pub(crate) fn apply_in_unit(&mut self, frame: &StreamFrame<'_>, lsn: u64, len: usize) -> Result<(), Misfit> {
        let id = frame.stream;
        if let StreamOp::Remove = frame.op {
            if let Some(s) = self.streams.remove(&id) {
                self.live_bytes -= s.bytes;
                self.set_floor(s.floor_lsn(), None);
            }
            return Ok(());
        }
        let s = match self.streams.entry(id) {
            std::collections::hash_map::Entry::Occupied(s) => s.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let mut s = match frame.op {
                    StreamOp::Entry { index, .. } => Stream::new(index),
                    StreamOp::TruncatePrefix { first } => Stream::new(first),
                    StreamOp::TruncateSuffix { from } => Stream::new(from),
                    StreamOp::State { first, .. } => Stream::new(first),
                    StreamOp::Meta { .. } | StreamOp::Remove => Stream::new(1),
                };
                // A stream removed and made again is not the one it was.
                self.ticks = self.ticks.wrapping_add(1);
                s.reshapes = self.ticks;
                v.insert(s)
            }
        };
        let before = (s.floor_lsn(), s.bytes);
        let mut reshaped = true;
        match frame.op {
            StreamOp::Entry { index, .. } => {
                if s.pos.is_empty() && index > s.first {
                    // Seen mid-history: the entries before it are gone
                    // (truncated later, or in deleted segments).
                    s.first = index;
                }
                if index >= s.first && index < s.next() {
                    // A copy (after a state frame): the entry lies here now.
                    let slot = &mut s.pos[(index - s.first) as usize];
                    let old = std::mem::replace(slot, Pos::new(lsn, len));
                    s.bytes = s.bytes - old.len() as u64 + len as u64;
                    self.live_bytes = self.live_bytes - old.len() as u64 + len as u64;
                    self.ticks = self.ticks.wrapping_add(1);
                    s.reshapes = self.ticks;
                    self.moved(id, old.known().then_some(old.lsn()), lsn);
                    return Ok(());
                } else if index == s.next() {
                    let appended_to_entries = s.pos.back().is_some_and(Pos::known);
                    s.pos.push_back(Pos::new(lsn, len));
                    s.bytes += len as u64;
                    if appended_to_entries && s.floor != NO_FLOOR {
                        // The newest frame: the floor stays where it was.
                        self.live_bytes += len as u64;
                        return Ok(());
                    }
                    reshaped = false; // the entries before it stand (a first seen mid-history moves `first`)
                } else {
                    let next = s.next();
                    return Err(Misfit(format!(
                        "stream {id}: entry {index} where entry {next} was expected (live {}..{next})",
                        s.first
                    )));
                }
            }
            StreamOp::TruncatePrefix { first } => {
                // Past the end, the stream is left empty, continuing there.
                s.clear_before(first);
                s.first = s.first.max(first);
                s.anchor = lsn;
            }
            StreamOp::TruncateSuffix { from } => {
                if from <= s.first {
                    s.clear_from(s.first);
                    s.first = from;
                } else {
                    s.clear_from(from);
                }
                s.anchor = lsn;
            }
            StreamOp::Meta { data } => {
                // Written on every vote and commit: it must not walk the
                // stream's entries each time.
                // Not a reshape: the entries stand (a checkpoint taking the
                // stream in pieces reads the metadata at its last piece).
                let old = s.meta_lsn();
                s.set_meta(data, lsn);
                self.moved(id, old, lsn);
                return Ok(());
            }
            StreamOp::State { first, next, meta, .. } if first == s.first && next == s.next() && !s.pos.is_empty() => {
                // The range as it stands (a live rewrite's, before its
                // copies): no entry becomes unknown, and with entries live
                // the anchor holds no floor; only new metadata moves one.
                // Without the walk of every entry the general case does: a
                // rewrite of a long stream writes one per batch.
                // Not a reshape either: its copies stamp the stream.
                s.anchor = lsn;
                if let Some(meta) = meta {
                    let old = s.meta_lsn();
                    s.set_meta(meta, lsn);
                    self.moved(id, old, lsn);
                }
                return Ok(());
            }
            StreamOp::State { first, next, meta, .. } => {
                // Entries it declares and open has not met yet; each must
                // come as a copy, so a count no journal could hold is damage.
                let unmet = (next - first).saturating_sub(s.pos.len() as u64);
                if unmet > u64::from(u32::MAX) {
                    return Err(Misfit(format!("stream {id}: a state frame declares {unmet} entries not yet seen")));
                }
                if s.next() > next {
                    return Err(Misfit(format!(
                        "stream {id}: a state frame says its entries end at {next}, but it has {}..{}",
                        s.first,
                        s.next()
                    )));
                }
                // Its range is now first..next. Entries seen keep their
                // places; the rest (met again later, as copies) are unknown.
                if s.pos.is_empty() {
                    s.first = first;
                } else if s.first < first {
                    s.clear_before(first);
                    s.first = first;
                }
                while s.first > first {
                    s.pos.push_front(Pos::UNKNOWN);
                    s.first -= 1;
                }
                while s.next() < next {
                    s.pos.push_back(Pos::UNKNOWN);
                }
                if let Some(meta) = meta {
                    s.set_meta(meta, lsn);
                }
                s.anchor = lsn;
            }
            StreamOp::Remove => unreachable!("handled above"),
        }
        if reshaped {
            self.ticks = self.ticks.wrapping_add(1);
            s.reshapes = self.ticks;
        }
        let (floor, bytes) = (s.floor(), s.bytes);
        s.floor = floor.unwrap_or(NO_FLOOR);
        let holds_nothing = s.pos.is_empty() && s.first == 1 && s.meta.is_none();
        self.live_bytes = self.live_bytes + bytes - before.1;
        self.set_floor(before.0, floor);
        if holds_nothing {
            // Empty at index 1, no metadata: the same as never used.
            self.streams.remove(&id);
        }
        Ok(())
    }

    /// Stream `id` needs the frame at `lsn` in place of the one at `old`
    /// (none: nothing was replaced). Its floor only falls, unless the old
    /// frame held it; then the floor is found again at [`Index::settle`],
    /// once per unit rather than once per frame, or rewriting a long stream
    /// would cost the square of its length.
    fn moved(&mut self, id: u64, old: Option<u64>, lsn: u64) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        let floor = s.floor_lsn();
        if old.is_some() && old == floor {
            if self.stale.last() != Some(&id) {
                self.stale.push(id);
            }
        } else if floor.is_none_or(|f| lsn < f) {
            s.floor = lsn;
            self.set_floor(floor, Some(lsn));
        }
    }

    fn set_floor(&mut self, old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            if let Some(n) = self.floors.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.floors.remove(&old);
                }
            }
        }
        if let Some(new) = new {
            *self.floors.entry(new).or_default() += 1;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn entry(stream: u64, index: u64) -> StreamFrame<'static> {
        StreamFrame { stream, op: StreamOp::Entry { index, data: b"" } }
    }

    fn op(stream: u64, op: StreamOp<'static>) -> StreamFrame<'static> {
        StreamFrame { stream, op }
    }

    /// Applies `frames` at LSNs 0, 100, 200, ... (each 40 bytes long).
    fn replay(index: &mut Index, frames: &[StreamFrame<'static>], from: usize) {
        for (i, f) in frames.iter().enumerate().skip(from) {
            index.apply(f, i as u64 * 100, 40).unwrap();
        }
    }

    /// A stream's first and next index, entry LSNs and metadata.
    type Summary = (u64, u64, Vec<u64>, Option<Vec<u8>>);

    fn summary(index: &Index, id: u64) -> Option<Summary> {
        index.get(id).map(|s| {
            let lsns = s.pos.iter().map(|p| p.lsn()).collect();
            (s.first, s.next(), lsns, s.meta().map(<[u8]>::to_vec))
        })
    }

    #[test]
    fn live_bytes_are_counted_per_segment_below_the_last_base() {
        let mut ix = Index::default();
        let frames = [
            entry(1, 1),
            entry(1, 2),
            entry(1, 3),
            entry(2, 1),
            entry(2, 2),
            op(2, StreamOp::TruncatePrefix { first: 2 }),
            entry(3, 1),
            entry(1, 4),
        ];
        replay(&mut ix, &frames, 0);
        // Segments [0, 250), [250, 450), [450, 700); the entry at 700 lies
        // above them, and stream 2's first entry (at 300) is truncated.
        assert_eq!(ix.live_per_segment(&[0, 250, 450, 700]), vec![120, 40, 40]);
        assert_eq!(ix.live_per_segment(&[0, 450]), vec![160]);
        assert!(ix.live_per_segment(&[0]).is_empty());
        assert!(ix.live_per_segment(&[]).is_empty());
        // Looked for a piece at a time, from any index.
        let first_below = |id, lsn, from| {
            let mut from = from;
            loop {
                match ix.first_below(id, lsn, from, 1) {
                    Ok(found) => return found,
                    Err(next) => from = next,
                }
            }
        };
        assert_eq!(first_below(1, 250, 1), Some(1));
        assert_eq!(first_below(1, 250, 3), Some(3));
        assert_eq!(first_below(1, 150, 2), Some(2));
        assert_eq!(first_below(1, 150, 3), None, "entry 3 lies at 200, entry 4 at 700");
        assert_eq!(first_below(1, 800, 4), Some(4));
        assert_eq!(first_below(2, 450, 1), Some(2), "entry 1 is truncated");
        assert_eq!(first_below(9, 450, 1), None, "no such stream");
    }

    #[test]
    fn appends_truncations_and_metadata_move_the_range_and_the_floor() {
        let mut ix = Index::default();
        let frames = [
            entry(7, 1),
            entry(7, 2),
            entry(7, 3),
            op(7, StreamOp::Meta { data: b"v1" }),
            op(7, StreamOp::TruncatePrefix { first: 2 }),
            op(7, StreamOp::TruncateSuffix { from: 3 }),
            entry(7, 3),
        ];
        replay(&mut ix, &frames, 0);
        assert_eq!(summary(&ix, 7), Some((2, 4, vec![100, 600], Some(b"v1".to_vec()))));
        assert_eq!(ix.floor(), Some(100), "entry 2 is the oldest frame stream 7 needs");
        assert_eq!(ix.live_bytes, 80);
        ix.apply(&op(7, StreamOp::TruncatePrefix { first: 10 }), 700, 40).unwrap();
        assert_eq!(summary(&ix, 7), Some((10, 10, vec![], Some(b"v1".to_vec()))));
        assert_eq!(ix.floor(), Some(300), "the metadata frame is still needed");
        ix.apply(&op(7, StreamOp::Meta { data: b"v2" }), 800, 40).unwrap();
        assert_eq!(ix.floor(), Some(700), "an empty stream past 1 keeps the frame that moved it");
        ix.apply(&op(7, StreamOp::Remove), 900, 40).unwrap();
        assert_eq!((ix.floor(), ix.get(7).is_none(), ix.live_bytes), (None, true, 0));
    }

    #[test]
    fn open_from_any_segment_at_or_below_every_floor_finds_the_same_state() {
        // Two streams, interleaved, with truncations both ways and a rewrite.
        let frames = [
            entry(1, 1),
            entry(2, 1),
            entry(1, 2),
            entry(2, 2),
            op(1, StreamOp::TruncatePrefix { first: 2 }),
            entry(2, 3),
            op(2, StreamOp::TruncateSuffix { from: 2 }),
            entry(2, 2),
            op(1, StreamOp::Meta { data: b"m" }),
            entry(1, 3),
            op(2, StreamOp::TruncatePrefix { first: 3 }),
            op(2, StreamOp::State { first: 3, next: 3, from: 3, count: 0, meta: None }),
            op(1, StreamOp::State { first: 2, next: 4, from: 2, count: 2, meta: Some(b"m") }),
            entry(1, 2),
            entry(1, 3),
            entry(1, 4),
            op(3, StreamOp::Meta { data: b"only meta" }),
            entry(3, 1),
        ];
        let mut full = Index::default();
        replay(&mut full, &frames, 0);
        let floor = full.floor().unwrap();
        assert_eq!(floor, 1100, "stream 2's rewrite is the oldest needed frame");
        for from in 0..=(floor / 100) as usize {
            let mut part = Index::default();
            replay(&mut part, &frames, from);
            for id in 1..=3 {
                assert_eq!(summary(&part, id), summary(&full, id), "stream {id} opened from frame {from}");
            }
            assert_eq!(part.floor(), full.floor());
        }
        assert_eq!(summary(&full, 1), Some((2, 5, vec![1300, 1400, 1500], Some(b"m".to_vec()))));
        assert_eq!(summary(&full, 2), Some((3, 3, vec![], None)));
    }

    #[test]
    fn a_stream_copied_forward_in_chunks_opens_the_same_from_any_segment() {
        // Entries 1-6, then copies of 1-3 and of 4-6, each after a state
        // frame, then an append: entries' frames are out of index order.
        let frames = [
            entry(5, 1),
            entry(5, 2),
            entry(5, 3),
            entry(5, 4),
            entry(5, 5),
            entry(5, 6),
            op(5, StreamOp::State { first: 1, next: 7, from: 1, count: 3, meta: None }),
            entry(5, 1),
            entry(5, 2),
            entry(5, 3),
            op(5, StreamOp::State { first: 1, next: 7, from: 4, count: 3, meta: None }),
            entry(5, 4),
            entry(5, 5),
            entry(5, 6),
            entry(5, 7),
        ];
        let mut full = Index::default();
        replay(&mut full, &frames, 0);
        assert_eq!(summary(&full, 5), Some((1, 8, vec![700, 800, 900, 1100, 1200, 1300, 1400], None)));
        assert_eq!(full.floor(), Some(700), "the oldest copy, not the first entry's");
        for from in 0..=7 {
            let mut part = Index::default();
            replay(&mut part, &frames, from);
            assert_eq!(summary(&part, 5), summary(&full, 5), "opened from frame {from}");
            assert_eq!(part.first_unknown(), None);
        }
        // Opened from between the two copies' batches: nothing is missing.
        // Without the second batch (cut off), entries 4-6 are unknown.
        let mut torn = Index::default();
        for (i, f) in frames.iter().enumerate().skip(6).take(5) {
            torn.apply(f, i as u64 * 100, 40).unwrap();
        }
        assert_eq!(torn.first_unknown(), Some((5, 4)));
    }

    #[test]
    fn an_entry_that_skips_ahead_of_known_entries_is_a_misfit() {
        let mut ix = Index::default();
        ix.apply(&entry(5, 1), 0, 40).unwrap();
        assert!(ix.apply(&entry(5, 3), 100, 40).is_err());
        assert!(ix.apply(&entry(5, 1), 100, 40).is_ok(), "a copy of a live entry");
        assert!(ix.apply(&entry(5, 0), 100, 40).is_err());
    }

    /// An operation on stream `id` that fits its state in `ix`, picked by
    /// `kind` (0..12) with `k` and `j` as arguments: appends, copies,
    /// truncations, metadata, state frames that leave positions unknown,
    /// removals, and streams first met mid-history.
    pub(crate) fn arbitrary_op(ix: &Index, kind: u8, id: u64, k: u64, j: u64) -> StreamOp<'static> {
        let s = ix.get(id).map(|s| (s.first, s.next(), s.pos.len() as u64));
        match (kind, s) {
            (7, None) => StreamOp::Entry { index: 1 + j * 5, data: b"" },
            (8, None) => StreamOp::TruncatePrefix { first: 1 + j },
            (0 | 1, _) | (_, None) => StreamOp::Entry { index: s.map_or(1, |s| s.1), data: b"" },
            (2 | 3, Some((first, _, len))) if len > 0 => StreamOp::Entry { index: first + k % len, data: b"" },
            (4, Some((first, next, _))) => StreamOp::TruncatePrefix { first: first + k % (next - first + 1) },
            (5, Some((first, next, _))) if next > first => {
                StreamOp::TruncateSuffix { from: first + k % (next - first) }
            }
            (7, Some(_)) => StreamOp::Remove,
            (8 | 9, Some((first, next, _))) => StreamOp::State {
                first: first.saturating_sub(j % 2).max(1) + (k % 3).min(next - first),
                next: next + j,
                from: first,
                count: 0,
                meta: (k % 2 == 0).then_some(&b"s"[..]),
            },
            _ => StreamOp::Meta { data: b"m" },
        }
    }

    proptest::proptest! {
        /// Copies and metadata settle floors once per unit: within one, no
        /// stream's floor is ever above its true floor (a high floor would
        /// let a needed segment go) and the index's count of floors matches
        /// the streams'; between units every floor is exact. The ops mix
        /// appends, copies, truncations, metadata, state frames that leave
        /// positions unknown, removals and streams first met mid-history.
        #[test]
        fn floors_settled_per_unit_equal_a_full_recompute(
            ops in proptest::collection::vec((0u8..12, 0u64..3, 0u64..64, 0u64..4), 1..250),
            unit in 1usize..12,
        ) {
            let mut ix = Index::default();
            let mut lsn = 0u64;
            for (n, &(kind, id, k, j)) in ops.iter().enumerate() {
                let op = arbitrary_op(&ix, kind, id, k, j);
                lsn += 100;
                ix.apply_in_unit(&StreamFrame { stream: id, op }, lsn, 40).unwrap();
                let mut floors = BTreeMap::<u64, u32>::new();
                for s in ix.streams.values() {
                    if let Some(f) = s.floor_lsn() {
                        *floors.entry(f).or_default() += 1;
                    }
                    if let Some(exact) = s.floor() {
                        let recorded = s.floor_lsn();
                        proptest::prop_assert!(
                            recorded.is_some_and(|r| r <= exact),
                            "floor {:?} above the true {}",
                            recorded,
                            exact
                        );
                    }
                }
                proptest::prop_assert_eq!(&floors, &ix.floors);
                if n % unit == 0 {
                    ix.settle();
                    proptest::prop_assert!(ix.stale.is_empty());
                    for s in ix.streams.values() {
                        proptest::prop_assert_eq!(s.floor_lsn(), s.floor());
                    }
                    let live: u64 = ix.streams.values().map(|s| s.bytes).sum();
                    proptest::prop_assert_eq!(ix.live_bytes, live);
                }
            }
        }
    }
}
