//! `tidelog bench --replay-mib N`: how fast `tidelog::replay` (owned
//! records) and `tidelog::replay_ref` (borrowed payloads) read a journal
//! back, beside a raw sequential read of the same segment files in the same
//! run. Both start cold: every file is synced and dropped from the
//! page cache (`POSIX_FADV_DONTNEED`) before each pass.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tidelog::{Journal, JournalOptions, Lsn};

fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tlog"))
        .collect();
    files.sort();
    Ok(files)
}

fn drop_cache(files: &[PathBuf]) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    for path in files {
        let file = File::open(path).map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        // SAFETY: plain syscall on a valid fd borrowed for the call.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}

/// Reads every byte of every file in 1 MiB reads; returns bytes read.
fn raw_read(files: &[PathBuf]) -> Result<u64, String> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    for path in files {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let mut off = 0u64;
        loop {
            let n = file.read_at(&mut buf, off).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            off += n as u64;
            total += n as u64;
        }
    }
    Ok(total)
}

async fn build(dir: &Path, bytes: u64, record: usize, how: tidelog::Preallocate) -> tidelog::Result<u64> {
    let j = Journal::open(dir, JournalOptions::new().preallocate(how)).await?;
    let payload = vec![0x5Au8; record];
    let n = bytes / tidelog::format::frame_len(record) as u64;
    let mut last = None;
    for _ in 0..n {
        last = Some(j.submit(&payload)?);
    }
    if let Some(t) = last {
        t.await?;
    }
    j.close().await?;
    Ok(n)
}

pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    base: &Path,
    mib: u64,
    records: &[usize],
    preallocs: &[tidelog::Preallocate],
) -> Result<(), String> {
    println!(
        "{:>10} {:>7} {:>10} {:>12} {:>12} {:>10} {:>10} {:>8} {:>8}",
        "segments", "bytes", "records", "replay rec/s", "ref rec/s", "raw GB/s", "file GB", "replay", "ref"
    );
    for (&record, &how) in records.iter().flat_map(|r| preallocs.iter().map(move |p| (r, p))) {
        let dir = base.join(format!("replay-{record}-{how:?}"));
        let n = rt.block_on(build(&dir, mib << 20, record, how)).map_err(|e| e.to_string())?;
        let files = segment_files(&dir)?;
        drop_cache(&files)?;
        let t = Instant::now();
        let file_bytes = raw_read(&files)?;
        let raw_secs = t.elapsed().as_secs_f64();
        drop_cache(&files)?;
        let t = Instant::now();
        let report = tidelog::replay(&dir, Lsn::ZERO, |r| {
            std::hint::black_box(r.payload());
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        let replay_secs = t.elapsed().as_secs_f64();
        drop_cache(&files)?;
        let t = Instant::now();
        let by_ref = tidelog::replay_ref(&dir, Lsn::ZERO, |r| {
            std::hint::black_box(r.payload());
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        let ref_secs = t.elapsed().as_secs_f64();
        if report.records != n || by_ref.records != n {
            return Err(format!(
                "replay delivered {} and replay_ref {} of {n} records",
                report.records, by_ref.records
            ));
        }
        // All rates over the same quantity: the log's bytes (the raw read
        // also reads the segments' unused preallocated tails, which are
        // holes and cost little).
        let log_bytes = report.end_lsn.as_u64() as f64;
        let raw_gbs = log_bytes / raw_secs / 1e9;
        let share = |secs: f64| 100.0 * (log_bytes / secs / 1e9) / raw_gbs;
        println!(
            "{:>10} {record:>7} {n:>10} {:>12.0} {:>12.0} {raw_gbs:>10.2} {:>10.2} {:>7.0}% {:>7.0}%",
            format!("{how:?}"),
            n as f64 / replay_secs,
            n as f64 / ref_secs,
            file_bytes as f64 / 1e9,
            share(replay_secs),
            share(ref_secs)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
