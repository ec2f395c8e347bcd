//! `tidelog bench --streams N` (its second part): what many streams cost
//! at rest. The time `Streams::open` takes on a journal of S streams × E
//! entries with the files in the page cache (open reads every frame to
//! rebuild the index), and the heap the index holds per stream, for those
//! streams and for as many idle ones (one entry each).
//!
//! Then what a checkpoint of that index costs appenders: the latencies of
//! 64 writers' `append_async` to its streams, with checkpoints taken one
//! after another meanwhile and without, alternately (every append takes
//! the index lock a checkpoint copies under).
//!
//! Heap is what glibc's allocator counts in use (`mallinfo2`: small
//! chunks plus mmapped blocks, chunk headers included) after an open,
//! less the same after opening a journal with no streams: so the figure is
//! the index and nothing else the journal holds. Other allocators: not
//! measured (said so).

use std::path::Path;
use std::time::Instant;

use tidelog::{JournalOptions, Streams, SyncPolicy};

/// Timed opens per journal, after one untimed (which warms the page cache).
const OPENS: usize = 3;
/// Entries submitted between waits while building: bounds what the log
/// buffer holds.
const BUILD_BATCH: usize = 4096;
/// Bytes of one entry's position in the index (`streams::index::Pos`,
/// packed): what an entry costs, so that what is left is per stream.
const POSITION_BYTES: u64 = 12;

/// Heap bytes in use, if this platform's allocator says.
fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and only reads the
        // allocator's counters (under its arena locks).
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Writes `streams` streams of `entries` entries of `record` bytes into
/// `dir`, in rounds across streams (so that their frames interleave, as
/// live writers' would), and closes it.
async fn build(dir: &Path, opts: JournalOptions, streams: u64, entries: u64, record: usize) -> tidelog::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let s = Streams::open(dir, opts.sync_policy(SyncPolicy::OnDemand)).await?;
    let payload = vec![0x5Au8; record];
    let mut placed = 0;
    for _ in 0..entries {
        for id in 1..=streams {
            let (_, ticket) = s.submit(id, &payload)?;
            placed += 1;
            if placed % BUILD_BATCH == 0 {
                ticket.await?;
            }
        }
    }
    s.close().await
}

/// Opens the journal in `dir` once untimed, then [`OPENS`] times timed:
/// the open times, and the heap the last open added.
async fn open(dir: &Path, opts: &JournalOptions) -> tidelog::Result<(Vec<f64>, Option<u64>)> {
    let mut secs = Vec::with_capacity(OPENS);
    let mut heap = None;
    for k in 0..=OPENS {
        let before = heap_in_use();
        let t = Instant::now();
        let s = Streams::open(dir, opts.clone()).await?;
        if k > 0 {
            secs.push(t.elapsed().as_secs_f64());
        }
        heap = before.zip(heap_in_use()).map(|(b, a)| a.saturating_sub(b));
        s.close().await?;
    }
    Ok((secs, heap))
}

/// Writers on each side of the checkpoint comparison, and the appends each
/// makes: fewer bytes in all than bring on an automatic checkpoint (64 MiB).
const STALL_WRITERS: u64 = 64;
const STALL_APPENDS: usize = 2_000;

/// What runs beside the writers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Beside {
    Nothing,
    Syncs,
    Checkpoints,
}

/// The writers' append latencies.
struct Stall {
    /// Sorted, in µs.
    micros: Vec<f64>,
    /// Checkpoints (or syncs) taken meanwhile: each one's seconds.
    checkpoints: Vec<f64>,
}

impl Stall {
    fn quantile(&self, q: f64) -> f64 {
        self.micros[((self.micros.len() - 1) as f64 * q) as usize]
    }
}

/// [`STALL_WRITERS`] writers each append [`STALL_APPENDS`] records to
/// streams of `s` (writer `w` to `w + 1`, `w + 1 + STALL_WRITERS`, … of
/// `1..=streams`), timing each `append_async`; meanwhile, one checkpoint
/// after another (a millisecond apart), or one `sync_through` of the log's
/// end after another (the control: what a checkpoint's sync alone costs),
/// or nothing.
async fn appends_during(s: &Streams, streams: u64, record: usize, beside: Beside) -> tidelog::Result<Stall> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let taker = (beside != Beside::Nothing).then(|| {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut secs = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                if beside == Beside::Checkpoints {
                    s.checkpoint().await?;
                } else {
                    let j = s.journal();
                    j.sync_through_async(j.next_lsn()).await?;
                }
                secs.push(t.elapsed().as_secs_f64());
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            tidelog::Result::Ok(secs)
        })
    });
    let writers: Vec<_> = (0..STALL_WRITERS)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let payload = vec![0x5Au8; record];
                let mut micros = Vec::with_capacity(STALL_APPENDS);
                let mut id = w;
                while micros.len() < STALL_APPENDS {
                    id = (id + STALL_WRITERS) % streams.max(1);
                    let t = Instant::now();
                    s.append_async(id + 1, &payload).await?;
                    micros.push(t.elapsed().as_secs_f64() * 1e6);
                }
                tidelog::Result::Ok(micros)
            })
        })
        .collect();
    let mut micros = Vec::with_capacity(STALL_APPENDS * STALL_WRITERS as usize);
    let mut failed = None;
    for w in writers {
        match w.await.map_err(|e| tidelog::Error::Internal(format!("a writer: {e}"))) {
            Ok(Ok(got)) => micros.extend(got),
            Ok(Err(e)) | Err(e) => failed = failed.or(Some(e)),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let checkpoints = match taker {
        Some(t) => t.await.map_err(|e| tidelog::Error::Internal(format!("the checkpoints: {e}")))??,
        None => Vec::new(),
    };
    if let Some(e) = failed {
        return Err(e);
    }
    micros.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    Ok(Stall { micros, checkpoints })
}

/// The checkpoint comparison on the journal in `dir`: two rounds each way,
/// alternating, each on the journal just opened (so that no automatic
/// checkpoint falls in either); prints the figures.
async fn checkpoint_stall(dir: &Path, opts: &JournalOptions, streams: u64, record: usize) -> tidelog::Result<()> {
    println!(
        "{STALL_WRITERS} writers, {STALL_APPENDS} append_async each to streams of that journal, with nothing \
         beside them, with one sync_through after another, and with one checkpoint after another, alternating:"
    );
    for round in 1..=2 {
        for beside in [Beside::Nothing, Beside::Syncs, Beside::Checkpoints] {
            let s = Streams::open(dir, opts.clone()).await?;
            let got = appends_during(&s, streams, record, beside).await;
            s.close().await?;
            let got = got?;
            let (what, taken) = match beside {
                Beside::Nothing => ("nothing beside", ""),
                Beside::Syncs => ("syncs", " syncs"),
                Beside::Checkpoints => ("checkpoints", " checkpoints"),
            };
            let taken = match got.checkpoints.len() {
                0 => String::new(),
                n => format!(", {n}{taken} meanwhile (median {:.1} ms)", median(got.checkpoints.clone()) * 1e3),
            };
            println!(
                "  round {round}, {what:>14}: append p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs{taken}",
                got.quantile(0.5),
                got.quantile(0.99),
                got.quantile(0.999),
                got.quantile(1.0),
            );
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// Builds three journals (no streams; `streams` × `entries`; `streams`
/// idle), measures each, prints the figures and removes them.
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    base: &Path,
    opts: JournalOptions,
    (streams, entries): (u64, u64),
    record: usize,
) -> Result<(), String> {
    let measure = |name: &str, streams: u64, entries: u64| -> Result<(Vec<f64>, Option<u64>), String> {
        let dir = base.join(format!("streams-open-{name}"));
        let t = Instant::now();
        rt.block_on(build(&dir, opts.clone(), streams, entries, record))
            .map_err(|e| format!("building {name}: {e}"))?;
        eprintln!("built {streams} streams x {entries} entries in {:.1} s", t.elapsed().as_secs_f64());
        let got = rt.block_on(open(&dir, &opts)).map_err(|e| format!("opening {name}: {e}"));
        if name == "full" && got.is_ok() {
            rt.block_on(checkpoint_stall(&dir, &opts, streams, record))
                .map_err(|e| format!("checkpoints of {name}: {e}"))?;
        }
        let _ = std::fs::remove_dir_all(&dir);
        got
    };
    let (_, empty) = measure("empty", 0, 0)?;
    let (full_secs, full) = measure("full", streams, entries)?;
    let (idle_secs, idle) = measure("idle", streams, 1)?;
    let frame = tidelog::format::frame_len(tidelog::format::STREAM_ENTRY_HEADER_LEN + record) as u64;
    println!();
    println!(
        "open of {streams} streams x {entries} entries ({} MB of {frame} B frames), warm: median {:.3} s (of {OPENS}: {})",
        streams * entries * frame / 1_000_000,
        median(full_secs.clone()),
        full_secs.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(" ")
    );
    println!("open of {streams} idle streams (one entry each), warm: median {:.3} s", median(idle_secs));
    let per_stream =
        |index: Option<u64>| index.zip(empty).map(|(i, e)| i.saturating_sub(e) as f64 / streams.max(1) as f64);
    match (per_stream(full), per_stream(idle)) {
        (Some(full), Some(idle)) => {
            let positions = (entries * POSITION_BYTES) as f64;
            println!(
                "index heap per stream: {full:.0} B with {entries} entries ({:.0} B beyond their {POSITION_BYTES} B \
                 positions); {idle:.0} B idle (one entry)",
                full - positions
            );
            println!(
                "heap: glibc mallinfo2 in use (chunk headers included) after Streams::open, less the same after \
                 opening a journal with no streams, over {streams} streams."
            );
        }
        _ => println!("index heap per stream: not measured (needs glibc's mallinfo2)"),
    }
    Ok(())
}
