//! `tidelog bench`: durable append throughput and latency per substrate and
//! task count, beside a raw pwrite+fdatasync loop on the same disk, in one
//! run. The matrix runs several interleaved rounds and every figure is the
//! median across rounds: shared VM disks are noisy, so only side-by-side
//! comparisons from one run mean anything.
//!
//! The modes and outputs are files of their own: `floors` (the one-task
//! baselines beside the journal), `journal_cell` (tasks appending to one
//! journal), `report` (medians, the table, JSON), `chart` (SVG), `bulk`
//! (`--bulk-mib`), `replay` (`--replay-mib`), `compress` (`--compress`)
//! and `streams` with `streams_open` (`--streams`).

mod backup;
mod bulk;
mod chart;
mod compress;
mod floors;
pub(crate) mod follow;
mod journal_cell;
mod punts;
mod replay;
mod report;
mod streams;
mod streams_open;

use std::path::PathBuf;
use std::time::Duration;

use hdrhistogram::Histogram;
use tidelog::{JournalOptions, SubstrateChoice, SyncPolicy};

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
    /// Record sizes in bytes, comma-separated (default 128; with
    /// --compress, one size, default 4096).
    #[arg(long, value_delimiter = ',')]
    record_size: Option<Vec<usize>>,
    /// Substrates: io_uring, io_uring-sqpoll, blocking (comma-separated).
    /// Default: io_uring and blocking, skipping (and saying so) one this
    /// machine cannot run; a substrate named here that cannot run is an
    /// error.
    #[arg(long, value_delimiter = ',')]
    substrate: Option<Vec<String>>,
    /// What each task waits for: durable (append_durable_async),
    /// durable-owned (a new Vec per record handed to submit_owned, its
    /// ticket awaited), durable-threads (OS threads calling the blocking
    /// append_durable), written (append_async), submit
    /// (fire-and-forget tickets, awaited at the end).
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
    /// How segments are reserved, comma-separated for a row each:
    /// fallocate (the default), zero (written with zeros ahead of need, so
    /// fdatasync carries no extent conversion), or none. Rows other than
    /// fallocate's name theirs ("IoUring zero").
    #[arg(long, value_delimiter = ',', default_values_t = vec!["fallocate".to_string()])]
    preallocate: Vec<String>,
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
    /// Instead of the append matrix: fill a journal of this many MiB
    /// (--segment-mib segments), then report 64 durable appenders' latency
    /// without and during Journal::backup (and during cp), and one
    /// backup's time beside cp of the same files.
    #[arg(long)]
    backup_mib: Option<u64>,
    /// Also run every substrate with direct I/O (O_DIRECT segments), beside
    /// raw O_DIRECT loops: aligned pwrite+fdatasync, and aligned pwrite alone
    /// (sequential bandwidth, as fio measures it).
    #[arg(long)]
    direct: bool,
    /// Also run every substrate with RWF_DSYNC writes (`dsync_writes`):
    /// durable writes without a separate fdatasync.
    #[arg(long)]
    dsync: bool,
    /// Exactly these I/O variants, comma-separated, instead of buffered plus
    /// what --direct and --dsync add: buffered, direct, dsync, direct+dsync.
    /// `--io direct+dsync --preallocate zero` is the configuration whose
    /// writes the kernel can issue inline from io_uring on ext4 and XFS.
    #[arg(long, value_delimiter = ',')]
    io: Option<Vec<String>>,
    /// Instead of the append matrix: durable appends of compressible
    /// (JSON-like text) and random records, uncompressed and with
    /// `Compression::Lz4`, per --tasks count, in interleaved rounds: payload
    /// MB/s, log bytes per record and the compression ratio. Runs on the
    /// first --substrate (default: Auto's pick) with the --io variant
    /// given (default buffered).
    #[arg(long)]
    compress: bool,
    /// Draw throughput against tasks, one line per system, mode and record
    /// size, as an SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Instead of the append matrix: durable appenders (--tasks, the first
    /// --record-size) with and without a follower in another process
    /// (`JournalReader::follow`), in interleaved rounds: the appenders'
    /// rate either way, and how long after each acknowledgement the
    /// follower had the record.
    #[arg(long)]
    follow: bool,
    /// Instead of the append matrix: this many writers, each awaiting its
    /// own durable append (the --record-size given, default 128), into as
    /// many streams of one journal (`tidelog::Streams`), beside as many
    /// journals of their own and beside one journal of plain records,
    /// SyncPolicy::Always, in interleaved rounds; then the open time and
    /// index heap of --open-streams.
    #[arg(long)]
    streams: Option<usize>,
    /// With --streams: the journal whose warm `Streams::open` is timed,
    /// STREAMSxENTRIES (0 skips it).
    #[arg(long, default_value = "10000x100")]
    open_streams: String,
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
    /// The share of io_uring requests punted to io-wq (IoUring rows).
    punted: Option<f64>,
}

pub(crate) fn run(args: BenchArgs) -> Result<(), String> {
    // Before any thread exists: the counters are inherited by every thread
    // made later, the runtime's and the journals'.
    let punts = punts::Punts::open();
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
    if let Some(mib) = args.backup_mib {
        eprintln!("tidelog backup bench in {} ({mib} MiB journal)", base.display());
        return backup::run(&rt, &base, mib, args.segment_mib);
    }
    if let Some(mib) = args.bulk_mib {
        eprintln!("tidelog bulk bench in {} ({mib} MiB per writer)", base.display());
        return bulk::run(&rt, &base, mib);
    }
    let record_sizes = args.record_size.clone().unwrap_or_else(|| vec![128]);
    if let Some(mib) = args.replay_mib {
        eprintln!("tidelog replay bench in {} ({mib} MiB per record size)", base.display());
        let preallocs = args.preallocate.iter().map(|p| parse_preallocate(p)).collect::<Result<Vec<_>, _>>()?;
        return replay::run(&rt, &base, mib, &record_sizes, &preallocs);
    }
    if args.compress {
        return compress_bench(&args, &rt, &base, (rounds, cell, warmup));
    }
    if let Some(writers) = args.streams {
        return streams_bench(&args, &rt, &base, writers, (rounds, cell, warmup));
    }
    if args.follow {
        eprintln!("tidelog follower bench in {} ({cell_secs} s per cell, {rounds} rounds)", base.display());
        let record = record_sizes.first().copied().unwrap_or(128);
        return follow::run(&rt, &base, &args.tasks, record, cell_secs, rounds);
    }
    eprintln!("tidelog bench in {} ({cell_secs} s per cell, {rounds} interleaved rounds, medians)", base.display());
    if let Some(why) = punts.unknown_because() {
        eprintln!("io-wq punts per IoUring row: unknown ({why})");
    }
    let policy = parse_policy(&args.policy)?;
    for mode in &args.mode {
        if !["durable", "durable-owned", "durable-threads", "written", "submit"].contains(&mode.as_str()) {
            return Err(format!("unknown mode {mode:?} (durable, durable-owned, durable-threads, written, submit)"));
        }
    }
    let mut raws = vec!["growing"];
    if args.raw_prealloc {
        raws.extend(["fallocate", "zeroed"]);
    }
    let ios = io_variants(&args)?;
    if ios.iter().any(|&(_, direct, _)| direct) {
        raws.extend(["direct", "direct-nosync"]);
    }
    let preallocs = args
        .preallocate
        .iter()
        .map(|p| parse_preallocate(p).map(|how| (p.as_str(), how)))
        .collect::<Result<Vec<_>, _>>()?;
    let ios: Vec<(String, bool, bool, tidelog::Preallocate)> = ios
        .iter()
        .flat_map(|&(label, direct, dsync)| {
            preallocs.iter().map(move |&(name, how)| {
                let named = if how == tidelog::Preallocate::Fallocate { String::new() } else { format!(" {name}") };
                (format!("{label}{named}"), direct, dsync, how)
            })
        })
        .collect();
    let baselines = raws.len() + 1 + usize::from(cfg!(target_os = "linux"));
    // Asked for by name (a substrate, or --direct/--dsync): a cell that
    // cannot run fails the command instead of leaving a row out.
    let explicit = args.substrate.is_some();
    let substrates = args.substrate.clone().unwrap_or_else(|| vec!["io_uring".into(), "blocking".into()]);
    let journal_cells = substrates.len() * ios.len() * args.mode.len() * args.tasks.len();
    let cells = rounds * record_sizes.len() * (baselines + journal_cells);
    // Drawn on stderr only when it is a terminal (indicatif hides it
    // otherwise); `suspend` keeps our own lines readable either way.
    let progress = indicatif::ProgressBar::new(cells as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} cells, {elapsed} elapsed, ~{eta} left {msg}")
            .expect("a valid template"),
    );
    let mut samples = Vec::new();
    for round in 0..rounds {
        progress.suspend(|| eprintln!("round {}/{rounds}", round + 1));
        for &record in &record_sizes {
            for &prealloc in &raws {
                progress.set_message(format!("raw {prealloc}, {record} B"));
                samples.push(floors::raw(&base.join(format!("raw-{record}")), record, cell, warmup, prealloc)?);
                progress.inc(1);
            }
            samples.push(floors::tokio_fs(&rt, &base.join(format!("tokio-fs-{record}")), record, cell, warmup)?);
            progress.inc(1);
            #[cfg(target_os = "linux")]
            {
                samples.push(floors::tokio_uring(&base.join(format!("tokio-uring-{record}")), record, cell, warmup)?);
                progress.inc(1);
            }
            for (name, (io_label, direct, dsync, how)) in
                substrates.iter().flat_map(|n| ios.iter().map(move |io| (n, io)))
            {
                let (direct, dsync, how) = (*direct, *dsync, *how);
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
                        .preallocate(how);
                    progress.set_message(format!("{name}{label} {mode}, {tasks} tasks, {record} B"));
                    match rt.block_on(journal_cell::run(
                        &dir,
                        (opts, &label),
                        mode,
                        (tasks, record),
                        (cell, warmup),
                        &punts,
                    )) {
                        Ok(s) => samples.push(s),
                        // Asked for by name: a substrate, or direct I/O or
                        // dsync (a preallocation alone is not a request for
                        // a substrate).
                        Err(tidelog::Error::Unsupported(why)) if explicit || direct || dsync => {
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
    let cells = report::medians(&samples);
    progress.finish_and_clear();
    let picks = rt.block_on(auto_picks(&base, &ios, policy));
    report::print_table(&cells, &picks);
    if let Some(path) = args.json {
        report::write_json(&path, &cells, &picks, &base)?;
    }
    if let Some(path) = args.svg {
        chart::write_svg(&path, &cells)?;
    }
    Ok(())
}

/// `--compress`: one record size, one substrate, one I/O variant.
fn compress_bench(
    args: &BenchArgs,
    rt: &tokio::runtime::Runtime,
    base: &std::path::Path,
    (rounds, cell, warmup): (usize, Duration, Duration),
) -> Result<(), String> {
    let record = match args.record_size.as_deref() {
        None => 4096,
        Some(&[one]) => one,
        Some(_) => return Err("--compress measures one --record-size".into()),
    };
    let choice = match args.substrate.as_ref().and_then(|s| s.first()).map(String::as_str) {
        None => SubstrateChoice::Auto,
        Some("io_uring") => SubstrateChoice::IoUring,
        Some("blocking") => SubstrateChoice::Blocking,
        Some(other) => return Err(format!("--compress runs on io_uring or blocking, not {other:?}")),
    };
    let ios = io_variants(args)?;
    let &[(label, direct, dsync)] = ios.as_slice() else {
        return Err("--compress measures one I/O variant (--io)".into());
    };
    let how = parse_preallocate(args.preallocate.first().map_or("fallocate", String::as_str))?;
    let opts = JournalOptions::new()
        .substrate(choice)
        .sync_policy(parse_policy(&args.policy)?)
        .direct_io(direct)
        .dsync_writes(dsync)
        .segment_size(args.segment_mib << 20)
        .preallocate(how);
    eprintln!(
        "tidelog compression bench in {} ({record} B records, {:?}{label}, {} s per cell, {rounds} interleaved rounds, medians)",
        base.display(),
        choice,
        cell.as_secs_f64()
    );
    compress::run(rt, base, opts, (rounds, cell, warmup), &args.tasks, record)
}

/// `--streams`: one record size, one substrate (default: Auto's pick),
/// the --io variant given (default buffered).
fn streams_bench(
    args: &BenchArgs,
    rt: &tokio::runtime::Runtime,
    base: &std::path::Path,
    writers: usize,
    window: (usize, Duration, Duration),
) -> Result<(), String> {
    let record = match args.record_size.as_deref() {
        None => 128,
        Some(&[one]) => one,
        Some(_) => return Err("--streams measures one --record-size".into()),
    };
    let choice = match args.substrate.as_ref().and_then(|s| s.first()).map(String::as_str) {
        None => SubstrateChoice::Auto,
        Some("io_uring") => SubstrateChoice::IoUring,
        Some("blocking") => SubstrateChoice::Blocking,
        Some(other) => return Err(format!("--streams runs on io_uring or blocking, not {other:?}")),
    };
    let &[(label, direct, dsync)] = io_variants(args)?.as_slice() else {
        return Err("--streams measures one I/O variant (--io)".into());
    };
    let open = match args.open_streams.as_str() {
        "0" => None,
        text => match text.split_once('x').map(|(s, e)| (s.parse::<u64>(), e.parse::<u64>())) {
            Some((Ok(s), Ok(e))) => Some((s, e)),
            _ => return Err(format!("--open-streams {text:?}: expected STREAMSxENTRIES, e.g. 10000x100, or 0")),
        },
    };
    let opts = JournalOptions::new()
        .substrate(choice)
        .direct_io(direct)
        .dsync_writes(dsync)
        .segment_size(args.segment_mib << 20)
        .preallocate(parse_preallocate(args.preallocate.first().map_or("fallocate", String::as_str))?);
    eprintln!(
        "tidelog streams bench in {} ({writers} writers, {record} B, {choice:?}{label}, {} s per cell, {} rounds)",
        base.display(),
        window.1.as_secs_f64(),
        window.0
    );
    streams::run(rt, base, opts.clone(), writers, record, window)?;
    match open {
        Some(shape) => streams_open::run(rt, base, opts, shape, record),
        None => Ok(()),
    }
}

/// The I/O variants to run: (label, direct, dsync).
fn io_variants(args: &BenchArgs) -> Result<Vec<(&'static str, bool, bool)>, String> {
    const ALL: [(&str, &str, bool, bool); 4] = [
        ("buffered", "", false, false),
        ("direct", " direct", true, false),
        ("dsync", " dsync", false, true),
        ("direct+dsync", " direct+dsync", true, true),
    ];
    let Some(names) = &args.io else {
        let wanted =
            |&&(_, _, direct, dsync): &&(&str, &str, bool, bool)| (!direct || args.direct) && (!dsync || args.dsync);
        return Ok(ALL.iter().filter(wanted).map(|&(_, label, d, s)| (label, d, s)).collect());
    };
    names
        .iter()
        .map(|n| {
            ALL.iter()
                .find(|(name, ..)| name == n)
                .map(|&(_, label, d, s)| (label, d, s))
                .ok_or_else(|| format!("unknown I/O variant {n:?} (buffered, direct, dsync, direct+dsync)"))
        })
        .collect()
}

/// What `SubstrateChoice::Auto` runs on for each I/O variant in this
/// directory, and why: a journal opened with `Auto` is asked.
async fn auto_picks(
    base: &std::path::Path,
    ios: &[(String, bool, bool, tidelog::Preallocate)],
    policy: SyncPolicy,
) -> Vec<report::AutoPick> {
    let mut picks = Vec::new();
    for (label, direct, dsync, how) in ios {
        let dir = base.join("auto-pick");
        let _ = std::fs::remove_dir_all(&dir);
        // The pick does not depend on the segment size; small segments
        // keep zero-filling quick.
        let opts = JournalOptions::new()
            .sync_policy(policy)
            .direct_io(*direct)
            .dsync_writes(*dsync)
            .preallocate(*how)
            .segment_size(1 << 20);
        let pick = match tidelog::Journal::open(&dir, opts).await {
            Ok(j) => {
                let stats = j.stats();
                let _ = j.close().await;
                Ok((stats.substrate, stats.substrate_reason))
            }
            Err(e) => Err(e.to_string()),
        };
        let _ = std::fs::remove_dir_all(&dir);
        picks.push(report::AutoPick { variant: label.clone(), pick });
    }
    picks
}

/// CPU seconds this process has used, user and system.
fn cpu_time() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid and exclusive for the duration of the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
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

fn parse_preallocate(s: &str) -> Result<tidelog::Preallocate, String> {
    match s {
        "none" => Ok(tidelog::Preallocate::None),
        "fallocate" => Ok(tidelog::Preallocate::Fallocate),
        "zero" => Ok(tidelog::Preallocate::Zero),
        other => Err(format!("{other}: expected none, fallocate or zero")),
    }
}
