//! Index checkpoints: the stream index as of a cut of the log, in the file
//! `STREAMS`, so that open reads the checkpoint and scans only the frames
//! after its cut instead of the whole journal.
//!
//! A live checkpoint is taken a few streams at a time ([`Snapshot`]), the
//! index lock released in between, so appends never wait for the whole
//! index to be copied. Each stream is recorded as of the log's end when it
//! was copied (its *as-of* LSN, at or past the cut): open applies the frames
//! from the cut on, skipping, for each recorded stream, those below its
//! as-of, which its recorded state already holds. Streams copied later
//! than others, made after the copying began, or removed before their turn
//! all come out as a scan from the cut would have them.
//!
//! The checkpoint is a cache. It is written (to a temp file, synced,
//! renamed over the old one, directory synced) only once every frame below
//! its *reach* (the latest as-of) is durable, and it is used only when it
//! belongs to this journal, its checksum holds, and its cut and reach lie
//! within the journal's segments — else open scans everything, as it would
//! without one. The layout is drawn in `docs/format.md`.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use super::index::{Index, Pos, Stream};

/// The checkpoint's file name in the journal directory.
pub(crate) const FILE_NAME: &str = crate::format::STREAMS_CHECKPOINT_FILE_NAME;
const TEMP_NAME: &str = "STREAMS.tmp";
const MAGIC: &[u8; 8] = b"TLSTRMCK";
/// 2: each stream carries its own as-of LSN (1 had one cut for all).
const VERSION: u32 = 2;
const HEADER_LEN: usize = 48;
/// Where the header's reach and stream count lie (patched at the end).
const REACH_AT: usize = 32;
const COUNT_AT: usize = 40;
/// A stream's fixed fields in the file (before its metadata and entries).
const STREAM_BYTES: usize = 64;
/// `meta_len` of a stream without metadata.
const NO_META: u32 = u32::MAX;

/// A decoded checkpoint: every stream as of an LSN in `cut..=reach`.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    pub(crate) journal_id: u64,
    /// Open applies the log's frames from here.
    pub(crate) cut: u64,
    /// The latest as-of: every frame below it was durable when the file was
    /// written.
    pub(crate) reach: u64,
    pub(crate) index: Index,
    /// Streams recorded as of an LSN past the cut, with that LSN.
    later: HashMap<u64, u64>,
}

impl Checkpoint {
    /// Whether the frame of `stream` at `lsn` (at or past the cut) is still
    /// to be applied: its stream's recorded state does not hold it yet.
    pub(crate) fn applies(&self, stream: u64, lsn: u64) -> bool {
        lsn >= self.reach || self.later.get(&stream).is_none_or(|&as_of| lsn >= as_of)
    }
}

/// Builds a checkpoint's bytes one stream at a time, by ascending id.
struct Encoder {
    out: Vec<u8>,
    count: u64,
    reach: u64,
}

impl Encoder {
    fn new(journal_id: u64, cut: u64) -> Encoder {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&journal_id.to_le_bytes());
        out.extend_from_slice(&cut.to_le_bytes());
        out.extend_from_slice(&[0; 16]); // reach and count, at the end
        debug_assert_eq!(out.len(), HEADER_LEN);
        Encoder { out, count: 0, reach: cut }
    }

    /// Encodes stream `id`'s fields as it stands with every frame below
    /// `as_of` applied and none after, into `out`: what goes before the
    /// encoding of its positions ([`put_entries`]).
    fn push(&mut self, out: &mut Vec<u8>, id: u64, s: &Stream, as_of: u64) {
        for v in [id, as_of, s.first, s.next(), s.anchor, s.meta_lsn().unwrap_or(0)] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let meta_len = s.meta().map_or(NO_META, |m| m.len() as u32);
        out.extend_from_slice(&meta_len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(s.meta().unwrap_or_default());
        out.extend_from_slice(&(s.pos.len() as u64).to_le_bytes());
        self.count += 1;
        self.reach = self.reach.max(as_of);
    }

    /// The file's bytes, and its reach.
    fn finish(mut self) -> (Vec<u8>, u64) {
        self.out[REACH_AT..REACH_AT + 8].copy_from_slice(&self.reach.to_le_bytes());
        self.out[COUNT_AT..COUNT_AT + 8].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32fast::hash(&self.out);
        self.out.extend_from_slice(&crc.to_le_bytes());
        (self.out, self.reach)
    }
}

/// Encodes `index`, every frame below `cut` applied and none after, for
/// the journal `journal_id`.
#[cfg(test)]
pub(crate) fn encode(index: &Index, journal_id: u64, cut: u64) -> Vec<u8> {
    let mut ids: Vec<u64> = index.streams.keys().copied().collect();
    let mut snap = Snapshot::new(&mut ids, 0, journal_id, cut);
    while snap.copy(index, cut, usize::MAX) {}
    snap.finish().0
}

/// A checkpoint of a live index, taken a few streams at a time: the
/// caller locks the index for each [`copy`](Snapshot::copy) (which encodes
/// about a budget's worth of entries into a small buffer) and releases it
/// before the next, so appends wait for a bounded copy, never for the whole
/// index, nor for the whole of one long stream.
pub(crate) struct Snapshot {
    /// The streams the index held when the snapshot began, ascending.
    ids: Vec<u64>,
    next: usize,
    enc: Encoder,
    /// The last copy's bytes, in file order: moved to the encoder's once
    /// the lock is released ([`settle`](Snapshot::settle)), so that the
    /// file's buffer never grows (and moves) under the lock. A long
    /// stream's positions are a piece of their own, moved, not copied.
    copied: Vec<Vec<u8>>,
    /// A stream too long for one copy, part way through.
    partial: Option<Partial>,
}

/// The entries of one stream copied so far, over several copies.
struct Partial {
    id: u64,
    /// The stream's `first` and `reshapes` when its first piece was taken:
    /// while both hold, only appends changed it, and the entries taken
    /// still stand.
    first: u64,
    reshapes: u32,
    /// Its length when its first piece was taken: once that many are
    /// taken, the rest (appended since) goes in the same copy, so a stream
    /// appended to faster than it is copied is still done.
    target: usize,
    /// Entries taken, their encoding, and the last one's start.
    done: usize,
    entries: Vec<u8>,
    prev: u64,
    /// Times it was started again (a change other than an append came
    /// between pieces).
    restarts: u32,
}

/// Starts after which a stream is copied whole in one hold, whatever its
/// length: a stream truncated or rewritten between every two pieces would
/// otherwise never be done.
const MAX_RESTARTS: u32 = 3;
/// Bytes of a stream's encoded positions from which they are moved to the
/// file rather than copied under the lock.
const LONG_ENTRIES: usize = 64 << 10;

impl Snapshot {
    /// A snapshot cut at `cut`, of the streams `ids` (any order) holding
    /// `entries` entries: the log's end and the index's streams, both read
    /// under the index lock.
    pub(crate) fn new(ids: &mut Vec<u64>, entries: usize, journal_id: u64, cut: u64) -> Snapshot {
        let mut ids = std::mem::take(ids);
        ids.sort_unstable(); // one journal state, one file
        let mut enc = Encoder::new(journal_id, cut);
        // Room for it all and some growth: a buffer of megabytes that
        // doubled as it filled would copy itself, and fault in fresh pages,
        // for milliseconds at a time on the task that encodes.
        let estimate = ids.len() * STREAM_BYTES + entries * 6;
        enc.out.reserve(estimate + estimate / 4);
        Snapshot { ids, next: 0, enc, copied: vec![Vec::new()], partial: None }
    }

    /// Moves the last copy's bytes to the file's buffer: called with the
    /// index unlocked (the buffer may grow).
    pub(crate) fn settle(&mut self) {
        for mut piece in self.copied.drain(..) {
            self.enc.out.append(&mut piece);
        }
        self.copied.push(Vec::new());
    }

    /// Copies the next streams from `index` (locked by the caller; every
    /// stream frame below `as_of` is applied to it and none after), about
    /// `budget` entries' worth; a longer stream a piece at a time, recorded
    /// as of the copy that took its last piece. A stream gone since the
    /// snapshot began is left out: open replays its frames from the cut,
    /// its removal among them. Returns whether streams remain.
    pub(crate) fn copy(&mut self, index: &Index, as_of: u64, budget: usize) -> bool {
        let mut spent = 0usize;
        loop {
            if spent >= budget {
                return true;
            }
            let mut p = match self.partial.take() {
                Some(p) => p,
                None => {
                    let Some(&id) = self.ids.get(self.next) else { return false };
                    self.next += 1;
                    let Some(s) = index.get(id) else { continue };
                    Partial {
                        id,
                        first: s.first,
                        reshapes: s.reshapes,
                        target: s.pos.len(),
                        done: 0,
                        // Room for the usual 2-4 bytes per position: a
                        // buffer of megabytes must not double (and copy
                        // itself) under the lock.
                        entries: Vec::with_capacity(s.pos.len().saturating_mul(4)),
                        prev: 0,
                        restarts: 0,
                    }
                }
            };
            let Some(s) = index.get(p.id) else { continue }; // removed between pieces
            if (s.first, s.reshapes) != (p.first, p.reshapes) || p.done > s.pos.len() {
                // Truncated or rewritten between pieces (or removed and
                // made again): what was taken may not stand. Start again.
                p = Partial {
                    first: s.first,
                    reshapes: s.reshapes,
                    target: s.pos.len(),
                    done: 0,
                    prev: 0,
                    restarts: p.restarts + 1,
                    entries: std::mem::take(&mut p.entries),
                    ..p
                };
                p.entries.clear();
            }
            let room = budget - spent;
            let end = if p.restarts >= MAX_RESTARTS || p.done.saturating_add(room) >= p.target {
                s.pos.len()
            } else {
                p.done + room
            };
            p.prev = put_entries(&mut p.entries, s.pos.range(p.done..end), p.prev);
            spent += 1 + end - p.done;
            p.done = end;
            if p.done < s.pos.len() {
                self.partial = Some(p);
                continue; // the budget is spent: the rest next time
            }
            let out = self.copied.last_mut().expect("a piece to write to");
            self.enc.push(out, p.id, s, as_of);
            if p.entries.len() < LONG_ENTRIES {
                out.extend_from_slice(&p.entries);
            } else {
                self.copied.push(p.entries);
                self.copied.push(Vec::new());
            }
        }
    }

    /// The file's bytes, and its reach: they may be written once every
    /// frame below the reach is durable.
    pub(crate) fn finish(mut self) -> (Vec<u8>, u64) {
        debug_assert!(self.partial.is_none() && self.next == self.ids.len(), "finished before the last copy");
        self.settle();
        self.enc.finish()
    }
}

/// Decodes a checkpoint; the reason when the bytes are not one.
pub(crate) fn decode(bytes: &[u8]) -> Result<Checkpoint, &'static str> {
    let Some((body, crc)) = bytes.split_last_chunk::<4>() else { return Err("shorter than its checksum") };
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err("checksum mismatch");
    }
    let mut r = Reader { bytes: body, at: 0 };
    if r.take(8)? != MAGIC {
        return Err("not a stream checkpoint (magic)");
    }
    if r.u32()? != VERSION || r.u32()? != 0 {
        return Err("a checkpoint version this build does not read");
    }
    let (journal_id, cut, reach, count) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    if reach < cut {
        return Err("a reach below the cut");
    }
    let mut index = Index::default();
    let mut later = HashMap::new();
    for _ in 0..count {
        let (id, as_of) = (r.u64()?, r.u64()?);
        let (first, next, anchor, meta_lsn) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        if as_of < cut || as_of > reach {
            return Err("a stream recorded as of an LSN outside the cut and the reach");
        }
        let meta_len = r.u32()?;
        r.u32()?;
        let meta = match meta_len {
            NO_META => None,
            n => Some((meta_lsn, r.take(n as usize)?.into())),
        };
        let n = r.u64()?;
        if first == 0 || next < first || n != next - first || next == u64::MAX {
            return Err("a stream whose range and entry count disagree");
        }
        if n > (body.len() - r.at) as u64 / 2 {
            return Err("more entries than the bytes left could hold"); // each takes two varints
        }
        let mut pos = VecDeque::with_capacity(n as usize);
        let mut lsn = 0u64;
        for _ in 0..n {
            lsn = lsn.wrapping_add(unzigzag(r.varint()?) as u64);
            if lsn >= as_of {
                return Err("an entry position at or past its stream's as-of LSN");
            }
            let len = usize::try_from(r.varint()?).map_err(|_| "an entry length out of range")?;
            pos.push_back(Pos::new(lsn, len));
        }
        let stream = Stream::restored(first, pos, meta, anchor);
        if index.streams.contains_key(&id) {
            return Err("a stream listed twice");
        }
        index.insert(id, stream);
        if as_of > cut {
            later.insert(id, as_of);
        }
    }
    if r.at != body.len() {
        return Err("bytes after the last stream");
    }
    Ok(Checkpoint { journal_id, cut, reach, index, later })
}

/// Deletes the checkpoint in `dir`, durably, if there is one: it may
/// describe frames that are no longer in the log.
pub(crate) fn discard(storage: &dyn crate::storage::Storage, dir: &Path) -> std::io::Result<()> {
    match storage.remove(&dir.join(FILE_NAME)) {
        Ok(()) => storage.sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` as the checkpoint of the journal in `dir`, durably: a
/// temp file, synced, renamed over the checkpoint, the directory synced.
pub(crate) fn write(storage: &dyn crate::storage::Storage, dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(TEMP_NAME);
    let file = storage.create(&tmp)?;
    storage.write_all_at(&file, bytes, 0)?;
    storage.sync_data(&file)?;
    drop(file);
    storage.rename(&tmp, &dir.join(FILE_NAME))?;
    storage.sync_dir(dir)
}

/// Appends the positions `pos` (after one at `prev`, 0 for the first) to
/// `out`, each as two varints: its start minus the previous start (signed:
/// copied-forward entries lie after later ones), and its length. Returns
/// the last start.
fn put_entries<'a>(out: &mut Vec<u8>, pos: impl Iterator<Item = &'a Pos>, mut prev: u64) -> u64 {
    for p in pos {
        put_varint(out, zigzag(p.lsn().wrapping_sub(prev) as i64));
        put_varint(out, p.len() as u64);
        prev = p.lsn();
    }
    prev
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("truncated")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 64 bits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{StreamFrame, StreamOp};

    fn sample() -> Index {
        let mut ix = Index::default();
        let frames = [
            StreamFrame { stream: 1, op: StreamOp::Entry { index: 1, data: b"" } },
            StreamFrame { stream: 2, op: StreamOp::Meta { data: b"vote" } },
            StreamFrame { stream: 1, op: StreamOp::Entry { index: 2, data: b"" } },
            StreamFrame { stream: 3, op: StreamOp::TruncatePrefix { first: 50 } },
            StreamFrame { stream: u64::MAX, op: StreamOp::Entry { index: 1, data: b"" } },
            // Entry 1 of stream 1 copied forward: past entry 2.
            StreamFrame { stream: 1, op: StreamOp::State { first: 1, next: 3, from: 1, count: 1, meta: None } },
            StreamFrame { stream: 1, op: StreamOp::Entry { index: 1, data: b"" } },
        ];
        for (i, f) in frames.iter().enumerate() {
            ix.apply(f, (i as u64) << 20, 48 + i * 8).unwrap();
        }
        ix
    }

    #[test]
    fn a_checkpoint_round_trips_the_index() {
        let ix = sample();
        let bytes = encode(&ix, 0xFEED, 1 << 30);
        let back = decode(&bytes).unwrap();
        assert_eq!((back.journal_id, back.cut), (0xFEED, 1 << 30));
        assert_eq!(back.index.floor(), ix.floor());
        assert_eq!(back.index.live_bytes, ix.live_bytes);
        for (id, s) in &ix.streams {
            let b = &back.index.streams[id];
            assert_eq!(
                (b.first, b.next(), &b.pos, b.meta(), b.meta_lsn(), b.floor_lsn()),
                (s.first, s.next(), &s.pos, s.meta(), s.meta_lsn(), s.floor_lsn())
            );
        }
        assert_eq!(encode(&back.index, 0xFEED, 1 << 30), bytes, "one index, one encoding");
    }

    #[test]
    fn damaged_checkpoints_are_refused_never_misread() {
        let bytes = encode(&sample(), 7, 1 << 30);
        assert!(decode(&bytes).is_ok());
        for at in [0, 9, 20, 45, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad).is_err(), "a flipped bit at {at} was accepted");
        }
        for len in [0, 3, 39, bytes.len() - 1] {
            assert!(decode(&bytes[..len]).is_err(), "a checkpoint cut to {len} bytes was accepted");
        }
    }

    /// A frame applied to an index and kept as the log would keep it.
    type Logged = (StreamFrame<'static>, u64);

    /// Applies the frame of stream `id` that `pick` chooses at `lsn` (40
    /// bytes long), as a unit the live code could write: a copy of an
    /// entry (a rewrite's) after a state frame naming the stream's range,
    /// and after a state frame, copies of every entry it left unknown (a
    /// live index never holds an unknown entry between units). Kinds 12
    /// and up remove the stream.
    fn step(ix: &mut Index, log: &mut Vec<Logged>, lsn: &mut u64, pick: (u8, u64, u64, u64)) {
        let (kind, id, k, j) = pick;
        let kind = if kind >= 12 { 7 } else { kind };
        let op = crate::streams::index::tests::arbitrary_op(ix, kind, id, k, j);
        let mut unit = vec![StreamFrame { stream: id, op }];
        if let (StreamOp::Entry { index, .. }, Some(s)) = (op, ix.get(id)) {
            if index < s.next() {
                let state = StreamOp::State { first: s.first, next: s.next(), from: index, count: 1, meta: None };
                unit.insert(0, StreamFrame { stream: id, op: state });
            }
        }
        let mut at = 0;
        while at < unit.len() {
            *lsn += 100;
            ix.apply_in_unit(&unit[at], *lsn, 40).unwrap();
            log.push((unit[at], *lsn));
            if matches!(unit[at].op, StreamOp::State { .. }) {
                if let Some(s) = ix.get(id) {
                    let unknown = s.pos.iter().enumerate().filter(|(_, p)| p.lsn() == u64::MAX);
                    let copies: Vec<_> = unknown
                        .map(|(k, _)| StreamFrame {
                            stream: id,
                            op: StreamOp::Entry { index: s.first + k as u64, data: b"" },
                        })
                        .collect();
                    unit.splice(at + 1..at + 1, copies);
                }
            }
            at += 1;
        }
        ix.settle();
    }

    /// Opens `bytes` as open does, replaying `log` from its cut.
    fn open(bytes: &[u8], log: &[Logged]) -> Index {
        let mut ck = decode(bytes).unwrap();
        let mut opened = std::mem::take(&mut ck.index);
        for (frame, at) in log.iter().filter(|(f, at)| *at >= ck.cut && ck.applies(f.stream, *at)) {
            opened.apply(frame, *at, 40).unwrap();
        }
        opened
    }

    #[test]
    fn long_streams_go_in_pieces_and_streams_gone_before_their_turn_replay_from_the_cut() {
        let (mut ix, mut log, mut lsn) = (Index::default(), Vec::new(), 0u64);
        let mut put = |ix: &mut Index, log: &mut Vec<Logged>, stream, op| {
            lsn += 100;
            let frame = StreamFrame { stream, op };
            ix.apply(&frame, lsn, 40).unwrap();
            log.push((frame, lsn));
            lsn + 100
        };
        for i in 1..=10 {
            put(&mut ix, &mut log, 1, StreamOp::Entry { index: i, data: b"" });
        }
        for (id, n) in [(2, 3), (3, 2)] {
            for i in 1..=n {
                put(&mut ix, &mut log, id, StreamOp::Entry { index: i, data: b"" });
            }
        }
        let end = put(&mut ix, &mut log, 3, StreamOp::Meta { data: b"m" });
        let mut ids: Vec<u64> = ix.streams.keys().copied().collect();
        let mut snap = Snapshot::new(&mut ids, 15, 9, end);
        // Four of stream 1's ten entries; appends to it between pieces
        // stand, and go in with the rest.
        assert!(snap.copy(&ix, end, 4));
        put(&mut ix, &mut log, 1, StreamOp::Entry { index: 11, data: b"" });
        let end = put(&mut ix, &mut log, 1, StreamOp::Entry { index: 12, data: b"" });
        assert!(snap.copy(&ix, end, 4));
        // A truncation between pieces: stream 1 is taken again from its
        // start. Stream 2 changes and goes before its turn; stream 3 goes
        // and comes back.
        put(&mut ix, &mut log, 1, StreamOp::TruncatePrefix { first: 3 });
        put(&mut ix, &mut log, 2, StreamOp::Entry { index: 4, data: b"" });
        put(&mut ix, &mut log, 2, StreamOp::Remove);
        put(&mut ix, &mut log, 3, StreamOp::Remove);
        let end = put(&mut ix, &mut log, 3, StreamOp::Entry { index: 1, data: b"" });
        while snap.copy(&ix, end, 4) {}
        let (bytes, reach) = snap.finish();
        assert_eq!(reach, end);
        let end = put(&mut ix, &mut log, 1, StreamOp::Entry { index: 13, data: b"" });
        let opened = open(&bytes, &log);
        for id in 1..=3 {
            let summary =
                |ix: &Index| ix.get(id).map(|s| (s.first, s.next(), s.pos.clone(), s.meta().map(<[u8]>::to_vec)));
            assert_eq!(summary(&opened), summary(&ix), "stream {id}");
        }
        assert_eq!(ix.get(1).map(|s| (s.first, s.next())), Some((3, 14)));
        assert!(ix.get(2).is_none() && ix.get(3).is_some_and(|s| s.meta().is_none()));
        assert_eq!(decode(&bytes).unwrap().later.len(), 2, "streams 1 and 3 recorded past the cut");
        assert!(end > reach);
    }

    #[test]
    fn entries_cut_and_appended_again_between_pieces_are_taken_again_metadata_is_not() {
        let (mut ix, mut log, mut lsn) = (Index::default(), Vec::new(), 0u64);
        let mut put = |ix: &mut Index, log: &mut Vec<Logged>, op| {
            lsn += 100;
            let frame = StreamFrame { stream: 1, op };
            ix.apply(&frame, lsn, 40).unwrap();
            log.push((frame, lsn));
            lsn + 100
        };
        let mut end = 0;
        for i in 1..=1000 {
            end = put(&mut ix, &mut log, StreamOp::Entry { index: i, data: b"" });
        }
        let mut ids: Vec<u64> = ix.streams.keys().copied().collect();
        let mut snap = Snapshot::new(&mut ids, 1000, 9, end);
        // Metadata between every two pieces (a Raft group's votes and
        // commits): the stream still goes in 100 pieces, not whole.
        let mut copies = 0;
        while snap.copy(&ix, end, 10) {
            copies += 1;
            end = put(&mut ix, &mut log, StreamOp::Meta { data: b"commit" });
            if copies == 50 {
                // Entries 2.. cut and appended again at new positions, past
                // where the copy had got to: what it took no longer stands.
                put(&mut ix, &mut log, StreamOp::TruncateSuffix { from: 2 });
                for i in 2..=1000 {
                    end = put(&mut ix, &mut log, StreamOp::Entry { index: i, data: b"" });
                }
            }
        }
        assert!(copies > 100, "{copies} copies");
        let (bytes, _) = snap.finish();
        let opened = open(&bytes, &log);
        let state = |ix: &Index| ix.get(1).map(|s| (s.first, s.pos.clone(), s.meta().map(<[u8]>::to_vec)));
        assert_eq!(state(&opened), state(&ix));
    }

    #[test]
    fn a_stream_whose_positions_run_long_is_moved_to_the_file_whole() {
        let mut ix = Index::default();
        for (k, id) in [(0u64, 1u64), (1, 2)].into_iter().chain((2..40_002).map(|k| (k, 3))) {
            let index = ix.get(id).map_or(1, |s| s.next());
            ix.apply(&StreamFrame { stream: id, op: StreamOp::Entry { index, data: b"" } }, k * 1000, 40).unwrap();
        }
        let end = 40_002 * 1000;
        let mut ids: Vec<u64> = ix.streams.keys().copied().collect();
        let mut snap = Snapshot::new(&mut ids, 40_002, 5, end);
        let mut copies = 1;
        while snap.copy(&ix, end, 256) {
            snap.settle();
            copies += 1;
        }
        assert!(copies > 100, "stream 3 went in pieces ({copies} copies)");
        let (bytes, _) = snap.finish();
        assert!(bytes.len() > LONG_ENTRIES, "its positions take {} bytes", bytes.len());
        let back = decode(&bytes).unwrap().index;
        for id in 1..=3 {
            assert_eq!(back.get(id).map(|s| (s.first, &s.pos)), ix.get(id).map(|s| (s.first, &s.pos)), "stream {id}");
        }
        assert_eq!(bytes, encode(&ix, 5, end), "pieces or not, one encoding");
    }

    proptest::proptest! {
        /// A checkpoint taken a few streams at a time while frames keep
        /// arriving between the copies (appends, copies, truncations,
        /// metadata, rewrites, removals, streams made and remade), then
        /// opened — its index, the frames from its cut applied except those
        /// each recorded stream holds already — is the live index.
        #[test]
        fn a_checkpoint_taken_while_frames_arrive_opens_to_the_live_index(
            before in proptest::collection::vec((0u8..12, 0u64..10, 0u64..64, 0u64..4), 0..150),
            during in proptest::collection::vec(proptest::collection::vec((0u8..15, 0u64..10, 0u64..64, 0u64..4), 0..4), 0..150),
            after in proptest::collection::vec((0u8..12, 0u64..10, 0u64..64, 0u64..4), 0..20),
            budget in 1usize..20,
        ) {
            let (mut ix, mut log, mut lsn) = (Index::default(), Vec::new(), 0u64);
            for &pick in &before {
                step(&mut ix, &mut log, &mut lsn, pick);
            }
            // Under the lock: the streams, and the log's end (where the next
            // frame goes).
            let mut ids: Vec<u64> = ix.streams.keys().copied().collect();
            let cut = lsn + 100;
            let mut snap = Snapshot::new(&mut ids, 0, 9, cut);
            let mut during = during.into_iter();
            while snap.copy(&ix, lsn + 100, budget) {
                snap.settle();
                // The lock released: appends and operations go on.
                for pick in during.next().unwrap_or_else(|| vec![(0, 0, 0, 0)]) {
                    step(&mut ix, &mut log, &mut lsn, pick);
                }
            }
            let (bytes, reach) = snap.finish();
            proptest::prop_assert!(reach <= lsn + 100);
            for &pick in &after {
                step(&mut ix, &mut log, &mut lsn, pick);
            }
            let mut ck = decode(&bytes).unwrap();
            proptest::prop_assert_eq!((ck.cut, ck.reach), (cut, reach));
            let mut opened = std::mem::take(&mut ck.index);
            // What open does: the frames from the cut, each unless its
            // stream's recorded state holds it already.
            for (frame, at) in log.iter().filter(|(f, at)| *at >= ck.cut && ck.applies(f.stream, *at)) {
                opened.apply(frame, *at, 40).unwrap();
            }
            let mut ids: Vec<u64> = ix.streams.keys().chain(opened.streams.keys()).copied().collect();
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                let (live, back) = (ix.get(id), opened.get(id));
                proptest::prop_assert_eq!(live.is_some(), back.is_some(), "stream {} exists in one only", id);
                if let (Some(l), Some(b)) = (live, back) {
                    proptest::prop_assert_eq!(
                        (l.first, l.next(), &l.pos, l.meta(), l.meta_lsn(), l.anchor, l.floor_lsn()),
                        (b.first, b.next(), &b.pos, b.meta(), b.meta_lsn(), b.anchor, b.floor_lsn()),
                        "stream {}", id
                    );
                }
            }
            proptest::prop_assert_eq!((opened.floor(), opened.live_bytes), (ix.floor(), ix.live_bytes));
        }
    }
}
