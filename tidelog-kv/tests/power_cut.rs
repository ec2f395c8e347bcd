//! A real power cut of the leader process's disk mid-load. Each node's
//! journal is on its own ext4 image on a loop device; the leader prints
//! every append its store acknowledged (`ack ...`, before openraft hears of
//! it) and every vote it saved. Mid-load the leader is frozen (SIGSTOP,
//! waited for: all it printed is in the pipe), its filesystem is shut down
//! with `GOINGDOWN` and `NOLOGFLUSH` (nothing more reaches the device, the
//! filesystem's log is not flushed: a power cut), and it is killed. The
//! others elect a new leader and go on. The disk is remounted (log replay)
//! and the journal read offline: the last entry and the vote the node
//! acknowledged must be there, or it would break Raft safety. It restarts
//! and catches up; every acknowledged write is on all three nodes and the
//! state machines agree.
//!
//! The negative control runs the same cut on a store that acknowledges
//! appends once *written* (`--ack-written`): the check must see it lose
//! an acknowledged entry, or the harness proves nothing.
//!
//! Needs root, `losetup` and `mkfs.ext4` (`tidelog::testing::Capability::Ext4`);
//! elsewhere it says why it is skipped. The `Disk` is the library tests'
//! (`common::disk`, one file included by every package's tests).
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};

use common::disk::Disk;
use openraft010::storage::{RaftLogReader, RaftLogStorage};
use openraft010::type_config::alias::LogIdOf;
use tidelog::testing::{skip, Capability};
use tidelog_kv::procs::Cluster;
use tidelog_kv::support::kv010::KvConfig;
use tokio::sync::watch;

/// SIGSTOP `pid` and wait until it has stopped: whatever it printed is
/// then in the pipe, and it does nothing more before the cut.
fn freeze(pid: u32) {
    let pid = pid as libc::pid_t;
    // SAFETY: plain syscalls on our own child's pid; it is not reaped yet
    // (tokio reaps it only once it exits), so the pid cannot be reused.
    unsafe {
        assert_eq!(libc::kill(pid, libc::SIGSTOP), 0, "SIGSTOP the leader");
        let mut status = 0;
        let waited = libc::waitpid(pid, &mut status, libc::WUNTRACED);
        assert!(waited == pid && libc::WIFSTOPPED(status), "the leader stopped (status {status:#x})");
    }
}

/// What the frozen leader said it had made durable: its last acknowledged
/// append's log id (term, node, index) and its last saved vote.
#[derive(Debug, Default)]
struct Witnessed {
    ack: Option<(u64, u64, u64)>,
    vote: Option<(u64, u64, bool)>,
    acks: usize,
}

fn witnessed(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Witnessed {
    let mut w = Witnessed::default();
    while let Ok(line) = lines.try_recv() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["ack", t, n, i] => {
                let ack = (t.parse().expect("term"), n.parse().expect("node"), i.parse().expect("index"));
                // Acknowledgements come in log order; keep the newest.
                if w.ack.is_none_or(|a| a.2 <= ack.2) {
                    w.ack = Some(ack);
                }
                w.acks += 1;
            }
            ["vote", t, n, c] => w.vote = Some((t.parse().expect("term"), n.parse().expect("node"), *c == "true")),
            _ => panic!("unexpected line from the leader: {line:?}"),
        }
    }
    w
}

/// Opens the journal in `dir` offline and says what of `w` it lost.
async fn lost(dir: &Path, w: &Witnessed) -> Vec<String> {
    let mut store = tidelog_openraft::v010::LogStore::<KvConfig>::open(dir, tidelog::JournalOptions::new())
        .await
        .expect("open the cut node's journal");
    let mut lost = Vec::new();
    if let Some((term, node, index)) = w.ack {
        let want: LogIdOf<KvConfig> =
            LogIdOf::<KvConfig>::new(openraft010::impls::leader_id_adv::LeaderId { term, node_id: node }, index);
        let got = store.get_log_reader().await.try_get_log_entries(index..=index).await.expect("read");
        if got.first().map(|e| e.log_id) != Some(want) {
            let last = store.get_log_state().await.expect("log state").last_log_id;
            lost.push(format!("acknowledged entry {want} (the log now ends at {last:?})"));
        }
    }
    if let Some((term, node, committed)) = w.vote {
        let got = store.get_log_reader().await.read_vote().await.expect("vote");
        let kept = got.is_some_and(|v| (v.leader_id.term, v.committed) >= (term, committed));
        if !kept {
            lost.push(format!("saved vote T{term}-N{node} committed={committed} (recovered {got:?})"));
        }
    }
    let journal = store.journal().clone();
    drop(store);
    journal.close().await.expect("close");
    lost
}

/// Runs the cut; returns what the cut node lost of what it acknowledged.
fn power_cut(control: bool) -> Option<Vec<String>> {
    let what = format!("power cut of the leader{}", if control { ", negative control" } else { "" });
    if let Err(why) = Capability::Ext4.present() {
        skip(Capability::Ext4, &what, &why);
        return None;
    }
    let mut result = None;
    common::run(300, &what, async {
        let mut disks: Vec<Disk> = (0..3).map(|_| Disk::new("ext4")).collect();
        let dirs: Vec<PathBuf> = disks.iter().map(|d| d.mnt.join("journal")).collect();
        // The ring, asked for: Auto would run the blocking substrate here.
        let mut args: Vec<String> =
            ["--raft", "v010", "--witness", "--substrate", "io-uring"].iter().map(|s| s.to_string()).collect();
        if control {
            args.push("--ack-written".into());
        }
        let mut cluster = Cluster::start(common::exe(), &dirs, |_| args.clone()).await.expect("start the cluster");
        let leader = cluster.leader(None).await.expect("a leader");

        let (stop_tx, stop) = watch::channel(false);
        let (acks_tx, mut acks) = watch::channel(0u64);
        let members = cluster.members.clone();
        let load =
            tokio::spawn(async move { tidelog_kv::load::run(&members, 16, 128, "cut", u64::MAX, stop, acks_tx).await });
        common::within(60, "400 acknowledged writes", acks.wait_for(|&n| n >= 400)).await.expect("load runs");

        let mut proc = cluster.take(leader).expect("the leader runs");
        freeze(proc.pid().expect("a pid"));
        let w = witnessed(&mut proc.lines);
        assert!(w.acks > 0 && w.vote.is_some(), "the leader witnessed nothing: {w:?}");
        disks[leader as usize - 1].shut_down();
        proc.kill().await.expect("kill the frozen leader");

        let new = cluster.leader(Some(leader)).await.expect("a new leader");
        let seen = *acks.borrow();
        common::within(60, "200 writes through the new leader", acks.wait_for(|&n| n >= seen + 200))
            .await
            .expect("load runs");

        let disk = &mut disks[leader as usize - 1];
        disk.unmount();
        disk.mount();
        let gone = lost(&dirs[leader as usize - 1], &w).await;
        eprintln!(
            "{what}: node {leader} cut after {} acknowledged appends (last {:?}, vote {:?}); node {new} took over; \
             lost: {gone:?}",
            w.acks, w.ack, w.vote
        );
        if !control {
            assert!(gone.is_empty(), "after the power cut node {leader} lost what it acknowledged: {gone:?}");
            cluster.restart(leader).await.expect("restart the cut node");
            let seen = *acks.borrow();
            common::within(60, "200 more writes", acks.wait_for(|&n| n >= seen + 200)).await.expect("load runs");
            let _ = stop_tx.send(true);
            let report = load.await.expect("the load task");
            common::all_agree_and_hold(&cluster, &report.acked).await;
        } else {
            let _ = stop_tx.send(true);
            load.await.expect("the load task");
        }
        drop(cluster); // kills the nodes before the disks go
        result = Some(gone);
    });
    result
}

#[test]
fn a_power_cut_of_the_leader_loses_nothing_it_acknowledged() {
    power_cut(false);
}

/// Acknowledging written (not durable) appends must lose one to the cut:
/// if it did not, the cut would not be cutting anything.
#[test]
fn negative_control_a_store_acking_written_entries_loses_one() {
    let Some(lost) = power_cut(true) else { return };
    assert!(!lost.is_empty(), "the control acknowledged written-not-durable appends and lost none: no cut");
}
