//! openraft 0.10's `RaftLogStorage` and `RaftLogReader` for one group of a
//! [`MultiLog`], on the version-independent group core (the same stream
//! layout and metadata as 0.9's, under 0.10's format name): this file only
//! translates calls. Re-exported as `v010::{GroupStore, GroupReader}`.

use std::fmt::{self, Debug};
use std::io;
use std::ops::RangeBounds;

use openraft010::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft010::type_config::alias::{LogIdOf, VoteOf};
use openraft010::{OptionalSend, RaftTypeConfig};
use tidelog::Streams;

use crate::core::group::{GroupCore, GroupReader as CoreReader};
use crate::core::Error;
use crate::v010::V010;
use crate::MultiLog;

/// openraft 0.10's `RaftLogStorage` for one Raft group of a [`MultiLog`]:
/// the group's log is one stream of the shared journal, its vote, committed
/// and purged log ids the stream's metadata.
pub struct GroupStore<C: RaftTypeConfig> {
    core: GroupCore<V010<C>, IOFlushed<C>>,
}

impl<C: RaftTypeConfig> Debug for GroupStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl<C: RaftTypeConfig> GroupStore<C> {
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

/// A reader of one group's live entries and vote: what openraft's
/// replication streams use.
pub struct GroupReader<C: RaftTypeConfig> {
    inner: CoreReader<V010<C>>,
}

impl<C: RaftTypeConfig> Debug for GroupReader<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

crate::v010::impl_log_storage!(GroupStore, GroupReader, .await);
