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

impl<C> RaftLogReader<C> for GroupReader<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        entries(&self.inner, range).await
    }
}

impl<C> RaftLogReader<C> for GroupStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        entries(&self.core.reader(), range).await
    }
}

impl<C> RaftLogStorage<C> for GroupStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = GroupReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let (last_purged_log_id, last_log_id) = self.core.log_state();
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        GroupReader { inner: self.core.reader() }
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.core.save_vote(vote).await.map_err(|e| failed(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.core.vote())
    }

    async fn save_committed(&mut self, committed: Option<LogId<C::NodeId>>) -> Result<(), StorageError<C::NodeId>> {
        self.core.save_committed(committed).await.map_err(|e| failed(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.core.committed())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.core.append(entries, callback).await.map_err(|e| failed(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.core.truncate_from(log_id.index).await.map_err(|e| failed(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.core.purge(log_id).await.map_err(|e| failed(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
