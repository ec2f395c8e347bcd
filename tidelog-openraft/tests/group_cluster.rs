//! Four Raft groups of three nodes in one process, each node's logs in one
//! `MultiLog`: the groups snapshot and purge often; a node is stopped
//! (its member of every group with it), the others go on, and it restarts
//! from its journal and catches up in every group — through a snapshot
//! install where its log fell behind the leader's purge. Both substrates,
//! and direct I/O where the filesystem allows.
#![cfg(feature = "openraft09")]

mod common;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, Raft, SnapshotPolicy};
use support::cluster::{leader, members, KvRaft, Router};
use support::kv::{KvConfig, KvStateMachine, Set};
use tidelog::JournalOptions;
use tidelog_openraft::{GroupStore, MultiLog};

const WAIT: Duration = Duration::from_secs(20);
const GROUPS: u64 = 4;

/// The cluster's timing, with a snapshot every 20 entries and no log kept
/// behind it, so that a lagging node needs a snapshot.
fn config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(20),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    };
    Arc::new(config.validate().expect("valid config"))
}

/// One node: its journal and its member of every group.
struct Node {
    id: u64,
    multi: MultiLog,
    rafts: Vec<KvRaft>,
    states: Vec<KvStateMachine>,
}

impl Node {
    /// Starts node `id` on the journal in `dir`, with `states` as its
    /// state machines (they stand for persisted ones: a node that purged
    /// its log cannot rebuild an empty state machine from it).
    async fn start(id: u64, dir: &Path, opts: JournalOptions, routers: &[Router], states: Vec<KvStateMachine>) -> Node {
        let multi = MultiLog::open(dir, opts).await.expect("open the node's journal");
        let mut rafts = Vec::new();
        for ((group, router), state) in (1..).zip(routers).zip(&states) {
            let store = GroupStore::<KvConfig>::open(&multi, group).await.expect("open a group");
            let raft = Raft::new(id, config(), router.clone(), store, state.clone()).await.expect("start raft");
            router.add(id, raft.clone());
            rafts.push(raft);
        }
        Node { id, multi, rafts, states }
    }

    /// Stops the node; returns its state machines.
    async fn stop(self, routers: &[Router]) -> Vec<KvStateMachine> {
        for (raft, router) in self.rafts.into_iter().zip(routers) {
            router.remove(self.id);
            raft.shutdown().await.expect("shutdown");
        }
        self.multi.close().await.expect("close");
        self.states
    }
}

/// Writes keys `from..from + n` to every group, the groups concurrently.
async fn write_all(routers: &[Router], from: usize, n: usize) {
    let writes = routers.iter().map(|router| async move {
        for i in from..from + n {
            let leader = leader(router, WAIT).await.expect("a leader");
            let set = Set { key: format!("k{}", i % 30), value: format!("v{i}") };
            leader.client_write(set.into()).await.unwrap_or_else(|e| panic!("write {i}: {e}"));
        }
    });
    futures::future::join_all(writes).await;
}

#[test]
fn a_stopped_node_of_many_groups_recovers_from_its_journal_and_catches_up() {
    common::each_cell(|cell, opts| async move {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
        let routers: Vec<Router> = (0..GROUPS).map(|_| Router::new()).collect();
        let mut nodes = Vec::new();
        for (id, dir) in (1..).zip(&dirs) {
            let states = (0..GROUPS).map(|_| KvStateMachine::new()).collect();
            nodes.push(Node::start(id, dir.path(), opts.clone(), &routers, states).await);
        }
        for raft in &nodes[0].rafts {
            raft.initialize(members(1..=3)).await.expect("initialize");
        }
        write_all(&routers, 0, 50).await;

        let stopped = nodes.remove(2);
        let states = stopped.stop(&routers).await;
        write_all(&routers, 50, 60).await;

        let back = Node::start(3, dirs[2].path(), opts.clone(), &routers, states).await;
        assert_eq!(back.multi.groups(), (1..=GROUPS).collect::<Vec<_>>(), "{cell}: the groups after a restart");
        for (g, router) in routers.iter().enumerate() {
            let target = leader(router, WAIT).await.expect("leader").metrics().borrow().last_applied.map(|i| i.index);
            for raft in nodes.iter().map(|n| &n.rafts[g]).chain([&back.rafts[g]]) {
                raft.wait(Some(WAIT))
                    .applied_index_at_least(target, "every node applies the last write")
                    .await
                    .unwrap_or_else(|e| panic!("{cell}: group {}: {e}", g + 1));
            }
            let expected = nodes[0].states[g].contents();
            assert_eq!(expected.len(), 30, "{cell}: group {}: 30 keys were written", g + 1);
            assert_eq!(back.states[g].contents(), expected, "{cell}: group {}: the restarted node differs", g + 1);
            assert_eq!(nodes[1].states[g].contents(), expected, "{cell}: group {}", g + 1);
        }
        let purged = back.rafts.iter().filter(|r| r.metrics().borrow().purged.is_some()).count();
        assert!(purged > 0, "{cell}: no group of the restarted node purged its log");
        back.stop(&routers).await;
        for n in nodes {
            n.stop(&routers).await;
        }
    });
}
