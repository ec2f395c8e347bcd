//! tidelog against the Rust WALs users would pick instead: the same
//! workloads on the same disk in one run, and every durable cell read back
//! with the system's own reader.
//!
//! ```text
//! cargo run --release -p tidelog-peers -- [--quick] [--seconds S] [--recovery-mib M] [--dir D] [--json FILE] [--svg FILE] [--only NAME] [--workloads KEY,...]
//! ```

mod systems;

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use systems::{key_of, AsyncWal, System, Wal};

const SMALL: usize = 128;
const LARGE: usize = 1 << 20;
const RECOVERY_RECORD: usize = 4096;

struct Args {
    quick: bool,
    seconds: f64,
    writers: usize,
    recovery_bytes: u64,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    /// Run only the systems whose name contains this.
    only: Option<String>,
    /// Run only these workloads (their keys, comma-separated).
    workloads: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| -> Result<Option<String>, String> {
        match argv.iter().position(|a| a == name) {
            Some(i) => argv.get(i + 1).cloned().map(Some).ok_or(format!("{name} needs a value")),
            None => Ok(None),
        }
    };
    let quick = argv.iter().any(|a| a == "--quick");
    let seconds = match value("--seconds")? {
        Some(s) => s.parse().map_err(|e| format!("--seconds: {e}"))?,
        None if quick => 0.5,
        None => 3.0,
    };
    Ok(Args {
        quick,
        seconds,
        writers: 64,
        recovery_bytes: match value("--recovery-mib")? {
            Some(m) => m.parse::<u64>().map_err(|e| format!("--recovery-mib: {e}"))? << 20,
            None if quick => 64 << 20,
            None => 1 << 30,
        },
        dir: value("--dir")?.map(PathBuf::from),
        json: value("--json")?.map(PathBuf::from),
        svg: value("--svg")?.map(PathBuf::from),
        only: value("--only")?,
        workloads: value("--workloads")?,
    })
}

/// The workloads, in column order.
#[derive(Clone, Copy, Debug)]
enum Workload {
    DurableOne,
    DurableMany,
    WrittenOne,
    WrittenMany,
    DurableLarge,
    Recovery,
}

impl Workload {
    const ALL: [Workload; 6] = [
        Workload::DurableOne,
        Workload::DurableMany,
        Workload::WrittenOne,
        Workload::WrittenMany,
        Workload::DurableLarge,
        Workload::Recovery,
    ];

    fn title(self, writers: usize) -> String {
        match self {
            Workload::DurableOne => "(1) durable, 1 writer, 128 B: ops/s · p50/p99/max µs".into(),
            Workload::DurableMany => format!("(2) durable, {writers} writers, 128 B: ops/s · p99 µs"),
            Workload::WrittenOne => "(3) written, 1 writer: ops/s".into(),
            Workload::WrittenMany => format!("(3) written, {writers} writers: ops/s"),
            Workload::DurableLarge => "(4) durable, 1 MiB records: MB/s".into(),
            Workload::Recovery => "(5) recovery: open + full replay, records/s".into(),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Workload::DurableOne => "durable_1",
            Workload::DurableMany => "durable_many",
            Workload::WrittenOne => "written_1",
            Workload::WrittenMany => "written_many",
            Workload::DurableLarge => "durable_1mib",
            Workload::Recovery => "recovery",
        }
    }
}

/// What one cell measured.
#[derive(Debug, Default)]
struct Measure {
    ops: u64,
    bytes: u64,
    secs: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

#[derive(Debug)]
enum Outcome {
    Done(Measure),
    /// The system cannot express the workload, and why.
    NotApplicable(String),
    /// It failed, or lost acknowledged records.
    Failed(String),
}

/// A record: writer id and sequence number up front (for the read-back
/// check), then filler.
fn record(writer: u32, seq: u64, size: usize) -> Vec<u8> {
    let mut r = vec![0x5a; size.max(12)];
    r[..4].copy_from_slice(&writer.to_le_bytes());
    r[4..12].copy_from_slice(&seq.to_le_bytes());
    r
}

/// What the writers did: every acknowledged key (for the read-back check),
/// and the appends counted after the warm-up, with their latencies.
#[derive(Default)]
struct Run {
    acked: Vec<u64>,
    counted: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// When a cell's writers count (after a warm-up, as `tidelog bench` does:
/// the first appends into a fresh log on this VM ran at half speed) and
/// when they stop.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

impl Window {
    fn new(seconds: f64) -> Window {
        let from = Instant::now() + Duration::from_secs_f64((seconds / 4.0).min(0.5));
        Window { from, until: from + Duration::from_secs_f64(seconds) }
    }

    fn open(&self) -> bool {
        Instant::now() < self.until
    }
}

/// One writer's sequence of records and what became of them. The record
/// buffer is reused (its key rewritten), so the harness allocates nothing
/// per append: a fresh 1 MiB `Vec` per append cost more than some systems'
/// whole append.
struct Writer {
    id: u32,
    seq: u64,
    buf: Vec<u8>,
    run: Run,
}

impl Writer {
    fn new(id: usize, size: usize) -> Writer {
        Writer { id: id as u32, seq: 0, buf: record(id as u32, 0, size), run: Run::default() }
    }

    /// Makes `buf` the next record; returns its key and the time it is sent.
    fn next(&mut self) -> (u64, Instant) {
        self.buf[..12].copy_from_slice(&record(self.id, self.seq, 12));
        self.seq += 1;
        (key_of(&self.buf).expect("a keyed record"), Instant::now())
    }

    /// The record keyed `key`, sent at `sent`, was acknowledged.
    fn acked(&mut self, key: u64, sent: Instant, window: Window) {
        self.run.acked.push(key);
        if sent >= window.from {
            self.run.latencies.push(sent.elapsed());
            self.run.counted += 1;
        }
    }
}

fn merge(results: impl IntoIterator<Item = io::Result<Run>>, elapsed: Duration) -> io::Result<Run> {
    let mut run = Run { elapsed, ..Run::default() };
    for r in results {
        let r = r?;
        run.acked.extend(r.acked);
        run.counted += r.counted;
        run.latencies.extend(r.latencies);
    }
    Ok(run)
}

/// `writers` writers appending `size`-byte records for `seconds`, durable or
/// written, on `system` in `dir`: tokio tasks for a system with an async
/// API, threads otherwise.
fn drive(system: &dyn System, dir: &Path, writers: usize, seconds: f64, durable: bool, size: usize) -> io::Result<Run> {
    if let Some(opening) = system.open_async(dir.to_path_buf()) {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return rt.block_on(async { drive_tasks(opening.await?, writers, seconds, durable, size).await });
    }
    let wal: Arc<Box<dyn Wal>> = Arc::new(system.open(dir)?);
    let window = Window::new(seconds);
    let results: Vec<io::Result<Run>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let wal = wal.clone();
                scope.spawn(move || {
                    let mut writer = Writer::new(w, size);
                    while window.open() {
                        let (key, sent) = writer.next();
                        if durable {
                            wal.append_durable(&writer.buf)?;
                        } else {
                            wal.append_written(&writer.buf)?;
                        }
                        writer.acked(key, sent, window);
                    }
                    Ok(writer.run)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("a writer panicked")))).collect()
    });
    let elapsed = window.from.elapsed();
    Arc::try_unwrap(wal).map_err(|_| io::Error::other("a writer kept the log"))?.close()?;
    merge(results, elapsed)
}

async fn drive_tasks(
    wal: Box<dyn AsyncWal>,
    writers: usize,
    seconds: f64,
    durable: bool,
    size: usize,
) -> io::Result<Run> {
    let wal: Arc<Box<dyn AsyncWal>> = Arc::new(wal);
    let window = Window::new(seconds);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let wal = wal.clone();
            tokio::spawn(async move {
                let mut writer = Writer::new(w, size);
                while window.open() {
                    let (key, sent) = writer.next();
                    if durable {
                        wal.append_durable(&writer.buf).await?;
                    } else {
                        wal.append_written(&writer.buf).await?;
                    }
                    writer.acked(key, sent, window);
                }
                Ok::<_, io::Error>(writer.run)
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.map_err(io::Error::other)?);
    }
    let elapsed = window.from.elapsed();
    Arc::try_unwrap(wal).map_err(|_| io::Error::other("a writer kept the log"))?.close().await?;
    merge(results, elapsed)
}

/// Reads the log back with the system's own reader: every acknowledged
/// record must be there.
fn verify(system: &dyn System, dir: &Path, acked: &[u64]) -> Result<(), String> {
    let back = system.read_all(dir).map_err(|e| format!("read back: {e}"))?;
    let present: HashSet<u64> = back.keys.into_iter().collect();
    let lost = acked.iter().filter(|k| !present.contains(k)).count();
    if lost > 0 {
        return Err(format!("LOST {lost} of {} acknowledged records", acked.len()));
    }
    Ok(())
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn measure(mut run: Run, size: usize) -> Measure {
    run.latencies.sort();
    Measure {
        ops: run.counted,
        bytes: run.counted * size as u64,
        secs: run.elapsed.as_secs_f64(),
        p50: percentile(&run.latencies, 0.5),
        p99: percentile(&run.latencies, 0.99),
        max: run.latencies.last().copied().unwrap_or_default(),
    }
}

fn cell(system: &dyn System, workload: Workload, args: &Args, root: &Path) -> Outcome {
    let dir = systems::cell_dir(root, &system.name(), workload.key());
    // Start every cell with no other cell's dirty pages in flight.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let (writers, durable, size) = match workload {
        Workload::DurableOne => (1, true, SMALL),
        Workload::DurableMany => (args.writers, true, SMALL),
        Workload::WrittenOne => (1, false, SMALL),
        Workload::WrittenMany => (args.writers, false, SMALL),
        Workload::DurableLarge => (1, true, LARGE),
        Workload::Recovery if system.bulk_na().is_some() => {
            return Outcome::NotApplicable(system.bulk_na().unwrap_or_default().into())
        }
        Workload::Recovery => return recovery(system, args, &dir),
    };
    if let Some(why) = if durable { system.durable_na() } else { system.written_na() } {
        return Outcome::NotApplicable(why.into());
    }
    if let (Workload::DurableLarge, Some(why)) = (workload, system.bulk_na()) {
        return Outcome::NotApplicable(why.into());
    }
    if writers > 1 {
        if let Some(why) = system.concurrent_na() {
            return Outcome::NotApplicable(why.into());
        }
    }
    let outcome = match drive(system, &dir, writers, args.seconds, durable, size) {
        Ok(run) => match verify(system, &dir, &run.acked) {
            Ok(()) => Outcome::Done(measure(run, size)),
            Err(e) => Outcome::Failed(e),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// Writes `recovery_bytes` of 4 KiB records (written appends where the
/// system has them, else durable appends from many writers), then times
/// opening the log and reading every record with the system's reader.
fn recovery(system: &dyn System, args: &Args, dir: &Path) -> Outcome {
    let target = args.recovery_bytes / RECOVERY_RECORD as u64;
    let (durable, writers) = if system.written_na().is_none() { (false, 1) } else { (true, args.writers) };
    // Build in slices of one second until the log is big enough.
    let build = || -> io::Result<u64> {
        if let Some(opening) = system.open_async(dir.to_path_buf()) {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            return rt.block_on(async {
                let wal = opening.await?;
                for seq in 0..target {
                    let r = record(0, seq, RECOVERY_RECORD);
                    if durable {
                        wal.append_durable(&r).await?;
                    } else {
                        wal.append_written(&r).await?;
                    }
                }
                wal.close().await?;
                Ok(target)
            });
        }
        let wal: Arc<Box<dyn Wal>> = Arc::new(system.open(dir)?);
        let per_writer = target.div_ceil(writers as u64);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..writers)
                .map(|w| {
                    let wal = wal.clone();
                    scope.spawn(move || -> io::Result<()> {
                        for seq in 0..per_writer {
                            let r = record(w as u32, seq, RECOVERY_RECORD);
                            if durable {
                                wal.append_durable(&r)?;
                            } else {
                                wal.append_written(&r)?;
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("panicked"))))
        })?;
        Arc::try_unwrap(wal).map_err(|_| io::Error::other("a writer kept the log"))?.close()?;
        Ok(per_writer * writers as u64)
    };
    let outcome = match build() {
        Err(e) => Outcome::Failed(format!("building the log: {e}")),
        Ok(written) => {
            // The build leaves dirty pages (the records, and for zero-filled
            // segments their zeros) that the kernel writes back for seconds
            // after `close`: timed now, the replay would share the device
            // and the page cache with that writeback, by an amount that
            // depends on the system's layout. Measure the replay alone.
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
            let started = Instant::now();
            match system.read_all(dir) {
                Err(e) => Outcome::Failed(format!("recovery: {e}")),
                Ok(back) if back.records < written => {
                    Outcome::Failed(format!("LOST: read {} of {written} records", back.records))
                }
                Ok(back) => Outcome::Done(Measure {
                    ops: back.records,
                    bytes: back.bytes,
                    secs: started.elapsed().as_secs_f64(),
                    ..Measure::default()
                }),
            }
        }
    };
    let _ = std::fs::remove_dir_all(dir);
    outcome
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn show(workload: Workload, outcome: &Outcome) -> String {
    match outcome {
        Outcome::NotApplicable(why) => format!("n/a ({why})"),
        Outcome::Failed(why) => format!("FAILED: {why}"),
        Outcome::Done(m) => {
            let rate = m.ops as f64 / m.secs;
            match workload {
                Workload::DurableOne => {
                    format!("{rate:.0} · {}/{}/{}", us(m.p50), us(m.p99), us(m.max))
                }
                Workload::DurableMany => format!("{rate:.0} · {}", us(m.p99)),
                Workload::WrittenOne | Workload::WrittenMany => format!("{rate:.0}"),
                Workload::DurableLarge => format!("{:.0}", m.bytes as f64 / m.secs / 1e6),
                Workload::Recovery => format!("{rate:.0} ({:.0} MB/s)", m.bytes as f64 / m.secs / 1e6),
            }
        }
    }
}

fn json(system: &str, workload: Workload, outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Done(m) => serde_json::json!({
            "system": system, "workload": workload.key(), "status": "ok",
            "ops": m.ops, "seconds": m.secs, "ops_per_sec": m.ops as f64 / m.secs,
            "mb_per_sec": m.bytes as f64 / m.secs / 1e6,
            "p50_us": us(m.p50), "p99_us": us(m.p99), "max_us": us(m.max),
        }),
        Outcome::NotApplicable(why) => {
            serde_json::json!({ "system": system, "workload": workload.key(), "status": "n/a", "why": why })
        }
        Outcome::Failed(why) => {
            serde_json::json!({ "system": system, "workload": workload.key(), "status": "failed", "why": why })
        }
    }
}

/// One panel per workload, one bar per system (its rate against the best
/// in that panel); cells that are n/a or failed say so instead of a bar.
fn svg(systems: &[Box<dyn System>], cells: &[&serde_json::Value], writers: usize) -> String {
    const ROW: f64 = 18.0;
    const LABEL: f64 = 210.0;
    const BAR: f64 = 330.0;
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let value = |c: &serde_json::Value, w: Workload| -> Option<f64> {
        let key = if matches!(w, Workload::DurableLarge) { "mb_per_sec" } else { "ops_per_sec" };
        c.get(key).and_then(serde_json::Value::as_f64)
    };
    let panel_height = ROW * (systems.len() as f64 + 2.0);
    let height = panel_height * Workload::ALL.len() as f64 + 10.0;
    let width = LABEL + BAR + 200.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (p, workload) in Workload::ALL.iter().enumerate() {
        let top = p as f64 * panel_height + 10.0;
        out += &format!(
            "<text x=\"4\" y=\"{}\" font-weight=\"bold\">{}</text>\n",
            top + 12.0,
            escape(&workload.title(writers))
        );
        let mine: Vec<&&serde_json::Value> =
            cells.iter().filter(|c| c.get("workload").and_then(|w| w.as_str()) == Some(workload.key())).collect();
        let best = mine.iter().filter_map(|c| value(c, *workload)).fold(0.0, f64::max);
        for (i, system) in systems.iter().enumerate() {
            let y = top + ROW * (i as f64 + 1.0) + 4.0;
            let name = system.name();
            out += &format!("<text x=\"4\" y=\"{}\">{}</text>\n", y + 12.0, escape(&name));
            let Some(cell) = mine.iter().find(|c| c.get("system").and_then(|s| s.as_str()) == Some(name.as_str()))
            else {
                continue;
            };
            match value(cell, *workload) {
                Some(v) if best > 0.0 => {
                    let w = (v / best * BAR).max(1.0);
                    let fill = if name.starts_with("tidelog") { "#1f77b4" } else { "#999999" };
                    out += &format!(
                        "<rect x=\"{LABEL}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{fill}\"/>\n<text x=\"{:.1}\" y=\"{}\">{v:.0}</text>\n",
                        y + 2.0,
                        ROW - 5.0,
                        LABEL + w + 4.0,
                        y + 12.0
                    );
                }
                _ => {
                    let status = cell.get("status").and_then(|s| s.as_str()).unwrap_or("?");
                    let text = if status == "failed" { "FAILED" } else { "n/a" };
                    out += &format!("<text x=\"{LABEL}\" y=\"{}\" fill=\"#c00\">{text}</text>\n", y + 12.0);
                }
            }
        }
    }
    out + "</svg>\n"
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tidelog-peers: {e}");
            std::process::exit(2);
        }
    };
    let root = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .unwrap_or_else(|e| {
        eprintln!("tidelog-peers: temp dir: {e}");
        std::process::exit(1);
    });
    // walrus-rust keeps its files under WALRUS_DATA_DIR (set before any
    // thread starts).
    std::env::set_var("WALRUS_DATA_DIR", root.path().join("walrus"));
    // ... and prints a line per operation to stdout unless WALRUS_QUIET is set.
    std::env::set_var("WALRUS_QUIET", "1");
    let mut systems = systems::all();
    if let Some(only) = &args.only {
        systems.retain(|s| s.name().contains(only.as_str()));
    }
    let mut rows = Vec::new();
    let mut records = Vec::new();
    let mut failed = false;
    for system in &systems {
        let mut row = vec![system.name(), system.written_promise().to_string()];
        for workload in Workload::ALL {
            if args.workloads.as_ref().is_some_and(|w| !w.split(',').any(|k| k == workload.key())) {
                row.push("-".into());
                continue;
            }
            let outcome = cell(system.as_ref(), workload, &args, root.path());
            eprintln!("{:<22} {:<14} {}", system.name(), workload.key(), show(workload, &outcome));
            failed |= matches!(outcome, Outcome::Failed(_));
            row.push(show(workload, &outcome));
            records.push(json(&system.name(), workload, &outcome));
        }
        rows.push(row);
    }
    println!();
    println!(
        "{} s per cell{}, recovery of {} MiB; records read back with each system's own reader after every cell",
        args.seconds,
        if args.quick { " (--quick)" } else { "" },
        args.recovery_bytes >> 20
    );
    let mut header = vec!["system".to_string(), "(3) a written append returns with the record in".to_string()];
    header.extend(Workload::ALL.iter().map(|w| w.title(args.writers)));
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    for row in &rows {
        println!("| {} |", row.join(" | "));
    }
    if let Some(path) = &args.svg {
        let cells: Vec<&serde_json::Value> = records.iter().collect();
        if let Err(e) = std::fs::write(path, svg(&systems, &cells, args.writers)) {
            eprintln!("tidelog-peers: writing {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({ "seconds": args.seconds, "quick": args.quick, "cells": records });
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&doc).expect("json")) {
            eprintln!("tidelog-peers: writing {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    drop(root); // `exit` would skip removing it
    if failed {
        std::process::exit(1);
    }
}
