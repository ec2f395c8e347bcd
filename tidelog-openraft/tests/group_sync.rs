//! The point of the multi-group store: appends of many groups placed
//! while the journal's writer had not run yet are made durable by one
//! group commit, not one `fdatasync` per group; and no group's callback
//! fires before its entries are durable. On both substrates.
#![cfg(feature = "openraft09")]

mod common;
mod support;

use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use support::kv::{Cmd, KvConfig, Set};
use tidelog_openraft::{GroupStore, MultiLog};

const GROUPS: u64 = 16;

fn entry(index: u64) -> Entry<KvConfig> {
    let set = Set { key: format!("k{index}"), value: "v".repeat(64) };
    Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(Cmd::Set(set)) }
}

#[test]
fn appends_of_many_groups_placed_together_share_a_sync() {
    for (cell, opts) in common::cells() {
        // One thread: every group's append is placed (the first poll of
        // each `blocking_append`) before the journal's writer task runs.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            if let Some(why) = common::unavailable(&opts).await {
                tidelog::testing::skip(common::capability(cell), cell, &why);
                return;
            }
            let dir = tempfile::tempdir().expect("tempdir");
            let multi = MultiLog::open(dir.path(), opts).await.expect("open");
            let mut stores = Vec::new();
            for g in 1..=GROUPS {
                stores.push(GroupStore::<KvConfig>::open(&multi, g).await.expect("open a group"));
            }
            let journal = multi.streams().journal().clone();
            for round in 0..3u64 {
                let before = journal.stats().syncs;
                let appends = stores.iter_mut().map(|s| s.blocking_append((round * 4..round * 4 + 4).map(entry)));
                for done in futures::future::join_all(appends).await {
                    done.expect("append");
                }
                let syncs = journal.stats().syncs - before;
                assert!(syncs >= 1, "{cell}: {GROUPS} groups' appends acknowledged without a sync");
                // One group commit serves them all (measured: exactly one);
                // two leaves room for a writer that splits a large buffer.
                assert!(syncs <= 2, "{cell}: {GROUPS} groups' appends placed together took {syncs} syncs");
                for g in 1..=GROUPS {
                    // Raft index i is stream index i + 1.
                    let last = multi.streams().read_async(g, round * 4 + 4, 1).await.expect("read back");
                    assert!(journal.durable_lsn() >= last[0].lsn(), "{cell}: group {g} acknowledged early");
                }
            }
            drop(stores);
            multi.close().await.expect("close");
        });
    }
}
