//! Many Raft groups on one journal per node: `MultiLog`, each group's log
//! a stream of it, every group's appends sharing its `fdatasync`s.
//!
//! ```text
//! cargo run --release -p tidelog-openraft --example multi_group
//! cargo run --release -p tidelog-openraft --example multi_group -- --bench [--groups 64] [--batch 1] [--seconds 3] [--rounds 3] [--dir D]
//! ```
//!
//! Without `--bench` it runs 8 three-node Raft groups on 3 nodes (one
//! `MultiLog` per node), writes to every group, stops a node, writes on,
//! restarts it from its journal and shows every group caught up. With
//! `--bench` it measures the log store alone: one writer per group appends
//! `--batch` entries at a time through `RaftLogStorage::append` and awaits
//! the flush callback, on one shared `MultiLog` against one `LogStore`
//! journal per group, rounds interleaved, and prints medians.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use support::cluster::{self, leader, members, KvRaft, Router};
use support::kv::{KvConfig, KvStateMachine, Set};
use tidelog::JournalOptions;
use tidelog_openraft::{GroupStore, LogStore, MultiLog};

// The key-value application and the in-process network the tests use:
// fixtures, not the crate's API.
#[path = "../tests/support/mod.rs"]
mod support;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(20);
const DEMO_GROUPS: u64 = 8;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: f64| -> Result<f64> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(args.get(i + 1).ok_or(format!("{name} needs a value"))?.parse()?),
            None => Ok(default),
        }
    };
    if !args.iter().any(|a| a == "--bench") {
        return demo().await;
    }
    let dir = match args.iter().position(|a| a == "--dir") {
        Some(i) => Some(PathBuf::from(args.get(i + 1).ok_or("--dir needs a value")?)),
        None => None,
    };
    let shape = Shape {
        groups: flag("--groups", 64.0)? as u64,
        batch: flag("--batch", 1.0)? as u64,
        seconds: Duration::from_secs_f64(flag("--seconds", 3.0)?),
    };
    bench(shape, flag("--rounds", 3.0)? as usize, dir).await
}

/// One node: its `MultiLog` and its member of every group.
struct Node {
    id: u64,
    multi: MultiLog,
    rafts: Vec<KvRaft>,
    states: Vec<KvStateMachine>,
}

impl Node {
    async fn start(id: u64, dir: &Path, routers: &[Router]) -> Result<Node> {
        let multi = MultiLog::open(dir, JournalOptions::new()).await?;
        let (mut rafts, mut states) = (Vec::new(), Vec::new());
        for (group, router) in (1..).zip(routers) {
            let store = GroupStore::<KvConfig>::open(&multi, group).await?;
            let state = KvStateMachine::new();
            rafts.push(cluster::start(id, router, store, state.clone()).await?);
            states.push(state);
        }
        Ok(Node { id, multi, rafts, states })
    }

    async fn stop(self, routers: &[Router]) -> Result<()> {
        for (raft, router) in self.rafts.into_iter().zip(routers) {
            router.remove(self.id);
            raft.shutdown().await.map_err(|e| e.to_string())?;
        }
        Ok(self.multi.close().await?)
    }

    fn report(&self) -> String {
        let stats = self.multi.streams().journal().stats();
        format!(
            "node {}: {} records, {} fdatasyncs ({:.1} records per sync)",
            self.id, stats.appends, stats.syncs, stats.records_per_sync_mean
        )
    }
}

async fn demo() -> Result<()> {
    let root = tempfile::tempdir()?;
    let dirs: Vec<PathBuf> = (1..=3).map(|i| root.path().join(format!("node{i}"))).collect();
    // One in-process network per group: node ids are per group.
    let routers: Vec<Router> = (0..DEMO_GROUPS).map(|_| Router::new()).collect();
    let mut nodes = Vec::new();
    for (id, dir) in (1..).zip(&dirs) {
        nodes.push(Node::start(id, dir, &routers).await?);
    }
    for raft in &nodes[0].rafts {
        raft.initialize(members(1..=3)).await?;
    }
    println!("{DEMO_GROUPS} groups × 3 nodes in {}, one journal per node", root.path().display());
    write_all(&routers, 0..200).await?;
    for n in &nodes {
        println!("  {}", n.report());
    }

    let stopped = nodes.remove(0);
    let stopped_id = stopped.id;
    stopped.stop(&routers).await?;
    println!("stopped node {stopped_id} (every group's member on it)");
    write_all(&routers, 200..400).await?;
    let back = Node::start(stopped_id, &dirs[0], &routers).await?;
    println!("restarted node {stopped_id} from its journal: groups {:?}", back.multi.groups());
    let mut same = true;
    for (g, router) in routers.iter().enumerate() {
        let lead = leader(router, WAIT).await?;
        let (lead_id, target) = {
            let m = lead.metrics().borrow().clone();
            (m.id, m.last_applied.map(|id| id.index))
        };
        back.rafts[g].wait(Some(WAIT)).applied_index_at_least(target, "catch up").await?;
        let lead_state = match nodes.iter().find(|n| n.id == lead_id) {
            Some(n) => &n.states[g],
            None => &back.states[g],
        };
        same &= back.states[g].contents() == lead_state.contents();
    }
    println!(
        "node {stopped_id} caught up in every group: {}",
        if same { "identical to the others" } else { "DIFFERENT from the others" }
    );
    back.stop(&routers).await?;
    for n in nodes {
        n.stop(&routers).await?;
    }
    if same {
        Ok(())
    } else {
        Err("the restarted node's state differs".into())
    }
}

/// Writes keys `range` to every group, the groups concurrently.
async fn write_all(routers: &[Router], range: std::ops::Range<usize>) -> Result<()> {
    let mut tasks = Vec::new();
    for router in routers {
        let (router, range) = (router.clone(), range.clone());
        tasks.push(tokio::spawn(async move {
            for i in range {
                let leader = leader(&router, WAIT).await?;
                leader.client_write(Set { key: format!("key{}", i % 50), value: format!("value{i}") }.into()).await?;
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// What one benchmark run does.
#[derive(Clone, Copy, Debug)]
struct Shape {
    groups: u64,
    batch: u64,
    seconds: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// One `MultiLog`, a `GroupStore` per group.
    Shared,
    /// A `LogStore` (its own journal) per group.
    Separate,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Shared => "one MultiLog journal, a stream per group",
            Kind::Separate => "a LogStore journal per group",
        }
    }
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
struct Sample {
    records_per_s: f64,
    flushes_per_s: f64,
    syncs: u64,
}

async fn bench(shape: Shape, rounds: usize, dir: Option<PathBuf>) -> Result<()> {
    println!(
        "{} groups, one writer each appending {} entr{} (~120 B) per append and awaiting the flush callback; {:?} per run, {rounds} rounds interleaved",
        shape.groups,
        shape.batch,
        if shape.batch == 1 { "y" } else { "ies" },
        shape.seconds
    );
    let kinds = [Kind::Shared, Kind::Separate];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); kinds.len()];
    for round in 0..rounds {
        for (k, &kind) in kinds.iter().enumerate() {
            let root = match &dir {
                Some(d) => tempfile::tempdir_in(d)?,
                None => tempfile::tempdir()?,
            };
            let s = run_once(kind, shape, root.path()).await?;
            println!(
                "  round {}: {:<42} {:>9.0} records/s {:>9.0} flushes/s {:>7} fdatasyncs",
                round + 1,
                kind.name(),
                s.records_per_s,
                s.flushes_per_s,
                s.syncs
            );
            samples[k].push(s);
        }
    }
    println!("medians:");
    for (kind, s) in kinds.iter().zip(&samples) {
        let syncs = median(s.iter().map(|s| s.syncs as f64));
        let records = median(s.iter().map(|s| s.records_per_s));
        println!(
            "  {:<42} {:>9.0} records/s {:>9.0} flushes/s {:>9.0} fdatasyncs/s {:>7.1} records per fdatasync",
            kind.name(),
            records,
            median(s.iter().map(|s| s.flushes_per_s)),
            syncs / shape.seconds.as_secs_f64(),
            median(s.iter().map(|s| s.records_per_s * shape.seconds.as_secs_f64() / s.syncs.max(1) as f64)),
        );
    }
    Ok(())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn entry(index: u64) -> Entry<KvConfig> {
    let set = Set { key: format!("key{}", index % 1000), value: "v".repeat(100) };
    Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(set.into()) }
}

/// One group's writer: appends until `deadline`; returns (records,
/// flushes).
async fn write<S: RaftLogStorageExt<KvConfig>>(mut store: S, batch: u64, deadline: Instant) -> Result<(u64, u64)> {
    let (mut next, mut flushes) = (0, 0);
    while Instant::now() < deadline {
        store.blocking_append((next..next + batch).map(entry).collect::<Vec<_>>()).await?;
        next += batch;
        flushes += 1;
    }
    Ok((next, flushes))
}

async fn run_once(kind: Kind, shape: Shape, root: &Path) -> Result<Sample> {
    let opts = JournalOptions::new();
    let mut journals = Vec::new();
    let mut tasks = Vec::new();
    let multi = match kind {
        Kind::Shared => Some(MultiLog::open(root, opts.clone()).await?),
        Kind::Separate => None,
    };
    let stores_ready = Arc::new(tokio::sync::Barrier::new(shape.groups as usize + 1));
    for group in 1..=shape.groups {
        let ready = stores_ready.clone();
        match &multi {
            Some(multi) => {
                let store = GroupStore::<KvConfig>::open(multi, group).await?;
                tasks.push(tokio::spawn(async move {
                    ready.wait().await;
                    write(store, shape.batch, Instant::now() + shape.seconds).await
                }));
            }
            None => {
                let store = LogStore::<KvConfig>::open(root.join(format!("group{group}")), opts.clone()).await?;
                journals.push(store.journal().clone());
                tasks.push(tokio::spawn(async move {
                    ready.wait().await;
                    write(store, shape.batch, Instant::now() + shape.seconds).await
                }));
            }
        }
    }
    let syncs_before = syncs(&multi, &journals);
    let t0 = Instant::now();
    stores_ready.wait().await;
    let (mut records, mut flushes) = (0, 0);
    for t in tasks {
        let (r, f) = t.await??;
        records += r;
        flushes += f;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let syncs = syncs(&multi, &journals) - syncs_before;
    if let Some(multi) = multi {
        multi.close().await?;
    }
    for j in journals {
        match j.close().await {
            Ok(()) | Err(tidelog::Error::Closed) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Sample { records_per_s: records as f64 / elapsed, flushes_per_s: flushes as f64 / elapsed, syncs })
}

fn syncs(multi: &Option<MultiLog>, journals: &[tidelog::Journal]) -> u64 {
    match multi {
        Some(m) => m.streams().journal().stats().syncs,
        None => journals.iter().map(|j| j.stats().syncs).sum(),
    }
}
