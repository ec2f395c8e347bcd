//! Pacing of a backup's copy, so that it shares the device with the
//! journal's own syncs instead of queueing in front of them.
//!
//! A copy writes in [`PACED_CHUNK`] units, each written back and waited
//! for before the next is written (one chunk in flight, at most one
//! dirty), and sleeps after each chunk for as long as its writeback took,
//! times [`PACE_RATIO`]: the device's measured latency is the budget, so
//! the copy holds the device at most about half of the time on a slow or
//! busy device and is not slowed at all where writeback is free (tmpfs,
//! a cache that absorbs it). The sleeps are bounded, each by
//! [`PACE_SLEEP_MAX`], so a stalled device does not stall the backup twice.
//!
//! It never changes what is copied or how it is made durable: only when.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Bytes per writeback unit of a paced copy.
pub(super) const PACED_CHUNK: u64 = 1 << 20;
/// Sleep after a chunk, as a multiple of its writeback wait.
const PACE_RATIO: u32 = 1;
/// Longest sleep after one chunk.
const PACE_SLEEP_MAX: Duration = Duration::from_millis(50);

/// Whether copies are paced: always, except for a benchmark comparing
/// against the earlier unpaced copy (`tidelog::testing::set_backup_pacing`).
static PACED: AtomicBool = AtomicBool::new(true);

pub(crate) fn set_paced(paced: bool) {
    PACED.store(paced, Ordering::Relaxed);
}

pub(super) fn paced() -> bool {
    PACED.load(Ordering::Relaxed)
}

/// The sleeps of one copy.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    /// Time slept so far.
    pub(super) slept: Duration,
}

impl Pacer {
    /// After a chunk whose writeback took `waited`: yields the device for
    /// about as long.
    pub(super) fn after_chunk(&mut self, waited: Duration) {
        let nap = (waited * PACE_RATIO).min(PACE_SLEEP_MAX);
        if !nap.is_zero() {
            std::thread::sleep(nap);
            self.slept += nap;
        }
    }
}
