//! The benchmark: for each configuration, a fresh 3-process cluster on one
//! disk, `clients` writers through the leader for a few seconds; rounds
//! interleave the configurations and the medians are printed.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::api::{ClientReq, ClientResp, Status};
use crate::client::{call, CALL_TIMEOUT};
use crate::procs::Cluster;

/// One configuration of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// openraft 0.10, in-memory log: the upper bound.
    Memory010,
    /// openraft 0.10 on tidelog.
    Tidelog010,
    /// openraft 0.9 on tidelog, proposal batching.
    Tidelog09Batch,
    /// openraft 0.9 on tidelog, one write per entry.
    Tidelog09,
    /// openraft 0.9, in-memory log.
    Memory09,
}

impl Kind {
    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Memory010 => "(a) in-memory log, openraft 0.10",
            Kind::Tidelog010 => "(b) tidelog, openraft 0.10",
            Kind::Tidelog09Batch => "(c) tidelog, openraft 0.9 + proposal batching",
            Kind::Tidelog09 => "(d) tidelog, openraft 0.9",
            Kind::Memory09 => "in-memory log, openraft 0.9",
        }
    }

    /// The node flags.
    pub fn args(self) -> Vec<String> {
        let args: &[&str] = match self {
            Kind::Memory010 => &["--raft", "v010", "--store", "memory"],
            Kind::Tidelog010 => &["--raft", "v010"],
            Kind::Tidelog09Batch => &["--raft", "v09", "--batch"],
            Kind::Tidelog09 => &["--raft", "v09"],
            Kind::Memory09 => &["--raft", "v09", "--store", "memory"],
        };
        args.iter().map(|s| s.to_string()).collect()
    }
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Acknowledged writes per second.
    pub per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// The leader's journal records per fdatasync during the run.
    pub records_per_sync: f64,
    /// Acknowledged client writes per leader fdatasync.
    pub writes_per_sync: f64,
}

async fn status(addr: &str) -> io::Result<Status> {
    match call(addr, ClientReq::Status, CALL_TIMEOUT).await? {
        ClientResp::Status(s) => Ok(s),
        other => Err(io::Error::other(format!("status: {other:?}"))),
    }
}

/// Starts a cluster of `kind` under `root`, loads it, stops it.
pub async fn run_once(
    exe: &Path,
    root: &Path,
    kind: Kind,
    clients: usize,
    value_len: usize,
    seconds: Duration,
) -> io::Result<Sample> {
    let dir = tempfile::tempdir_in(root)?;
    let dirs: Vec<PathBuf> = (1..=3).map(|i| dir.path().join(format!("node{i}"))).collect();
    let cluster = Cluster::start(exe, &dirs, |_| kind.args()).await?;
    let leader = cluster.leader(None).await?;
    let before = status(&cluster.members[&leader]).await?;
    let (stop_tx, stop) = watch::channel(false);
    let members = cluster.members.clone();
    let load = tokio::spawn(async move {
        crate::load::run(&members, clients, value_len, "bench", u64::MAX, stop, watch::channel(0).0).await
    });
    // The run's length is the one place a timer is the point.
    tokio::time::sleep(seconds).await;
    let _ = stop_tx.send(true);
    let mut report = load.await.map_err(io::Error::other)?;
    let after = status(&cluster.members[&leader]).await?;
    if let Some(e) = &report.first_error {
        eprintln!("{}: {} writes failed, first: {e}", kind.name(), report.failed);
    }
    let syncs = after.syncs.saturating_sub(before.syncs);
    let records = after.records.saturating_sub(before.records);
    let per_sync = |n: u64| if syncs == 0 { f64::NAN } else { n as f64 / syncs as f64 };
    Ok(Sample {
        per_sec: report.per_sec(),
        p50: report.quantile(0.5),
        p99: report.quantile(0.99),
        records_per_sync: per_sync(records),
        writes_per_sync: per_sync(report.latencies.len() as u64),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `rounds` interleaved rounds of every kind and prints the medians.
pub async fn bench(
    exe: &Path,
    root: &Path,
    kinds: &[Kind],
    clients: usize,
    value_len: usize,
    seconds: Duration,
    rounds: usize,
) -> io::Result<()> {
    let mut samples: Vec<Vec<Sample>> = kinds.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (k, &kind) in kinds.iter().enumerate() {
            let s = run_once(exe, root, kind, clients, value_len, seconds).await?;
            println!(
                "round {round} {:<48} {:>9.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {:>6.1} records/sync {:>6.1} writes/sync",
                kind.name(),
                s.per_sec,
                ms(s.p50),
                ms(s.p99),
                s.records_per_sync,
                s.writes_per_sync
            );
            samples[k].push(s);
        }
    }
    println!(
        "\n3 processes, {clients} clients, {value_len} B values, {rounds} rounds of {seconds:?}, medians, in {}",
        root.display()
    );
    println!("| log store | writes/s | p50 ms | p99 ms | leader records per fdatasync | writes per leader fdatasync |");
    println!("|---|---|---|---|---|---|");
    let shown = |v: f64| if v.is_nan() { "—".to_string() } else { format!("{v:.1}") };
    for (kind, s) in kinds.iter().zip(&samples) {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} |",
            kind.name(),
            median(s.iter().map(|s| s.per_sec).collect()),
            median(s.iter().map(|s| ms(s.p50)).collect()),
            median(s.iter().map(|s| ms(s.p99)).collect()),
            shown(median(s.iter().map(|s| s.records_per_sync).collect())),
            shown(median(s.iter().map(|s| s.writes_per_sync).collect()))
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
