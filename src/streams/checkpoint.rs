//! Index checkpoints: the stream index as of a cut of the log, in the file
//! `STREAMS`, so that open reads the checkpoint and scans only the frames
//! after its cut instead of the whole journal.
//!
//! The checkpoint is a cache. It is written (to a temp file, synced,
//! renamed over the old one, directory synced) only once every frame below
//! its cut is durable, and it is used only when it belongs to this journal,
//! its checksum holds, and its cut lies within the journal's segments —
//! else open scans everything, as it would without one. The layout is drawn
//! in `docs/format.md`.

use std::collections::VecDeque;
use std::path::Path;

use super::index::{Index, Pos, Stream};

/// The checkpoint's file name in the journal directory.
pub(crate) const FILE_NAME: &str = crate::format::STREAMS_CHECKPOINT_FILE_NAME;
const TEMP_NAME: &str = "STREAMS.tmp";
const MAGIC: &[u8; 8] = b"TLSTRMCK";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 40;
/// `meta_len` of a stream without metadata.
const NO_META: u32 = u32::MAX;

/// A decoded checkpoint: the index as of `cut`.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    pub(crate) journal_id: u64,
    pub(crate) cut: u64,
    pub(crate) index: Index,
}

/// Encodes `index` as of `cut` for the journal `journal_id`.
pub(crate) fn encode(index: &Index, journal_id: u64, cut: u64) -> Vec<u8> {
    let entries: usize = index.streams.values().map(|s| s.pos.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + index.streams.len() * 64 + entries * 4 + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&journal_id.to_le_bytes());
    out.extend_from_slice(&cut.to_le_bytes());
    out.extend_from_slice(&(index.streams.len() as u64).to_le_bytes());
    let mut ids: Vec<u64> = index.streams.keys().copied().collect();
    ids.sort_unstable(); // one journal state, one file
    for id in ids {
        let s = &index.streams[&id];
        for v in [id, s.first, s.next(), s.anchor, s.meta_lsn().unwrap_or(0)] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let meta_len = s.meta().map_or(NO_META, |m| m.len() as u32);
        out.extend_from_slice(&meta_len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(s.meta().unwrap_or_default());
        out.extend_from_slice(&(s.pos.len() as u64).to_le_bytes());
        let mut prev = 0u64;
        for p in &s.pos {
            // Copied-forward entries lie after later ones: signed deltas.
            put_varint(&mut out, zigzag(p.lsn().wrapping_sub(prev) as i64));
            put_varint(&mut out, p.len() as u64);
            prev = p.lsn();
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
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
    let (journal_id, cut, count) = (r.u64()?, r.u64()?, r.u64()?);
    let mut index = Index::default();
    for _ in 0..count {
        let (id, first, next, anchor, meta_lsn) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
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
            if lsn >= cut {
                return Err("an entry position at or past the checkpoint's cut");
            }
            let len = usize::try_from(r.varint()?).map_err(|_| "an entry length out of range")?;
            pos.push_back(Pos::new(lsn, len));
        }
        let stream = Stream::restored(first, pos, meta, anchor);
        if index.streams.contains_key(&id) {
            return Err("a stream listed twice");
        }
        index.insert(id, stream);
    }
    if r.at != body.len() {
        return Err("bytes after the last stream");
    }
    Ok(Checkpoint { journal_id, cut, index })
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
        let bytes = encode(&sample(), 7, 4096);
        for at in [0, 9, 20, 45, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad).is_err(), "a flipped bit at {at} was accepted");
        }
        for len in [0, 3, 39, bytes.len() - 1] {
            assert!(decode(&bytes[..len]).is_err(), "a checkpoint cut to {len} bytes was accepted");
        }
    }
}
