//! Node processes: started from this crate's binary, their stdout read
//! line by line, killed (SIGKILL) and reaped when dropped, and on Linux
//! killed by the kernel when their parent dies, so no test, benchmark or
//! `tidelog-kv cluster` leaves one behind.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::api::ClientReq;
use crate::client::{call, CALL_TIMEOUT, ELECTION_WAIT};

/// How long a node may take to bind its port (it opens and recovers its
/// journal first).
pub const START_WAIT: Duration = Duration::from_secs(60);

/// One running node.
#[derive(Debug)]
pub struct Proc {
    /// Its id.
    pub id: u64,
    /// Where it listens.
    pub addr: String,
    child: Child,
    /// What it prints after `listening ...`, line by line.
    pub lines: mpsc::UnboundedReceiver<String>,
}

impl Proc {
    /// Starts `exe node --id ID --dir DIR --listen LISTEN ARGS...` and waits
    /// for its `listening ADDR` line.
    pub async fn start(exe: &Path, id: u64, dir: &Path, listen: &str, args: &[String]) -> io::Result<Proc> {
        let mut cmd = Command::new(exe);
        cmd.arg("node")
            .args(["--id", &id.to_string(), "--listen", listen])
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = tokio::time::timeout(START_WAIT, lines.recv()).await;
        let addr = match first {
            Ok(Some(line)) => match line.strip_prefix("listening ") {
                Some(addr) => addr.to_string(),
                None => return Err(io::Error::other(format!("node {id} said {line:?} first"))),
            },
            Ok(None) => return Err(io::Error::other(format!("node {id} exited before listening"))),
            Err(_) => return Err(io::Error::other(format!("node {id} did not listen within {START_WAIT:?}"))),
        };
        Ok(Proc { id, addr, child, lines })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL, and waits until it is reaped.
    pub async fn kill(mut self) -> io::Result<()> {
        self.child.kill().await
    }
}

/// Makes the node get SIGKILL when its parent dies, however it dies:
/// `kill_on_drop` and [`Proc`]'s `Drop` run only if the parent unwinds, so
/// a parent killed with SIGKILL would leave its nodes running, holding
/// their ports and journals.
///
/// The kernel sends the signal when the *thread* that spawned the child
/// exits, not only the process. Nodes are spawned from the thread that
/// polls [`Proc::start`]: a runtime's worker or its `block_on` thread, each
/// of which outlives the cluster it starts.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed. It makes two syscalls,
    // `prctl` and `getppid`, both async-signal-safe; it does not allocate
    // (`io::Error::last_os_error` and `from_raw_os_error` carry an errno
    // inline), takes no lock and touches no memory but its captured `u32`.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl: the child was
            // then reparented and no signal will come. Exit instead.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // `kill_on_drop` sends SIGKILL too; this makes it explicit and
        // immediate. tokio reaps the child.
        let _ = self.child.start_kill();
    }
}

/// Three (or more) nodes on 127.0.0.1, each with its own journal directory.
#[derive(Debug)]
pub struct Cluster {
    exe: PathBuf,
    /// The running nodes.
    pub procs: BTreeMap<u64, Proc>,
    /// Every member's address (kept across restarts: a node restarts on
    /// its old port).
    pub members: BTreeMap<u64, String>,
    dirs: BTreeMap<u64, PathBuf>,
    args: BTreeMap<u64, Vec<String>>,
}

impl Cluster {
    /// Starts one node per directory (ids from 1; `args(id)`: each node's
    /// extra flags), initializes the cluster through node 1 and waits for
    /// a leader.
    pub async fn start(exe: &Path, dirs: &[PathBuf], args: impl Fn(u64) -> Vec<String>) -> io::Result<Cluster> {
        let mut cluster = Cluster {
            exe: exe.to_path_buf(),
            procs: BTreeMap::new(),
            members: BTreeMap::new(),
            dirs: BTreeMap::new(),
            args: BTreeMap::new(),
        };
        for (i, dir) in dirs.iter().enumerate() {
            let id = i as u64 + 1;
            let node_args = args(id);
            let proc = Proc::start(exe, id, dir, "127.0.0.1:0", &node_args).await?;
            cluster.members.insert(id, proc.addr.clone());
            cluster.dirs.insert(id, dir.clone());
            cluster.args.insert(id, node_args);
            cluster.procs.insert(id, proc);
        }
        let init = call(&cluster.members[&1], ClientReq::Init(cluster.members.clone()), CALL_TIMEOUT).await?;
        if !matches!(init, crate::api::ClientResp::Done) {
            return Err(io::Error::other(format!("initialize: {init:?}")));
        }
        cluster.leader(None).await?;
        Ok(cluster)
    }

    /// The leader, once one other than `not` is elected, as the first
    /// running node other than `not` sees it.
    pub async fn leader(&self, not: Option<u64>) -> io::Result<u64> {
        let (&id, proc) =
            self.procs.iter().find(|(&id, _)| Some(id) != not).ok_or_else(|| io::Error::other("no node is running"))?;
        let req = ClientReq::AwaitLeader { other_than: not, timeout_ms: ELECTION_WAIT.as_millis() as u64 };
        match call(&proc.addr, req, ELECTION_WAIT + CALL_TIMEOUT).await? {
            crate::api::ClientResp::Status(s) => s.leader.ok_or_else(|| io::Error::other("no leader")),
            other => Err(io::Error::other(format!("node {id} waiting for a leader: {other:?}"))),
        }
    }

    /// Takes node `id` out of the cluster's process list (to kill it).
    pub fn take(&mut self, id: u64) -> Option<Proc> {
        self.procs.remove(&id)
    }

    /// Starts node `id` again on its directory and its old address.
    pub async fn restart(&mut self, id: u64) -> io::Result<()> {
        let proc = Proc::start(&self.exe, id, &self.dirs[&id], &self.members[&id], &self.args[&id]).await?;
        self.procs.insert(id, proc);
        Ok(())
    }
}
