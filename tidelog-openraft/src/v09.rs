//! openraft 0.9's `RaftLogStorage` and `RaftLogReader` (the `storage-v2`
//! traits) on the version-independent core: this file only translates
//! calls and errors.

use std::fmt::{self, Debug};
use std::io;
use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::path::Path;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError,
    StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidelog::{Journal, JournalOptions};

use crate::core::{self, Codec, Core, Error, Flushed};

/// openraft 0.9's types, as the core sees them.
pub(crate) struct V09<C>(PhantomData<C>);

impl<C> Codec for V09<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogId = LogId<C::NodeId>;
    type Vote = Vote<C::NodeId>;
    type Entry = C::Entry;
    // Journals written before 0.10 was supported carry this name: it stays.
    const FORMAT: &'static [u8] = b"tidelog-openraft/1";

    fn log_id(entry: &C::Entry) -> LogId<C::NodeId> {
        entry.get_log_id().clone()
    }

    fn index(id: &LogId<C::NodeId>) -> u64 {
        id.index
    }
}

impl<C: RaftTypeConfig> Flushed for LogFlushed<C> {
    fn flushed(self, result: io::Result<()>) {
        self.log_io_completed(result);
    }
}

pub(crate) fn failed<NID: openraft::NodeId>(
    subject: ErrorSubject<NID>,
    verb: ErrorVerb,
    e: io::Error,
) -> StorageError<NID> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// openraft 0.9's `RaftLogStorage` on a tidelog [`Journal`].
///
/// One store owns its journal: nothing else may append to it (the index
/// relies on being the only writer).
pub struct LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    core: Core<V09<C>, LogFlushed<C>>,
}

impl<C> Debug for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    /// Opens (or creates) the journal in `dir` and rebuilds the log state
    /// from it. Keep the journal's default `SyncPolicy::OnDemand`: the store
    /// asks for syncs where Raft needs them, and group commit shares them.
    /// (Under `SyncPolicy::Never` appends are acknowledged once *written*:
    /// not safe against power loss.)
    pub async fn open(dir: impl AsRef<Path>, opts: JournalOptions) -> Result<Self, Error> {
        let journal = Journal::open(dir.as_ref(), opts).await?;
        LogStore::with_journal(journal).await
    }

    /// Builds the store on an open journal this store will own.
    pub async fn with_journal(journal: Journal) -> Result<Self, Error> {
        Ok(LogStore { core: Core::open(journal).await? })
    }

    /// Whether `save_committed` waits for durability (the default) or only
    /// for the record to be written, riding the next sync. openraft treats
    /// the committed id as an optimisation; without the wait a crash may
    /// bring back an older committed id, never a wrong one.
    pub fn sync_committed(mut self, on: bool) -> Self {
        self.core.set_sync_committed(on);
        self
    }

    /// The journal underneath (for `stats`, `close`, or inspection). Do not
    /// append to it.
    pub fn journal(&self) -> &Journal {
        self.core.journal()
    }
}

/// A reader of the live entries: what openraft's replication streams use.
pub struct LogReader<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    inner: core::Reader<V09<C>>,
}

impl<C> Debug for LogReader<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

fn entries<C, RB>(reader: &core::Reader<V09<C>>, range: RB) -> Result<Vec<C::Entry>, StorageError<C::NodeId>>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    RB: RangeBounds<u64>,
{
    reader.entries(range).map_err(|e| failed(ErrorSubject::Logs, ErrorVerb::Read, e))
}

/// openraft 0.9's `RaftLogReader` (for a store and its reader) and
/// `RaftLogStorage` (for the store), translating calls to the store's core
/// and its errors: one definition for the journal's store and the
/// multi-group store. `$($wait)*` is `.await` where the core reads and
/// appends asynchronously (the group core), and nothing where it does not.
/// Each user brings `entries` and the names the impls use into scope.
macro_rules! impl_log_storage {
    ($store:ident, $reader:ident, $($wait:tt)*) => {
        impl<C> RaftLogReader<C> for $reader<C>
        where
            C: RaftTypeConfig,
            C::Entry: Serialize + DeserializeOwned,
        {
            async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
                &mut self,
                range: RB,
            ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
                entries(&self.inner, range) $($wait)*
            }
        }

        impl<C> RaftLogReader<C> for $store<C>
        where
            C: RaftTypeConfig,
            C::Entry: Serialize + DeserializeOwned,
        {
            async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
                &mut self,
                range: RB,
            ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
                entries(&self.core.reader(), range) $($wait)*
            }
        }

        impl<C> RaftLogStorage<C> for $store<C>
        where
            C: RaftTypeConfig,
            C::Entry: Serialize + DeserializeOwned,
        {
            type LogReader = $reader<C>;

            async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
                let (last_purged_log_id, last_log_id) = self.core.log_state();
                Ok(LogState { last_purged_log_id, last_log_id })
            }

            async fn get_log_reader(&mut self) -> Self::LogReader {
                $reader { inner: self.core.reader() }
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
                self.core.append(entries, callback) $($wait)* .map_err(|e| failed(ErrorSubject::Logs, ErrorVerb::Write, e))
            }

            async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
                self.core.truncate_from(log_id.index).await.map_err(|e| failed(ErrorSubject::Logs, ErrorVerb::Delete, e))
            }

            async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
                self.core.purge(log_id).await.map_err(|e| failed(ErrorSubject::Logs, ErrorVerb::Delete, e))
            }
        }
    };
}
pub(crate) use impl_log_storage;

impl_log_storage!(LogStore, LogReader,);
