//! openraft 0.10's own storage test suite (`openraft::testing::log::Suite`)
//! against the tidelog log store, on every journal configuration; and a
//! journal of the 0.9 store refused by the 0.10 one (their entries' serde
//! shapes are each version's own).
#![cfg(feature = "openraft010")]

mod common;
mod support;

use openraft010::testing::log::{StoreBuilder, Suite};
use openraft010::{ErrorSubject, ErrorVerb, StorageError};
use support::kv010::{KvConfig, KvStateMachine};
use tempfile::TempDir;
use tidelog::JournalOptions;
use tidelog_openraft::v010::LogStore;

struct Builder {
    opts: JournalOptions,
}

impl StoreBuilder<KvConfig, LogStore<KvConfig>, KvStateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore<KvConfig>, KvStateMachine), StorageError<KvConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path(), self.opts.clone()).await.map_err(|e| {
            StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, std::io::Error::other(e))
        })?;
        Ok((dir, store, KvStateMachine::new()))
    }
}

fn suite(cell: &str) {
    common::in_cell(cell, |opts| async move {
        Suite::test_all(Builder { opts })
            .await
            .unwrap_or_else(|e| panic!("openraft 0.10's suite failed on {cell}: {e}"));
    });
}

#[test]
fn openraft010_suite_blocking() {
    suite("blocking");
}

#[test]
fn openraft010_suite_io_uring() {
    suite("io_uring");
}

#[test]
fn openraft010_suite_blocking_direct() {
    suite("blocking+direct");
}

#[test]
fn openraft010_suite_io_uring_direct() {
    suite("io_uring+direct");
}

#[cfg(feature = "openraft09")]
#[test]
fn a_journal_of_the_09_store_is_refused_by_the_010_store() {
    common::in_cell("blocking", |opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = tidelog_openraft::LogStore::<support::kv::KvConfig>::open(dir.path(), opts.clone())
            .await
            .expect("open the 0.9 store");
        let journal = old.journal().clone();
        drop(old);
        journal.close().await.expect("close");
        let err = LogStore::<KvConfig>::open(dir.path(), opts).await.expect_err("another version's journal");
        let msg = err.to_string();
        assert!(msg.contains("tidelog-openraft/1") && msg.contains("openraft-0.10"), "names both formats: {msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "names the directory: {msg}");
    });
}
