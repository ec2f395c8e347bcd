//! What every node shares, whichever openraft version it runs: its command
//! line, its journal options and its Raft timing.

use std::io::{self, Write};
use std::path::PathBuf;

use tidelog::{JournalOptions, SubstrateChoice, SyncPolicy};

/// Which openraft runs the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Version {
    /// openraft 0.9: awaits every append's flush.
    V09,
    /// openraft 0.10: pipelined log I/O.
    V010,
}

/// Where the node keeps its Raft log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// A tidelog journal in `--dir`.
    Tidelog,
    /// In memory: nothing durable (the benchmark's upper bound).
    Memory,
}

/// The journal's substrate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Substrate {
    /// `SubstrateChoice::Auto`: tidelog's measured rule (the blocking
    /// substrate for the buffered defaults on ext4 and XFS).
    Auto,
    /// pwrite and fdatasync on the journal's own I/O threads.
    Blocking,
    /// io_uring.
    IoUring,
}

/// One node's command line.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// The node's id.
    #[arg(long)]
    pub id: u64,
    /// Its journal directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Where it listens for peers and clients (port 0: any free port; the
    /// node prints `listening ADDR` once bound).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Which openraft.
    #[arg(long, value_enum, default_value = "v010")]
    pub raft: Version,
    /// Which log store.
    #[arg(long, value_enum, default_value = "tidelog")]
    pub store: StoreKind,
    /// openraft 0.9 only: one entry carries every write that arrived while
    /// the previous one was replicated.
    #[arg(long)]
    pub batch: bool,
    /// The journal's substrate.
    #[arg(long, value_enum, default_value = "auto")]
    pub substrate: Substrate,
    /// NEGATIVE CONTROL, unsafe: acknowledge appends once *written*, not
    /// durable (the journal under `SyncPolicy::Never`).
    #[arg(long)]
    pub ack_written: bool,
    /// Print each acknowledged append and saved vote (`ack ...`, `vote ...`).
    #[arg(long)]
    pub witness: bool,
}

impl NodeArgs {
    /// The journal options the node's store opens with.
    pub fn journal_options(&self) -> JournalOptions {
        let substrate = match self.substrate {
            Substrate::Auto => SubstrateChoice::Auto,
            Substrate::Blocking => SubstrateChoice::Blocking,
            Substrate::IoUring => SubstrateChoice::IoUring,
        };
        let opts = JournalOptions::new().substrate(substrate);
        if self.ack_written {
            opts.sync_policy(SyncPolicy::Never)
        } else {
            opts
        }
    }
}

/// Heartbeats every 100 ms, elections after 1–2 s of silence: three
/// processes and their clients share two cores, and a busy one must not
/// look dead.
pub fn config010() -> openraft010::Config {
    openraft010::Config {
        cluster_name: "tidelog-kv".into(),
        heartbeat_interval: 100,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        ..Default::default()
    }
}

/// As [`config010`], for openraft 0.9.
pub fn config09() -> openraft::Config {
    openraft::Config {
        cluster_name: "tidelog-kv".into(),
        heartbeat_interval: 100,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        ..Default::default()
    }
}

/// Binds, says where (`listening ADDR` on stdout: what starts a cluster
/// waits for), and runs the node until the process ends.
pub async fn run(args: NodeArgs) -> io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening {}", listener.local_addr()?)?;
        out.flush()?;
    }
    match args.raft {
        Version::V010 => crate::v010::run(args, listener).await,
        Version::V09 => crate::v09::run(args, listener).await,
    }
}
