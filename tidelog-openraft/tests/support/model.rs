//! What the recovery tests check a store against (openraft 0.9): what a
//! store reports, a plain-map model of what it should hold, and the
//! entries and deterministic choices of their workloads. Shared by the
//! single-journal store's tests and the multi-group store's.

use std::collections::BTreeMap;

use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};

use super::kv::{Cmd, KvConfig, Set};

/// What a store reports: (last purged, last log id, vote, committed, every
/// entry as (log id, value)).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Observed {
    pub purged: Option<LogId<u64>>,
    pub last: Option<LogId<u64>>,
    pub vote: Option<Vote<u64>>,
    pub committed: Option<LogId<u64>>,
    pub entries: Vec<(LogId<u64>, String)>,
}

/// What `store` reports now.
pub async fn observe<S>(store: &mut S) -> Observed
where
    S: RaftLogStorage<KvConfig> + RaftLogReader<KvConfig>,
{
    let state = store.get_log_state().await.expect("log state");
    let entries = store.try_get_log_entries(..).await.expect("read entries");
    Observed {
        purged: state.last_purged_log_id,
        last: state.last_log_id,
        vote: store.read_vote().await.expect("vote"),
        committed: store.read_committed().await.expect("committed"),
        entries: entries
            .into_iter()
            .map(|e| match e.payload {
                EntryPayload::Normal(Cmd::Set(Set { value, .. })) => (e.log_id, value),
                other => panic!("unexpected payload {other:?}"),
            })
            .collect(),
    }
}

/// The reference a store is checked against: plain maps, one operation at
/// a time.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub entries: BTreeMap<u64, (LogId<u64>, String)>,
    pub purged: Option<LogId<u64>>,
    pub vote: Option<Vote<u64>>,
    pub committed: Option<LogId<u64>>,
    /// The index of the first entry of an empty, never purged log.
    pub start: u64,
}

impl Model {
    /// An empty model whose first entry gets `start`.
    pub fn starting_at(start: u64) -> Model {
        Model { start, ..Model::default() }
    }

    /// What a store holding exactly this model reports.
    pub fn observed(&self) -> Observed {
        Observed {
            purged: self.purged,
            last: self.entries.values().next_back().map(|(id, _)| *id).or(self.purged),
            vote: self.vote,
            committed: self.committed,
            entries: self.entries.values().cloned().collect(),
        }
    }

    /// The index the next appended entry gets.
    pub fn next_index(&self) -> u64 {
        self.entries.keys().next_back().map_or(self.purged.map_or(self.start, |p| p.index + 1), |i| i + 1)
    }
}

pub fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// An entry setting key `k<index>` to `value`.
pub fn entry(id: LogId<u64>, value: &str) -> Entry<KvConfig> {
    Entry {
        log_id: id,
        payload: EntryPayload::Normal(Cmd::Set(Set { key: format!("k{}", id.index), value: value.into() })),
    }
}

/// A small deterministic generator (the workloads must be reproducible).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}
