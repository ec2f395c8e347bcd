//! Pacing of a backup's copy, so that it shares the device with the
//! journal's own syncs instead of queueing in front of them.
//!
//! Every appender's `fdatasync` ends in a cache flush that must also make
//! durable whatever else was written to the device before it; a copy that
//! writes megabytes at a time hands that cost to the appenders. A paced
//! copy writes in small chunks ([`PACED_CHUNK`]), each written back and
//! waited for before the next is written (one chunk in flight, at most one
//! dirty), and then leaves the device alone for as long as that writeback
//! took, times [`PACE_RATIO`]: the device's measured latency is the
//! budget, so the copy holds it about half of the time on a slow or busy
//! device and is not slowed where writeback is free (tmpfs). Sleeps are
//! taken once at least [`PACE_SLEEP_MIN`] is owed, and each is bounded by
//! [`PACE_SLEEP_MAX`], so a stalled device does not stall the backup twice.
//!
//! Only a copy onto the journal's own device is paced: one onto another
//! device does not queue beside the journal's syncs and copies at full
//! speed, in large write-behind chunks. Pacing never changes what is
//! copied or how it is made durable: only when.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bytes per writeback unit of a paced copy (see `docs/benchmarks.md`,
/// "Online backup", for the sizes measured).
pub(crate) const PACED_CHUNK: u64 = 64 << 10;
/// Bounds of the chunk a benchmark may ask for.
const PACED_CHUNK_MIN: u64 = 4 << 10;
pub(super) const PACED_CHUNK_MAX: u64 = 1 << 20;
const _: () = assert!(PACED_CHUNK_MIN <= PACED_CHUNK && PACED_CHUNK <= PACED_CHUNK_MAX);
const _: () = assert!(PACED_CHUNK % PACED_CHUNK_MIN == 0);
/// Sleep after a chunk, as a multiple of its writeback wait.
const PACE_RATIO: u32 = 1;
/// Shortest sleep: less is owed until it adds up (a shorter sleep costs
/// more in timer slack and wakeups than it gives back).
const PACE_SLEEP_MIN: Duration = Duration::from_millis(1);
/// Longest sleep after one chunk.
const PACE_SLEEP_MAX: Duration = Duration::from_millis(50);
const _: () = assert!(PACE_SLEEP_MIN.as_nanos() < PACE_SLEEP_MAX.as_nanos());

/// The paced chunk, 0 for the unpaced copy: always [`PACED_CHUNK`] except
/// in a benchmark comparing copies (`tidelog::testing::set_backup_pacing`).
static CHUNK: AtomicU64 = AtomicU64::new(PACED_CHUNK);

/// `None`: copy unpaced; `Some(bytes)`: paced in chunks of about `bytes`
/// (rounded down to 4 KiB, within [4 KiB, 1 MiB]). Process-wide.
pub(crate) fn set_chunk(bytes: Option<u64>) {
    CHUNK.store(bytes.map_or(0, bounded_chunk), Ordering::Relaxed);
}

fn bounded_chunk(bytes: u64) -> u64 {
    (bytes - bytes % PACED_CHUNK_MIN).clamp(PACED_CHUNK_MIN, PACED_CHUNK_MAX)
}

/// The chunk to pace a copy in, `None` for an unpaced one: a copy onto
/// another device than the journal's is never paced.
pub(super) fn chunk(same_device: bool) -> Option<u64> {
    let chunk = CHUNK.load(Ordering::Relaxed);
    (same_device && chunk != 0).then_some(chunk)
}

/// The sleeps of one copy.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    /// Sleep owed and not yet taken.
    owed: Duration,
    /// Time slept so far.
    pub(super) slept: Duration,
}

impl Pacer {
    /// After a chunk whose writeback took `waited`: yields the device for
    /// about as long, once at least [`PACE_SLEEP_MIN`] is owed.
    pub(super) fn after_chunk(&mut self, waited: Duration) {
        self.owed += waited * PACE_RATIO;
        if self.owed >= PACE_SLEEP_MIN {
            let nap = self.owed.min(PACE_SLEEP_MAX);
            std::thread::sleep(nap);
            self.slept += nap;
            self.owed = Duration::ZERO;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_chunks_are_rounded_to_4k_and_bounded() {
        assert_eq!(bounded_chunk(0), PACED_CHUNK_MIN);
        assert_eq!(bounded_chunk(100_000), 98_304);
        assert_eq!(bounded_chunk(u64::MAX), PACED_CHUNK_MAX);
        assert_eq!(bounded_chunk(PACED_CHUNK), PACED_CHUNK);
    }

    #[test]
    fn short_waits_are_owed_until_they_add_up_to_one_sleep() {
        let mut pacer = Pacer::default();
        for _ in 0..3 {
            pacer.after_chunk(Duration::from_micros(300));
        }
        assert_eq!(pacer.slept, Duration::ZERO);
        pacer.after_chunk(Duration::from_micros(300));
        assert_eq!(pacer.slept, Duration::from_micros(1200));
        assert_eq!(pacer.owed, Duration::ZERO);
    }

    #[test]
    fn a_stalled_chunk_sleeps_at_most_the_bound() {
        let mut pacer = Pacer::default();
        pacer.after_chunk(Duration::from_secs(5));
        assert_eq!(pacer.slept, PACE_SLEEP_MAX);
    }
}
