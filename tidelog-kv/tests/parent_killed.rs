//! `tidelog-kv cluster` killed with SIGKILL runs no destructor, yet its
//! three nodes die with it (the kernel's parent-death signal) instead of
//! running on, holding their ports and journals.
#![cfg(target_os = "linux")]

mod common;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, BufReader, Interest};
use tokio::process::Command;

/// A process that is not our child, held by a pidfd: its exit can be
/// awaited, and it can be signalled with no risk that its pid was reused.
/// Killed on drop, so a failing test leaves no node behind.
struct Pidfd {
    pid: u32,
    fd: AsyncFd<OwnedFd>,
}

impl Pidfd {
    fn open(pid: u32) -> Pidfd {
        // SAFETY: pidfd_open takes a pid and flags and touches no memory of
        // ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        assert!(fd >= 0, "pidfd_open({pid}): {}", io::Error::last_os_error());
        // SAFETY: `fd` is a descriptor the kernel just opened for us; nothing
        // else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        // SAFETY: `fd` is an OwnedFd moved into the AsyncFd: it stays open
        // and refers to this pidfd for as long as the registration lives.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
        Pidfd { pid, fd: fd.unwrap_or_else(|e| panic!("register the pidfd: {e}")) }
    }

    /// Resolves once the process has exited: a pidfd polls readable then.
    async fn exited(&self) {
        let _ready = self.fd.readable().await.expect("poll the pidfd");
    }
}

impl Drop for Pidfd {
    fn drop(&mut self) {
        // SAFETY: pidfd_send_signal with a null siginfo reads no memory; the
        // fd is open. An exited process answers ESRCH, which is fine.
        unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.fd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<u8>(), 0);
        }
    }
}

/// Parses `node ID: ADDR pid PID` (the cluster command's lines) into PID.
fn node_pid(line: &str) -> Option<u32> {
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.as_slice() {
        ["node", _, _, "pid", pid] => Some(pid.parse().expect("a pid")),
        _ => None,
    }
}

#[test]
fn sigkill_of_the_cluster_command_takes_its_nodes_with_it() {
    common::run(120, "the parent-death test", async {
        let root = tempfile::tempdir().expect("tempdir");
        let mut cluster = Command::new(common::exe())
            .arg("cluster")
            .arg("--dir")
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tidelog-kv cluster");
        let mut lines = BufReader::new(cluster.stdout.take().expect("piped stdout")).lines();
        // The nodes' pidfds are opened while the cluster command, their
        // parent, runs: none of them can have been reaped yet.
        let mut nodes = Vec::new();
        common::within(90, "the cluster command's report", async {
            while let Some(line) = lines.next_line().await.expect("read the cluster's stdout") {
                if let Some(pid) = node_pid(&line) {
                    nodes.push(Pidfd::open(pid));
                }
                if line.starts_with("Ctrl-C") {
                    return;
                }
            }
            panic!("the cluster command exited before it was up");
        })
        .await;
        assert_eq!(nodes.len(), 3, "the cluster command reported three node pids");

        cluster.kill().await.expect("SIGKILL the cluster command");
        for node in &nodes {
            common::within(30, &format!("node pid {} exiting after its parent's SIGKILL", node.pid), node.exited())
                .await;
        }
    });
}
