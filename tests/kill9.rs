//! Process death: a child appends durable records from four tasks and prints
//! each acknowledgement; it is killed with SIGKILL mid-stream (partial
//! frames, padded direct-I/O blocks and rollovers in flight), and the journal
//! is reopened and checked: every acknowledged record is there, intact, at
//! its LSN; reopening is idempotent; the next child appends after it.
//!
//! This tests process death, not power loss: the kernel keeps what the dead
//! process wrote. Power cuts are the reliability harness's job.
#![cfg(all(feature = "cli", target_os = "linux"))]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tidelog::{Journal, JournalOptions, SubstrateChoice};

/// Must match the child's payload (`src/bin/tidelog/child.rs`).
fn payload(tag: u32, task: u32, n: u64) -> Vec<u8> {
    let mut p = format!("tag {tag} task {task} n {n} ").into_bytes();
    let fill = ((n * 131 + u64::from(task) * 977) % 6000) as usize;
    p.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, fill));
    p
}

/// Kills the child if the test panics first: no process is left behind.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one child until it has acknowledged `want` records, kills it, and
/// returns every acknowledgement it printed: (task, n, lsn).
fn kill_after(dir: &Path, substrate: &str, direct: bool, tag: u32, want: usize) -> Vec<(u32, u64, u64)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidelog"));
    cmd.arg("append-until-killed").arg(dir).args(["--substrate", substrate, "--tag", &tag.to_string()]);
    if direct {
        cmd.arg("--direct");
    }
    let mut child = Reaper(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn the child"));
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let parse = |line: String| -> (u32, u64, u64) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() == 4 && f[0] == "ack", "unexpected child output {line:?}");
        (f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap())
    };
    let mut acks = Vec::new();
    while acks.len() < want {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => acks.push(parse(line)),
            Err(e) => panic!("the child acknowledged only {} of {want} records within 60 s: {e}", acks.len()),
        }
    }
    child.0.kill().expect("SIGKILL the child");
    child.0.wait().expect("reap the child");
    reader.join().expect("stdout reader");
    // Lines printed before the kill were acknowledgements too.
    acks.extend(rx.try_iter().map(parse));
    acks
}

fn kill_9_cycles(substrate: &str, direct: bool) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let choice = if substrate == "io_uring" { SubstrateChoice::IoUring } else { SubstrateChoice::Blocking };
    let opts = JournalOptions::new().substrate(choice).direct_io(direct).segment_size(1 << 20);
    match rt.block_on(Journal::open(dir.path().join("probe"), opts.clone())) {
        Ok(probe) => rt.block_on(probe.close()).expect("close the probe journal"),
        Err(e @ tidelog::Error::Unsupported(_)) => {
            eprintln!("SKIPPED {substrate} direct={direct}: {e}");
            return;
        }
        Err(e) => panic!("probe journal: {e}"),
    }
    let mut acked: Vec<(u32, u32, u64, u64)> = Vec::new();
    for tag in 0..3u32 {
        let acks = kill_after(dir.path(), substrate, direct, tag, 120 + 90 * tag as usize);
        acked.extend(acks.into_iter().map(|(task, n, lsn)| (tag, task, n, lsn)));
        // Recovery runs twice: the second open finds what the first left.
        for _ in 0..2 {
            rt.block_on(async {
                let j = Journal::open(dir.path(), opts.clone()).await.expect("reopen after kill -9");
                j.close().await.expect("close");
            });
        }
        let records: HashMap<u64, Vec<u8>> = common::read_all(dir.path()).into_iter().collect();
        for &(tag, task, n, lsn) in &acked {
            let found =
                records.get(&lsn).unwrap_or_else(|| panic!("acknowledged record {tag}/{task}/{n} at {lsn} lost"));
            assert!(*found == payload(tag, task, n), "record at {lsn} is not {tag}/{task}/{n}");
        }
        assert!(tidelog::verify(dir.path()).unwrap().is_clean(), "after recovery the journal verifies clean");
    }
    eprintln!("{substrate} direct={direct}: 3 kills, {} acknowledged records, 0 lost", acked.len());
}

#[test]
fn kill_9_blocking_buffered() {
    kill_9_cycles("blocking", false);
}

#[test]
fn kill_9_io_uring_buffered() {
    kill_9_cycles("io_uring", false);
}

#[test]
fn kill_9_blocking_direct() {
    kill_9_cycles("blocking", true);
}

#[test]
fn kill_9_io_uring_direct() {
    kill_9_cycles("io_uring", true);
}
