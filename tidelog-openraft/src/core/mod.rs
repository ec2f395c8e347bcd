//! The version-independent store: records, index, cache, flusher and
//! recovery, written once. The openraft 0.9 and 0.10 adapters (`v09`,
//! `v010`) only translate their traits' calls into this one's and its
//! `io::Error`s into theirs; neither knows the journal.
//!
//! It must never acknowledge an append before the journal's ticket for its
//! last record resolved, and never let its index forget an entry before
//! the marker that drops it is durable.

mod flusher;
pub(crate) mod group;
mod index;
mod record;
mod replay;

use std::fmt::{self, Debug};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tidelog::{Journal, Lsn};
use tokio::sync::mpsc;

pub(crate) use flusher::Flushed;
use index::{Slot, State};
use record::{encode, framed, tag, Purge};

/// What the core needs to know of one openraft version's types.
pub(crate) trait Codec: Send + Sync + Sized + 'static {
    /// A log id: term, leader and index.
    type LogId: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// A vote.
    type Vote: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// An entry: its log id and payload.
    type Entry: Serialize + DeserializeOwned + Send + 'static;
    /// The format record's body: names the record format *and* the openraft
    /// version whose serde shapes the bodies have, so a journal is never
    /// read with the other version's types.
    const FORMAT: &'static [u8];
    /// The entry's log id.
    fn log_id(entry: &Self::Entry) -> Self::LogId;
    /// The log id's index.
    fn index(id: &Self::LogId) -> u64;
}

/// Why a log store could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The journal failed (its message names the path and LSN).
    Journal(tidelog::Error),
    /// A record in the journal is not one this store wrote.
    Decode {
        /// The journal directory.
        dir: PathBuf,
        /// The record's LSN.
        lsn: Lsn,
        /// What is wrong with it.
        reason: String,
    },
    /// A Raft group of a [`MultiLog`](crate::MultiLog) cannot be opened:
    /// its metadata is not this store's, or a store of it is open already.
    Group {
        /// The journal directory.
        dir: PathBuf,
        /// The group's id (its stream).
        group: u64,
        /// What is wrong.
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
            Error::Group { dir, group, reason } => write!(f, "raft group {group} in {}: {reason}", dir.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Journal(e) => Some(e),
            Error::Decode { .. } | Error::Group { .. } => None,
        }
    }
}

impl From<tidelog::Error> for Error {
    fn from(e: tidelog::Error) -> Self {
        Error::Journal(e)
    }
}

fn read<K: Codec>(lock: &RwLock<State<K>>) -> RwLockReadGuard<'_, State<K>> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<K: Codec>(lock: &RwLock<State<K>>) -> RwLockWriteGuard<'_, State<K>> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn journal_error(e: tidelog::Error) -> io::Error {
    io::Error::other(e)
}

fn encode_error(e: bincode::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The store: one journal it alone appends to, the shared state, and the
/// flusher's queue.
pub(crate) struct Core<K: Codec, F: Flushed> {
    journal: Journal,
    state: Arc<RwLock<State<K>>>,
    sync_committed: bool,
    flush: mpsc::UnboundedSender<flusher::Waiting<F>>,
}

impl<K: Codec, F: Flushed> Debug for Core<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = read(&self.state);
        f.debug_struct("LogStore")
            .field("dir", &self.journal.dir())
            .field("entries", &state.entries.len())
            .field("purged", &state.purged)
            .field("vote", &state.vote)
            .field("committed", &state.committed)
            .finish()
    }
}

impl<K: Codec, F: Flushed> Core<K, F> {
    /// Rebuilds the state from `journal`, which this store will own, and
    /// starts its flusher (on the current tokio runtime).
    pub(crate) async fn open(journal: Journal) -> Result<Self, Error> {
        let replayed = replay::replay::<K>(&journal)?;
        if replayed.records == 0 {
            journal.append_durable_async(framed(tag::FORMAT, K::FORMAT)).await?;
        }
        tracing::info!(
            dir = %journal.dir().display(),
            format = %String::from_utf8_lossy(K::FORMAT),
            records = replayed.records,
            entries = replayed.state.entries.len(),
            last = ?replayed.state.last_log_id(),
            "raft log store opened"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(flusher::run(rx));
        Ok(Core { journal, state: Arc::new(RwLock::new(replayed.state)), sync_committed: true, flush: tx })
    }

    pub(crate) fn set_sync_committed(&mut self, on: bool) {
        self.sync_committed = on;
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    pub(crate) fn reader(&self) -> Reader<K> {
        Reader { journal: self.journal.clone(), state: self.state.clone() }
    }

    /// (last purged, last log id).
    pub(crate) fn log_state(&self) -> (Option<K::LogId>, Option<K::LogId>) {
        let state = read(&self.state);
        (state.purged.clone(), state.last_log_id())
    }

    pub(crate) fn vote(&self) -> Option<K::Vote> {
        read(&self.state).vote.clone()
    }

    pub(crate) fn committed(&self) -> Option<K::LogId> {
        read(&self.state).committed.clone()
    }

    /// Returns once the vote is durable (and so is everything appended
    /// before it: the journal is one sequence).
    pub(crate) async fn save_vote(&mut self, vote: &K::Vote) -> io::Result<()> {
        let record = encode(tag::VOTE, vote).map_err(encode_error)?;
        self.journal.append_durable_async(record).await.map_err(journal_error)?;
        write(&self.state).vote = Some(vote.clone());
        Ok(())
    }

    /// Returns once the committed id is durable, or only written when
    /// `sync_committed` is off.
    pub(crate) async fn save_committed(&mut self, committed: Option<K::LogId>) -> io::Result<()> {
        let record = encode(tag::COMMITTED, &committed).map_err(encode_error)?;
        let done = if self.sync_committed {
            self.journal.append_durable_async(record).await
        } else {
            self.journal.append_async(record).await
        };
        done.map_err(journal_error)?;
        write(&self.state).committed = committed;
        Ok(())
    }

    /// Never waits: each record is copied into the journal's buffer
    /// (`submit`) and kept in the cache until it is durable, so it is
    /// readable at once; the flusher answers `callback` after group commit.
    pub(crate) fn append(&mut self, entries: impl IntoIterator<Item = K::Entry>, callback: F) -> io::Result<()> {
        let mut last = None;
        {
            let mut state = write(&self.state);
            let mut from = self.journal.next_lsn();
            for entry in entries {
                let log_id = K::log_id(&entry);
                let record = encode(tag::ENTRY, &entry).map_err(encode_error)?;
                let ticket = self.journal.submit(&record).map_err(journal_error)?;
                let lsn = ticket.lsn();
                state.insert(Slot { log_id, from, lsn, cached: Some(Arc::new(record)) });
                from = lsn;
                last = Some(ticket);
            }
            state.evict(self.journal.durable_lsn());
        }
        match last {
            Some(ticket) => {
                // If the flusher is gone (the runtime is shutting down),
                // answer with the error here.
                if let Err(mpsc::error::SendError((_, callback))) = self.flush.send((ticket, callback)) {
                    callback.flushed(Err(io::Error::other("raft log flusher stopped")));
                }
            }
            None => callback.flushed(Ok(())),
        }
        Ok(())
    }

    /// Drops every entry at or after `index`; returns once the marker is
    /// durable. Nothing to drop writes nothing.
    pub(crate) async fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let Some(first_dropped) = read(&self.state).entries.range(index..).next().map(|(_, s)| s.log_id.clone()) else {
            return Ok(());
        };
        let record = encode(tag::TRUNCATE, &first_dropped).map_err(encode_error)?;
        // Durable before the index forgets: a crash must not bring back a
        // suffix that a later append (its record after this one) replaced.
        self.journal.append_durable_async(record).await.map_err(journal_error)?;
        write(&self.state).remove_from(index);
        Ok(())
    }

    /// Drops every entry up to `upto`, then deletes whole segments below
    /// the first record still needed.
    pub(crate) async fn purge(&mut self, upto: K::LogId) -> io::Result<()> {
        let purge = Purge { upto: upto.clone(), vote: self.vote(), committed: self.committed() };
        let record = encode(tag::PURGE, &purge).map_err(encode_error)?;
        let start = self.journal.next_lsn();
        // Durable before any segment goes: it carries the vote and
        // committed id whose own records may be deleted.
        self.journal.append_durable_async(record).await.map_err(journal_error)?;
        let keep_from = {
            let mut state = write(&self.state);
            state.purge(&upto);
            state.entries.values().next().map_or(start, |s| s.from.min(start))
        };
        self.journal.truncate_before(keep_from).await.map_err(journal_error)
    }
}

/// A reader of the live entries and the vote: what openraft's replication
/// streams use.
pub(crate) struct Reader<K: Codec> {
    journal: Journal,
    state: Arc<RwLock<State<K>>>,
}

impl<K: Codec> Debug for Reader<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReader").field("dir", &self.journal.dir()).finish()
    }
}

impl<K: Codec> Reader<K> {
    /// openraft 0.10's reader reads the vote (its leader-bounded streams
    /// check it); 0.9's does not.
    #[cfg_attr(not(feature = "openraft010"), allow(dead_code))]
    pub(crate) fn vote(&self) -> Option<K::Vote> {
        read(&self.state).vote.clone()
    }

    /// The live entries in `range`, from the cache where it has them and
    /// from the journal (one forward reader) where it does not.
    pub(crate) fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> io::Result<Vec<K::Entry>> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        if is_empty(&range) {
            return Ok(Vec::new());
        }
        let slots: Vec<Slot<K>> = read(&self.state).entries.range(range).map(|(_, s)| s.clone()).collect();
        let failed = |index: u64, e: &dyn std::error::Error| {
            io::Error::other(format!("read the raft log entry at index {index}: {e}"))
        };
        let mut reader: Option<tidelog::Reader> = None;
        let mut out = Vec::with_capacity(slots.len());
        for slot in &slots {
            let index = K::index(&slot.log_id);
            let record = match &slot.cached {
                Some(record) => record.clone(),
                None => {
                    let reader = match &mut reader {
                        Some(r) => r,
                        None => reader.insert(self.journal.reader(slot.from).map_err(|e| failed(index, &e))?),
                    };
                    Arc::new(find(reader, slot.lsn).map_err(|e| failed(index, &*e))?)
                }
            };
            let body = record.get(1..).unwrap_or_default();
            out.push(bincode::deserialize(body).map_err(|e| failed(index, &e))?);
        }
        Ok(out)
    }
}

/// Reads on to the record at `lsn`, skipping what lies between: markers,
/// votes, entries since truncated, cached entries.
fn find(reader: &mut tidelog::Reader, lsn: Lsn) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    loop {
        match reader.next_record()? {
            Some(r) if r.lsn() < lsn => continue,
            Some(r) if r.lsn() == lsn => return Ok(r.into_payload()),
            _ => return Err(format!("record at {} not found", lsn.as_u64()).into()),
        }
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
