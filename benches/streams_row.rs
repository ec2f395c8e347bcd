//! The 64-writer row of `tidelog bench --streams` on its own, and the same
//! writers appending plain records to one journal: 64 tasks on a two-worker
//! runtime, each awaiting its own durable 128 B append
//! (`SyncPolicy::Always`), into a stream of its own or into the journal.
//! Made to be profiled one row at a time:
//!
//! `cargo bench --bench streams_row [-- ROW [SECONDS [ROUNDS]]]`, ROW being
//! `streams`, `plain` or `both` (the default: the two alternately), 3 s
//! per row and 3 rounds by default. For a profile:
//! `perf record -g -- target/release/deps/streams_row-* streams 3 1`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidelog::{Journal, JournalOptions, Streams, SyncPolicy};

const WRITERS: u64 = 64;

enum Target {
    Streams(Streams),
    Journal(Journal),
}

/// Runs one row for `secs` in a fresh journal; returns records per second.
async fn row(streams: bool, secs: f64) -> f64 {
    let dir = tempfile::tempdir_in(std::env::current_dir().expect("cwd")).expect("temp dir");
    let opts = JournalOptions::new().sync_policy(SyncPolicy::Always);
    let target = Arc::new(if streams {
        Target::Streams(Streams::open(dir.path(), opts).await.expect("open streams"))
    } else {
        Target::Journal(Journal::open(dir.path(), opts).await.expect("open journal"))
    });
    let started = Instant::now();
    let stop = started + Duration::from_secs_f64(secs);
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            let target = target.clone();
            tokio::spawn(async move {
                let payload = [id as u8; 128];
                let mut records = 0u64;
                while Instant::now() < stop {
                    match &*target {
                        Target::Streams(s) => drop(s.append_async(id, payload).await.expect("append to a stream")),
                        Target::Journal(j) => drop(j.append_async(payload).await.expect("append")),
                    }
                    records += 1;
                }
                records
            })
        })
        .collect();
    let mut records = 0;
    for w in writers {
        records += w.await.expect("writer task");
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    match &*target {
        Target::Streams(s) => s.close().await.expect("close"),
        Target::Journal(j) => j.close().await.expect("close"),
    }
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let which = args.first().map_or("both", String::as_str);
    let secs: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let rows: &[bool] = match which {
        "streams" => &[true],
        "plain" => &[false],
        _ => &[true, false],
    };
    for round in 1..=rounds {
        for &streams in rows {
            let rate = row(streams, secs).await;
            let name = if streams { "64 streams, one journal" } else { "64 writers, plain records" };
            println!("round {round}: {name}: {rate:.0} records/s");
        }
    }
}
