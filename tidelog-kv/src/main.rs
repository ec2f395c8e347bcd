//! `tidelog-kv`: a node of the key-value cluster, a 3-node cluster on
//! 127.0.0.1, a load generator, and the benchmark.
//!
//! ```text
//! tidelog-kv cluster [--dir D] [--raft v010|v09] [--batch]   # 3 nodes, until Ctrl-C
//! tidelog-kv load --node ADDR... [--clients 64] [--seconds 3] [--value-len 128]
//! tidelog-kv bench [--clients 64] [--seconds 3] [--rounds 3] [--dir D]
//! tidelog-kv node --id N --dir D [--listen ADDR] [--raft v010|v09] ...
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tidelog_kv::bench::{self, Kind};
use tidelog_kv::node::{self, NodeArgs, Version};
use tidelog_kv::procs::Cluster;
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(about = "A 3-process key-value cluster on tidelog-openraft")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one node.
    Node(NodeArgs),
    /// Start three nodes on 127.0.0.1 (journals under --dir, or a temp
    /// directory) and keep them running until Ctrl-C.
    Cluster {
        /// Where the nodes' journal directories go.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Which openraft.
        #[arg(long, value_enum, default_value = "v010")]
        raft: Version,
        /// openraft 0.9: proposal batching.
        #[arg(long)]
        batch: bool,
    },
    /// Write through a running cluster and report writes/s and latency.
    Load {
        /// A node's address (give every member's, ids in order from 1).
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[arg(long, default_value_t = 128)]
        value_len: usize,
    },
    /// The benchmark: interleaved rounds of every configuration.
    Bench {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 128)]
        value_len: usize,
        /// Where the journals go (default: the temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Which configurations (default: all but 0.9 in memory).
        #[arg(long, value_enum, value_delimiter = ',')]
        kinds: Vec<Kind>,
    },
}

#[tokio::main]
async fn main() -> io::Result<()> {
    match Cli::parse().cmd {
        Cmd::Node(args) => node::run(args).await,
        Cmd::Cluster { dir, raft, batch } => cluster(dir, raft, batch).await,
        Cmd::Load { nodes, clients, seconds, value_len } => {
            let members: BTreeMap<u64, String> = (1..).zip(nodes).collect();
            let (stop_tx, stop) = watch::channel(false);
            let run = tokio::spawn(async move {
                tidelog_kv::load::run(&members, clients, value_len, "load", u64::MAX, stop, watch::channel(0).0).await
            });
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            let _ = stop_tx.send(true);
            let mut r = run.await.map_err(io::Error::other)?;
            println!(
                "{:.0} writes/s, p50 {:?}, p99 {:?}, {} failed{}",
                r.per_sec(),
                r.quantile(0.5),
                r.quantile(0.99),
                r.failed,
                r.first_error.map(|e| format!(" (first: {e})")).unwrap_or_default()
            );
            Ok(())
        }
        Cmd::Bench { clients, seconds, rounds, value_len, dir, kinds } => {
            let kinds = if kinds.is_empty() {
                vec![Kind::Memory010, Kind::Tidelog010, Kind::Tidelog09Batch, Kind::Tidelog09]
            } else {
                kinds
            };
            let root = dir.unwrap_or_else(std::env::temp_dir);
            let exe = std::env::current_exe()?;
            bench::bench(&exe, &root, &kinds, clients, value_len, Duration::from_secs_f64(seconds), rounds).await
        }
    }
}

async fn cluster(dir: Option<PathBuf>, raft: Version, batch: bool) -> io::Result<()> {
    let temp = match dir {
        Some(_) => None,
        None => Some(tempfile::tempdir()?),
    };
    let root = dir.unwrap_or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_default());
    let dirs: Vec<PathBuf> = (1..=3).map(|i| root.join(format!("node{i}"))).collect();
    let mut args = vec!["--raft".to_string(), if raft == Version::V09 { "v09" } else { "v010" }.to_string()];
    if batch {
        args.push("--batch".into());
    }
    let cluster = Cluster::start(&std::env::current_exe()?, &dirs, |_| args.clone()).await?;
    let leader = cluster.leader(None).await?;
    println!("3 nodes up, journals in {}; node {leader} leads", root.display());
    for (id, proc) in &cluster.procs {
        println!("node {id}: {} pid {}", proc.addr, proc.pid().map_or_else(|| "?".to_string(), |p| p.to_string()));
    }
    let nodes: Vec<String> = cluster.members.values().map(|a| format!("--node {a}")).collect();
    println!("load it: tidelog-kv load {}", nodes.join(" "));
    println!("Ctrl-C stops the nodes");
    tokio::signal::ctrl_c().await?;
    drop(cluster); // kills and reaps the nodes
    Ok(())
}
