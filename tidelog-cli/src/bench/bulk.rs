//! `tidelog bench --bulk-mib N`: a large sequential write beside a journal,
//! written with plain `tokio::fs` and with `bulk::WritebackFile`, reporting
//! throughput, the peak `Dirty:` of `/proc/meminfo`, and the durable append
//! latency a journal on the same disk sees meanwhile.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog::bulk::{WritebackFile, WritebackOptions};
use tidelog::SubstrateChoice;
use tidelog::{Journal, JournalOptions};
use tokio::io::AsyncWriteExt;

fn dirty_kib() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else { return 0 };
    text.lines()
        .find_map(|l| l.strip_prefix("Dirty:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn one(
    dir: &Path,
    mib: u64,
    writeback: Option<SubstrateChoice>,
) -> Result<(f64, u64, Histogram<u64>, Option<u64>), String> {
    let journal = Journal::open(dir.join("wal"), JournalOptions::new()).await.map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(dirty_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let appender = {
        let (journal, stop) = (journal.clone(), stop.clone());
        tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                journal.append_durable_async([7u8; 128]).await?;
                hist.record(t.elapsed().as_micros() as u64).ok();
            }
            Ok::<_, tidelog::Error>(hist)
        })
    };
    let block = vec![0x42u8; 1 << 20];
    let path = dir.join("bulk.dat");
    let t = Instant::now();
    let mut chunk = None;
    if let Some(substrate) = writeback {
        let opts = WritebackOptions::new().substrate(substrate);
        let mut w = WritebackFile::create(&path, opts).await.map_err(|e| e.to_string())?;
        for _ in 0..mib {
            w.write_all(&block).await.map_err(|e| e.to_string())?;
        }
        chunk = Some(w.stats().chunk);
        w.finish().await.map_err(|e| e.to_string())?;
    } else {
        let mut f = tokio::fs::File::create(&path).await.map_err(|e| e.to_string())?;
        for _ in 0..mib {
            f.write_all(&block).await.map_err(|e| e.to_string())?;
        }
        f.sync_all().await.map_err(|e| e.to_string())?;
    }
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let hist = appender.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    sampler.join().ok();
    journal.close().await.map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    Ok((mib as f64 * 1.048_576 / secs, peak.load(Ordering::Relaxed), hist, chunk))
}

pub(crate) fn run(rt: &tokio::runtime::Runtime, base: &Path, mib: u64) -> Result<(), String> {
    println!(
        "{:<22} {:>8} {:>14} {:>16} {:>16} {:>10} {:>10}",
        "bulk writer", "MB/s", "peak Dirty MiB", "journal p50 µs", "journal p99 µs", "appends", "chunk MiB"
    );
    let rows = [
        ("tokio::fs", None),
        ("WritebackFile io_uring", Some(SubstrateChoice::IoUring)),
        ("WritebackFile blocking", Some(SubstrateChoice::Blocking)),
    ];
    for (i, (name, writeback)) in rows.into_iter().enumerate() {
        let dir = base.join(format!("bulk-{i}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (mbs, peak, hist, chunk) = rt.block_on(one(&dir, mib, writeback))?;
        let chunk = chunk.map_or("-".to_string(), |c| (c >> 20).to_string());
        println!(
            "{name:<22} {mbs:>8.0} {:>14.0} {:>16} {:>16} {:>10} {chunk:>10}",
            peak as f64 / 1024.0,
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.len()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
