//! `tidelog bench`: durable append throughput and latency per substrate and
//! task count, beside a raw pwrite+fdatasync loop on the same disk, in one
//! run. The matrix runs several interleaved rounds and every figure is the
//! median across rounds: shared VM disks are noisy, so only side-by-side
//! comparisons from one run mean anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog::{Journal, JournalOptions, SubstrateChoice, SyncPolicy};

#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Directory to measure (default: a temporary directory here).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A short run (~5 s): 0.5 s cells, one round (default: 1 s cells, three
    /// rounds, ~30 s).
    #[arg(long)]
    quick: bool,
    /// Seconds per cell, after a warm-up that is not counted.
    #[arg(long)]
    duration: Option<f64>,
    /// Interleaved rounds over the whole matrix; figures are medians.
    #[arg(long)]
    rounds: Option<usize>,
    /// Concurrent appending tasks, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 64, 256])]
    tasks: Vec<usize>,
    /// Record sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![128usize])]
    record_size: Vec<usize>,
    /// Substrates: io_uring, io_uring-sqpoll, blocking (comma-separated).
    /// Default: io_uring and blocking, skipping (and saying so) one this
    /// machine cannot run; a substrate named here that cannot run is an
    /// error.
    #[arg(long, value_delimiter = ',')]
    substrate: Option<Vec<String>>,
    /// What each task waits for: durable (append_durable_async), written
    /// (append_async), submit (fire-and-forget tickets, awaited at the end).
    #[arg(long, value_delimiter = ',', default_values_t = vec!["durable".to_string()])]
    mode: Vec<String>,
    /// Journal sync policy: on-demand, or interval-<ms> (e.g. interval-1).
    #[arg(long, default_value = "on-demand")]
    policy: String,
    /// Segment size in MiB (default 64); small segments show what rollover
    /// costs appenders.
    #[arg(long, default_value_t = 64)]
    segment_mib: u64,
    /// Make each segment at rollover instead of ahead of need (to measure
    /// what pre-creation buys).
    #[arg(long)]
    no_precreate: bool,
    /// How segments are reserved: fallocate (the default), zero (written
    /// with zeros ahead of need, so fdatasync carries no extent
    /// conversion), or none.
    #[arg(long, default_value = "fallocate", value_parser = parse_preallocate)]
    preallocate: tidelog::Preallocate,
    /// Also run the raw floor into a preallocated file (fallocate, and
    /// zero-filled): what segment preallocation does to fdatasync latency.
    #[arg(long)]
    raw_prealloc: bool,
    /// Instead of the append matrix: write a journal of this many MiB per
    /// record size, then time `tidelog::replay` of it against a raw
    /// sequential read of the same files (both from a cold page cache).
    #[arg(long)]
    replay_mib: Option<u64>,
    /// Instead of the append matrix: write this many MiB sequentially with
    /// plain tokio::fs and with bulk::WritebackFile, each beside a journal
    /// doing durable appends; report MB/s, peak Dirty memory, journal p99.
    #[arg(long)]
    bulk_mib: Option<u64>,
    /// Also run every substrate with direct I/O (O_DIRECT segments), beside
    /// raw O_DIRECT loops: aligned pwrite+fdatasync, and aligned pwrite alone
    /// (sequential bandwidth, as fio measures it).
    #[arg(long)]
    direct: bool,
    /// Also run every substrate with RWF_DSYNC writes (`dsync_writes`):
    /// durable writes without a separate fdatasync.
    #[arg(long)]
    dsync: bool,
    /// Draw throughput against tasks, one line per system, mode and record
    /// size, as an SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One measurement of one configuration.
struct Sample {
    system: String,
    mode: String,
    tasks: usize,
    record: usize,
    ops: u64,
    secs: f64,
    hist: Histogram<u64>,
    cpu_secs: f64,
    records_per_sync: f64,
}

/// The medians across rounds of one configuration.
pub(crate) struct Cell {
    pub(crate) system: String,
    pub(crate) mode: String,
    pub(crate) tasks: usize,
    pub(crate) record: usize,
    rounds: usize,
    samples: u64,
    pub(crate) rate: f64,
    p50: u64,
    p99: u64,
    max: u64,
    cpu_us_per_op: f64,
    records_per_sync: f64,
}

fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

impl Cell {
    fn from_samples(group: &[&Sample]) -> Cell {
        let first = group[0];
        Cell {
            system: first.system.clone(),
            mode: first.mode.clone(),
            tasks: first.tasks,
            record: first.record,
            rounds: group.len(),
            samples: group.iter().map(|s| s.hist.len()).sum(),
            rate: median(group.iter().map(|s| s.ops as f64 / s.secs).collect()),
            p50: median(group.iter().map(|s| s.hist.value_at_quantile(0.5)).collect()),
            p99: median(group.iter().map(|s| s.hist.value_at_quantile(0.99)).collect()),
            max: group.iter().map(|s| s.hist.max()).max().unwrap_or(0),
            cpu_us_per_op: median(group.iter().map(|s| s.cpu_secs * 1e6 / s.ops.max(1) as f64).collect()),
            records_per_sync: median(group.iter().map(|s| s.records_per_sync).collect()),
        }
    }
}

pub(crate) fn run(args: BenchArgs) -> Result<(), String> {
    let cell_secs = args.duration.unwrap_or(if args.quick { 0.5 } else { 1.0 });
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let cell = Duration::from_secs_f64(cell_secs);
    let warmup = Duration::from_secs_f64((cell_secs / 5.0).min(0.3));
    let temp;
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("tidelog-bench").tempdir_in(".").map_err(|e| e.to_string())?;
            temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    if let Some(mib) = args.bulk_mib {
        eprintln!("tidelog bulk bench in {} ({mib} MiB per writer)", base.display());
        return crate::bulk_bench::run(&rt, &base, mib);
    }
    if let Some(mib) = args.replay_mib {
        eprintln!("tidelog replay bench in {} ({mib} MiB per record size)", base.display());
        return crate::replay_bench::run(&rt, &base, mib, &args.record_size);
    }
    eprintln!("tidelog bench in {} ({cell_secs} s per cell, {rounds} interleaved rounds, medians)", base.display());
    let policy = parse_policy(&args.policy)?;
    for mode in &args.mode {
        if !["durable", "written", "submit"].contains(&mode.as_str()) {
            return Err(format!("unknown mode {mode:?} (durable, written, submit)"));
        }
    }
    let mut raws = vec!["growing"];
    if args.raw_prealloc {
        raws.extend(["fallocate", "zeroed"]);
    }
    if args.direct {
        raws.extend(["direct", "direct-nosync"]);
    }
    let mut ios = vec![("", false, false)];
    if args.direct {
        ios.push((" direct", true, false));
    }
    if args.dsync {
        ios.push((" dsync", false, true));
        if args.direct {
            ios.push((" direct+dsync", true, true));
        }
    }
    let baselines = raws.len() + 1 + usize::from(cfg!(target_os = "linux"));
    // Asked for by name (a substrate, or --direct/--dsync): a cell that
    // cannot run fails the command instead of leaving a row out.
    let explicit = args.substrate.is_some();
    let substrates = args.substrate.clone().unwrap_or_else(|| vec!["io_uring".into(), "blocking".into()]);
    let journal_cells = substrates.len() * ios.len() * args.mode.len() * args.tasks.len();
    let cells = rounds * args.record_size.len() * (baselines + journal_cells);
    // Drawn on stderr only when it is a terminal (indicatif hides it
    // otherwise); `suspend` keeps our own lines readable either way.
    let progress = indicatif::ProgressBar::new(cells as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} cells, {elapsed} elapsed, ~{eta} left {msg}")
            .expect("a valid template"),
    );
    let mut samples = Vec::new();
    for round in 0..rounds {
        progress.suspend(|| eprintln!("round {}/{rounds}", round + 1));
        for &record in &args.record_size {
            for &prealloc in &raws {
                progress.set_message(format!("raw {prealloc}, {record} B"));
                samples.push(raw_floor(&base.join(format!("raw-{record}")), record, cell, warmup, prealloc)?);
                progress.inc(1);
            }
            samples.push(tokio_fs_floor(&rt, &base.join(format!("tokio-fs-{record}")), record, cell, warmup)?);
            progress.inc(1);
            #[cfg(target_os = "linux")]
            {
                samples.push(tokio_uring_floor(&base.join(format!("tokio-uring-{record}")), record, cell, warmup)?);
                progress.inc(1);
            }
            for (name, &(io_label, direct, dsync)) in substrates.iter().flat_map(|n| ios.iter().map(move |io| (n, io)))
            {
                let (choice, sqpoll) = match name.as_str() {
                    "io_uring" | "iouring" | "uring" => (SubstrateChoice::IoUring, None),
                    "io_uring-sqpoll" => (SubstrateChoice::IoUring, Some(Duration::from_millis(2))),
                    "blocking" => (SubstrateChoice::Blocking, None),
                    other => return Err(format!("unknown substrate {other:?} (io_uring, io_uring-sqpoll, blocking)")),
                };
                let label = format!("{}{io_label}", if sqpoll.is_some() { "+SQPOLL" } else { "" });
                for (mode, &tasks) in args.mode.iter().flat_map(|m| args.tasks.iter().map(move |t| (m, t))) {
                    let dir = base.join(format!("{name}-{mode}-{tasks}-{record}"));
                    let opts = JournalOptions::new()
                        .substrate(choice)
                        .sync_policy(policy)
                        .sqpoll(sqpoll)
                        .direct_io(direct)
                        .dsync_writes(dsync)
                        .segment_size(args.segment_mib << 20)
                        .precreate_segments(!args.no_precreate)
                        .preallocate(args.preallocate);
                    progress.set_message(format!("{name}{label} {mode}, {tasks} tasks, {record} B"));
                    match rt.block_on(journal_cell(&dir, (opts, &label), mode, tasks, record, cell, warmup)) {
                        Ok(s) => samples.push(s),
                        Err(tidelog::Error::Unsupported(why)) if explicit || !io_label.is_empty() => {
                            return Err(format!("tidelog {name}{label} cannot run here: {why}"));
                        }
                        Err(tidelog::Error::Unsupported(why)) => {
                            if round == 0 {
                                progress.suspend(|| eprintln!("skipping {name}{label}: {why}"));
                            }
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                    progress.inc(1);
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
    }
    let mut keys: Vec<(String, String, usize, usize)> = Vec::new();
    for s in &samples {
        let key = (s.system.clone(), s.mode.clone(), s.tasks, s.record);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let cells: Vec<Cell> = keys
        .iter()
        .map(|(sys, m, t, r)| {
            let group: Vec<&Sample> =
                samples.iter().filter(|s| (&s.system, &s.mode, s.tasks, s.record) == (sys, m, *t, *r)).collect();
            Cell::from_samples(&group)
        })
        .collect();
    progress.finish_and_clear();
    print_table(&cells);
    if let Some(path) = args.json {
        write_json(&path, &cells, &base)?;
    }
    if let Some(path) = args.svg {
        crate::chart::write_svg(&path, &cells)?;
    }
    Ok(())
}

fn cpu_time() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid and exclusive for the duration of the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The physical floor: one thread, pwrite then fdatasync — into a growing
/// file, or (`prealloc`) one reserved with `fallocate` or written with zeros
/// first, synced before timing starts: what segment preallocation buys.
///
/// `direct`: O_DIRECT, each record rounded up to whole 4096-byte blocks from
/// an aligned buffer, then fdatasync; `direct-nosync`: the same writes with
/// no sync at all — the device's sequential write bandwidth, as fio reports.
fn raw_floor(path: &Path, record: usize, cell: Duration, warmup: Duration, prealloc: &str) -> Result<Sample, String> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let direct = prealloc.starts_with("direct");
    let sync = prealloc != "direct-nosync";
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .custom_flags(if direct { libc::O_DIRECT } else { 0 })
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let reserve: u64 = 256 << 20;
    match prealloc {
        "growing" | "direct" | "direct-nosync" => {}
        "fallocate" => {
            use std::os::fd::AsRawFd;
            // SAFETY: plain syscall on a valid fd borrowed for the call.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, reserve as libc::off_t) };
            if rc != 0 {
                return Err(format!("fallocate: {}", std::io::Error::last_os_error()));
            }
        }
        _ => {
            let zeros = vec![0u8; 1 << 20];
            for i in 0..reserve / zeros.len() as u64 {
                file.write_all_at(&zeros, i * zeros.len() as u64).map_err(|e| e.to_string())?;
            }
        }
    }
    file.sync_all().map_err(|e| e.to_string())?;
    let len = if direct { record.next_multiple_of(4096) } else { record };
    let backing = vec![0xA5u8; len + 4096];
    let at = backing.as_ptr().align_offset(4096);
    let buf = &backing[at..at + len];
    let mut offset = 0u64;
    let timed = Timed::run(cell, warmup, || {
        file.write_all_at(buf, offset).map_err(|e| e.to_string())?;
        if sync {
            file.sync_data().map_err(|e| e.to_string())?;
        }
        offset += len as u64;
        Ok(())
    })?;
    let _ = std::fs::remove_file(path);
    let system = match prealloc {
        "growing" => "raw pwrite+fdatasync".to_string(),
        "direct" => "raw O_DIRECT+fdatasync".to_string(),
        "direct-nosync" => "raw O_DIRECT pwrite".to_string(),
        other => format!("raw pwrite+fdatasync {other}"),
    };
    Ok(timed.sample(system, if sync { "durable" } else { "written" }, record))
}

/// A one-task loop's figures: every call after the warm-up, timed.
struct Timed {
    hist: Histogram<u64>,
    ops: u64,
    secs: f64,
    cpu_secs: f64,
}

impl Timed {
    /// Calls `op` back to back for `warmup + cell`, and until one call
    /// after the warm-up has been timed.
    fn run(cell: Duration, warmup: Duration, mut op: impl FnMut() -> Result<(), String>) -> Result<Timed, String> {
        let mut hist = Histogram::<u64>::new(3).expect("histogram");
        let start = Instant::now();
        let mut counted = None;
        let mut ops = 0;
        // At least one counted call, however long the disk stalls.
        while start.elapsed() < warmup + cell || ops == 0 {
            let t = Instant::now();
            op()?;
            if counted.is_some() {
                hist.record(t.elapsed().as_micros() as u64).ok();
                ops += 1;
            } else if start.elapsed() >= warmup {
                counted = Some((Instant::now(), cpu_time()));
            }
        }
        let (t0, cpu0) = counted.unwrap_or((Instant::now(), cpu_time()));
        Ok(Timed { hist, ops, secs: t0.elapsed().as_secs_f64(), cpu_secs: cpu_time() - cpu0 })
    }

    fn sample(self, system: String, mode: &str, record: usize) -> Sample {
        let Timed { hist, ops, secs, cpu_secs } = self;
        Sample { system, mode: mode.into(), tasks: 1, record, ops, secs, hist, cpu_secs, records_per_sync: 1.0 }
    }
}

/// tokio-uring as its docs show it: `write_all_at` then `sync_data` per
/// record, on its own runtime thread (it cannot share tokio's).
#[cfg(target_os = "linux")]
fn tokio_uring_floor(path: &Path, record: usize, cell: Duration, warmup: Duration) -> Result<Sample, String> {
    let path = path.to_path_buf();
    let run = move || -> Result<Sample, String> {
        let rt = tokio_uring::Runtime::new(&tokio_uring::builder()).map_err(|e| format!("tokio-uring: {e}"))?;
        let file = rt.block_on(tokio_uring::fs::File::create(&path)).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut buf = Some(vec![0xA5u8; record]);
        let mut offset = 0u64;
        let timed = Timed::run(cell, warmup, || {
            rt.block_on(async {
                let (res, back) = file.write_all_at(buf.take().expect("returned by the last write"), offset).await;
                buf = Some(back);
                res?;
                offset += record as u64;
                file.sync_data().await
            })
            .map_err(|e| e.to_string())
        })?;
        rt.block_on(file.close()).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&path);
        Ok(timed.sample("tokio-uring write+sync_data".into(), "durable", record))
    };
    std::thread::spawn(run).join().map_err(|_| "the tokio-uring thread panicked".to_string())?
}

/// What a tokio service gets without a journal: one task, `tokio::fs`
/// `write_all` then `sync_data` per record, appending to a growing file.
/// Each call is a `spawn_blocking` hand-off inside tokio.
fn tokio_fs_floor(
    rt: &tokio::runtime::Runtime,
    path: &Path,
    record: usize,
    cell: Duration,
    warmup: Duration,
) -> Result<Sample, String> {
    use tokio::io::AsyncWriteExt;
    let mut options = tokio::fs::OpenOptions::new();
    options.create(true).write(true).truncate(true);
    let mut file = rt.block_on(options.open(path)).map_err(|e| format!("{}: {e}", path.display()))?;
    let buf = vec![0xA5u8; record];
    let timed = Timed::run(cell, warmup, || {
        rt.block_on(async {
            file.write_all(&buf).await?;
            file.sync_data().await
        })
        .map_err(|e| e.to_string())
    })?;
    let _ = std::fs::remove_file(path);
    Ok(timed.sample("tokio::fs write+sync_data".into(), "durable", record))
}

fn parse_policy(text: &str) -> Result<SyncPolicy, String> {
    match text {
        "on-demand" => Ok(SyncPolicy::OnDemand),
        other => other
            .strip_prefix("interval-")
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(|ms| SyncPolicy::Interval(Duration::from_millis(ms)))
            .ok_or_else(|| format!("unknown policy {other:?} (on-demand, interval-<ms>)")),
    }
}

/// One appending task: loops until `stop`, recording per-op latency while
/// `counting`. In submit mode an op is one `submit` call (its cost); tickets
/// are dropped — their records stay — and durability of the last one is
/// awaited after the timed window.
async fn appender(
    j: Journal,
    mode: String,
    record: usize,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tidelog::Result<(Histogram<u64>, u64, Option<tidelog::Ticket>)> {
    let payload = vec![0x5Au8; record];
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut ops = 0u64;
    let mut last = None;
    if mode == "submit" {
        // Timed in batches: two clock reads per 128-byte submit would cost
        // more than the submit.
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            for _ in 0..256 {
                last = Some(j.submit(&payload)?);
            }
            if counting.load(Ordering::Relaxed) {
                hist.record_n(t.elapsed().as_micros() as u64 / 256, 256).ok();
                ops += 256;
            }
            tokio::task::yield_now().await; // let the driver and the timer run
        }
        return Ok((hist, ops, last));
    }
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if mode == "durable" {
            j.append_durable_async(&payload).await?;
        } else {
            j.append_async(&payload).await?;
        }
        if counting.load(Ordering::Relaxed) {
            hist.record(t.elapsed().as_micros() as u64).ok();
            ops += 1;
        }
    }
    Ok((hist, ops, last))
}

/// One journal cell: `opts` plus what to add to the system's name.
async fn journal_cell(
    dir: &Path,
    (opts, label): (JournalOptions, &str),
    mode: &str,
    tasks: usize,
    record: usize,
    cell: Duration,
    warmup: Duration,
) -> tidelog::Result<Sample> {
    let _ = std::fs::remove_dir_all(dir);
    let journal = Journal::open(dir, opts).await?;
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..tasks)
        .map(|_| tokio::spawn(appender(journal.clone(), mode.to_string(), record, counting.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(warmup).await;
    let before = journal.stats();
    let (t0, cpu0) = (Instant::now(), cpu_time());
    counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(cell).await;
    stop.store(true, Ordering::Relaxed);
    // Each task's op in flight at the stop is counted when it completes,
    // and the cell's time runs until then: a cell a disk stall swallowed
    // still reports the ops that completed, over the time they took.
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut ops = 0;
    let mut tickets = Vec::new();
    for h in handles {
        let (h, n, last) = h.await.map_err(|e| tidelog::Error::InvalidOptions(e.to_string()))??;
        hist.add(h).ok();
        ops += n;
        tickets.extend(last);
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_time() - cpu0);
    let after = journal.stats();
    for ticket in tickets {
        ticket.await?; // every submitted record is durable before we stop
    }
    let substrate = journal.substrate();
    journal.close().await?;
    let syncs = (after.syncs - before.syncs).max(1);
    Ok(Sample {
        system: format!("tidelog {substrate:?}{label}"),
        mode: mode.to_string(),
        tasks,
        record,
        ops,
        secs,
        hist,
        cpu_secs: cpu,
        records_per_sync: (after.appends - before.appends) as f64 / syncs as f64,
    })
}

fn print_table(cells: &[Cell]) {
    // The native/fallback ratio of each IoUring row: against the Blocking
    // row of the same variant, mode, tasks and record size.
    let blocking_twin = |c: &Cell| {
        let variant = c.system.strip_prefix("tidelog IoUring")?;
        let twin = format!("tidelog Blocking{}", variant.trim_start_matches("+SQPOLL"));
        cells.iter().find(|b| b.system == twin && (&b.mode, b.tasks, b.record) == (&c.mode, c.tasks, c.record))
    };
    println!(
        "{:<30} {:>8} {:>5} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7}",
        "system",
        "mode",
        "tasks",
        "bytes",
        "ops/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "max µs",
        "cpu µs/op",
        "rec/sync",
        "io/blk"
    );
    for c in cells {
        let ratio = blocking_twin(c).map_or(String::new(), |b| format!("{:.2}x", c.rate / b.rate));
        println!(
            "{:<30} {:>8} {:>5} {:>7} {:>10.0} {:>8.1} {:>8} {:>8} {:>8} {:>9.2} {:>8.1} {:>7}",
            c.system,
            c.mode,
            c.tasks,
            c.record,
            c.rate,
            c.rate * c.record as f64 / 1e6,
            c.p50,
            c.p99,
            c.max,
            c.cpu_us_per_op,
            c.records_per_sync,
            ratio,
        );
    }
    // `sys` names a substrate and its I/O variant exactly ("IoUring",
    // "Blocking direct"), so "IoUring" never matches "IoUring direct".
    let find = |sys: &str, mode: &str, tasks: usize, record: usize| {
        cells.iter().find(|c| {
            c.system.strip_prefix("tidelog ") == Some(sys) && c.mode == mode && c.tasks == tasks && c.record == record
        })
    };
    let variants: BTreeSet<&str> = cells
        .iter()
        .filter_map(|c| c.system.strip_prefix("tidelog "))
        .filter_map(|s| s.split_once(' '))
        .map(|(_, v)| v)
        .collect();
    for c in cells.iter().filter(|c| c.mode == "submit") {
        println!("{} submit, {} tasks: {:.0} ns per record (aggregate)", c.system, c.tasks, 1e9 / c.rate);
    }
    let records: BTreeSet<usize> = cells.iter().map(|c| c.record).collect();
    let tasks: BTreeSet<usize> = cells.iter().map(|c| c.tasks).collect();
    let modes: BTreeSet<&str> = cells.iter().map(|c| c.mode.as_str()).collect();
    for &record in &records {
        let raw = cells.iter().find(|c| c.system.starts_with("raw") && c.record == record);
        for sys in ["IoUring", "Blocking"] {
            let Some(one) = find(sys, "durable", 1, record) else { continue };
            if let Some(raw) = raw {
                println!(
                    "{sys}, {record} B: durable 1-task p50 / raw p50 = {:.2}",
                    one.p50 as f64 / raw.p50.max(1) as f64
                );
            }
            for &t in tasks.iter().filter(|&&t| t > 1) {
                if let Some(many) = find(sys, "durable", t, record) {
                    println!("{sys}, {record} B: durable {t} tasks / 1 task = {:.1}x", many.rate / one.rate);
                }
            }
        }
        for &mode in &modes {
            for &t in &tasks {
                if let (Some(n), Some(b)) = (find("IoUring", mode, t, record), find("Blocking", mode, t, record)) {
                    println!("IoUring / Blocking, {mode}, {record} B, {t} tasks: {:.2}x", n.rate / b.rate);
                }
                for sys in ["IoUring", "Blocking"] {
                    for v in &variants {
                        let (Some(var), Some(plain)) =
                            (find(&format!("{sys} {v}"), mode, t, record), find(sys, mode, t, record))
                        else {
                            continue;
                        };
                        println!("{sys} {v} / buffered, {mode}, {record} B, {t} tasks: {:.2}x", var.rate / plain.rate);
                    }
                }
            }
        }
        let bandwidth = cells.iter().find(|c| c.system == "raw O_DIRECT pwrite" && c.record == record);
        for c in cells
            .iter()
            .filter(|c| c.system.contains("direct") && c.mode == "durable" && c.system.starts_with("tidelog"))
            .filter(|c| c.record == record)
        {
            if let Some(bw) = bandwidth {
                println!(
                    "{}, {record} B, {} tasks: durable MB/s / raw O_DIRECT bandwidth = {:.2}",
                    c.system,
                    c.tasks,
                    c.rate / bw.rate
                );
            }
        }
    }
}

fn write_json(path: &Path, cells: &[Cell], dir: &Path) -> Result<(), String> {
    let rows: Vec<serde_json::Value> = cells
        .iter()
        .map(|c| {
            serde_json::json!({
                "system": c.system, "mode": c.mode, "tasks": c.tasks, "record_bytes": c.record,
                "rounds": c.rounds, "samples": c.samples, "ops_per_sec": c.rate,
                "p50_us": c.p50, "p99_us": c.p99, "max_us": c.max,
                "cpu_us_per_op": c.cpu_us_per_op, "records_per_sync": c.records_per_sync,
            })
        })
        .collect();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let doc = serde_json::json!({
        "dir": dir.display().to_string(),
        "kernel": kernel.trim(),
        "filesystem": tidelog::StorageClass::of(dir).map_or_else(|e| e.to_string(), |c| c.name()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "figures": "medians across rounds; max is the largest seen",
        "cells": rows,
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_preallocate(s: &str) -> Result<tidelog::Preallocate, String> {
    match s {
        "none" => Ok(tidelog::Preallocate::None),
        "fallocate" => Ok(tidelog::Preallocate::Fallocate),
        "zero" => Ok(tidelog::Preallocate::Zero),
        other => Err(format!("{other}: expected none, fallocate or zero")),
    }
}
