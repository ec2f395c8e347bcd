//! [openraft](https://docs.rs/openraft/0.9) log storage on a [`tidelog`]
//! journal.
//!
//! [`LogStore`] implements `RaftLogStorage` (openraft 0.9, `storage-v2`)
//! and [`LogReader`] implements `RaftLogReader`. Every Raft append becomes
//! one journal record; the callback that tells openraft the entries are on
//! disk fires from one flusher task that waits for the journal's group
//! commit, so many Raft appends (and the appends of every other writer of
//! the node) share one `fdatasync`.
//!
//! The journal is append-only, so `truncate` and `purge` write *markers*;
//! an in-memory index (log index → journal LSN) is rebuilt from the records
//! on open. `purge` also deletes whole segments below the first entry still
//! needed, after writing a record that carries the vote and committed log id
//! forward. What is durable when is in `docs/replication.md`.
//!
//! ```no_run
//! use std::io::Cursor; // openraft 0.9's macro names its default snapshot type unqualified
//! use tidelog_openraft::LogStore;
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
//!
//! The tests and the 3-node example share a small key-value state machine,
//! an in-memory log store and an in-process network (`tests/support/` in
//! the repository): fixtures, not this crate's API.

#![warn(missing_docs)]
// openraft's traits fix the error types (`StorageError`, `RPCError`); the
// private helpers return what the trait methods must.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError,
    StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidelog::{Journal, JournalOptions, Lsn};
use tokio::sync::mpsc;

/// The first record of every journal this crate creates: names the record
/// format so a future change can be detected rather than misread.
const FORMAT: &[u8] = b"tidelog-openraft/1";

/// Record tags (the first byte of every record; the rest is bincode).
mod tag {
    pub const FORMAT: u8 = 0;
    pub const ENTRY: u8 = 1;
    pub const VOTE: u8 = 2;
    pub const COMMITTED: u8 = 3;
    pub const TRUNCATE: u8 = 4;
    pub const PURGE: u8 = 5;
}

/// Why a log store could not be opened.
#[derive(Debug)]
pub enum Error {
    /// The journal failed (its message names the path and LSN).
    Journal(tidelog::Error),
    /// A record in the journal is not one this crate wrote.
    Decode {
        /// The journal directory.
        dir: PathBuf,
        /// The record's LSN.
        lsn: Lsn,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Journal(e) => write!(f, "raft log journal: {e}"),
            Error::Decode { dir, lsn, reason } => {
                write!(f, "raft log record at {} in {}: {reason}", lsn.as_u64(), dir.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Journal(e) => Some(e),
            Error::Decode { .. } => None,
        }
    }
}

impl From<tidelog::Error> for Error {
    fn from(e: tidelog::Error) -> Self {
        Error::Journal(e)
    }
}

/// Where one entry's record lies.
#[derive(Clone, Debug)]
struct Slot<NID: openraft::NodeId> {
    log_id: LogId<NID>,
    /// A frame boundary at or before the record's start, after every record
    /// this store wrote before it: a reader from here meets it first among
    /// this store's records that are not older.
    from: Lsn,
    /// The record's LSN (its end), as the journal returned it.
    lsn: Lsn,
    /// The record itself while it may not be written yet, and for a while
    /// after (replication reads the newest entries): see [`CACHE_BYTES`].
    cached: Option<Arc<Vec<u8>>>,
}

/// Recent records are kept in memory up to this many bytes; beyond it the
/// oldest *durable* ones are dropped (a record that is not durable is never
/// dropped: it may not be in the file yet).
const CACHE_BYTES: usize = 8 << 20;

/// What readers share with the store: the live entries.
#[derive(Debug)]
struct Index<NID: openraft::NodeId> {
    entries: BTreeMap<u64, Slot<NID>>,
    purged: Option<LogId<NID>>,
    cached_bytes: usize,
}

impl<NID: openraft::NodeId> Index<NID> {
    fn new() -> Self {
        Index { entries: BTreeMap::new(), purged: None, cached_bytes: 0 }
    }

    fn last_log_id(&self) -> Option<LogId<NID>> {
        self.entries.values().next_back().map(|s| s.log_id.clone()).or_else(|| self.purged.clone())
    }

    /// Forgets every entry at or after `index`.
    fn remove_from(&mut self, index: u64) {
        let gone = self.entries.split_off(&index);
        self.cached_bytes -= gone.values().filter_map(|s| s.cached.as_ref()).map(|c| c.len()).sum::<usize>();
    }

    /// Forgets every entry up to `upto` and records it as purged.
    fn purge(&mut self, upto: &LogId<NID>) {
        let kept = self.entries.split_off(&(upto.index + 1));
        let gone = std::mem::replace(&mut self.entries, kept);
        self.cached_bytes -= gone.values().filter_map(|s| s.cached.as_ref()).map(|c| c.len()).sum::<usize>();
        if self.purged.as_ref().is_none_or(|p| p.index < upto.index) {
            self.purged = Some(upto.clone());
        }
    }

    fn insert(&mut self, slot: Slot<NID>) {
        self.remove_from(slot.log_id.index);
        self.cached_bytes += slot.cached.as_ref().map_or(0, |c| c.len());
        self.entries.insert(slot.log_id.index, slot);
    }

    /// Drops cached records, oldest first, while over budget and durable.
    fn evict(&mut self, durable: Lsn) {
        if self.cached_bytes <= CACHE_BYTES {
            return;
        }
        for slot in self.entries.values_mut() {
            if self.cached_bytes <= CACHE_BYTES / 2 || slot.lsn > durable {
                break;
            }
            if let Some(c) = slot.cached.take() {
                self.cached_bytes -= c.len();
            }
        }
    }
}

/// The state a replay of the journal rebuilds.
struct Replayed<NID: openraft::NodeId> {
    index: Index<NID>,
    vote: Option<Vote<NID>>,
    committed: Option<LogId<NID>>,
    records: u64,
}

/// openraft's `RaftLogStorage` on a tidelog [`Journal`].
///
/// One store owns its journal: nothing else may append to it (the index
/// relies on being the only writer).
pub struct LogStore<C: RaftTypeConfig> {
    journal: Journal,
    index: Arc<RwLock<Index<C::NodeId>>>,
    vote: Option<Vote<C::NodeId>>,
    committed: Option<LogId<C::NodeId>>,
    sync_committed: bool,
    flush: mpsc::UnboundedSender<(Lsn, LogFlushed<C>)>,
}

impl<C: RaftTypeConfig> Debug for LogStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = read(&self.index);
        f.debug_struct("LogStore")
            .field("dir", &self.journal.dir())
            .field("entries", &index.entries.len())
            .field("purged", &index.purged)
            .field("vote", &self.vote)
            .field("committed", &self.committed)
            .finish()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    /// Opens (or creates) the journal in `dir` and rebuilds the log state
    /// from it. Keep the journal's default `SyncPolicy::OnDemand`: the store
    /// asks for syncs where Raft needs them, and group commit shares them.
    pub async fn open(dir: impl AsRef<Path>, opts: JournalOptions) -> Result<Self, Error> {
        let journal = Journal::open(dir.as_ref(), opts).await?;
        LogStore::with_journal(journal).await
    }

    /// Builds the store on an open journal this store will own.
    pub async fn with_journal(journal: Journal) -> Result<Self, Error> {
        let replayed = replay::<C>(&journal)?;
        if replayed.records == 0 {
            journal.append_async(framed(tag::FORMAT, FORMAT)).await?;
        }
        tracing::info!(
            dir = %journal.dir().display(),
            records = replayed.records,
            entries = replayed.index.entries.len(),
            last = ?replayed.index.last_log_id(),
            "raft log store opened"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(flusher(journal.clone(), rx));
        Ok(LogStore {
            journal,
            index: Arc::new(RwLock::new(replayed.index)),
            vote: replayed.vote,
            committed: replayed.committed,
            sync_committed: true,
            flush: tx,
        })
    }

    /// Whether `save_committed` waits for durability (the default) or only
    /// for the record to be written, riding the next sync. openraft treats
    /// the committed id as an optimisation; without the wait a crash may
    /// bring back an older committed id, never a wrong one.
    pub fn sync_committed(mut self, on: bool) -> Self {
        self.sync_committed = on;
        self
    }

    /// The journal underneath (for `stats`, `close`, or inspection). Do not
    /// append to it.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    fn new_reader(&self) -> LogReader<C> {
        LogReader { journal: self.journal.clone(), index: self.index.clone() }
    }

    async fn append_durable(&self, what: u8, body: &[u8], verb: ErrorVerb) -> Result<Lsn, StorageError<C::NodeId>> {
        let subject = match what {
            tag::VOTE => ErrorSubject::Vote,
            _ => ErrorSubject::Store,
        };
        self.journal
            .append_durable_async(framed(what, body))
            .await
            .map_err(|e| StorageIOError::new(subject, verb, AnyError::new(&e)).into())
    }
}

fn framed(what: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + body.len());
    v.push(what);
    v.extend_from_slice(body);
    v
}

fn encode<T: Serialize>(what: u8, value: &T) -> Result<Vec<u8>, bincode::Error> {
    let mut v = vec![what];
    bincode::serialize_into(&mut v, value)?;
    Ok(v)
}

fn decode_error(journal: &Journal, lsn: Lsn, reason: impl ToString) -> Error {
    Error::Decode { dir: journal.dir().to_path_buf(), lsn, reason: reason.to_string() }
}

/// Rebuilds the log state from every record, oldest first.
fn replay<C>(journal: &Journal) -> Result<Replayed<C::NodeId>, Error>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    let mut out = Replayed { index: Index::new(), vote: None, committed: None, records: 0 };
    let mut reader = journal.reader(Lsn::ZERO)?;
    while let Some(record) = reader.next_record()? {
        out.records += 1;
        let lsn = record.lsn();
        let bad = |e: bincode::Error| decode_error(journal, lsn, e);
        let Some((&what, body)) = record.payload().split_first() else {
            return Err(decode_error(journal, lsn, "empty record"));
        };
        match what {
            tag::FORMAT if body == FORMAT => {}
            tag::FORMAT => {
                return Err(decode_error(journal, lsn, format!("unknown format {:?}", String::from_utf8_lossy(body))))
            }
            tag::ENTRY => {
                let entry: C::Entry = bincode::deserialize(body).map_err(bad)?;
                let log_id = entry.get_log_id().clone();
                // An entry replaces everything from its index on, as the
                // append that wrote it did.
                out.index.insert(Slot { log_id, from: record.start_lsn(), lsn, cached: None });
            }
            tag::VOTE => out.vote = Some(bincode::deserialize(body).map_err(bad)?),
            tag::COMMITTED => out.committed = bincode::deserialize(body).map_err(bad)?,
            tag::TRUNCATE => {
                let since: LogId<C::NodeId> = bincode::deserialize(body).map_err(bad)?;
                out.index.remove_from(since.index);
            }
            tag::PURGE => {
                let p: Purge<C::NodeId> = bincode::deserialize(body).map_err(bad)?;
                out.index.purge(&p.upto);
                if p.vote.is_some() {
                    out.vote = p.vote;
                }
                if p.committed.is_some() {
                    out.committed = p.committed;
                }
            }
            other => return Err(decode_error(journal, lsn, format!("unknown record tag {other}"))),
        }
    }
    Ok(out)
}

/// The purge record: the purged id, and the vote and committed id as of the
/// purge, carried forward because the segments that held their own records
/// may be deleted.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "")]
struct Purge<NID: openraft::NodeId> {
    upto: LogId<NID>,
    vote: Option<Vote<NID>>,
    committed: Option<LogId<NID>>,
}

/// Answers append callbacks in order once the journal is durable through
/// their records, one sync for everything queued meanwhile.
async fn flusher<C: RaftTypeConfig>(journal: Journal, mut rx: mpsc::UnboundedReceiver<(Lsn, LogFlushed<C>)>) {
    let mut queued = Vec::new();
    while rx.recv_many(&mut queued, 4096).await > 0 {
        let through = queued.iter().map(|(lsn, _)| *lsn).max().unwrap_or(Lsn::ZERO);
        let result = journal.sync_through_async(through).await;
        for (_, callback) in queued.drain(..) {
            callback.log_io_completed(result.as_ref().map(drop).map_err(|e| io::Error::other(e.to_string())));
        }
    }
}

/// A reader of the live entries: what openraft's replication streams use.
pub struct LogReader<C: RaftTypeConfig> {
    journal: Journal,
    index: Arc<RwLock<Index<C::NodeId>>>,
}

impl<C: RaftTypeConfig> Debug for LogReader<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReader").field("dir", &self.journal.dir()).finish()
    }
}

impl<C> LogReader<C>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        if is_empty(&range) {
            return Ok(Vec::new());
        }
        let slots: Vec<Slot<C::NodeId>> = read(&self.index).entries.range(range).map(|(_, s)| s.clone()).collect();
        let failed = |index: u64, e: &dyn std::error::Error| -> StorageError<C::NodeId> {
            StorageIOError::read_log_at_index(index, AnyError::error(e.to_string())).into()
        };
        let mut reader: Option<tidelog::Reader> = None;
        let mut out = Vec::with_capacity(slots.len());
        for slot in &slots {
            let record = match &slot.cached {
                Some(record) => record.clone(),
                None => {
                    let reader = match &mut reader {
                        Some(r) => r,
                        None => {
                            reader.insert(self.journal.reader(slot.from).map_err(|e| failed(slot.log_id.index, &e))?)
                        }
                    };
                    // Skip what lies between: markers, votes, entries since
                    // truncated, cached entries.
                    loop {
                        match reader.next_record() {
                            Ok(Some(r)) if r.lsn() < slot.lsn => continue,
                            Ok(Some(r)) if r.lsn() == slot.lsn => break Arc::new(r.into_payload()),
                            Ok(_) => {
                                let e = io::Error::other(format!("record at {} not found", slot.lsn.as_u64()));
                                return Err(failed(slot.log_id.index, &e));
                            }
                            Err(e) => return Err(failed(slot.log_id.index, &e)),
                        }
                    }
                }
            };
            let body = record.get(1..).unwrap_or_default();
            let entry: C::Entry = bincode::deserialize(body).map_err(|e| failed(slot.log_id.index, &e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

fn is_empty(range: &(Bound<u64>, Bound<u64>)) -> bool {
    let start = match range.0 {
        Bound::Included(s) => s,
        Bound::Excluded(s) => match s.checked_add(1) {
            Some(s) => s,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match range.1 {
        Bound::Included(e) => e < start,
        Bound::Excluded(e) => e <= start,
        Bound::Unbounded => false,
    }
}

impl<C> RaftLogReader<C> for LogReader<C>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.entries(range)
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.new_reader().entries(range)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let index = read(&self.index);
        Ok(LogState { last_purged_log_id: index.purged.clone(), last_log_id: index.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.new_reader()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let body = bincode::serialize(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.append_durable(tag::VOTE, &body, ErrorVerb::Write).await?;
        self.vote = Some(vote.clone());
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.vote.clone())
    }

    async fn save_committed(&mut self, committed: Option<LogId<C::NodeId>>) -> Result<(), StorageError<C::NodeId>> {
        let record = encode(tag::COMMITTED, &committed).map_err(|e| StorageIOError::write(&e))?;
        let done = if self.sync_committed {
            self.journal.append_durable_async(record).await
        } else {
            self.journal.append_async(record).await
        };
        done.map_err(|e| StorageIOError::write(&e))?;
        self.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Never waits: each record is copied into the journal's buffer
        // (`submit`) and kept in the index's cache until it is durable, so
        // it is readable at once and openraft's core loop moves on; the
        // flusher answers the callback after group commit.
        let mut last = None;
        {
            let mut index = write(&self.index);
            let mut from = self.journal.next_lsn();
            for entry in entries {
                let log_id = entry.get_log_id().clone();
                let record =
                    encode(tag::ENTRY, &entry).map_err(|e| StorageIOError::write_log_entry(log_id.clone(), &e))?;
                let lsn = self
                    .journal
                    .submit(&record)
                    .map_err(|e| StorageIOError::write_log_entry(log_id.clone(), &e))?
                    .lsn();
                index.insert(Slot { log_id, from, lsn, cached: Some(Arc::new(record)) });
                from = lsn;
                last = Some(lsn);
            }
            index.evict(self.journal.durable_lsn());
        }
        match last {
            Some(lsn) => {
                // If the flusher is gone (the runtime is shutting down),
                // answer with the error here.
                if let Err(mpsc::error::SendError((_, callback))) = self.flush.send((lsn, callback)) {
                    callback.log_io_completed(Err(io::Error::other("raft log flusher stopped")));
                }
            }
            None => callback.log_io_completed(Ok(())),
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let body = bincode::serialize(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        // Durable before the index forgets: a crash must not bring back a
        // suffix that a later append (its record after this one) replaced.
        self.append_durable(tag::TRUNCATE, &body, ErrorVerb::Delete).await?;
        write(&self.index).remove_from(log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let purge = Purge { upto: log_id.clone(), vote: self.vote.clone(), committed: self.committed.clone() };
        let body = bincode::serialize(&purge).map_err(|e| StorageIOError::write_logs(&e))?;
        let start = self.journal.next_lsn();
        // Durable before any segment goes: it carries the vote and
        // committed id whose own records may be deleted.
        self.append_durable(tag::PURGE, &body, ErrorVerb::Delete).await?;
        let keep_from = {
            let mut index = write(&self.index);
            index.purge(&log_id);
            index.entries.values().next().map_or(start, |s| s.from.min(start))
        };
        self.journal.truncate_before(keep_from).await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
