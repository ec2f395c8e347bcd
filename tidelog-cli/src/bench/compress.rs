//! `tidelog bench --compress`: durable appends of compressible (JSON-like
//! text) and random records, each with `Compression::None` and
//! `Compression::Lz4`, side by side in one run: interleaved rounds, figures
//! are medians. Reports durable MB/s of *payload*, the log bytes each record
//! takes (frames, headers and padding included), and the ratio of payload
//! bytes to log bytes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog::{Compression, Journal, JournalOptions};

/// Distinct payloads per kind; tasks cycle through them from different
/// starting points, so consecutive records differ.
const POOL: usize = 256;

/// What the records hold.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Payload {
    Json,
    Random,
}

/// xorshift64: deterministic payloads, the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// JSON event lines (the kind of record an application log or CDC stream
/// carries), cut to exactly `len` bytes.
fn json(rng: &mut Rng, len: usize) -> Vec<u8> {
    const EVENTS: [&str; 5] = ["click", "view", "purchase", "signup", "logout"];
    const PAGES: [&str; 4] = ["/home", "/cart", "/product/detail", "/account/settings"];
    let mut out = String::with_capacity(len + 256);
    while out.len() < len {
        let r = rng.next();
        out.push_str(&format!(
            "{{\"id\":{},\"user\":\"user_{}\",\"event\":\"{}\",\"page\":\"{}\",\"ts\":{},\"latency_ms\":{}.{},\"ok\":{}}}\n",
            r % 1_000_000_000,
            (r >> 20) % 50_000,
            EVENTS[(r >> 8) as usize % EVENTS.len()],
            PAGES[(r >> 12) as usize % PAGES.len()],
            1_764_547_200_000u64 + (r >> 24) % 86_400_000,
            (r >> 30) % 900,
            (r >> 40) % 1000,
            (r >> 50) % 7 != 0,
        ));
    }
    out.truncate(len);
    out.into_bytes()
}

fn random(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len.div_ceil(8)).flat_map(|_| rng.next().to_le_bytes()).take(len).collect()
}

fn pool(payload: Payload, record: usize) -> Arc<Vec<Vec<u8>>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    Arc::new(
        (0..POOL)
            .map(|_| match payload {
                Payload::Json => json(&mut rng, record),
                Payload::Random => random(&mut rng, record),
            })
            .collect(),
    )
}

/// One cell's measurement.
struct Sample {
    /// Durable payload MB/s in the timed window.
    mbs: f64,
    /// Log bytes per record (the end LSN over every record appended).
    log_per_record: f64,
    /// `Stats::compression_ratio`.
    stats_ratio: f64,
    p99_us: u64,
    /// CPU seconds of the whole process per record (appenders, compression,
    /// writer): less disturbed by a busy machine than the rates.
    cpu_us_per_record: f64,
    substrate: tidelog::Substrate,
}

async fn appender(
    j: Journal,
    payloads: Arc<Vec<Vec<u8>>>,
    first: usize,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tidelog::Result<(Histogram<u64>, u64)> {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut ops = 0u64;
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        j.append_durable_async(&payloads[i % payloads.len()]).await?;
        i += 1;
        if counting.load(Ordering::Relaxed) {
            hist.record(t.elapsed().as_micros() as u64).ok();
            ops += 1;
        }
    }
    Ok((hist, ops))
}

async fn cell(
    dir: &Path,
    opts: JournalOptions,
    payloads: &Arc<Vec<Vec<u8>>>,
    tasks: usize,
    (cell, warmup): (Duration, Duration),
) -> tidelog::Result<Sample> {
    let _ = std::fs::remove_dir_all(dir);
    let j = Journal::open(dir, opts).await?;
    let (counting, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let first = t * POOL / tasks.max(1);
            tokio::spawn(appender(j.clone(), payloads.clone(), first, counting.clone(), stop.clone()))
        })
        .collect();
    tokio::time::sleep(warmup).await;
    let (t0, cpu0) = (Instant::now(), super::cpu_time());
    counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(cell).await;
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut ops = 0;
    for h in handles {
        let (h, n) = h.await.map_err(|e| tidelog::Error::InvalidOptions(e.to_string()))??;
        hist.add(h).ok();
        ops += n;
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), super::cpu_time() - cpu0);
    let stats = j.stats();
    let end = j.next_lsn().as_u64();
    let substrate = j.substrate();
    j.close().await?;
    let record = payloads[0].len() as f64;
    Ok(Sample {
        mbs: ops as f64 * record / secs / 1e6,
        log_per_record: end as f64 / stats.appends.max(1) as f64,
        stats_ratio: stats.compression_ratio(),
        p99_us: hist.value_at_quantile(0.99),
        cpu_us_per_record: cpu * 1e6 / ops.max(1) as f64,
        substrate,
    })
}

/// Records per `submit` pass: 16 MiB of 4 KiB records, so that a pass
/// reuses the chunk buffers the one before it recycled (the log buffer
/// keeps 32 MiB of them) instead of faulting fresh pages in.
const SUBMITS: usize = 4_000;
/// Timed passes per journal, after one that warms the buffers; the figure
/// is the fastest (the one least disturbed by other work on the machine:
/// the code path is the same in every pass).
const PASSES: usize = 5;

/// CPU nanoseconds per `submit` of the records of `payloads`, on this
/// thread only (the writer's work and other processes' are not counted),
/// in a journal that never syncs on its own: the fastest of `PASSES`
/// timed passes after a warm-up pass.
async fn submit_ns(dir: &Path, opts: JournalOptions, payloads: &[Vec<u8>]) -> tidelog::Result<f64> {
    let _ = std::fs::remove_dir_all(dir);
    let j = Journal::open(dir, opts.sync_policy(tidelog::SyncPolicy::Never)).await?;
    let mut passes = Vec::with_capacity(PASSES);
    for pass in 0..=PASSES {
        let t = thread_cpu_ns();
        let mut last = None;
        for i in 0..SUBMITS {
            last = Some(j.submit(&payloads[(i + pass) % payloads.len()])?);
        }
        if pass > 0 {
            passes.push((thread_cpu_ns() - t) as f64 / SUBMITS as f64);
        }
        // Written: its chunk buffers are back for the next pass.
        if let Some(ticket) = last {
            ticket.await?;
        }
    }
    j.close().await?;
    Ok(passes.into_iter().fold(f64::INFINITY, f64::min))
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the pointer is valid and exclusive for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A row of the table: (payload, tasks, codec) and its samples.
type Row = ((Payload, usize, &'static str), Vec<Sample>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// The run: `rounds` interleaved rounds over payload × tasks × compression.
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    base: &Path,
    opts: JournalOptions,
    (rounds, cell_time, warmup): (usize, Duration, Duration),
    tasks: &[usize],
    record: usize,
) -> Result<(), String> {
    let payloads = [(Payload::Json, pool(Payload::Json, record)), (Payload::Random, pool(Payload::Random, record))];
    let codecs = [("none", Compression::None), ("lz4", Compression::Lz4)];
    // (payload, tasks, codec) -> samples, in the order first measured.
    let mut rows: Vec<Row> = Vec::new();
    let mut submits: Vec<((Payload, &str), Vec<f64>)> = Vec::new();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        for (kind, pool) in &payloads {
            for &(name, how) in &codecs {
                let dir = base.join(format!("compress-submit-{name}-{kind:?}"));
                let ns = rt
                    .block_on(submit_ns(&dir, opts.clone().compression(how), pool))
                    .map_err(|e| format!("submit, {kind:?}, {name}: {e}"))?;
                let _ = std::fs::remove_dir_all(&dir);
                match submits.iter_mut().find(|(k, _)| *k == (*kind, name)) {
                    Some((_, v)) => v.push(ns),
                    None => submits.push(((*kind, name), vec![ns])),
                }
            }
        }
        for &t in tasks {
            for (kind, pool) in &payloads {
                for &(name, how) in &codecs {
                    let dir = base.join(format!("compress-{name}-{kind:?}-{t}"));
                    let sample = rt
                        .block_on(cell(&dir, opts.clone().compression(how), pool, t, (cell_time, warmup)))
                        .map_err(|e| format!("{kind:?}, {name}, {t} tasks: {e}"))?;
                    let _ = std::fs::remove_dir_all(&dir);
                    let key = (*kind, t, name);
                    match rows.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, samples)) => samples.push(sample),
                        None => rows.push((key, vec![sample])),
                    }
                }
            }
        }
    }
    print_table(&rows, record);
    println!();
    println!("{:<8} {:<5} {:>12} {:>8}", "payload", "codec", "submit ns", "x none");
    // rt.block_on runs each pass on this thread: its CPU time is the
    // appender's.
    for ((kind, name), ns) in &submits {
        let ns = median(ns.clone());
        let none = submits.iter().find(|(k, _)| *k == (*kind, "none")).map(|(_, v)| median(v.clone()));
        let versus = none.map_or("-".to_string(), |none| format!("{:.2}x", ns / none));
        println!("{:<8} {name:<5} {ns:>12.0} {versus:>8}", format!("{kind:?}").to_lowercase());
    }
    println!(
        "submit ns: the appending thread's CPU time per record (sequence, compress, copy into the log buffer), \
         fastest of {PASSES} passes of {SUBMITS} records, median of {rounds} rounds."
    );
    Ok(())
}

fn print_table(rows: &[Row], record: usize) {
    println!(
        "{:<8} {:>6} {:<5} {:>8} {:>8} {:>10} {:>9} {:>8} {:>8} {:>10}",
        "payload", "tasks", "codec", "MB/s", "x none", "log B/rec", "on disk", "stats", "p99 us", "cpu us/rec"
    );
    let mbs = |key: (Payload, usize, &str)| {
        rows.iter().find(|(k, _)| *k == key).map(|(_, s)| median(s.iter().map(|s| s.mbs).collect()))
    };
    for ((kind, tasks, codec), samples) in rows {
        let rate = median(samples.iter().map(|s| s.mbs).collect());
        let log = median(samples.iter().map(|s| s.log_per_record).collect());
        let versus = mbs((*kind, *tasks, "none")).map_or("-".to_string(), |none| format!("{:.2}x", rate / none));
        println!(
            "{:<8} {tasks:>6} {codec:<5} {rate:>8.1} {versus:>8} {log:>10.0} {:>8.2}x {:>7.2}x {:>8.0} {:>10.1}",
            format!("{kind:?}").to_lowercase(),
            record as f64 / log,
            median(samples.iter().map(|s| s.stats_ratio).collect()),
            median(samples.iter().map(|s| s.p99_us as f64).collect()),
            median(samples.iter().map(|s| s.cpu_us_per_record).collect()),
        );
    }
    let first = rows.first().map(|(_, s)| (s.len(), s[0].substrate));
    println!(
        "On {:?}. MB/s: durable payload bytes per second (append_durable_async), median of {} rounds; log B/rec: \
         the log's bytes (frames, headers, padding) per record; on disk: payload over log bytes; stats: \
         Stats::compression_ratio (payload over stored payload bytes); cpu us/rec: process CPU time per record.",
        first.map(|f| f.1),
        first.map_or(0, |f| f.0)
    );
}
