//! The log buffer: where appenders reserve LSNs and copy their frames.
//!
//! An append is one short critical section: assign the LSN, roll to a new
//! segment if the frame does not fit, encode the frame into the tail chunk.
//! No syscall, no allocation in the steady state (chunk buffers are
//! recycled), no message per record. The writer takes every pending chunk at
//! once and writes each with one call. A chunk never spans segments.
//!
//! A large payload handed over as a `Vec` (`append_owned`) is not copied:
//! its frame's header ends the tail chunk (or a small chunk of its own when
//! the tail does not start on a frame boundary), the `Vec` becomes a chunk
//! of its own, and its padding starts the next. Such chunks end inside a
//! frame (`Chunk::ends_frame`), and the writer never ends a write there.
//!
//! With direct I/O every chunk starts on a block boundary of its file and is
//! closed on one: when the writer takes it, or when it is full, a padding
//! frame fills the rest of its last block (or, when that frame would not fit
//! in the segment, the segment is sealed and the writer zero-fills the sealed
//! file's last block). So no write ever covers a block an earlier write
//! covered, and a block holding acknowledged bytes is never written again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::format::{self, FLAG_BATCH_CONTINUES, FRAME_HEADER_LEN, KIND_PADDING, KIND_RECORD};
use crate::substrate::AlignedBuf;
use crate::{Error, Result};

/// Frames for one segment, contiguous from `start_lsn`.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) seg_base: u64,
    pub(crate) start_lsn: u64,
    pub(crate) buf: AlignedBuf,
    /// Records (not frames) in the chunk, for records-per-sync figures.
    pub(crate) records: u64,
    /// The chunk ends on a frame boundary. Only the pieces of an owned
    /// payload's frame do not: a write must not end after one, or the
    /// written frontier would fall inside a frame.
    pub(crate) ends_frame: bool,
    /// The chunk starts on a frame boundary. An owned payload's chunk and
    /// the padding chunk after it do not; the next owned frame's header
    /// never goes into such a chunk, so that no run of chunks longer than
    /// one owned frame (header, payload, padding) ends inside a frame.
    pub(crate) starts_frame: bool,
}

impl Chunk {
    pub(crate) fn end_lsn(&self) -> u64 {
        self.start_lsn + self.buf.len() as u64
    }
}

#[derive(Debug)]
struct State {
    next_lsn: u64,
    seg_base: u64,
    pending: VecDeque<Chunk>,
    spare: Vec<AlignedBuf>,
    spare_bytes: usize,
    /// Set when the journal stops accepting appends (close, drop, poison).
    refused: Option<Error>,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placed {
    /// LSN past the last frame (what `append` returns).
    pub(crate) end: u64,
    /// The pending buffer was empty: the writer may be idle and must be woken.
    pub(crate) wake_writer: bool,
}

#[derive(Debug)]
pub(crate) struct LogBuffer {
    state: Mutex<State>,
    /// Mirror of `State::next_lsn` for lock-free reads.
    next: AtomicU64,
    capacity: u64,
    align: usize,
    /// Direct-I/O block (file offset alignment); 0 for buffered I/O.
    block: u64,
    chunk_cap: usize,
}

/// Payload of the largest padding frame (a block of at most 4096 bytes plus
/// a gap too small for a frame header).
static PADDING: [u8; 8192] = [0; 8192];

/// Bytes of recycled chunk buffers kept for reuse: enough for many large
/// records in flight at once (fresh large buffers cost page faults and
/// zeroing), and the bound on what an idle journal holds.
const SPARE_BYTES: usize = 32 << 20;
/// A chunk stops growing past this; later frames start a new chunk. Keeps
/// every append's copy cheap (no doubling of a huge buffer under the lock)
/// and buffers recyclable.
const CHUNK_BYTES: usize = 1 << 20;

impl LogBuffer {
    /// `block` is the direct-I/O block size (0 for buffered I/O); `end_lsn`
    /// must then lie on a block boundary of its segment.
    pub(crate) fn new(end_lsn: u64, seg_base: u64, segment_size: u64, align: usize, block: u64) -> LogBuffer {
        debug_assert!(block == 0 || format::file_offset(seg_base, end_lsn) % block == 0);
        debug_assert!(block == 0 || (block.is_power_of_two() && block <= 4096));
        LogBuffer {
            state: Mutex::new(State {
                next_lsn: end_lsn,
                seg_base,
                pending: VecDeque::new(),
                spare: Vec::new(),
                spare_bytes: 0,
                refused: None,
            }),
            next: AtomicU64::new(end_lsn),
            capacity: segment_size - format::SEGMENT_HEADER_LEN as u64,
            align,
            block,
            chunk_cap: CHUNK_BYTES,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Critical sections leave the state whole even if a payload's
        // `AsRef` panicked mid-copy (the frame is then never made visible
        // because `next_lsn` is advanced last). Keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next_lsn(&self) -> u64 {
        self.lock().next_lsn
    }

    /// `next_lsn` without the lock; may lag a concurrent append.
    pub(crate) fn next_lsn_relaxed(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Appends frames for `payloads` as one unit (an atomic batch when more
    /// than one). `total` is the sum of their frame lengths. `kinds` gives
    /// each frame's kind (payloads compressed by the caller, beforehand);
    /// `None` makes them all plain records.
    pub(crate) fn append<P: AsRef<[u8]>>(&self, payloads: &[P], kinds: Option<&[u8]>, total: u64) -> Result<Placed> {
        debug_assert!(kinds.is_none_or(|k| k.len() == payloads.len()));
        debug_assert!(total <= self.capacity, "checked by the caller");
        let mut st = self.lock();
        if let Some(err) = &st.refused {
            return Err(err.clone());
        }
        if st.pending.back().is_some_and(|c| c.seg_base == st.seg_base && c.buf.len() >= self.chunk_cap) {
            self.close_chunk(&mut st);
        }
        if st.next_lsn + total > st.seg_base + self.capacity {
            st.seg_base = st.next_lsn; // seal: the next segment starts here
        }
        let wake_writer = st.pending.is_empty();
        let start = st.next_lsn;
        // Room for these frames (and a padding frame) without growing.
        let need = total as usize + if self.block != 0 { self.block as usize + FRAME_HEADER_LEN } else { 0 };
        let chunk = self.tail_chunk(&mut st, need, false);
        let mut lsn = start;
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.iter().enumerate() {
            let payload = payload.as_ref();
            let flags = if i < last { FLAG_BATCH_CONTINUES } else { 0 };
            let len = format::frame_len(payload.len());
            let dst = chunk.buf.extend(len); // encode_frame writes every byte
            let kind = kinds.map_or(KIND_RECORD, |k| k[i]);
            format::encode_frame(dst, lsn, kind, flags, payload);
            lsn += len as u64;
        }
        debug_assert_eq!(lsn, start + total);
        chunk.records += payloads.len() as u64;
        st.next_lsn = lsn;
        self.next.store(lsn, Ordering::Release);
        Ok(Placed { end: lsn, wake_writer })
    }

    /// Appends one plain record from `payload` itself, without copying it
    /// (buffered I/O only): its header ends the tail chunk (or a small
    /// chunk of its own, when the tail does not start on a frame
    /// boundary), the `Vec` is the next chunk, and the frame's padding
    /// starts a chunk of its own for the frames after it. `crc` was fed exactly `payload`'s bytes;
    /// the caller checked its size against the segment.
    pub(crate) fn append_owned(&self, payload: Vec<u8>, crc: &crc32fast::Hasher) -> Result<Placed> {
        debug_assert_eq!(self.block, 0, "direct I/O writes aligned chunks only");
        let len = payload.len();
        let total = format::frame_len(len) as u64;
        debug_assert!(total <= self.capacity, "checked by the caller");
        let mut st = self.lock();
        if let Some(err) = &st.refused {
            return Err(err.clone());
        }
        if st.next_lsn + total > st.seg_base + self.capacity {
            st.seg_base = st.next_lsn; // seal: the next segment starts here
        }
        let wake_writer = st.pending.is_empty();
        let (seg_base, start) = (st.seg_base, st.next_lsn);
        let header = format::encode_frame_header(start, KIND_RECORD, 0, len, crc);
        let tail = self.tail_chunk(&mut st, FRAME_HEADER_LEN, true);
        tail.buf.extend(FRAME_HEADER_LEN).copy_from_slice(&header);
        tail.ends_frame = false;
        let body = start + FRAME_HEADER_LEN as u64;
        let pad = total as usize - FRAME_HEADER_LEN - len;
        let buf = AlignedBuf::from_vec(payload);
        let ends_frame = pad == 0;
        st.pending.push_back(Chunk { seg_base, start_lsn: body, buf, records: 1, ends_frame, starts_frame: false });
        if pad > 0 {
            // Later frames may join it: a spare, or room for a few.
            let mut buf = self.chunk_buf(&mut st, pad, 64 << 10);
            buf.extend(pad).fill(0);
            let start_lsn = body + len as u64;
            st.pending.push_back(Chunk { seg_base, start_lsn, buf, records: 0, ends_frame: true, starts_frame: false });
        }
        st.next_lsn = start + total;
        self.next.store(st.next_lsn, Ordering::Release);
        Ok(Placed { end: st.next_lsn, wake_writer })
    }

    /// The chunk the next frame goes into, at `st.next_lsn` in the current
    /// segment: the tail one, or a new one with room for `need` bytes when
    /// the tail is full, of a sealed segment, or an owned payload, and for
    /// an owned frame's header (`owned_header`) when the tail does not
    /// start on a frame boundary.
    fn tail_chunk<'s>(&self, st: &'s mut State, need: usize, owned_header: bool) -> &'s mut Chunk {
        let (seg_base, start) = (st.seg_base, st.next_lsn);
        let open = st.pending.back().is_some_and(|c| {
            c.seg_base == seg_base
                && c.buf.len() < self.chunk_cap
                && !c.buf.is_taken_vec()
                && (c.starts_frame || !owned_header)
        });
        if !open {
            // An owned frame's header is all its chunk will ever hold: the
            // payload's chunk follows it at once.
            let fresh = if owned_header { need } else { self.chunk_cap };
            let buf = self.chunk_buf(st, need, fresh);
            let chunk = Chunk { seg_base, start_lsn: start, buf, records: 0, ends_frame: true, starts_frame: true };
            st.pending.push_back(chunk);
        }
        let chunk = st.pending.back_mut().expect("a chunk was just ensured");
        debug_assert_eq!(chunk.end_lsn(), start, "chunks are contiguous");
        chunk
    }

    /// An empty chunk buffer of at least `need` bytes: a spare, or a new
    /// one of `fresh` bytes (at least `need`).
    fn chunk_buf(&self, st: &mut State, need: usize, fresh: usize) -> AlignedBuf {
        match st.spare.iter().rposition(|b| b.capacity() >= need) {
            Some(i) => {
                let buf = st.spare.swap_remove(i);
                st.spare_bytes -= buf.capacity();
                buf
            }
            None => AlignedBuf::with_capacity(fresh.max(need), self.align),
        }
    }

    /// Takes every pending chunk, in LSN order.
    pub(crate) fn take(&self, into: &mut VecDeque<Chunk>) {
        let mut st = self.lock();
        self.close_chunk(&mut st);
        into.append(&mut st.pending);
    }

    /// Direct I/O only: ends the tail chunk on a block boundary of its file,
    /// with a padding frame, or by sealing its segment when the frame does
    /// not fit (the writer zero-fills a sealed file's last block).
    fn close_chunk(&self, st: &mut State) {
        if self.block == 0 {
            return;
        }
        let next = st.next_lsn;
        let Some(tail) = st.pending.back_mut().filter(|c| c.seg_base == st.seg_base) else {
            return; // nothing pending, or only a sealed segment's frames
        };
        let rem = format::file_offset(st.seg_base, next) % self.block;
        if rem == 0 {
            return;
        }
        let mut gap = self.block - rem;
        if gap < FRAME_HEADER_LEN as u64 {
            gap += self.block;
        }
        if next + gap > st.seg_base + self.capacity {
            st.seg_base = next;
            return;
        }
        let payload = &PADDING[..gap as usize - FRAME_HEADER_LEN];
        format::encode_frame(tail.buf.extend(gap as usize), next, KIND_PADDING, 0, payload);
        st.next_lsn = next + gap;
        self.next.store(st.next_lsn, Ordering::Release);
    }

    /// The direct-I/O block size; 0 for buffered I/O.
    pub(crate) fn block(&self) -> u64 {
        self.block
    }

    /// Returns a written chunk's buffer for reuse.
    pub(crate) fn recycle(&self, mut buf: AlignedBuf) {
        if buf.capacity() > 2 * self.chunk_cap || buf.is_taken_vec() {
            return; // one huge record grew it, or an owned payload: let it go
        }
        buf.clear();
        let mut st = self.lock();
        if st.spare_bytes + buf.capacity() <= SPARE_BYTES {
            st.spare_bytes += buf.capacity();
            st.spare.push(buf);
        }
    }

    /// Refuses all later appends with `err` (the first reason sticks).
    pub(crate) fn refuse(&self, err: Error) {
        let mut st = self.lock();
        if st.refused.is_none() {
            st.refused = Some(err);
        }
    }

    /// Bytes placed and not yet taken by the writer.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.lock().pending.iter().map(|c| c.buf.len()).sum()
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.lock().pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_dense_and_roll_to_a_new_segment_when_full() {
        let seg = 1 << 20;
        let log = LogBuffer::new(0, 0, seg, 8, 0);
        let capacity = seg - 4096;
        let big = vec![1u8; 600_000];
        let f = format::frame_len(big.len()) as u64;
        let a = log.append(&[&big], None, f).unwrap();
        assert_eq!(a.end, f);
        assert!(a.wake_writer);
        let b = log.append(&[&big], None, f).unwrap();
        assert!(f * 2 > capacity);
        assert_eq!(b.end, 2 * f, "LSNs stay dense across the seal");
        assert!(!b.wake_writer);
        let mut chunks = VecDeque::new();
        log.take(&mut chunks);
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[0].seg_base, chunks[0].start_lsn), (0, 0));
        assert_eq!((chunks[1].seg_base, chunks[1].start_lsn), (f, f));
    }

    #[test]
    fn an_owned_payload_is_its_own_chunk_between_its_header_and_its_padding() {
        let seg = 1 << 20;
        let log = LogBuffer::new(0, 0, seg, 8, 0);
        let small = [5u8; 10];
        log.append(&[small], None, format::frame_len(10) as u64).unwrap();
        let big: Vec<u8> = (0..100_001u32).map(|i| i as u8).collect();
        let at = big.as_ptr();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&big);
        let kept = big.clone();
        let placed = log.append_owned(big, &crc).unwrap();
        assert!(!placed.wake_writer, "the small record's chunk was pending");
        let after = log.append(&[small], None, format::frame_len(10) as u64).unwrap();
        let mut chunks = VecDeque::new();
        log.take(&mut chunks);
        // [small, big's header] [big's payload: the caller's memory] [padding, small]
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].buf.as_slice().as_ptr(), at, "the payload was not copied");
        assert_eq!(chunks.iter().map(|c| c.ends_frame).collect::<Vec<_>>(), [false, false, true]);
        assert_eq!(chunks.iter().map(|c| c.records).sum::<u64>(), 3);
        let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.buf.as_slice().to_vec()).collect();
        assert_eq!(bytes.len() as u64, after.end);
        let f = format::frame_len(10);
        assert_eq!(
            frames(&bytes, 0),
            [(KIND_RECORD, f), (KIND_RECORD, format::frame_len(kept.len())), (KIND_RECORD, f)]
        );
        let view = format::decode_frame(&bytes[f..], f as u64).unwrap();
        assert_eq!(view.payload, &kept[..]);
        // Taken-over memory goes back to the allocator, not to the spares.
        for c in chunks {
            log.recycle(c.buf);
        }
        assert_eq!(log.lock().spare.len(), 2);
        // Owned frames one after another: each header starts a chunk of its
        // own (never the previous frame's padding chunk), so a write can
        // end after every frame's padding.
        let mut chunks = VecDeque::new();
        for _ in 0..3 {
            log.append_owned(kept.clone(), &crc).unwrap();
        }
        log.take(&mut chunks);
        let ends: Vec<bool> = chunks.iter().map(|c| c.ends_frame).collect();
        assert_eq!(ends, [false, false, true].repeat(3), "header, payload, padding per frame");
        // Headers that could not go into a padding chunk take a spare buffer
        // while there is one (the first two here), then a small chunk, not
        // a megabyte.
        assert!([3, 6].iter().all(|&i| chunks[i].buf.capacity() < 64 << 10), "header chunks stay small");
        // A payload with no padding (a multiple of 8 bytes) ends its frame:
        // the next owned header and a plain frame each start a new chunk.
        let even = vec![3u8; 65_536];
        let mut crc = crc32fast::Hasher::new();
        crc.update(&even);
        let mut chunks = VecDeque::new();
        log.append_owned(even.clone(), &crc).unwrap();
        log.append_owned(even, &crc).unwrap();
        log.append(&[small], None, format::frame_len(10) as u64).unwrap();
        log.take(&mut chunks);
        let flags: Vec<(bool, bool)> = chunks.iter().map(|c| (c.starts_frame, c.ends_frame)).collect();
        assert_eq!(flags, [(true, false), (false, true), (true, false), (false, true), (true, true)]);
    }

    /// Decodes the frames of `buf` (starting at `lsn`): (kind, frame length).
    fn frames(buf: &[u8], mut lsn: u64) -> Vec<(u8, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let f = format::decode_frame(&buf[at..], lsn).expect("valid frame");
            out.push((f.kind, f.len()));
            at += f.len();
            lsn += f.len() as u64;
        }
        out
    }

    #[test]
    fn direct_io_chunks_end_on_block_boundaries_with_a_padding_frame() {
        let (seg, block) = (1 << 20, 512u64);
        let log = LogBuffer::new(0, 0, seg, 4096, block);
        let mut taken = VecDeque::new();
        // 32-byte frame: padded with a 480-byte frame.
        log.append(&[[1u8; 8]], None, 32).unwrap();
        log.take(&mut taken);
        assert_eq!(log.next_lsn(), 512);
        assert_eq!(frames(taken[0].buf.as_slice(), 0), [(KIND_RECORD, 32), (KIND_PADDING, 480)]);
        // A frame ending 8 bytes short of the boundary: too little room for
        // a frame header, so the padding runs to the boundary after next.
        log.append(&[vec![2u8; 480]], None, 504).unwrap();
        log.take(&mut taken);
        assert_eq!(log.next_lsn(), 512 + 1024);
        assert_eq!(frames(taken[1].buf.as_slice(), 512), [(KIND_RECORD, 504), (KIND_PADDING, 520)]);
        // Exactly on the boundary: nothing to pad.
        log.append(&[vec![3u8; 488]], None, 512).unwrap();
        log.take(&mut taken);
        assert_eq!(log.next_lsn(), 2048);
        assert_eq!(taken[2].buf.len(), 512);
        for c in &taken {
            assert_eq!(format::file_offset(c.seg_base, c.start_lsn) % block, 0);
            assert_eq!(c.buf.len() as u64 % block, 0);
        }
    }

    #[test]
    fn direct_io_seals_the_segment_when_the_padding_does_not_fit() {
        let (seg, block) = (1 << 20, 4096u64);
        let capacity = seg - 4096;
        let log = LogBuffer::new(0, 0, seg, 4096, block);
        // Leave 8 bytes before the segment's end: no padding frame fits.
        let n = (capacity - 8) as usize - FRAME_HEADER_LEN;
        log.append(&[vec![0u8; n]], None, capacity - 8).unwrap();
        let mut taken = VecDeque::new();
        log.take(&mut taken);
        assert_eq!(log.next_lsn(), capacity - 8, "no padding: the segment is sealed instead");
        let placed = log.append(&[[9u8; 8]], None, 32).unwrap();
        assert_eq!(placed.end, capacity - 8 + 32);
        log.take(&mut taken);
        assert_eq!(taken[1].seg_base, capacity - 8, "the next segment starts at the seal");
        assert_eq!(format::file_offset(taken[1].seg_base, taken[1].start_lsn), 4096);
    }
}
