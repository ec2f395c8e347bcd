//! [`Lsn`]: a logical byte position in the journal's record stream.

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
