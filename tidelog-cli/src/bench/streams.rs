//! `tidelog bench --streams N`: N writers, each awaiting its own durable
//! append, into N streams of one journal (`tidelog::Streams`), beside N
//! writers each on a journal of its own, with the same options
//! (`SyncPolicy::Always`), and beside N writers appending plain records to
//! one journal (what streams cost over the group commit they ride on), in
//! interleaved rounds; figures are medians. What it measures is the
//! issue's claim for streams: many logs sharing one group commit instead
//! of one `fdatasync` each. The cost of many streams at rest (open time,
//! index memory) is `streams_open`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog::{Journal, JournalOptions, Streams, SyncPolicy};

use super::cpu_time;

/// What one writer appends to.
#[derive(Clone)]
enum Target {
    /// Stream `.1` of a journal shared by every writer.
    Stream(Streams, u64),
    /// A journal: of its own, or shared by every writer (plain records).
    Journal(Journal),
}

impl Target {
    /// Appends `payload`; resolves once it is durable (every journal here
    /// runs `SyncPolicy::Always`).
    async fn append(&self, payload: &[u8]) -> tidelog::Result<()> {
        match self {
            Target::Stream(s, id) => s.append_async(*id, payload).await.map(drop),
            Target::Journal(j) => j.append_async(payload).await.map(drop),
        }
    }
}

/// One configuration's measurement in one round.
pub(super) struct Sample {
    ops: u64,
    secs: f64,
    hist: Histogram<u64>,
    cpu_secs: f64,
    /// Records over syncs, all journals of the cell together.
    records_per_sync: f64,
    /// Syncs per second, all journals together.
    syncs_per_sec: f64,
    /// The median journal's median sync time (its whole life: the warm-up
    /// included).
    sync_p50_us: f64,
}

async fn writer(
    target: Target,
    record: usize,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tidelog::Result<(Histogram<u64>, u64)> {
    let payload = vec![0x5Au8; record];
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut ops = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        target.append(&payload).await?;
        if counting.load(Ordering::Relaxed) {
            hist.record(t.elapsed().as_micros() as u64).ok();
            ops += 1;
        }
    }
    Ok((hist, ops))
}

/// Appends and syncs so far, over every journal of a cell.
fn counters(journals: &[Journal]) -> (u64, u64) {
    journals.iter().map(Journal::stats).fold((0, 0), |(a, s), st| (a + st.appends, s + st.syncs))
}

/// One writer per target for a warm-up, then `cell` counted; as
/// `journal_cell` does, each writer's append in flight at the stop is
/// counted when it completes, and the time runs until then.
async fn drive(
    targets: Vec<Target>,
    journals: &[Journal],
    record: usize,
    (cell, warmup): (Duration, Duration),
) -> tidelog::Result<Sample> {
    let (counting, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let handles: Vec<_> =
        targets.into_iter().map(|t| tokio::spawn(writer(t, record, counting.clone(), stop.clone()))).collect();
    tokio::time::sleep(warmup).await;
    let before = counters(journals);
    let (t0, cpu0) = (Instant::now(), cpu_time());
    counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(cell).await;
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut ops = 0;
    for h in handles {
        let (h, n) = h.await.map_err(|e| tidelog::Error::Internal(format!("a writer panicked: {e}")))??;
        hist.add(h).ok();
        ops += n;
    }
    let (secs, cpu_secs) = (t0.elapsed().as_secs_f64(), cpu_time() - cpu0);
    let after = counters(journals);
    let records_per_sync = (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64;
    let syncs_per_sec = (after.1 - before.1) as f64 / secs;
    let sync_p50_us = median(journals.iter().map(|j| j.stats().sync_latency.p50_us as f64).collect());
    Ok(Sample { ops, secs, hist, cpu_secs, records_per_sync, syncs_per_sec, sync_p50_us })
}

/// `writers` streams (ids 1..=writers) of one journal in `dir`.
async fn one_journal(
    dir: &Path,
    opts: JournalOptions,
    writers: usize,
    record: usize,
    window: (Duration, Duration),
) -> tidelog::Result<Sample> {
    let _ = std::fs::remove_dir_all(dir);
    let streams = Streams::open(dir, opts).await?;
    let targets = (1..=writers as u64).map(|id| Target::Stream(streams.clone(), id)).collect();
    let sample = drive(targets, std::slice::from_ref(streams.journal()), record, window).await;
    streams.close().await?;
    let _ = std::fs::remove_dir_all(dir);
    sample
}

/// `writers` writers appending plain records to one journal in `dir`.
async fn plain_journal(
    dir: &Path,
    opts: JournalOptions,
    writers: usize,
    record: usize,
    window: (Duration, Duration),
) -> tidelog::Result<Sample> {
    let _ = std::fs::remove_dir_all(dir);
    let journal = Journal::open(dir, opts).await?;
    let targets = (0..writers).map(|_| Target::Journal(journal.clone())).collect();
    let sample = drive(targets, std::slice::from_ref(&journal), record, window).await;
    journal.close().await?;
    let _ = std::fs::remove_dir_all(dir);
    sample
}

/// `writers` journals in `dir/0`, `dir/1`, ..., one writer each.
async fn many_journals(
    dir: &Path,
    opts: JournalOptions,
    writers: usize,
    record: usize,
    window: (Duration, Duration),
) -> tidelog::Result<Sample> {
    let _ = std::fs::remove_dir_all(dir);
    let opening = (0..writers).map(|i| Journal::open(dir.join(i.to_string()), opts.clone()));
    let journals = futures::future::try_join_all(opening).await?;
    let targets = journals.iter().cloned().map(Target::Journal).collect();
    let sample = drive(targets, &journals, record, window).await;
    for j in &journals {
        j.close().await?;
    }
    let _ = std::fs::remove_dir_all(dir);
    sample
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// The configurations, in table order.
const ROWS: [&str; 3] = ["streams, one journal", "journals, one writer each", "writers, one journal, plain records"];

/// One cell of configuration `row` (an index into [`ROWS`]).
fn cell(
    rt: &tokio::runtime::Runtime,
    base: &Path,
    row: usize,
    opts: JournalOptions,
    (writers, record): (usize, usize),
    window: (Duration, Duration),
) -> Result<Sample, String> {
    let dir = base.join(format!("streams-bench-{row}"));
    let sample = match row {
        0 => rt.block_on(one_journal(&dir, opts, writers, record, window)),
        1 => rt.block_on(many_journals(&dir, opts, writers, record, window)),
        _ => rt.block_on(plain_journal(&dir, opts, writers, record, window)),
    };
    sample.map_err(|e| format!("{writers} {}: {e}", ROWS[row]))
}

/// The run: `rounds` rounds over the configurations, starting each round
/// one further along (so that none always runs on a disk another just
/// left busy).
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    base: &Path,
    opts: JournalOptions,
    writers: usize,
    record: usize,
    (rounds, cell_time, warmup): (usize, Duration, Duration),
) -> Result<(), String> {
    let opts = opts.sync_policy(SyncPolicy::Always);
    let mut samples: [Vec<Sample>; 3] = Default::default();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        for k in 0..ROWS.len() {
            let row = (k + round) % ROWS.len();
            samples[row].push(cell(rt, base, row, opts.clone(), (writers, record), (cell_time, warmup))?);
        }
    }
    let rate = |s: &[Sample]| median(s.iter().map(|s| s.ops as f64 / s.secs).collect());
    let apart = rate(&samples[1]);
    println!(
        "{:<42} {:>10} {:>7} {:>9} {:>8} {:>10} {:>7} {:>7} {:>10}",
        "system", "records/s", "x sep", "rec/sync", "syncs/s", "sync p50", "p50 us", "p99 us", "cpu us/rec"
    );
    for (name, samples) in ROWS.iter().zip(&samples) {
        let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        println!(
            "{:<42} {:>10.0} {:>6.1}x {:>9.1} {:>8.0} {:>10.0} {:>7.0} {:>7.0} {:>10.1}",
            format!("{writers} {name}"),
            rate(samples),
            rate(samples) / apart,
            m(|s| s.records_per_sync),
            m(|s| s.syncs_per_sec),
            m(|s| s.sync_p50_us),
            m(|s| s.hist.value_at_quantile(0.5) as f64),
            m(|s| s.hist.value_at_quantile(0.99) as f64),
            m(|s| s.cpu_secs * 1e6 / s.ops.max(1) as f64),
        );
    }
    println!(
        "{writers} writers, each awaiting its own durable {record} B append (SyncPolicy::Always), {} s per cell, \
         medians of {rounds} interleaved rounds. rec/sync: Stats::appends over Stats::syncs and syncs/s: syncs per \
         second, all journals of the row together; sync p50: the median journal's median sync time, us; \
         cpu us/rec: process CPU time (all threads) per record.",
        cell_time.as_secs_f64()
    );
    Ok(())
}
