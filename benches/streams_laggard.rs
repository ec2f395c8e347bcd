//! One long stream that never compacts, behind a busy one that does: what
//! copying the laggard forward costs the appenders beside it, and what the
//! copies cost the next open.
//!
//! Stream 1 takes 100 entries of 128 B for every 64 of 1 KiB that stream 2
//! takes, so its entries are spread over every segment; then stream 2
//! truncates all but its last 64 entries and purges run until one copies
//! nothing. Meanwhile a third stream's writer appends one durable entry at a
//! time; its slowest append is the longest the purge held the others up.
//! Last, the journal is opened again and timed: as a crash would leave it
//! (no checkpoint after the copies), and after `close`.
//!
//! `cargo bench --bench streams_laggard [-- LAGGARD_ENTRIES]` (default
//! 100,000).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidelog::{JournalOptions, Streams};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let laggard: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir_in(std::env::current_dir().expect("cwd")).expect("temp dir");
    let opts = JournalOptions::new().segment_size(4 << 20);
    let streams = Streams::open(dir.path(), opts.clone()).await.expect("open");

    let small = vec![vec![7u8; 128]; 100];
    let large = vec![vec![9u8; 1024]; 64];
    for _ in 0..laggard.div_ceil(100) {
        streams.append_batch_async(1, &small).await.expect("append to the laggard");
        streams.append_batch_async(2, &large).await.expect("append to the busy stream");
    }
    let busy = streams.info(2).expect("stream 2");
    let entries = streams.info(1).expect("stream 1").next - 1;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (streams, stop) = (streams.clone(), stop.clone());
        async move {
            let (mut count, mut slowest) = (0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                streams.append_async(3, [1u8; 128]).await.expect("append beside the purge");
                slowest = slowest.max(t.elapsed());
                count += 1;
            }
            (count, slowest)
        }
    });
    let bytes_before = streams.journal().stats().bytes;
    let started = Instant::now();
    streams.truncate_prefix(2, busy.next - 64).await.expect("truncate");
    let (mut purges, mut longest) = (0, Duration::ZERO);
    loop {
        let t = Instant::now();
        let report = streams.purge().await.expect("purge");
        longest = longest.max(t.elapsed());
        purges += 1;
        if report.bytes_rewritten == 0 || purges == 50 {
            break;
        }
    }
    let purge_time = started.elapsed();
    // Logged meanwhile: the copies (and the few appends beside them).
    let copied = streams.journal().stats().bytes - bytes_before;
    stop.store(true, Ordering::Relaxed);
    let (count, slowest) = writer.await.expect("writer");
    let journal = streams.journal();
    journal.sync_through_async(journal.next_lsn()).await.expect("sync");
    // What a crash now leaves (the copies are durable, no checkpoint after
    // them): the files as they stand, copied while the journal is open.
    let crashed = tempfile::tempdir_in(std::env::current_dir().expect("cwd")).expect("temp dir");
    for e in std::fs::read_dir(dir.path()).expect("list").filter_map(|e| e.ok()) {
        std::fs::copy(e.path(), crashed.path().join(e.file_name())).expect("copy");
    }
    streams.close().await.expect("close");

    let mut open_times = Vec::new();
    for d in [crashed.path(), dir.path()] {
        let t = Instant::now();
        let again = Streams::open(d, opts.clone()).await.expect("reopen");
        open_times.push(t.elapsed().as_secs_f64());
        let info = again.info(1).expect("stream 1 after reopen");
        assert_eq!((info.first, info.next - 1), (1, entries), "the laggard's entries survive");
        again.close().await.expect("close");
    }

    println!(
        "laggard {entries} entries: {:.1} MiB logged by {purges} purges in {:.3} s (longest {:.3} s); \
         beside them {count} appends, slowest {:.1} ms; disk after {} MiB; open after a crash {:.3} s, after close {:.3} s",
        copied as f64 / (1 << 20) as f64,
        purge_time.as_secs_f64(),
        longest.as_secs_f64(),
        slowest.as_secs_f64() * 1e3,
        du(dir.path()) >> 20,
        open_times[0],
        open_times[1],
    );
}

fn du(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.metadata().expect("stat").blocks() * 512)
        .sum()
}
