//! The `metrics` feature: what a service's recorder sees matches `Stats`.
//!
//! `cargo test --features metrics --test metrics` (run by `.ci/run`).
#![cfg(feature = "metrics")]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};

use common::within;
use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use tidelog::testing::{FaultPlan, Seams};
use tidelog::{Journal, JournalOptions};

matrix!(exported_metrics_match_stats, poisoning_sets_the_gauge);
#[cfg(feature = "compression")]
matrix!(the_compression_ratio_is_exported);

/// One recorded series.
#[derive(Default)]
struct Series {
    counter: AtomicU64,
    gauge_bits: AtomicU64,
    samples: Mutex<Vec<f64>>,
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        self.counter.fetch_add(value, SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.counter.fetch_max(value, SeqCst);
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        self.set(f64::from_bits(self.gauge_bits.load(SeqCst)) + value);
    }
    fn decrement(&self, value: f64) {
        self.set(f64::from_bits(self.gauge_bits.load(SeqCst)) - value);
    }
    fn set(&self, value: f64) {
        self.gauge_bits.store(value.to_bits(), SeqCst);
    }
}

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        self.samples.lock().unwrap().push(value);
    }
}

/// A series' name and labels.
type SeriesKey = (String, Vec<(String, String)>);

/// A process-wide recorder keeping every series by name and labels, and
/// every description.
#[derive(Default)]
struct Recorded {
    series: Mutex<HashMap<SeriesKey, Arc<Series>>>,
    described: Mutex<HashMap<String, Option<Unit>>>,
}

impl Recorded {
    fn get(&self, key: &Key) -> Arc<Series> {
        let labels = key.labels().map(|l| (l.key().to_string(), l.value().to_string())).collect::<Vec<_>>();
        self.series.lock().unwrap().entry((key.name().to_string(), labels)).or_default().clone()
    }

    /// The series `name` of the journal in `dir`, whatever its substrate label.
    fn of(&self, name: &str, dir: &std::path::Path) -> Arc<Series> {
        let dir = dir.display().to_string();
        let series = self.series.lock().unwrap();
        let found: Vec<_> = series
            .iter()
            .filter(|((n, labels), _)| n == name && labels.iter().any(|(k, v)| k == "journal" && *v == dir))
            .collect();
        assert_eq!(found.len(), 1, "exactly one {name} series for {dir}");
        found[0].1.clone()
    }
}

impl metrics::Recorder for &'static Recorded {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().insert(key.as_str().to_string(), unit);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().insert(key.as_str().to_string(), unit);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().insert(key.as_str().to_string(), unit);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.get(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.get(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.get(key))
    }
}

fn recorder() -> &'static Recorded {
    static RECORDED: OnceLock<&'static Recorded> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let recorded: &'static Recorded = Box::leak(Box::default());
        metrics::set_global_recorder(recorded).expect("the only recorder in this test binary");
        recorded
    })
}

async fn exported_metrics_match_stats(opts: JournalOptions) {
    let rec = recorder();
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let j = j.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    j.append_durable_async(format!("task {t} record {i}")).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        within(60, "durable appenders", t).await.unwrap();
    }
    j.append_batch_async(&[b"a".as_slice(), b"bc"]).await.unwrap();
    let stats = j.stats();
    let d = dir.path();
    assert_eq!(rec.of("tidelog_appends_total", d).counter.load(SeqCst), 16 * 25 + 2);
    assert_eq!(rec.of("tidelog_appends_total", d).counter.load(SeqCst), stats.appends);
    assert_eq!(rec.of("tidelog_append_bytes_total", d).counter.load(SeqCst), stats.bytes);
    assert_eq!(rec.of("tidelog_writes_total", d).counter.load(SeqCst), stats.writes);
    assert_eq!(rec.of("tidelog_syncs_total", d).counter.load(SeqCst), stats.syncs);
    assert_eq!(rec.of("tidelog_stalls_total", d).counter.load(SeqCst), stats.stalls);
    assert_eq!(rec.of("tidelog_stored_bytes_total", d).counter.load(SeqCst), stats.stored_bytes);
    assert_eq!(stats.stored_bytes, stats.bytes, "nothing compressed");
    assert_eq!(rec.of("tidelog_compressed_records_total", d).counter.load(SeqCst), 0);
    assert_eq!(f64::from_bits(rec.of("tidelog_compression_ratio", d).gauge_bits.load(SeqCst)), 1.0);
    assert!(stats.syncs >= 1 && stats.writes >= 1, "{stats:?}");

    let sync_seconds = rec.of("tidelog_sync_seconds", d).samples.lock().unwrap().clone();
    assert_eq!(sync_seconds.len() as u64, stats.syncs, "one sample per sync round");
    assert!(sync_seconds.iter().all(|s| s.is_finite() && *s >= 0.0 && *s < 120.0), "{sync_seconds:?}");
    let sync_max_us = sync_seconds.iter().cloned().fold(0.0, f64::max) * 1e6;
    assert!((sync_max_us - stats.sync_latency.max_us as f64).abs() <= 1.0, "{sync_max_us} vs {stats:?}");
    let write_seconds = rec.of("tidelog_write_seconds", d).samples.lock().unwrap().len() as u64;
    assert_eq!(write_seconds, stats.writes, "one sample per write");
    let per_sync = rec.of("tidelog_records_per_sync", d).samples.lock().unwrap().clone();
    assert_eq!(per_sync.len() as u64, stats.syncs);
    let synced: f64 = per_sync.iter().sum();
    assert!(synced >= (16 * 25) as f64, "every durable append was counted in a sync round: {synced}");
    assert_eq!(per_sync.iter().cloned().fold(0.0, f64::max) as u64, stats.records_per_sync_max);
    assert_eq!(f64::from_bits(rec.of("tidelog_poisoned", d).gauge_bits.load(SeqCst)), 0.0);

    let described = rec.described.lock().unwrap().clone();
    for name in ["tidelog_appends_total", "tidelog_syncs_total", "tidelog_poisoned"] {
        assert!(described.contains_key(name), "{name} is described");
    }
    assert_eq!(described["tidelog_sync_seconds"], Some(Unit::Seconds));
    assert_eq!(described["tidelog_append_bytes_total"], Some(Unit::Bytes));
    j.close().await.unwrap();
}

async fn poisoning_sets_the_gauge(opts: JournalOptions) {
    let rec = recorder();
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let j = Seams::new().faults(&plan).open(dir.path(), opts).await.unwrap();
    j.append_durable_async(b"before").await.unwrap();
    plan.fail_sync_nth.store(plan.syncs_seen.load(SeqCst) + 1, SeqCst);
    let err = within(30, "the failing sync", j.append_durable_async(b"fails")).await.unwrap_err();
    assert!(err.is_poisoned(), "{err}");
    assert!(j.stats().poisoned);
    assert_eq!(f64::from_bits(rec.of("tidelog_poisoned", dir.path()).gauge_bits.load(SeqCst)), 1.0);
    let _ = j.close().await;
}

#[cfg(feature = "compression")]
async fn the_compression_ratio_is_exported(opts: JournalOptions) {
    let rec = recorder();
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts.compression(tidelog::Compression::Lz4)).await.unwrap();
    let line = b"{\"event\":\"view\",\"page\":\"/product/detail\",\"ok\":true}\n";
    for i in 0..50u64 {
        let mut record: Vec<u8> = line.iter().copied().cycle().take(4096).collect();
        record[..8].copy_from_slice(&i.to_le_bytes());
        j.append_async(record).await.unwrap();
    }
    j.append_async(b"short: stored plain").await.unwrap();
    let stats = j.stats();
    let d = dir.path();
    assert_eq!((stats.compressed_records, stats.appends), (50, 51));
    assert_eq!(rec.of("tidelog_compressed_records_total", d).counter.load(SeqCst), 50);
    assert_eq!(rec.of("tidelog_stored_bytes_total", d).counter.load(SeqCst), stats.stored_bytes);
    assert_eq!(rec.of("tidelog_append_bytes_total", d).counter.load(SeqCst), stats.bytes);
    let gauge = f64::from_bits(rec.of("tidelog_compression_ratio", d).gauge_bits.load(SeqCst));
    assert_eq!(gauge, stats.compression_ratio(), "no append raced the last one");
    assert!(gauge > 10.0, "a repeated line compresses well: {gauge}");
    assert!(rec.described.lock().unwrap().contains_key("tidelog_compression_ratio"));
    j.close().await.unwrap();
}
