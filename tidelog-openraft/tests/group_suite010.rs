//! openraft 0.10's own storage test suite against the multi-group store:
//! every test of the suite opens a fresh group of one *shared* journal,
//! while other groups append to the same journal all along, on every
//! journal configuration; and a 0.9 group refused by the 0.10 store.
#![cfg(feature = "openraft010")]

mod common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use openraft010::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft010::testing::log::{StoreBuilder, Suite};
use openraft010::testing::{blank_ent, log_id};
use openraft010::{ErrorSubject, ErrorVerb, StorageError};
use support::kv010::{KvConfig, KvStateMachine};
use tidelog_openraft::v010::GroupStore;
use tidelog_openraft::MultiLog;

/// Groups the background writers use; the suite's groups count up from 1.
const BACKGROUND_GROUPS: std::ops::Range<u64> = 1_000..1_004;

/// Hands each test of the suite a new group of the one journal.
struct Builder {
    multi: MultiLog,
    next_group: Arc<AtomicU64>,
}

impl StoreBuilder<KvConfig, GroupStore<KvConfig>, KvStateMachine, ()> for Builder {
    async fn build(&self) -> Result<((), GroupStore<KvConfig>, KvStateMachine), StorageError<KvConfig>> {
        let group = self.next_group.fetch_add(1, Ordering::Relaxed);
        let store = GroupStore::open(&self.multi, group).await.map_err(|e| {
            StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, std::io::Error::other(e))
        })?;
        Ok(((), store, KvStateMachine::new()))
    }
}

/// Appends batches to `group` until told to stop, purging now and then;
/// returns how many entries it appended.
async fn background(multi: MultiLog, group: u64, stop: Arc<AtomicBool>) -> u64 {
    let mut store = GroupStore::<KvConfig>::open(&multi, group).await.expect("open a background group");
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<_> = (next..next + 8).map(|i| blank_ent::<KvConfig>(1, 1, i)).collect();
        store.blocking_append(batch).await.expect("background append");
        next += 8;
        if next % 256 == 0 {
            store.purge(log_id::<KvConfig>(1, 1, next - 128)).await.expect("background purge");
        }
    }
    next
}

fn suite(cell: &str) {
    common::in_cell(cell, |opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let multi = MultiLog::open(dir.path(), opts.clone()).await.expect("open the shared journal");
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> =
            BACKGROUND_GROUPS.map(|g| tokio::spawn(background(multi.clone(), g, stop.clone()))).collect();
        let next_group = Arc::new(AtomicU64::new(1));
        let builder = Builder { multi: multi.clone(), next_group: next_group.clone() };
        Suite::test_all(builder)
            .await
            .unwrap_or_else(|e| panic!("openraft 0.10's suite on groups failed on {cell}: {e}"));

        stop.store(true, Ordering::Relaxed);
        for w in writers {
            assert!(w.await.expect("writer task") > 0, "{cell}: a background group appended nothing");
        }
        multi.close().await.expect("close");
        let reopened = MultiLog::open(dir.path(), opts).await.expect("reopen");
        let groups = reopened.groups();
        let suite_groups = next_group.load(Ordering::Relaxed) - 1;
        assert!(suite_groups > 20, "{cell}: the suite opened {suite_groups} groups");
        for g in (1..=suite_groups).chain(BACKGROUND_GROUPS) {
            assert!(groups.contains(&g), "{cell}: group {g} is gone after a reopen");
        }
        reopened.close().await.expect("close");
    });
}

#[test]
fn openraft010_suite_on_groups_of_one_journal_blocking() {
    suite("blocking");
}

#[test]
fn openraft010_suite_on_groups_of_one_journal_io_uring() {
    suite("io_uring");
}

#[test]
fn openraft010_suite_on_groups_of_one_journal_blocking_direct() {
    suite("blocking+direct");
}

#[test]
fn openraft010_suite_on_groups_of_one_journal_io_uring_direct() {
    suite("io_uring+direct");
}

#[cfg(feature = "openraft09")]
#[test]
fn a_group_of_the_09_store_is_refused_by_the_010_store() {
    common::in_cell("blocking", |opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let multi = MultiLog::open(dir.path(), opts).await.expect("open");
        let old = tidelog_openraft::GroupStore::<support::kv::KvConfig>::open(&multi, 5).await.expect("open 0.9");
        drop(old);
        let err = GroupStore::<KvConfig>::open(&multi, 5).await.expect_err("another version's group");
        let msg = err.to_string();
        assert!(msg.contains("tidelog-openraft/1") && msg.contains("openraft-0.10"), "names both formats: {msg}");
        assert!(msg.contains("raft group 5"), "names the group: {msg}");
        // Another group of the same journal is the 0.10 store's to use.
        drop(GroupStore::<KvConfig>::open(&multi, 6).await.expect("a new group"));
        multi.close().await.expect("close");
    });
}
