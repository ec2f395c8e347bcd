//! [`AlignedBuf`]: a growable byte buffer whose start is aligned for direct I/O.
//!
//! One of the two homes of `unsafe` in the crate (the ring backend is the
//! other). The buffer owns its allocation uniquely; while a write that refers
//! to it is in flight the buffer is owned by the substrate's op slot, so the
//! memory never moves or frees under the kernel.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// A heap buffer aligned to `align` bytes. The whole capacity is initialised
/// (zeroed at allocation), so handing out bytes past `len` is sound; `len`
/// marks what the owner has filled.
///
/// Or, made by [`from_vec`](Self::from_vec), a caller's `Vec<u8>` taken
/// over without a copy: alignment 1, capacity its length (every byte of
/// it initialised), freed as the `Vec` it was.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    align: usize,
    /// The taken-over `Vec`'s own capacity, to free it as one.
    vec_cap: Option<usize>,
}

// SAFETY: the buffer owns its allocation exclusively (no aliasing pointers are
// handed out beyond borrows tied to `&self`/`&mut self`), like `Vec<u8>`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads through `&self`, like `Vec<u8>`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer of at least `cap` bytes (rounded up to `align`).
    pub(crate) fn with_capacity(cap: usize, align: usize) -> AlignedBuf {
        assert!(align.is_power_of_two() && align <= 1 << 16, "alignment {align}");
        let cap = cap.max(align).next_multiple_of(align);
        let layout = Layout::from_size_align(cap, align).expect("capacity overflows a Layout");
        // SAFETY: `layout` has a non-zero size (cap >= align >= 1). Zeroed,
        // so every byte up to `cap` is initialised for the buffer's life.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else { alloc::handle_alloc_error(layout) };
        AlignedBuf { ptr, len: 0, cap, align, vec_cap: None }
    }

    /// Takes `vec` over without copying its bytes. For buffered I/O only
    /// (its start has no alignment); an `extend` past its length moves
    /// the bytes to an aligned allocation of the buffer's own.
    pub(crate) fn from_vec(vec: Vec<u8>) -> AlignedBuf {
        let mut vec = std::mem::ManuallyDrop::new(vec);
        let (len, vec_cap) = (vec.len(), vec.capacity());
        // A `Vec`'s pointer is never null (dangling but aligned when it
        // has not allocated).
        let ptr = NonNull::new(vec.as_mut_ptr()).expect("a Vec's pointer is never null");
        AlignedBuf { ptr, len, cap: len, align: 1, vec_cap: Some(vec_cap) }
    }

    /// Made by `from_vec`: the caller's memory, not one to keep for reuse.
    pub(crate) fn is_taken_vec(&self) -> bool {
        self.vec_cap.is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `n` bytes and returns them for the caller to overwrite. Their
    /// content is unspecified (zero, or bytes of an earlier use after
    /// `clear`): frames are encoded over every byte, so clearing them first
    /// would be a second pass per record.
    pub(crate) fn extend(&mut self, n: usize) -> &mut [u8] {
        let new_len = self.len.checked_add(n).expect("buffer length overflow");
        if new_len > self.cap {
            self.grow(new_len);
        }
        let start = self.len;
        self.len = new_len;
        &mut self.as_mut_slice()[start..]
    }

    fn grow(&mut self, min_cap: usize) {
        let mut bigger = AlignedBuf::with_capacity(min_cap.max(self.cap * 2), self.align);
        bigger.len = self.len;
        bigger.as_mut_slice().copy_from_slice(self.as_slice());
        *self = bigger;
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `cap >= len` bytes, all initialised
        // (zeroed at allocation).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Some(vec_cap) = self.vec_cap {
            // SAFETY: `ptr` and `vec_cap` are the pointer and capacity of
            // the `Vec<u8>` that `from_vec` took apart and nothing else
            // freed; length 0 drops no elements (u8 has no drop anyway).
            drop(unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), 0, vec_cap) });
            return;
        }
        let layout = Layout::from_size_align(self.cap, self.align).expect("layout was valid at alloc");
        // SAFETY: allocated in `with_capacity` with exactly this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).field("cap", &self.cap).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_keeping_content_and_alignment() {
        let mut b = AlignedBuf::with_capacity(10, 4096);
        assert_eq!(b.capacity(), 4096);
        b.extend(3).copy_from_slice(b"abc");
        b.extend(10_000)[0] = b'd';
        assert_eq!(&b.as_slice()[..4], b"abcd");
        assert_eq!(b.len(), 10_003);
        assert_eq!(b.as_slice().as_ptr() as usize % 4096, 0);
        b.clear();
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn a_taken_vec_keeps_its_bytes_in_place_and_moves_only_to_grow() {
        let mut v = Vec::with_capacity(100);
        v.extend_from_slice(b"payload");
        let at = v.as_ptr();
        let mut b = AlignedBuf::from_vec(v);
        assert!(b.is_taken_vec());
        assert_eq!((b.as_slice(), b.as_slice().as_ptr()), (&b"payload"[..], at), "no copy");
        assert_eq!(b.capacity(), 7);
        b.as_mut_slice()[0] = b'P';
        b.extend(2).copy_from_slice(b"!!");
        assert!(!b.is_taken_vec(), "grown into a buffer of its own");
        assert_eq!(b.as_slice(), b"Payload!!");
        drop(AlignedBuf::from_vec(Vec::new()));
    }
}
