//! Positions: [`Lsn`], a logical byte position in the journal's record
//! stream, and [`FileOffset`], a byte position in a segment file. Kept
//! apart by type so that one is never passed for the other.

use std::fmt;

/// A logical byte position in the journal's record stream.
///
/// LSNs are dense across segments. The LSN an append returns is the position
/// just past the record's frame (its *end*), so `sync_through(lsn)` covers it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(u64);

impl Lsn {
    /// The start of every journal.
    pub const ZERO: Lsn = Lsn(0);

    /// Wraps a raw position.
    pub const fn new(raw: u64) -> Lsn {
        Lsn(raw)
    }

    /// The raw position.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({})", self.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for Lsn {
    fn from(raw: u64) -> Lsn {
        Lsn(raw)
    }
}

/// A byte position in a file (a segment's header block included): never an
/// LSN. The frame starting at LSN `x` in the segment based at `b` lies at
/// `4096 + (x - b)` (`format::file_offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct FileOffset(u64);

impl FileOffset {
    pub(crate) const fn new(raw: u64) -> FileOffset {
        FileOffset(raw)
    }

    pub(crate) const fn get(self) -> u64 {
        self.0
    }
}

impl std::ops::Add<u64> for FileOffset {
    type Output = FileOffset;

    fn add(self, bytes: u64) -> FileOffset {
        FileOffset(self.0 + bytes)
    }
}

impl std::ops::AddAssign<u64> for FileOffset {
    fn add_assign(&mut self, bytes: u64) {
        self.0 += bytes;
    }
}
