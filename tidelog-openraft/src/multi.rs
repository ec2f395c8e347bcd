//! [`MultiLog`]: many Raft groups' logs in one tidelog journal, one
//! [`Streams`] stream per group, so that every group's appends share the
//! journal's writes and syncs. It hands out one store per group
//! (`GroupStore` for openraft 0.9, `v010::GroupStore` for 0.10) and never two
//! at once for the same group: a store relies on being its stream's only
//! writer.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use tidelog::{JournalOptions, Streams};

use crate::core::Error;

/// One journal holding the Raft logs of many groups, each group a stream
/// named by its `u64` id. Cheap to clone; clones share the journal.
///
/// Open a group's store with `GroupStore::open(&multi, group)`; its
/// appends, votes and purges are frames of this one journal, and the
/// callbacks that tell openraft "on disk" fire after the journal's group
/// commit, which one `fdatasync` serves for every group. Stream ids that no
/// group uses remain the application's (a state machine's own log, say).
///
/// ```no_run
/// # #[cfg(feature = "openraft09")] mod demo {
/// use std::io::Cursor; // openraft 0.9's macro names its default snapshot type unqualified
/// use tidelog_openraft::{GroupStore, MultiLog};
///
/// openraft::declare_raft_types!(
///     /// The application's Raft types.
///     pub MyConfig:
///         D = String,
///         R = String,
/// );
///
/// async fn demo() -> Result<(), Box<dyn std::error::Error>> {
///     let multi = MultiLog::open("/var/lib/node1/raft-groups", tidelog::JournalOptions::new()).await?;
///     for group in 1..=64 {
///         let store = GroupStore::<MyConfig>::open(&multi, group).await?;
///         // hand `store` to group `group`'s `openraft::Raft::new(..)`
///         drop(store);
///     }
///     multi.close().await?;
///     Ok(())
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MultiLog {
    streams: Streams,
    /// Groups with a store open.
    open: Arc<Mutex<HashSet<u64>>>,
}

impl MultiLog {
    /// Opens (or creates) the journal in `dir` and rebuilds every stream's
    /// index. Keep the journal's default `SyncPolicy::OnDemand`: the
    /// stores ask for syncs where Raft needs them, and group commit shares
    /// them across groups.
    pub async fn open(dir: impl AsRef<Path>, opts: JournalOptions) -> Result<MultiLog, Error> {
        Ok(MultiLog::with_streams(Streams::open(dir, opts).await?))
    }

    /// Builds on open streams.
    pub fn with_streams(streams: Streams) -> MultiLog {
        MultiLog { streams, open: Arc::default() }
    }

    /// The streams underneath (for the journal's statistics, or the
    /// application's own streams). Do not write to a group's stream.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// The ids of the streams the journal holds: every group opened and
    /// not removed (and the application's own streams, if any).
    pub fn groups(&self) -> Vec<u64> {
        self.streams.list().into_iter().map(|s| s.id).collect()
    }

    /// Removes `group`'s log and state for good (a group this node no
    /// longer serves); refused while a store of it is open.
    pub async fn remove_group(&self, group: u64) -> Result<(), Error> {
        let _claim = self.claim(group)?;
        self.streams.remove(group).await?;
        Ok(())
    }

    /// Flushes and syncs everything and closes the journal. Stores still
    /// open fail their next operation.
    pub async fn close(&self) -> Result<(), Error> {
        Ok(self.streams.close().await?)
    }

    fn open_groups(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `group` open until the claim is dropped.
    pub(crate) fn claim(&self, group: u64) -> Result<Claim, Error> {
        if !self.open_groups().insert(group) {
            return Err(self.group_error(group, "a store of this group is open already".into()));
        }
        Ok(Claim { open: self.open.clone(), group })
    }

    pub(crate) fn group_error(&self, group: u64, reason: String) -> Error {
        Error::Group { dir: self.streams.journal().dir().to_path_buf(), group, reason }
    }
}

/// A group marked open; unmarked on drop.
#[derive(Debug)]
pub(crate) struct Claim {
    open: Arc<Mutex<HashSet<u64>>>,
    group: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.group);
    }
}
