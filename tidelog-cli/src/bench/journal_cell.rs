//! One journal cell of the matrix: `tasks` tasks appending to one journal
//! (durable, written, or submit), timed after a warm-up.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog::{Journal, JournalOptions};

use super::punts::{share, Punts};
use super::{cpu_time, Sample};

/// What an appender reports: its latencies, its ops, and the ticket of its
/// last submit (submit mode).
type Tally = (Histogram<u64>, u64, Option<tidelog::Ticket>);

/// An appender's record, and its empty tallies.
fn start(record: usize) -> (Vec<u8>, Histogram<u64>, u64) {
    (vec![0x5Au8; record], Histogram::<u64>::new(3).expect("histogram"), 0)
}

/// One appending task: loops until `stop`, recording per-op latency while
/// `counting`. In durable-owned mode each op fills a new `Vec`, hands it
/// to `submit_owned` and awaits the ticket (durable). In submit mode an op is one `submit` call (its cost); tickets
/// are dropped — their records stay — and durability of the last one is
/// awaited after the timed window.
async fn appender(
    j: Journal,
    mode: String,
    record: usize,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tidelog::Result<Tally> {
    let (payload, mut hist, mut ops) = start(record);
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
            tokio::task::yield_now().await; // let the writer and the timer run
        }
        return Ok((hist, ops, last));
    }
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if mode == "durable" {
            j.append_durable_async(&payload).await?;
        } else if mode == "durable-owned" {
            // The record made afresh, as a caller that serializes into a
            // new Vec does, then handed over (uncopied from 64 KiB on).
            // Its ticket resolves once durable, as append_durable_async.
            j.submit_owned(vec![0x5Au8; record])?.await?;
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

/// [`appender`] for durable-threads mode: an OS thread (not a tokio task)
/// calling the blocking `append_durable`, as a service with a thread per
/// connection, or raft-engine's callers, do.
fn appender_thread(
    j: Journal,
    record: usize,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tidelog::Result<Tally> {
    let (payload, mut hist, mut ops) = start(record);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        j.append_durable(&payload)?;
        if counting.load(Ordering::Relaxed) {
            hist.record(t.elapsed().as_micros() as u64).ok();
            ops += 1;
        }
    }
    Ok((hist, ops, None))
}

/// One journal cell: `opts` plus what to add to the system's name.
pub(super) async fn run(
    dir: &Path,
    (opts, label): (JournalOptions, &str),
    mode: &str,
    (tasks, record): (usize, usize),
    (cell, warmup): (Duration, Duration),
    punts: &Punts,
) -> tidelog::Result<Sample> {
    let _ = std::fs::remove_dir_all(dir);
    let journal = Journal::open(dir, opts).await?;
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (j, counting, stop) = (journal.clone(), counting.clone(), stop.clone());
            if mode == "durable-threads" {
                let thread = std::thread::spawn(move || appender_thread(j, record, counting, stop));
                tokio::task::spawn_blocking(move || thread.join().expect("an appender thread panicked"))
            } else {
                tokio::spawn(appender(j, mode.to_string(), record, counting, stop))
            }
        })
        .collect();
    tokio::time::sleep(warmup).await;
    let before = journal.stats();
    let punted_before = punts.read();
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
    let punted_after = punts.read();
    for ticket in tickets {
        ticket.await?; // every submitted record is durable before we stop
    }
    let substrate = journal.substrate();
    let punted = (substrate == tidelog::Substrate::IoUring).then(|| share(punted_before, punted_after)).flatten();
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
        punted,
    })
}
