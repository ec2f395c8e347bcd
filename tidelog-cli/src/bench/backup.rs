//! `tidelog bench --backup-mib N`: online backup of an N MiB journal while
//! 64 tasks append durably to it. Reports the appenders' latency clear of
//! any backup and overlapping backups of each kind — the paced copy (the
//! default), the unpaced one (as before pacing) and paced in larger chunks
//! — interleaved in one phase, in several rounds; during back-to-back
//! backups of each kind and during a `cp` of the same segment files; each
//! step's time and which step the slow appends overlapped; and the time of
//! one backup of each kind beside `cp` of those files (plain, and followed
//! by `sync` of them, which the backup includes) — on the journal's
//! filesystem, where sealed segments are hard-linked, and onto /dev/shm
//! when it is another filesystem, where every segment is copied.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog::{Journal, JournalOptions};

const APPENDERS: usize = 64;
/// How long each latency phase runs.
const PHASE: Duration = Duration::from_secs(2);
/// Time between one backup's end and the next one's start, when spaced.
const GAP: Duration = Duration::from_millis(250);

/// A phase without a backup.
async fn idle(how_long: Duration) -> Result<(), String> {
    tokio::time::sleep(how_long).await;
    Ok(())
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Fills the journal with `mib` MiB of 4 KiB records, durable at the end.
async fn fill(journal: &Journal, mib: u64) -> Result<(), String> {
    let record = vec![0x5au8; 4096 - 32];
    let batch: Vec<&[u8]> = std::iter::repeat_n(record.as_slice(), 256).collect();
    let target = mib << 20;
    while journal.next_lsn().as_u64() < target {
        journal.append_batch_async(&batch).await.map_err(err)?;
    }
    journal.sync_through_async(journal.written_lsn()).await.map_err(err)
}

/// Which backup runs (0: none, else a [`Kind`] + 1), and how many times
/// that changed: an append overlapped a backup if one ran when it began or
/// the count moved while it was in flight; it is filed under the kind that
/// ran last.
#[derive(Debug, Default)]
struct Backups {
    running: AtomicU8,
    last: AtomicU8,
    changes: AtomicU64,
}

/// A backup's copy: paced in the default chunk, unpaced (as before
/// pacing), or paced in larger chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Paced,
    Unpaced,
    Paced256k,
    Paced1m,
}

const KINDS: [Kind; 4] = [Kind::Paced, Kind::Unpaced, Kind::Paced256k, Kind::Paced1m];
/// Histograms per phase: the clear appends' and each kind's.
const SPLIT: usize = KINDS.len() + 1;

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Paced => "paced",
            Kind::Unpaced => "unpaced",
            Kind::Paced256k => "paced 256k",
            Kind::Paced1m => "paced 1m",
        }
    }

    /// Makes the backups that follow copy this way.
    fn select(self) {
        tidelog::testing::set_backup_pacing(match self {
            Kind::Paced => Some(tidelog::testing::BACKUP_PACED_CHUNK),
            Kind::Unpaced => None,
            Kind::Paced256k => Some(256 << 10),
            Kind::Paced1m => Some(1 << 20),
        });
    }
}

impl Backups {
    fn set(&self, running: Option<Kind>) {
        let code = running.map_or(0, |k| k as u8 + 1);
        if code != 0 {
            self.last.store(code, Ordering::SeqCst);
        }
        self.running.store(code, Ordering::SeqCst);
        self.changes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Latencies (µs) of appends clear of any backup, and of those that
/// overlapped each kind.
type Split = [Histogram<u64>; SPLIT];

/// Runs 64 durable appenders until `stop`.
fn appenders(
    journal: &Journal,
    stop: &Arc<AtomicBool>,
    backups: &Arc<Backups>,
) -> Vec<tokio::task::JoinHandle<Result<Appended, String>>> {
    (0..APPENDERS)
        .map(|_| {
            let (journal, stop, backups) = (journal.clone(), stop.clone(), backups.clone());
            tokio::spawn(async move {
                let (mut split, mut slow) = (new_split()?, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let (during, seen) =
                        (backups.running.load(Ordering::SeqCst), backups.changes.load(Ordering::SeqCst));
                    let t = Instant::now();
                    journal.append_durable_async([7u8; 128]).await.map_err(err)?;
                    let us = t.elapsed().as_micros() as u64;
                    let which = if during != 0 {
                        usize::from(during)
                    } else if backups.changes.load(Ordering::SeqCst) != seen {
                        usize::from(backups.last.load(Ordering::SeqCst))
                    } else {
                        0
                    };
                    split[which.min(SPLIT - 1)].record(us).ok();
                    if us >= SLOW_US {
                        slow.push((t, us));
                    }
                }
                Ok((split, slow))
            })
        })
        .collect()
}

fn new_split() -> Result<Split, String> {
    let h = Histogram::<u64>::new(3).map_err(err)?;
    Ok(std::array::from_fn(|_| h.clone()))
}

/// One appender's histograms and slow appends.
type Appended = (Split, Vec<Slow>);

/// An append that took at least [`SLOW_US`]: when it began, how long (µs).
type Slow = (Instant, u64);
const SLOW_US: u64 = 1000;

/// Runs the appenders while `during` runs; their merged histograms and
/// slow appends.
async fn phase<F>(journal: &Journal, backups: &Arc<Backups>, during: F) -> Result<(Split, Vec<Slow>), String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = appenders(journal, &stop, backups);
    let result = during.await;
    stop.store(true, Ordering::Relaxed);
    let (mut split, mut slow) = (new_split()?, Vec::new());
    for t in tasks {
        let (one, s) = t.await.map_err(err)??;
        for (all, one) in split.iter_mut().zip(one) {
            all.add(one).map_err(err)?;
        }
        slow.extend(s);
    }
    result.map(|()| (split, slow))
}

/// The steps of a backup, in order, as `BackupTimings` times them; time
/// not in any of them (making the temporary directory, the spawn) is
/// "other".
const STEPS: [&str; 7] = ["open", "link", "copy", "sync_data", "sync_dir", "publish", "other"];

/// Slow appends overlapping each step of each kind's backups, filed under
/// the step they overlap most; and the steps' total time (ms).
fn attribute(taken: &[Taken], slow: &[Slow], counts: &mut [[(u64, f64); STEPS.len()]; KINDS.len()]) {
    for (kind, total, r, start) in taken {
        let t = &r.timings;
        let mut bounds = Vec::with_capacity(STEPS.len());
        let mut at = *start;
        for d in [t.open, t.link, t.copy, t.sync_data, t.sync_dir, t.publish] {
            bounds.push((at, at + d));
            at += d;
        }
        bounds.push((at, *start + *total));
        let k = *kind as usize;
        for (i, (a, b)) in bounds.iter().enumerate() {
            counts[k][i].1 += b.saturating_duration_since(*a).as_secs_f64() * 1e3;
        }
        for (began, us) in slow {
            let ended = *began + Duration::from_micros(*us);
            let overlap = |(a, b): &(Instant, Instant)| (ended.min(*b)).saturating_duration_since((*began).max(*a));
            let best = bounds.iter().enumerate().max_by_key(|(_, w)| overlap(w));
            if let Some((i, w)) = best {
                if !overlap(w).is_zero() {
                    counts[k][i].0 += 1;
                }
            }
        }
    }
}

fn print_attribution(counts: &[[(u64, f64); STEPS.len()]; KINDS.len()]) {
    println!(
        "\nappends ≥ {SLOW_US} µs, by the backup step they overlapped most: count (count per 100 ms of that step)"
    );
    println!("{:<10} {}", "", STEPS.iter().map(|s| format!("{s:>16}")).collect::<String>());
    for kind in KINDS {
        let row: String = counts[kind as usize]
            .iter()
            .map(|(n, ms)| format!("{:>16}", format!("{n} ({:.0})", *n as f64 * 100.0 / ms.max(1e-3))))
            .collect();
        println!("{:<10} {row}", kind.name());
    }
}

/// A backup's kind, time, report and start.
type Taken = (Kind, Duration, tidelog::BackupReport, Instant);

/// Backups into `base/NAME-N` for `how_long`, `gap` apart (none: back
/// to back), of the `kinds` in turn, flagged in `backups`.
#[allow(clippy::too_many_arguments)]
async fn backups_for(
    journal: &Journal,
    base: &Path,
    name: &str,
    backups: &Backups,
    how_long: Duration,
    gap: Duration,
    kinds: &[Kind],
    taken: &mut Vec<Taken>,
) -> Result<(), String> {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < how_long {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let kind = kinds[n % kinds.len()];
        n += 1;
        kind.select();
        let dest = base.join(format!("{name}-{}", taken.len()));
        backups.set(Some(kind));
        let t = Instant::now();
        let report = journal.backup(&dest).await.map_err(err);
        backups.set(None);
        taken.push((kind, t.elapsed(), report?, t));
    }
    Kind::Paced.select();
    Ok(())
}

fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tlog"))
        .collect();
    files.sort();
    Ok(files)
}

/// `cp` of the journal's segment files into a new `dest` (and, with
/// `sync`, coreutils `sync` of the copies); its time.
fn cp(src: &Path, dest: &Path, sync: bool) -> Result<Duration, String> {
    std::fs::create_dir(dest).map_err(err)?;
    let files = segment_files(src)?;
    let t = Instant::now();
    let status = Command::new("cp").args(&files).arg(dest).status().map_err(err)?;
    if !status.success() {
        return Err(format!("cp: {status}"));
    }
    if sync {
        let copies = segment_files(dest)?;
        let status = Command::new("sync").args(&copies).arg(dest).status().map_err(err)?;
        if !status.success() {
            return Err(format!("sync: {status}"));
        }
    }
    Ok(t.elapsed())
}

/// Rounds of the spaced phase: each interleaves every kind of backup.
const ROUNDS: usize = 5;

pub(crate) fn run(rt: &tokio::runtime::Runtime, base: &Path, mib: u64, segment_mib: u64) -> Result<(), String> {
    let wal = base.join("wal");
    let opts = JournalOptions::new().segment_size(segment_mib << 20);
    let journal = rt.block_on(Journal::open(&wal, opts)).map_err(err)?;
    let t = Instant::now();
    rt.block_on(fill(&journal, mib))?;
    eprintln!("filled {mib} MiB in {:.1} s ({:?})", t.elapsed().as_secs_f64(), journal.substrate());
    println!("{:<40} {:>10} {:>10} {:>10} {:>10}", "64 durable appenders", "p50 µs", "p99 µs", "max µs", "appends");
    let none = Arc::new(Backups::default());
    // Warm-up, uncounted: the fill's writeback and the first rounds' noise.
    rt.block_on(phase(&journal, &none, idle(PHASE / 2)))?;

    // A backup every GAP, paced and unpaced in turn: appends that
    // overlapped each kind against those that overlapped none, interleaved
    // in one phase, in several rounds.
    let backups = Arc::new(Backups::default());
    let mut taken = Vec::new();
    let mut ratios: [Vec<f64>; KINDS.len()] = Default::default();
    let mut counts = [[(0u64, 0f64); STEPS.len()]; KINDS.len()];
    for round in 1..=ROUNDS {
        let mut spaced = Vec::new();
        let (split, slow) = rt.block_on(phase(
            &journal,
            &backups,
            backups_for(&journal, base, "spaced", &backups, PHASE * 3, GAP, &KINDS, &mut spaced),
        ))?;
        let clear_p99 = split[0].value_at_quantile(0.99).max(1) as f64;
        row(&format!("round {round}: clear of any backup"), &split[0]);
        for (i, kind) in KINDS.into_iter().enumerate() {
            let n = spaced.iter().filter(|(k, ..)| *k == kind).count();
            row(&format!("round {round}: overlapping {n} {}", kind.name()), &split[i + 1]);
            ratios[i].push(split[i + 1].value_at_quantile(0.99) as f64 / clear_p99);
        }
        attribute(&spaced, &slow, &mut counts);
        taken.extend(spaced);
        remove_backups(base)?;
    }
    for (i, kind) in KINDS.into_iter().enumerate() {
        println!("p99 overlapping {} / clear, median of {ROUNDS} rounds: {:.2}×", kind.name(), median(&mut ratios[i]));
    }
    // Back to back: every append overlaps a backup of one kind.
    for kind in KINDS {
        let mut stress = Vec::new();
        let (split, _) = rt.block_on(phase(
            &journal,
            &backups,
            backups_for(&journal, base, "stress", &backups, PHASE, Duration::ZERO, &[kind], &mut stress),
        ))?;
        row(&format!("during {} back-to-back {}", stress.len(), kind.name()), &split[1 + kind as usize]);
        taken.extend(stress);
        remove_backups(base)?;
    }
    let cp_dest = base.join("cp-during");
    let (from, to) = (wal.clone(), cp_dest.clone());
    let (split, _) = rt.block_on(phase(&journal, &none, async move {
        // Off the runtime's workers: they run the appenders.
        tokio::task::spawn_blocking(move || cp(&from, &to, true).map(drop)).await.map_err(err)?
    }))?;
    row("during cp + sync", &split[0]);
    let _ = std::fs::remove_dir_all(&cp_dest);
    steps(&taken);
    print_attribution(&counts);
    rt.block_on(journal.close()).map_err(err)?;
    timings(rt, base, &wal, &taken)
}

fn remove_backups(base: &Path) -> Result<(), String> {
    for entry in std::fs::read_dir(base).map_err(err)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("spaced-") || name.starts_with("stress-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Median time of each step of the backups under load, per kind (ms).
fn steps(taken: &[Taken]) {
    println!(
        "\n{:<22} {:>6} {:>8} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8} {:>8}",
        "backups under load", "n", "total", "open", "link", "copy", "slept", "sync_data", "sync_dir", "publish"
    );
    for kind in KINDS {
        let of: Vec<_> = taken.iter().filter(|(k, ..)| *k == kind).collect();
        let ms = |f: &dyn Fn(&Taken) -> Duration| {
            let mut v: Vec<f64> = of.iter().map(|t| f(t).as_secs_f64() * 1e3).collect();
            median(&mut v)
        };
        println!(
            "{:<22} {:>6} {:>8.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>9.1} {:>8.1} {:>8.1}",
            format!("{} (median ms)", kind.name()),
            of.len(),
            ms(&|t| t.1),
            ms(&|t| t.2.timings.open),
            ms(&|t| t.2.timings.link),
            ms(&|t| t.2.timings.copy),
            ms(&|t| t.2.timings.paced),
            ms(&|t| t.2.timings.sync_data),
            ms(&|t| t.2.timings.sync_dir),
            ms(&|t| t.2.timings.publish),
        );
    }
}

fn row(name: &str, hist: &Histogram<u64>) {
    println!(
        "{name:<40} {:>10} {:>10} {:>10} {:>10}",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max(),
        hist.len()
    );
}

/// One backup beside `cp` of the same files, here and onto /dev/shm.
fn timings(rt: &tokio::runtime::Runtime, base: &Path, wal: &Path, taken: &[Taken]) -> Result<(), String> {
    let bytes: u64 = segment_files(wal)?.iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
    println!();
    println!(
        "{:<34} {:>10} {:>8} {:>8} {:>12}",
        "copy of the journal (idle)", "seconds", "linked", "copied", "MiB copied"
    );
    let mut shm = None;
    if let Ok(t) = tempfile::tempdir_in("/dev/shm") {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(t.path()).map_err(err)?.dev() != std::fs::metadata(base).map_err(err)?.dev() {
            shm = Some(t);
        }
    }
    let mut targets = vec![("same filesystem", base.to_path_buf())];
    if let Some(t) = &shm {
        targets.push(("/dev/shm", t.path().to_path_buf()));
    }
    for (where_, dir) in targets {
        for kind in KINDS {
            kind.select();
            let dest = dir.join(format!("backup-{}", kind.name()));
            let journal = rt.block_on(Journal::open(wal, JournalOptions::new())).map_err(err)?;
            let t = Instant::now();
            let report = rt.block_on(journal.backup(&dest)).map_err(err)?;
            let secs = t.elapsed().as_secs_f64();
            rt.block_on(journal.close()).map_err(err)?;
            println!(
                "{:<34} {secs:>10.3} {:>8} {:>8} {:>12.0}",
                format!("backup ({}) → {where_}", kind.name()),
                report.segments_linked,
                report.segments_copied,
                report.bytes_copied as f64 / 1048576.0
            );
            let _ = std::fs::remove_dir_all(&dest);
        }
        Kind::Paced.select();
        for sync in [false, true] {
            let cp_dest = dir.join(if sync { "cp-sync" } else { "cp" });
            let took = cp(wal, &cp_dest, sync)?;
            let name = format!("cp{} → {where_}", if sync { " + sync" } else { "" });
            println!(
                "{name:<34} {:>10.3} {:>8} {:>8} {:>12.0}",
                took.as_secs_f64(),
                "-",
                "-",
                bytes as f64 / 1048576.0
            );
            let _ = std::fs::remove_dir_all(&cp_dest);
        }
    }
    let mut under_load: Vec<f64> = taken.iter().map(|(_, d, ..)| d.as_secs_f64()).collect();
    under_load.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (under_load.first(), under_load.last()) {
        let (_, _, r, _) = &taken[0];
        println!(
            "\nbackups under load: {} taken, {first:.3}-{last:.3} s each ({} linked, {} copied, {:.0} MiB copied in the first)",
            taken.len(),
            r.segments_linked,
            r.segments_copied,
            r.bytes_copied as f64 / 1048576.0
        );
    }
    Ok(())
}
