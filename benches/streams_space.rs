//! Disk use against live data, for streams where some never compact: the
//! measurement behind issue 27's "rewrite keeps disk use ≤ 2× live data
//! under a workload where 10% of streams never compact".
//!
//! 100 streams take 1 KiB entries round-robin; streams 0–9 never compact,
//! the other 90 truncate their prefix to their last 64 entries every 64.
//! Purges (and their rewrites of the laggards) run by themselves after the
//! truncations. Every 20,000 entries the segments' allocated bytes (what
//! `du` counts) are compared with the live bytes every stream's
//! `StreamInfo::bytes` adds up to.
//!
//! `cargo bench --bench streams_space [-- ENTRIES [SEGMENT_MIB]]`
//! (defaults: 600,000 entries, 8 MiB segments).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use tidelog::{JournalOptions, Streams};

const STREAMS: u64 = 100;
const LAGGARDS: u64 = 10;
const KEEP: u64 = 64;

fn allocated(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tlog"))
        .map(|e| e.metadata().expect("stat").blocks() * 512)
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let entries: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(600_000);
    let segment_mib: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(8);
    let dir = tempfile::tempdir_in(std::env::current_dir().expect("cwd")).expect("temp dir");
    let opts = JournalOptions::new().segment_size(segment_mib << 20);
    let s = Streams::open(dir.path(), opts).await.expect("open");
    let entry = vec![0x5Au8; 1024];
    let mut appended_frame = 0;
    let started = Instant::now();
    println!("entries  live MiB  disk MiB  disk/live  segments");
    let mut worst: f64 = 0.0;
    for n in 0..entries {
        let id = n % STREAMS;
        let index = s.append_async(id, &entry).await.expect("append");
        if n == 0 {
            appended_frame = s.journal().next_lsn().as_u64();
        }
        if id >= LAGGARDS && index % KEEP == 0 {
            s.truncate_prefix(id, index - KEEP + 1).await.expect("truncate");
        }
        if (n + 1) % 20_000 == 0 {
            let live: u64 = s.list().iter().map(|i| i.bytes).sum();
            let disk = allocated(dir.path());
            let ratio = disk as f64 / live as f64;
            // Past the first few segments: before that, the two segments of
            // slack dominate any ratio.
            if live > 4 * (segment_mib << 20) {
                worst = worst.max(ratio);
            }
            let segments = disk.div_ceil(segment_mib << 20);
            println!(
                "{:>7}  {:>8.1}  {:>8.1}  {ratio:>9.2}  {segments:>8}",
                n + 1,
                live as f64 / (1 << 20) as f64,
                disk as f64 / (1 << 20) as f64
            );
        }
    }
    let report = s.purge().await.expect("purge");
    let live: u64 = s.list().iter().map(|i| i.bytes).sum();
    let disk = allocated(dir.path());
    // Every byte the log took: entries, truncations and the rewrite's copies.
    let logged = s.journal().next_lsn().as_u64();
    println!(
        "after a last purge: live {:.1} MiB, disk {:.1} MiB ({:.2}x); worst once live > 4 segments: {worst:.2}x; \
         {entries} entries in {:.1?}; {:.0} MiB logged ({:.2}x the entries' frames); last purge {report:?}",
        live as f64 / (1 << 20) as f64,
        disk as f64 / (1 << 20) as f64,
        disk as f64 / live as f64,
        started.elapsed(),
        logged as f64 / (1 << 20) as f64,
        logged as f64 / (entries * appended_frame) as f64,
    );
    s.close().await.expect("close");
}
