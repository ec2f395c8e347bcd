//! A small key-value application for tests, the example and the benchmark:
//! its type config, an in-memory state machine with snapshots, and an
//! in-memory log store (the upper bound a durable store is compared with).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogId, RaftLogReader, RaftSnapshotBuilder, RaftTypeConfig,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

pub use super::cmd::{Cmd, Reply, Set};

openraft::declare_raft_types!(
    /// The key-value application's Raft types.
    pub KvConfig:
        D = Cmd,
        R = Reply,
);

type Nid = <KvConfig as RaftTypeConfig>::NodeId;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Data {
    last_applied: Option<LogId<Nid>>,
    membership: StoredMembership<Nid, BasicNode>,
    map: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct SmInner {
    data: Data,
    snapshot: Option<(SnapshotMeta<Nid, BasicNode>, Vec<u8>)>,
    built: u64,
}

/// The key-value state machine, in memory (a restarted node rebuilds it by
/// re-applying its log).
#[derive(Clone, Debug, Default)]
pub struct KvStateMachine {
    inner: Arc<Mutex<SmInner>>,
}

impl KvStateMachine {
    /// A fresh, empty state machine.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key`, as applied so far.
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().data.map.get(key).cloned()
    }

    /// Every key and value, as applied so far.
    pub fn contents(&self) -> BTreeMap<String, String> {
        self.lock().data.map.clone()
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId<Nid>> {
        self.lock().data.last_applied
    }
}

impl RaftSnapshotBuilder<KvConfig> for KvStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<KvConfig>, StorageError<Nid>> {
        let mut inner = self.lock();
        let bytes = bincode::serialize(&inner.data).map_err(|e| StorageIOError::read_state_machine(&e))?;
        inner.built += 1;
        let snapshot_id = match &inner.data.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, inner.built),
            None => format!("--{}", inner.built),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.data.last_applied,
            last_membership: inner.data.membership.clone(),
            snapshot_id,
        };
        inner.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<KvConfig> for KvStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<Nid>>, StoredMembership<Nid, BasicNode>), StorageError<Nid>> {
        let inner = self.lock();
        Ok((inner.data.last_applied, inner.data.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError<Nid>>
    where
        I: IntoIterator<Item = Entry<KvConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for entry in entries {
            inner.data.last_applied = Some(entry.log_id);
            out.push(match entry.payload {
                EntryPayload::Blank => Reply::default(),
                EntryPayload::Normal(cmd) => super::cmd::apply(&mut inner.data.map, &cmd),
                EntryPayload::Membership(m) => {
                    inner.data.membership = StoredMembership::new(Some(entry.log_id), m);
                    Reply::default()
                }
            });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<Nid>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<Nid, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<Nid>> {
        let bytes = snapshot.into_inner();
        let data: Data =
            bincode::deserialize(&bytes).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut inner = self.lock();
        inner.data = data;
        inner.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<KvConfig>>, StorageError<Nid>> {
        let inner = self.lock();
        Ok(inner
            .snapshot
            .as_ref()
            .map(|(meta, bytes)| Snapshot { meta: meta.clone(), snapshot: Box::new(Cursor::new(bytes.clone())) }))
    }
}

#[derive(Debug)]
struct MemInner<C: RaftTypeConfig> {
    log: BTreeMap<u64, C::Entry>,
    purged: Option<LogId<C::NodeId>>,
    vote: Option<Vote<C::NodeId>>,
    committed: Option<LogId<C::NodeId>>,
}

/// A log store that keeps everything in memory and acknowledges appends at
/// once: nothing is durable. It is the upper bound a durable store is
/// measured against (what openraft's own in-memory store does).
#[derive(Debug)]
pub struct MemLogStore<C: RaftTypeConfig> {
    inner: Arc<Mutex<MemInner<C>>>,
}

impl<C: RaftTypeConfig> Clone for MemLogStore<C> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<C: RaftTypeConfig> Default for MemLogStore<C> {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(MemInner { log: BTreeMap::new(), purged: None, vote: None, committed: None })),
        }
    }
}

impl<C: RaftTypeConfig> MemLogStore<C> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner<C>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<C: RaftTypeConfig> RaftLogReader<C> for MemLogStore<C>
where
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        Ok(self.lock().log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for MemLogStore<C>
where
    C::Entry: Clone,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let inner = self.lock();
        let last = inner.log.values().next_back().map(|e| e.get_log_id().clone()).or_else(|| inner.purged.clone());
        Ok(LogState { last_purged_log_id: inner.purged.clone(), last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.lock().vote = Some(vote.clone());
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.lock().vote.clone())
    }

    async fn save_committed(&mut self, committed: Option<LogId<C::NodeId>>) -> Result<(), StorageError<C::NodeId>> {
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.lock().committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = self.lock();
            for entry in entries {
                inner.log.insert(entry.get_log_id().index, entry);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.lock().log.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut inner = self.lock();
        let kept = inner.log.split_off(&(log_id.index + 1));
        inner.log = kept;
        inner.purged = Some(log_id);
        Ok(())
    }
}
