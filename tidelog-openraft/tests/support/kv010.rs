//! The key-value application on openraft 0.10: its type config and an
//! in-memory state machine with snapshots (the same commands as `kv`).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use futures::{Stream, TryStreamExt};
use openraft010::storage::{EntryResponder, RaftStateMachine};
use openraft010::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft010::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

pub use super::cmd::{Cmd, Reply};

openraft010::declare_raft_types!(
    /// The key-value application's Raft types on openraft 0.10.
    pub KvConfig:
        D = Cmd,
        R = Reply,
);

type LogId = LogIdOf<KvConfig>;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Data {
    last_applied: Option<LogId>,
    membership: StoredMembershipOf<KvConfig>,
    map: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct SmInner {
    data: Data,
    snapshot: Option<(SnapshotMetaOf<KvConfig>, Vec<u8>)>,
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

    /// The index of the last applied entry.
    pub fn last_applied_index(&self) -> Option<u64> {
        self.lock().data.last_applied.as_ref().map(|id| id.index)
    }
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl RaftSnapshotBuilder<KvConfig> for KvStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<KvConfig, Vec<u8>>, io::Error> {
        let mut inner = self.lock();
        let bytes = bincode::serialize(&inner.data).map_err(invalid)?;
        let meta = SnapshotMetaOf::<KvConfig> {
            last_log_id: inner.data.last_applied,
            last_membership: inner.data.membership.clone(),
        };
        inner.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(SnapshotOf::<KvConfig, Vec<u8>> { meta, snapshot: bytes })
    }
}

impl RaftStateMachine<KvConfig> for KvStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembershipOf<KvConfig>), io::Error> {
        let inner = self.lock();
        Ok((inner.data.last_applied, inner.data.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<KvConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let reply = {
                let mut inner = self.lock();
                inner.data.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Reply::default(),
                    EntryPayload::Normal(cmd) => super::cmd::apply(&mut inner.data.map, &cmd),
                    EntryPayload::Membership(m) => {
                        inner.data.membership = StoredMembershipOf::<KvConfig>::new(Some(entry.log_id), m);
                        Reply::default()
                    }
                }
            };
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<KvConfig>, snapshot: Vec<u8>) -> Result<(), io::Error> {
        let data: Data = bincode::deserialize(&snapshot).map_err(invalid)?;
        let mut inner = self.lock();
        inner.data = data;
        inner.snapshot = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<KvConfig, Vec<u8>>>, io::Error> {
        let inner = self.lock();
        Ok(inner
            .snapshot
            .as_ref()
            .map(|(meta, bytes)| SnapshotOf::<KvConfig, Vec<u8>> { meta: meta.clone(), snapshot: bytes.clone() }))
    }
}

#[derive(Debug, Default)]
struct MemInner {
    log: BTreeMap<u64, openraft010::type_config::alias::EntryOf<KvConfig>>,
    purged: Option<LogId>,
    vote: Option<openraft010::type_config::alias::VoteOf<KvConfig>>,
    committed: Option<LogId>,
}

/// A log store that keeps everything in memory and acknowledges appends at
/// once: nothing is durable. The upper bound a durable store is measured
/// against.
#[derive(Clone, Debug, Default)]
pub struct MemLogStore {
    inner: Arc<Mutex<MemInner>>,
}

impl MemLogStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

mod mem {
    use std::fmt::Debug;
    use std::io;
    use std::ops::RangeBounds;

    use openraft010::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
    use openraft010::type_config::alias::{EntryOf, VoteOf};
    use openraft010::OptionalSend;

    use super::{KvConfig, LogId, MemLogStore};

    impl RaftLogReader<KvConfig> for MemLogStore {
        async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
            &mut self,
            range: RB,
        ) -> Result<Vec<EntryOf<KvConfig>>, io::Error> {
            Ok(self.lock().log.range(range).map(|(_, e)| e.clone()).collect())
        }

        async fn read_vote(&mut self) -> Result<Option<VoteOf<KvConfig>>, io::Error> {
            Ok(self.lock().vote)
        }
    }

    impl RaftLogStorage<KvConfig> for MemLogStore {
        type LogReader = Self;

        async fn get_log_state(&mut self) -> Result<LogState<KvConfig>, io::Error> {
            let inner = self.lock();
            let last = inner.log.values().next_back().map(|e| e.log_id).or(inner.purged);
            Ok(LogState { last_purged_log_id: inner.purged, last_log_id: last })
        }

        async fn get_log_reader(&mut self) -> Self::LogReader {
            self.clone()
        }

        async fn save_vote(&mut self, vote: &VoteOf<KvConfig>) -> Result<(), io::Error> {
            self.lock().vote = Some(*vote);
            Ok(())
        }

        async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
            self.lock().committed = committed;
            Ok(())
        }

        async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
            Ok(self.lock().committed)
        }

        async fn append<I>(&mut self, entries: I, callback: IOFlushed<KvConfig>) -> Result<(), io::Error>
        where
            I: IntoIterator<Item = EntryOf<KvConfig>> + OptionalSend,
            I::IntoIter: OptionalSend,
        {
            {
                let mut inner = self.lock();
                for entry in entries {
                    inner.log.insert(entry.log_id.index, entry);
                }
            }
            callback.io_completed(Ok(()));
            Ok(())
        }

        async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
            let from = last.map_or(0, |id| id.index + 1);
            self.lock().log.split_off(&from);
            Ok(())
        }

        async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
            let mut inner = self.lock();
            let kept = inner.log.split_off(&(log_id.index + 1));
            inner.log = kept;
            inner.purged = Some(log_id);
            Ok(())
        }
    }
}
