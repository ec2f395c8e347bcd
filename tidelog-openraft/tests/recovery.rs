//! Recovery: the log state a store rebuilds from its journal is exactly the
//! state its acknowledged operations left — after a clean close, after a
//! crash at every record boundary, and after purges that deleted segments.
//! Every test runs on both substrates, and with direct I/O where allowed.
#![cfg(feature = "openraft09")]

mod common;
mod support;

use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::Vote;
use support::kv::KvConfig;
use support::model::{entry, log_id, observe, Lcg, Model, Observed};
use tidelog::{Journal, JournalOptions, JournalReader, Lsn};
use tidelog_openraft::LogStore;

type Store = LogStore<KvConfig>;

/// Runs a mixed workload of `ops` operations on `store`, checking each
/// acknowledgement against the journal, and returns the model together
/// with the expected observation after every record the store wrote
/// (`after[k]`: the state once the first `k` records exist).
async fn workload(store: &mut Store, ops: usize, value_len: usize, seed: u64) -> (Model, Vec<Observed>) {
    let mut rng = Lcg(seed);
    // This store's log starts at index 1.
    let mut model = Model::starting_at(1);
    // Record 0 is the format record: no state yet.
    let mut after = vec![Observed::default(), Observed::default()];
    let mut term = 1;
    for op in 0..ops {
        match rng.below(10) {
            0 => {
                term += 1;
                let vote = Vote::new_committed(term, 1);
                store.save_vote(&vote).await.expect("save_vote");
                model.vote = Some(vote);
                after.push(model.observed());
            }
            1 => {
                let last = model.entries.values().next_back().map(|(id, _)| *id);
                store.save_committed(last).await.expect("save_committed");
                model.committed = last;
                after.push(model.observed());
            }
            2 if model.entries.len() > 2 => {
                let first = *model.entries.keys().next().expect("entries");
                let since = first + 1 + rng.below(model.entries.len() as u64 - 1);
                let id = model.entries[&since].0;
                store.truncate(id).await.expect("truncate");
                model.entries.split_off(&since);
                term += 1;
                after.push(model.observed());
            }
            3 if model.entries.len() > 4 => {
                let first = *model.entries.keys().next().expect("entries");
                let upto = first + rng.below(model.entries.len() as u64 / 2);
                let id = model.entries[&upto].0;
                store.purge(id).await.expect("purge");
                model.entries = model.entries.split_off(&(upto + 1));
                model.purged = Some(id);
                after.push(model.observed());
            }
            _ => {
                let n = 1 + rng.below(6);
                let start = model.next_index();
                let batch: Vec<_> = (start..start + n)
                    .map(|i| {
                        let mut value = format!("op{op}-i{i}-");
                        value.extend(std::iter::repeat_n('v', value_len));
                        (log_id(term, i), value)
                    })
                    .collect();
                store
                    .blocking_append(batch.iter().map(|(id, v)| entry(*id, v)).collect::<Vec<_>>())
                    .await
                    .expect("append");
                // The callback has fired: everything appended is durable.
                let journal = store.journal();
                assert!(
                    journal.durable_lsn() >= journal.next_lsn(),
                    "append acknowledged at durable {:?} before its records (to {:?}) were durable",
                    journal.durable_lsn(),
                    journal.next_lsn()
                );
                for (id, v) in batch {
                    model.entries.insert(id.index, (id, v));
                    after.push(model.observed());
                }
            }
        }
    }
    (model, after)
}

/// Closes the store's journal cleanly (the store itself is dropped).
async fn close(store: Store) {
    let journal = store.journal().clone();
    drop(store);
    journal.close().await.expect("close");
}

#[test]
fn a_reopened_store_has_exactly_the_state_its_operations_left() {
    common::each_cell(|cell, opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path(), opts.clone()).await.expect("open");
        let (model, _) = workload(&mut store, 300, 40, 7).await;
        let before = observe(&mut store).await;
        assert_eq!(before, model.observed(), "{cell}: the live store disagrees with the model");
        assert!(
            model.purged.is_some() && !model.entries.is_empty(),
            "{cell}: the workload must purge and keep entries"
        );
        close(store).await;

        let mut reopened = Store::open(dir.path(), opts).await.expect("reopen");
        assert_eq!(observe(&mut reopened).await, model.observed(), "{cell}: the reopened store lost or invented state");
        close(reopened).await;
    });
}

/// All records of the (closed) journal in `dir`, in order.
fn records(dir: &Path) -> Vec<Vec<u8>> {
    let journal = JournalReader::open(dir).expect("open the journal offline");
    let mut reader = journal.reader(Lsn::ZERO).expect("reader");
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().expect("read") {
        out.push(r.into_payload());
    }
    out
}

#[test]
fn a_crash_after_any_record_recovers_the_state_of_that_prefix() {
    common::each_cell(|cell, opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path(), opts.clone()).await.expect("open");
        let (_, after) = workload(&mut store, 60, 8, 11).await;
        close(store).await;
        let all = records(dir.path());
        assert_eq!(all.len() + 1, after.len(), "{cell}: one expected state per record (and one for none)");

        // tidelog recovers a prefix of the records after any crash (that is
        // its own crash-state suite's claim); here every prefix is rebuilt
        // into a journal of its own and opened as the store.
        for k in 0..=all.len() {
            let copy = tempfile::tempdir().expect("tempdir");
            let journal = Journal::open(copy.path(), opts.clone()).await.expect("open the prefix journal");
            if k > 0 {
                journal.append_batch_async(&all[..k]).await.expect("copy the prefix");
            }
            let mut store = Store::with_journal(journal).await.expect("open the store on the prefix");
            let got = observe(&mut store).await;
            assert_eq!(got, after[k], "{cell}: a crash after {k} of {} records recovers the wrong state", all.len());
            close(store).await;
        }
    });
}

#[test]
fn purged_segments_are_deleted_and_the_vote_survives_them() {
    common::each_cell(|cell, opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path(), opts.clone()).await.expect("open");
        let vote = Vote::new_committed(3, 1);
        store.save_vote(&vote).await.expect("vote");
        let value: String = std::iter::repeat_n('x', 4000).collect();
        // 12 MB: more than the store keeps cached, so reads below mix the
        // cache with the segment files.
        for chunk in (1..=3000u64).collect::<Vec<_>>().chunks(50) {
            let batch: Vec<_> = chunk.iter().map(|&i| entry(log_id(3, i), &value)).collect();
            store.blocking_append(batch).await.expect("append");
        }
        store.save_committed(Some(log_id(3, 3000))).await.expect("committed");
        let all = observe(&mut store).await.entries;
        assert_eq!(all.len(), 3000, "{cell}: every entry reads back");
        for (i, (id, v)) in all.iter().enumerate() {
            assert_eq!((id.index, v.as_str()), (i as u64 + 1, value.as_str()), "{cell}: entry {}", i + 1);
        }
        let segments_before = segment_files(store.journal());
        store.purge(log_id(3, 2500)).await.expect("purge");
        let segments_after = segment_files(store.journal());
        assert!(
            segments_after < segments_before,
            "{cell}: purging 2500 of 3000 4 KB entries deleted no segment ({segments_before} → {segments_after})"
        );
        close(store).await;

        let mut reopened = Store::open(dir.path(), opts).await.expect("reopen");
        let got = observe(&mut reopened).await;
        assert_eq!(got.vote, Some(vote), "{cell}: the vote's own record was deleted; the purge record must carry it");
        assert_eq!(got.committed, Some(log_id(3, 3000)), "{cell}");
        assert_eq!(got.purged, Some(log_id(3, 2500)), "{cell}");
        let indexes: Vec<u64> = got.entries.iter().map(|(id, _)| id.index).collect();
        assert_eq!(indexes, (2501..=3000).collect::<Vec<_>>(), "{cell}: the entries after the purge point");
        close(reopened).await;
    });
}

/// Segment files (`<base>.tlog`) in the journal's directory.
fn segment_files(journal: &Journal) -> usize {
    std::fs::read_dir(journal.dir())
        .expect("list")
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tlog")))
        .count()
}

#[test]
fn a_journal_this_crate_did_not_write_is_refused_naming_path_and_lsn() {
    common::each_cell(|cell, opts: JournalOptions| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path(), opts.clone()).await.expect("open");
        let lsn = journal.append_durable_async(b"hello, not a raft record").await.expect("append");
        journal.close().await.expect("close");
        let err = Store::open(dir.path(), opts).await.expect_err("a foreign record must be refused");
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.path().display().to_string()) && msg.contains(&lsn.as_u64().to_string()),
            "{cell}: the error must name the directory and LSN: {msg}"
        );
        assert!(msg.contains("unknown record tag"), "{cell}: {msg}");
    });
}
