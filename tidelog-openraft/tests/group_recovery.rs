//! Recovery of the multi-group store: after a reopen every group of the
//! shared journal has exactly the state its acknowledged operations left
//! (vote, committed, purged, entries), whatever the other groups did
//! meanwhile; a purge a crash cut short is finished on open; purged groups
//! give segments back. Every test runs on both substrates, and with direct
//! I/O where allowed.
#![cfg(feature = "openraft09")]

mod common;
mod support;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{LogId, Vote};
use support::kv::KvConfig;
use support::model::{entry, log_id, observe, Lcg, Model, Observed};
use tidelog_openraft::{Error, GroupStore, MultiLog};

type Store = GroupStore<KvConfig>;

/// Runs a mixed workload of `ops` operations on `store` (votes, commits,
/// conflicting suffixes, purges inside and past the log, appends),
/// checking that each append's callback fired only once its entries were
/// durable, and returns the model of what it left.
async fn workload(mut store: Store, ops: usize, seed: u64) -> (Store, Model) {
    let mut rng = Lcg(seed);
    let mut model = Model::default();
    let mut term = 1;
    for op in 0..ops {
        match rng.below(12) {
            0 => {
                term += 1;
                let vote = Vote::new_committed(term, 1);
                store.save_vote(&vote).await.expect("save_vote");
                model.vote = Some(vote);
            }
            1 => {
                let last = model.entries.values().next_back().map(|(id, _)| *id);
                store.save_committed(last).await.expect("save_committed");
                model.committed = last;
            }
            2 if model.entries.len() > 2 => {
                let first = *model.entries.keys().next().expect("entries");
                let since = first + 1 + rng.below(model.entries.len() as u64 - 1);
                store.truncate(model.entries[&since].0).await.expect("truncate");
                model.entries.split_off(&since);
                term += 1;
            }
            3 if model.entries.len() > 4 => {
                let first = *model.entries.keys().next().expect("entries");
                let upto = first + rng.below(model.entries.len() as u64 / 2);
                let id = model.entries[&upto].0;
                store.purge(id).await.expect("purge");
                model.entries = model.entries.split_off(&(upto + 1));
                model.purged = Some(id);
            }
            4 => {
                // A snapshot installed: the purge point lies past the log.
                let id = log_id(term, model.next_index() + rng.below(5));
                store.purge(id).await.expect("purge past the end");
                model.entries.clear();
                model.purged = Some(id);
            }
            _ => {
                let n = 1 + rng.below(6);
                let start = model.next_index();
                let batch: Vec<_> = (start..start + n).map(|i| (log_id(term, i), format!("op{op}-i{i}"))).collect();
                store
                    .blocking_append(batch.iter().map(|(id, v)| entry(*id, v)).collect::<Vec<_>>())
                    .await
                    .expect("append");
                // The callback has fired: the last entry's frame (Raft index
                // i is stream index i + 1) must be durable.
                let streams = store.streams().clone();
                let last = streams.read_async(store.group(), start + n, 1).await.expect("read back");
                let (lsn, durable) = (last[0].lsn(), streams.journal().durable_lsn());
                assert!(durable >= lsn, "an append was acknowledged at durable {durable:?} before its end {lsn:?}");
                for (id, v) in batch {
                    model.entries.insert(id.index, (id, v));
                }
            }
        }
    }
    (store, model)
}

#[test]
fn every_group_of_a_reopened_journal_has_exactly_the_state_its_operations_left() {
    common::each_cell(|cell, opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let multi = MultiLog::open(dir.path(), opts.clone()).await.expect("open");
        let groups = [3u64, 7, 1 << 40, u64::MAX];
        let mut runs = Vec::new();
        for (k, &g) in groups.iter().enumerate() {
            let store = Store::open(&multi, g).await.expect("open a group");
            runs.push(tokio::spawn(workload(store, 250, 7 + k as u64)));
        }
        let mut models = Vec::new();
        for run in runs {
            let (mut store, model) = run.await.expect("workload");
            assert_eq!(
                observe(&mut store).await,
                model.observed(),
                "{cell}: group {} disagrees with its model",
                store.group()
            );
            assert!(model.purged.is_some(), "{cell}: the workload must purge");
            models.push(model);
        }
        multi.close().await.expect("close");

        let multi = MultiLog::open(dir.path(), opts).await.expect("reopen");
        assert_eq!(multi.groups(), groups.to_vec(), "{cell}: the groups after a reopen");
        for (&g, model) in groups.iter().zip(&models) {
            let mut store = Store::open(&multi, g).await.expect("reopen a group");
            assert_eq!(observe(&mut store).await, model.observed(), "{cell}: group {g} lost or invented state");
            // And it goes on where it stopped.
            let next = model.next_index();
            store.blocking_append([entry(log_id(99, next), "after")]).await.expect("append after a reopen");
            assert_eq!(store.get_log_state().await.expect("state").last_log_id, Some(log_id(99, next)), "{cell}");
        }
        multi.close().await.expect("close");
    });
}

/// Group metadata as the store writes it (docs/replication.md, "Many
/// groups on one journal"): a layout byte, then bincode of (format, vote,
/// committed, purged).
fn meta(vote: Option<Vote<u64>>, committed: Option<LogId<u64>>, purged: Option<LogId<u64>>) -> Vec<u8> {
    let mut v = vec![1u8];
    let body = (b"tidelog-openraft/1".to_vec(), vote, committed, purged);
    bincode::serialize_into(&mut v, &body).expect("encode");
    v
}

#[test]
fn a_purge_cut_short_by_a_crash_is_finished_on_open() {
    common::each_cell(|cell, opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let multi = MultiLog::open(dir.path(), opts.clone()).await.expect("open");
        let mut store = Store::open(&multi, 9).await.expect("open a group");
        let batch: Vec<_> = (0..10).map(|i| entry(log_id(1, i), "v")).collect();
        store.blocking_append(batch).await.expect("append");
        drop(store);
        // The purge's metadata reached the disk, its truncation did not.
        let vote = Some(Vote::new_committed(1, 1));
        multi.streams().set_meta(9, &meta(vote, None, Some(log_id(1, 6)))).await.expect("set_meta");
        multi.close().await.expect("close");

        let multi = MultiLog::open(dir.path(), opts).await.expect("reopen");
        let mut store = Store::open(&multi, 9).await.expect("open the group");
        let got = observe(&mut store).await;
        assert_eq!((got.vote, got.purged, got.last), (vote, Some(log_id(1, 6)), Some(log_id(1, 9))), "{cell}");
        let indexes: Vec<u64> = got.entries.iter().map(|(id, _)| id.index).collect();
        assert_eq!(indexes, vec![7, 8, 9], "{cell}: the entries the purge dropped are gone");
        assert_eq!(multi.streams().info(9).expect("stream").first, 8, "{cell}: Raft index 7 is stream index 8");
        drop(store);
        multi.close().await.expect("close");
    });
}

#[test]
fn purged_groups_give_segments_back() {
    common::each_cell(|cell, opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let multi = MultiLog::open(dir.path(), opts.clone()).await.expect("open");
        let value: String = std::iter::repeat_n('x', 4000).collect();
        let mut stores = Vec::new();
        for g in 1..=4 {
            stores.push(Store::open(&multi, g).await.expect("open a group"));
        }
        for chunk in (0..500u64).collect::<Vec<_>>().chunks(25) {
            for store in &mut stores {
                let batch: Vec<_> = chunk.iter().map(|&i| entry(log_id(1, i), &value)).collect();
                store.blocking_append(batch).await.expect("append");
            }
        }
        for store in &mut stores {
            store.purge(log_id(1, 449)).await.expect("purge");
        }
        let report = multi.streams().purge().await.expect("purge segments");
        // A background purge may have run first: count the files left.
        let files = segment_files(dir.path());
        assert!(
            files <= 4,
            "{cell}: 8 MB written, 50 of 500 entries kept per group, yet {files} segments remain ({report:?})"
        );
        for store in &mut stores {
            let got = observe(store).await;
            assert_eq!(got.entries.len(), 50, "{cell}: group {}", store.group());
            assert!(got.entries.iter().all(|(_, v)| *v == value), "{cell}: group {}", store.group());
        }
        drop(stores);
        multi.close().await.expect("close");
        let multi = MultiLog::open(dir.path(), opts).await.expect("reopen");
        let mut store = Store::open(&multi, 3).await.expect("open a group");
        let got = observe(&mut store).await;
        assert_eq!((got.purged, got.entries.len()), (Some(log_id(1, 449)), 50), "{cell}");
        drop(store);
        multi.close().await.expect("close");
    });
}

/// Segment files (`<base>.tlog`) in a journal's directory.
fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("list")
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tlog")))
        .count()
}

#[test]
fn a_group_has_one_store_at_a_time_and_is_removed_for_good() {
    common::in_cell("blocking", |opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let multi = MultiLog::open(dir.path(), opts).await.expect("open");
        let mut store = Store::open(&multi, 4).await.expect("open a group");
        store.save_vote(&Vote::new_committed(2, 1)).await.expect("vote");
        let err = Store::open(&multi, 4).await.expect_err("a second store of one group");
        assert!(matches!(err, Error::Group { group: 4, .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()), "names the directory: {err}");
        assert!(multi.remove_group(4).await.is_err(), "a group with a store open is not removed");
        drop(store);
        multi.remove_group(4).await.expect("remove");
        let mut store = Store::open(&multi, 4).await.expect("open it anew");
        assert_eq!(observe(&mut store).await, Observed::default(), "a removed group starts empty");
        drop(store);
        multi.close().await.expect("close");
    });
}
