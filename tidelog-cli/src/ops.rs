//! Operator commands: `inspect`, `dump`, `repair`, `backup` (what they
//! show of streams is in `crate::streams`). `inspect`,
//! `dump` and `backup` only read the journal (no lock, so they work beside a
//! live journal in another process);
//! `repair` opens the journal, which runs recovery exactly as an application
//! would, and reports what it cut.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tidelog::{JournalOptions, JournalReader, Lsn};

#[derive(clap::Args, Debug)]
pub(crate) struct DumpArgs {
    /// The journal directory.
    dir: PathBuf,
    /// Start at this LSN: 0 (the oldest record), or where a record starts
    /// (the LSN `dump` prints for the record before it). With --stream, an
    /// entry index (0: the stream's first live entry).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Print the entries of this stream (`tidelog::Streams`) instead of
    /// records: index, LSN (the end of its frame), length, payload.
    #[arg(long, conflicts_with = "follow")]
    stream: Option<u64>,
    /// Print at most this many records.
    #[arg(long)]
    limit: Option<u64>,
    /// How payloads are printed: hex, utf8 (lossy), or json (one object per
    /// line with the payload in hex).
    #[arg(long, default_value = "utf8", value_parser = ["hex", "utf8", "json"])]
    format: String,
    /// Keep printing records as the journal's writer (in any process) makes
    /// them durable, until interrupted or `--limit` records are printed.
    /// Never prints a record that is not durable yet.
    #[arg(long)]
    follow: bool,
}

/// The error line every command prints, and its exit code.
pub(crate) fn fail(cmd: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("tidelog {cmd}: {e}");
    ExitCode::from(2)
}

/// Who holds the journal's lock, from `/proc/locks` (read-only: taking the
/// lock to test it would stop the owner from reopening meanwhile).
fn lock_holder(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.join("LOCK")).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 4910 fd:00:1234 0 EOF"
        let f: Vec<&str> = line.split_whitespace().collect();
        let inode = f.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
        (f.get(1) == Some(&"FLOCK") && inode == meta.ino()).then(|| format!("process {}", f[4]))
    })
}

pub(crate) fn inspect(dir: &Path) -> ExitCode {
    let journal = match JournalReader::open(dir) {
        Ok(j) => j,
        Err(e) => return fail("inspect", e),
    };
    let bases = journal.segments().to_vec();
    // Records per segment, by where each record starts.
    let mut per_segment: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new(); // base -> (records, first, last end)
    let mut reader = match journal.reader(Lsn::ZERO) {
        Ok(r) => r,
        Err(e) => return fail("inspect", e),
    };
    let mut problem = None;
    loop {
        match reader.next_record() {
            Ok(Some(rec)) => {
                let start = rec.start_lsn().as_u64();
                let base = bases.iter().rev().find(|&&b| b <= start).copied().unwrap_or(bases[0]);
                let e = per_segment.entry(base).or_insert((0, start, start));
                e.0 += 1;
                e.2 = rec.lsn().as_u64();
            }
            Ok(None) => break,
            Err(e) => {
                problem = Some(e.to_string());
                break;
            }
        }
    }
    println!("journal {}", dir.display());
    match lock_holder(dir) {
        Some(holder) => println!("lock: held by {holder} (a live journal owns it; this view may trail it)"),
        None => println!("lock: free"),
    }
    println!("{:<24} {:>12} {:>10} {:>20} {:>20}", "segment", "file bytes", "records", "first record", "end");
    let (mut records, mut bytes) = (0, 0);
    for &base in &bases {
        let path = dir.join(format!("{base:020}.tlog"));
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let (n, first, end) = per_segment.get(&base).copied().unwrap_or((0, base, base));
        let first = if n == 0 { "-".to_string() } else { first.to_string() };
        println!("{:<24} {size:>12} {n:>10} {first:>20} {end:>20}", format!("{base:020}.tlog"));
        records += n;
        bytes += size;
    }
    // Where reading stopped: past stream frames too, which are no records.
    let end = reader.position().as_u64();
    println!("{} segments, {records} records, {bytes} bytes on disk, LSNs [{}, {end})", bases.len(), bases[0]);
    let streams_ok = crate::streams::inspect(dir);
    match problem {
        Some(p) => {
            println!("reading stopped early: {p} (run `tidelog verify`)");
            ExitCode::from(2)
        }
        None if !streams_ok => ExitCode::from(2),
        None => ExitCode::SUCCESS,
    }
}

pub(crate) fn dump(args: DumpArgs) -> ExitCode {
    let journal = match JournalReader::open(&args.dir) {
        Ok(j) => j,
        Err(e) => return fail("dump", e),
    };
    if let Some(id) = args.stream {
        return crate::streams::dump(&args.dir, id, args.from, args.limit, &args.format);
    }
    if args.follow {
        return dump_following(&journal, &args);
    }
    let mut reader = match journal.reader(Lsn::new(args.from)) {
        Ok(r) => r,
        Err(e) => return fail("dump", e),
    };
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    while args.limit.is_none_or(|l| printed < l) {
        let rec = match reader.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(e) => return fail("dump", e),
        };
        if writeln!(out, "{}", dump_line(&args.format, &rec)).is_err() {
            return ExitCode::SUCCESS; // the reader went away (a pipe to `head`)
        }
        printed += 1;
    }
    ExitCode::SUCCESS
}

/// `dump --follow`: one line per record as it becomes durable, each
/// flushed at once (a pipe sees it without waiting for a buffer to fill).
fn dump_following(journal: &JournalReader, args: &DumpArgs) -> ExitCode {
    use futures::StreamExt;
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail("dump", e),
    };
    rt.block_on(async {
        let mut follower = journal.follow(Lsn::new(args.from));
        let mut out = std::io::stdout().lock();
        let mut printed = 0u64;
        while args.limit.is_none_or(|l| printed < l) {
            let rec = match follower.next().await {
                Some(Ok(rec)) => rec,
                Some(Err(e)) => return fail("dump", e),
                None => break,
            };
            if writeln!(out, "{}", dump_line(&args.format, &rec)).and_then(|()| out.flush()).is_err() {
                break; // the reader went away
            }
            printed += 1;
        }
        ExitCode::SUCCESS
    })
}

/// One record as `dump` prints it.
fn dump_line(format: &str, rec: &tidelog::Record) -> String {
    let (start, lsn, payload) = (rec.start_lsn(), rec.lsn(), rec.payload());
    match format {
        "hex" => format!("{start} {lsn} {} {}", payload.len(), hex(payload)),
        "json" => serde_json::json!({
            "start": start.as_u64(), "lsn": lsn.as_u64(), "len": payload.len(), "payload_hex": hex(payload),
        })
        .to_string(),
        _ => format!("{start} {lsn} {} {}", payload.len(), String::from_utf8_lossy(payload)),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(clap::Args, Debug)]
pub(crate) struct RepairArgs {
    /// The journal directory.
    dir: PathBuf,
    /// Report what recovery would cut, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What recovery would cut is what `verify` calls a torn tail; repair opens
/// the journal (recovery cuts it, keeping a synced sidecar copy) and closes.
pub(crate) fn repair(args: RepairArgs) -> ExitCode {
    let report = match tidelog::verify(&args.dir) {
        Ok(r) => r,
        Err(e) => return fail("repair", e),
    };
    if !report.corruption.is_empty() {
        for c in &report.corruption {
            eprintln!("corrupt: {c}");
        }
        eprintln!("tidelog repair: damage before the last segment's tail is not repaired automatically");
        return ExitCode::from(2);
    }
    if report.torn_tail_bytes == 0 {
        println!("{}: clean, nothing to repair (end LSN {})", args.dir.display(), report.end_lsn);
        return ExitCode::SUCCESS;
    }
    println!(
        "{}: a torn tail of {} bytes after LSN {} {}",
        args.dir.display(),
        report.torn_tail_bytes,
        report.end_lsn,
        if args.dry_run { "would be cut (dry run: nothing changed)" } else { "is cut" }
    );
    if args.dry_run {
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail("repair", e),
    };
    let opened = rt.block_on(async {
        let journal = tidelog::Journal::open(&args.dir, JournalOptions::new()).await?;
        let report = journal.recovery_report().clone();
        journal.close().await?;
        Ok::<_, tidelog::Error>(report)
    });
    match opened {
        Ok(r) => {
            let sidecar = r.sidecar().map_or("none".to_string(), |p| p.display().to_string());
            println!("cut {} bytes; end LSN {}; the cut bytes are kept in {sidecar}", r.truncated_bytes(), r.end_lsn());
            ExitCode::SUCCESS
        }
        Err(e) => fail("repair", e),
    }
}

/// `tidelog backup SRC DEST`: the journal's durable state into a new
/// directory (see `tidelog::backup_dir`).
pub(crate) fn backup(src: &Path, dest: &Path) -> ExitCode {
    let started = std::time::Instant::now();
    match tidelog::backup_dir(src, dest) {
        Ok(r) => {
            println!(
                "{} -> {}: LSNs [{}, {}) (durable frontier {}), {} segments hard-linked, {} copied ({} bytes), \
                 synced in {:.3} s",
                src.display(),
                r.dest.display(),
                r.first_lsn,
                r.end_lsn,
                r.frontier,
                r.segments_linked,
                r.segments_copied,
                r.bytes_copied,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail("backup", e),
    }
}
