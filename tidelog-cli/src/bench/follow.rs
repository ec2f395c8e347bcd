//! `tidelog bench --follow`: durable appenders without a follower, with an
//! in-process subscriber (`Journal::subscribe`), and with a follower in
//! another process (`tidelog follow-timing`, a `JournalReader::follow`
//! that prints when each record reached it), in interleaved rounds. Reports
//! the appenders' rate and p99 each way, and how long after its append was
//! acknowledged each record reached the follower.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use tidelog::{Journal, JournalOptions, JournalReader, Lsn};

/// Wall-clock nanoseconds: comparable across processes on one machine.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// The hidden `follow-timing DIR` command: follows the journal and prints
/// `LSN NANOS` for the sampled records ([`sampled`]), the time each
/// arrived, and for the last record before each wait (so the parent sees
/// how far it got). Lines are flushed whenever the follower waits, so the
/// parent sees them soon and none is lost when it kills this process.
pub(crate) fn follow_timing(dir: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut follower = JournalReader::open(dir).map_err(|e| e.to_string())?.follow(Lsn::ZERO);
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut last = None;
        loop {
            let next = match follower.next().now_or_never() {
                Some(next) => next,
                None => {
                    if let Some((lsn, at)) = last.take() {
                        writeln!(out, "{lsn} {at}").map_err(|e| e.to_string())?;
                    }
                    out.flush().map_err(|e| e.to_string())?;
                    follower.next().await
                }
            };
            let rec = match next {
                Some(Ok(rec)) => rec,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Ok(()),
            };
            let (lsn, at) = (rec.lsn().as_u64(), now_ns());
            if sampled(lsn) {
                writeln!(out, "{lsn} {at}").map_err(|e| e.to_string())?;
            } else {
                last = Some((lsn, at));
            }
        }
    })
}

/// The records whose arrival is timed: one in 64, by a hash of the LSN, so
/// that the measuring (formatting, piping and parsing a line per record, at
/// hundreds of thousands a second) costs the appenders little beside what
/// is measured. The follower still reads every record.
fn sampled(lsn: u64) -> bool {
    lsn.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58 == 0
}

struct Cell {
    appends: u64,
    secs: f64,
    hist: Histogram<u64>,
    /// Follower lag behind each acknowledgement (µs), when it ran.
    lag: Option<Histogram<u64>>,
}

/// Who follows the appenders.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Follower {
    None,
    /// `Journal::subscribe`, in this process.
    Subscribe,
    /// `JournalReader::follow`, in another process.
    Process,
}

async fn cell(dir: &Path, tasks: usize, record: usize, secs: f64, who: Follower) -> Result<Cell, String> {
    let journal = Journal::open(dir, JournalOptions::new()).await.map_err(|e| e.to_string())?;
    let subscriber = (who == Follower::Subscribe).then(|| {
        let mut feed = journal.subscribe(Lsn::ZERO);
        tokio::spawn(async move {
            let mut seen = HashMap::new();
            while let Some(rec) = feed.next().await {
                let rec = rec?;
                let lsn = rec.lsn().as_u64();
                if sampled(lsn) {
                    seen.insert(lsn, now_ns());
                }
            }
            Ok::<_, tidelog::Error>(seen)
        })
    });
    let follower = who == Follower::Process;
    // The follower starts before the appenders, and has its first line to
    // prove it runs.
    let mut child = None;
    let mut lines = None;
    if follower {
        let mut c = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .arg("follow-timing")
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the follower: {e}"))?;
        let stdout = c.stdout.take().ok_or("no follower stdout")?;
        child = Some(c);
        let furthest = Arc::new(AtomicU64::new(0));
        let reached = furthest.clone();
        lines = Some((
            furthest,
            std::thread::spawn(move || {
                let mut seen: HashMap<u64, u64> = HashMap::new();
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let mut f = line.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
                    if let (Some(lsn), Some(t)) = (f.next(), f.next()) {
                        seen.insert(lsn, t);
                        reached.fetch_max(lsn, Ordering::Release);
                    }
                }
                seen
            }),
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (journal, stop) = (journal.clone(), stop.clone());
            tokio::spawn(async move {
                let payload = vec![0x5au8; record];
                let mut hist = Histogram::<u64>::new(3).expect("histogram");
                let mut acks = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let lsn = journal.append_durable_async(&payload).await?;
                    acks.push((lsn.as_u64(), now_ns()));
                    hist.record(t.elapsed().as_micros() as u64).ok();
                }
                Ok::<_, tidelog::Error>((hist, acks))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut acks = Vec::new();
    for w in workers {
        let (h, a) = w.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        hist.add(h).ok();
        acks.extend(a);
    }
    let elapsed = start.elapsed().as_secs_f64();
    journal.close().await.map_err(|e| e.to_string())?;
    let mut lag = None;
    if let Some(subscriber) = subscriber {
        // The subscription ends when the journal closes, having delivered
        // everything durable.
        let seen = subscriber.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        lag = Some(lags(&acks, &seen)?);
    }
    if let (Some(mut c), Some((furthest, lines))) = (child, lines) {
        // Everything acknowledged reaches the follower: wait for the last
        // one (bounded), then stop it.
        let last = acks.iter().map(|a| a.0).max().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(20);
        let caught_up = loop {
            if furthest.load(Ordering::Acquire) >= last {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let _ = c.kill();
        let _ = c.wait();
        let seen = lines.join().map_err(|_| "follower reader thread")?;
        if !caught_up {
            return Err(format!("the follower saw {} of {} acknowledged records within 20 s", seen.len(), acks.len()));
        }
        lag = Some(lags(&acks, &seen)?);
    }
    Ok(Cell { appends: acks.len() as u64, secs: elapsed, hist, lag })
}

/// How long after its acknowledgement each sampled record reached the
/// follower (µs).
fn lags(acks: &[(u64, u64)], seen: &HashMap<u64, u64>) -> Result<Histogram<u64>, String> {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for (lsn, acked) in acks.iter().filter(|(lsn, _)| sampled(*lsn)) {
        let Some(&arrived) = seen.get(lsn) else {
            return Err(format!("the follower never saw the record at LSN {lsn}"));
        };
        h.record(arrived.saturating_sub(*acked) / 1000).ok();
    }
    Ok(h)
}

/// Interleaved rounds of each task count without and with a follower.
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    base: &Path,
    tasks: &[usize],
    record: usize,
    secs: f64,
    rounds: usize,
) -> Result<(), String> {
    const WHO: [Follower; 3] = [Follower::None, Follower::Subscribe, Follower::Process];
    let mut cells: HashMap<(usize, Follower), Vec<Cell>> = HashMap::new();
    for round in 0..rounds {
        for &n in tasks {
            for follower in WHO {
                let dir = base.join(format!("follow-{round}-{n}-{follower:?}"));
                let c = rt.block_on(cell(&dir, n, record, secs, follower))?;
                let _ = std::fs::remove_dir_all(&dir);
                cells.entry((n, follower)).or_default().push(c);
            }
        }
    }
    println!(
        "{:>6} {:<15} {:>12} {:>9} {:>9} {:>11} {:>11} {:>11}",
        "tasks", "follower", "appends/s", "p50 µs", "p99 µs", "lag p50 µs", "lag p99 µs", "lag max µs"
    );
    for &n in tasks {
        let plain = median(cells[&(n, Follower::None)].iter().map(|c| c.appends as f64 / c.secs));
        for follower in WHO {
            let runs = &cells[&(n, follower)];
            let rate = median(runs.iter().map(|c| c.appends as f64 / c.secs));
            let p = |q: f64| median(runs.iter().map(|c| c.hist.value_at_quantile(q) as f64));
            let lag = |q: f64| {
                let v: Vec<f64> =
                    runs.iter().filter_map(|c| c.lag.as_ref().map(|h| h.value_at_quantile(q) as f64)).collect();
                if v.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.0}", median(v.into_iter()))
                }
            };
            let name = match follower {
                Follower::None => "none".to_string(),
                Follower::Subscribe => format!("subscribe {:>3.0}%", 100.0 * rate / plain),
                Follower::Process => format!("process {:>3.0}%", 100.0 * rate / plain),
            };
            println!(
                "{n:>6} {name:<15} {rate:>12.0} {:>9.0} {:>9.0} {:>11} {:>11} {:>11}",
                p(0.5),
                p(0.99),
                lag(0.5),
                lag(0.99),
                lag(1.0)
            );
        }
    }
    Ok(())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
