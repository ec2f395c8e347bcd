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
