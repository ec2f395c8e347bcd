//! openraft 0.10's `RaftLogStorage` and `RaftLogReader` on the
//! version-independent core (the same records, index, cache, flusher and
//! recovery as 0.9's store): this file only translates calls.
//!
//! openraft 0.10's core submits appends without waiting for their flush
//! and merges client writes into one append, so this store's group commit
//! gets many entries per `fdatasync` on the leader too.
//!
//! ```no_run
//! # use openraft010 as openraft;
//! use tidelog_openraft::v010::LogStore;
//!
//! openraft::declare_raft_types!(
//!     /// The application's Raft types: its commands (`D`) and responses
//!     /// (`R`) must be serde-serializable.
//!     pub MyConfig:
//!         D = String,
//!         R = String,
//! );
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = LogStore::<MyConfig>::open("/var/lib/node1/raft-log", tidelog::JournalOptions::new()).await?;
//! // hand `store` to `openraft::Raft::new(id, config, network, store, state_machine)`
//! # drop(store);
//! # Ok(())
//! # }
//! ```

use std::fmt::{self, Debug};
use std::io;
use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::path::Path;

use openraft010::entry::RaftEntry;
use openraft010::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft010::type_config::alias::{LogIdOf, VoteOf};
use openraft010::{OptionalSend, RaftTypeConfig};
use tidelog::{Journal, JournalOptions};

use crate::core::{self, Codec, Core, Error, Flushed};
pub use crate::group010::{GroupReader, GroupStore};

/// openraft 0.10's types, as the core sees them.
pub(crate) struct V010<C>(PhantomData<C>);

impl<C: RaftTypeConfig> Codec for V010<C> {
    type LogId = LogIdOf<C>;
    type Vote = VoteOf<C>;
    type Entry = C::Entry;
    // Another name than 0.9's: the two versions' serde shapes of entries
    // and votes are theirs to change, so neither reads the other's journal.
    const FORMAT: &'static [u8] = b"tidelog-openraft/1 openraft-0.10";

    fn log_id(entry: &C::Entry) -> LogIdOf<C> {
        entry.log_id()
    }

    fn index(id: &LogIdOf<C>) -> u64 {
        id.index()
    }
}

impl<C: RaftTypeConfig> Flushed for IOFlushed<C> {
    fn flushed(self, result: io::Result<()>) {
        self.io_completed(result);
    }
}

/// openraft 0.10's `RaftLogStorage` on a tidelog [`Journal`].
///
/// One store owns its journal: nothing else may append to it (the index
/// relies on being the only writer).
pub struct LogStore<C: RaftTypeConfig> {
    core: Core<V010<C>, IOFlushed<C>>,
}

impl<C: RaftTypeConfig> Debug for LogStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl<C: RaftTypeConfig> LogStore<C> {
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

/// A reader of the live entries and the vote: what openraft's replication
/// streams use.
pub struct LogReader<C: RaftTypeConfig> {
    inner: core::Reader<V010<C>>,
}

impl<C: RaftTypeConfig> Debug for LogReader<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// openraft 0.10's `RaftLogReader` (for a reader) and `RaftLogStorage`
/// (for its store), translating calls to the store's core: one definition
/// for the journal's store and the multi-group store. `$($wait)*` is
/// `.await` where the core reads and appends asynchronously (the group
/// core), and nothing where it does not. Each user brings the names the
/// impls use into scope.
macro_rules! impl_log_storage {
    ($store:ident, $reader:ident, $($wait:tt)*) => {
        impl<C: RaftTypeConfig> RaftLogReader<C> for $reader<C> {
            async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
                &mut self,
                range: RB,
            ) -> Result<Vec<C::Entry>, io::Error> {
                self.inner.entries(range) $($wait)*
            }

            async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
                Ok(self.inner.vote())
            }
        }

        impl<C: RaftTypeConfig> RaftLogStorage<C> for $store<C> {
            type LogReader = $reader<C>;

            async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
                let (last_purged_log_id, last_log_id) = self.core.log_state();
                Ok(LogState { last_purged_log_id, last_log_id })
            }

            async fn get_log_reader(&mut self) -> Self::LogReader {
                $reader { inner: self.core.reader() }
            }

            async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
                self.core.save_vote(vote).await
            }

            async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
                self.core.save_committed(committed).await
            }

            async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
                Ok(self.core.committed())
            }

            async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
            where
                I: IntoIterator<Item = C::Entry> + OptionalSend,
                I::IntoIter: OptionalSend,
            {
                self.core.append(entries, callback) $($wait)*
            }

            async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
                let from = last_log_id.map_or(0, |id| id.index() + 1);
                self.core.truncate_from(from).await
            }

            async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
                self.core.purge(log_id).await
            }
        }
    };
}
pub(crate) use impl_log_storage;

impl_log_storage!(LogStore, LogReader,);
