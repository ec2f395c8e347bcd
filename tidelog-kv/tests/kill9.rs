//! kill -9 of the leader process mid-load: the two others elect a new
//! leader and the clients go on through it; the killed node's journal
//! holds everything it had applied; it restarts from its journal on its
//! old port and catches up; every acknowledged write is on all three nodes
//! and their state machines agree. On openraft 0.10 and on 0.9 with
//! proposal batching.

mod common;

use std::path::PathBuf;

use openraft010::storage::RaftLogStorage;
use tidelog_kv::procs::Cluster;
use tidelog_kv::support::kv010::KvConfig;
use tokio::sync::watch;

fn kill_the_leader_mid_load(raft: &str, extra: &[&str]) {
    common::run(240, &format!("kill -9 ({raft})"), async {
        let root = tempfile::tempdir().expect("tempdir");
        let dirs: Vec<PathBuf> = (1..=3).map(|i| root.path().join(format!("node{i}"))).collect();
        let mut args = vec!["--raft".to_string(), raft.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut cluster = Cluster::start(common::exe(), &dirs, |_| args.clone()).await.expect("start the cluster");
        let old = cluster.leader(None).await.expect("a leader");

        let (stop_tx, stop) = watch::channel(false);
        let (acks_tx, mut acks) = watch::channel(0u64);
        let members = cluster.members.clone();
        let load =
            tokio::spawn(
                async move { tidelog_kv::load::run(&members, 16, 128, "kill9", u64::MAX, stop, acks_tx).await },
            );
        common::within(60, "300 acknowledged writes", acks.wait_for(|&n| n >= 300)).await.expect("load runs");

        let applied = common::status(&cluster.members[&old]).await.last_applied.expect("applied");
        let proc = cluster.take(old).expect("the leader runs");
        proc.kill().await.expect("kill -9 the leader");
        let new = cluster.leader(Some(old)).await.expect("a new leader");
        assert_ne!(new, old);
        let seen = *acks.borrow();
        common::within(60, "300 more writes through the new leader", acks.wait_for(|&n| n >= seen + 300))
            .await
            .expect("load runs");

        if raft == "v010" {
            // What the killed node's journal holds, read before it rejoins:
            // at least everything it had applied (a leader applies only
            // what a quorum, itself included, has durable).
            let opts = tidelog::JournalOptions::new();
            let mut store = tidelog_openraft::v010::LogStore::<KvConfig>::open(&dirs[old as usize - 1], opts)
                .await
                .expect("open the killed node's journal");
            let last = store.get_log_state().await.expect("log state").last_log_id.map(|id| id.index);
            assert!(last >= Some(applied), "the killed leader's journal ends at {last:?}, before {applied}");
            let journal = store.journal().clone();
            drop(store);
            journal.close().await.expect("close");
        }
        cluster.restart(old).await.expect("restart the killed node");
        let seen = *acks.borrow();
        common::within(60, "200 more writes", acks.wait_for(|&n| n >= seen + 200)).await.expect("load runs");
        let _ = stop_tx.send(true);
        let report = load.await.expect("the load task");
        assert!(report.acked.len() >= 800, "{} writes acknowledged", report.acked.len());
        common::all_agree_and_hold(&cluster, &report.acked).await;
        eprintln!(
            "kill -9 ({raft}): node {old} killed, node {new} took over, {} acknowledged writes on all three, {} failed",
            report.acked.len(),
            report.failed
        );
    });
}

/// On io_uring (asked for: Auto runs the blocking substrate for the
/// buffered defaults); the 0.9 test below runs on Auto's pick.
#[test]
fn kill_9_of_the_leader_mid_load_openraft010() {
    kill_the_leader_mid_load("v010", &["--substrate", "io-uring"]);
}

#[test]
fn kill_9_of_the_leader_mid_load_openraft09_batching() {
    kill_the_leader_mid_load("v09", &["--batch"]);
}
