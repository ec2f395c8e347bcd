//! Counters and latency histograms behind [`Journal::stats`](crate::Journal::stats).
//!
//! Updated by the driver (one writer) and read by anyone, with relaxed
//! atomics: a snapshot may mix counters from adjacent rounds, never tear one.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::Substrate;

/// p50 / p99 / max of a latency, in microseconds (0 when nothing was measured).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Largest seen, µs.
    pub max_us: u64,
    /// Samples behind the figures.
    pub samples: u64,
}

/// A snapshot of a journal's counters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Stats {
    /// Records appended (batch members count one each).
    pub appends: u64,
    /// Payload bytes appended.
    pub bytes: u64,
    /// Write operations completed.
    pub writes: u64,
    /// Sync rounds completed successfully.
    pub syncs: u64,
    /// Mean records made durable per sync round.
    pub records_per_sync_mean: f64,
    /// Most records made durable by one sync round.
    pub records_per_sync_max: u64,
    /// Latency of write operations.
    pub write_latency: Percentiles,
    /// Latency of sync rounds.
    pub sync_latency: Percentiles,
    /// Syncs slower than the stall threshold.
    pub stalls: u64,
    /// The substrate in use.
    pub substrate: Substrate,
    /// The journal was poisoned by an I/O failure.
    pub poisoned: bool,
}

/// Log-linear histogram: 8 sub-buckets per power of two (≤ 12.5% error).
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Vec<AtomicU64>,
    max: AtomicU64,
    count: AtomicU64,
}

const SUB: u64 = 8;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: (0..64 * SUB).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let log = 63 - v.leading_zeros() as u64; // >= 3
        let sub = (v >> (log - 3)) & (SUB - 1);
        ((log - 2) * SUB + sub) as usize
    }

    fn upper(index: usize) -> u64 {
        let i = index as u64;
        if i < SUB {
            return i;
        }
        let (log, sub) = (i / SUB + 2, i % SUB);
        (((SUB + sub + 1) as u128) << (log - 3)).saturating_sub(1).min(u64::MAX as u128) as u64
    }

    pub(crate) fn record(&self, v: u64) {
        self.buckets[Self::index(v)].fetch_add(1, Relaxed);
        self.max.fetch_max(v, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_duration(&self, d: Duration) {
        self.record(d.as_micros().min(u64::MAX as u128) as u64);
    }

    pub(crate) fn percentiles(&self) -> Percentiles {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let max = self.max.load(Relaxed);
        let at = |q: f64| -> u64 {
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Self::upper(i).min(max);
                }
            }
            max
        };
        if total == 0 {
            return Percentiles::default();
        }
        Percentiles { p50_us: at(0.5), p99_us: at(0.99), max_us: max, samples: total }
    }
}

#[derive(Debug)]
pub(crate) struct StatsInner {
    pub(crate) appends: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) synced_records: AtomicU64,
    pub(crate) records_per_sync_max: AtomicU64,
    pub(crate) stalls: AtomicU64,
    pub(crate) write_latency: Histogram,
    pub(crate) sync_latency: Histogram,
}

impl StatsInner {
    pub(crate) fn new() -> StatsInner {
        StatsInner {
            appends: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            synced_records: AtomicU64::new(0),
            records_per_sync_max: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            write_latency: Histogram::new(),
            sync_latency: Histogram::new(),
        }
    }

    pub(crate) fn sync_done(&self, records: u64, took: Duration) {
        self.syncs.fetch_add(1, Relaxed);
        self.synced_records.fetch_add(records, Relaxed);
        self.records_per_sync_max.fetch_max(records, Relaxed);
        self.sync_latency.record_duration(took);
    }

    pub(crate) fn snapshot(&self, substrate: Substrate, poisoned: bool) -> Stats {
        let syncs = self.syncs.load(Relaxed);
        let synced = self.synced_records.load(Relaxed);
        Stats {
            appends: self.appends.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            writes: self.writes.load(Relaxed),
            syncs,
            records_per_sync_mean: if syncs == 0 { 0.0 } else { synced as f64 / syncs as f64 },
            records_per_sync_max: self.records_per_sync_max.load(Relaxed),
            write_latency: self.write_latency.percentiles(),
            sync_latency: self.sync_latency.percentiles(),
            stalls: self.stalls.load(Relaxed),
            substrate,
            poisoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_a_bucket() {
        let h = Histogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        let p = h.percentiles();
        assert!((500..=563).contains(&p.p50_us), "{p:?}");
        assert!((990..=1000).contains(&p.p99_us), "{p:?}");
        assert_eq!(p.max_us, 1000);
        assert_eq!(p.samples, 1000);
        for v in [0u64, 1, 7, 8, 9, 15, 16, 1 << 40, u64::MAX] {
            assert!(Histogram::upper(Histogram::index(v)) >= v, "{v}");
        }
    }
}
