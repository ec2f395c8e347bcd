//! Crash states of a journal shared by several groups: a workload of
//! interleaved operations on three groups runs on one journal that stays
//! in one segment; then, for every operation boundary, a copy of the
//! segment cut there (the bytes after it zeroed, as unused space reads) is
//! opened, and every group must hold exactly the state the operations
//! before the cut left. A cut inside an operation's last frame (torn) must
//! leave every group in the state before or after that operation, nothing
//! else: a purge whose truncation was torn is finished on open, an append
//! is all or none. On both substrates, and with direct I/O where allowed.
#![cfg(feature = "openraft09")]

mod common;
mod support;

use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
use support::kv::{Cmd, KvConfig, Set};
use tidelog_openraft::{GroupStore, MultiLog};

type Store = GroupStore<KvConfig>;
type Observed = (Option<LogId<u64>>, Option<LogId<u64>>, Option<Vote<u64>>, Option<LogId<u64>>, Vec<LogId<u64>>);

const GROUPS: [u64; 3] = [2, 40, 41];
const OPS: usize = 90;
/// The segment header's length (`docs/format.md`): the frame at LSN `x`
/// of the segment based at `B` lies at offset `4096 + (x - B)`.
const HEADER_LEN: u64 = 4096;
/// How far before an operation's end a torn crash cuts.
const TORN_BACK: u64 = 9;

async fn observe(store: &mut Store) -> Observed {
    let state = store.get_log_state().await.expect("log state");
    let entries = store.try_get_log_entries(..).await.expect("read entries");
    (
        state.last_purged_log_id,
        state.last_log_id,
        store.read_vote().await.expect("vote"),
        store.read_committed().await.expect("committed"),
        entries.into_iter().map(|e| e.log_id).collect(),
    )
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(id: LogId<u64>) -> Entry<KvConfig> {
    let set = Set { key: format!("k{}", id.index), value: format!("v{}", id.index) };
    Entry { log_id: id, payload: EntryPayload::Normal(Cmd::Set(set)) }
}

/// One operation on `store`, chosen by `pick`; `term` and `next` track
/// the group's Raft term and next index.
async fn operate(store: &mut Store, pick: u64, term: &mut u64, next: &mut u64) {
    let (purged, last) = {
        let s = store.get_log_state().await.expect("state");
        (s.last_purged_log_id, s.last_log_id)
    };
    let first = purged.map_or(0, |p| p.index + 1);
    match pick % 8 {
        0 => {
            *term += 1;
            store.save_vote(&Vote::new_committed(*term, 1)).await.expect("vote");
        }
        1 => store.save_committed(last).await.expect("committed"),
        2 if *next > first + 2 => {
            let at = *next - 1 - pick % 2;
            store.truncate(log_id(*term, at)).await.expect("truncate");
            *next = at;
            *term += 1;
        }
        3 if *next > first + 3 => {
            let upto = first + pick % 3;
            store.purge(log_id(*term, upto)).await.expect("purge");
        }
        4 if pick % 3 == 0 => {
            // A snapshot installed past the log's end.
            let upto = *next + pick % 4;
            store.purge(log_id(*term, upto)).await.expect("purge past the end");
            *next = upto + 1;
        }
        _ => {
            let n = 1 + pick % 4;
            store.blocking_append((*next..*next + n).map(|i| entry(log_id(*term, i)))).await.expect("append");
            *next += n;
        }
    }
}

/// The one segment of the journal in `dir`: (path, base LSN).
fn segment(dir: &Path) -> (PathBuf, u64) {
    let mut found: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| {
            let path = e.expect("entry").path();
            let name = path.file_name()?.to_str()?.strip_suffix(".tlog")?.to_string();
            Some((path, name.parse().ok()?))
        })
        .collect();
    assert_eq!(found.len(), 1, "the workload must stay in one segment: {found:?}");
    found.pop().expect("one segment")
}

/// A copy of the journal in `dir` as a crash at `lsn` would leave it.
fn crash_copy(dir: &Path, lsn: u64) -> tempfile::TempDir {
    let (path, base) = segment(dir);
    let mut bytes = std::fs::read(&path).expect("read the segment");
    let cut = usize::try_from(HEADER_LEN + (lsn - base)).expect("offset");
    bytes[cut..].fill(0);
    let copy = tempfile::tempdir().expect("tempdir");
    std::fs::write(copy.path().join(path.file_name().expect("name")), bytes).expect("write the copy");
    copy
}

async fn observe_all(dir: &Path, opts: tidelog::JournalOptions) -> Vec<Observed> {
    let multi = MultiLog::open(dir, opts).await.expect("open the crash state");
    let mut out = Vec::new();
    for g in GROUPS {
        let mut store = Store::open(&multi, g).await.expect("open a group");
        out.push(observe(&mut store).await);
    }
    multi.close().await.expect("close");
    out
}

#[test]
fn a_crash_at_any_operation_boundary_recovers_every_group_exactly() {
    common::each_cell(|cell, opts| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let multi = MultiLog::open(dir.path(), opts.clone()).await.expect("open");
        let mut stores = Vec::new();
        for g in GROUPS {
            stores.push(Store::open(&multi, g).await.expect("open a group"));
        }
        let journal = multi.streams().journal().clone();
        let (mut terms, mut nexts) = ([1u64; 3], [0u64; 3]);
        // (boundary LSN, every group's state) after each operation.
        let mut after = Vec::new();
        let mut now = Vec::new();
        for s in &mut stores {
            now.push(observe(s).await);
        }
        after.push((journal.next_lsn().as_u64(), now));
        let mut pick = 17u64;
        for op in 0..OPS {
            pick = pick.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let g = op % GROUPS.len();
            operate(&mut stores[g], pick >> 33, &mut terms[g], &mut nexts[g]).await;
            let mut now = Vec::new();
            for s in &mut stores {
                now.push(observe(s).await);
            }
            after.push((journal.next_lsn().as_u64(), now));
        }
        drop(stores);
        multi.close().await.expect("close");

        for k in 0..after.len() {
            let (lsn, want) = &after[k];
            let copy = crash_copy(dir.path(), *lsn);
            let got = observe_all(copy.path(), opts.clone()).await;
            assert_eq!(&got, want, "{cell}: a crash after operation {k} of {OPS}");
            // Frames are padded to 8 bytes: 9 bytes short of the boundary
            // lies inside the operation's last frame (or, with direct I/O,
            // inside the padding frame a write may end with).
            if k > 0 && *lsn >= after[k - 1].0 + TORN_BACK {
                let torn = crash_copy(dir.path(), *lsn - TORN_BACK);
                let got = observe_all(torn.path(), opts.clone()).await;
                assert!(
                    got == after[k - 1].1 || got == *want,
                    "{cell}: a crash tearing operation {k}'s last frame left a state of neither side: {got:?}"
                );
            }
        }
    });
}
