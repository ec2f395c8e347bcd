//! The version-independent store of one Raft group on a shared
//! [`Streams`] journal: the group is one stream, its vote, committed and
//! purged log ids are the stream's metadata. The openraft 0.9 and 0.10
//! group adapters (`group09`, `group010`) only translate calls into this.
//!
//! Raft log index `i` is stream index `i + 1` (openraft's logs may start at
//! index 0; a stream's start at 1). An entry's payload is the entry in
//! bincode, nothing else; the metadata is [`GroupMeta`].
//!
//! It must never answer an append's callback before the ticket of its
//! batch resolved, and never drop entries from the stream before the
//! metadata that explains the drop (a purge) is durable.

use std::fmt::{self, Debug};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use tidelog::Streams;
use tokio::sync::mpsc;

use super::flusher::{self, Flushed};
use super::{encode_error, is_empty, journal_error, Codec, Error};
use crate::multi::{Claim, MultiLog};

/// The metadata layout's version: the first byte of every group's metadata.
const META_V1: u8 = 1;

/// One group's metadata: the store's format (which openraft version's serde
/// shapes its entries have) and what Raft must find again after a restart.
/// Written whole, in bincode after [`META_V1`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "L: Serialize, V: Serialize", deserialize = "L: Deserialize<'de>, V: Deserialize<'de>"))]
struct GroupMeta<L, V> {
    format: Vec<u8>,
    vote: Option<V>,
    committed: Option<L>,
    purged: Option<L>,
}

/// What the store and its readers share: the metadata as last written,
/// and the last live entry's log id.
#[derive(Debug)]
pub(crate) struct GroupState<K: Codec> {
    meta: GroupMeta<K::LogId, K::Vote>,
    last: Option<K::LogId>,
}

fn read<K: Codec>(lock: &RwLock<GroupState<K>>) -> RwLockReadGuard<'_, GroupState<K>> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<K: Codec>(lock: &RwLock<GroupState<K>>) -> RwLockWriteGuard<'_, GroupState<K>> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// The stream index of Raft log index `index`.
fn position(index: u64) -> io::Result<u64> {
    index.checked_add(1).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "raft log index u64::MAX"))
}

/// A stream's live range `first..next` (`1..1` for a stream never used).
fn range(streams: &Streams, group: u64) -> (u64, u64) {
    streams.info(group).map_or((1, 1), |s| (s.first, s.next))
}

/// The store of one group: the shared journal, the group's state, and the
/// flusher's queue.
pub(crate) struct GroupCore<K: Codec, F: Flushed> {
    streams: Streams,
    group: u64,
    state: Arc<RwLock<GroupState<K>>>,
    sync_committed: bool,
    flush: mpsc::UnboundedSender<flusher::Waiting<F>>,
    _claim: Claim,
}

impl<K: Codec, F: Flushed> Debug for GroupCore<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = read(&self.state);
        f.debug_struct("GroupStore")
            .field("dir", &self.streams.journal().dir())
            .field("group", &self.group)
            .field("last", &state.last)
            .field("purged", &state.meta.purged)
            .field("vote", &state.meta.vote)
            .field("committed", &state.meta.committed)
            .finish()
    }
}

impl<K: Codec, F: Flushed> GroupCore<K, F> {
    /// Claims `group` of `multi` and rebuilds its state from the stream:
    /// finishes a purge a crash interrupted, and writes the metadata of a
    /// new group. Starts the group's flusher on the current runtime.
    pub(crate) async fn open(multi: &MultiLog, group: u64) -> Result<Self, Error> {
        let claim = multi.claim(group)?;
        let streams = multi.streams().clone();
        let bad = |reason: String| multi.group_error(group, reason);
        let meta = match streams.meta(group) {
            Some(bytes) => Some(decode_meta::<K>(&bytes).map_err(bad)?),
            None => None,
        };
        let meta = match meta {
            Some(meta) => meta,
            None => {
                let meta = GroupMeta { format: K::FORMAT.to_vec(), vote: None, committed: None, purged: None };
                streams.set_meta(group, &encode_meta(&meta).map_err(|e| bad(e.to_string()))?).await?;
                meta
            }
        };
        let mut state = GroupState::<K> { meta, last: None };
        if let Some(purged) = &state.meta.purged {
            // The metadata is made durable before the entries go: a crash
            // in between leaves entries the purge dropped.
            let (first, next) = range(&streams, group);
            let to = position(K::index(purged)).and_then(position).map_err(|e| bad(e.to_string()))?.min(next);
            if to > first {
                streams.truncate_prefix(group, to).await?;
            }
        }
        let (first, next) = range(&streams, group);
        if next > first {
            let entry = read_one::<K>(&streams, group, next - 1).await.map_err(|e| bad(e.to_string()))?;
            state.last = Some(K::log_id(&entry));
        }
        tracing::debug!(group, first, next, last = ?state.last, "raft group store opened");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(flusher::run(rx));
        let state = Arc::new(RwLock::new(state));
        Ok(GroupCore { streams, group, state, sync_committed: true, flush: tx, _claim: claim })
    }

    pub(crate) fn set_sync_committed(&mut self, on: bool) {
        self.sync_committed = on;
    }

    pub(crate) fn group(&self) -> u64 {
        self.group
    }

    pub(crate) fn streams(&self) -> &Streams {
        &self.streams
    }

    pub(crate) fn reader(&self) -> GroupReader<K> {
        GroupReader { streams: self.streams.clone(), group: self.group, state: self.state.clone() }
    }

    /// (last purged, last log id).
    pub(crate) fn log_state(&self) -> (Option<K::LogId>, Option<K::LogId>) {
        let state = read(&self.state);
        (state.meta.purged.clone(), state.last.clone().or_else(|| state.meta.purged.clone()))
    }

    /// openraft 0.9's store reads the vote; 0.10's reads it from its reader.
    #[cfg_attr(not(feature = "openraft09"), allow(dead_code))]
    pub(crate) fn vote(&self) -> Option<K::Vote> {
        read(&self.state).meta.vote.clone()
    }

    pub(crate) fn committed(&self) -> Option<K::LogId> {
        read(&self.state).meta.committed.clone()
    }

    /// Writes the metadata `change` makes of the current one, then keeps
    /// it; resolves once durable if `durable`, else once written.
    async fn save_meta(
        &mut self,
        durable: bool,
        change: impl FnOnce(&mut GroupMeta<K::LogId, K::Vote>),
    ) -> io::Result<()> {
        let mut meta = read(&self.state).meta.clone();
        change(&mut meta);
        let bytes = encode_meta(&meta).map_err(encode_error)?;
        self.streams.set_meta(self.group, &bytes).await.map_err(journal_error)?;
        if durable {
            let journal = self.streams.journal();
            journal.sync_through_async(journal.next_lsn()).await.map_err(journal_error)?;
        }
        write(&self.state).meta = meta;
        Ok(())
    }

    /// Returns once the vote is durable.
    pub(crate) async fn save_vote(&mut self, vote: &K::Vote) -> io::Result<()> {
        self.save_meta(true, |m| m.vote = Some(vote.clone())).await
    }

    /// Returns once the committed id is durable, or only written when
    /// `sync_committed` is off.
    pub(crate) async fn save_committed(&mut self, committed: Option<K::LogId>) -> io::Result<()> {
        self.save_meta(self.sync_committed, |m| m.committed = committed).await
    }

    /// Places the entries as one atomic batch (readable at once); the
    /// flusher answers `callback` once the batch's ticket resolved, so
    /// every group's appends queued while one sync ran share the next.
    pub(crate) async fn append(&mut self, entries: impl IntoIterator<Item = K::Entry>, callback: F) -> io::Result<()> {
        let mut payloads = Vec::new();
        let mut ids = Vec::new();
        for entry in entries {
            ids.push(K::log_id(&entry));
            payloads.push(bincode::serialize(&entry).map_err(encode_error)?);
        }
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            callback.flushed(Ok(()));
            return Ok(());
        };
        let at = position(K::index(first))?;
        if ids.iter().zip(K::index(first)..).any(|(id, i)| K::index(id) != i) {
            return Err(invalid(self.group, "an append's entries are not at consecutive indexes"));
        }
        self.make_room(at).await?;
        let (placed, ticket) = self.streams.submit_batch(self.group, &payloads).map_err(journal_error)?;
        // The store is its stream's only writer (`MultiLog::claim`) and
        // `make_room` left the stream's next at `at` under `&mut self`.
        assert_eq!(placed.start, at, "group {}: the stream placed the batch elsewhere", self.group);
        write(&self.state).last = Some(last.clone());
        // If the flusher is gone (the runtime is shutting down), answer
        // with the error here.
        if let Err(mpsc::error::SendError((_, callback))) = self.flush.send((ticket, callback)) {
            callback.flushed(Err(io::Error::other("raft group flusher stopped")));
        }
        Ok(())
    }

    /// Makes stream index `at` the stream's next: moves the start of an
    /// empty stream (a first append, or one after a purge past the end)
    /// or of one whose entries are all purged, or drops the suffix an
    /// append overwrites. The frames written ride the append's ticket:
    /// they come before its entries in the journal.
    async fn make_room(&mut self, at: u64) -> io::Result<()> {
        let (first, next) = range(&self.streams, self.group);
        let purged = read(&self.state).meta.purged.as_ref().map(|p| K::index(p));
        // Stream index `next - 1` is Raft index `next - 2`.
        let all_purged = purged.is_some_and(|p| next - 1 <= p.saturating_add(1));
        let done = if at == next {
            Ok(())
        } else if at > next && (first == next || all_purged) {
            self.streams.truncate_prefix(self.group, at).await.map(drop)
        } else if at < next && at >= first {
            self.streams.truncate_suffix(self.group, at).await.map(drop)
        } else {
            let what = format!("an append at stream index {at} would leave a hole in {first}..{next}");
            return Err(invalid(self.group, &what));
        };
        done.map_err(journal_error)
    }

    /// Drops every entry at or after Raft index `index` (every live one,
    /// if `index` is at or below the purged point); returns once the
    /// marker is durable. Nothing to drop writes nothing.
    pub(crate) async fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let from = position(index)?;
        let (first, next) = range(&self.streams, self.group);
        if from >= next {
            return Ok(());
        }
        let from = from.max(first);
        self.streams.truncate_suffix(self.group, from).await.map_err(journal_error)?;
        // Durable like the vote: openraft may act on the shorter log at once.
        let journal = self.streams.journal();
        journal.sync_through_async(journal.next_lsn()).await.map_err(journal_error)?;
        let last = if from > first {
            Some(K::log_id(&read_one::<K>(&self.streams, self.group, from - 1).await?))
        } else {
            None
        };
        write(&self.state).last = last;
        Ok(())
    }

    /// Drops every entry up to `upto`: the metadata naming it purged is
    /// made durable first, then the stream's prefix goes. Past the end,
    /// the stream is left empty where it ends (the next append, at
    /// `upto`'s index + 1 after a snapshot install, moves its start).
    pub(crate) async fn purge(&mut self, upto: K::LogId) -> io::Result<()> {
        let upto_index = K::index(&upto);
        if read(&self.state).meta.purged.as_ref().is_some_and(|p| K::index(p) >= upto_index) {
            return Ok(());
        }
        self.save_meta(true, |m| m.purged = Some(upto.clone())).await?;
        let (first, next) = range(&self.streams, self.group);
        let to = position(position(upto_index)?)?.min(next);
        if to > first {
            self.streams.truncate_prefix(self.group, to).await.map_err(journal_error)?;
        }
        let mut state = write(&self.state);
        if state.last.as_ref().is_some_and(|l| K::index(l) <= upto_index) {
            state.last = None;
        }
        Ok(())
    }
}

/// Reads of one range retried after a purge raced them: a purge per retry
/// would have to land between two reads for the bound to be reached.
const READ_RACES_MAX: u32 = 4;

/// A reader of one group's live entries and vote.
pub(crate) struct GroupReader<K: Codec> {
    streams: Streams,
    group: u64,
    state: Arc<RwLock<GroupState<K>>>,
}

impl<K: Codec> Debug for GroupReader<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupReader").field("dir", &self.streams.journal().dir()).field("group", &self.group).finish()
    }
}

impl<K: Codec> GroupReader<K> {
    #[cfg_attr(not(feature = "openraft010"), allow(dead_code))]
    pub(crate) fn vote(&self) -> Option<K::Vote> {
        read(&self.state).meta.vote.clone()
    }

    /// The live entries in the Raft index range `range`, read from the
    /// stream (waiting for entries placed but not yet written).
    pub(crate) async fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> io::Result<Vec<K::Entry>> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        if is_empty(&range) {
            return Ok(Vec::new());
        }
        let (first, next) = self::range(&self.streams, self.group);
        let start = match range.0 {
            Bound::Included(s) => s.saturating_add(1),
            Bound::Excluded(s) => s.saturating_add(2),
            Bound::Unbounded => 1,
        };
        let end = match range.1 {
            Bound::Included(e) => e.saturating_add(2),
            Bound::Excluded(e) => e.saturating_add(1),
            Bound::Unbounded => u64::MAX,
        };
        let (mut from, end) = (start.max(first), end.min(next));
        let mut out = Vec::with_capacity(end.saturating_sub(from).min(4096) as usize);
        let mut raced = 0;
        while from < end {
            let want = usize::try_from(end - from).unwrap_or(usize::MAX);
            let got = match self.streams.read_async(self.group, from, want).await {
                Ok(got) => got,
                // A purge dropped the start meanwhile: read what is left,
                // as a read that came after the purge would.
                Err(tidelog::Error::InvalidIndex { .. }) if raced < READ_RACES_MAX => {
                    raced += 1;
                    from = from.max(self::range(&self.streams, self.group).0);
                    continue;
                }
                Err(e) => return Err(journal_error(e)),
            };
            if got.is_empty() {
                break; // truncated meanwhile
            }
            for e in &got {
                out.push(decode_entry::<K>(self.group, e.index(), e.payload())?);
            }
            from += got.len() as u64;
        }
        Ok(out)
    }
}

async fn read_one<K: Codec>(streams: &Streams, group: u64, at: u64) -> io::Result<K::Entry> {
    let got = streams.read_async(group, at, 1).await.map_err(journal_error)?;
    match got.first() {
        Some(e) if e.index() == at => decode_entry::<K>(group, at, e.payload()),
        _ => Err(io::Error::other(format!("raft group {group}: stream entry {at} is missing"))),
    }
}

fn decode_entry<K: Codec>(group: u64, at: u64, payload: &[u8]) -> io::Result<K::Entry> {
    bincode::deserialize(payload)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("raft group {group}: stream entry {at}: {e}")))
}

fn encode_meta<L: Serialize, V: Serialize>(meta: &GroupMeta<L, V>) -> Result<Vec<u8>, bincode::Error> {
    let mut v = vec![META_V1];
    bincode::serialize_into(&mut v, meta)?;
    Ok(v)
}

/// Decodes a group's metadata, refusing another layout or another format.
fn decode_meta<K: Codec>(bytes: &[u8]) -> Result<GroupMeta<K::LogId, K::Vote>, String> {
    let Some((&META_V1, body)) = bytes.split_first() else {
        return Err(format!("metadata of an unknown layout (first byte {:?})", bytes.first()));
    };
    let meta: GroupMeta<K::LogId, K::Vote> = bincode::deserialize(body).map_err(|e| format!("metadata: {e}"))?;
    if meta.format != K::FORMAT {
        return Err(format!(
            "the group's format is {:?}, this store's {:?}",
            String::from_utf8_lossy(&meta.format),
            String::from_utf8_lossy(K::FORMAT)
        ));
    }
    Ok(meta)
}

fn invalid(group: u64, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("raft group {group}: {what}"))
}
