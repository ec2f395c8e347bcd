//! The adaptive writeback chunk: sized from the p95 of recent writeback
//! waits, within [`MIN_CHUNK`], [`MAX_CHUNK`]. Pure arithmetic: it never
//! touches a file or a clock.

use std::collections::VecDeque;
use std::time::Duration;

use super::{MAX_CHUNK, MIN_CHUNK};
use crate::StorageClass;

/// Picks the chunk size from the p95 of recent writeback waits.
#[derive(Debug)]
pub(super) struct ChunkTuner {
    /// The current chunk size in bytes.
    pub(super) chunk: u64,
    adaptive: bool,
    window: VecDeque<Duration>,
}

/// Waits whose p95 is below this let the chunk grow...
const FAST_WAIT: Duration = Duration::from_millis(20);
/// ...and above this make it shrink.
const SLOW_WAIT: Duration = Duration::from_millis(200);
const WINDOW: usize = 20;
/// Samples needed before the first decision.
const DECIDE_AFTER: usize = 4;

impl ChunkTuner {
    pub(super) fn new(seed: u64, adaptive: bool) -> ChunkTuner {
        ChunkTuner { chunk: seed.clamp(MIN_CHUNK, MAX_CHUNK), adaptive, window: VecDeque::new() }
    }

    /// The starting chunk for a filesystem.
    pub(super) fn seed(class: StorageClass) -> u64 {
        match class {
            StorageClass::Nfs => 64 << 20,
            StorageClass::Tmpfs => MIN_CHUNK,
            _ => 16 << 20,
        }
    }

    /// Accounts for one writeback wait; may resize the chunk.
    pub(super) fn record(&mut self, wait: Duration) {
        if !self.adaptive {
            return;
        }
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(wait);
        if self.window.len() < DECIDE_AFTER {
            return;
        }
        let mut sorted: Vec<Duration> = self.window.iter().copied().collect();
        sorted.sort_unstable();
        let p95 = sorted[(sorted.len() * 95).div_ceil(100) - 1];
        let next = if p95 < FAST_WAIT {
            (self.chunk * 2).min(MAX_CHUNK)
        } else if p95 > SLOW_WAIT {
            (self.chunk / 2).max(MIN_CHUNK)
        } else {
            self.chunk
        };
        if next != self.chunk {
            tracing::debug!(from = self.chunk, to = next, p95_ms = p95.as_millis() as u64, "writeback chunk resized");
            self.chunk = next;
            self.window.clear(); // judge the new size on its own waits
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_chunk_grows_while_waits_are_short_and_shrinks_when_slow() {
        let mut t = ChunkTuner::new(16 << 20, true);
        for _ in 0..3 {
            t.record(ms(1));
        }
        assert_eq!(t.chunk, 16 << 20, "no decision before enough samples");
        t.record(ms(1));
        assert_eq!(t.chunk, 32 << 20);
        for _ in 0..40 {
            t.record(ms(2));
        }
        assert_eq!(t.chunk, MAX_CHUNK, "bounded above");
        for _ in 0..4 {
            t.record(ms(500));
        }
        assert_eq!(t.chunk, MAX_CHUNK / 2);
        for _ in 0..100 {
            t.record(ms(500));
        }
        assert_eq!(t.chunk, MIN_CHUNK, "bounded below");
    }

    #[test]
    fn one_slow_wait_in_twenty_does_not_shrink_but_two_do() {
        let mut t = ChunkTuner::new(64 << 20, true);
        // Between the thresholds: the size holds.
        for _ in 0..20 {
            t.record(ms(100));
        }
        assert_eq!(t.chunk, 64 << 20);
        t.record(ms(300));
        assert_eq!(t.chunk, 64 << 20, "one outlier in twenty is above the p95");
        t.record(ms(300));
        assert_eq!(t.chunk, 32 << 20, "two put the p95 above the slow threshold");
    }

    #[test]
    fn a_fixed_chunk_never_moves_and_seeds_follow_the_class() {
        let mut t = ChunkTuner::new(8 << 20, false);
        for _ in 0..20 {
            t.record(ms(1));
        }
        assert_eq!(t.chunk, 8 << 20);
        assert_eq!(ChunkTuner::new(1, true).chunk, MIN_CHUNK);
        assert_eq!(ChunkTuner::seed(StorageClass::Nfs), 64 << 20);
        assert_eq!(ChunkTuner::seed(StorageClass::Ext4), 16 << 20);
    }
}
