//! A 3-node key-value cluster in one process, each node's Raft log a tidelog
//! journal.
//!
//! ```text
//! cargo run --release -p tidelog-openraft --example cluster
//! cargo run --release -p tidelog-openraft --example cluster -- --bench [--clients 64] [--seconds 3] [--rounds 3] [--dir D]
//! ```
//!
//! Without `--bench` it writes, stops the leader, writes through the new
//! one, restarts the old leader from its journal and shows it caught up.
//! With `--bench` it measures replicated durable writes/s through the
//! leader with tidelog (io_uring and blocking substrates) against the
//! in-memory log store (nothing durable: the upper bound) and a raw
//! pwrite+fdatasync loop (the floor's rate), rounds interleaved, and prints
//! medians.

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::cluster::{self, leader, members, KvRaft, Router, TidelogNode};
use support::kv::{KvConfig, KvStateMachine, MemLogStore, Set};
use support::propose::Proposer;
use tidelog::{JournalOptions, SubstrateChoice};
use tidelog_openraft::LogStore;

// The key-value application and the in-process network the tests use:
// fixtures, not the crate's API.
#[path = "../tests/support/mod.rs"]
mod support;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: f64| -> Result<f64> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(args.get(i + 1).ok_or(format!("{name} needs a value"))?.parse()?),
            None => Ok(default),
        }
    };
    if args.iter().any(|a| a == "--bench") {
        let dir = match args.iter().position(|a| a == "--dir") {
            Some(i) => Some(PathBuf::from(args.get(i + 1).ok_or("--dir needs a value")?)),
            None => None,
        };
        let seconds = Duration::from_secs_f64(flag("--seconds", 3.0)?);
        bench(flag("--clients", 64.0)? as usize, seconds, flag("--rounds", 3.0)? as usize, dir).await
    } else {
        demo().await
    }
}

async fn demo() -> Result<()> {
    let root = tempfile::tempdir()?;
    let dirs: Vec<PathBuf> = (1..=3).map(|i| root.path().join(format!("node{i}"))).collect();
    let router = Router::new();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.push(TidelogNode::start(i as u64 + 1, dir, JournalOptions::new(), &router).await?);
    }
    nodes[0].raft.initialize(members(1..=3)).await?;
    let first = leader(&router, WAIT).await?;
    println!("3 nodes up in {}; node {} leads", root.path().display(), first.metrics().borrow().id);

    write(&router, 0..1000).await?;
    let old_id = leader(&router, WAIT).await?.metrics().borrow().id;
    let old = nodes.remove(nodes.iter().position(|n| n.id == old_id).ok_or("leader not found")?);
    let stats = old.journal().stats();
    println!(
        "1000 writes; leader {old_id}'s journal: {} records, {} fdatasyncs ({:.1} records per sync)",
        stats.appends, stats.syncs, stats.records_per_sync_mean
    );
    old.stop(&router).await?;
    println!("stopped node {old_id}");

    write(&router, 1000..2000).await?;
    let new = leader(&router, WAIT).await?;
    println!("1000 more writes through node {}", new.metrics().borrow().id);

    let back = TidelogNode::start(old_id, &dirs[old_id as usize - 1], JournalOptions::new(), &router).await?;
    let report = back.journal().recovery_report();
    println!(
        "restarted node {old_id} from its journal: {} segment(s), {} records in the tail",
        report.segments(),
        report.tail_records()
    );
    let target = new.metrics().borrow().last_applied.map(|id| id.index);
    back.raft.wait(Some(WAIT)).applied_index_at_least(target, "catch up").await?;
    let leader_state = nodes.iter().find(|n| n.id == new.metrics().borrow().id).ok_or("new leader")?;
    let same = back.state.contents() == leader_state.state.contents();
    println!(
        "node {old_id} caught up to index {:?}: {} keys, {}",
        target,
        back.state.contents().len(),
        if same { "identical to the leader's" } else { "DIFFERENT from the leader's" }
    );
    back.stop(&router).await?;
    for n in nodes {
        n.stop(&router).await?;
    }
    if same {
        Ok(())
    } else {
        Err("the restarted node's state differs".into())
    }
}

async fn write(router: &Router, range: std::ops::Range<usize>) -> Result<()> {
    for i in range {
        let leader = leader(router, WAIT).await?;
        leader.client_write(Set { key: format!("key{}", i % 100), value: format!("value{i}") }.into()).await?;
    }
    Ok(())
}

/// One store kind under test.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// One thread doing 128-byte pwrite + fdatasync in a loop, no Raft: the
    /// rate a log whose core waits for every flush cannot exceed.
    RawFloor,
    Memory,
    /// The substrate, and whether `save_committed` waits for durability.
    Tidelog(SubstrateChoice, bool),
    /// io_uring, with proposal batching (`support::propose`).
    TidelogBatched,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::RawFloor => "raw pwrite+fdatasync, 1 thread",
            Kind::Memory => "in-memory (not durable)",
            Kind::Tidelog(SubstrateChoice::IoUring, true) => "tidelog io_uring",
            Kind::Tidelog(SubstrateChoice::IoUring, false) => "tidelog io_uring, lazy commit id",
            Kind::Tidelog(_, true) => "tidelog blocking",
            Kind::Tidelog(_, false) => "tidelog blocking, lazy commit id",
            Kind::TidelogBatched => "tidelog io_uring, proposal batching",
        }
    }
}

struct Sample {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    records_per_sync: f64,
}

async fn bench(clients: usize, seconds: Duration, rounds: usize, dir: Option<PathBuf>) -> Result<()> {
    let kinds = [
        Kind::RawFloor,
        Kind::Memory,
        Kind::Tidelog(SubstrateChoice::IoUring, true),
        Kind::Tidelog(SubstrateChoice::Blocking, true),
        Kind::Tidelog(SubstrateChoice::IoUring, false),
        Kind::TidelogBatched,
    ];
    let mut samples: Vec<Vec<Sample>> = kinds.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (k, kind) in kinds.iter().enumerate() {
            let s = run_once(*kind, clients, seconds, dir.as_deref()).await?;
            println!(
                "round {} {:<24} {:>8.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
                round + 1,
                kind.name(),
                s.per_sec,
                ms(s.p50),
                ms(s.p99)
            );
            samples[k].push(s);
        }
    }
    println!("\n3 nodes, {clients} clients writing through the leader, {rounds} rounds of {seconds:?}: medians");
    println!("| log store | writes/s | p50 ms | p99 ms | leader records per fdatasync | vs in-memory |");
    println!("|---|---|---|---|---|---|");
    let memory = median(samples[1].iter().map(|s| s.per_sec));
    for (kind, s) in kinds.iter().zip(&samples) {
        let per_sec = median(s.iter().map(|s| s.per_sec));
        let rps = match kind {
            Kind::Memory => "—".to_string(),
            Kind::RawFloor => "1".to_string(),
            Kind::Tidelog(..) | Kind::TidelogBatched => format!("{:.1}", median(s.iter().map(|s| s.records_per_sync))),
        };
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {:.2}× |",
            kind.name(),
            per_sec,
            median(s.iter().map(|s| ms(s.p50))),
            median(s.iter().map(|s| ms(s.p99))),
            rps,
            per_sec / memory
        );
    }
    Ok(())
}

/// pwrite + fdatasync of 128 bytes in a loop for `seconds`.
fn raw_floor(path: &std::path::Path, seconds: Duration) -> Result<Sample> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::create(path)?;
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut offset = 0;
    while started.elapsed() < seconds {
        let t = Instant::now();
        file.write_all_at(&[7u8; 128], offset)?;
        file.sync_data()?;
        latencies.push(t.elapsed());
        offset += 128;
    }
    let per_sec = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Sample { per_sec, p50: at(0.5), p99: at(0.99), records_per_sync: 1.0 })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Starts a 3-node cluster of `kind`, drives `clients` writers through the
/// leader for `seconds`, stops it.
async fn run_once(kind: Kind, clients: usize, seconds: Duration, dir: Option<&std::path::Path>) -> Result<Sample> {
    let root = match dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    if let Kind::RawFloor = kind {
        let path = root.path().join("floor");
        return tokio::task::spawn_blocking(move || raw_floor(&path, seconds)).await?;
    }
    let router = Router::new();
    let mut tidelog_nodes = Vec::new();
    let mut rafts: Vec<KvRaft> = Vec::new();
    for id in 1..=3u64 {
        match kind {
            Kind::RawFloor => unreachable!("measured above, without a cluster"),
            Kind::Memory => {
                let raft = cluster::start(id, &router, MemLogStore::<KvConfig>::new(), KvStateMachine::new()).await?;
                rafts.push(raft);
            }
            Kind::TidelogBatched => {
                let dir = root.path().join(format!("node{id}"));
                let opts = JournalOptions::new().substrate(SubstrateChoice::IoUring);
                let node = TidelogNode::start(id, &dir, opts, &router).await?;
                rafts.push(node.raft.clone());
                tidelog_nodes.push(node);
            }
            Kind::Tidelog(substrate, sync_committed) => {
                let dir = root.path().join(format!("node{id}"));
                let store = LogStore::<KvConfig>::open(&dir, JournalOptions::new().substrate(substrate)).await?;
                let node = TidelogNode::start_on(id, store.sync_committed(sync_committed), &router).await?;
                rafts.push(node.raft.clone());
                tidelog_nodes.push(node);
            }
        }
    }
    rafts[0].initialize(members(1..=3)).await?;
    let lead = leader(&router, WAIT).await?;
    let lead_id = lead.metrics().borrow().id;
    let before = tidelog_nodes.iter().find(|n| n.id == lead_id).map(|n| n.journal().stats());

    let stop = Instant::now() + seconds;
    let proposer = matches!(kind, Kind::TidelogBatched).then(|| Proposer::start(lead.clone()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let raft = lead.clone();
        let proposer = proposer.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < stop {
                let t = Instant::now();
                let set = Set { key: format!("c{c}-{}", i % 64), value: format!("{i:0128}") };
                match &proposer {
                    Some(p) => drop(p.write(set).await?),
                    None => drop(raft.client_write(set.into()).await?),
                }
                latencies.push(t.elapsed());
                i += 1;
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(latencies)
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)));
    let records_per_sync = match (before, tidelog_nodes.iter().find(|n| n.id == lead_id)) {
        (Some(b), Some(n)) => {
            let a = n.journal().stats();
            (a.appends - b.appends) as f64 / (a.syncs - b.syncs).max(1) as f64
        }
        _ => f64::NAN,
    };
    let sample = Sample {
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5).copied().unwrap_or_default(),
        p99: at(0.99).copied().unwrap_or_default(),
        records_per_sync,
    };
    if tidelog_nodes.is_empty() {
        for raft in &rafts {
            raft.shutdown().await.map_err(|e| e.to_string())?;
        }
    }
    for n in tidelog_nodes {
        n.stop(&router).await?;
    }
    Ok(sample)
}
