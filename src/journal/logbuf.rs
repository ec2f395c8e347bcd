//! The log buffer: where appenders reserve LSNs and copy their frames.
//!
//! An append is one short critical section: assign the LSN, roll to a new
//! segment if the frame does not fit, encode the frame into the tail chunk.
//! No syscall, no allocation in the steady state (chunk buffers are
//! recycled), no message per record. The driver takes every pending chunk at
//! once and writes each with one call. A chunk never spans segments.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::format::{self, FLAG_BATCH_CONTINUES, KIND_RECORD};
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
    /// Set when the journal stops accepting appends (close, drop, poison).
    refused: Option<Error>,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placed {
    /// LSN past the last frame (what `append` returns).
    pub(crate) end: u64,
    /// The pending buffer was empty: the driver may be idle and must be woken.
    pub(crate) wake_driver: bool,
}

#[derive(Debug)]
pub(crate) struct LogBuffer {
    state: Mutex<State>,
    /// Mirror of `State::next_lsn` for lock-free reads.
    next: AtomicU64,
    capacity: u64,
    align: usize,
    chunk_cap: usize,
}

/// Recycled chunk buffers kept for reuse (bounds idle memory to
/// `SPARE_BUFFERS × CHUNK_BYTES`).
const SPARE_BUFFERS: usize = 16;
/// A chunk stops growing past this; later frames start a new chunk. Keeps
/// every append's copy cheap (no doubling of a huge buffer under the lock)
/// and buffers recyclable.
const CHUNK_BYTES: usize = 1 << 20;

impl LogBuffer {
    pub(crate) fn new(end_lsn: u64, seg_base: u64, segment_size: u64, align: usize) -> LogBuffer {
        LogBuffer {
            state: Mutex::new(State {
                next_lsn: end_lsn,
                seg_base,
                pending: VecDeque::new(),
                spare: Vec::new(),
                refused: None,
            }),
            next: AtomicU64::new(end_lsn),
            capacity: segment_size - format::SEGMENT_HEADER_LEN as u64,
            align,
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
    /// than one). `total` is the sum of their frame lengths.
    pub(crate) fn append<P: AsRef<[u8]>>(&self, payloads: &[P], total: u64) -> Result<Placed> {
        debug_assert!(total <= self.capacity, "checked by the caller");
        let mut st = self.lock();
        if let Some(err) = &st.refused {
            return Err(err.clone());
        }
        if st.next_lsn + total > st.seg_base + self.capacity {
            st.seg_base = st.next_lsn; // seal: the next segment starts here
        }
        let wake_driver = st.pending.is_empty();
        let (seg_base, start) = (st.seg_base, st.next_lsn);
        let need_new_chunk = st.pending.back().is_none_or(|c| c.seg_base != seg_base || c.buf.len() >= self.chunk_cap);
        if need_new_chunk {
            let buf = st.spare.pop().unwrap_or_else(|| AlignedBuf::with_capacity(self.chunk_cap, self.align));
            st.pending.push_back(Chunk { seg_base, start_lsn: start, buf, records: 0 });
        }
        let chunk = st.pending.back_mut().expect("a chunk was just ensured");
        debug_assert_eq!(chunk.end_lsn(), start, "chunks are contiguous");
        let mut lsn = start;
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.iter().enumerate() {
            let payload = payload.as_ref();
            let flags = if i < last { FLAG_BATCH_CONTINUES } else { 0 };
            let len = format::frame_len(payload.len());
            let dst = chunk.buf.extend(len); // encode_frame writes every byte
            format::encode_frame(dst, lsn, KIND_RECORD, flags, payload);
            lsn += len as u64;
        }
        debug_assert_eq!(lsn, start + total);
        chunk.records += payloads.len() as u64;
        st.next_lsn = lsn;
        self.next.store(lsn, Ordering::Release);
        Ok(Placed { end: lsn, wake_driver })
    }

    /// Takes every pending chunk, in LSN order.
    pub(crate) fn take(&self, into: &mut VecDeque<Chunk>) {
        into.append(&mut self.lock().pending);
    }

    /// Returns a written chunk's buffer for reuse.
    pub(crate) fn recycle(&self, mut buf: AlignedBuf) {
        if buf.capacity() > 2 * self.chunk_cap {
            return; // one huge record grew it; let it go
        }
        buf.clear();
        let mut st = self.lock();
        if st.spare.len() < SPARE_BUFFERS {
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
        let log = LogBuffer::new(0, 0, seg, 8);
        let capacity = seg - 4096;
        let big = vec![1u8; 600_000];
        let f = format::frame_len(big.len()) as u64;
        let a = log.append(&[&big], f).unwrap();
        assert_eq!(a.end, f);
        assert!(a.wake_driver);
        let b = log.append(&[&big], f).unwrap();
        assert!(f * 2 > capacity);
        assert_eq!(b.end, 2 * f, "LSNs stay dense across the seal");
        assert!(!b.wake_driver);
        let mut chunks = VecDeque::new();
        log.take(&mut chunks);
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[0].seg_base, chunks[0].start_lsn), (0, 0));
        assert_eq!((chunks[1].seg_base, chunks[1].start_lsn), (f, f));
    }
}
