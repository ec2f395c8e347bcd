//! openraft's own storage test suite (`openraft::testing::Suite`) against
//! the tidelog log store, on every journal configuration.
#![cfg(feature = "openraft09")]

mod common;
mod support;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};
use support::kv::{KvConfig, KvStateMachine};
use tempfile::TempDir;
use tidelog::JournalOptions;
use tidelog_openraft::LogStore;

struct Builder {
    opts: JournalOptions,
}

impl StoreBuilder<KvConfig, LogStore<KvConfig>, KvStateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore<KvConfig>, KvStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path(), self.opts.clone()).await.map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, store, KvStateMachine::new()))
    }
}

fn suite(cell: &str) {
    let (_, opts) = common::cells().into_iter().find(|(name, _)| *name == cell).expect("a known cell");
    let probe = tokio::runtime::Runtime::new().expect("runtime");
    if let Some(why) = probe.block_on(common::unavailable(&opts)) {
        tidelog::testing::skip(common::capability(cell), &format!("openraft's storage suite, {cell}"), &why);
        return;
    }
    drop(probe);
    Suite::test_all(Builder { opts }).unwrap_or_else(|e| panic!("openraft's storage suite failed on {cell}: {e}"));
}

#[test]
fn openraft_suite_blocking() {
    suite("blocking");
}

#[test]
fn openraft_suite_io_uring() {
    suite("io_uring");
}

#[test]
fn openraft_suite_blocking_direct() {
    suite("blocking+direct");
}

#[test]
fn openraft_suite_io_uring_direct() {
    suite("io_uring+direct");
}
