//! Counters and latency histograms behind [`Journal::stats`](crate::Journal::stats).
//!
//! Updated by the writer (one writer) and read by anyone, with relaxed
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
    /// Payload bytes appended (as given, before any compression).
    pub bytes: u64,
    /// Payload bytes stored in frames for those records: compressed
    /// payloads (with their 8-byte codec header) plus plain ones. Equal to
    /// [`bytes`](Self::bytes) without compression.
    pub stored_bytes: u64,
    /// Records stored compressed.
    pub compressed_records: u64,
    /// Write operations completed.
    pub writes: u64,
    /// Writes submitted while another was in flight: large writes overlap
    /// (from 256 KiB each), small ones go one at a time.
    pub overlapped_writes: u64,
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
    /// Why the journal runs on [`substrate`](Self::substrate): the choice
    /// it was asked for, or the rule `SubstrateChoice::Auto` applied to
    /// its filesystem and options (the table in `docs/benchmarks.md`).
    pub substrate_reason: String,
    /// The journal was poisoned by an I/O failure.
    pub poisoned: bool,
}

impl Stats {
    /// Payload bytes appended per payload byte stored: 2.0 means records
    /// take half the space they would plain (1.0 when nothing was stored,
    /// or nothing compressed). Frame headers are not counted on either side.
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.bytes, self.stored_bytes)
    }
}

fn ratio(bytes: u64, stored: u64) -> f64 {
    if stored == 0 {
        1.0
    } else {
        bytes as f64 / stored as f64
    }
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
    pub(crate) stored_bytes: AtomicU64,
    pub(crate) compressed_records: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) overlapped_writes: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) synced_records: AtomicU64,
    pub(crate) records_per_sync_max: AtomicU64,
    pub(crate) stalls: AtomicU64,
    pub(crate) write_latency: Histogram,
    pub(crate) sync_latency: Histogram,
    #[cfg(feature = "metrics")]
    exported: exported::Exported,
}

impl StatsInner {
    /// `dir` and `substrate` label the exported metrics (feature `metrics`).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(dir: &std::path::Path, substrate: Substrate) -> StatsInner {
        StatsInner {
            appends: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            compressed_records: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            overlapped_writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            synced_records: AtomicU64::new(0),
            records_per_sync_max: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            write_latency: Histogram::new(),
            sync_latency: Histogram::new(),
            #[cfg(feature = "metrics")]
            exported: exported::Exported::new(dir, substrate),
        }
    }

    /// `records` placed, `bytes` of payload as given, `stored` as framed
    /// (after compression), `compressed` of them stored compressed.
    pub(crate) fn appended(&self, records: u64, bytes: u64, stored: u64, compressed: u64) {
        self.appends.fetch_add(records, Relaxed);
        let total = self.bytes.fetch_add(bytes, Relaxed) + bytes;
        let stored_total = self.stored_bytes.fetch_add(stored, Relaxed) + stored;
        if compressed > 0 {
            self.compressed_records.fetch_add(compressed, Relaxed);
        }
        #[cfg(feature = "metrics")]
        {
            self.exported.appends.increment(records);
            self.exported.bytes.increment(bytes);
            self.exported.stored_bytes.increment(stored);
            self.exported.compressed_records.increment(compressed);
            // Two loads that may straddle a concurrent append: a gauge,
            // not an account.
            self.exported.compression_ratio.set(ratio(total, stored_total));
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (total, stored_total);
    }

    pub(crate) fn write_overlapped(&self) {
        self.overlapped_writes.fetch_add(1, Relaxed);
    }

    pub(crate) fn write_done(&self, took: Duration) {
        self.writes.fetch_add(1, Relaxed);
        self.write_latency.record_duration(took);
        #[cfg(feature = "metrics")]
        {
            self.exported.writes.increment(1);
            self.exported.write_seconds.record(took.as_secs_f64());
        }
    }

    pub(crate) fn sync_done(&self, records: u64, took: Duration) {
        self.syncs.fetch_add(1, Relaxed);
        self.synced_records.fetch_add(records, Relaxed);
        self.records_per_sync_max.fetch_max(records, Relaxed);
        self.sync_latency.record_duration(took);
        #[cfg(feature = "metrics")]
        {
            self.exported.syncs.increment(1);
            self.exported.sync_seconds.record(took.as_secs_f64());
            self.exported.records_per_sync.record(records as f64);
        }
    }

    pub(crate) fn stalled(&self) {
        self.stalls.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.exported.stalls.increment(1);
    }

    /// The journal was poisoned (exported as a gauge; `Stats` reads the gate).
    pub(crate) fn poisoned(&self) {
        #[cfg(feature = "metrics")]
        self.exported.poisoned.set(1.0);
    }

    pub(crate) fn snapshot(&self, (substrate, reason): (Substrate, &str), poisoned: bool) -> Stats {
        let syncs = self.syncs.load(Relaxed);
        let synced = self.synced_records.load(Relaxed);
        Stats {
            appends: self.appends.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            stored_bytes: self.stored_bytes.load(Relaxed),
            compressed_records: self.compressed_records.load(Relaxed),
            writes: self.writes.load(Relaxed),
            overlapped_writes: self.overlapped_writes.load(Relaxed),
            syncs,
            records_per_sync_mean: if syncs == 0 { 0.0 } else { synced as f64 / syncs as f64 },
            records_per_sync_max: self.records_per_sync_max.load(Relaxed),
            write_latency: self.write_latency.percentiles(),
            sync_latency: self.sync_latency.percentiles(),
            stalls: self.stalls.load(Relaxed),
            substrate,
            substrate_reason: reason.to_string(),
            poisoned,
        }
    }
}

/// The counters and histograms exported through the `metrics` facade, so a
/// service's own recorder (Prometheus, StatsD, ...) sees them.
#[cfg(feature = "metrics")]
mod exported {
    use metrics::{Counter, Gauge, Histogram};

    use crate::Substrate;

    /// Names of everything exported, with their units and descriptions.
    pub(super) const COUNTERS: [(&str, metrics::Unit, &str); 7] = [
        ("tidelog_appends_total", metrics::Unit::Count, "Records appended (batch members count one each)."),
        ("tidelog_append_bytes_total", metrics::Unit::Bytes, "Payload bytes appended."),
        ("tidelog_stored_bytes_total", metrics::Unit::Bytes, "Payload bytes stored in frames, after compression."),
        ("tidelog_compressed_records_total", metrics::Unit::Count, "Records stored compressed."),
        ("tidelog_writes_total", metrics::Unit::Count, "Write operations completed."),
        ("tidelog_syncs_total", metrics::Unit::Count, "Sync rounds completed successfully."),
        ("tidelog_stalls_total", metrics::Unit::Count, "Syncs slower than the stall threshold."),
    ];
    pub(super) const HISTOGRAMS: [(&str, metrics::Unit, &str); 3] = [
        ("tidelog_write_seconds", metrics::Unit::Seconds, "Latency of write operations."),
        ("tidelog_sync_seconds", metrics::Unit::Seconds, "Latency of sync rounds."),
        ("tidelog_records_per_sync", metrics::Unit::Count, "Records made durable by one sync round."),
    ];

    #[derive(Debug)]
    pub(super) struct Exported {
        pub(super) appends: Counter,
        pub(super) bytes: Counter,
        pub(super) stored_bytes: Counter,
        pub(super) compressed_records: Counter,
        pub(super) writes: Counter,
        pub(super) syncs: Counter,
        pub(super) stalls: Counter,
        pub(super) write_seconds: Histogram,
        pub(super) sync_seconds: Histogram,
        pub(super) records_per_sync: Histogram,
        pub(super) poisoned: Gauge,
        pub(super) compression_ratio: Gauge,
    }

    impl Exported {
        /// Registers the handles once per journal, labelled with its
        /// directory and substrate; the hot path only bumps them.
        pub(super) fn new(dir: &std::path::Path, substrate: Substrate) -> Exported {
            for (name, unit, what) in COUNTERS {
                metrics::describe_counter!(name, unit, what);
            }
            for (name, unit, what) in HISTOGRAMS {
                metrics::describe_histogram!(name, unit, what);
            }
            metrics::describe_gauge!("tidelog_poisoned", "1 once the journal was poisoned by an I/O failure.");
            metrics::describe_gauge!(
                "tidelog_compression_ratio",
                "Payload bytes appended per payload byte stored (1 without compression)."
            );
            let labels = [
                ("journal", dir.display().to_string()),
                (
                    "substrate",
                    match substrate {
                        Substrate::IoUring => "io_uring",
                        Substrate::Blocking => "blocking",
                    }
                    .to_string(),
                ),
            ];
            let poisoned = metrics::gauge!("tidelog_poisoned", &labels);
            poisoned.set(0.0);
            let compression_ratio = metrics::gauge!("tidelog_compression_ratio", &labels);
            compression_ratio.set(1.0);
            Exported {
                appends: metrics::counter!(COUNTERS[0].0, &labels),
                bytes: metrics::counter!(COUNTERS[1].0, &labels),
                stored_bytes: metrics::counter!(COUNTERS[2].0, &labels),
                compressed_records: metrics::counter!(COUNTERS[3].0, &labels),
                writes: metrics::counter!(COUNTERS[4].0, &labels),
                syncs: metrics::counter!(COUNTERS[5].0, &labels),
                stalls: metrics::counter!(COUNTERS[6].0, &labels),
                write_seconds: metrics::histogram!(HISTOGRAMS[0].0, &labels),
                sync_seconds: metrics::histogram!(HISTOGRAMS[1].0, &labels),
                records_per_sync: metrics::histogram!(HISTOGRAMS[2].0, &labels),
                poisoned,
                compression_ratio,
            }
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
