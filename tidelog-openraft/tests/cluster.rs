//! A 3-node cluster in one process on tidelog journals: the leader is
//! stopped, the others elect a new one and go on, and the old leader
//! recovers its log from its journal and catches up. Both substrates, and
//! direct I/O where the filesystem allows.
#![cfg(feature = "openraft09")]

mod common;
mod support;

use std::time::Duration;

use openraft::storage::RaftLogStorage;
use support::cluster::{leader, members, Router, TidelogNode};
use support::kv::{KvConfig, Set};
use tidelog_openraft::LogStore;

const WAIT: Duration = Duration::from_secs(20);

async fn write_n(router: &Router, from: usize, n: usize) {
    for i in from..from + n {
        let leader = leader(router, WAIT).await.expect("a leader");
        leader
            .client_write(Set { key: format!("k{}", i % 50), value: format!("v{i}") }.into())
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
}

#[test]
fn a_stopped_leader_recovers_from_its_journal_and_catches_up() {
    common::each_cell(|cell, opts| async move {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
        let router = Router::new();
        let mut nodes = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            nodes.push(TidelogNode::start(i as u64 + 1, dir.path(), opts.clone(), &router).await.expect("start"));
        }
        nodes[0].raft.initialize(members(1..=3)).await.expect("initialize");
        write_n(&router, 0, 100).await;

        let old = leader(&router, WAIT).await.expect("leader");
        let old_id = old.metrics().borrow().id;
        let node = nodes.remove(nodes.iter().position(|n| n.id == old_id).expect("the leader is a node"));
        let had = node.raft.metrics().borrow().last_log_index.expect("the leader has a log");
        node.stop(&router).await.unwrap_or_else(|e| panic!("{cell}: stop the leader: {e}"));

        // The two others elect a leader among themselves and go on.
        write_n(&router, 100, 100).await;
        let new = leader(&router, WAIT).await.expect("a new leader");
        assert_ne!(new.metrics().borrow().id, old_id, "{cell}: the stopped node cannot lead");

        // What the old leader's journal holds, read before it rejoins.
        let dir = dirs[old_id as usize - 1].path();
        let mut store = LogStore::<KvConfig>::open(dir, opts.clone()).await.expect("open the stopped node's log");
        let state = store.get_log_state().await.expect("log state");
        assert!(
            state.last_log_id.is_some_and(|id| id.index >= had),
            "{cell}: the journal lost entries: {:?} < {had}",
            state.last_log_id
        );
        let journal = store.journal().clone();
        drop(store);
        journal.close().await.expect("close");

        let back = TidelogNode::start(old_id, dir, opts.clone(), &router).await.expect("restart");
        let target = new.metrics().borrow().last_applied.map(|id| id.index);
        for raft in nodes.iter().map(|n| &n.raft).chain([&back.raft]) {
            raft.wait(Some(WAIT))
                .applied_index_at_least(target, "every node applies the last write")
                .await
                .unwrap_or_else(|e| panic!("{cell}: {e}"));
        }
        let expected = nodes[0].state.contents();
        assert_eq!(expected.len(), 50, "{cell}: 50 keys were written");
        assert_eq!(back.state.contents(), expected, "{cell}: the restarted node's state differs");
        for n in &nodes {
            assert_eq!(n.state.contents(), expected, "{cell}: node {} differs", n.id);
        }
        back.stop(&router).await.expect("stop");
        for n in nodes {
            n.stop(&router).await.expect("stop");
        }
    });
}
