//! openraft 0.9's own storage test suite against the multi-group store:
//! every test of the suite opens a fresh group of one *shared* journal,
//! while other groups append to the same journal all along, on every
//! journal configuration.
#![cfg(feature = "openraft09")]

mod common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, StorageError, StorageIOError};
use support::kv::{Cmd, KvConfig, KvStateMachine, Set};
use tidelog_openraft::{GroupStore, MultiLog};

/// Groups the background writers use; the suite's groups count up from 1.
const BACKGROUND_GROUPS: std::ops::Range<u64> = 1_000..1_004;

/// Hands each test of the suite a new group of the one journal.
struct Builder {
    multi: MultiLog,
    next_group: Arc<AtomicU64>,
}

impl StoreBuilder<KvConfig, GroupStore<KvConfig>, KvStateMachine, ()> for Builder {
    async fn build(&self) -> Result<((), GroupStore<KvConfig>, KvStateMachine), StorageError<u64>> {
        let group = self.next_group.fetch_add(1, Ordering::Relaxed);
        let store = GroupStore::open(&self.multi, group).await.map_err(|e| StorageIOError::write(&e))?;
        Ok(((), store, KvStateMachine::new()))
    }
}

fn entry(term: u64, index: u64) -> Entry<KvConfig> {
    let set = Set { key: format!("k{index}"), value: format!("background {term}/{index}") };
    Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Normal(Cmd::Set(set)) }
}

/// Appends batches to `group` until told to stop, purging now and then;
/// returns how many entries it appended.
async fn background(multi: MultiLog, group: u64, stop: Arc<AtomicBool>) -> u64 {
    let mut store = GroupStore::<KvConfig>::open(&multi, group).await.expect("open a background group");
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<_> = (next..next + 8).map(|i| entry(1, i)).collect();
        store.blocking_append(batch).await.expect("background append");
        next += 8;
        if next % 256 == 0 {
            store.purge(LogId::new(CommittedLeaderId::new(1, 1), next - 128)).await.expect("background purge");
        }
    }
    next
}

fn suite(cell: &str) {
    let (_, opts) = common::cells().into_iter().find(|(name, _)| *name == cell).expect("a known cell");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    if let Some(why) = rt.block_on(common::unavailable(&opts)) {
        tidelog::testing::skip(common::capability(cell), &format!("openraft's suite on groups, {cell}"), &why);
        return;
    }
    // The journal and its background writers live on `rt`; the suite runs
    // each of its tests on a fresh runtime of its own.
    let dir = tempfile::tempdir().expect("tempdir");
    let multi = rt.block_on(MultiLog::open(dir.path(), opts.clone())).expect("open the shared journal");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = BACKGROUND_GROUPS.map(|g| rt.spawn(background(multi.clone(), g, stop.clone()))).collect();
    let next_group = Arc::new(AtomicU64::new(1));
    let builder = Builder { multi: multi.clone(), next_group: next_group.clone() };
    Suite::test_all(builder).unwrap_or_else(|e| panic!("openraft's suite on a shared journal failed on {cell}: {e}"));

    // The writers wrote meanwhile, and the journal reopens with every
    // group the suite made.
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for w in writers {
            assert!(w.await.expect("writer task") > 0, "{cell}: a background group appended nothing");
        }
        multi.close().await.expect("close");
        let reopened = MultiLog::open(dir.path(), opts).await.expect("reopen");
        let groups = reopened.groups();
        let suite_groups = next_group.load(Ordering::Relaxed) - 1;
        assert!(suite_groups > 30, "{cell}: the suite opened {suite_groups} groups");
        for g in (1..=suite_groups).chain(BACKGROUND_GROUPS) {
            assert!(groups.contains(&g), "{cell}: group {g} is gone after a reopen");
        }
        reopened.close().await.expect("close");
    });
}

#[test]
fn openraft_suite_on_groups_of_one_journal_blocking() {
    suite("blocking");
}

#[test]
fn openraft_suite_on_groups_of_one_journal_io_uring() {
    suite("io_uring");
}

#[test]
fn openraft_suite_on_groups_of_one_journal_blocking_direct() {
    suite("blocking+direct");
}

#[test]
fn openraft_suite_on_groups_of_one_journal_io_uring_direct() {
    suite("io_uring+direct");
}
