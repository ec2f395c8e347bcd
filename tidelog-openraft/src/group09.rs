//! openraft 0.9's `RaftLogStorage` and `RaftLogReader` for one group of a
//! [`MultiLog`], on the version-independent group core: this file only
//! translates calls and errors.

use std::fmt::{self, Debug};
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, RaftTypeConfig, StorageError, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidelog::Streams;

use crate::core::group::{GroupCore, GroupReader as CoreReader};
use crate::core::Error;
use crate::v09::{failed, V09};
use crate::MultiLog;

/// openraft 0.9's `RaftLogStorage` for one Raft group of a [`MultiLog`]:
/// the group's log is one stream of the shared journal, its vote, committed
/// and purged log ids the stream's metadata.
pub struct GroupStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    core: GroupCore<V09<C>, LogFlushed<C>>,
}

impl<C> Debug for GroupStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl<C> GroupStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    /// Opens the store of `group` (creating the group on first use) and
    /// rebuilds its state. One store per group at a time: a second open
    /// of the same group fails until the first store is dropped.
    pub async fn open(multi: &MultiLog, group: u64) -> Result<Self, Error> {
        Ok(GroupStore { core: GroupCore::open(multi, group).await? })
    }

    /// Whether `save_committed` waits for durability (the default) or only
    /// for the metadata to be written, riding the next sync.
    pub fn sync_committed(mut self, on: bool) -> Self {
        self.core.set_sync_committed(on);
        self
    }

    /// The group's id: its stream.
    pub fn group(&self) -> u64 {
        self.core.group()
    }

    /// The shared streams (for the journal's statistics). Do not write to
    /// this group's stream.
    pub fn streams(&self) -> &Streams {
        self.core.streams()
    }
}

/// A reader of one group's live entries: what openraft's replication
/// streams use.
pub struct GroupReader<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    inner: CoreReader<V09<C>>,
}

impl<C> Debug for GroupReader<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

async fn entries<C, RB>(reader: &CoreReader<V09<C>>, range: RB) -> Result<Vec<C::Entry>, StorageError<C::NodeId>>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    RB: RangeBounds<u64>,
{
    reader.entries(range).await.map_err(|e| failed(ErrorSubject::Logs, ErrorVerb::Read, e))
}

crate::v09::impl_log_storage!(GroupStore, GroupReader, .await);
