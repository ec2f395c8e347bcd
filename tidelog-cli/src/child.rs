//! `tidelog append-until-killed`: a crash-test child. Appends durable
//! records from several tasks and prints one line per acknowledgement, until
//! the parent kills it (`kill -9`). The parent then reopens the journal and
//! checks that every acknowledged record is there. Hidden from `--help`.

use std::io::Write;
use std::path::PathBuf;

use tidelog::{Journal, JournalOptions, SubstrateChoice};

#[derive(clap::Args, Debug)]
pub(crate) struct ChildArgs {
    /// The journal directory.
    dir: PathBuf,
    /// Open segments with O_DIRECT.
    #[arg(long)]
    direct: bool,
    /// io_uring or blocking.
    #[arg(long, default_value = "io_uring")]
    substrate: String,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 4)]
    tasks: u32,
    /// Distinguishes this child's records from earlier children's.
    #[arg(long, default_value_t = 0)]
    tag: u32,
    /// Segment size in KiB (small, so rollovers happen under the kill).
    #[arg(long, default_value_t = 1024)]
    segment_kib: u64,
    /// Acknowledge once *written*, not durable: the power-cut harness's
    /// negative control, which must then see records lost.
    #[arg(long)]
    ack_written: bool,
    /// Append to streams instead (`tidelog::Streams`): task `t` appends to
    /// stream `t`, and after every 16th entry truncates its prefix to keep
    /// the last 12. The fourth field of each line is then the entry's
    /// index in its stream, not an LSN.
    #[arg(long)]
    streams: bool,
    /// Append records of about 270 KB handed over as `Vec`s
    /// (`submit_owned`; `append_owned_async` with `--ack-written`): owned
    /// payloads, written uncopied, two large writes in flight.
    #[arg(long)]
    large: bool,
}

/// Entries the streams mode keeps when it truncates a stream's prefix.
pub(crate) const STREAM_KEEP: u64 = 12;

/// The payload of record `n` of task `task` in child `tag`: its identity,
/// then a filler whose length varies so writes end anywhere in a block.
pub(crate) fn payload(tag: u32, task: u32, n: u64) -> Vec<u8> {
    let mut p = format!("tag {tag} task {task} n {n} ").into_bytes();
    let fill = ((n * 131 + u64::from(task) * 977) % 6000) as usize;
    p.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, fill));
    p
}

/// The payload of record `n` in `--large` mode: `payload`'s, filled up to
/// about 270 KB (a length that varies, so frames end anywhere).
pub(crate) fn large_payload(tag: u32, task: u32, n: u64) -> Vec<u8> {
    let mut p = payload(tag, task, n);
    p.resize(270_000 + ((n * 4099 + u64::from(task) * 131) % 8192) as usize, b'A' + (n % 26) as u8);
    p
}

pub(crate) fn run(args: ChildArgs) -> Result<(), String> {
    let substrate = match args.substrate.as_str() {
        "io_uring" => SubstrateChoice::IoUring,
        "blocking" => SubstrateChoice::Blocking,
        other => return Err(format!("unknown substrate {other:?} (io_uring, blocking)")),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let rt = rt.map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let opts =
            JournalOptions::new().substrate(substrate).direct_io(args.direct).segment_size(args.segment_kib << 10);
        if args.streams {
            if args.large {
                return Err("--large applies to plain records, not --streams".into());
            }
            return run_streams(&args, opts).await.map_err(|e| e.to_string());
        }
        let journal = Journal::open(&args.dir, opts).await.map_err(|e| e.to_string())?;
        let tasks: Vec<_> = (0..args.tasks)
            .map(|task| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let lsn = match (args.large, args.ack_written) {
                            (false, true) => journal.append_async(payload(args.tag, task, n)).await?,
                            (false, false) => journal.append_durable_async(payload(args.tag, task, n)).await?,
                            (true, true) => journal.append_owned_async(large_payload(args.tag, task, n)).await?,
                            (true, false) => journal.submit_owned(large_payload(args.tag, task, n))?.await?,
                        };
                        let mut out = std::io::stdout().lock();
                        // The parent counts a record as acknowledged once
                        // this line is out; a failed print ends the child.
                        if writeln!(out, "ack {task} {n} {lsn}").and_then(|()| out.flush()).is_err() {
                            break;
                        }
                    }
                    Ok::<(), tidelog::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// The streams mode: see [`ChildArgs::streams`].
async fn run_streams(args: &ChildArgs, opts: JournalOptions) -> tidelog::Result<()> {
    let streams = tidelog::Streams::open(&args.dir, opts).await?;
    let tasks: Vec<_> = (0..args.tasks)
        .map(|task| {
            let (streams, tag, ack_written) = (streams.clone(), args.tag, args.ack_written);
            tokio::spawn(async move {
                let id = u64::from(task);
                for n in 0.. {
                    let record = payload(tag, task, n);
                    let index = if ack_written {
                        streams.append_async(id, record).await?
                    } else {
                        let (index, durable) = streams.submit(id, record)?;
                        durable.await?;
                        index
                    };
                    let printed = {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {task} {n} {index}").and_then(|()| out.flush())
                    };
                    if printed.is_err() {
                        break;
                    }
                    if n % 16 == 15 {
                        let lsn = streams.truncate_prefix(id, index.saturating_sub(STREAM_KEEP - 1).max(1)).await?;
                        streams.journal().sync_through_async(lsn).await?;
                    }
                }
                Ok::<(), tidelog::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| tidelog::Error::Internal(e.to_string()))??;
    }
    Ok(())
}
