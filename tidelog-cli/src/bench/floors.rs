//! The one-task baselines every `tidelog bench` run measures beside the
//! journal, on the same disk: a raw pwrite+fdatasync loop (growing,
//! preallocated or O_DIRECT), `tokio::fs`, and tokio-uring (Linux).

use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::{cpu_time, Sample};

/// The physical floor: one thread, pwrite then fdatasync — into a growing
/// file, or (`prealloc`) one reserved with `fallocate` or written with zeros
/// first, synced before timing starts: what segment preallocation buys.
///
/// `direct`: O_DIRECT, each record rounded up to whole 4096-byte blocks from
/// an aligned buffer, then fdatasync; `direct-nosync`: the same writes with
/// no sync at all — the device's sequential write bandwidth, as fio reports.
pub(super) fn raw(
    path: &Path,
    record: usize,
    cell: Duration,
    warmup: Duration,
    prealloc: &str,
) -> Result<Sample, String> {
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
        let records_per_sync = 1.0;
        Sample {
            system,
            mode: mode.into(),
            tasks: 1,
            record,
            ops,
            secs,
            hist,
            cpu_secs,
            records_per_sync,
            punted: None,
        }
    }
}

/// tokio-uring as its docs show it: `write_all_at` then `sync_data` per
/// record, on its own runtime thread (it cannot share tokio's).
#[cfg(target_os = "linux")]
pub(super) fn tokio_uring(path: &Path, record: usize, cell: Duration, warmup: Duration) -> Result<Sample, String> {
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
pub(super) fn tokio_fs(
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
